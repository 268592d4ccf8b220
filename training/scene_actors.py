"""Rasterisation of people and cars (see scene_paint for the shared-polygon convention)."""

from __future__ import annotations

import cv2
import numpy as np

from training.scene_layout import NEAR_CLIP, Camera, Car, Colour, Person
from training.scene_paint import (
    BOX,
    CIRCLE,
    SHIFT,
    Canvas,
    confined,
    fill,
    fixed_point,
    hull,
    offscreen,
    paint,
    rect,
    shade,
)

PERSON, CAR = 11, 13
_TYRE: Colour = (22, 22, 24)
_GLASS: Colour = (40, 48, 58)
_HAIR_ARC = CIRCLE[:, 1] <= 0.2  # upper arc of the head outline: a convex subset of the head
# Cars narrower than this (in 256-row pixels) get a silhouette without wheels and lights.
_DETAIL_WIDTH = 14.0


def draw_person(cv: Canvas, cam: Camera, p: Person, dz: float, time: float) -> None:
    """Legs, arms, torso, neck and head; the legs and arms swing while walking."""
    z = p.z + dz
    if z <= NEAR_CLIP + 0.5:
        return
    k = cam.focal / z * p.height
    u, v = cam.project(p.x, 0.0, z)
    if u < -k or u > cv.labels.shape[1] + k or k < 2.0:
        return
    swing = float(np.sin(p.phase + time * 7.0)) if p.phase >= 0 else 0.0
    leg = max(0.038 * k, 0.6 * cv.px)
    arm = max(0.025 * k, 0.5 * cv.px)
    # Quads in body units (x right, y up, fraction of the height): legs, arms, torso, neck.
    quads = []
    for side in (-1.0, 1.0):
        hip_x, foot_x = side * 0.045, side * (0.05 + 0.025 * swing)
        foot_y = max(0.0, side * swing) * 0.04
        quads.append(((hip_x, 0.53, -leg), (hip_x, 0.53, leg), (foot_x, foot_y, leg), (foot_x, foot_y, -leg)))
    for side in (-1.0, 1.0):
        hand_x = side * 0.14 + 0.02 * swing
        quads.append(((side * 0.115, 0.8, -arm), (side * 0.115, 0.8, arm), (hand_x, 0.46, arm), (hand_x, 0.46, -arm)))
    quads.append(((-0.09, 0.5, 0), (0.09, 0.5, 0), (0.125, 0.81, 0), (-0.125, 0.81, 0)))
    quads.append(((-0.025, 0.79, 0), (0.025, 0.79, 0), (0.025, 0.86, 0), (-0.025, 0.86, 0)))
    q = np.array(quads)
    pts = np.stack([u + q[..., 0] * k + q[..., 2], v - q[..., 1] * k], axis=-1)
    colours = (p.pants, p.pants, p.shirt, p.shirt, p.shirt, p.skin)
    for poly, colour in zip(fixed_point(pts), colours, strict=False):
        cv2.fillConvexPoly(cv.image, poly, colour, cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(cv.labels, poly, PERSON, cv2.LINE_8, SHIFT)
    head = CIRCLE * (0.052 * k, 0.066 * k) + (u, v - 0.905 * k)
    fill(cv, head, p.skin, PERSON)
    paint(cv, head[_HAIR_ARC], p.hair)  # same vertices as the head outline: cannot spill


def car_footprint(cam: Camera, c: Car, dz: float) -> np.ndarray | None:
    """Projected ground quad of the contact shadow under a car, None when behind the camera."""
    z0 = c.z + dz - 0.2
    if z0 <= NEAR_CLIP:
        return None
    x = np.array([-0.5, 0.5, 0.5, -0.5]) * (c.width + 0.3) + c.x
    z = np.array([z0, z0, z0 + c.length + 0.4, z0 + c.length + 0.4])
    return cam.project(x, 0.0, z)


def _car_points(c: Car, z0: float, body_top: float, wheels: bool) -> np.ndarray:
    """World corners: body box (8), cabin frustum (8), then optionally 4 wheel boxes (32)."""
    z1 = z0 + c.length
    xl, xr = c.x - c.width / 2, c.x + c.width / 2
    if c.van:
        near, far = ((0.02, 0.08) if c.facing > 0 else (0.6, 1.2)), (0.8, 1.3)
    else:
        near, far = ((0.75, 1.3), (1.1, 1.8)) if c.facing > 0 else ((1.0, 1.8), (0.7, 1.2))
    lo = [np.array([xl, 0.28, z0])]
    hi = [np.array([xr, body_top, z1])]
    if wheels:
        for wz in (z0 + 0.75, z1 - 0.75):
            for wx in (xl, xr - 0.24):
                lo.append(np.array([wx, 0.0, wz - 0.33]))
                hi.append(np.array([wx + 0.24, 0.66, wz + 0.33]))
    lo_a, hi_a = np.array(lo), np.array(hi)
    boxes = lo_a[:, None, :] + BOX[None] * (hi_a - lo_a)[:, None, :]
    level = BOX[:, 1].astype(bool)  # cabin: the top face is narrower and shorter than the bottom
    cabin = np.empty((8, 3))
    cabin[:, 0] = np.where(BOX[:, 0] > 0, xr - np.where(level, 0.22, 0.08), xl + np.where(level, 0.22, 0.08))
    cabin[:, 1] = np.where(level, c.height, body_top)
    cabin[:, 2] = np.where(BOX[:, 2] > 0, z1 - np.where(level, far[1], far[0]), z0 + np.where(level, near[1], near[0]))
    return np.concatenate([boxes[0], cabin, boxes[1:].reshape(-1, 3)])


def draw_car(cv: Canvas, cam: Camera, c: Car, dz: float) -> None:
    """Wheels, body and cabin as projected boxes; glass, lamps and plate when near enough."""
    z0 = c.z + dz
    if z0 <= NEAR_CLIP + 0.5:
        return
    body_top = (0.52 if c.van else 0.62) * c.height
    detailed = cam.focal / z0 * c.width >= _DETAIL_WIDTH * cv.px
    world = _car_points(c, z0, body_top, detailed)
    pts = cam.project(world[:, 0], world[:, 1], world[:, 2])
    if offscreen(cv, pts[:8]):
        return
    with confined(cv, pts, CAR):
        for w in range(16, len(pts), 8):
            fill(cv, hull(pts[w:w + 8]), _TYRE, CAR)
        fill(cv, hull(pts[:8]), shade(c.colour, 0.72), CAR)
        paint(cv, pts[[0, 1, 3, 2]], c.colour)
        if detailed and cam.cam_h > body_top:
            paint(cv, pts[[2, 3, 7, 6]], shade(c.colour, 1.12))
        _car_cabin(cv, cam, c, pts[8:16], detailed, z0)
        if detailed:
            _car_face(cv, c, pts[0], pts[3])


def _car_cabin(cv: Canvas, cam: Camera, c: Car, cab: np.ndarray, detailed: bool, z0: float) -> None:
    fill(cv, hull(cab), shade(c.colour, 0.85), CAR)
    windows = [cab[[0, 1, 3, 2]]]
    curve = cam.curve_offset(z0)
    side = 0 if c.x - c.width / 2 + curve > 0 else (1 if c.x + c.width / 2 + curve < 0 else -1)
    if detailed and side >= 0:
        windows.append(cab[[side, side + 4, side + 6, side + 2]])
    for window in windows:
        paint(cv, window + (window.mean(0) - window) * 0.12, _GLASS)


def _car_face(cv: Canvas, c: Car, low_left: np.ndarray, top_right: np.ndarray) -> None:
    """Bumper, lamps and number plate on the face we see; all inside the body's near face."""
    (ul, vb), (ur, vt) = low_left, top_right
    h, w = vb - vt, ur - ul
    paint(cv, rect(ul, vb - h * 0.22, ur, vb), (34, 34, 36))
    lamp = (200, 30, 30) if c.facing > 0 else (235, 232, 215)
    paint(cv, rect(ul + w * 0.04, vt + h * 0.18, ul + w * 0.22, vt + h * 0.45), lamp)
    paint(cv, rect(ur - w * 0.22, vt + h * 0.18, ur - w * 0.04, vt + h * 0.45), lamp)
    paint(cv, rect(ul + w * 0.36, vt + h * 0.5, ur - w * 0.36, vt + h * 0.7), (232, 232, 228))
