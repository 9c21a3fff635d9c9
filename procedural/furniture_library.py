"""The parametric furniture library: each kind is a function of (size, rng) that builds one merged
triangle mesh from boxes and cylinders.

Local frame of every piece: the footprint is centred on the origin, x in [-w/2, w/2] (width),
y in [-d/2, d/2] (depth), z in [0, h]; the back is at y = -d/2 and the front faces +y. The geometry
never leaves that box, so the placement rules can use it as the piece's oriented bounding box.

Hung pieces (paintings, mirrors, wall cabinets, range hoods, towel radiators) have the same
frame; the placer lifts them to their height on the wall (:data:`HUNG_HEIGHT`).

Entry points: :func:`draw_size` (a size drawn from the kind's range), :func:`build_furniture`
(the mesh), :data:`DEFAULT_CLASS` (the ADE20K class of each kind: a name or, where ADE20K's names
are ambiguous, the 0-based palette index), :data:`WALL_KINDS`, :data:`HUNG_KINDS`,
:data:`FRONT_CLEARANCE` (the floor kept free in front of a piece so it can be used).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from procedural.primitive_meshes import Mesh, box_between, cylinder_between, merge, transform

# (width, depth, height) ranges in metres, from which a size is drawn when the template gives none.
SIZE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "sofa": ((1.8, 2.3), (0.85, 0.98), (0.78, 0.9)),
    "armchair": ((0.78, 0.95), (0.78, 0.9), (0.78, 0.95)),
    "coffee_table": ((0.9, 1.25), (0.5, 0.7), (0.38, 0.48)),
    "table": ((1.2, 1.7), (0.8, 0.95), (0.72, 0.77)),
    "chair": ((0.42, 0.5), (0.45, 0.52), (0.82, 0.95)),
    "bed": ((1.4, 1.7), (2.0, 2.15), (0.9, 1.1)),
    "nightstand": ((0.4, 0.55), (0.35, 0.45), (0.45, 0.6)),
    "shelf": ((0.8, 1.3), (0.3, 0.38), (0.8, 1.5)),
    "bookcase": ((0.8, 1.1), (0.3, 0.38), (1.8, 2.05)),
    "cabinet": ((0.8, 1.2), (0.45, 0.6), (0.8, 2.0)),
    "desk": ((1.0, 1.4), (0.55, 0.7), (0.72, 0.76)),
    "lamp": ((0.32, 0.45), (0.32, 0.45), (1.4, 1.7)),
    "plant": ((0.35, 0.6), (0.35, 0.6), (0.6, 1.3)),
    "rug": ((1.6, 2.4), (1.2, 1.7), (0.01, 0.01)),
    "painting": ((0.5, 1.0), (0.03, 0.04), (0.4, 0.75)),
    "tv_stand": ((1.2, 1.7), (0.4, 0.48), (0.45, 0.58)),
    # kitchens
    "counter": ((0.4, 1.2), (0.6, 0.62), (0.9, 0.92)),
    "kitchen_sink": ((0.8, 1.0), (0.6, 0.62), (1.18, 1.2)),  # the tap stands SINK_TAP above the worktop
    "stove": ((0.6, 0.6), (0.6, 0.62), (0.912, 0.932)),  # the burners stand STOVE_BURNER above the worktop
    "dishwasher": ((0.6, 0.6), (0.6, 0.62), (0.9, 0.92)),
    "refrigerator": ((0.6, 0.75), (0.64, 0.7), (1.75, 2.0)),
    "wall_cabinet": ((0.6, 1.0), (0.33, 0.36), (0.6, 0.72)),
    "range_hood": ((0.6, 0.6), (0.45, 0.5), (0.35, 0.5)),
    # bathrooms
    "bathtub": ((1.5, 1.8), (0.7, 0.8), (0.55, 0.6)),
    "shower": ((0.8, 1.0), (0.8, 1.0), (2.0, 2.1)),
    "toilet": ((0.36, 0.4), (0.62, 0.7), (0.75, 0.82)),
    "washbasin": ((0.5, 0.8), (0.42, 0.5), (0.85, 0.9)),
    "mirror": ((0.5, 0.8), (0.02, 0.03), (0.6, 0.9)),
    "towel_radiator": ((0.45, 0.6), (0.08, 0.1), (0.8, 1.2)),
    # dining rooms, bedrooms, offices, hallways
    "sideboard": ((1.2, 1.8), (0.42, 0.5), (0.75, 0.9)),
    "office_chair": ((0.58, 0.66), (0.58, 0.66), (0.95, 1.15)),
    "wardrobe": ((1.0, 2.0), (0.58, 0.62), (1.95, 2.2)),
    "chest_of_drawers": ((0.8, 1.2), (0.45, 0.5), (0.8, 1.0)),
    "bench": ((1.0, 1.4), (0.35, 0.42), (0.44, 0.5)),
    "stool": ((0.35, 0.42), (0.35, 0.42), (0.45, 0.75)),
}

DEFAULT_CLASS: dict[str, str | int] = {
    "sofa": "sofa",
    "armchair": "armchair",
    "coffee_table": "coffee table",
    "table": "table",
    "chair": "chair",
    "bed": "bed",
    "nightstand": "chest of drawers",
    "shelf": "shelf",
    "bookcase": "bookcase",
    "cabinet": "cabinet",
    "desk": "desk",
    "lamp": "lamp",
    "plant": "plant",
    "rug": "rug",
    "painting": "painting",
    "tv_stand": "cabinet",
    "counter": 45,  # "counter" (ADE20K also calls the buffet a counter)
    "kitchen_sink": "sink",
    "stove": "stove",
    "dishwasher": "dishwasher",
    "refrigerator": "refrigerator",
    "wall_cabinet": "cabinet",
    "range_hood": "hood",
    "bathtub": "tub",
    "shower": "shower",
    "toilet": "toilet",
    "washbasin": "sink",
    "mirror": "mirror",
    "towel_radiator": "radiator",
    "sideboard": "sideboard",
    "office_chair": "swivel chair",
    "wardrobe": "wardrobe",
    "chest_of_drawers": "chest of drawers",
    "bench": "bench",
    "stool": 110,  # "stool" (ADE20K also lists it among the toilet's names)
}

# Pieces whose back goes against a wall.
WALL_KINDS = frozenset({
    "sofa", "bed", "bookcase", "shelf", "cabinet", "tv_stand", "desk", "counter", "kitchen_sink", "stove", "dishwasher",
    "refrigerator", "bathtub", "toilet", "washbasin", "sideboard", "wardrobe", "chest_of_drawers", "bench",
})
# Pieces that hang on a wall: the height of their bottom above the floor, metres (a range drawn from).
HUNG_HEIGHT: dict[str, tuple[float, float]] = {
    "painting": (1.1, 1.4), "mirror": (1.15, 1.3), "wall_cabinet": (1.45, 1.5), "range_hood": (1.55, 1.65),
    "towel_radiator": (0.2, 0.3),
}
HUNG_KINDS = frozenset(HUNG_HEIGHT)
# Pieces exempt from the interpenetration rule: the rug lies under things.
EXEMPT_KINDS = frozenset({"rug"})
# Floor kept free in front of a piece (metres from its front), so that it can be used.
FRONT_CLEARANCE: dict[str, float] = {
    "toilet": 0.6, "washbasin": 0.6, "bathtub": 0.6, "shower": 0.6, "counter": 0.9, "kitchen_sink": 0.9, "stove": 0.9,
    "dishwasher": 0.9, "refrigerator": 0.9, "wardrobe": 0.7, "bookcase": 0.5, "chest_of_drawers": 0.6, "tv_stand": 0.4,
    "sideboard": 0.5,
}


def draw_size(kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """A (width, depth, height) drawn from the kind's range; square pieces (lamp, plant) stay square."""
    (w0, w1), (d0, d1), (h0, h1) = SIZE_RANGES[kind]
    w, d, h = float(rng.uniform(w0, w1)), float(rng.uniform(d0, d1)), float(rng.uniform(h0, h1))
    if kind in ("lamp", "plant"):
        d = w
    return (round(w, 4), round(d, 4), round(h, 4))


