"""The floor plan: rooms as simple polygons that share walls, the walls between and around them,
doors and windows resolved onto those walls, and every problem found on the way. Pure Python.

Conventions
- A room's polygon (counter-clockwise, metres, Blender's x/y) runs along the centre lines of its
  walls: every wall, shared or outer, is centred on the edge it stands on and is ``thickness``
  thick, so a room's floor inside the walls (``PlanRoom.interior``) is its polygon inset by half
  the thickness. Edge ``i`` runs from vertex ``i`` to ``i + 1``.
- Where two rooms' edges run along the same line in opposite directions, the overlap is one
  shared wall (:class:`WallSegment` with ``other`` set), built once. The rest of every edge is an
  outer wall. Walls meet at nodes (the polygons' vertices and the ends of shared stretches) with
  mitred joins: each wall's footprint ends at the node and at the mitre points of the wedges on
  either side, so the footprints tile the walls' union with no overlap and no gap.
- An opening (door or window) lies on one wall segment: ``a0 .. a1`` along it from its start
  ``p0``, ``sill .. top`` in height. A door opens (90 degrees) into its ``swing_room``, hinged at the
  jamb nearer the end of that room's wall.

Entry points: :func:`room_plan_input` (``[generator.room]`` as a one-room plan: its interior is
the room's rectangle or L, its names the room generator's), :func:`floor_plan_input`
(``[generator.floor_plan]``), :func:`plan_geometry` (the geometry and the list of problems, each
naming its key path, value and fix). The geometry is what the shell builder
(``procedural/room_shell.py``), the furniture placer and later features (buildings with storeys,
tours through doors) read: rooms with their interiors and interior wall lines, wall segments,
openings, door passages (:meth:`PlanGeometry.door_passages`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Sequence

from procedural.planar_geometry import (
    Footprint, Point, centroid, convex_hull, distance_to_segment, footprint_inside_polygon, left_normal, offset_polygon,
    point_in_polygon, segments_cross, self_crossing, signed_area, triangulate, unit,
)

OUTSIDE = "outside"
OPENING_EDGE_MARGIN = 0.05  # an opening keeps this much wall to each side and above
OPENING_GAP = 2 * OPENING_EDGE_MARGIN  # wall between two openings on one wall
MIN_WEDGE_DEG = 20.0  # the sharpest angle two walls may meet at
COLLINEAR_TOL = 1e-6  # metres: edges this close to one line share it
DOOR_LEAF_THICKNESS = 0.04
DOOR_CLEARANCE_DEPTH = 1.0  # the passage kept free in front of a door, metres into each room
DOOR_CLEARANCE_SIDE = 0.1  # ... and this much wider than the door on each side
WINDOW_ZONE_DEPTH = 0.3  # pieces taller than the sill keep this far from a window
SWING_SEGMENTS = 8  # the door swing's quarter disc as a polygon of this many arc pieces


def plan_problem(key: str, value, text: str) -> dict:
    """One problem as :class:`greybox.errors.InputError` holds them: ``message`` is the whole line
    ``key = value: what is wrong; the fix``."""
    shown = _short(value)
    line = f"{key} = {shown}: {text}" if value is not None else f"{key}: {text}"
    return {"file": "", "key": key, "value": value, "message": line}


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _m(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"


def _pt(p: Point) -> str:
    return f"({p[0]:.2f}, {p[1]:.2f})"


# --------------------------------------------------------------------------------------------
# Inputs: what the two generators' templates say, in one form
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanNaming:
    """Stable names of the plan's objects (ids, seeds, layout.json and region prompts use them)."""

    style: str  # "floor_plan" or "room"
    prefix: str = ""  # a building's storey above the ground floor: "storey1/" (pieces; the shell takes it in shell_parts)

    def floor(self, room: str) -> str:
        return "room.floor" if self.style == "room" else f"floor:{room}"

    def ceiling(self, room: str) -> str:
        return "room.ceiling" if self.style == "room" else f"ceiling:{room}"

    def outer_wall(self, room: str, edge: int, edge_name: str) -> str:
        return f"room.wall_{edge_name}" if self.style == "room" else f"wall:{room}:{edge}"

    def shared_wall(self, a: str, b: str) -> str:
        a, b = sorted((a, b))
        return f"wall:{a}|{b}"

    def piece(self, room: str, piece: str) -> str:
        return piece if self.style == "room" else f"{self.prefix}{room}/{piece}"


@dataclass(frozen=True)
class PlanRoomInput:
    name: str
    type: str | None
    polygon: tuple[Point, ...]  # wall centre lines, as given (checked by plan_geometry)
    key: str  # template key of the room ("generator.floor_plan.rooms.2", "generator.room")
    shape_key: str  # its polygon's key (".polygon", ".rect", or the room generator's width/depth)
    shape_value: object
    edge_names: tuple[str, ...]  # per edge: "0", "1", ... or the room generator's "south", ...
    furniture: object  # "auto" or a list of FurnitureSpec
    furniture_key: str  # "generator.floor_plan.rooms.2.furniture", "generator.room.furniture"


@dataclass(frozen=True)
class OpeningInput:
    kind: str  # "door" or "window"
    key: str  # "generator.floor_plan.doors.3", "generator.room.windows.0"
    name: str  # stable name
    rooms: tuple[str, str]  # door: (swing room, other room or "outside"); window: (room, "outside")
    edge: int | None  # the first room's edge (windows, outside doors; optional for shared doors)
    edge_key: str | None  # where the edge index comes from in the template
    offset: float | None  # as the template gives it (None: centred)
    offset_map: tuple[float, float]  # along the edge (or shared stretch) = base + scale * offset
    width: float
    height: float
    sill: float
    glass: bool = True


@dataclass(frozen=True)
class PlanInput:
    generator: str  # "floor_plan" or "room"
    thickness: float
    height: float
    ceiling: bool
    rooms: tuple[PlanRoomInput, ...]
    openings: tuple[OpeningInput, ...]
    naming: PlanNaming
    key: str  # "generator.floor_plan" or "generator.room"


