"""Pre-processing shared by every backend: numpy and OpenCV only.

A frame is placed into the network input by a Placement: scaled to (content_height,
content_width) at the top-left corner, black padding bottom-right (the reference's padding).
Post-processing uses the same Placement to undo it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import InputSpec, ModelMeta
from ocr_deploy.vocabulary import SizePolicy, parse_choice

POLICIES = SizePolicy.values()


class FrameError(OcrDeployError):
    """A frame that cannot be segmented (wrong type, too small)."""


@dataclass(frozen=True)
class Placement:
    source_height: int
    source_width: int
    content_height: int
    content_width: int
    input_height: int
    input_width: int

    @property
    def is_identity(self) -> bool:
        return (self.source_height, self.source_width) == (self.input_height, self.input_width) \
            == (self.content_height, self.content_width)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)


@dataclass(frozen=True)
class SizePlan:
    """How every frame is sized for one model: 'native', 'resize' or 'letterbox' to `target`."""

    mode: str
    target: tuple[int, int] | None = None
    long_side: int | None = None  # 'letterbox' by long side (reference resize-pad policy)

    def place(self, height: int, width: int) -> Placement:
        if self.mode == "native" or self.target is None:
            return Placement(height, width, height, width, height, width)
        target_h, target_w = self.target
        if self.mode == "resize":
            return Placement(height, width, target_h, target_w, target_h, target_w)
        if self.long_side is not None:
            scale = self.long_side / max(height, width)
        else:
            scale = min(target_h / height, target_w / width)
        content_h = min(target_h, max(1, round(height * scale)))
        content_w = min(target_w, max(1, round(width * scale)))
        return Placement(height, width, content_h, content_w, target_h, target_w)


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'512x1024' -> (512, 1024): height first, like every shape in this project."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise OcrDeployError(f"{option} {text!r} is not HEIGHTxWIDTH, e.g. 512x1024") from None
    if min(height, width) < 32:
        raise OcrDeployError(f"{option} {text}: HRNet-OCR needs sides of at least 32 px")
    return height, width


def plan_size(meta: ModelMeta, *, size: tuple[int, int] | None = None,
              policy: SizePolicy | str = SizePolicy.auto) -> SizePlan:
    """Resolve --size and --policy against what the model accepts."""
    policy = parse_choice(SizePolicy, policy, "--policy")
    fixed = meta.input.fixed_size
    if size is not None and fixed is not None and size != fixed:
        raise OcrDeployError(f"--size {size[0]}x{size[1]} differs from the model's fixed input "
                             f"{fixed[0]}x{fixed[1]}; export a dynamic model or drop --size")
    if policy == "reference":
        test = meta.dataset.test_policy
        if size is not None and test.kind != "native":
            raise OcrDeployError(f"--policy reference sizes frames for {meta.dataset.name} "
                                 f"({test.describe()}); drop --size or pick another policy")
        if test.kind == "squash":
            return SizePlan("resize", fixed or (test.size, test.size))
        if test.kind == "resize-pad":
            return SizePlan("letterbox", fixed or (test.size, test.size),
                            long_side=None if fixed else test.size)
        policy = SizePolicy.auto
    target = size or fixed
    if policy == "native":
        if fixed is not None:
            raise OcrDeployError(f"--policy native needs a dynamic model; this one takes "
                                 f"{fixed[0]}x{fixed[1]} only (use resize or letterbox)")
        return SizePlan("resize", target) if size else SizePlan("native")
    if target is None:
        return SizePlan("native")
    return SizePlan("letterbox" if policy in ("auto", "letterbox") else "resize", target)


def as_bgr8(frame: np.ndarray) -> np.ndarray:
    """Any image OpenCV may give (grey, BGR, BGRA; 8 or 16 bit) as uint8 BGR."""
    import cv2

    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
        raise FrameError("a frame must be a numpy image array (H, W) or (H, W, C)")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise FrameError(f"frames must be uint8 or uint16 images, got {frame.dtype}")
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    if channels == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise FrameError(f"frames must have 1, 3 or 4 channels, got {channels}")
    return frame


def prepare_frame(frame: np.ndarray, plan: SizePlan, spec: InputSpec) -> tuple[np.ndarray, Placement]:
    """uint8 BGR image of the network-input size, and where the frame sits in it."""
    import cv2

    bgr = as_bgr8(frame)
    height, width = bgr.shape[:2]
    placement = plan.place(height, width)
    if min(placement.input_size) < spec.min_side:
        raise FrameError(f"image is {height}x{width} px; HRNet-OCR needs at least {spec.min_side} "
                         "px per side (use --size to scale it up)")
    if (placement.content_height, placement.content_width) != (height, width):
        bgr = cv2.resize(bgr, (placement.content_width, placement.content_height),
                         interpolation=cv2.INTER_LINEAR)
    pad_bottom = placement.input_height - placement.content_height
    pad_right = placement.input_width - placement.content_width
    if pad_bottom or pad_right:
        bgr = cv2.copyMakeBorder(bgr, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=0)
    return bgr, placement


def normalize_frames(frames_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 NHWC BGR -> float32 NCHW RGB, (x/255 - mean)/std, as the reference test does."""
    rgb = frames_bgr[..., ::-1].astype(np.float32)
    scale = (1.0 / (255.0 * np.asarray(spec.std, dtype=np.float32))).astype(np.float32)
    shift = (-np.asarray(spec.mean, dtype=np.float32) / np.asarray(spec.std, dtype=np.float32))
    return np.ascontiguousarray((rgb * scale + shift.astype(np.float32)).transpose(0, 3, 1, 2))


def graph_input(frames_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """What the graph takes for a batch of uint8 BGR frames [N,H,W,3]."""
    if spec.format == "raw":
        return np.ascontiguousarray(frames_bgr)
    return normalize_frames(frames_bgr, spec)
