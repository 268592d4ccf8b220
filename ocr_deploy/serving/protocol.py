"""What a served model's server and its clients agree on: tensor names, dtypes, and the model
metadata carried in the Triton model config's `parameters`.

Imports neither PyTriton nor tritonclient, so both sides (ocr_deploy.serving, ocr_deploy.remote)
share it without pulling in the other's library.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import ModelMeta

INPUT_IMAGE = "image"  # uint8 [N, H, W, 3], BGR, as OpenCV decodes
INPUT_ENCODED = "encoded"  # BYTES [N, 1]: a JPEG or PNG file each
OUTPUT_LABELS = "labels"  # uint8 [N, H, W] (uint16 when K > 255), at the frame's own size
OUTPUT_FRACTIONS = "class_fractions"  # float32 [N, K]
OUTPUT_OVERLAY = "overlay"  # BYTES [N, 1]: a JPEG of the overlay, only when asked for
OVERLAY_PARAMETER = "overlay"  # request parameter: true renders OUTPUT_OVERLAY
META_PARAMETER = "ocr_deploy_meta"  # the artifact's whole ModelMeta as JSON
SERVED_INPUT_FORMAT = "uint8 HxWx3 BGR frames ('image') or JPEG/PNG bytes ('encoded')"


class ServingError(OcrDeployError):
    """A server that cannot start, or a request a server refused."""


def labels_dtype(num_classes: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type that holds every class id."""
    return np.uint8 if num_classes <= 255 else np.uint16


def model_name(meta: ModelMeta) -> str:
    """A Triton model name from the metadata: the checkpoint's stem (the name people know the
    weights by), with a precision suffix when not FP32; Triton takes [A-Za-z0-9._-] only."""
    stem = meta.provenance.checkpoint_name.rsplit("/", 1)[-1].split(".", 1)[0]
    stem = stem or f"{meta.network.family}_{meta.network.variant}"
    if meta.provenance.precision != "fp32":
        stem = f"{stem}_{meta.provenance.precision}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "ocr_deploy_model"


def check_model_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ServingError(f"--name {name!r}: Triton model names take letters, digits, '.', '_' "
                           "and '-', starting with a letter or digit")
    return name


def meta_parameters(meta: ModelMeta) -> dict[str, str]:
    """Config `parameters` (strings only in Triton): the whole metadata for clients, and the
    parts people look for in `curl .../config` spelled out."""
    return {
        META_PARAMETER: meta.to_json(),
        "classes": json.dumps(list(meta.dataset.classes)),
        "palette": json.dumps([list(rgb) for rgb in meta.dataset.palette]),
        "num_classes": str(meta.num_classes),
        "input_format": SERVED_INPUT_FORMAT,
        "artifact_input": f"{meta.input.format} ({meta.input.dtype} {meta.input.layout})",
        "network": meta.network.describe(),
        "variant": meta.network.variant,
        "dataset": meta.dataset.name,
        "precision": meta.provenance.describe_precision(),
    }


def meta_from_parameters(parameters: dict[str, object], *, source: str) -> ModelMeta:
    """The ModelMeta a server published; `parameters` as either tritonclient returns them
    ({'key': {'string_value': ...}})."""
    entry = parameters.get(META_PARAMETER)
    if isinstance(entry, dict):
        entry = entry.get("string_value", entry.get("stringValue"))
    if not isinstance(entry, str):
        raise ServingError(f"{source} was not served by `ocr-deploy serve` (its config has no "
                           f"{META_PARAMETER!r} parameter); serve the model with `ocr-deploy serve`")
    return ModelMeta.from_json(entry, source=source)
