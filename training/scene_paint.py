"""Rasterisation of street objects into an image and its label map with identical polygons.

Every shape that carries a label is filled into both arrays by the same cv2 call with the
same fixed-point vertices, so labels are exactly what was painted. Details that do not
change the class (windows, lights, hair) are painted into the image only, strictly inside
their object's silhouette.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.scene_layout import NEAR_CLIP, Building, Camera, Colour, Hedge, Lamp, Sign, Tree

BUILDING, POLE, SIGN, VEGETATION = 2, 5, 7, 8
SHIFT = 3  # sub-pixel vertex precision keeps slow motion smooth in videos
_ONE = float(1 << SHIFT)
_ANGLES = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
_SHAPES: dict[str, np.ndarray] = {
    "circle": CIRCLE * 0.5,
    "octagon": np.stack([np.cos(_ANGLES[1::2] + np.pi / 8), np.sin(_ANGLES[1::2] + np.pi / 8)], 1) * 0.5,
    "triangle": np.array([[0.0, -0.5], [0.55, 0.45], [-0.55, 0.45]]),
    "square": np.array([[-0.45, -0.45], [0.45, -0.45], [0.45, 0.45], [-0.45, 0.45]]),
    "diamond": np.array([[0.0, -0.55], [0.55, 0.0], [0.0, 0.55], [-0.55, 0.0]]),
    "rect": np.array([[-0.7, -0.35], [0.7, -0.35], [0.7, 0.35], [-0.7, 0.35]]),
}
BOX = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64)


@dataclass
class Canvas:
    image: np.ndarray  # HxWx3 uint8, RGB
    labels: np.ndarray  # HxW uint8 train ids
    px: float  # pixels per "256-row pixel": minimum sizes scale with resolution


def fixed_point(pts: np.ndarray) -> np.ndarray:
    # cv2 puts pixel centres on integer coordinates; our projection puts them at +0.5.
    return (pts * _ONE - _ONE / 2).round().astype(np.int32)


def fill(cv: Canvas, pts: np.ndarray, colour: Colour, label: int, convex: bool = True) -> None:
    """Fill a polygon into the image and the label map with the same vertices."""
    p = fixed_point(pts)
    if convex:
        cv2.fillConvexPoly(cv.image, p, colour, cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(cv.labels, p, label, cv2.LINE_8, SHIFT)
    else:
        cv2.fillPoly(cv.image, [p], colour, cv2.LINE_8, shift=SHIFT)
        cv2.fillPoly(cv.labels, [p], label, cv2.LINE_8, shift=SHIFT)


def paint(cv: Canvas, pts: np.ndarray, colour: Colour) -> None:
    """Image-only convex polygon (a detail inside an already labelled object)."""
    cv2.fillConvexPoly(cv.image, fixed_point(pts), colour, cv2.LINE_8, SHIFT)


def paint_many(cv: Canvas, quads: np.ndarray, colour: Colour) -> None:
    if len(quads):
        cv2.fillPoly(cv.image, list(fixed_point(quads)), colour, cv2.LINE_8, shift=SHIFT)


class confined:  # noqa: N801 - used like a function: `with confined(cv, pts, label):`
    """Undo image-only paint that lands outside pixels labelled `label` around `pts`.

    Details are drawn strictly inside their object in continuous coordinates, but rounding
    and cv2's inclusive polygon edges can still put a thin detail one pixel over the edge.
    """

    __slots__ = ("_cv", "_label", "_ys", "_xs", "_before")

    def __init__(self, cv: Canvas, pts: np.ndarray, label: int) -> None:
        h, w = cv.labels.shape
        flat = pts.reshape(-1, 2)
        x0, y0 = flat.min(axis=0).tolist()
        x1, y1 = flat.max(axis=0).tolist()
        self._ys = slice(min(max(int(y0) - 2, 0), h), max(min(int(y1) + 3, h), 0))
        self._xs = slice(min(max(int(x0) - 2, 0), w), max(min(int(x1) + 3, w), 0))
        self._cv, self._label = cv, label

    def __enter__(self) -> None:
        self._before = self._cv.image[self._ys, self._xs].copy()

    def __exit__(self, *exc: object) -> None:
        if self._before.size == 0:
            return
        after = self._cv.image[self._ys, self._xs].copy()
        outside = cv2.compare(np.ascontiguousarray(self._cv.labels[self._ys, self._xs]), self._label, cv2.CMP_NE)
        cv2.copyTo(self._before, outside, after)  # cv2 on contiguous copies: ~30x faster than numpy masks
        self._cv.image[self._ys, self._xs] = after


def shade(colour: Colour, factor: float) -> Colour:
    return tuple(int(min(255.0, c * factor)) for c in colour)


def rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])


def offscreen(cv: Canvas, pts: np.ndarray) -> bool:
    h, w = cv.labels.shape
    return bool(pts[..., 0].max() < 0 or pts[..., 0].min() > w or pts[..., 1].max() < 0 or pts[..., 1].min() > h)


def hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull made of the original vertices (not float32 copies), so faces painted from
    the same vertices rasterise inside it."""
    flat = pts.reshape(-1, 2)
    return flat[cv2.convexHull(flat.astype(np.float32), returnPoints=False)[:, 0]]


