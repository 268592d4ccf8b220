"""Pre-processing shared by every backend: numpy and OpenCV only.

A frame is placed into the network input by a Placement: scaled to (content_height,
content_width) at the top-left corner, black padding bottom-right (the reference's padding).
Post-processing uses the same Placement to undo it exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ocr_deploy.errors import ConfigError, OcrDeployError
from ocr_deploy.meta import InputSpec, ModelMeta
from ocr_deploy.tiling import DEFAULT_OVERLAP, WHOLE_FRAME, FrameLayout, TileSpec
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
    """How every frame is sized for one model: 'native', 'resize' or 'letterbox' to `target`;
    with `tiles`, the placed frame is padded to at least one tile and cut into tiles."""

    mode: str
    target: tuple[int, int] | None = None
    long_side: int | None = None  # 'letterbox' by long side (reference resize-pad policy)
    tiles: TileSpec | None = None  # sliding windows over the placed frame
    max_side: int | None = None  # 'native': frames with a longer side are scaled down to it

    def place(self, height: int, width: int) -> Placement:
        placement = self._place_content(height, width)
        if self.tiles is None:
            return placement
        # A frame smaller than a tile is padded bottom-right, as letterbox pads.
        return replace(placement, input_height=max(placement.content_height, self.tiles.height),
                       input_width=max(placement.content_width, self.tiles.width))

    def _place_content(self, height: int, width: int) -> Placement:
        if self.mode == "native" or self.target is None:
            if self.max_side is not None and max(height, width) > self.max_side:
                scale = self.max_side / max(height, width)
                content_h, content_w = max(1, round(height * scale)), max(1, round(width * scale))
                return Placement(height, width, content_h, content_w, content_h, content_w)
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

    def layout(self, placement: Placement) -> FrameLayout:
        """How the placed image becomes network inputs: itself, or its tiles."""
        if self.tiles is None:
            return WHOLE_FRAME
        return self.tiles.grid(placement.input_height, placement.input_width)

    @property
    def network_size(self) -> tuple[int, int] | None:
        """The network-input size every frame gets, when it does not depend on the frame."""
        if self.tiles is not None:
            return self.tiles.size
        return None if self.mode == "native" else self.target

    def describe(self) -> str:
        sizing = self.mode if self.target is None else f"{self.mode} {self.target[0]}x{self.target[1]}"
        if self.max_side is not None and self.target is None:
            sizing += f" (long side at most {self.max_side})"
        return sizing if self.tiles is None else f"{sizing}, sliding {self.tiles.describe()}"


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'512x1024' -> (512, 1024): height first, like every shape in this project."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise OcrDeployError(f"{option} {text!r} is not HEIGHTxWIDTH, e.g. 512x1024") from None
    if min(height, width) < 32:
        raise OcrDeployError(f"{option} {text}: HRNet-OCR needs sides of at least 32 px")
    return height, width


@dataclass(frozen=True)
class _Asked:
    """What the user asked for: --size, --tile and --overlap, against one model."""

    meta: ModelMeta
    size: tuple[int, int] | None
    tile: tuple[int, int] | None
    overlap: float | None


def _plan_reference(asked: _Asked) -> SizePlan:
    """The dataset's reference test-size policy."""
    test, fixed = asked.meta.dataset.test_policy, asked.meta.input.fixed_size
    if asked.size is not None and test.kind != "native":
        raise OcrDeployError(f"--policy reference sizes frames for {asked.meta.dataset.name} "
                             f"({test.describe()}); drop --size or pick another policy")
    if test.kind == "squash":
        return SizePlan("resize", fixed or (test.size, test.size))
    if test.kind == "resize-pad":
        return SizePlan("letterbox", fixed or (test.size, test.size),
                        long_side=None if fixed else test.size)
    return _plan_letterbox(asked)


def _plan_native(asked: _Asked) -> SizePlan:
    fixed = asked.meta.input.fixed_size
    if fixed is not None:
        raise OcrDeployError(f"--policy native needs a dynamic model; this one takes "
                             f"{fixed[0]}x{fixed[1]} only (use resize or letterbox)")
    return SizePlan("resize", asked.size) if asked.size else SizePlan("native")