def floor_plan_input(spec) -> PlanInput:
    """``[generator.floor_plan]`` (a validated :class:`scenes.template_schema.FloorPlanSpec`)."""
    naming = PlanNaming("floor_plan")
    rooms = []
    for i, r in enumerate(spec.rooms):
        key = f"generator.floor_plan.rooms.{i}"
        shape_key = f"{key}.polygon" if r.polygon is not None else f"{key}.rect"
        poly = tuple(r.vertices)
        rooms.append(PlanRoomInput(
            name=r.name, type=r.type, polygon=poly, key=key, shape_key=shape_key,
            shape_value=r.polygon if r.polygon is not None else r.rect,
            edge_names=tuple(str(k) for k in range(len(poly))), furniture=r.furniture, furniture_key=f"{key}.furniture",
        ))
    openings = []
    pair_count: dict[tuple[str, str], int] = {}
    for i, d in enumerate(spec.doors):
        a, b = d.between
        pair = tuple(sorted((a, b)))
        n = pair_count.get(pair, 0)
        pair_count[pair] = n + 1
        name = f"door:{pair[0]}|{pair[1]}" + (f":{n}" if n else "")
        edge = d.wall
        openings.append(OpeningInput(
            kind="door", key=f"generator.floor_plan.doors.{i}", name=name, rooms=(a, b), edge=edge,
            edge_key=f"generator.floor_plan.doors.{i}.wall", offset=d.offset, offset_map=(0.0, 1.0),
            width=d.width, height=d.height, sill=0.0,
        ))
    edge_count: dict[tuple[str, int], int] = {}
    for i, w in enumerate(spec.windows):
        n = edge_count.get((w.room, w.wall), 0)
        edge_count[(w.room, w.wall)] = n + 1
        openings.append(OpeningInput(
            kind="window", key=f"generator.floor_plan.windows.{i}", name=f"window:{w.room}:{w.wall}:{n}",
            rooms=(w.room, OUTSIDE), edge=w.wall, edge_key=f"generator.floor_plan.windows.{i}.wall", offset=w.offset,
            offset_map=(0.0, 1.0), width=w.width, height=w.height, sill=w.sill, glass=w.glass,
        ))
    return PlanInput("floor_plan", float(spec.wall_thickness), float(spec.height), bool(spec.ceiling), tuple(rooms),
                     tuple(openings), naming, "generator.floor_plan")


ROOM_EDGE_NAMES = ("south", "east", "north", "west")
L_EDGE_NAMES = ("south", "east", "north_inner", "east_inner", "north", "west")
ROOM_NAME = "room"  # the one room of [generator.room]


def room_plan_input(room) -> PlanInput:
    """``[generator.room]`` (a validated :class:`scenes.template_schema.RoomSpec`) as a one-room plan.

    The room's interior spans x in [0, width], y in [0, depth] as before (the L loses its
    north-east corner); its walls keep their names (``room.wall_south``, ...) and openings their
    offsets (from the west or south end of the wall's interior face)."""
    w, d, t = float(room.width), float(room.depth), float(room.wall_thickness)
    if room.footprint == "l_shape":
        cx, cy = (float(v) for v in room.l_cut)
        interior = [(0.0, 0.0), (w, 0.0), (w, d - cy), (w - cx, d - cy), (w - cx, d), (0.0, d)]
        names = L_EDGE_NAMES
    else:
        interior = [(0.0, 0.0), (w, 0.0), (w, d), (0.0, d)]
        names = ROOM_EDGE_NAMES
    centre = offset_polygon(interior, [-t / 2.0] * len(interior))
    rooms = (PlanRoomInput(
        name=ROOM_NAME, type=None, polygon=tuple(centre), key="generator.room", shape_key="generator.room",
        shape_value=None, edge_names=names, furniture=list(room.furniture), furniture_key="generator.room.furniture",
    ),)
    # the room generator's wall frames: offsets run from the west end (north, south) or the south end (east, west)
    frames = {"south": ((0.0, 0.0), (1.0, 0.0)), "east": ((w, 0.0), (0.0, 1.0)),
              "north": ((0.0, d), (1.0, 0.0)), "west": ((0.0, 0.0), (0.0, 1.0))}
    openings = []
    for kind, specs in (("door", room.doors), ("window", room.windows)):
        for i, o in enumerate(specs):
            edge = names.index(o.wall)
            (ox, oy), (dx, dy) = frames[o.wall]
            a, b = centre[edge], centre[(edge + 1) % len(centre)]
            ex, ey = unit(b[0] - a[0], b[1] - a[1])
            scale = dx * ex + dy * ey
            base = (ox - a[0]) * ex + (oy - a[1]) * ey
            openings.append(OpeningInput(
                kind=kind, key=f"generator.room.{kind}s.{i}", name=f"room.{kind}_{i}", rooms=(ROOM_NAME, OUTSIDE),
                edge=edge, edge_key=None, offset=float(o.offset), offset_map=(base, scale), width=float(o.width),
                height=float(o.height), sill=float(o.sill), glass=bool(o.glass) if kind == "window" else False,
            ))
    return PlanInput("room", t, float(room.height), bool(room.ceiling), rooms, tuple(openings), PlanNaming("room"), "generator.room")


# --------------------------------------------------------------------------------------------
# The geometry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WallLine:
    """One wall's interior face seen from a room: ``start`` + ``direction`` * along (0 .. length),
    ``inward`` into the room. ``name`` is the edge's name, ``index`` its edge index."""

    name: str
    index: int
    start: Point
    direction: Point
    inward: Point
    length: float

    @property
    def yaw(self) -> float:
        """Yaw (degrees) that turns a piece's front (local +y) to face into the room from this wall."""
        nx, ny = self.inward
        return math.degrees(math.atan2(-nx, ny))

    def point(self, along: float, into: float) -> Point:
        return (self.start[0] + along * self.direction[0] + into * self.inward[0],
                self.start[1] + along * self.direction[1] + into * self.inward[1])

    def along_of(self, p: Point) -> float:
        return (p[0] - self.start[0]) * self.direction[0] + (p[1] - self.start[1]) * self.direction[1]


@dataclass(frozen=True)
class PlanRoom:
    index: int
    name: str
    type: str | None
    key: str
    polygon: tuple[Point, ...]  # wall centre lines
    interior: tuple[Point, ...]  # the floor inside the walls (polygon inset by thickness / 2)
    outline: tuple[Point, ...]  # the polygon with every node on its edges (where walls meet it) as a vertex
    walls: tuple[WallLine, ...]  # interior faces, one per edge
    edge_names: tuple[str, ...]
    furniture: object
    furniture_key: str

    @property
    def area(self) -> float:
        return signed_area(self.interior)

    @property
    def centroid(self) -> Point:
        return centroid(self.interior)


@dataclass(frozen=True)
class Opening:
    """A door or window resolved onto a wall segment."""

    kind: str
    name: str
    key: str
    index: int  # position in the plan's openings (doors first, then windows)
    segment: int  # index into PlanGeometry.segments
    a0: float  # along the segment from p0
    a1: float
    sill: float
    top: float
    rooms: tuple[str, str]  # door: (swing room, other or "outside"); window: (room, "outside")
    glass: bool
    hinge_along: float = 0.0  # doors: the hinge jamb (a0 or a1)
    swing_side: int = 1  # doors: +1 opens to the segment's left (its owner room), -1 to the right
    offset_frame: tuple[float, float] = (0.0, 1.0)  # the template's offset = c0 + c1 * along (for messages)

    def user_offset(self, along: float) -> float:
        return self.offset_frame[0] + self.offset_frame[1] * along

    @property
    def width(self) -> float:
        return self.a1 - self.a0

    @property
    def height(self) -> float:
        return self.top - self.sill


