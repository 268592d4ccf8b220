"""Procedural street scenes with pixel-exact Cityscapes labels, for training a demo model on CPU.

A scene is a small 3-D world (road cross-section, buildings, trees, poles, signs, people,
cars) seen through a pinhole camera. Everything that carries a label is rasterised into
the image and the label map by the same cv2 call; texture, lighting, blur, noise and JPEG
artefacts are applied to the image afterwards. ``render_video`` drives the camera forward
through the same world, so its first frame equals ``render_scene`` of the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from training.scene_actors import car_footprint, draw_car, draw_person
from training.scene_generate import make_chunk, make_scene
from training.scene_ground import draw_ground, ground_rows, make_background, make_texture
from training.scene_layout import (
    CHUNK_LENGTH,
    FRAME_DT,
    NEAR_CLIP,
    VIEW_DEPTH,
    Building,
    Car,
    Chunk,
    Hedge,
    Lamp,
    Person,
    Scene,
    Sign,
    Tree,
)
from training.scene_paint import SHIFT, Canvas, draw_building, draw_hedge, draw_lamp, draw_sign, draw_tree, fixed_point

CLASS_IDS: dict[str, int] = {
    "road": 0, "sidewalk": 1, "building": 2, "pole": 5, "traffic sign": 7, "vegetation": 8,
    "terrain": 9, "sky": 10, "person": 11, "car": 13,
}


def _grain_strength() -> np.ndarray:
    """Per-class strength of the screen-space grain, as a cv2 LUT: foliage needs visible leaf
    texture, flat paint very little."""
    lut = np.zeros((1, 256), np.float32)
    for name, amp in (("road", 0.02), ("sidewalk", 0.03), ("building", 0.06), ("pole", 0.04),
                      ("traffic sign", 0.02), ("vegetation", 0.3), ("terrain", 0.08), ("sky", 0.012),
                      ("person", 0.05), ("car", 0.03)):
        lut[0, CLASS_IDS[name]] = amp
    return lut


def _normal_quantiles() -> np.ndarray:
    """Gaussian quantiles as a cv2 LUT: looking up uniform bytes is ~20x faster than drawing normals."""
    q = np.sort(np.random.default_rng(0).standard_normal(256))
    return ((q - q.mean()) / q.std()).astype(np.float32).reshape(1, 256)


_DETAIL = _grain_strength()
_NORMAL = _normal_quantiles()


@dataclass(frozen=True)
class _Assets:
    texture: np.ndarray  # tileable ground noise
    sky: np.ndarray  # rows above the ground: sky and skyline
    sky_labels: np.ndarray
    grain: np.ndarray  # HxW screen-space detail noise
    vignette: np.ndarray  # HxW gain


def _prepare(seed: int, height: int, width: int) -> tuple[Scene, _Assets]:
    if height < 16 or width < 16:
        raise ValueError(f"scene size {height}x{width} is too small")
    scene = make_scene(seed, height, width)
    rng = np.random.default_rng([seed, 3])
    sky, sky_labels = make_background(scene, rng)
    fine = rng.random((height, width), dtype=np.float32) - 0.5
    coarse = rng.random((height // 3 + 1, width // 3 + 1), dtype=np.float32) - 0.5
    grain = 2.0 * (0.45 * fine + 0.9 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC))
    xx = ((np.arange(width, dtype=np.float32) + 0.5) / (width / 2) - 1.0) ** 2
    yy = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (width / 2)) ** 2
    vignette = 1.0 - np.float32(scene.look.vignette / 1.25) * (yy[:, None] + xx[None, :])
    return scene, _Assets(make_texture(rng), sky, sky_labels, grain.astype(np.float32), vignette)


def _chunks(scene: Scene, cam_z: float, cache: dict[int, Chunk]) -> list[Chunk]:
    # A chunk entirely behind the camera or beyond VIEW_DEPTH contributes nothing visible.
    first = int(np.floor((cam_z - 2.0) / CHUNK_LENGTH))
    last = int(np.ceil((cam_z + VIEW_DEPTH) / CHUNK_LENGTH)) - 1
    for k in [k for k in cache if k < first]:
        del cache[k]
    for k in range(first, last + 1):
        if k not in cache:
            cache[k] = make_chunk(scene, k)
    return [cache[k] for k in range(first, last + 1)]


def _shadow_map(scene: Scene, chunks: list[Chunk], cars: list[tuple[Car, float]], cam_z: float) -> np.ndarray:
    """Multiplicative shading of the ground rows: building, tree and car shadows."""
    cam, look = scene.camera, scene.look
    y0 = ground_rows(cam)
    out = np.ones((cam.height - y0, cam.width), np.float32)
    polys: list[np.ndarray] = []
    if look.shadow < 1.0:
        for chunk in chunks:
            for b in chunk.buildings:
                z0, z1 = max(b.z0 - cam_z, NEAR_CLIP), b.z1 - cam_z
                if b.side == look.sun_side and z1 > z0 and z0 < VIEW_DEPTH:
                    z = np.linspace(z0, z1, 5)
                    reach = b.x - b.side * b.height * look.shadow_reach
                    polys.append(np.concatenate([cam.project(b.x, 0.0, z), cam.project(reach, 0.0, z[::-1])]))
            for t in chunk.props:
                if isinstance(t, Tree) and NEAR_CLIP + t.crown_r < t.z - cam_z < VIEW_DEPTH:
                    cx = t.x - look.sun_side * t.trunk_h * look.shadow_reach
                    ring = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                    polys.append(cam.project(cx + t.crown_r * np.cos(ring), 0.0,
                                             t.z - cam_z + t.crown_r * 0.8 * np.sin(ring)))
    for poly in polys:
        cv2.fillPoly(out, [fixed_point(poly - (0.0, y0))], look.shadow, cv2.LINE_8, shift=SHIFT)
    for car, dz in cars:
        foot = car_footprint(cam, car, dz)
        if foot is not None:
            cv2.fillConvexPoly(out, fixed_point(foot - (0.0, y0)), min(look.shadow, 0.85) * 0.6,
                               cv2.LINE_8, SHIFT)
    return cv2.blur(out, (3, 3)) if out.size else out


def _draw_order(scene: Scene, chunks: list[Chunk], time: float, cam_z: float) -> list[tuple[int, float, object, float]]:
    """Painter's order: facades behind everything on the street, then far-to-near."""
    items: list[tuple[int, float, object, float]] = []
    for chunk in chunks:
        items += [(0, b.z0 - cam_z, b, -cam_z) for b in chunk.buildings]
        items += [(1, h.z0 - cam_z, h, -cam_z) for h in chunk.hedges]
        for p in chunk.props:
            dz = getattr(p, "vz", 0.0) * time - cam_z
            items.append((2, p.z + dz, p, dz))
    for car in scene.traffic:
        dz = car.vz * time - cam_z
        items.append((2, car.z + dz, car, dz))
    items = [it for it in items if it[1] < VIEW_DEPTH]
    items.sort(key=lambda it: (it[0], -it[1]))
    return items


