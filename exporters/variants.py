"""HRNet backbone variants as plain settings tables (no torch needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_deploy.errors import ConfigError


@dataclass(frozen=True)
class StageConfig:
    """One HRNet stage: `modules` repeated high-resolution modules over len(channels) branches."""

    modules: int
    blocks: tuple[int, ...]
    channels: tuple[int, ...]

    @property
    def branches(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class BackboneConfig:
    """Stage 1 is a Bottleneck layer (one branch); stages 2-4 use BasicBlocks."""

    stage1_blocks: int
    stage1_channels: int
    stage2: StageConfig
    stage3: StageConfig
    stage4: StageConfig

    @property
    def concat_channels(self) -> int:
        return sum(self.stage4.channels)


def _backbone(stage1: tuple[int, int], s2: tuple, s3: tuple, s4: tuple) -> BackboneConfig:
    return BackboneConfig(
        stage1_blocks=stage1[0],
        stage1_channels=stage1[1],
        stage2=StageConfig(s2[0], tuple(s2[1]), tuple(s2[2])),
        stage3=StageConfig(s3[0], tuple(s3[1]), tuple(s3[2])),
        stage4=StageConfig(s4[0], tuple(s4[1]), tuple(s4[2])),
    )


# (stage-1 blocks, stage-1 channels), then (modules, blocks per branch, channels per branch).
VARIANTS: dict[str, BackboneConfig] = {
    "w48": _backbone((4, 64), (1, [4, 4], [48, 96]), (4, [4] * 3, [48, 96, 192]),
                     (3, [4] * 4, [48, 96, 192, 384])),
    "w32": _backbone((4, 64), (1, [4, 4], [32, 64]), (4, [4] * 3, [32, 64, 128]),
                     (3, [4] * 4, [32, 64, 128, 256])),
    "w18": _backbone((4, 64), (1, [4, 4], [18, 36]), (4, [4] * 3, [18, 36, 72]),
                     (3, [4] * 4, [18, 36, 72, 144])),
    "w18-small-v2": _backbone((2, 64), (1, [2, 2], [18, 36]), (3, [2] * 3, [18, 36, 72]),
                              (2, [2] * 4, [18, 36, 72, 144])),
    "w18-small-v1": _backbone((1, 32), (1, [2, 2], [16, 32]), (1, [2] * 3, [16, 32, 64]),
                              (1, [2] * 4, [16, 32, 64, 128])),
    # Not a reference variant: the smallest network with every HRNet-OCR code path, so tests
    # export and run real graphs in well under a second.
    "tiny": _backbone((1, 8), (1, [1, 1], [4, 8]), (1, [1] * 3, [4, 8, 16]),
                      (1, [1] * 4, [4, 8, 16, 32])),
}


def variant_name(backbone: BackboneConfig) -> str:
    """The table's name for a backbone, or 'custom' for a layout the table does not list."""
    for name, config in VARIANTS.items():
        if config == backbone:
            return name
    return "custom"


@dataclass(frozen=True)
class OcrConfig:
    """Everything needed to build the network: backbone, OCR widths, classes, resize mode."""

    backbone: BackboneConfig
    num_classes: int
    mid_channels: int = 512
    key_channels: int = 256
    align_corners: bool = True

    @property
    def variant(self) -> str:
        return variant_name(self.backbone)

    @classmethod
    def from_variant(cls, variant: str, *, num_classes: int, mid_channels: int = 512,
                     key_channels: int = 256, align_corners: bool = True) -> OcrConfig:
        if variant not in VARIANTS:
            known = ", ".join(VARIANTS)
            raise ConfigError(f"unknown HRNet variant {variant!r}; known variants: {known}")
        return cls(VARIANTS[variant], num_classes, mid_channels, key_channels, align_corners)