def build_furniture(kind: str, size, rng: np.random.Generator) -> Mesh:
    """The piece's mesh in its local frame (see the module docstring)."""
    w, d, h = (float(v) for v in size)
    return merge(_BUILDERS[kind](w, d, h, rng))


# --------------------------------------------------------------------------------------------
# Builders: (w, d, h, rng) -> list of meshes, all inside [-w/2, w/2] x [-d/2, d/2] x [0, h]
# --------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _legs(w: float, d: float, z1: float, rng: np.random.Generator, inset: float, thick: float,
          round_legs: bool | None = None) -> list[Mesh]:
    """Four legs from the floor to z1, inset from the footprint's corners."""
    if z1 <= 1e-4:
        return []
    if round_legs is None:
        round_legs = bool(rng.random() < 0.5)
    out = []
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            cx = sx * (w / 2.0 - inset - thick / 2.0)
            cy = sy * (d / 2.0 - inset - thick / 2.0)
            if round_legs:
                out.append(cylinder_between(cx, cy, 0.0, z1, thick / 2.0, 12))
            else:
                out.append(box_between(cx - thick / 2, cx + thick / 2, cy - thick / 2, cy + thick / 2, 0.0, z1))
    return out


def _seating(w: float, d: float, h: float, rng: np.random.Generator, cushions: int) -> list[Mesh]:
    leg_h = _u(rng, 0.05, 0.12)
    seat_top = min(_u(rng, 0.42, 0.47), h - 0.2)
    base_top = seat_top - 0.13
    arm_w = min(_u(rng, 0.12, 0.2), w / 5.0)
    back_d = min(_u(rng, 0.16, 0.24), d / 3.0)
    arm_top = min(_u(rng, 0.56, 0.68), h - 0.08)
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2
    parts = _legs(w, d, leg_h, rng, 0.04, 0.05, round_legs=False)
    parts.append(box_between(x0, x1, y0, y1, leg_h, base_top))
    parts.append(box_between(x0, x1, y0, y0 + back_d, base_top, h))
    parts.append(box_between(x0, x0 + arm_w, y0 + back_d, y1, base_top, arm_top))
    parts.append(box_between(x1 - arm_w, x1, y0 + back_d, y1, base_top, arm_top))
    inner0, inner1 = x0 + arm_w + 0.01, x1 - arm_w - 0.01
    step = (inner1 - inner0) / cushions
    for i in range(cushions):
        parts.append(box_between(inner0 + i * step + 0.005, inner0 + (i + 1) * step - 0.005,
                                 y0 + back_d + 0.01, y1 - 0.01, base_top, seat_top))
    # back cushions leaning on the back
    back_top = min(h - 0.04, seat_top + _u(rng, 0.3, 0.4))
    for i in range(cushions):
        parts.append(box_between(inner0 + i * step + 0.005, inner0 + (i + 1) * step - 0.005,
                                 y0 + back_d, y0 + back_d + min(0.12, (d - back_d) / 4.0), seat_top, back_top))
    return parts


