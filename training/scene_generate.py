"""Random generation of the street layout: scene-wide parameters and per-chunk objects.

Every object draws its numbers from one batch of uniforms (``_Draws``), which is much
cheaper than one generator call per number and keeps each object's parameters independent.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from training.scene_layout import (
    CHUNK_LENGTH,
    KERB,
    Building,
    Camera,
    Car,
    Chunk,
    Colour,
    Hedge,
    Lamp,
    Look,
    Person,
    Road,
    Scene,
    SideStyle,
    Sign,
    Tree,
)

T = TypeVar("T")
# default_rng rejects negative entropy; chunks behind the start have negative indices.
_CHUNK_OFFSET = 1 << 20

WALLS: tuple[Colour, ...] = (
    (205, 190, 160), (225, 215, 190), (150, 78, 58), (112, 62, 50), (150, 150, 148),
    (220, 220, 214), (222, 198, 130), (158, 176, 196), (206, 140, 112), (92, 92, 98),
    (188, 168, 132), (176, 160, 150), (120, 112, 104),
)
GLASS: tuple[Colour, ...] = ((38, 46, 58), (82, 108, 138), (66, 70, 78), (120, 140, 160), (28, 30, 34))
LEAVES: tuple[Colour, ...] = ((52, 92, 36), (70, 108, 40), (38, 72, 30), (80, 110, 46), (56, 94, 56))
# Lawn is lighter and yellower than foliage so flat ground green is not confused with trees.
GRASS: tuple[Colour, ...] = ((118, 150, 62), (134, 154, 72), (152, 148, 96), (112, 146, 70))
CAR_PAINT: tuple[Colour, ...] = (
    (225, 225, 228), (30, 30, 34), (170, 172, 178), (98, 100, 106), (160, 30, 28),
    (30, 55, 120), (20, 35, 70), (40, 70, 50), (215, 180, 40), (190, 175, 150), (120, 20, 30),
)
CLOTHES: tuple[Colour, ...] = (
    (30, 30, 36), (60, 60, 70), (200, 200, 205), (40, 60, 110), (140, 30, 40), (90, 70, 50),
    (180, 150, 110), (50, 90, 60), (220, 120, 40), (110, 40, 110), (70, 110, 160),
)
SKIN: tuple[Colour, ...] = ((235, 200, 175), (205, 160, 125), (160, 110, 80), (110, 75, 55))
SIGN_STYLES: tuple[tuple[str, Colour, Colour], ...] = (
    ("circle", (200, 30, 30), (240, 240, 240)), ("circle", (30, 80, 170), (30, 80, 170)),
    ("triangle", (200, 30, 30), (245, 245, 240)), ("square", (25, 80, 170), (25, 80, 170)),
    ("octagon", (200, 25, 25), (200, 25, 25)), ("rect", (30, 110, 60), (30, 110, 60)),
    ("diamond", (240, 200, 30), (240, 200, 30)), ("rect", (240, 240, 240), (240, 240, 240)),
)
_SKIES: tuple[tuple[Colour, Colour], ...] = (
    ((70, 120, 200), (175, 205, 232)),  # clear
    ((110, 150, 205), (205, 218, 230)),  # hazy
    ((165, 172, 184), (214, 216, 222)),  # overcast: casts no shadows
    ((85, 110, 170), (236, 196, 160)),  # low sun
)
_OVERCAST = 2


class _Draws:
    """Hands out one pre-drawn batch of uniforms in order."""

    __slots__ = ("_values", "_next")

    def __init__(self, rng: np.random.Generator, n: int = 32) -> None:
        self._values = rng.random(n).tolist()
        self._next = 0

    def unit(self) -> float:
        value = self._values[self._next]
        self._next += 1
        return value

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.unit()

    def chance(self, p: float) -> bool:
        return self.unit() < p

    def pick(self, options: tuple[T, ...]) -> T:
        return options[min(int(self.unit() * len(options)), len(options) - 1)]

    def tint(self, colour: Colour, amount: float) -> Colour:
        return tuple(int(min(255.0, max(0.0, c + (2.0 * self.unit() - 1.0) * amount))) for c in colour)


def make_scene(seed: int, height: int, width: int) -> Scene:
    """Scene-wide parameters: camera, road cross-section, side styles, lighting, traffic."""
    rng = np.random.default_rng([seed, 0])
    d = _Draws(rng, 8)
    camera = Camera(
        height=height, width=width, focal=width * d.uniform(0.85, 1.2), cx=width * d.uniform(0.38, 0.62),
        horizon=height * d.uniform(0.34, 0.5), cam_h=d.uniform(1.15, 1.7),
        curve=d.uniform(-0.0025, 0.0025) if d.chance(0.6) else 0.0,
    )
    ego_speed = d.uniform(5.0, 12.0)
    road = _make_road(_Draws(rng, 40))
    sides = (_make_side(_Draws(rng), road, -1), _make_side(_Draws(rng), road, 1))
    look = _make_look(_Draws(rng))
    return Scene(seed, camera, road, sides, look, _make_traffic(rng, road, ego_speed), ego_speed)


def _make_road(d: _Draws) -> Road:
    lanes = d.pick((1, 2, 2, 2, 3, 4, 4))
    oncoming = 0 if lanes == 1 or d.chance(0.2) else max(1, lanes // 2)
    ego = oncoming + min(int(d.unit() * (lanes - oncoming)), lanes - oncoming - 1)
    lw = d.uniform(2.9, 3.7)
    park = (d.chance(0.35), d.chance(0.45))
    left = -(ego + 0.5) * lw - 2.2 * park[0]
    right = (lanes - ego - 0.5) * lw + 2.2 * park[1]
    divider = "double" if d.chance(0.5) else "solid"
    lines = [((i - 0.5 - ego) * lw, divider if i == oncoming else "dash") for i in range(1, lanes)]
    if d.chance(0.7):
        lines.append((-(ego + 0.5) * lw + 0.15 * (not park[0]), "solid"))
        lines.append(((lanes - ego - 0.5) * lw - 0.15 * (not park[1]), "solid"))
    grey = d.uniform(58, 100)
    asphalt = d.tint((grey, grey, grey * d.uniform(1.0, 1.08)), 5)
    paving = d.pick(((168, 168, 164), (178, 140, 128), (188, 178, 152), (150, 152, 156)))
    lift = max(0.0, grey + 55 - min(paving))  # keeps pavement clearly brighter than asphalt
    verge = tuple(d.uniform(0.8, 2.2) if d.chance(0.4) else 0.0 for _ in range(2))
    return Road(
        left=left, right=right,
        sidewalk=tuple(v + KERB + d.uniform(1.6, 4.5) for v in verge), verge=verge,
        outer_is_terrain=(d.chance(0.55), d.chance(0.55)),
        parking=(left + 1.1 if park[0] else None, right - 1.1 if park[1] else None),
        lines=tuple(lines),
        same_lanes=tuple((i - ego) * lw for i in range(oncoming, lanes)),
        oncoming_lanes=tuple((i - ego) * lw for i in range(oncoming)),
        asphalt=asphalt, paving=d.tint(tuple(min(c + lift, 235) for c in paving), 8),
        kerb=d.tint((200, 200, 196), 10), grass=d.tint(d.pick(GRASS), 6),
        paint=(232, 196, 60) if d.chance(0.15) else (236, 236, 232), tile=d.uniform(0.3, 0.8),
        dash=(d.uniform(2.0, 4.0), d.uniform(6.0, 12.0)),
    )


def _make_side(d: _Draws, road: Road, side: int) -> SideStyle:
    i = 0 if side < 0 else 1
    kerb = road.left if side < 0 else road.right
    outer = kerb + side * road.sidewalk[i]
    green = d.chance(0.25)
    setback = d.uniform(0.5, 4.0) if d.chance(0.5) else 0.0
    street_tree = KERB + road.verge[i] / 2 if road.verge[i] else d.uniform(0.8, 1.4)
    return SideStyle(
        side=side, kerb_x=kerb, walk_x=kerb + side * (KERB + road.verge[i]), outer_x=outer,
        facade_x=outer + side * setback,
        build_prob=d.uniform(0.0, 0.45) if green else d.uniform(0.6, 0.97),
        height_range=(d.uniform(6, 12), d.uniform(14, 34)), walls=(d.pick(WALLS), d.pick(WALLS), d.pick(WALLS)),
        tree_spacing=d.uniform(7, 16) if d.chance(0.65) else 0.0, tree_x=kerb + side * street_tree,
        lamp_spacing=d.uniform(16, 32) if d.chance(0.85) else 0.0, lamp_phase=d.uniform(0, 30),
        people_rate=d.uniform(0.8, 3.5), sign_prob=d.uniform(0.5, 1.0),
        hedge_prob=d.uniform(0.2, 0.9) if setback > 0.5 or green else 0.1,
    )


def _make_look(d: _Draws) -> Look:
    sky = min(int(d.unit() * len(_SKIES)), len(_SKIES) - 1)
    top, horizon = _SKIES[sky]
    shadow = d.uniform(0.45, 0.75)
    return Look(
        sky_top=d.tint(top, 12), sky_horizon=d.tint(horizon, 8),
        cloudiness=d.uniform(0.0, 0.9), gain=d.uniform(0.7, 1.2), contrast=d.uniform(0.8, 1.15),
        warmth=d.uniform(-1.0, 1.0), sun_side=-1 if d.chance(0.5) else 1,
        shadow=1.0 if sky == _OVERCAST or d.chance(0.15) else shadow, shadow_reach=d.uniform(0.15, 0.9),
        blur_sigma=d.uniform(0.4, 1.1) if d.chance(0.7) else 0.0, noise_sigma=d.uniform(1.0, 6.0),
        jpeg_quality=int(d.uniform(35, 85)) if d.chance(0.35) else 0, vignette=d.uniform(0.0, 0.35),
    )


def _make_car(d: _Draws, x: float, z: float, vz: float, facing: int) -> Car:
    van = d.chance(0.15)
    return Car(
        x=x + d.uniform(-0.25, 0.25), z=z, vz=vz,
        length=d.uniform(4.6, 5.4) if van else d.uniform(3.8, 4.9), width=d.uniform(1.7, 1.95),
        height=d.uniform(1.9, 2.3) if van else d.uniform(1.4, 1.6),
        colour=d.tint(d.pick(CAR_PAINT), 10), facing=facing, van=van,
    )


def _make_traffic(rng: np.random.Generator, road: Road, ego_speed: float) -> tuple[Car, ...]:
    """Moving cars. Each lane moves as a platoon so cars in one lane never overlap."""
    cars: list[Car] = []
    for lane in road.same_lanes:
        d = _Draws(rng, 4)
        ego_lane = abs(lane) < 0.1
        relative = d.uniform(0.3, 3.0) if ego_lane else d.uniform(-3.0, 3.0)  # ahead of us: pulls away
        z = d.uniform(7.0, 30.0) if ego_lane else d.uniform(3.0, 20.0)
        while z < 130.0:
            d = _Draws(rng, 16)
            if d.chance(0.45):
                car = _make_car(d, lane, z, ego_speed + relative, 1)
                cars.append(car)
                z += car.length
            z += d.uniform(6.0, 35.0)
    for lane in road.oncoming_lanes:
        d = _Draws(rng, 4)
        z, speed = d.uniform(5.0, 40.0), d.uniform(7.0, 13.0)
        while z < 400.0:  # a stream long enough for ~20 s of video
            d = _Draws(rng, 16)
            car = _make_car(d, lane, z, -speed, -1)
            cars.append(car)
            z += car.length + d.uniform(10.0, 60.0)
    return tuple(cars)


def make_chunk(scene: Scene, index: int) -> Chunk:
    """Static objects (and pedestrians) with z in [index, index + 1) * CHUNK_LENGTH."""
    rng = np.random.default_rng([scene.seed, 1, index + _CHUNK_OFFSET])
    z0, z1 = index * CHUNK_LENGTH, (index + 1) * CHUNK_LENGTH
    buildings: list[Building] = []
    hedges: list[Hedge] = []
    props: list[Tree | Lamp | Sign | Person | Car] = []
    for st in scene.sides:
        gaps = _place_buildings(rng, st, z0, z1, buildings)
        _place_greenery(rng, st, gaps, hedges, props)
        _place_street_furniture(rng, st, z0, z1, props)
        _place_people(rng, scene.road, st, z0, z1, props)
        _place_parked_cars(rng, scene.road, st, z0, z1, props)
    d = _Draws(rng, 2)
    crossings = (d.uniform(z0, z1 - 4.0),) if d.chance(0.12) else ()
    return Chunk(tuple(buildings), tuple(hedges), tuple(props), crossings)


def _make_building(d: _Draws, st: SideStyle, z: float, length: float) -> Building:
    floor_h = d.uniform(2.9, 3.8)
    glass = d.pick(GLASS)
    return Building(
        side=st.side, x=st.facade_x + st.side * (d.uniform(0.0, 2.0) if d.chance(0.3) else 0.0),
        z0=z, z1=z + length, height=max(d.uniform(*st.height_range), 2 * floor_h + 1), depth=d.uniform(8.0, 20.0),
        wall=d.tint(d.pick(st.walls), 14), glass=(d.tint(glass, 12), d.tint(glass, 12), d.tint(d.pick(GLASS), 12)),
        trim=d.tint(d.pick(WALLS), 10), style=d.pick(("grid", "grid", "grid", "ribbon", "curtain")),
        floor_h=floor_h, col_w=d.uniform(2.2, 4.0), win_w=d.uniform(0.35, 0.7), win_h=d.uniform(0.38, 0.62),
        shop=d.pick(CLOTHES) if d.chance(0.4) else None,
    )


def _place_buildings(rng: np.random.Generator, st: SideStyle, z0: float, z1: float,
                     out: list[Building]) -> list[tuple[float, float]]:
    """Appends buildings along one side and returns the gaps between them."""
    gaps: list[tuple[float, float]] = []
    z = z0
    while z < z1 - 4.0:
        d = _Draws(rng, 40)
        if not d.chance(st.build_prob):
            length = min(d.uniform(6.0, 20.0), z1 - z)
            gaps.append((z, z + length))
            z += length
            continue
        length = min(d.uniform(8.0, 30.0), z1 - z)
        out.append(_make_building(d, st, z, length))
        z += length
        if d.chance(0.45):
            gap = min(d.uniform(1.0, 8.0), z1 - z)
            gaps.append((z, z + gap))
            z += gap
    if z < z1:
        gaps.append((z, z1))
    return gaps


def _make_tree(rng: np.random.Generator, x: float, z: float) -> Tree:
    d = _Draws(rng, 16)
    conifer = d.chance(0.15)
    leaves = d.pick(LEAVES)
    n = 7 + int(d.unit() * 6)
    blobs = rng.random((n, 4)) * (1.4, 1.2, 0.3, 2.999) - (0.7, 0.6, -0.35, 0.0)
    blobs[:, 3] = np.sort(np.floor(blobs[:, 3]))  # dark blobs first, sunlit ones on top
    return Tree(
        x=x, z=z, trunk_h=d.uniform(1.8, 3.5) + (1.0 if conifer else 0.0), trunk_w=d.uniform(0.2, 0.45),
        crown_r=d.uniform(1.4, 3.0), conifer=conifer, bark=d.tint((92, 76, 62), 14),
        leaves=(tuple(int(c * 0.7) for c in leaves), d.tint(leaves, 8), tuple(min(255, int(c * 1.2)) for c in leaves)),
        blobs=blobs,
    )


def _place_greenery(rng: np.random.Generator, st: SideStyle, gaps: list[tuple[float, float]],
                    hedges: list[Hedge], props: list[Tree | Lamp | Sign | Person | Car]) -> None:
    """Hedges along the pavement and trees set back from it, in the gaps between buildings."""
    for g0, g1 in gaps:
        d = _Draws(rng, 8)
        if d.chance(st.hedge_prob) and g1 - g0 > 2.0:
            x0 = st.outer_x + st.side * 0.1
            hedges.append(Hedge(x0, x0 + st.side * d.uniform(0.6, 1.4), g0 + 0.3, g1 - 0.3,
                                d.uniform(0.7, 1.6), d.tint(d.pick(LEAVES), 10)))
        for z in np.arange(g0 + 2.0, g1 - 1.0, d.uniform(5.0, 12.0)):
            v = _Draws(rng, 3)
            if v.chance(0.55):
                x = st.outer_x + st.side * v.uniform(1.5, 5.0)
                props.append(_make_tree(rng, x, float(z) + v.uniform(-1, 1)))


def _place_street_furniture(rng: np.random.Generator, st: SideStyle, z0: float, z1: float,
                            props: list[Tree | Lamp | Sign | Person | Car]) -> None:
    """Street trees and lamps at regular spacing along the kerb, plus signs."""
    if st.tree_spacing > 0:
        for z in np.arange(np.ceil(z0 / st.tree_spacing) * st.tree_spacing, z1, st.tree_spacing):
            d = _Draws(rng, 2)
            if d.chance(0.85):
                props.append(_make_tree(rng, st.tree_x, float(z) + d.uniform(-0.8, 0.8)))
    if st.lamp_spacing > 0:
        first = np.ceil((z0 - st.lamp_phase) / st.lamp_spacing) * st.lamp_spacing + st.lamp_phase
        for z in np.arange(first, z1, st.lamp_spacing):
            d = _Draws(rng, 8)
            props.append(Lamp(st.kerb_x + st.side * 0.45, float(z), d.uniform(5.5, 9.0), d.uniform(0.14, 0.24),
                              -st.side * d.uniform(0.0, 2.2), d.tint((110, 112, 116), 30)))
    for chance in (st.sign_prob, st.sign_prob * 0.4):
        d = _Draws(rng, 12)
        if d.chance(chance):
            shape, rim, face = d.pick(SIGN_STYLES)
            props.append(Sign(st.kerb_x + st.side * d.uniform(0.3, 0.8), d.uniform(z0, z1), d.uniform(2.0, 2.8),
                              d.uniform(0.6, 0.95), shape, rim, face, d.tint((130, 132, 136), 25)))


def _place_people(rng: np.random.Generator, road: Road, st: SideStyle, z0: float, z1: float,
                  props: list[Tree | Lamp | Sign | Person | Car]) -> None:
    far = st.outer_x if road.outer_is_terrain[0 if st.side < 0 else 1] else st.facade_x
    for _ in range(rng.poisson(st.people_rate)):
        d = _Draws(rng, 24)
        walking = d.chance(0.7)
        speed = d.uniform(0.8, 1.6) * (1 if d.chance(0.5) else -1)
        props.append(Person(
            x=d.uniform(st.walk_x + st.side * 0.35, far - st.side * 0.4), z=d.uniform(z0, z1),
            vz=speed if walking else 0.0, height=d.uniform(1.5, 1.95), shirt=d.tint(d.pick(CLOTHES), 15),
            pants=d.tint(d.pick(CLOTHES[:7]), 10), skin=d.pick(SKIN),
            hair=d.tint((40, 30, 25), 20) if d.chance(0.8) else (200, 190, 160),
            phase=d.uniform(0, 2 * np.pi) if walking else -1.0,
        ))


def _place_parked_cars(rng: np.random.Generator, road: Road, st: SideStyle, z0: float, z1: float,
                       props: list[Tree | Lamp | Sign | Person | Car]) -> None:
    lane = road.parking[0 if st.side < 0 else 1]
    if lane is None:
        return
    # Cars park in the direction of the adjacent traffic, so on a two-way road we see the
    # fronts of those parked on the left.
    facing = 1 if st.side > 0 or not road.oncoming_lanes else -1
    z = z0 + rng.random() * 4.0
    while z < z1 - 4.0:
        d = _Draws(rng, 16)
        if d.chance(0.7):
            car = _make_car(d, lane, z, 0.0, facing)
            props.append(car)
            z += car.length
        z += d.uniform(6.0, 16.0) if d.chance(0.25) else d.uniform(0.6, 4.0)