def _render_frame(scene: Scene, assets: _Assets, chunks: list[Chunk], frame: int) -> tuple[np.ndarray, np.ndarray]:
    cam, look = scene.camera, scene.look
    time = frame * FRAME_DT
    cam_z = scene.ego_speed * time
    order = _draw_order(scene, chunks, time, cam_z)
    cv = Canvas(np.empty((cam.height, cam.width, 3), np.uint8), np.empty((cam.height, cam.width), np.uint8),
                cam.height / 256.0)
    rows = ground_rows(cam)
    cv.image[:rows], cv.labels[:rows] = assets.sky, assets.sky_labels
    cars = [(obj, dz) for _, _, obj, dz in order if isinstance(obj, Car)]
    shadow = _shadow_map(scene, chunks, cars, cam_z)
    crossings = [z for chunk in chunks for z in chunk.crossings]
    draw_ground(cv, scene, assets.texture, cam_z, shadow, crossings)
    for _, _, obj, dz in order:
        if isinstance(obj, Building):
            draw_building(cv, cam, obj, dz, 0 if look.shadow >= 1.0 else look.sun_side)
        elif isinstance(obj, Person):
            draw_person(cv, cam, obj, dz, time)
        else:
            _DRAW[type(obj)](cv, cam, obj, dz)
    image = _finish(scene, assets, cv, np.random.default_rng([scene.seed, 2, frame]))
    return image, cv.labels


_DRAW = {Hedge: draw_hedge, Tree: draw_tree, Lamp: draw_lamp, Sign: draw_sign, Car: draw_car}


def _finish(scene: Scene, assets: _Assets, cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Image-only effects: texture grain, lighting, optics blur, sensor noise, compression.

    Works in place on one float buffer: fresh multi-megabyte temporaries cost more in page
    faults than the arithmetic itself.
    """
    look = scene.look
    factor = (1.0 + cv2.LUT(cv.labels, _DETAIL) * assets.grain) * assets.vignette
    image = cv.image.astype(np.float32)
    image *= factor[..., None]
    warm = 0.08 * look.warmth
    gains = look.gain * np.array([1.0 + warm, 1.0, 1.0 - warm], np.float32)
    matrix = np.zeros((3, 4), np.float32)
    matrix[:, :3] = np.diag(gains * look.contrast)
    matrix[:, 3] = gains * 128.0 * (1.0 - look.contrast)
    cv2.transform(image, matrix[::-1].copy(), dst=image)  # reversed rows: RGB in, BGR out
    if look.blur_sigma > 0:
        cv2.GaussianBlur(image, (0, 0), look.blur_sigma * cv.px, dst=image)
    uniform = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
    cv2.add(image, cv2.LUT(uniform, _NORMAL * np.float32(look.noise_sigma)), dst=image)
    out = cv2.convertScaleAbs(image)
    if look.jpeg_quality:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else out
    return out


def render_scene(seed: int, *, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image uint8 HxWx3 in BGR order as OpenCV uses, labels uint8 HxW of Cityscapes train ids).

    Same seed + size -> identical arrays, bit for bit.
    """
    scene, assets = _prepare(seed, height, width)
    return _render_frame(scene, assets, _chunks(scene, 0.0, {}), 0)


def render_video(seed: int, *, frames: int, height: int = 256,
                 width: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (image, labels) per frame of one continuous scene with motion.

    The camera drives forward at the scene's speed (FRAME_DT seconds per frame), so road
    markings, kerbs, poles, trees and buildings stream past and grow towards the edges;
    other cars and pedestrians move at their own speeds. Deterministic from the seed, and
    frame 0 equals ``render_scene(seed)``.
    """
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    scene, assets = _prepare(seed, height, width)  # validates the size before the first next()
    return _frames(scene, assets, frames)


def _frames(scene: Scene, assets: _Assets, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    cache: dict[int, Chunk] = {}
    for frame in range(frames):
        chunks = _chunks(scene, scene.ego_speed * frame * FRAME_DT, cache)
        yield _render_frame(scene, assets, chunks, frame)