def _sofa(w, d, h, rng):
    return _seating(w, d, h, rng, cushions=3 if w >= 2.0 else 2)


def _armchair(w, d, h, rng):
    return _seating(w, d, h, rng, cushions=1)


def _table_like(w, d, h, rng, shelf: bool) -> list[Mesh]:
    top_t = _u(rng, 0.03, 0.05)
    leg_t = _u(rng, 0.04, 0.06)
    inset = _u(rng, 0.02, 0.07)
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2, h - top_t, h)]
    parts += _legs(w, d, h - top_t, rng, inset, leg_t)
    if shelf and rng.random() < 0.5:
        z = _u(rng, 0.08, 0.14)
        m = inset + leg_t
        parts.append(box_between(-w / 2 + m, w / 2 - m, -d / 2 + m, d / 2 - m, z, z + 0.02))
    return parts


def _coffee_table(w, d, h, rng):
    return _table_like(w, d, h, rng, shelf=True)


def _table(w, d, h, rng):
    return _table_like(w, d, h, rng, shelf=False)


def _desk(w, d, h, rng):
    top_t = _u(rng, 0.025, 0.04)
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2, h - top_t, h)]
    if rng.random() < 0.5:
        parts += _legs(w, d, h - top_t, rng, 0.03, 0.045)
    else:  # a drawer pedestal on one side, a panel leg on the other
        ped_w = min(_u(rng, 0.35, 0.45), w / 2.5)
        side = -1.0 if rng.random() < 0.5 else 1.0
        px0, px1 = sorted((side * (w / 2 - 0.01), side * (w / 2 - 0.01 - ped_w)))
        parts.append(box_between(px0, px1, -d / 2 + 0.02, d / 2 - 0.03, 0.0, h - top_t))
        n = 3
        step = (h - top_t - 0.04) / n
        for i in range(n):
            parts.append(box_between(px0 + 0.01, px1 - 0.01, d / 2 - 0.03, d / 2 - 0.01,
                                     0.02 + i * step + 0.005, 0.02 + (i + 1) * step - 0.005))
        lx = -side * (w / 2 - 0.04)
        parts.append(box_between(lx - 0.02, lx + 0.02, -d / 2 + 0.03, d / 2 - 0.03, 0.0, h - top_t))
    return parts


def _chair(w, d, h, rng):
    seat_top = min(_u(rng, 0.43, 0.48), h - 0.3)
    seat_t = 0.04
    leg_t = _u(rng, 0.03, 0.045)
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2, seat_top - seat_t, seat_top)]
    parts += _legs(w, d, seat_top - seat_t, rng, 0.01, leg_t)
    post = leg_t
    for sx in (-1.0, 1.0):
        cx = sx * (w / 2 - 0.01 - post / 2)
        parts.append(box_between(cx - post / 2, cx + post / 2, -d / 2 + 0.01, -d / 2 + 0.01 + post, seat_top, h))
    back_lo = seat_top + _u(rng, 0.15, 0.25)
    parts.append(box_between(-w / 2 + 0.01 + post, w / 2 - 0.01 - post, -d / 2 + 0.01, -d / 2 + 0.035,
                             min(back_lo, h - 0.08), h - 0.01))
    return parts