def _plan_letterbox(asked: _Asked) -> SizePlan:
    """Also 'auto': native size for dynamic models, letterboxed into a fixed input."""
    target = asked.size or asked.meta.input.fixed_size
    return SizePlan("letterbox", target) if target else SizePlan("native")


def _plan_resize(asked: _Asked) -> SizePlan:
    target = asked.size or asked.meta.input.fixed_size
    return SizePlan("resize", target) if target else SizePlan("native")


def _plan_sliding(asked: _Asked) -> SizePlan:
    """Frames at native size (or resized to --size), cut into tiles of the network input."""
    meta, fixed = asked.meta, asked.meta.input.fixed_size
    if meta.output.kind == "labels":
        raise ConfigError("--policy sliding averages class scores where tiles overlap, but this "
                          "model outputs labels; export it again with --output logits (or "
                          "probs): ocr-deploy export CHECKPOINT --output logits")
    tile = asked.tile or fixed
    if tile is None:
        raise ConfigError("--policy sliding needs --tile HxW (e.g. --tile 512x512) for a model "
                          "with a dynamic input size")
    if fixed is not None and tile != fixed:
        raise ConfigError(f"--tile {tile[0]}x{tile[1]} differs from the model's fixed input "
                          f"{fixed[0]}x{fixed[1]}; use --tile {fixed[0]}x{fixed[1]} or export a "
                          "dynamic model")
    if min(tile) < meta.input.min_side:
        raise ConfigError(f"--tile {tile[0]}x{tile[1]} is too small; the network needs at least "
                          f"{meta.input.min_side} px per side")
    overlap = DEFAULT_OVERLAP if asked.overlap is None else asked.overlap
    base = SizePlan("resize", asked.size) if asked.size else SizePlan("native")
    return replace(base, tiles=TileSpec(tile[0], tile[1], overlap))


# One planner per --policy; 'auto' letterboxes into a fixed input and keeps dynamic models native.
_PLANNERS: dict[SizePolicy, Callable[[_Asked], SizePlan]] = {
    SizePolicy.auto: _plan_letterbox,
    SizePolicy.native: _plan_native,
    SizePolicy.resize: _plan_resize,
    SizePolicy.letterbox: _plan_letterbox,
    SizePolicy.reference: _plan_reference,
    SizePolicy.sliding: _plan_sliding,
}


def plan_size(meta: ModelMeta, *, size: tuple[int, int] | None = None,
              policy: SizePolicy | str = SizePolicy.auto, tile: tuple[int, int] | None = None,
              overlap: float | None = None, max_side: int | None = None) -> SizePlan:
    """Resolve --size, --policy, --tile and --overlap against what the model accepts. With
    --policy sliding, --size resizes the frame and the tiles are the network input. --max-side
    scales down frames segmented at their native size (labels are scaled back up)."""
    policy = parse_choice(SizePolicy, policy, "--policy")
    if max_side is not None:
        if size is not None:
            raise ConfigError("--max-side and --size both set the size frames are segmented at; "
                              "give one of them")
        if max_side < meta.input.min_side:
            raise ConfigError(f"--max-side {max_side} is too small; the network needs at least "
                              f"{meta.input.min_side} px per side")
    fixed = meta.input.fixed_size
    if policy is not SizePolicy.sliding:
        if tile is not None or overlap is not None:
            raise ConfigError("--tile and --overlap belong to --policy sliding; add it or drop them")
        if size is not None and fixed is not None and size != fixed:
            raise OcrDeployError(f"--size {size[0]}x{size[1]} differs from the model's fixed input "
                                 f"{fixed[0]}x{fixed[1]}; export a dynamic model or drop --size")
    plan = _PLANNERS[policy](_Asked(meta, size, tile, overlap))
    return replace(plan, max_side=max_side) if max_side is not None else plan


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
