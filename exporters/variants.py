"""HRNet backbone variants, and the settings of each framework's HRNet-OCR layout, as plain
settings tables (no torch needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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


class FuseUpsample(str, Enum):
    """How an HRNet fuse layer brings a lower-resolution branch up to a higher one."""

    resize = "resize"  # one bilinear resize to the target size (reference, openseg.pytorch)
    # mmsegmentation: nn-style Upsample by 2**k to an integer size, then a resize to the
    # target size; the two differ on sides that are not multiples of the stride.
    scale_then_resize = "scale-then-resize"


@dataclass(frozen=True)
class HRNetResizes:
    """The resizes inside an HRNet backbone: in the fuse layers and where the four branches are
    upsampled to the first and concatenated. The reference uses one align_corners everywhere."""

    fuse: FuseUpsample = FuseUpsample.resize
    fuse_align_corners: bool = True
    concat_align_corners: bool = True


class BatchNormKind(str, Enum):
    """openseg.pytorch's `network.bn_type` as the weights show it: InPlace-ABN (one module at
    the index, leaky-ReLU 0.01 fused in) or torch BN (Sequential(BatchNorm2d, ReLU))."""

    inplace_abn = "inplace_abn"
    torchbn = "torchbn"


@dataclass(frozen=True)
class OpensegOcrConfig:
    """openseg.pytorch's hrnet_w48_ocr / hrnet_w48_ocr_b: HRNet backbone under `backbone.`,
    a 3x3 conv to `mid_channels`, the OCR block with `key_channels`, and an auxiliary head of
    a 3x3 conv to `aux_channels`. Internal resizes use align_corners=True; `align_corners` is
    the final upsampling's (openseg's own: True)."""

    backbone: BackboneConfig
    num_classes: int
    mid_channels: int = 512
    key_channels: int = 256
    aux_channels: int = 720
    bn_type: BatchNormKind = BatchNormKind.inplace_abn
    align_corners: bool = True

    @property
    def variant(self) -> str:
        return variant_name(self.backbone)

    @property
    def model_name(self) -> str:
        """openseg's model name for these head widths, or 'custom'."""
        for name, widths in OPENSEG_HEADS.items():
            if widths == (self.mid_channels, self.key_channels, self.aux_channels):
                return name
        return "custom"


# openseg model name -> (mid, key, aux) widths of its OCR head on HRNet-W48 (720 channels).
OPENSEG_HEADS: dict[str, tuple[int, int, int]] = {
    "hrnet_w48_ocr": (512, 256, 720),
    "hrnet_w48_ocr_b": (256, 128, 256),
}


@dataclass(frozen=True)
class OpensegAspOcrConfig:
    """openseg.pytorch's hrnet_w48_asp_ocr: HRNet backbone under `backbone.`, ASP-OCR head
    (`asp_ocr_head`: a 3x3 conv + OCR context branch with `key_channels`, a 1x1 conv and three
    3x3 convs with `dilations`, each `branch_channels` wide; concat -> 1x1 to `out_channels`),
    an auxiliary head of a 3x3 conv to `aux_channels`, classifiers without bias. The dilations
    are fixed by openseg's model code, not stored in the weights."""

    backbone: BackboneConfig
    num_classes: int
    branch_channels: int = 256
    key_channels: int = 128
    out_channels: int = 256
    aux_channels: int = 512
    bn_type: BatchNormKind = BatchNormKind.inplace_abn
    dilations: tuple[int, int, int] = (24, 48, 72)
    align_corners: bool = True

    @property
    def variant(self) -> str:
        return variant_name(self.backbone)


@dataclass(frozen=True)
class MMSegOcrConfig:
    """mmsegmentation's OCRNet on HRNetV2 (CascadeEncoderDecoder): an FCNHead of `fcn_convs`
    ConvModules (kernel `fcn_kernel`, width `fcn_channels`), then an OCRHead (`channels` wide,
    attention over `ocr_channels`), both on the resized and concatenated branches. Every
    resize uses align_corners=False; `align_corners` is the final upsampling's."""

    backbone: BackboneConfig
    num_classes: int
    channels: int = 512
    ocr_channels: int = 256
    fcn_channels: int = 270
    fcn_kernel: int = 1
    fcn_convs: int = 1
    align_corners: bool = False

    @property
    def variant(self) -> str:
        return variant_name(self.backbone)