def _bed(w, d, h, rng):
    frame_top = _u(rng, 0.3, 0.38)
    leg_h = _u(rng, 0.06, 0.12)
    head_d = _u(rng, 0.05, 0.08)
    mattress_top = frame_top + _u(rng, 0.18, 0.24)
    parts = _legs(w, d - head_d, leg_h, rng, 0.03, 0.06, round_legs=False)
    # legs sit forward of the headboard
    parts = [transform(p, None, (0.0, head_d / 2.0, 0.0)) for p in parts]
    parts.append(box_between(-w / 2, w / 2, -d / 2 + head_d, d / 2, leg_h, frame_top))
    parts.append(box_between(-w / 2, w / 2, -d / 2, -d / 2 + head_d, 0.0, h))  # headboard
    parts.append(box_between(-w / 2 + 0.03, w / 2 - 0.03, -d / 2 + head_d + 0.01, d / 2 - 0.03, frame_top, mattress_top))
    pillows = 2 if w >= 1.3 else 1
    pw = (w - 0.12 - 0.04 * (pillows - 1)) / pillows
    for i in range(pillows):
        x0 = -w / 2 + 0.06 + i * (pw + 0.04)
        parts.append(box_between(x0, x0 + pw, -d / 2 + head_d + 0.05, -d / 2 + head_d + 0.45,
                                 mattress_top, min(h - 0.02, mattress_top + _u(rng, 0.1, 0.14))))
    duvet_start = -d / 2 + head_d + _u(rng, 0.55, 0.7)
    parts.append(box_between(-w / 2 + 0.01, w / 2 - 0.01, duvet_start, d / 2 - 0.01,
                             frame_top + 0.05, mattress_top + 0.04))
    if rng.random() < 0.4:
        parts.append(box_between(-w / 2, w / 2, d / 2 - 0.03, d / 2, leg_h, min(h * 0.55, frame_top + 0.15)))
    return parts


def _drawer_unit(w, d, h, rng, drawers: int, leg_h: float) -> list[Mesh]:
    front = 0.025
    parts = _legs(w, d - front, leg_h, rng, 0.02, 0.04, round_legs=False) if leg_h > 0 else []
    parts = [transform(p, None, (0.0, -front / 2.0, 0.0)) for p in parts]
    parts.append(box_between(-w / 2, w / 2, -d / 2, d / 2 - front, leg_h, h))
    step = (h - leg_h - 0.02) / drawers
    for i in range(drawers):
        z0 = leg_h + 0.01 + i * step + 0.006
        z1 = leg_h + 0.01 + (i + 1) * step - 0.006
        parts.append(box_between(-w / 2 + 0.015, w / 2 - 0.015, d / 2 - front, d / 2 - 0.012, z0, z1))
        zc = (z0 + z1) / 2.0
        parts.append(box_between(-0.04, 0.04, d / 2 - 0.012, d / 2, zc - 0.01, zc + 0.01))
    return parts


def _nightstand(w, d, h, rng):
    return _drawer_unit(w, d, h, rng, drawers=int(rng.integers(1, 4)), leg_h=_u(rng, 0.0, 0.1))


def _tv_stand(w, d, h, rng):
    leg_h = _u(rng, 0.05, 0.12)
    front = 0.025
    parts = _legs(w, d - front, leg_h, rng, 0.03, 0.04)
    parts = [transform(p, None, (0.0, -front / 2.0, 0.0)) for p in parts]
    parts.append(box_between(-w / 2, w / 2, -d / 2, d / 2 - front, leg_h, h))
    doors = int(rng.integers(2, 4))
    step = (w - 0.02) / doors
    for i in range(doors):
        x0 = -w / 2 + 0.01 + i * step + 0.005
        x1 = -w / 2 + 0.01 + (i + 1) * step - 0.005
        parts.append(box_between(x0, x1, d / 2 - front, d / 2 - 0.012, leg_h + 0.02, h - 0.02))
        parts.append(box_between((x0 + x1) / 2 - 0.04, (x0 + x1) / 2 + 0.04, d / 2 - 0.012, d / 2, h - 0.08, h - 0.06))
    return parts


def _cabinet(w, d, h, rng):
    plinth = _u(rng, 0.04, 0.1)
    front = 0.03
    parts = [box_between(-w / 2 + 0.02, w / 2 - 0.02, -d / 2, d / 2 - front - 0.02, 0.0, plinth)]
    parts.append(box_between(-w / 2, w / 2, -d / 2, d / 2 - front, plinth, h))
    doors = 2 if w > 0.7 else 1
    step = (w - 0.01) / doors
    for i in range(doors):
        x0 = -w / 2 + 0.005 + i * step + 0.004
        x1 = -w / 2 + 0.005 + (i + 1) * step - 0.004
        parts.append(box_between(x0, x1, d / 2 - front, d / 2 - 0.015, plinth + 0.005, h - 0.005))
        hx = x1 - 0.05 if i == 0 and doors == 2 else x0 + 0.05
        zc = plinth + (h - plinth) * (0.5 if h < 1.2 else 0.45)
        parts.append(box_between(hx - 0.01, hx + 0.01, d / 2 - 0.015, d / 2, zc - 0.08, zc + 0.08))
    return parts


