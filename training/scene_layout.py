"""World layout of a procedural street: camera, road cross-section and the objects along it.

Everything here is plain data in metres (x: right of the ego lane centre, y: up from the
ground, z: forward along the road). The street is generated in fixed-length chunks, each
from its own random stream, so a video can drive arbitrarily far and the first frame of a
video is the still scene of the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Each chunk of street is seeded on its own so layouts do not depend on how far we look.
CHUNK_LENGTH = 30.0
# Beyond this, objects are a few pixels tall and only cost time.
VIEW_DEPTH = 150.0
NEAR_CLIP = 1.0  # metres; keeps projected coordinates small enough for cv2's fixed point
FRAME_DT = 0.1  # seconds between video frames
# The road bends as curve * z^2 nearby; the divisor keeps its screen shift finite at the horizon.
CURVE_SATURATION = 60.0
KERB = 0.25  # visible kerb-stone width, labelled sidewalk as in Cityscapes

Colour = tuple[int, int, int]  # RGB; the renderer converts to BGR at the very end


@dataclass(frozen=True)
class Camera:
    height: int
    width: int
    focal: float
    cx: float
    horizon: float
    cam_h: float
    curve: float

    def curve_offset(self, z: np.ndarray | float) -> np.ndarray | float:
        """Lateral shift of the road centre at depth z (steady-state bend, so it moves with us)."""
        return self.curve * z * z / (1.0 + z / CURVE_SATURATION)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """World points -> pixel coordinates (..., 2), pixel (i, j) covering [j, j+1) x [i, i+1)."""
        return self.project_bent(x + self.curve_offset(z), y, z)

    def project_bent(self, x_bent: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Like ``project`` for x that already includes the road's curve offset."""
        scale = self.focal / z
        u = self.cx + x_bent * scale
        v = self.horizon + (self.cam_h - y) * scale
        shape = np.broadcast_shapes(np.shape(u), np.shape(v))
        out = np.empty(shape + (2,))
        out[..., 0] = u
        out[..., 1] = v
        return out


@dataclass(frozen=True)
class Road:
    left: float
    right: float
    sidewalk: tuple[float, float]  # road edge to the pavement's outer edge, kerb and verge included
    verge: tuple[float, float]  # grass strip between kerb and paving, 0 for none
    outer_is_terrain: tuple[bool, bool]
    parking: tuple[float | None, float | None]  # centre line of parked cars per side
    lines: tuple[tuple[float, str], ...]  # (x, "dash" | "solid" | "double")
    same_lanes: tuple[float, ...]
    oncoming_lanes: tuple[float, ...]
    asphalt: Colour
    paving: Colour
    kerb: Colour
    grass: Colour
    paint: Colour
    tile: float
    dash: tuple[float, float]  # painted length, period


@dataclass(frozen=True)
class SideStyle:
    side: int  # -1 left, +1 right
    kerb_x: float
    walk_x: float  # inner edge of the paving
    outer_x: float
    facade_x: float
    build_prob: float
    height_range: tuple[float, float]
    walls: tuple[Colour, ...]
    tree_spacing: float  # 0: no street trees
    tree_x: float
    lamp_spacing: float  # 0: no lamps
    lamp_phase: float
    people_rate: float
    sign_prob: float
    hedge_prob: float


@dataclass(frozen=True)
class Look:
    sky_top: Colour
    sky_horizon: Colour
    cloudiness: float
    gain: float
    contrast: float
    warmth: float
    sun_side: int
    shadow: float  # multiplier inside shadows, 1.0 when overcast
    shadow_reach: float  # shadow length per metre of building height
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int  # 0: no compression
    vignette: float


@dataclass(frozen=True)
class Building:
    side: int
    x: float
    z0: float
    z1: float
    height: float
    depth: float
    wall: Colour
    glass: tuple[Colour, Colour, Colour]
    trim: Colour
    style: str  # "grid" | "ribbon" | "curtain"
    floor_h: float
    col_w: float
    win_w: float  # fraction of a column
    win_h: float  # fraction of a floor
    shop: Colour | None  # awning colour of a ground-floor shop


@dataclass(frozen=True)
class Hedge:
    x0: float
    x1: float
    z0: float
    z1: float
    height: float
    colour: Colour


@dataclass(frozen=True, eq=False)
class Tree:
    x: float
    z: float
    trunk_h: float
    trunk_w: float
    crown_r: float
    conifer: bool
    bark: Colour
    leaves: tuple[Colour, Colour, Colour]
    blobs: np.ndarray = field(repr=False)  # (n, 4): dx, dy, radius in crown radii, shade index


@dataclass(frozen=True)
class Lamp:
    x: float
    z: float
    height: float
    width: float
    arm: float  # signed arm length towards the road
    colour: Colour


@dataclass(frozen=True)
class Sign:
    x: float
    z: float
    pole_h: float
    size: float
    shape: str
    rim: Colour
    face: Colour
    pole: Colour


@dataclass(frozen=True)
class Person:
    x: float
    z: float
    vz: float
    height: float
    shirt: Colour
    pants: Colour
    skin: Colour
    hair: Colour
    phase: float


@dataclass(frozen=True)
class Car:
    x: float
    z: float  # near end
    vz: float
    length: float
    width: float
    height: float
    colour: Colour
    facing: int  # +1: we see its rear, -1: its front
    van: bool


@dataclass(frozen=True)
class Chunk:
    buildings: tuple[Building, ...]
    hedges: tuple[Hedge, ...]
    props: tuple[Tree | Lamp | Sign | Person | Car, ...]
    crossings: tuple[float, ...]


@dataclass(frozen=True)
class Scene:
    seed: int
    camera: Camera
    road: Road
    sides: tuple[SideStyle, SideStyle]
    look: Look
    traffic: tuple[Car, ...]
    ego_speed: float
