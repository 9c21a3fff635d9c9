"""Furnishing a room: the template's list of pieces, or ``furniture = "auto"`` by the room's type.

``auto`` reads as the room it is: a living room gets a sofa facing a TV, a coffee table on a rug
and seats around it; a bedroom a bed with a nightstand on each side and a wardrobe; a kitchen a
run of counters and cabinets along its walls (one wall, an L round a corner, or a galley on two
facing walls) whose refrigerator, sink and stove form a work triangle (each leg 1.2 to 2.7 m,
4.0 to 7.9 m round, the usual kitchen planning rule), wall cabinets and a hood above; a dining
room a table in the middle with chairs on its sides and a sideboard; a bathroom a bathtub (or a
shower where the room is too short for one), a toilet and a basin with a mirror; an office desks
in facing pairs with a chair at each, and storage along the walls; a hallway a shoe cabinet, a
bench and pictures, leaving the way through free. The pieces a room must have (the bed, the
kitchen's run, the toilet, ...) are reported when they cannot be placed; the others are left out
where there is no room, and recorded as left out.

Every random choice comes from ``object_rng(seed, name)``: a piece's size and placement from its
stable name, the room's own choices (which layout, how many desks) from ``furniture:<room>``.

Entry point: :func:`furnish_room`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from procedural.floor_plan import PlanNaming, PlanRoom, WallLine
from procedural.furniture_library import DEFAULT_CLASS, draw_size, module_height
from procedural.furniture_placement import (
    WALL_GAP, PieceRequest, PlacedPiece, PlacementFailure, RoomPlacer, extent_along,
)
from scenes.scene_data import object_rng

KITCHEN_DEPTH = 0.6  # counters, sink, stove, dishwasher
WORKTOP = 0.9
LEG_MIN, LEG_MAX = 1.2, 2.7  # work triangle legs, metres
TRIANGLE_MIN, TRIANGLE_MAX = 4.0, 7.9  # its perimeter
WALL_CABINET_Z = 1.45
LAYOUT_TRIES = 60  # kitchen and office layouts tried per room


@dataclass
class Furnishing:
    placed: list[PlacedPiece] = field(default_factory=list)
    failures: list[PlacementFailure] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)  # optional auto pieces there was no room for
    requests: dict[str, PieceRequest] = field(default_factory=dict)  # by stable name


def _label(kind: str, name: str, size) -> str:
    return f"{kind.replace('_', ' ')} {name!r} ({size[0]:.2f} x {size[1]:.2f} x {size[2]:.2f} m)"


class _Furnisher:
    def __init__(self, placer: RoomPlacer, room: PlanRoom, naming: PlanNaming, seed: int):
        self.placer = placer
        self.room = room
        self.naming = naming
        self.seed = seed
        self.out = Furnishing()
        self.key = room.furniture_key
        self.rng = object_rng(seed, f"furniture:{room.name}")  # the room's own choices

    def name(self, piece: str) -> str:
        return self.naming.piece(self.room.name, piece)

    def request(self, kind: str, piece: str, *, size=None, rng=None, **kw) -> tuple[PieceRequest, np.random.Generator]:
        name = self.name(piece)
        rng = rng or object_rng(self.seed, name)
        size = tuple(float(v) for v in size) if size is not None else draw_size(kind, rng)
        req = PieceRequest(key=kw.pop("key", self.key), name=name, kind=kind, size=size, label=_label(kind, name, size), **kw)
        return req, rng

    def place(self, req: PieceRequest, rng, later=()) -> PlacedPiece | None:
        result = self.placer.place(req, rng, list(later))
        self.out.requests[req.name] = req
        if isinstance(result, PlacedPiece):
            self.out.placed.append(result)
            return result
        if req.optional:
            self.out.left_out.append({"name": req.name, "kind": req.kind, "why": result.reasons[0][0] if result.reasons else ""})
        else:
            self.out.failures.append(result)
        return None

    def add(self, kind: str, piece: str, *, optional=True, later=(), **kw) -> PlacedPiece | None:
        req, rng = self.request(kind, piece, optional=optional, **kw)
        return self.place(req, rng, later)

    # -- by room type ------------------------------------------------------------------------

    def living_room(self):
        area = self.room.area
        sofa = self.add("sofa", "sofa", optional=False)
        self.add("coffee_table", "coffee_table", hint={"anchor": sofa.name} if sofa else {})
        table = self.placer.by_name(self.name("coffee_table"))
        self.add("rug", "rug", hint={"anchor": table.name} if table else {})
        if sofa is not None:
            self.add("tv_stand", "tv_stand", rule="facing_piece", hint={"anchor": sofa.name})
        if area >= 14:
            self.add("armchair", "armchair")
        if area >= 16:
            self.add("bookcase", "bookcase")
        self.add("plant", "plant")
        self.add("lamp", "floor_lamp")
        self.add("painting", "painting", rule="above_piece" if sofa else None, hint={"anchor": sofa.name} if sofa else {})

    def bedroom(self):
        area = self.room.area
        bed_req, bed_rng = self.request("bed", "bed", optional=False)
        stands = [self.request("nightstand", n, optional=True) for n in ("nightstand_left", "nightstand_right")]
        bed = None
        for keep in (2, 1, 0):  # room beside the bed for two nightstands, else one, else none
            result = self.placer.place(bed_req, bed_rng, [r for r, _ in stands[:keep]])
            if isinstance(result, PlacedPiece) or keep == 0:
                break
        self.out.requests[bed_req.name] = bed_req
        if isinstance(result, PlacedPiece):
            bed = result
            self.out.placed.append(bed)
        else:
            self.out.failures.append(result)
        for k, (req, rng) in enumerate(stands):
            if bed is not None:
                req = _with(req, hint={"anchor": bed.name, "side": -1.0 if k == 0 else 1.0})
            self.place(req, rng)
        self.add("wardrobe", "wardrobe")
        if area >= 14:
            self.add("chest_of_drawers", "chest_of_drawers")
        self.add("rug", "rug", hint={"anchor": bed.name} if bed else {})
        self.add("plant", "plant")
        self.add("painting", "painting", rule="above_piece" if bed else None, hint={"anchor": bed.name} if bed else {})

    def dining_room(self):
        n_long = 2 if self.room.area >= 10 else 1
        width = float(self.rng.uniform(1.2, 1.5)) if n_long == 1 else float(self.rng.uniform(1.6, 2.0))
        table_req, table_rng = self.request("table", "table", optional=False, rule="centre",
                                            size=(width, float(self.rng.uniform(0.85, 0.95)), 0.75))
        chairs = []  # one on each long side first, then the others
        for k in range(n_long):
            for side in (0, 1):
                slide = 0.0 if n_long == 1 else (k - 0.5) * width / 2
                chairs.append((side, slide))
        # the table and the two chairs it must have go in together: a table whose sides are blocked moves
        seat_reqs = [self.request("chair", f"chair_{i}", optional=i > 2, rule="table_seat")
                     for i in range(1, len(chairs) + 1)]
        table, failure = None, None
        for _ in range(20):
            state = self.placer.snapshot()
            result = self.placer.place(table_req, table_rng)
            if not isinstance(result, PlacedPiece):
                failure = result
                break
            seated = []
            for (req, rng), (side, slide) in list(zip(seat_reqs, chairs))[:2]:
                seat = self.placer.place(_with(req, hint={"anchor": result.name, "side": side, "slide": slide}), rng)
                if not isinstance(seat, PlacedPiece):
                    failure = seat
                    break
                seated.append((req, seat))
            if len(seated) == 2:
                table = result
                break
            self.placer.restore(state)
        if table is None:
            self.out.requests[table_req.name] = table_req
            self.out.failures.append(failure)
        else:
            for req, piece in [(table_req, table)] + seated:
                self.out.requests[req.name] = req
                self.out.placed.append(piece)
            for (req, rng), (side, slide) in list(zip(seat_reqs, chairs))[2:]:
                self.place(_with(req, hint={"anchor": table.name, "side": side, "slide": slide}), rng)
            if width >= 1.8:
                for j, side in enumerate((2, 3), start=len(chairs) + 1):
                    self.add("chair", f"chair_{j}", rule="table_seat", hint={"anchor": table.name, "side": side})
            self.add("rug", "rug", size=(width + 1.2, table.size[1] + 1.2, 0.01), hint={"anchor": table.name})
        self.add("sideboard", "sideboard")
        self.add("plant", "plant")
        self.add("painting", "painting")

    def bathroom(self):
        longest = max(w.length for w in self.room.walls)
        tub = None
        if longest >= 1.75 and self.room.area >= 4.0:
            tub = self.add("bathtub", "bathtub", optional=True, rule="in_corner")
        if tub is None:
            self.add("shower", "shower", optional=False)
        self.add("toilet", "toilet", optional=False)
        basin = self.add("washbasin", "washbasin", optional=False)
        if basin is not None:
            self.add("mirror", "mirror", rule="above_piece", hint={"anchor": basin.name})
        self.add("towel_radiator", "towel_radiator")

    def office(self):
        area = self.room.area
        target = max(1, min(24, int(round(area / 6.5))))
        placed = self._desk_clusters(target)
        k = placed
        while k < target:  # the rest along the walls
            k += 1
            desk_req, desk_rng = self.request("desk", f"desk_{k}", optional=k > 1)
            chair_req, chair_rng = self.request("office_chair", f"chair_{k}", optional=True)
            desk = self.place(desk_req, desk_rng, later=[chair_req])
            if desk is None:
                break
            self.place(_with(chair_req, hint={"anchor": desk.name}), chair_rng)
        self.add("bookcase", "bookcase")
        self.add("cabinet", "cabinet", size=(float(self.rng.uniform(0.8, 1.2)), 0.45, float(self.rng.uniform(0.75, 1.1))))
        self.add("plant", "plant_1")
        self.add("plant", "plant_2")

    def hallway(self):
        self.add("cabinet", "shoe_cabinet", size=(float(self.rng.uniform(0.8, 1.2)), 0.34, float(self.rng.uniform(0.8, 1.0))))
        self.add("bench", "bench")
        self.add("plant", "plant")
        self.add("painting", "painting_1")
        self.add("painting", "painting_2")

    # -- the kitchen: a run with a work triangle -----------------------------------------------

    def kitchen(self):
        layouts = self._kitchen_layouts()
        for attempt in range(LAYOUT_TRIES):
            if not layouts:
                break
            layout = layouts[int(self.rng.integers(len(layouts)))]
            modules = self._fill_run(layout)
            if modules is None:
                continue
            state = self.placer.snapshot()
            placed, ok = [], True
            for kind, piece, size, wall, along, group, details in modules:
                req, rng = self.request(kind, piece, size=size, rule="fixed", group=group, optional=False, hint={
                    "center": wall.point(along, size[1] / 2 + WALL_GAP), "yaw": wall.yaw, "wall": wall.index,
                    "rule": "counter_run", "details": details})
                result = self.placer.place(req, rng)
                if not isinstance(result, PlacedPiece):
                    ok = False
                    break
                placed.append((req, result))
            if ok:  # the hood above the stove: a stove under a window (no hood) is another layout
                stove = next(p for _, p in placed if p.kind == "stove")
                hood_req, hood_rng = self.request("range_hood", "range_hood", rule="above_piece", group=stove.group,
                                                  hint={"anchor": stove.name}, size=(stove.size[0], 0.5, 0.5))
                hood = self.placer.place(hood_req, hood_rng)
                ok = isinstance(hood, PlacedPiece)
                if ok:
                    placed.append((hood_req, hood))
            if not ok:
                self.placer.restore(state)
                continue
            for req, piece in placed:
                self.out.requests[req.name] = req
                self.out.placed.append(piece)
            self._kitchen_uppers([p for _, p in placed])
            if self.room.area >= 11:
                table = self.add("table", "table", rule="centre", size=(float(self.rng.uniform(0.8, 1.1)), 0.75, 0.75))
                if table is not None:
                    for i, side in enumerate((0, 1), start=1):
                        self.add("chair", f"chair_{i}", rule="table_seat", hint={"anchor": table.name, "side": side})
            self.add("plant", "plant")
            return
        # no layout fits: say so, with what blocks a refrigerator on its own
        req, rng = self.request("refrigerator", "refrigerator", optional=False)
        state = self.placer.snapshot()
        result = self.placer.place(req, rng)
        self.placer.restore(state)
        if isinstance(result, PlacedPiece):  # a refrigerator fits, a whole run does not
            result = PlacementFailure(
                _with(req, label="kitchen run (refrigerator, sink, stove and counters with a work triangle)"),
                (("no free wall, corner or pair of facing walls takes it", LAYOUT_TRIES),), LAYOUT_TRIES,
                "a run needs about 3.3 m of free wall, an L of two walls of about 2 m, or two facing walls 2.4 to 3.2 m apart")
        self.out.failures.append(result)

    def _kitchen_layouts(self) -> list[tuple]:
        """Candidate runs: ("I", wall), ("L", wall_a, wall_b) round a convex corner, ("galley", wall_a, wall_b)."""
        walls = list(self.room.walls)
        out: list[tuple] = [("I", w) for w in walls if w.length >= 3.3]
        n = len(walls)
        for k in range(n):
            a, b = walls[k], walls[(k + 1) % n]
            turn = a.direction[0] * b.direction[1] - a.direction[1] * b.direction[0]
            dot = a.direction[0] * b.direction[0] + a.direction[1] * b.direction[1]
            if turn > 0.99 and abs(dot) < 0.1 and a.length >= 1.6 and b.length >= 1.6:  # a 90-degree corner, convex
                out.append(("L", a, b))
        for i in range(n):
            for j in range(i + 1, n):
                a, b = walls[i], walls[j]
                if a.inward[0] * b.inward[0] + a.inward[1] * b.inward[1] < -0.999:
                    gap = (b.start[0] - a.start[0]) * a.inward[0] + (b.start[1] - a.start[1]) * a.inward[1]
                    if 2.4 <= gap <= 3.2 and min(a.length, b.length) >= 2.0:
                        out.append(("galley", a, b))
        return out

    def _fill_run(self, layout) -> list[tuple] | None:
        """Modules (kind, piece, size, wall, centre along the wall, group, details) for a layout,
        the refrigerator, sink and stove spread over its legs in a drawn order with counters
        between, drawn until the work triangle holds; None when no draw did."""
        rng = self.rng
        depth = KITCHEN_DEPTH
        appliances = {
            "refrigerator": (float(rng.uniform(0.6, 0.75)), float(rng.uniform(0.64, 0.7)), float(rng.uniform(1.8, 2.0))),
            "kitchen_sink": (float(rng.uniform(0.8, 1.0)), depth, module_height("kitchen_sink", WORKTOP)),
            "stove": (0.6, depth, module_height("stove", WORKTOP)),
        }
        kind = layout[0]
        walls = list(layout[1:])
        for _ in range(40):
            order = [str(k) for k in rng.permutation(list(appliances))]
            if kind == "I":
                split = [order]
            else:
                cut = int(rng.integers(1, 3))
                split = [order[:cut], order[cut:]]
            legs = []
            fits = True
            for g, (wall, names) in enumerate(zip(walls, split)):
                corner_end = kind == "L" and g == 0  # leg A runs into the corner, leg B starts past it
                corner_start = kind == "L" and g == 1
                if "refrigerator" in names:  # the tall one at the leg's far end from the corner
                    names = [n for n in names if n != "refrigerator"]
                    names = ["refrigerator"] + names if not corner_start else names + ["refrigerator"]
                seq: list = []
                if not corner_end and not (corner_start and names[0] == "refrigerator"):
                    end_counter = float(rng.uniform(0.0, 0.8))
                    if end_counter >= 0.3:
                        seq.append(end_counter)
                for k, name in enumerate(names):
                    if k:
                        seq.append(float(rng.uniform(0.3, 1.0)))
                    seq.append((name, appliances[name]))
                if corner_end:
                    seq.append(float(rng.uniform(depth + 0.3, depth + 0.9)))
                elif names[-1] != "refrigerator" or corner_start:
                    tail = float(rng.uniform(0.0, 0.8))
                    if tail >= 0.3:
                        seq.append(tail)
                length = sum(item if isinstance(item, float) else item[1][0] for item in seq)
                room_left = wall.length - (depth + WALL_GAP if corner_start else 0.0)
                if length > room_left:
                    fits = False
                    break
                if corner_end:
                    start = wall.length - length
                elif corner_start:
                    start = depth + WALL_GAP
                else:
                    start = float(rng.uniform(0.0, room_left - length))
                legs.append((wall, start, seq))
            if not fits:
                continue
            modules, centres, n_counter = [], {}, 0
            for g, (wall, start, seq) in enumerate(legs):
                cursor = start
                group = f"{self.room.name}/run" if kind != "galley" else f"{self.room.name}/run_{g}"
                for item in seq:
                    if isinstance(item, float):
                        n_counter += 1
                        modules.append(("counter", f"counter_{n_counter}", (item, depth, WORKTOP), wall, cursor + item / 2, group, {}))
                        cursor += item
                        continue
                    k, size = item
                    piece = {"refrigerator": "refrigerator", "kitchen_sink": "sink", "stove": "stove"}[k]
                    along = cursor + size[0] / 2
                    modules.append((k, piece, size, wall, along, group, {}))
                    centres[k] = wall.point(along, size[1] + WALL_GAP)  # the middle of its front
                    cursor += size[0]
            legs_m = (math.dist(centres["refrigerator"], centres["kitchen_sink"]),
                      math.dist(centres["kitchen_sink"], centres["stove"]),
                      math.dist(centres["stove"], centres["refrigerator"]))
            if all(LEG_MIN <= v <= LEG_MAX for v in legs_m) and TRIANGLE_MIN <= sum(legs_m) <= TRIANGLE_MAX:
                triangle = {"layout": kind, "legs": [round(v, 4) for v in legs_m], "perimeter": round(sum(legs_m), 4),
                            "rule": f"each leg {LEG_MIN}..{LEG_MAX} m, {TRIANGLE_MIN}..{TRIANGLE_MAX} m round"}
                return [(k, p, s, w, a, g, {"work_triangle": triangle} if k in appliances else d)
                        for k, p, s, w, a, g, d in modules]
        return None

    def _kitchen_uppers(self, run: list[PlacedPiece]) -> None:
        """Wall cabinets above the counters and the sink (the hood is part of the run)."""
        n = 0
        for piece in run:
            if piece.kind in ("counter", "kitchen_sink") and piece.size[0] >= 0.4:
                n += 1
                wall = piece.wall
                along = wall.along_of(piece.center)
                size = (piece.size[0] - 0.004, 0.35, 0.7)
                self.add("wall_cabinet", f"wall_cabinet_{n}", rule="fixed", size=size, group=piece.group, hint={
                    "center": wall.point(along, size[1] / 2 + WALL_GAP), "yaw": wall.yaw, "wall": wall.index,
                    "z0": WALL_CABINET_Z, "anchor": piece.name, "rule": "above_piece"})

    # -- offices: desks in facing pairs ----------------------------------------------------------

    def _desk_clusters(self, target: int) -> int:
        """Pairs of desks back to back, each with a chair, on a grid along the room's longest wall."""
        yaw = self.placer.main_yaw()
        a = math.radians(yaw)
        ux, uy, vx, vy = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)
        desk_w = float(self.rng.uniform(1.2, 1.6))
        desk_d = float(self.rng.uniform(0.7, 0.8))
        chair_room = 0.95
        pitch_u = desk_w + 0.05
        pitch_v = 2 * desk_d + 2 * chair_room + 0.8  # an aisle between rows of chairs
        pts = self.room.interior
        us = [p[0] * ux + p[1] * uy for p in pts]
        vs = [p[0] * vx + p[1] * vy for p in pts]
        u0, u1, v0, v1 = min(us), max(us), min(vs), max(vs)
        placed = 0
        v = v0 + chair_room + desk_d
        row = 0
        slots = 0  # a bound on the slots tried (a very large room has millions)
        while v + desk_d + chair_room <= v1 and placed < target and slots < 4 * target + 40:
            u = u0 + 0.9 + desk_w / 2
            while u + desk_w / 2 + 0.9 <= u1 and placed < target and slots < 4 * target + 40:
                slots += 1
                cx, cy = u * ux + v * vx, u * uy + v * vy
                for facing in (0, 1):
                    if placed >= target:
                        break
                    k = placed + 1
                    off = desk_d / 2 if facing == 0 else -desk_d / 2
                    center = (cx + off * vx, cy + off * vy)
                    desk_yaw = (yaw + (0.0 if facing == 0 else 180.0)) % 360.0
                    req, rng = self.request("desk", f"desk_{k}", size=(desk_w, desk_d, 0.74), rule="fixed",
                                            group=f"{self.room.name}/desks_{row}", optional=True,
                                            hint={"center": center, "yaw": desk_yaw, "rule": "desk_cluster"})
                    result = self.placer.place(req, rng)
                    if not isinstance(result, PlacedPiece):
                        continue
                    self.out.requests[req.name] = req
                    self.out.placed.append(result)
                    placed += 1
                    self.add("office_chair", f"chair_{k}", rule="table_seat", hint={"anchor": result.name, "side": 0})
                u += pitch_u
            v += pitch_v
            row += 1
        return placed