def _box(cam: Camera, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    """The 8 projected corners; corner i has x index bit 0, y bit 1, z bit 2."""
    return cam.project(np.take(x, BOX[:, 0].astype(int)), np.take(y, BOX[:, 1].astype(int)),
                       np.take(z, BOX[:, 2].astype(int)))


# ---------------------------------------------------------------- buildings

def _wall_windows(b: Building, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Colour]]:
    """Facade details: s (n, 2) along the wall and y (n, 2) up, in metres, and a colour index each."""
    floors = max(1, int((b.height - 0.8) / b.floor_h))
    cols = max(1, int(length / b.col_w))
    col = length / cols
    top = floors * b.floor_h
    palette = [b.glass[0], b.glass[1], b.glass[2], b.trim, b.shop or b.trim]
    s_parts: list[np.ndarray] = [np.array([[0.0, length]])]
    y_parts: list[np.ndarray] = [np.array([[b.height - 0.5, b.height]])]
    c_parts: list[np.ndarray] = [np.array([3])]
    if b.style == "curtain":
        bars = np.arange(1, cols) * col
        rows = np.arange(1, floors) * b.floor_h
        s_parts += [np.array([[0.2, length - 0.2]]), np.stack([bars - 0.09, bars + 0.09], 1),
                    np.tile([0.2, length - 0.2], (len(rows), 1))]
        y_parts += [np.array([[0.3, top]]), np.tile([0.3, top], (len(bars), 1)),
                    np.stack([rows - 0.15, rows + 0.15], 1)]
        c_parts += [np.array([0]), np.full(len(bars), 3), np.full(len(rows), 3)]
    else:
        ribbon = b.style == "ribbon"
        j, i = np.meshgrid(np.arange(1 if ribbon else cols), np.arange(1 if b.shop else 0, floors))
        j, i = j.ravel(), i.ravel()
        mid = np.full(i.shape, length / 2) if ribbon else (j + 0.5) * col
        half = length / 2 - 0.5 if ribbon else col * b.win_w / 2
        y0 = i * b.floor_h + b.floor_h * (1.0 - b.win_h) * 0.6
        s_parts.append(np.stack([mid - half, mid + half], 1))
        y_parts.append(np.stack([y0, y0 + b.floor_h * b.win_h * (0.8 if ribbon else 1.0)], 1))
        c_parts.append(np.array([0, 0, 1, 1, 2])[(j * 7 + i * 13 + int(b.z0 * 10)) % 5])
    if b.shop is not None:
        shops = (np.arange(cols) + 0.5) * col
        s_parts += [np.stack([shops - col * 0.42, shops + col * 0.42], 1), np.array([[0.1, length - 0.1]])]
        y_parts += [np.tile([0.3, b.floor_h * 0.72], (cols, 1)), np.array([[b.floor_h * 0.78, b.floor_h * 0.92]])]
        c_parts += [np.full(cols, 2), np.array([4])]
    return np.concatenate(s_parts), np.concatenate(y_parts), np.concatenate(c_parts), palette