def _shelving(w, d, h, rng, closed: bool) -> list[Mesh]:
    side = _u(rng, 0.018, 0.03)
    board = _u(rng, 0.018, 0.03)
    parts = [box_between(-w / 2, -w / 2 + side, -d / 2, d / 2, 0.0, h),
             box_between(w / 2 - side, w / 2, -d / 2, d / 2, 0.0, h)]
    back = 0.0
    if closed:
        back = 0.012
        parts.append(box_between(-w / 2 + side, w / 2 - side, -d / 2, -d / 2 + back, 0.0, h))
    levels = max(2, int(round(h / _u(rng, 0.32, 0.4))))
    inner = (h - board) / levels
    for i in range(levels + 1):
        z0 = i * inner
        parts.append(box_between(-w / 2 + side, w / 2 - side, -d / 2 + back, d / 2 - (0.0 if closed else 0.01), z0, z0 + board))
    if closed:  # books
        for i in range(levels):
            z0 = i * inner + board
            gap_h = inner - board
            x = -w / 2 + side + _u(rng, 0.0, 0.05)
            x_end = w / 2 - side - 0.005
            fill_to = x + (x_end - x) * _u(rng, 0.5, 0.95)
            count = 0
            while count < 14:
                bw = _u(rng, 0.025, 0.07)
                if x + bw > min(fill_to, x_end):
                    break
                bh = min(_u(rng, 0.6, 0.92) * gap_h, gap_h - 0.01)
                bd = min(_u(rng, 0.15, 0.24), d - back - 0.02)
                parts.append(box_between(x, x + bw, -d / 2 + back + 0.005, -d / 2 + back + 0.005 + bd, z0, z0 + bh))
                x += bw + (0.002 if rng.random() < 0.8 else _u(rng, 0.02, 0.08))
                count += 1
    return parts


def _shelf(w, d, h, rng):
    return _shelving(w, d, h, rng, closed=False)


def _bookcase(w, d, h, rng):
    return _shelving(w, d, h, rng, closed=True)


def _lamp(w, d, h, rng):
    r = min(w, d) / 2.0
    shade_h = min(_u(rng, 0.25, 0.35), h / 3.0)
    base_r = r * _u(rng, 0.55, 0.8)
    pole_r = _u(rng, 0.012, 0.02)
    return [
        cylinder_between(0.0, 0.0, 0.0, 0.03, base_r, 24),
        cylinder_between(0.0, 0.0, 0.03, h - shade_h * 0.6, pole_r, 12),
        cylinder_between(0.0, 0.0, h - shade_h, h, r, 24),
    ]


def _plant(w, d, h, rng):
    r = min(w, d) / 2.0
    pot_r = r * _u(rng, 0.5, 0.7)
    pot_h = max(0.15, h * _u(rng, 0.25, 0.35))
    parts = [cylinder_between(0.0, 0.0, 0.0, pot_h, pot_r, 20)]
    blobs = int(rng.integers(3, 7))
    for i in range(blobs):
        br = r * _u(rng, 0.35, 0.6)
        ang = _u(rng, 0.0, 2.0 * math.pi)
        dist = _u(rng, 0.0, r - br)
        cx, cy = dist * math.cos(ang), dist * math.sin(ang)
        z1 = h if i == 0 else _u(rng, pot_h + (h - pot_h) * 0.4, h)
        z0 = _u(rng, pot_h - 0.05, pot_h + (z1 - pot_h) * 0.4)
        parts.append(cylinder_between(cx, cy, z0, z1, br, 10))
    return parts


def _rug(w, d, h, rng):
    return [box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)]


def _painting(w, d, h, rng):
    f = min(_u(rng, 0.025, 0.06), w / 6.0, h / 6.0)
    parts = [
        box_between(-w / 2, w / 2, -d / 2, d / 2, h - f, h),
        box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, f),
        box_between(-w / 2, -w / 2 + f, -d / 2, d / 2, f, h - f),
        box_between(w / 2 - f, w / 2, -d / 2, d / 2, f, h - f),
        box_between(-w / 2 + f, w / 2 - f, -d / 2, d / 2 - d * 0.4, f, h - f),  # canvas, set back
    ]
    return parts


def _base_unit(w, d, h, rng, top_t: float = 0.04) -> list[Mesh]:
    """A kitchen base unit: plinth set back, carcass, a worktop overhanging the front by 2 cm."""
    plinth = 0.1
    front = 0.02
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.08, 0.0, plinth),
             box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.02 - front, plinth, h - top_t)]
    doors = 2 if w > 0.65 else 1
    step = w / doors
    for i in range(doors):
        x0, x1 = -w / 2 + i * step + 0.003, -w / 2 + (i + 1) * step - 0.003
        parts.append(box_between(x0, x1, d / 2 - 0.02 - front, d / 2 - 0.02, plinth + 0.003, h - top_t - 0.003))
        hx = x1 - 0.04 if (i == 0 and doors == 2) else x0 + 0.04
        parts.append(box_between(hx - 0.008, hx + 0.008, d / 2 - 0.02, d / 2 - 0.005, h - top_t - 0.2, h - top_t - 0.06))
    return parts