@dataclass(frozen=True)
class WallSegment:
    """One straight wall between two nodes: ``p0`` -> ``p1`` along its centre line; the ``owner``
    room is on its left (``left_normal`` of the direction), ``other`` on its right (None: outside)."""

    name: str
    owner: str
    owner_edge: int
    other: str | None
    other_edge: int | None
    p0: Point
    p1: Point
    # filled in by the joins: the faces' extents along the segment and the footprint's caps
    left_range: tuple[float, float] = (0.0, 0.0)
    right_range: tuple[float, float] = (0.0, 0.0)
    start_cap: tuple[Point, Point, Point] = ((0.0, 0.0),) * 3  # right face end, node, left face end
    end_cap: tuple[Point, Point, Point] = ((0.0, 0.0),) * 3

    @property
    def length(self) -> float:
        return math.dist(self.p0, self.p1)

    @property
    def direction(self) -> Point:
        return unit(self.p1[0] - self.p0[0], self.p1[1] - self.p0[1])

    @property
    def normal(self) -> Point:
        return left_normal(self.direction)

    @property
    def usable(self) -> tuple[float, float]:
        """Along-range on both faces, away from the joins by the opening margin."""
        return (max(self.left_range[0], self.right_range[0]) + OPENING_EDGE_MARGIN,
                min(self.left_range[1], self.right_range[1]) - OPENING_EDGE_MARGIN)

    def point(self, along: float, across: float = 0.0) -> Point:
        d, n = self.direction, self.normal
        return (self.p0[0] + along * d[0] + across * n[0], self.p0[1] + along * d[1] + across * n[1])

    def footprint(self) -> list[Point]:
        """Counter-clockwise footprint: the right face, the end cap, the left face, the start cap."""
        sr, sn, sl = self.start_cap
        er, en, el = self.end_cap
        pts = [sr, er, en, el, sl, sn]
        out: list[Point] = []
        for p in pts:
            if not out or math.dist(out[-1], p) > 1e-9:
                out.append(p)
        if math.dist(out[0], out[-1]) <= 1e-9:
            out.pop()
        return out


@dataclass(frozen=True)
class DoorPassage:
    """Where a door lets one through: for tours and free-space checks."""

    name: str
    rooms: tuple[str, str]  # (swing room, other room or "outside")
    centre: Point  # on the wall's centre line, at the middle of the opening
    normal: Point  # unit, across the wall, pointing into rooms[0]
    width: float
    height: float
    thickness: float


@dataclass(frozen=True)
class PlacementZone:
    """A zone kept free (door passage or swing, window) or an obstacle (door leaf) in one room."""

    label: str  # what it is, for messages: "the swing of door:a|b", ...
    kind: str  # "door_passage", "door_swing", "door_leaf", "window", "opening" (hung pieces keep off it)
    footprint: Footprint


@dataclass
class PlanGeometry:
    input: PlanInput
    rooms: dict[str, PlanRoom]
    segments: list[WallSegment]
    openings: list[Opening]
    zones: dict[str, list[PlacementZone]] = field(default_factory=dict)  # per room

    @property
    def thickness(self) -> float:
        return self.input.thickness

    @property
    def height(self) -> float:
        return self.input.height

    def wall_names(self) -> list[str]:
        """Wall object names in their stable order (first appearance over rooms, then edges)."""
        seen: list[str] = []
        for seg in self.segments:
            if seg.name not in seen:
                seen.append(seg.name)
        return seen

    def door_passages(self) -> list[DoorPassage]:
        out = []
        t = self.thickness
        for op in self.openings:
            if op.kind != "door":
                continue
            seg = self.segments[op.segment]
            centre = seg.point((op.a0 + op.a1) / 2.0)
            n = seg.normal
            normal = n if op.swing_side > 0 else (-n[0], -n[1])
            out.append(DoorPassage(op.name, op.rooms, centre, normal, op.width, op.height, t))
        return out

    def room_of_point(self, x: float, y: float) -> str | None:
        """The room whose interior holds the floor point, or None (in a wall, or outside)."""
        for room in self.rooms.values():
            if point_in_polygon(x, y, room.interior):
                return room.name
        return None

    def to_json(self) -> dict:
        """The resolved plan as plain data (recorded in layout.json's generator entry)."""
        r6 = lambda v: round(float(v), 6)  # noqa: E731
        return {
            "wall_thickness": self.thickness, "height": self.height, "ceiling": self.input.ceiling,
            "rooms": [
                {"name": r.name, "type": r.type, "polygon": [[r6(x), r6(y)] for x, y in r.polygon],
                 "interior": [[r6(x), r6(y)] for x, y in r.interior], "area": r6(r.area),
                 "walls": [{"edge": w.index, "name": w.name, "start": [r6(w.start[0]), r6(w.start[1])],
                            "direction": [r6(w.direction[0]), r6(w.direction[1])],
                            "inward": [r6(w.inward[0]), r6(w.inward[1])], "length": r6(w.length)} for w in r.walls]}
                for r in self.rooms.values()
            ],
            "walls": [
                {"name": s.name, "rooms": [s.owner, s.other or OUTSIDE], "edges": [s.owner_edge, s.other_edge],
                 "start": [r6(s.p0[0]), r6(s.p0[1])], "end": [r6(s.p1[0]), r6(s.p1[1])]}
                for s in self.segments
            ],
            "openings": [
                {"kind": op.kind, "name": op.name, "key": op.key, "wall": self.segments[op.segment].name,
                 "rooms": list(op.rooms), "centre": [r6(v) for v in self.segments[op.segment].point((op.a0 + op.a1) / 2)],
                 "width": r6(op.width), "sill": r6(op.sill), "height": r6(op.height),
                 **({"glass": op.glass} if op.kind == "window" else {})}
                for op in self.openings
            ],
            "doors": [
                {"name": p.name, "rooms": list(p.rooms), "centre": [r6(p.centre[0]), r6(p.centre[1])],
                 "normal": [r6(p.normal[0]), r6(p.normal[1])], "width": r6(p.width), "height": r6(p.height)}
                for p in self.door_passages()
            ],
        }


# --------------------------------------------------------------------------------------------
# Building the geometry, collecting problems
# --------------------------------------------------------------------------------------------