def _wall(cv: Canvas, cam: Camera, b: Building, a: tuple[float, float], e: tuple[float, float],
          light: float, details: bool) -> None:
    """One wall from ground point a to e. On a curved road it is a chain of flat vertical panels;
    details are split at the panel joints and placed on the panels themselves, so they stay
    inside the wall's silhouette exactly."""
    (xa, za), (xb, zb) = a, e
    t0 = 0.0 if za >= NEAR_CLIP else (NEAR_CLIP - za) / (zb - za)
    t = np.linspace(t0, 1.0, 2 if cam.curve == 0.0 or za == zb else 7)
    z = za + (zb - za) * t
    x = xa + (xb - xa) * t + cam.curve_offset(z)
    poly = np.concatenate([cam.project_bent(x, 0.0, z), cam.project_bent(x, b.height, z)[::-1]])
    if offscreen(cv, poly):
        return
    fill(cv, poly, shade(b.wall, light), BUILDING, convex=False)
    length = float(np.hypot(xb - xa, zb - za))
    if not details or np.ptp(poly[:, 0]) * b.col_w / length < 2.0:
        return
    s, y, index, palette = _wall_windows(b, length)
    joints = t * length
    lo = np.maximum(s[:, :1], joints[None, :-1])
    hi = np.minimum(s[:, 1:], joints[None, 1:])
    item, panel = np.nonzero(hi > lo + 1e-6)
    frac = (np.stack([lo[item, panel], hi[item, panel]], 1) - joints[panel, None]) / np.diff(joints)[panel, None]
    px = x[panel, None] + (x[panel + 1] - x[panel])[:, None] * frac
    pz = z[panel, None] + (z[panel + 1] - z[panel])[:, None] * frac
    quads = cam.project_bent(px[:, [0, 1, 1, 0]], y[item][:, [0, 0, 1, 1]], pz[:, [0, 1, 1, 0]])
    wide = np.ptp(quads[..., 0], axis=1) >= 0.8
    quads, index = quads[wide], index[item][wide]
    with confined(cv, poly, BUILDING):
        for k in np.unique(index):
            paint_many(cv, quads[index == k], shade(palette[k], light))


def draw_building(cv: Canvas, cam: Camera, b: Building, dz: float, sun_side: int) -> None:
    """Street facade plus the near end wall; sun_side 0 means diffuse light."""
    z0, z1 = b.z0 + dz, b.z1 + dz
    if z1 <= NEAR_CLIP:
        return
    front = 0.95 if sun_side == 0 else (1.08 if b.side != sun_side else 0.75)
    if z0 > NEAR_CLIP:
        _wall(cv, cam, b, (b.x + b.side * b.depth, z0), (b.x, z0), 0.88, details=z0 < 60.0)
    _wall(cv, cam, b, (b.x, z0), (b.x, z1), front, details=True)


# ---------------------------------------------------------------- vegetation

def draw_hedge(cv: Canvas, cam: Camera, h: Hedge, dz: float) -> None:
    """A box of hedge along the pavement; its three visible faces are shaded differently."""
    z0, z1 = max(h.z0 + dz, NEAR_CLIP), h.z1 + dz
    if z1 <= NEAR_CLIP + 0.1:
        return
    box = _box(cam, (h.x0, h.x1), (0.0, h.height), (z0, z1))
    if offscreen(cv, box):
        return
    with confined(cv, box, VEGETATION):
        fill(cv, hull(box), shade(h.colour, 0.7), VEGETATION)
        paint(cv, box[[2, 3, 7, 6]], shade(h.colour, 1.15))  # top face, always seen from above
        paint(cv, box[[0, 2, 6, 4]], h.colour)  # face towards the road