def _with(req: PieceRequest, **changes) -> PieceRequest:
    import dataclasses

    return dataclasses.replace(req, **changes)


def furnish_room(placer: RoomPlacer, room: PlanRoom, naming: PlanNaming, seed: int, assets=None) -> Furnishing:
    """Place the room's furniture: its template list in order, or ``auto`` by its type.

    ``assets``: {template key path: :class:`procedural.model_meshes.MeasuredAsset`}: a
    ``kind = "asset"`` piece is requested as the parametric kind whose rules it follows
    (``rule_kind``) at the model's measured size."""
    assets = assets or {}
    f = _Furnisher(placer, room, naming, seed)
    if room.furniture == "auto":
        getattr(f, room.type)()
        return f.out
    specs = list(room.furniture)
    requests = []
    for index, spec in enumerate(specs):
        name = naming.piece(room.name, spec.stable_name)
        rng = object_rng(seed, name)
        key = f"{room.furniture_key}.{index}"
        kind = spec.kind
        if key in assets:  # a model: the rules of its class's kind, its measured size
            kind, size = assets[key].rule_kind, tuple(float(v) for v in assets[key].size)
        elif spec.kind == "asset":
            raise ValueError(f"furnish_room: the asset piece {key} needs its measured model (passes.model_import)")
        else:
            size = tuple(float(v) for v in spec.size) if spec.size is not None else draw_size(spec.kind, rng)
        wall = None
        if spec.wall is not None:
            wall = room.edge_names.index(spec.wall) if isinstance(spec.wall, str) else int(spec.wall)
        label = _label(kind, name, size) if key not in assets else f"asset {assets[key].file!r} " + _label(kind, name, size)
        requests.append((PieceRequest(key=key, name=name, kind=kind, size=size, wall=wall,
                                      position=None if spec.position is None else tuple(float(v) for v in spec.position),
                                      rotation=spec.rotation, label=label), rng))
    for index, (req, rng) in enumerate(requests):
        f.place(req, rng, later=[r for r, _ in requests[index + 1:]])
    return f.out


def piece_class(spec_class, kind: str):
    """The class a piece gets: the template's, or its kind's default."""
    return spec_class if spec_class is not None else DEFAULT_CLASS[kind]


__all__ = ["Furnishing", "furnish_room", "piece_class", "extent_along"]
