"""OCRNet on HRNetV2 from mmsegmentation (configs/ocrnet/ocrnet_hr18s, hr18, hr48):
CascadeEncoderDecoder with an FCNHead (`decode_head.0`) and an OCRHead (`decode_head.1`).

The network lives in exporters/mmseg_ocr.py; this module is the family's entry in the FAMILIES
table. mmsegmentation feeds RGB frames normalised on 0..255 and resizes with align_corners=False
everywhere, including the final upsampling of the OCR head's 1/4-scale logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from exporters.models.base import ChannelOrder, ModelFamily, Normalisation, OutputContract
from exporters.models.hrnet_ocr import indices, infer_backbone
from exporters.variants import VARIANTS, MMSegOcrConfig
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from exporters.mmseg_ocr import MMSegHRNetOCR

# SegDataPreProcessor(bgr_to_rgb=True, mean=..., std=...) on 0..255 values.
MMSEG_NORMALISATION = Normalisation.from_framework(
    channels=ChannelOrder.rgb, divisor=1.0, mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375))
_SEGMENTATION_INDEX, _OUTPUT_STRIDE = 1, 4
DEFAULT_ALIGN_CORNERS = False
_QUERY_KEY = "decode_head.1.object_context_block.query_project.0.conv.weight"


class MMSegHRNetOCRFamily(ModelFamily[MMSegOcrConfig]):
    key = "mmseg_hrnet_ocr"
    title = "mmsegmentation OCRNet HRNetV2"
    framework = "mmsegmentation"
    framework_models = ("OCRNet",)
    config_type = MMSegOcrConfig
    example_key = _QUERY_KEY
    # Keys of the HRNet branches and of both cascade heads, not the backbone.conv1 or
    # decode_head.1.conv_seg that every mmseg network has: another mmseg network scores low.
    required_keys = ("backbone.layer1.0.conv1.weight", "backbone.transition1.0.0.weight",
                     "backbone.stage2.0.branches.0.0.conv1.weight",
                     "decode_head.0.conv_seg.weight", "decode_head.1.bottleneck.conv.weight",
                     _QUERY_KEY)

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> MMSegOcrConfig:
        return MMSegOcrConfig(
            backbone=infer_backbone(weights, "backbone."), **mmseg_head_settings(weights),
            align_corners=DEFAULT_ALIGN_CORNERS if align_corners is None else align_corners)

    def build(self, config: MMSegOcrConfig) -> MMSegHRNetOCR:
        from exporters.mmseg_ocr import MMSegHRNetOCR

        return MMSegHRNetOCR(config).eval()

    def network_spec(self, config: MMSegOcrConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title, variant=config.variant,
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings={"channels": config.channels,
                                     "ocr_channels": config.ocr_channels,
                                     "fcn_channels": config.fcn_channels,
                                     "fcn_kernel": config.fcn_kernel,
                                     "fcn_convs": config.fcn_convs})

    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        return OutputContract(segmentation_index=_SEGMENTATION_INDEX, output_stride=_OUTPUT_STRIDE,
                              align_corners=spec.align_corners,
                              normalisation=MMSEG_NORMALISATION)

    def example_config(self, *, num_classes: int) -> MMSegOcrConfig:
        tiny = VARIANTS["tiny"]
        return MMSegOcrConfig(tiny, num_classes, channels=32, ocr_channels=16,
                              fcn_channels=tiny.concat_channels, fcn_kernel=1, fcn_convs=1)

    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        return {0: network.decode_head[0].conv_seg, 1: network.decode_head[1].conv_seg}


def mmseg_head_settings(weights: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The widths of mmsegmentation's CascadeEncoderDecoder heads (decode_head.0 an FCNHead,
    decode_head.1 an OCRHead), read from tensor shapes; the same for every OCRNet backbone."""
    fcn_convs = len(indices(weights, r"^decode_head\.0\.convs\.(\d+)\.conv\.weight$"))
    fcn = weights["decode_head.0.convs.0.conv.weight"] if fcn_convs else None
    return {"num_classes": int(weights["decode_head.1.conv_seg.weight"].shape[0]),
            "channels": int(weights["decode_head.1.bottleneck.conv.weight"].shape[0]),
            "ocr_channels": int(weights[_QUERY_KEY].shape[0]),
            "fcn_channels": int(weights["decode_head.0.conv_seg.weight"].shape[1]),
            "fcn_kernel": int(fcn.shape[-1]) if fcn is not None else 1,
            "fcn_convs": fcn_convs}


FAMILY = MMSegHRNetOCRFamily()