def draw_tree(cv: Canvas, cam: Camera, t: Tree, dz: float) -> None:
    """Trunk and a crown of shaded blobs (or tiers for a conifer); all labelled vegetation."""
    z = t.z + dz
    if z <= NEAR_CLIP + t.crown_r:
        return
    k = cam.focal / z
    u, v = cam.project(t.x, 0.0, z)
    r = t.crown_r * k
    cy = v - (t.trunk_h + t.crown_r * 0.8) * k
    if u + r < 0 or u - r > cv.labels.shape[1] or v < 0:
        return
    half = max(t.trunk_w * k, 2.0 * cv.px) / 2
    fill(cv, rect(u - half, cy, u + half, v), t.bark, VEGETATION)
    if t.conifer:
        for tier in range(3):
            top, base = cy - r * (1.4 - 0.6 * tier), cy + r * (0.2 + 0.35 * tier)
            w = r * (0.55 + 0.25 * tier)
            fill(cv, np.array([[u, top], [u + w, base], [u - w, base]]), t.leaves[1 if tier == 0 else 0], VEGETATION)
        return
    blobs = t.blobs * r
    pts = fixed_point(CIRCLE[None] * (blobs[:, 2:3, None] * (1.0, 0.85)) + (u, cy) + blobs[:, None, :2])
    for p, g in zip(pts, t.blobs[:, 3].astype(int), strict=False):
        cv2.fillConvexPoly(cv.image, p, t.leaves[g], cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(cv.labels, p, VEGETATION, cv2.LINE_8, SHIFT)


# ---------------------------------------------------------------- street furniture

def draw_lamp(cv: Canvas, cam: Camera, p: Lamp, dz: float) -> None:
    """Street lamp: pole, arm over the road and lamp housing, all labelled pole."""
    z = p.z + dz
    if z <= NEAR_CLIP:
        return
    k = cam.focal / z
    (u, v), (ua, va) = cam.project(np.array([p.x, p.x + p.arm]), np.array([0.0, p.height]), z)
    if max(u, ua) < -5 or min(u, ua) > cv.labels.shape[1] + 5:
        return
    half = max(p.width * k, 3.0 * cv.px) / 2
    top = v - p.height * k
    fill(cv, rect(u - half, top, u + half, v), p.colour, POLE)
    if abs(p.arm) > 0.1:
        th = max(0.1 * k, 2.0 * cv.px)
        fill(cv, np.array([[u, top], [ua, va - th / 2], [ua, va + th / 2], [u, top + th]]), p.colour, POLE)
        hw, hh = max(0.3 * k, 2.0 * cv.px), max(0.12 * k, 1.5 * cv.px)
        head = rect(ua - hw, va, ua + hw, va + hh)
        fill(cv, head, shade(p.colour, 0.6), POLE)
        if hh >= 3.0:  # the glowing lens only where it is more than a pixel inside the housing
            with confined(cv, head, POLE):
                paint(cv, rect(ua - hw * 0.7, va + hh * 0.4, ua + hw * 0.7, va + hh * 0.85), (235, 232, 210))


def draw_sign(cv: Canvas, cam: Camera, s: Sign, dz: float) -> None:
    """Sign post (pole) with a plate facing the camera (traffic sign)."""
    z = s.z + dz
    if z <= NEAR_CLIP:
        return
    k = cam.focal / z
    u, v = cam.project(s.x, 0.0, z)
    if u < -20 or u > cv.labels.shape[1] + 20:
        return
    size = max(s.size * k, 5.0 * cv.px)
    cy = v - s.pole_h * k - size / 2
    half = max(0.07 * k, 1.5 * cv.px)
    fill(cv, rect(u - half, cy, u + half, v), s.pole, POLE)
    shape = _SHAPES[s.shape] * size + (u, cy)
    with confined(cv, shape, SIGN):
        fill(cv, shape, s.rim, SIGN)
        if s.rim != s.face:
            paint(cv, _SHAPES[s.shape] * size * 0.72 + (u, cy), s.face)
        symbol = (30, 30, 30) if sum(s.face) > 600 else (235, 235, 235)
        paint(cv, rect(u - size * 0.18, cy - size * 0.08, u + size * 0.18, cy + size * 0.12), symbol)
