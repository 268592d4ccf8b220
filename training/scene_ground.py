"""Ground plane (road, pavement, verge), sky and distant skyline.

The ground is classified per pixel from its world coordinates, so the road/pavement/verge
boundaries are exact for any curve and the textures stream past as the camera moves.
"""

from __future__ import annotations

import cv2
import numpy as np

from training.scene_layout import KERB, NEAR_CLIP, Camera, Road, Scene
from training.scene_paint import BUILDING, SHIFT, VEGETATION, Canvas, fixed_point

ROAD, SIDEWALK, TERRAIN, SKY = 0, 1, 9, 10
_FAR = 3000.0
# Texture lookups use depths capped here: beyond it the ground is a pixel or two of rows,
# and remap's int16 coordinates cannot hold x * _GRAIN_PER_M for the full width at _FAR.
_TEXTURE_FAR = 300.0
_GRAIN_PER_M = 24.0
_PATCH_PER_M = 1.5


def ground_rows(cam: Camera) -> int:
    """First image row whose pixel centre lies below the horizon."""
    return int(min(cam.height, max(0, np.ceil(cam.horizon - 0.2))))


def make_texture(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Tileable noise, roughly unit variance, mixing fine grain and blotches."""
    base = rng.standard_normal((size, size)).astype(np.float32)
    pad = 8
    wrapped = np.pad(base, pad, mode="wrap")
    fine = cv2.GaussianBlur(wrapped, (0, 0), 0.7)[pad:-pad, pad:-pad]
    blot = cv2.GaussianBlur(wrapped, (0, 0), 3.0)[pad:-pad, pad:-pad]
    tex = fine / (fine.std() + 1e-6) * 0.6 + blot / (blot.std() + 1e-6) * 0.8
    return (tex / tex.std()).astype(np.float32)


def _sample(tex: np.ndarray, x: np.ndarray, zw: np.ndarray, per_m: float) -> np.ndarray:
    """World-anchored texture lookup, so the ground texture streams past with the camera.

    remap wraps coordinates itself but stores them as int16, so x must stay below
    32767 / per_m metres (see _TEXTURE_FAR); the per-row z is reduced modulo the tile.
    """
    size = tex.shape[0]
    u = x * np.float32(per_m)
    v = np.ascontiguousarray(np.broadcast_to(np.mod(zw * np.float32(per_m), size), x.shape))
    return cv2.remap(tex, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


_MARK = 11  # zone index of painted markings
_ROAD_ZONES = (4, 5, 6)
_PAVING_ZONES = (1, 9)
_AMP = {ROAD: 0.07, SIDEWALK: 0.05, TERRAIN: 0.12}


def _zones(road: Road) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cross-section from far left to far right: zone edges (10), and per zone (12) label,
    colour and texture amplitude, each as a cv2 LUT."""
    outer = [TERRAIN if t else SIDEWALK for t in road.outer_is_terrain]
    far_paving = tuple(c * 0.92 for c in road.paving)
    outer_colour = [road.grass if o == TERRAIN else far_paving for o in outer]
    gutter = tuple(c * 0.85 for c in road.asphalt)
    labels = np.zeros((1, 256), np.uint8)
    labels[0, :12] = [outer[0], SIDEWALK, TERRAIN, SIDEWALK, ROAD, ROAD, ROAD, SIDEWALK, TERRAIN, SIDEWALK,
                      outer[1], ROAD]
    colours = np.zeros((1, 256, 3), np.float32)
    colours[0, :12] = [outer_colour[0], road.paving, road.grass, road.kerb, gutter, road.asphalt, gutter,
                       road.kerb, road.grass, road.paving, outer_colour[1], road.paint]
    amp = np.zeros((1, 256), np.float32)
    amp[0, :12] = [_AMP[int(v)] for v in labels[0, :12]]
    (sw_l, sw_r), (vg_l, vg_r) = road.sidewalk, road.verge
    edges = np.array([road.left - sw_l, road.left - KERB - vg_l, road.left - KERB, road.left, road.left + 0.3,
                      road.right - 0.3, road.right, road.right + KERB, road.right + KERB + vg_r, road.right + sw_r],
                     np.float32)
    return edges, labels, colours, amp


def draw_ground(cv: Canvas, scene: Scene, tex: np.ndarray, cam_z: float, shadow: np.ndarray,
                crossings: list[float]) -> None:
    """Road, kerbs, pavement and verge below the horizon, with markings, texture and shadows."""
    cam, road = scene.camera, scene.road
    y0 = ground_rows(cam)
    if y0 >= cam.height:
        return
    dy = np.arange(y0, cam.height, dtype=np.float32) + np.float32(0.5 - cam.horizon)
    z = np.minimum(np.float32(cam.focal * cam.cam_h) / dy, np.float32(_FAR))[:, None]
    xs = (np.arange(cam.width, dtype=np.float32) + np.float32(0.5 - cam.cx))[None, :]
    x = xs * (z / np.float32(cam.focal)) - cam.curve_offset(z)
    zw = z + np.float32(cam_z)
    edges, zone_labels, zone_colours, zone_amp = _zones(road)
    zone = (x >= edges[0]).view(np.uint8)
    for e in edges[1:]:
        zone += x >= e
    marks = np.zeros(zone.shape, np.uint8)
    _draw_markings(marks, scene, cam_z, crossings, y0)
    np.putmask(zone, (marks > 0) & (zone >= _ROAD_ZONES[0]) & (zone <= _ROAD_ZONES[-1]), _MARK)
    factor = _texture(scene, tex, xs, z, cam_z)
    factor *= cv2.LUT(zone, zone_amp)
    factor += np.float32(1.0)
    near = int(np.searchsorted(-z[:, 0], -22.0))  # rows closer than 22 m show paving joints
    if near < len(z):
        tiles = (np.mod(x[near:], road.tile) < 0.05 * road.tile) | (np.mod(zw[near:], road.tile) < 0.05 * road.tile)
        paving = (zone[near:] == _PAVING_ZONES[0]) | (zone[near:] == _PAVING_ZONES[1])
        if not road.outer_is_terrain[0]:
            paving |= zone[near:] == 0
        if not road.outer_is_terrain[1]:
            paving |= zone[near:] == 10
        factor[near:] *= 1.0 - np.float32(0.18) * (tiles & paving)
    factor *= shadow
    colour = cv2.LUT(cv2.merge([zone, zone, zone]), zone_colours)
    colour *= factor[..., None]
    cv.image[y0:] = cv2.convertScaleAbs(colour)
    cv.labels[y0:] = cv2.LUT(zone, zone_labels)


def _texture(scene: Scene, tex: np.ndarray, xs: np.ndarray, z: np.ndarray, cam_z: float) -> np.ndarray:
    """Ground texture (zero mean): fine grain fading with distance plus large blotches. The
    blotches are smooth, so they are sampled on a half-resolution grid and upsampled."""
    cam = scene.camera
    zt = np.minimum(z, np.float32(_TEXTURE_FAR))
    xt = xs * (zt / np.float32(cam.focal)) - cam.curve_offset(zt)
    grain = _sample(tex, xt, zt + np.float32(cam_z), _GRAIN_PER_M)
    grain *= np.clip(np.float32(12.0) / z, 0.25, 1.0)
    blotch = _sample(tex, np.ascontiguousarray(xt[::2, ::2]), zt[::2] + np.float32(cam_z), _PATCH_PER_M)
    grain += cv2.resize(blotch, (xt.shape[1], xt.shape[0]), interpolation=cv2.INTER_LINEAR) * np.float32(1.2)
    return grain


def _strip(cam: Camera, x0: float, x1: float, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """Ground quads x0..x1 by z0..z1, shape (n, 4, 2)."""
    xs = np.array([x0, x1, x1, x0])
    zs = np.stack([z0, z0, z1, z1], axis=1)
    return cam.project(xs[None, :], 0.0, zs)


def _fill_mask(mask: np.ndarray, polys: list[np.ndarray], y0: int) -> None:
    if polys:
        pts = [fixed_point(p - (0.0, y0)) for p in polys]
        cv2.fillPoly(mask, pts, 1, cv2.LINE_8, shift=SHIFT)


def _draw_markings(mask: np.ndarray, scene: Scene, cam_z: float, crossings: list[float], y0: int) -> None:
    """Lane lines, dashes and zebra crossings into a mask of the ground rows."""
    cam, road = scene.camera, scene.road
    near = NEAR_CLIP + 0.5
    solid = np.geomspace(near, 150.0, 40)  # short pieces near the camera follow the curve
    dash_len, period = road.dash
    first = np.floor((cam_z + near) / period) * period - cam_z
    dash0 = np.arange(first, 150.0, period)
    dash1 = dash0 + dash_len
    dash0 = np.maximum(dash0, near)
    keep = dash1 > dash0
    for lx, kind in road.lines:
        if kind == "dash":
            _fill_mask(mask, list(_strip(cam, lx - 0.07, lx + 0.07, dash0[keep], dash1[keep])), y0)
            continue
        for off in ((-0.12, 0.12) if kind == "double" else (0.0,)):
            left = cam.project(lx + off - 0.06, 0.0, solid)
            right = cam.project(lx + off + 0.06, 0.0, solid)
            _fill_mask(mask, [np.concatenate([left, right[::-1]])], y0)
    for zc in crossings:
        z0, z1 = max(zc - cam_z, near), zc - cam_z + 3.5
        if z1 > z0:
            stripes = np.arange(road.left + 0.5, road.right - 0.6, 1.0)
            _fill_mask(mask, [_strip(cam, s, s + 0.5, np.array([z0]), np.array([z1]))[0] for s in stripes], y0)


def make_background(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sky with clouds and a hazy distant skyline, for the rows above the ground."""
    cam, look = scene.camera, scene.look
    rows, w = ground_rows(cam), cam.width
    if rows == 0:
        return np.zeros((0, w, 3), np.uint8), np.zeros((0, w), np.uint8)
    # The sky is smooth: shade it at quarter resolution and let bilinear upsampling fill in.
    small_rows, small_w = rows // 4 + 2, w // 4 + 2
    y = (np.arange(small_rows, dtype=np.float32) + 0.5) * (rows / small_rows)
    t = np.clip((cam.horizon - y) / max(cam.horizon, 1.0), 0, 1)
    top, hor = np.array(look.sky_top, np.float32), np.array(look.sky_horizon, np.float32)
    sky = np.repeat((hor + (top - hor) * np.sqrt(t)[:, None])[:, None, :], small_w, axis=1)
    if look.cloudiness > 0:
        # Two octaves, stretched horizontally like cumulus banks seen from the ground.
        noise = np.zeros((small_rows, small_w), np.float32)
        for cells, weight in ((10, 0.8), (4, 0.45)):
            coarse = rng.standard_normal((small_rows // cells + 2, small_w // (2 * cells) + 2)).astype(np.float32)
            noise += weight * cv2.resize(coarse, (small_w, small_rows), interpolation=cv2.INTER_CUBIC)
        cover = np.clip((noise - 1.2 + 1.2 * look.cloudiness) * 0.9, 0, 1) ** 1.5
        cloud = np.array([238, 238, 242], np.float32) * (0.86 + 0.1 * np.clip(noise - 0.5, -1, 1))[..., None]
        sky += (cloud - sky) * cover[..., None] * np.float32(0.95)
    image = cv2.resize(cv2.convertScaleAbs(sky), (w, rows), interpolation=cv2.INTER_LINEAR)
    labels = np.full((rows, w), SKY, np.uint8)
    _skyline(Canvas(image, labels, cam.height / 256.0), scene, rng)
    return image, labels


def _skyline(cv: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    cam, look = scene.camera, scene.look
    haze = np.array(look.sky_horizon, np.float32)
    base = cam.horizon + 1.0
    x = -rng.uniform(0, 20) * cv.px
    city = rng.random() < 0.7
    while x < cam.width:
        u = rng.random(6)
        w = (6 + 34 * u[0]) * cv.px
        if city and u[1] < 0.75:
            h = (4 + 30 * u[2] ** 1.5) * cv.px
            colour = tuple(int(c) for c in haze * 0.55 + np.array((110, 112, 120)) * u[3] * 0.4)
            pts = np.array([[x, base - h], [x + w, base - h], [x + w, base], [x, base]])
            cv2.fillConvexPoly(cv.image, pts.astype(np.int32), colour)
            cv2.fillConvexPoly(cv.labels, pts.astype(np.int32), BUILDING)
        elif u[1] < 0.9:
            r = (4 + 10 * u[2]) * cv.px
            colour = tuple(int(c) for c in haze * 0.35 + np.array((60, 90, 50)) * (0.5 + 0.3 * u[3]))
            centre = (int(x + w / 2), int(base))
            axes = (int(w / 2 + r), int(r))
            cv2.ellipse(cv.image, centre, axes, 0, 180, 360, colour, -1)
            cv2.ellipse(cv.labels, centre, axes, 0, 180, 360, VEGETATION, -1)
        x += w
