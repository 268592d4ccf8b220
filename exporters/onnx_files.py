"""ONNX files made by ocr-deploy, read with the onnx package (no torch, no ONNX Runtime session)."""

from __future__ import annotations

from pathlib import Path

import onnx

from ocr_deploy.errors import ModelFileError
from ocr_deploy.meta import META_KEY, ModelMeta, meta_from_custom_map

# The upsampled logits: a graph output while verifying; in a saved labels or probs graph, the
# name of the internal tensor that ArgMax or Softmax reads.
LOGITS = "logits"


def model_meta(model: onnx.ModelProto, *, source: str) -> ModelMeta:
    """The ocr-deploy metadata embedded in an ONNX model."""
    return meta_from_custom_map({entry.key: entry.value for entry in model.metadata_props},
                                source=source)


def write_meta(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Embed `meta` in the model's metadata_props, replacing what an earlier step wrote. The one
    writer, shared by export and FP16 conversion; needs the onnx package only, not torch."""
    for entry in list(model.metadata_props):
        if entry.key == META_KEY:
            model.metadata_props.remove(entry)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()


def load_model(path: Path) -> tuple[onnx.ModelProto, ModelMeta]:
    """An ONNX file and its metadata, with one clear error for missing, foreign or non-ONNX files."""
    if not path.is_file():
        raise ModelFileError(f"model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf DecodeError and friends for non-ONNX bytes
        raise ModelFileError(f"{path} is not an ONNX model ({type(error).__name__})") from None
    return model, model_meta(model, source=str(path))
