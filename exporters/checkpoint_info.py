"""`ocr-deploy info weights.pth`: what a checkpoint is and what exporting it would give, without
exporting (the weights are read and checked; no network is built)."""

from __future__ import annotations

from pathlib import Path

Rows = list[tuple[str, str]]


def checkpoint_rows(path: Path) -> Rows:
    from exporters.checkpoints import load_checkpoint
    from exporters.export_job import ExportRequest, build_meta, default_output
    from exporters.source_checks import describe_normalisation
    from ocr_deploy.describe import describe_meta

    checkpoint = load_checkpoint(path)
    family, source = checkpoint.family, checkpoint.source
    notes: list[str] = []
    meta = build_meta(checkpoint, ExportRequest(weights=path), None, notes)
    contract = checkpoint.output_contract()
    models = f" (its models {', '.join(family.framework_models)})" if family.framework_models else ""
    rows: Rows = [("family", f"{family.title} [{family.key}], from {family.framework}{models}"),
                  ("checkpoint", checkpoint.layout)]
    if source.framework:
        stated = [f"{label} {value}" for label, value in (
            ("model", source.model_name), ("backbone", source.backbone),
            ("bn_type", source.bn_type), ("num_classes", source.num_classes),
            ("dataset", source.dataset)) if value is not None]
        rows.append(("framework", source.framework + (f": {', '.join(stated)}" if stated else "")))
    described = describe_meta(meta)
    size = meta.deployment_size()
    rows += described[:2]
    rows += [("classes from", _classes_origin(notes, meta.dataset.name)),
             ("normalisation", describe_normalisation(contract.normalisation)
              + ("; as the checkpoint states" if source.normalisation else "")),
             ("output stride", f"1/{contract.output_stride}, resized to the input with "
                               f"align_corners={contract.align_corners}"),
             ("would export", f"{default_output(path).name} (ocr-deploy export {path.name}); "
                              "default size " + (f"{size[0]}x{size[1]}" if size else
                                                 "dynamic (any frame size)"))]
    rows += described[2:5]
    rows.append(("checkpoint sha256", checkpoint.sha256))
    return rows + [("note", note) for note in checkpoint.notes]


def _classes_origin(notes: list[str], dataset: str) -> str:
    origin = next((note for note in notes if "class" in note or "preset" in note), None)
    return origin or f"dataset preset {dataset!r}"