def _check_room_polygon(room: PlanRoomInput, t: float) -> tuple[list[dict], tuple[Point, ...] | None]:
    """Problems of one room's polygon on its own; the interior polygon when there are none."""
    key, value = room.shape_key, room.shape_value
    poly = list(room.polygon)
    problems = []
    n = len(poly)
    for i in range(n):
        if math.dist(poly[i], poly[(i + 1) % n]) < 1e-6:
            problems.append(plan_problem(key, value, f"vertices {i} and {(i + 1) % n} are the same point {_pt(poly[i])}; "
                                         "remove the repeated vertex"))
            return problems, None
    area = signed_area(poly)
    if area < 0:
        problems.append(plan_problem(key, value, "the vertices run clockwise; list them counter-clockwise "
                                     "(reverse the list; edge i then runs from vertex i to i + 1)"))
        return problems, None
    if area < 1e-6:
        problems.append(plan_problem(key, value, "the polygon encloses no area; give at least three corners of the room"))
        return problems, None
    crossing = self_crossing(poly)
    if crossing is not None:
        i, j = crossing
        problems.append(plan_problem(key, value, f"edges {i} and {j} cross or touch: a room is a simple polygon; "
                                     "reorder the vertices or split the room in two"))
        return problems, None
    for i in range(n):
        a, b, c = poly[i - 1], poly[i], poly[(i + 1) % n]
        d1 = unit(b[0] - a[0], b[1] - a[1])
        d2 = unit(c[0] - b[0], c[1] - b[1])
        interior_angle = 180.0 - math.degrees(math.atan2(d1[0] * d2[1] - d1[1] * d2[0], d1[0] * d2[0] + d1[1] * d2[1]))
        if interior_angle < MIN_WEDGE_DEG or interior_angle > 360.0 - MIN_WEDGE_DEG:
            problems.append(plan_problem(key, value, f"the corner at vertex {i} {_pt(b)} is {interior_angle:.0f} degrees; "
                                         f"walls meet at {MIN_WEDGE_DEG:.0f} to {360 - MIN_WEDGE_DEG:.0f} degrees: move the vertex"))
    for i in range(n):
        length = math.dist(poly[i], poly[(i + 1) % n])
        if length < t + 2 * OPENING_EDGE_MARGIN:
            problems.append(plan_problem(key, value, f"edge {i} is {_m(length)} m long; edges are at least "
                                         f"{_m(t + 2 * OPENING_EDGE_MARGIN)} m (the wall thickness {t} plus 0.1) long"))
    if problems:
        return problems, None
    interior = offset_polygon(poly, [t / 2.0] * n)
    bad = signed_area(interior) <= 1e-6 or self_crossing(interior) is not None
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ia, ib = interior[i], interior[(i + 1) % n]
        if (ib[0] - ia[0]) * (b[0] - a[0]) + (ib[1] - ia[1]) * (b[1] - a[1]) <= 1e-6:
            bad = True
    if bad:
        problems.append(plan_problem(key, value, f"the room is too narrow for its {t} m walls (its floor inside the walls "
                                     "vanishes or folds over); make it wider"))
        return problems, None
    return problems, tuple(interior)


def _interior_sample_points(poly: Sequence[Point]) -> list[Point]:
    """Points strictly inside a simple polygon: its triangles' centroids."""
    out = []
    for i, j, k in triangulate(poly):
        a, b, c = poly[i], poly[j], poly[k]
        out.append(((a[0] + b[0] + c[0]) / 3.0, (a[1] + b[1] + c[1]) / 3.0))
    return out


