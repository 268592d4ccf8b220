"""Human-readable lines about a model, shared by `ocr-deploy export` and `ocr-deploy info`."""

from __future__ import annotations

from ocr_deploy.meta import ModelMeta


def input_line(meta: ModelMeta) -> str:
    spec = meta.input
    batch = spec.batch or "batch"
    height, width = spec.height or "height", spec.width or "width"
    if spec.format == "raw":
        shape = f"[{batch}, {height}, {width}, 3]"
        how = "frames as OpenCV decodes them; /255, ImageNet mean/std inside the graph"
    else:
        shape = f"[{batch}, 3, {height}, {width}]"
        how = "already (x/255 - mean)/std"
    dynamic = "" if spec.fixed_size and spec.batch else f" (dynamic sides >= {spec.min_side} px)"
    return f"{spec.name}: {spec.dtype} {shape} {spec.layout}{dynamic}, {how}"


def output_line(meta: ModelMeta) -> str:
    spec, inp = meta.output, meta.input
    batch, height, width = inp.batch or "batch", inp.height or "height", inp.width or "width"
    if spec.kind == "labels":
        return f"{spec.name}: {spec.dtype} [{batch}, {height}, {width}], class index per pixel"
    what = "softmax probabilities" if spec.kind == "probs" else "logits"
    return (f"{spec.name}: {spec.dtype} [{batch}, {meta.num_classes}, {height}, {width}], {what} "
            "at input size")


def describe_meta(meta: ModelMeta) -> list[tuple[str, str]]:
    """(label, text) rows describing what the model computes and where it came from."""
    network, dataset, source = meta.network, meta.dataset, meta.provenance
    classes = ", ".join(dataset.classes[:6]) + (", ..." if len(dataset.classes) > 6 else "")
    return [
        ("network", f"HRNet-OCR {network.variant}, K={network.num_classes}, MID/KEY "
                    f"{network.mid_channels}/{network.key_channels}, align_corners="
                    f"{network.align_corners}"),
        ("dataset", f"{dataset.name}: {classes}"),
        ("test size", f"reference policy: {dataset.test_policy.describe()}"),
        ("input", input_line(meta)),
        ("output", output_line(meta)),
        ("precision", source.describe_precision()),
        ("source", f"{source.checkpoint_name} (sha256 {source.checkpoint_sha256[:16]}...), "
                   f"ocr-deploy {source.toolkit_version}, metadata schema {meta.schema_version}"),
    ]