def _counter(w, d, h, rng):
    top_t = _u(rng, 0.03, 0.04)
    return _base_unit(w, d, h, rng, top_t) + [box_between(-w / 2, w / 2, -d / 2, d / 2, h - top_t, h)]


SINK_TAP = 0.28
STOVE_BURNER = 0.012


def worktop_height(kind: str, height: float) -> float:
    """The height of a kitchen module's worktop given the piece's height (its bounding box)."""
    return height - {"kitchen_sink": SINK_TAP, "stove": STOVE_BURNER}.get(kind, 0.0)


def module_height(kind: str, worktop: float) -> float:
    """A kitchen module's height (its bounding box) for a worktop at ``worktop``."""
    return worktop + {"kitchen_sink": SINK_TAP, "stove": STOVE_BURNER}.get(kind, 0.0)


def _kitchen_sink(w, d, h, rng):
    top_t = 0.04
    h = h - SINK_TAP
    parts = _base_unit(w, d, h, rng, top_t)
    bw, bd = min(w - 0.2, _u(rng, 0.45, 0.6)), min(d - 0.2, 0.4)
    y0, y1 = -bd / 2 + 0.03, bd / 2 + 0.03
    parts += [box_between(-w / 2, w / 2, -d / 2, y0, h - top_t, h), box_between(-w / 2, w / 2, y1, d / 2, h - top_t, h),
              box_between(-w / 2, -bw / 2, y0, y1, h - top_t, h), box_between(bw / 2, w / 2, y0, y1, h - top_t, h),
              box_between(-bw / 2, bw / 2, y0, y1, h - 0.2, h - 0.18)]  # the basin's bottom, 18 cm down
    tap_y = -d / 2 + 0.06
    parts.append(cylinder_between(0.0, tap_y, h, h + SINK_TAP, 0.015, 12))
    parts.append(box_between(-0.012, 0.012, tap_y + 0.015, tap_y + 0.18, h + SINK_TAP - 0.03, h + SINK_TAP))
    return parts


def _stove(w, d, h, rng):
    h = h - STOVE_BURNER
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.02, 0.0, h - 0.02),
             box_between(-w / 2, w / 2, -d / 2, d / 2, h - 0.02, h)]
    parts.append(box_between(-w / 2 + 0.03, w / 2 - 0.03, d / 2 - 0.02, d / 2, 0.12, h - 0.2))  # oven door
    parts.append(box_between(-w / 2 + 0.08, w / 2 - 0.08, d / 2 - 0.02, d / 2, h - 0.19, h - 0.16))  # control strip
    r = min(w, d) * _u(rng, 0.1, 0.13)
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(cylinder_between(sx * w / 4.5, sy * d / 4.5, h, h + STOVE_BURNER, r, 16))
    return parts


def _dishwasher(w, d, h, rng):
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.03, 0.0, h - 0.04),
             box_between(-w / 2, w / 2, -d / 2, d / 2, h - 0.04, h),
             box_between(-w / 2 + 0.003, w / 2 - 0.003, d / 2 - 0.03, d / 2 - 0.01, 0.1, h - 0.043)]
    parts.append(box_between(-w / 2 + 0.1, w / 2 - 0.1, d / 2 - 0.01, d / 2, h - 0.12, h - 0.09))
    return parts


def _refrigerator(w, d, h, rng):
    split = h * _u(rng, 0.6, 0.68)
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.04, 0.0, h)]
    parts.append(box_between(-w / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.04, d / 2 - 0.02, 0.05, split - 0.005))
    parts.append(box_between(-w / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.04, d / 2 - 0.02, split + 0.005, h - 0.01))
    hx = w / 2 - 0.06 if rng.random() < 0.5 else -w / 2 + 0.06
    parts.append(box_between(hx - 0.012, hx + 0.012, d / 2 - 0.02, d / 2, split - 0.35, split - 0.08))
    parts.append(box_between(hx - 0.012, hx + 0.012, d / 2 - 0.02, d / 2, split + 0.08, split + 0.35))
    return parts


def _wall_cabinet(w, d, h, rng):
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.02, 0.0, h)]
    doors = 2 if w > 0.65 else 1
    step = w / doors
    for i in range(doors):
        x0, x1 = -w / 2 + i * step + 0.003, -w / 2 + (i + 1) * step - 0.003
        parts.append(box_between(x0, x1, d / 2 - 0.02, d / 2 - 0.005, 0.003, h - 0.003))
        hx = x1 - 0.04 if (i == 0 and doors == 2) else x0 + 0.04
        parts.append(box_between(hx - 0.008, hx + 0.008, d / 2 - 0.005, d / 2, 0.04, 0.16))
    return parts