def _box(poly: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    return min(xs), min(ys), max(xs), max(ys)


def _boxes_touch(a, b, tol: float) -> bool:
    return not (a[2] < b[0] - tol or b[2] < a[0] - tol or a[3] < b[1] - tol or b[3] < a[1] - tol)


def _rooms_overlap(a: Sequence[Point], b: Sequence[Point]) -> Point | None:
    """A point where the interiors of two simple polygons overlap, or None (sharing edges is fine)."""
    na, nb = len(a), len(b)
    for i in range(na):
        p, q = a[i], a[(i + 1) % na]
        for j in range(nb):
            r, s = b[j], b[(j + 1) % nb]
            if segments_cross(p, q, r, s, eps=1e-9):
                # the crossing point
                den = (q[0] - p[0]) * (s[1] - r[1]) - (q[1] - p[1]) * (s[0] - r[0])
                u = ((r[0] - p[0]) * (s[1] - r[1]) - (r[1] - p[1]) * (s[0] - r[0])) / den
                return (p[0] + u * (q[0] - p[0]), p[1] + u * (q[1] - p[1]))
    for pt in _interior_sample_points(a):
        if point_in_polygon(pt[0], pt[1], b):
            return pt
    for pt in _interior_sample_points(b):
        if point_in_polygon(pt[0], pt[1], a):
            return pt
    return None


def _shared_stretches(rooms: list[PlanRoomInput]) -> dict[tuple[int, int], list[tuple[float, float, int, int, Point, Point]]]:
    """Per (room index, edge): the stretches it shares, sorted along the edge, as (u0, u1 from the
    edge's start, other room index, other edge, start point, end point). The points are the
    rooms' own vertices (never recomputed), so both sides agree exactly."""
    out: dict[tuple[int, int], list] = {}
    boxes = [_box(r.polygon) for r in rooms]
    for i, ri in enumerate(rooms):
        pi = ri.polygon
        for j in range(i + 1, len(rooms)):
            if not _boxes_touch(boxes[i], boxes[j], COLLINEAR_TOL):
                continue
            pj = rooms[j].polygon
            for a in range(len(pi)):
                p, q = pi[a], pi[(a + 1) % len(pi)]
                length = math.dist(p, q)
                d = ((q[0] - p[0]) / length, (q[1] - p[1]) / length)
                for b in range(len(pj)):
                    r, s = pj[b], pj[(b + 1) % len(pj)]
                    # collinear: both of the other edge's ends on this edge's line
                    if abs((r[0] - p[0]) * d[1] - (r[1] - p[1]) * d[0]) > COLLINEAR_TOL or \
                            abs((s[0] - p[0]) * d[1] - (s[1] - p[1]) * d[0]) > COLLINEAR_TOL:
                        continue
                    ur = (r[0] - p[0]) * d[0] + (r[1] - p[1]) * d[1]
                    us = (s[0] - p[0]) * d[0] + (s[1] - p[1]) * d[1]
                    if us >= ur:
                        continue  # the same direction: both rooms on one side (an overlap, reported as such)
                    lo, hi = max(0.0, us), min(length, ur)
                    if hi - lo <= COLLINEAR_TOL:
                        continue
                    start = p if us <= 0.0 else s
                    end = q if ur >= length else r
                    out.setdefault((i, a), []).append((j, b, start, end))
                    out.setdefault((j, b), []).append((i, a, end, start))
    for (i, a), stretches in out.items():
        p = rooms[i].polygon[a]
        out[(i, a)] = sorted((math.dist(p, start), math.dist(p, end), j, b, start, end) for j, b, start, end in stretches)
    return out


def _node_key(p: Point) -> tuple[int, int]:
    return (round(p[0] * 1e6), round(p[1] * 1e6))


def _angle(d: Point) -> float:
    return math.atan2(d[1], d[0]) % (2.0 * math.pi)


def _mitre(node: Point, u: Point, v: Point, h: float) -> Point:
    """The corner of the wedge from direction u counter-clockwise to v at ``node``: where u's left
    face line meets v's right face line (both ``h`` from the centre lines); the perpendicular cut
    when the two are (nearly) opposite."""
    nu = left_normal(u)
    nv = (v[1], -v[0])  # right normal of v
    a = (node[0] + h * nu[0], node[1] + h * nu[1])
    b = (node[0] + h * nv[0], node[1] + h * nv[1])
    den = u[0] * v[1] - u[1] * v[0]
    if abs(den) < 1e-9:
        return a
    # a + s u = b + r v
    s = ((b[0] - a[0]) * v[1] - (b[1] - a[1]) * v[0]) / den
    return (a[0] + s * u[0], a[1] + s * u[1])


def plan_geometry(plan: PlanInput) -> tuple[PlanGeometry, list[dict]]:
    """The plan's geometry and every problem found (empty when it builds). Rooms, walls and
    openings with problems are left out of the geometry; the rest is complete."""
    t, h = plan.thickness, plan.height
    problems: list[dict] = []

    # 1. Rooms on their own: names, polygons
    valid: list[PlanRoomInput] = []
    interiors: dict[str, tuple[Point, ...]] = {}
    seen: dict[str, str] = {}
    for room in plan.rooms:
        if room.name == OUTSIDE:
            problems.append(plan_problem(f"{room.key}.name", room.name, "'outside' names the space around the plan; rename the room"))
            continue
        if room.name in seen:
            problems.append(plan_problem(f"{room.key}.name", room.name, f"also the name of {seen[room.name]}; room names are unique"))
            continue
        seen[room.name] = room.key
        found, interior = _check_room_polygon(room, t)
        problems += found
        if interior is not None:
            valid.append(room)
            interiors[room.name] = interior

    # 2. Rooms against each other: no overlap
    boxes = [_box(r.polygon) for r in valid]
    overlapping: set[int] = set()
    for i in range(len(valid)):
        for j in range(i + 1, len(valid)):
            if j in overlapping or i in overlapping or not _boxes_touch(boxes[i], boxes[j], 0.0):
                continue
            where = _rooms_overlap(valid[i].polygon, valid[j].polygon)
            if where is not None:
                overlapping.add(j)
                problems.append(plan_problem(valid[j].shape_key, valid[j].shape_value,
                                             f"overlaps room {valid[i].name!r} ({valid[i].key}) around {_pt(where)}; rooms may "
                                             "share walls (edges along one line) but not overlap: move its vertices"))
    rooms_in = [r for k, r in enumerate(valid) if k not in overlapping]

    # 3. Edges split into shared stretches and outer pieces -> wall segments (a shared one is made
    # from the side of the room whose name sorts first, along its edge)
    shared = _shared_stretches(rooms_in)
    index_of = {r.name: k for k, r in enumerate(rooms_in)}
    segments: list[WallSegment] = []
    edge_pieces: dict[tuple[str, int], list[tuple[float, float, int]]] = {}  # (room, edge) -> (u0, u1, segment)
    unresolved: list[tuple[str, int, float, float, Point]] = []
    for i, room in enumerate(rooms_in):
        poly = room.polygon
        n = len(poly)
        for a in range(n):
            p, q = poly[a], poly[(a + 1) % n]
            length = math.dist(p, q)
            cursor, cursor_pt = 0.0, p
            pieces: list[tuple[float, float, Point, Point, tuple | None]] = []
            for u0, u1, j, b, start, end in shared.get((i, a), []):
                if u0 > cursor + COLLINEAR_TOL:
                    pieces.append((cursor, u0, cursor_pt, start, None))
                pieces.append((u0, u1, start, end, (j, b)))
                cursor, cursor_pt = u1, end
            if length - cursor > COLLINEAR_TOL:
                pieces.append((cursor, length, cursor_pt, q, None))
            for u0, u1, start, end, other in pieces:
                if other is None:
                    segments.append(WallSegment(plan.naming.outer_wall(room.name, a, room.edge_names[a]), room.name, a,
                                                None, None, start, end))
                    edge_pieces.setdefault((room.name, a), []).append((u0, u1, len(segments) - 1))
                    continue
                j, b = other
                other_name = rooms_in[j].name
                if room.name < other_name:
                    segments.append(WallSegment(plan.naming.shared_wall(room.name, other_name), room.name, a, other_name, b,
                                                start, end))
                    edge_pieces.setdefault((room.name, a), []).append((u0, u1, len(segments) - 1))
                else:
                    unresolved.append((room.name, a, u0, u1, start))
    for room_name, a, u0, u1, start in unresolved:  # the other side's view of a shared stretch
        k = next(k for k, seg in enumerate(segments) if seg.other == room_name and seg.other_edge == a
                 and _node_key(seg.p1) == _node_key(start))
        edge_pieces.setdefault((room_name, a), []).append((u0, u1, k))
    for pieces in edge_pieces.values():
        pieces.sort()

    # 4. Pieces too short, walls too close, joins
    for seg in segments:
        if seg.length < t:
            owner = rooms_in[index_of[seg.owner]]
            problems.append(plan_problem(owner.shape_key, owner.shape_value,
                                         f"edge {seg.owner_edge} has a {_m(seg.length)} m piece of wall from {_pt(seg.p0)} to "
                                         f"{_pt(seg.p1)}{' shared with ' + repr(seg.other) if seg.other else ' where it stops being shared'}; "
                                         f"neighbouring rooms' corners meet exactly or at least {t} m apart"))
    nodes: dict[tuple[int, int], list[tuple[int, int]]] = {}  # node -> [(segment, +1 start / -1 end)]
    for k, seg in enumerate(segments):
        nodes.setdefault(_node_key(seg.p0), []).append((k, 1))
        nodes.setdefault(_node_key(seg.p1), []).append((k, -1))
    node_of = {}
    for key, ends in nodes.items():
        for k, end in ends:
            node_of[(k, end)] = key
    # walls that meet without a node, or run too close to each other
    seg_boxes = [_box([s.p0, s.p1]) for s in segments]
    reported_close: set[tuple[int, int]] = set()
    for k1 in range(len(segments)):
        for k2 in range(k1 + 1, len(segments)):
            if not _boxes_touch(seg_boxes[k1], seg_boxes[k2], t):
                continue
            s1, s2 = segments[k1], segments[k2]
            if {node_of[(k1, 1)], node_of[(k1, -1)]} & {node_of[(k2, 1)], node_of[(k2, -1)]}:
                continue
            gap = min(distance_to_segment(s1.p0, s2.p0, s2.p1), distance_to_segment(s1.p1, s2.p0, s2.p1),
                      distance_to_segment(s2.p0, s1.p0, s1.p1), distance_to_segment(s2.p1, s1.p0, s1.p1))
            if segments_cross(s1.p0, s1.p1, s2.p0, s2.p1):
                gap = 0.0
            if gap < t - 1e-9 and (k1, k2) not in reported_close:
                reported_close.add((k1, k2))
                room = rooms_in[index_of[s2.owner]]
                what = "touches" if gap < 1e-9 else f"runs {_m(gap)} m from"
                problems.append(plan_problem(room.shape_key, room.shape_value,
                                             f"the wall on edge {s2.owner_edge} of {s2.owner!r} {what} the wall on edge "
                                             f"{s1.owner_edge} of {s1.owner!r} without sharing it (their {t} m walls would overlap); "
                                             "make the rooms share the edge exactly or keep them at least the wall thickness apart"))
    half = t / 2.0
    caps: dict[tuple[int, int], tuple[Point, Point, Point]] = {}
    for key, ends in nodes.items():
        node = (key[0] / 1e6, key[1] / 1e6)
        node = segments[ends[0][0]].p0 if ends[0][1] == 1 else segments[ends[0][0]].p1  # exact coordinates
        outgoing = []
        for k, end in ends:
            d = segments[k].direction
            u = d if end == 1 else (-d[0], -d[1])
            outgoing.append((_angle(u), k, end, u))
        outgoing.sort()
        m = len(outgoing)
        mitres = []
        for q in range(m):
            a0, k0, e0, u0 = outgoing[q]
            a1, k1, e1, u1 = outgoing[(q + 1) % m]
            wedge = math.degrees((a1 - a0) % (2.0 * math.pi)) if m > 1 else 360.0
            if wedge < MIN_WEDGE_DEG - 1e-6 and m > 1:
                room = rooms_in[index_of[segments[k1].owner]]
                problems.append(plan_problem(room.shape_key, room.shape_value,
                                             f"walls {segments[k0].name} and {segments[k1].name} meet at {_pt(node)} at "
                                             f"{wedge:.0f} degrees; walls meet at {MIN_WEDGE_DEG:.0f} degrees or more"))
            mitres.append(_mitre(node, u0, u1, half))
        for q in range(m):
            _, k, end, u = outgoing[q]
            left_of_u = mitres[q]  # wedge from u counter-clockwise
            right_of_u = mitres[q - 1]  # wedge ending at u
            if end == 1:  # the segment starts here: its left face is u's left
                caps[(k, 1)] = (right_of_u, node, left_of_u)
            else:  # it ends here, running towards the node: its left face is u's right
                caps[(k, -1)] = (left_of_u, node, right_of_u)
    for k, seg in enumerate(segments):
        sc, ec = caps[(k, 1)], caps[(k, -1)]
        d = seg.direction
        along = lambda p: (p[0] - seg.p0[0]) * d[0] + (p[1] - seg.p0[1]) * d[1]  # noqa: E731
        segments[k] = WallSegment(seg.name, seg.owner, seg.owner_edge, seg.other, seg.other_edge, seg.p0, seg.p1,
                                  left_range=(along(sc[2]), along(ec[2])), right_range=(along(sc[0]), along(ec[0])),
                                  start_cap=sc, end_cap=ec)

    # 5. Rooms with their interior wall lines
    rooms: dict[str, PlanRoom] = {}
    for room in rooms_in:
        interior = interiors[room.name]
        n = len(interior)
        walls = []
        for k in range(n):
            a, b = interior[k], interior[(k + 1) % n]
            d = unit(b[0] - a[0], b[1] - a[1])
            walls.append(WallLine(room.edge_names[k], k, a, d, left_normal(d), math.dist(a, b)))
        outline: list[Point] = []
        for k in range(n):
            for _, _, s in edge_pieces.get((room.name, k), []):
                seg = segments[s]
                start = seg.p0 if seg.owner == room.name else seg.p1
                if not outline or _node_key(outline[-1]) != _node_key(start):
                    outline.append(start)
        rooms[room.name] = PlanRoom(index=plan.rooms.index(room), name=room.name, type=room.type, key=room.key,
                                    polygon=tuple(room.polygon), interior=interior, outline=tuple(outline), walls=tuple(walls),
                                    edge_names=room.edge_names, furniture=room.furniture, furniture_key=room.furniture_key)

    # 6. Openings onto their walls
    all_names = {r.name for r in plan.rooms}
    openings: list[Opening] = []
    for index, op in enumerate(plan.openings):
        found, resolved = _resolve_opening(plan, op, index, rooms, segments, edge_pieces, all_names)
        problems += found
        if resolved is not None:
            openings.append(resolved)
    # openings sharing a wall segment must not overlap
    by_segment: dict[int, list[Opening]] = {}
    for op in openings:
        by_segment.setdefault(op.segment, []).append(op)
    dropped: set[str] = set()
    for k, ops in by_segment.items():
        ops.sort(key=lambda o: (o.a0, o.index))
        for first, second in zip(ops, ops[1:]):
            if second.a0 < first.a1 + OPENING_GAP - 1e-9:
                spec = plan.openings[second.index]
                value = spec.offset if spec.offset is not None else None
                dropped.add(second.key)
                after = second.user_offset(first.a1 + OPENING_GAP + second.width / 2.0)
                # the offset that clears the first opening, in the template's own direction along the wall
                allowed = f"offset <= {_m(after)}" if second.offset_frame[1] < 0 else f"offset >= {_m(after)}"
                problems.append(plan_problem(
                    f"{second.key}.offset" if spec.offset is not None else second.key, value,
                    f"the {second.kind} overlaps {first.key} ({first.name}) on {segments[k].name} (openings keep "
                    f"{OPENING_GAP:g} m of wall between them); allowed {allowed}, or move {first.key}"))
    openings = [op for op in openings if op.key not in dropped]

    geometry = PlanGeometry(plan, rooms, segments, openings)
    problems += _door_swings(geometry)
    geometry.zones = _placement_zones(geometry)
    return geometry, problems


def _user_range(op: OpeningInput, lo: float, hi: float) -> tuple[float, float]:
    """An along-range (edge or stretch coordinates) in the template's offset convention."""
    base, scale = op.offset_map
    a, b = (lo - base) / scale, (hi - base) / scale
    return (min(a, b), max(a, b))


def _resolve_opening(plan: PlanInput, op: OpeningInput, index: int, rooms: dict[str, PlanRoom],
                     segments: list[WallSegment], edge_pieces: dict, all_names: set[str]) -> tuple[list[dict], Opening | None]:
    t, h = plan.thickness, plan.height
    problems: list[dict] = []
    first, second = op.rooms
    top = op.sill + op.height
    limit = h - OPENING_EDGE_MARGIN
    if top > limit + 1e-9:
        problems.append(plan_problem(f"{op.key}.height", op.height,
                                     f"sill + height = {_m(top)} m is more than {_m(limit)} m (the room's height {h} minus "
                                     f"{OPENING_EDGE_MARGIN}); allowed height 0 .. {_m(max(0.0, limit - op.sill))}"))
    # which rooms
    room_key = f"{op.key}.between" if op.kind == "door" and plan.generator == "floor_plan" else f"{op.key}.room"
    room_value = list(op.rooms) if op.kind == "door" else first
    names = [first] if second == OUTSIDE else [first, second]
    if op.kind == "door" and first == second:
        problems.append(plan_problem(room_key, room_value, "a door is between two different rooms (or a room and 'outside')"))
        return problems, None
    if op.kind == "door" and first == OUTSIDE:
        problems.append(plan_problem(room_key, room_value, "name the room first: the door opens into it "
                                     f"(between = [{second!r}, 'outside'])"))
        return problems, None
    for name in names:
        if name not in all_names:
            known = ", ".join(sorted(all_names))
            problems.append(plan_problem(room_key, room_value, f"no room is named {name!r} (rooms: {known})"))
            return problems, None
        if name not in rooms:
            return problems, None  # that room has its own problems, reported there
    room = rooms[first]

    if second == OUTSIDE:
        # an outer wall of the room's edge
        outer_edges = sorted({a for (r, a), pieces in edge_pieces.items() if r == first
                              for _, _, s in pieces if segments[s].other is None})
        edge = op.edge
        if edge is None:
            if len(outer_edges) != 1:
                which = ", ".join(map(str, outer_edges)) or "none"
                problems.append(plan_problem(op.key, None, f"{first!r} has {len(outer_edges)} outer edges ({which}); "
                                             f"say which with {op.key}.wall = <edge index>"))
                return problems, None
            edge = outer_edges[0]
        if edge >= len(room.polygon):
            problems.append(plan_problem(op.edge_key or op.key, edge, f"{first!r} has edges 0 .. {len(room.polygon) - 1}"))
            return problems, None
        pieces = [(u0, u1, s) for u0, u1, s in edge_pieces.get((first, edge), []) if segments[s].other is None]
        if not pieces:
            others = sorted({segments[s].other or "" for _, _, s in edge_pieces.get((first, edge), [])} - {""})
            what = "windows go in outer walls" if op.kind == "window" else "an outside door goes in an outer wall"
            problems.append(plan_problem(op.edge_key or op.key, edge if op.edge_key else None,
                                         f"edge {edge} of {first!r} is shared with {', '.join(map(repr, others))}: {what} "
                                         f"({first!r}'s outer edges: {', '.join(map(str, outer_edges)) or 'none'})"))
            return problems, None
        # along the edge: the pieces' usable ranges in edge coordinates
        ranges = []
        for u0, u1, s in pieces:
            seg = segments[s]
            lo, hi = seg.usable
            ranges.append((u0 + lo, u0 + hi, s, u0))
        if op.offset is None:
            u0r, u1r, s, base_u = max(ranges, key=lambda r: (r[1] - r[0], -r[0]))
            centre_u = (u0r + u1r) / 2.0
        else:
            base, scale = op.offset_map
            centre_u = base + scale * op.offset
            s = base_u = None
            for u0r, u1r, sk, bu in ranges:
                if u0r - 1e-9 <= centre_u <= u1r + 1e-9:
                    s, base_u = sk, bu
            if s is None:
                s, base_u = min(((r[2], r[3]) for r in ranges),
                                key=lambda sb: min(abs(centre_u - (sb[1] + segments[sb[0]].usable[0])),
                                                   abs(centre_u - (sb[1] + segments[sb[0]].usable[1]))))
        seg = segments[s]
        lo, hi = seg.usable
        along = centre_u - base_u
        half_w = op.width / 2.0
        wall_text = f"{seg.name}" if plan.generator == "floor_plan" else f"the {room.edge_names[edge]} wall"
        if hi - lo < op.width - 1e-9:
            widest = max(r[1] - r[0] for r in ranges)
            problems.append(plan_problem(f"{op.key}.width", op.width,
                                         f"the {op.kind} is wider than {wall_text} allows ({_m(seg.length)} m of centre line, "
                                         f"{_m(hi - lo)} m between its ends' margins); allowed width 0 .. {_m(widest)}"))
            return problems, None
        if along - half_w < lo - 1e-9 or along + half_w > hi + 1e-9:
            allowed = [_user_range(op, r[0] + half_w, r[1] - half_w) for r in ranges if r[1] - r[0] >= op.width - 1e-9]
            spans = " or ".join(f"{_m(a)} .. {_m(b)}" for a, b in allowed)
            problems.append(plan_problem(f"{op.key}.offset", op.offset,
                                         f"the {op.kind} (width {op.width} m) reaches past the end of {wall_text} "
                                         f"(offset to its centre, from the wall's start); allowed offset {spans}"))
            return problems, None
        a0, a1 = along - half_w, along + half_w
        swing_side = 1  # the owner (this room) is on the left
        base, scale = op.offset_map
        frame = ((base_u - base) / scale, 1.0 / scale)
    else:
        # a door between two rooms: on a wall they share
        pair = {first, second}
        candidates = [k for k, seg in enumerate(segments) if {seg.owner, seg.other} == pair]
        if not candidates:
            neighbours = sorted({seg.other if seg.owner == first else seg.owner for seg in segments
                                 if first in (seg.owner, seg.other) and seg.other is not None})
            problems.append(plan_problem(room_key, room_value,
                                         f"{first!r} and {second!r} share no wall ({first!r} shares walls with "
                                         f"{', '.join(map(repr, neighbours)) or 'no room'}); a door goes in a wall the two rooms share"))
            return problems, None
        if op.edge is not None:
            chosen = [k for k in candidates if (segments[k].owner == first and segments[k].owner_edge == op.edge)
                      or (segments[k].other == first and segments[k].other_edge == op.edge)]
            if not chosen:
                edges = sorted({segments[k].owner_edge if segments[k].owner == first else segments[k].other_edge for k in candidates})
                problems.append(plan_problem(op.edge_key, op.edge, f"edge {op.edge} of {first!r} is not shared with {second!r} "
                                             f"(the shared edges of {first!r}: {', '.join(map(str, edges))})"))
                return problems, None
            candidates = chosen
        k = max(candidates, key=lambda c: (segments[c].usable[1] - segments[c].usable[0], -c))
        seg = segments[k]
        lo, hi = seg.usable
        forward = seg.owner == first  # the stretch runs along the first room's edge
        half_w = op.width / 2.0
        if hi - lo < op.width - 1e-9:
            problems.append(plan_problem(f"{op.key}.width", op.width,
                                         f"the door is wider than the wall {first!r} and {second!r} share ({seg.name}: "
                                         f"{_m(hi - lo)} m between its ends' margins); allowed width 0 .. {_m(hi - lo)}"))
            return problems, None
        length = seg.length
        if op.offset is None:
            along = (lo + hi) / 2.0
        else:
            along = op.offset if forward else length - op.offset
            if along - half_w < lo - 1e-9 or along + half_w > hi + 1e-9:
                a_lo, a_hi = lo + half_w, hi - half_w
                allowed = (a_lo, a_hi) if forward else (length - a_hi, length - a_lo)
                problems.append(plan_problem(f"{op.key}.offset", op.offset,
                                             f"the door (width {op.width} m) reaches past the end of {seg.name} (offset to its "
                                             f"centre, from where {first!r}'s edge reaches the shared wall); "
                                             f"allowed offset {_m(allowed[0])} .. {_m(allowed[1])}"))
                return problems, None
        a0, a1 = along - half_w, along + half_w
        swing_side = 1 if forward else -1
        s = k
        frame = (0.0, 1.0) if forward else (length, -1.0)
    if problems:
        return problems, None
    return problems, Opening(kind=op.kind, name=op.name, key=op.key, index=index, segment=s, a0=a0, a1=a1,
                             sill=op.sill, top=op.sill + op.height, rooms=(first, second), glass=op.glass,
                             hinge_along=a0, swing_side=swing_side, offset_frame=frame)


def door_leaf_footprint(seg: WallSegment, op: Opening, hinge_along: float, thickness: float) -> Footprint:
    """The open leaf (90 degrees into the swing room) as a footprint: against the hinge jamb,
    from the swing side's face ``width`` into the room."""
    side = op.swing_side
    face = side * thickness / 2.0
    leaf_w = op.width - 0.01
    toward = 1.0 if hinge_along == op.a0 else -1.0  # from the hinge jamb into the opening
    b0 = hinge_along + toward * 0.005
    b1 = b0 + toward * DOOR_LEAF_THICKNESS
    pts = [seg.point(b0, face), seg.point(b1, face), seg.point(b1, face + side * leaf_w), seg.point(b0, face + side * leaf_w)]
    return Footprint(convex_hull(pts), 0.0, op.top)


def door_swing_footprint(seg: WallSegment, op: Opening, hinge_along: float, thickness: float) -> Footprint:
    """The quarter disc the leaf sweeps (hinge at the jamb on the swing side's face)."""
    side = op.swing_side
    face = side * thickness / 2.0
    r = op.width
    toward = 1.0 if hinge_along == op.a0 else -1.0
    pts = [seg.point(hinge_along, face)]
    for k in range(SWING_SEGMENTS + 1):
        phi = 0.5 * math.pi * k / SWING_SEGMENTS
        pts.append(seg.point(hinge_along + toward * r * math.cos(phi), face + side * r * math.sin(phi)))
    return Footprint(convex_hull(pts), -math.inf, math.inf)


def _door_swings(geometry: PlanGeometry) -> list[dict]:
    """Choose each door's hinge (the jamb nearer the end of the swing room's wall, or the other
    when the leaf would not fit); a door whose leaf fits neither way is a problem."""
    problems = []
    t = geometry.thickness
    for k, op in enumerate(geometry.openings):
        if op.kind != "door":
            continue
        seg = geometry.segments[op.segment]
        lo, hi = seg.left_range if op.swing_side > 0 else seg.right_range
        first = op.a0 if (op.a0 - lo) <= (hi - op.a1) + 1e-9 else op.a1
        room = geometry.rooms[op.rooms[0]]
        chosen = None
        for hinge in (first, op.a1 if first == op.a0 else op.a0):
            leaf = door_leaf_footprint(seg, op, hinge, t)
            if footprint_inside_polygon(leaf, room.interior, tol=1e-6):
                chosen = hinge
                break
        if chosen is None:
            problems.append(plan_problem(op.key, None, f"the door's open leaf ({op.width - 0.01:.2f} m) does not fit inside "
                                         f"{op.rooms[0]!r} on either hinge; move the door away from the corner or make it narrower"))
            chosen = first
        geometry.openings[k] = dataclasses.replace(op, hinge_along=chosen)
    return problems


def _placement_zones(geometry: PlanGeometry) -> dict[str, list[PlacementZone]]:
    """Per room: door passages (both sides), door swings and open leaves, window zones."""
    zones: dict[str, list[PlacementZone]] = {name: [] for name in geometry.rooms}
    t = geometry.thickness
    for op in geometry.openings:
        seg = geometry.segments[op.segment]
        sides = [(1, seg.owner), (-1, seg.other)]
        for side, room in sides:
            if room is None or room not in zones:
                continue
            face = side * t / 2.0
            pts = [seg.point(op.a0 - 0.1, -t / 2 - 0.1), seg.point(op.a1 + 0.1, -t / 2 - 0.1),
                   seg.point(op.a1 + 0.1, t / 2 + 0.1), seg.point(op.a0 - 0.1, t / 2 + 0.1)]
            zones[room].append(PlacementZone(op.name, "opening", Footprint(convex_hull(pts), -math.inf, op.top + 0.1)))
            if op.kind == "door":
                a0, a1 = op.a0 - DOOR_CLEARANCE_SIDE, op.a1 + DOOR_CLEARANCE_SIDE
                pts = [seg.point(a0, face), seg.point(a1, face), seg.point(a1, face + side * DOOR_CLEARANCE_DEPTH),
                       seg.point(a0, face + side * DOOR_CLEARANCE_DEPTH)]
                zones[room].append(PlacementZone(f"the passage in front of {op.name} ({op.key})", "door_passage",
                                                 Footprint(convex_hull(pts))))
                if side == op.swing_side:
                    zones[room].append(PlacementZone(f"the swing of {op.name} ({op.key})", "door_swing",
                                                     door_swing_footprint(seg, op, op.hinge_along, t)))
                    zones[room].append(PlacementZone(f"the open leaf of {op.name} ({op.key})", "door_leaf",
                                                     door_leaf_footprint(seg, op, op.hinge_along, t)))
            else:
                pts = [seg.point(op.a0, face), seg.point(op.a1, face), seg.point(op.a1, face + side * WINDOW_ZONE_DEPTH),
                       seg.point(op.a0, face + side * WINDOW_ZONE_DEPTH)]
                zones[room].append(PlacementZone(f"{op.name} ({op.key})", "window",
                                                 Footprint(convex_hull(pts), op.sill, op.top)))
    return zones
