"""Human-readable lines about a model, shared by `ocr-deploy export` and `ocr-deploy info`."""

from __future__ import annotations

from ocr_deploy.meta import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelMeta


def normalisation_text(spec: InputSpec) -> str:
    """The mean/std the network was trained with, as the graph applies them."""
    if (tuple(spec.mean), tuple(spec.std)) == (IMAGENET_MEAN, IMAGENET_STD):
        return "ImageNet mean/std"
    mean, std = (", ".join(f"{value:.4g}" for value in values) for values in (spec.mean, spec.std))
    return f"mean ({mean}), std ({std}) in RGB order on 0..1"


def input_line(meta: ModelMeta) -> str:
    spec = meta.input
    batch = spec.batch or "batch"
    height, width = spec.height or "height", spec.width or "width"
    if spec.format == "raw":
        shape = f"[{batch}, {height}, {width}, 3]"
        how = f"frames as OpenCV decodes them; /255, {normalisation_text(spec)} inside the graph"
    else:
        shape = f"[{batch}, 3, {height}, {width}]"
        how = "already (x/255 - mean)/std"
    return f"{spec.name}: {spec.dtype} {shape} {spec.layout} ({_static_text(spec)}), {how}"


def _static_text(spec: InputSpec) -> str:
    """What of the input is fixed and what is free: a static export runs at one size only."""
    fixed = spec.fixed_size
    sides = (f"static {fixed[0]}x{fixed[1]}" if fixed
             else f"dynamic sides >= {spec.min_side} px")
    batch = f"batch {spec.batch}" if spec.batch else "dynamic batch"
    return f"{sides}, {batch}"


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
        ("network", network.describe()),
        ("dataset", f"{dataset.name}: {classes}"),
        ("test size", f"reference policy: {dataset.test_policy.describe()}"),
        ("input", input_line(meta)),
        ("output", output_line(meta)),
        ("precision", source.describe_precision()),
        ("source", f"{source.checkpoint_name} (sha256 {source.checkpoint_sha256[:16]}...), "
                   f"ocr-deploy {source.toolkit_version}, metadata schema {meta.schema_version}"),
    ]