def _range_hood(w, d, h, rng):
    canopy = min(h, _u(rng, 0.1, 0.16))
    return [box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, canopy),
            box_between(-w / 4, w / 4, -d / 2, -d / 2 + d * 0.55, canopy, h)]


def _bathtub(w, d, h, rng):
    rim = _u(rng, 0.06, 0.09)
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, h - 0.35),  # the tub's body below the basin
             box_between(-w / 2, w / 2, -d / 2, -d / 2 + rim, h - 0.35, h),
             box_between(-w / 2, w / 2, d / 2 - rim, d / 2, h - 0.35, h),
             box_between(-w / 2, -w / 2 + rim, -d / 2 + rim, d / 2 - rim, h - 0.35, h),
             box_between(w / 2 - rim, w / 2, -d / 2 + rim, d / 2 - rim, h - 0.35, h)]
    return parts


def _shower(w, d, h, rng):
    tray = 0.06
    glass = 0.01
    parts = [box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, tray),
             box_between(-w / 2, w / 2 - 0.5 * w, d / 2 - glass, d / 2, tray, h - 0.1),  # fixed front panel
             box_between(w / 2 - glass, w / 2, -d / 2, d / 2, tray, h - 0.1)]  # side panel
    parts.append(cylinder_between(-w / 2 + 0.08, -d / 2 + 0.04, tray, h - 0.05, 0.012, 12))  # riser
    parts.append(cylinder_between(-w / 2 + 0.08, -d / 2 + 0.16, h - 0.12, h - 0.1, 0.08, 16))  # head
    parts.append(box_between(-w / 2 + 0.07, -w / 2 + 0.09, -d / 2 + 0.04, -d / 2 + 0.16, h - 0.1, h - 0.08))
    return parts


def _toilet(w, d, h, rng):
    tank_d = _u(rng, 0.16, 0.2)
    seat = _u(rng, 0.4, 0.44)
    bowl_r = w / 2
    parts = [box_between(-w / 2, w / 2, -d / 2, -d / 2 + tank_d, seat - 0.1, h),  # tank
             box_between(-w * 0.3, w * 0.3, -d / 2 + tank_d - 0.02, d / 2 - bowl_r, 0.0, seat - 0.03),  # pedestal
             cylinder_between(0.0, d / 2 - bowl_r, 0.08, seat - 0.03, bowl_r * 0.8, 20),
             cylinder_between(0.0, d / 2 - bowl_r, seat - 0.03, seat, bowl_r, 24)]  # seat
    return parts


def _washbasin(w, d, h, rng):
    top = 0.1
    parts = []
    if rng.random() < 0.5:  # a vanity unit
        parts.append(box_between(-w / 2 + 0.01, w / 2 - 0.01, -d / 2, d / 2 - 0.02, 0.2, h - top))
        parts.append(box_between(-w / 2 + 0.012, w / 2 - 0.012, d / 2 - 0.02, d / 2 - 0.005, 0.21, h - top - 0.01))
    else:  # a pedestal
        parts.append(cylinder_between(0.0, -d / 2 + 0.14, 0.0, h - top, 0.08, 16))
    parts += [box_between(-w / 2, w / 2, -d / 2, d / 2, h - top, h - top + 0.02),
              box_between(-w / 2, w / 2, -d / 2, -d / 2 + 0.1, h - top + 0.02, h),
              box_between(-w / 2, w / 2, d / 2 - 0.04, d / 2, h - top + 0.02, h),
              box_between(-w / 2, -w / 2 + 0.04, -d / 2 + 0.1, d / 2 - 0.04, h - top + 0.02, h),
              box_between(w / 2 - 0.04, w / 2, -d / 2 + 0.1, d / 2 - 0.04, h - top + 0.02, h)]
    return parts


def _mirror(w, d, h, rng):
    f = min(_u(rng, 0.01, 0.03), w / 8, h / 8)
    return [box_between(-w / 2, w / 2, -d / 2, d / 2 - d * 0.3, 0.0, h),  # glass, set back
            box_between(-w / 2, w / 2, -d / 2, d / 2, 0.0, f), box_between(-w / 2, w / 2, -d / 2, d / 2, h - f, h),
            box_between(-w / 2, -w / 2 + f, -d / 2, d / 2, f, h - f), box_between(w / 2 - f, w / 2, -d / 2, d / 2, f, h - f)]


def _towel_radiator(w, d, h, rng):
    r = 0.015
    parts = [cylinder_between(-w / 2 + r, 0.0, 0.0, h, r, 10), cylinder_between(w / 2 - r, 0.0, 0.0, h, r, 10)]
    rails = max(4, int(h / 0.12))
    for i in range(rails):
        z = 0.05 + i * (h - 0.1) / (rails - 1)
        parts.append(box_between(-w / 2 + 2 * r, w / 2 - 2 * r, -0.01, 0.01, z - 0.01, z + 0.01))
    parts.append(box_between(-w / 2 + r, -w / 2 + 2 * r, -d / 2, -0.01, h * 0.2, h * 0.2 + 0.02))  # wall brackets
    parts.append(box_between(w / 2 - 2 * r, w / 2 - r, -d / 2, -0.01, h * 0.2, h * 0.2 + 0.02))
    return parts


def _sideboard(w, d, h, rng):
    return _tv_stand(w, d, h, rng)


def _office_chair(w, d, h, rng):
    seat = _u(rng, 0.44, 0.5)
    parts = []
    for k in range(5):  # the star base
        a = 2 * math.pi * k / 5 + math.pi / 2
        ex, ey = 0.42 * min(w, d) * math.cos(a), 0.42 * min(w, d) * math.sin(a)
        parts.append(cylinder_between(ex, ey, 0.0, 0.05, 0.025, 8))
        parts.append(box_between(min(0.0, ex) - 0.015, max(0.0, ex) + 0.015, min(0.0, ey) - 0.015, max(0.0, ey) + 0.015, 0.05, 0.08))
    parts.append(cylinder_between(0.0, 0.0, 0.08, seat - 0.06, 0.025, 12))
    sw, sd = w * 0.8, d * 0.78
    parts.append(box_between(-sw / 2, sw / 2, -sd / 2 + 0.04, sd / 2 + 0.04, seat - 0.06, seat))
    parts.append(box_between(-0.03, 0.03, -d / 2 + 0.03, -sd / 2 + 0.04, seat - 0.06, seat + 0.15))
    parts.append(box_between(-sw / 2 + 0.02, sw / 2 - 0.02, -d / 2 + 0.01, -d / 2 + 0.06, seat + 0.12, h))
    return parts


def _wardrobe(w, d, h, rng):
    plinth = 0.06
    parts = [box_between(-w / 2 + 0.02, w / 2 - 0.02, -d / 2, d / 2 - 0.04, 0.0, plinth),
             box_between(-w / 2, w / 2, -d / 2, d / 2 - 0.02, plinth, h)]
    doors = max(2, int(round(w / 0.5)))
    step = w / doors
    for i in range(doors):
        x0, x1 = -w / 2 + i * step + 0.003, -w / 2 + (i + 1) * step - 0.003
        parts.append(box_between(x0, x1, d / 2 - 0.02, d / 2 - 0.008, plinth + 0.003, h - 0.003))
        hx = x1 - 0.04 if i % 2 == 0 else x0 + 0.04
        parts.append(box_between(hx - 0.008, hx + 0.008, d / 2 - 0.008, d / 2, h * 0.45, h * 0.45 + 0.3))
    return parts


def _chest_of_drawers(w, d, h, rng):
    return _drawer_unit(w, d, h, rng, drawers=int(rng.integers(3, 6)), leg_h=_u(rng, 0.0, 0.08))


def _bench(w, d, h, rng):
    return _table_like(w, d, h, rng, shelf=True)


def _stool(w, d, h, rng):
    r = min(w, d) / 2
    parts = [cylinder_between(0.0, 0.0, h - 0.04, h, r, 20)]
    for k in range(4):
        a = math.pi / 4 + k * math.pi / 2
        x, y = (r - 0.04) * math.cos(a), (r - 0.04) * math.sin(a)
        parts.append(cylinder_between(x, y, 0.0, h - 0.04, 0.015, 8))
    return parts


_BUILDERS: dict[str, Callable[[float, float, float, np.random.Generator], list[Mesh]]] = {
    "sofa": _sofa,
    "armchair": _armchair,
    "coffee_table": _coffee_table,
    "table": _table,
    "chair": _chair,
    "bed": _bed,
    "nightstand": _nightstand,
    "shelf": _shelf,
    "bookcase": _bookcase,
    "cabinet": _cabinet,
    "desk": _desk,
    "lamp": _lamp,
    "plant": _plant,
    "rug": _rug,
    "painting": _painting,
    "tv_stand": _tv_stand,
    "counter": _counter,
    "kitchen_sink": _kitchen_sink,
    "stove": _stove,
    "dishwasher": _dishwasher,
    "refrigerator": _refrigerator,
    "wall_cabinet": _wall_cabinet,
    "range_hood": _range_hood,
    "bathtub": _bathtub,
    "shower": _shower,
    "toilet": _toilet,
    "washbasin": _washbasin,
    "mirror": _mirror,
    "towel_radiator": _towel_radiator,
    "sideboard": _sideboard,
    "office_chair": _office_chair,
    "wardrobe": _wardrobe,
    "chest_of_drawers": _chest_of_drawers,
    "bench": _bench,
    "stool": _stool,
}

KINDS = tuple(_BUILDERS)
