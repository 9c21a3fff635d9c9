"""The room: its walls (with door and window openings cut), floor and ceiling, and the rules that
place the furniture inside it. Pure numpy.

Room frame: the interior spans x in [0, width], y in [0, depth], z in [0, height]; walls have their
thickness outward. Walls: south (y = 0), east (x = width), north (y = depth), west (x = 0). An
L-shaped room (``l_cut``) loses its north-east corner and gains two inner walls: ``north_inner``
(at y = depth - l_cut.y, right of x = width - l_cut.x, facing south) and ``east_inner`` (at
x = width - l_cut.x, above y = depth - l_cut.y, facing west). An opening's ``offset`` runs along its wall
from the west end (north and south walls) or the south end (east and west walls) to its centre.

Entry points: :func:`room_geometry` (validated walls and openings), :func:`room_shell_parts`
(meshes of floor, ceiling, walls, doors, windows) and :func:`place_furniture` (placement by rules,
each piece's randomness only from ``object_rng(seed, stable_name)``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from greybox.errors import InputError
from procedural.furniture_library import EXEMPT_KINDS, WALL_KINDS, build_furniture, draw_size
from procedural.primitive_meshes import Mesh, box_between, merge, rotation_z, transform
from scenes.scene_data import object_rng
from scenes.template_schema import FurnitureSpec, RoomSpec

SLAB = 0.1  # floor and ceiling slab thickness, metres
OPENING_EDGE_MARGIN = 0.05  # an opening keeps this much wall to each side and above
DOOR_CLEARANCE_DEPTH = 1.0  # the zone in front of a door kept free, metres into the room
DOOR_CLEARANCE_SIDE = 0.1  # ... and this much wider than the door on each side
WINDOW_ZONE_DEPTH = 0.3  # pieces taller than the sill keep this far from a window
PIECE_GAP = 0.02  # minimum gap between two pieces
WALL_GAP = 0.01  # a piece's back is this far from its wall
CHAIR_ROOM = 0.7  # a desk keeps this much free in front of it when a chair follows
NIGHTSTAND_ROOM = 0.62  # a bed keeps this much free beside it for each nightstand that follows
MAX_TRIES = 300  # proposals per piece before giving up


# --------------------------------------------------------------------------------------------
# Walls and openings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WallLine:
    """One wall's interior face: ``start`` + ``direction`` * along (0 .. length), ``inward`` into the room.

    The wall's material spans along in [-extend_start, length + extend_end] and lies outward of the
    face by ``thickness``.
    """

    name: str
    start: tuple[float, float]
    direction: tuple[float, float]
    inward: tuple[float, float]
    length: float
    extend_start: float
    extend_end: float

    @property
    def yaw(self) -> float:
        """Yaw (degrees) that turns a piece's front (local +y) to face into the room from this wall."""
        nx, ny = self.inward
        return math.degrees(math.atan2(-nx, ny))

    def point(self, along: float, into: float) -> np.ndarray:
        return np.array(self.start) + along * np.array(self.direction) + into * np.array(self.inward)


@dataclass(frozen=True)
class Opening:
    kind: str  # "door" or "window"
    index: int
    wall: str
    offset: float
    width: float
    height: float
    sill: float

    @property
    def key(self) -> str:
        return f"generator.room.{self.kind}s.{self.index}"

    @property
    def span(self) -> tuple[float, float]:
        return self.offset - self.width / 2.0, self.offset + self.width / 2.0


@dataclass(frozen=True)
class Box2:
    """An oriented rectangle on the floor plus a z interval: a piece's (or zone's) bounding volume."""

    cx: float
    cy: float
    half_w: float
    half_d: float
    yaw: float  # degrees
    z0: float = 0.0
    z1: float = math.inf

    def axes(self) -> np.ndarray:
        a = math.radians(self.yaw)
        return np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # local x, local y in world

    def corners(self) -> np.ndarray:
        ax = self.axes()
        c = np.array([self.cx, self.cy])
        return np.array([c + sx * self.half_w * ax[0] + sy * self.half_d * ax[1]
                         for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def boxes_overlap(a: Box2, b: Box2, margin: float = 0.0) -> bool:
    """True when the two volumes come closer than ``margin`` (separating-axis test on the floor
    plus z intervals). Touching at exactly ``margin`` counts as apart."""
    if a.z1 <= b.z0 + 1e-9 or b.z1 <= a.z0 + 1e-9:
        return False
    ca, cb = a.corners(), b.corners()
    for axis in np.concatenate([a.axes(), b.axes()]):
        pa, pb = ca @ axis, cb @ axis
        if pa.max() + margin <= pb.min() + 1e-9 or pb.max() + margin <= pa.min() + 1e-9:
            return False
    return True


@dataclass(frozen=True)
class RoomGeometry:
    """The validated room: walls by name, openings, the footprint and the zones kept free."""

    spec: RoomSpec
    walls: dict[str, WallLine]
    openings: tuple[Opening, ...]
    notch: tuple[float, float, float, float] | None  # x0, y0, x1, y1 of the removed corner
    door_zones: tuple[tuple[str, Box2], ...]
    window_zones: tuple[tuple[str, Box2], ...]

    @property
    def main_walls(self) -> tuple[str, ...]:
        return ("south", "east", "north", "west")

    def inside(self, box: Box2, tol: float = 1e-6) -> bool:
        """The box's footprint lies inside the room's footprint (L-shape aware)."""
        c = box.corners()
        w, d = self.spec.width, self.spec.depth
        if c[:, 0].min() < -tol or c[:, 1].min() < -tol or c[:, 0].max() > w + tol or c[:, 1].max() > d + tol:
            return False
        if self.notch is not None:
            x0, y0, x1, y1 = self.notch
            notch = Box2((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2, 0.0, -math.inf, math.inf)
            if boxes_overlap(box, notch, margin=-tol):
                return False
        return True

    def inside_point(self, x: float, y: float, margin: float = 0.0) -> bool:
        w, d = self.spec.width, self.spec.depth
        if not (margin <= x <= w - margin and margin <= y <= d - margin):
            return False
        if self.notch is not None:
            x0, y0, _, _ = self.notch
            if x > x0 - margin and y > y0 - margin:
                return False
        return True

    @property
    def centroid(self) -> tuple[float, float]:
        w, d = self.spec.width, self.spec.depth
        if self.notch is None:
            return w / 2.0, d / 2.0
        x0, y0, _, _ = self.notch
        a1, c1 = w * y0, (w / 2.0, y0 / 2.0)
        a2, c2 = x0 * (d - y0), (x0 / 2.0, (y0 + d) / 2.0)
        return ((a1 * c1[0] + a2 * c2[0]) / (a1 + a2), (a1 * c1[1] + a2 * c2[1]) / (a1 + a2))


def _problem(line: str) -> dict:
    """A problem line "key = value: message" as the dict InputError.problems holds (as template_loading's)."""
    head, message = line.split(": ", 1)
    key, value = head.split(" = ", 1)
    return {"file": "", "key": key, "value": value, "message": message}


def room_geometry(room: RoomSpec) -> RoomGeometry:
    """Walls, openings (validated: each fits its wall, none overlap) and the zones kept free.

    Raises InputError naming ``generator.room.doors.N`` / ``windows.N``, the value and the allowed range.
    """
    w, d, h, t = room.width, room.depth, room.height, room.wall_thickness
    walls: dict[str, WallLine] = {}
    notch = None
    if room.footprint == "l_shape":
        cx, cy = room.l_cut  # validated by the schema: smaller than the room
        notch = (w - cx, d - cy, w, d)
        walls["south"] = WallLine("south", (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), w, t, t)
        walls["east"] = WallLine("east", (w, 0.0), (0.0, 1.0), (-1.0, 0.0), d - cy, 0.0, 0.0)
        walls["north_inner"] = WallLine("north_inner", (w - cx, d - cy), (1.0, 0.0), (0.0, -1.0), cx, 0.0, t)
        walls["east_inner"] = WallLine("east_inner", (w - cx, d - cy), (0.0, 1.0), (-1.0, 0.0), cy, -t, t)
        walls["north"] = WallLine("north", (0.0, d), (1.0, 0.0), (0.0, -1.0), w - cx, t, 0.0)
        walls["west"] = WallLine("west", (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), d, 0.0, 0.0)
    else:
        walls["south"] = WallLine("south", (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), w, t, t)
        walls["east"] = WallLine("east", (w, 0.0), (0.0, 1.0), (-1.0, 0.0), d, 0.0, 0.0)
        walls["north"] = WallLine("north", (0.0, d), (1.0, 0.0), (0.0, -1.0), w, t, t)
        walls["west"] = WallLine("west", (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), d, 0.0, 0.0)

    openings = [Opening("door", i, o.wall, o.offset, o.width, o.height, o.sill) for i, o in enumerate(room.doors)]
    openings += [Opening("window", i, o.wall, o.offset, o.width, o.height, o.sill) for i, o in enumerate(room.windows)]
    problems = []
    for op in openings:
        wall = walls[op.wall]
        lo = OPENING_EDGE_MARGIN + op.width / 2.0
        hi = wall.length - OPENING_EDGE_MARGIN - op.width / 2.0
        if hi < lo:
            problems.append(
                f"{op.key}.width = {op.width}: a {op.kind} on the {op.wall} wall (length {wall.length:.3g} m) "
                f"may be at most {wall.length - 2 * OPENING_EDGE_MARGIN:.3g} m wide (allowed width 0 .. "
                f"{wall.length - 2 * OPENING_EDGE_MARGIN:.3g})"
            )
        elif not (lo - 1e-9 <= op.offset <= hi + 1e-9):
            problems.append(
                f"{op.key}.offset = {op.offset}: the {op.kind} (width {op.width} m) must lie within the {op.wall} wall "
                f"(length {wall.length:.3g} m); offset (to its centre, from the wall's "
                f"{'west' if wall.direction[0] else 'south'} end) allowed {lo:.3g} .. {hi:.3g}"
            )
        top = h - OPENING_EDGE_MARGIN
        if op.sill + op.height > top + 1e-9:
            problems.append(
                f"{op.key}.height = {op.height}: sill + height = {op.sill + op.height:.3g} m must be at most "
                f"{top:.3g} m (room height {h} minus {OPENING_EDGE_MARGIN}); allowed height 0 .. {max(0.0, top - op.sill):.3g}"
            )
    if not problems:
        for wall_name in walls:
            on_wall = sorted((op for op in openings if op.wall == wall_name), key=lambda o: (o.span[0], o.kind, o.index))
            for a, b in zip(on_wall, on_wall[1:]):
                if b.span[0] < a.span[1] + 2 * OPENING_EDGE_MARGIN:
                    problems.append(
                        f"{b.key}.offset = {b.offset}: overlaps {a.key} on the {wall_name} wall (openings need "
                        f"{2 * OPENING_EDGE_MARGIN} m of wall between them); allowed offset >= "
                        f"{a.span[1] + 2 * OPENING_EDGE_MARGIN + b.width / 2:.3g} or move {a.key}"
                    )
    if problems:
        raise InputError("\n".join(problems), [_problem(p) for p in problems])

    door_zones, window_zones = [], []
    for op in openings:
        wall = walls[op.wall]
        yaw = wall.yaw
        if op.kind == "door":
            half_w = op.width / 2.0 + DOOR_CLEARANCE_SIDE
            c = wall.point(op.offset, DOOR_CLEARANCE_DEPTH / 2.0)
            door_zones.append((op.key, Box2(c[0], c[1], half_w, DOOR_CLEARANCE_DEPTH / 2.0, yaw, -math.inf, math.inf)))
        else:
            c = wall.point(op.offset, WINDOW_ZONE_DEPTH / 2.0)
            window_zones.append((op.key, Box2(c[0], c[1], op.width / 2.0, WINDOW_ZONE_DEPTH / 2.0, yaw,
                                              op.sill, op.sill + op.height)))
    return RoomGeometry(room, walls, tuple(openings), notch, tuple(door_zones), tuple(window_zones))


# --------------------------------------------------------------------------------------------
# The shell: floor, ceiling, walls, doors, windows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellPart:
    name: str  # stable name: "room.floor", "room.wall_north", "room.door_0", ...
    kind: str  # floor, ceiling, wall, door, window
    semantic_class: str
    mesh: Mesh


def _wall_box(wall: WallLine, a0: float, a1: float, n0: float, n1: float, z0: float, z1: float) -> Mesh:
    """A box given in wall coordinates: along [a0, a1], outward of the face [n0, n1], z [z0, z1]."""
    p = np.array([wall.point(a, -n) for a in (a0, a1) for n in (n0, n1)])
    return box_between(p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max(), z0, z1)


def room_shell_parts(geometry: RoomGeometry) -> list[ShellPart]:
    """Meshes of the room's shell, in a fixed order: floor, ceiling, walls (south, east, north, west,
    then the L-shape's inner walls), doors, windows."""
    room = geometry.spec
    h, t = room.height, room.wall_thickness
    w, d = room.width, room.depth
    if geometry.notch is None:
        rects = [(0.0, 0.0, w, d)]
    else:
        x0, y0, _, _ = geometry.notch
        rects = [(0.0, 0.0, w, y0), (0.0, y0, x0, d)]
    parts = [ShellPart("room.floor", "floor", "floor", merge([box_between(a, c, b, e, -SLAB, 0.0) for a, b, c, e in rects]))]
    if room.ceiling:
        parts.append(ShellPart("room.ceiling", "ceiling", "ceiling",
                               merge([box_between(a, c, b, e, h, h + SLAB) for a, b, c, e in rects])))

    order = ["south", "east", "north", "west", "north_inner", "east_inner"]
    for name in order:
        if name not in geometry.walls:
            continue
        wall = geometry.walls[name]
        spans = sorted((op for op in geometry.openings if op.wall == name), key=lambda o: o.span[0])
        boxes = []
        cursor = -wall.extend_start
        for op in spans:
            a0, a1 = op.span
            boxes.append(_wall_box(wall, cursor, a0, 0.0, t, 0.0, h))
            if op.sill > 0:
                boxes.append(_wall_box(wall, a0, a1, 0.0, t, 0.0, op.sill))
            if op.sill + op.height < h:
                boxes.append(_wall_box(wall, a0, a1, 0.0, t, op.sill + op.height, h))
            cursor = a1
        boxes.append(_wall_box(wall, cursor, wall.length + wall.extend_end, 0.0, t, 0.0, h))
        parts.append(ShellPart(f"room.wall_{name}", "wall", "wall", merge(boxes)))

    for op in geometry.openings:
        if op.kind != "door":
            continue
        wall = geometry.walls[op.wall]
        a0, a1 = op.span
        leaf_t = min(0.04, t * 0.5)
        n0, n1 = t / 2 - leaf_t / 2, t / 2 + leaf_t / 2
        leaf = _wall_box(wall, a0 + 0.005, a1 - 0.005, n0, n1, op.sill, op.sill + op.height - 0.005)
        handle_a = a1 - 0.08 if op.offset < wall.length / 2 else a0 + 0.08
        handle = _wall_box(wall, handle_a - 0.06, handle_a + 0.06, n0 - 0.05, n0, op.sill + 0.98, op.sill + 1.02)
        parts.append(ShellPart(f"room.door_{op.index}", "door", "door", merge([leaf, handle])))

    for op in geometry.openings:
        if op.kind != "window":
            continue
        wall = geometry.walls[op.wall]
        a0, a1 = op.span
        z0, z1 = op.sill, op.sill + op.height
        f = min(0.05, op.width / 8, op.height / 8)
        n0, n1 = t / 2 - 0.04, t / 2 + 0.04
        bars = [
            _wall_box(wall, a0, a1, n0, n1, z0, z0 + f),
            _wall_box(wall, a0, a1, n0, n1, z1 - f, z1),
            _wall_box(wall, a0, a0 + f, n0, n1, z0 + f, z1 - f),
            _wall_box(wall, a1 - f, a1, n0, n1, z0 + f, z1 - f),
        ]
        if op.width > 1.0:
            m = op.offset
            bars.append(_wall_box(wall, m - f / 2, m + f / 2, n0 + 0.01, n1 - 0.01, z0 + f, z1 - f))
        parts.append(ShellPart(f"room.window_{op.index}", "window", "window", merge(bars)))
    return parts


# --------------------------------------------------------------------------------------------
# Furniture placement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedPiece:
    """A furniture piece with its resolved parameters and its mesh in world space."""

    index: int  # position in generator.room.furniture
    name: str  # stable name
    kind: str
    size: tuple[float, float, float]
    center: tuple[float, float]  # footprint centre on the floor
    z0: float  # bottom (0 for floor pieces; the painting hangs)
    yaw: float  # degrees
    wall: str | None  # the wall its back is against
    anchor: str | None  # the piece it was placed relative to (chair -> table, nightstand -> bed, ...)
    local_mesh: Mesh = field(repr=False)
    rule: str = "free"  # the placement rule that placed it (see _Proposal)
    tries: int = 1  # proposals drawn until one fitted (1 for a pinned position)

    @property
    def box(self) -> Box2:
        return Box2(self.center[0], self.center[1], self.size[0] / 2, self.size[1] / 2, self.yaw,
                    self.z0, self.z0 + self.size[2])

    def world_mesh(self) -> Mesh:
        return transform(self.local_mesh, rotation_z(self.yaw), (self.center[0], self.center[1], self.z0))

    def world_transform(self) -> np.ndarray:
        """4x4 object-to-world: the piece's own frame (origin at its footprint centre on its bottom, yawed)."""
        m = np.eye(4)
        m[:3, :3] = rotation_z(self.yaw)
        m[:3, 3] = (self.center[0], self.center[1], self.z0)
        return m


def _extent_along(size, yaw: float, direction) -> float:
    """Half extent of a yawed footprint along a world direction."""
    a = math.radians(yaw)
    ax = (math.cos(a), math.sin(a))
    ay = (-math.sin(a), math.cos(a))
    return (abs(ax[0] * direction[0] + ax[1] * direction[1]) * size[0]
            + abs(ay[0] * direction[0] + ay[1] * direction[1]) * size[1]) / 2.0


def _nearest_wall(geometry: RoomGeometry, xy) -> WallLine:
    """The wall whose interior face is closest to a floor point."""
    def distance(wall: WallLine) -> float:
        rel = np.array(xy) - np.array(wall.start)
        along = min(max(float(rel @ np.array(wall.direction)), 0.0), wall.length)
        return float(np.linalg.norm(rel - along * np.array(wall.direction)))

    return min(geometry.walls.values(), key=lambda w: (distance(w), w.name))


def _facing_yaw(from_xy, to_xy) -> float:
    """Yaw that turns a piece at ``from_xy`` to face ``to_xy`` with its front (local +y)."""
    dx, dy = to_xy[0] - from_xy[0], to_xy[1] - from_xy[1]
    return math.degrees(math.atan2(-dx, dy))


def _local_to_world(anchor: PlacedPiece, lx: float, ly: float) -> tuple[float, float]:
    a = math.radians(anchor.yaw)
    return (anchor.center[0] + lx * math.cos(a) - ly * math.sin(a),
            anchor.center[1] + lx * math.sin(a) + ly * math.cos(a))


@dataclass
class _Proposal:
    """A candidate placement. ``rule`` names how it was proposed: ``against_wall`` (back to a wall),
    ``near_wall`` (a corner or along a wall, any yaw), ``free`` (anywhere in the room),
    ``beside_bed``, ``at_table``, ``facing_sofa`` (a coffee table in front of the sofa),
    ``around_table`` (an armchair turned towards a table or the room's centre), ``under_piece``
    (a rug under its anchor), ``on_wall`` (a painting), ``pinned_position`` (the template's position)."""

    center: tuple[float, float]
    yaw: float
    z0: float = 0.0
    wall: str | None = None
    anchor: str | None = None
    rule: str = "free"


class _Placer:
    """Proposes and checks positions for one piece; all draws come from the piece's own rng."""

    def __init__(self, geometry: RoomGeometry, placed: list[PlacedPiece]):
        self.geometry = geometry
        self.placed = placed
        self.nightstands_after = 0  # nightstands later in the template (a bed leaves room for them)
        self.chair_follows = False  # a chair follows a desk before the next table or desk

    def latest(self, kinds) -> PlacedPiece | None:
        for piece in reversed(self.placed):
            if piece.kind in kinds:
                return piece
        return None

    # -- proposals --------------------------------------------------------------------------

    def against_wall(self, spec: FurnitureSpec, size, rng, walls) -> _Proposal:
        wall = self.geometry.walls[walls[int(rng.integers(len(walls)))]] if spec.wall is None else self.geometry.walls[spec.wall]
        yaw = wall.yaw if spec.rotation is None else spec.rotation
        half_along = _extent_along(size, yaw, wall.direction)
        half_into = _extent_along(size, yaw, wall.inward)
        lo, hi = half_along, wall.length - half_along
        along = float(rng.uniform(lo, hi)) if hi > lo else lo
        if spec.kind == "bed" and hi > lo and rng.random() < 0.75:  # beds favour the middle (room for nightstands)
            along = min(max(wall.length / 2.0 + float(rng.uniform(-0.25, 0.25)), lo), hi)
        c = wall.point(along, half_into + WALL_GAP)
        return _Proposal((float(c[0]), float(c[1])), yaw, wall=wall.name, rule="against_wall")

    def near_wall(self, spec, size, rng) -> _Proposal:
        names = list(self.geometry.walls)
        wall = self.geometry.walls[names[int(rng.integers(len(names)))]]
        yaw = float(rng.uniform(0.0, 360.0)) if spec.rotation is None else spec.rotation
        half_along = _extent_along(size, yaw, wall.direction)
        half_into = _extent_along(size, yaw, wall.inward)
        lo, hi = half_along, wall.length - half_along
        if hi <= lo:
            along = lo
        elif rng.random() < 0.6:  # corners are favoured
            along = lo + float(rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else hi - float(rng.uniform(0.0, 0.3))
            along = min(max(along, lo), hi)
        else:
            along = float(rng.uniform(lo, hi))
        c = wall.point(along, half_into + float(rng.uniform(0.03, 0.25)))
        return _Proposal((float(c[0]), float(c[1])), yaw, rule="near_wall")

    def free(self, spec, size, rng, yaw_choices=(0.0, 90.0)) -> _Proposal:
        w, d = self.geometry.spec.width, self.geometry.spec.depth
        r = max(size[0], size[1]) / 2.0
        x = float(rng.uniform(min(r, w / 2), max(w - r, w / 2)))
        y = float(rng.uniform(min(r, d / 2), max(d - r, d / 2)))
        yaw = float(yaw_choices[int(rng.integers(len(yaw_choices)))]) if spec.rotation is None else spec.rotation
        return _Proposal((x, y), yaw)

    def propose(self, spec: FurnitureSpec, size, rng) -> _Proposal:
        kind = spec.kind
        if kind in WALL_KINDS:
            return self.against_wall(spec, size, rng, self.geometry.main_walls)
        if kind == "nightstand":
            bed = self.latest(("bed",))
            if bed is None:
                return self.against_wall(spec, size, rng, self.geometry.main_walls)
            side = -1.0 if rng.random() < 0.5 else 1.0
            gap = float(rng.uniform(0.03, 0.12))
            lx = side * (bed.size[0] / 2 + gap + size[0] / 2)
            ly = -bed.size[1] / 2 + size[1] / 2
            yaw = bed.yaw if spec.rotation is None else spec.rotation
            return _Proposal(_local_to_world(bed, lx, ly), yaw, wall=bed.wall, anchor=bed.name, rule="beside_bed")
        if kind == "chair":
            table = self.latest(("table", "desk"))
            if table is None:
                return self.free(spec, size, rng, (0.0, 90.0, 180.0, 270.0))
            side = 0 if table.kind == "desk" else int(rng.integers(4))
            gap = float(rng.uniform(0.03, 0.12))
            tw, td = table.size[0] / 2, table.size[1] / 2
            if side in (0, 1):  # in front (+y) or behind (-y)
                slide = float(rng.uniform(-1.0, 1.0)) * max(0.0, tw - size[0] / 2) * (0.4 if table.kind == "desk" else 0.8)
                s = 1.0 if side == 0 else -1.0
                lx, ly = slide, s * (td + gap + size[1] / 2)
                local_yaw = 180.0 if side == 0 else 0.0
            else:  # at an end (+x or -x)
                slide = float(rng.uniform(-1.0, 1.0)) * max(0.0, td - size[0] / 2) * 0.5
                s = 1.0 if side == 2 else -1.0
                lx, ly = s * (tw + gap + size[1] / 2), slide
                local_yaw = 90.0 if side == 2 else -90.0
            yaw = (table.yaw + local_yaw) % 360.0 if spec.rotation is None else spec.rotation
            return _Proposal(_local_to_world(table, lx, ly), yaw, anchor=table.name, rule="at_table")
        if kind == "coffee_table":
            sofa = self.latest(("sofa",))
            if sofa is None:
                return self.free(spec, size, rng)
            gap = float(rng.uniform(0.35, 0.5))
            lx = float(rng.uniform(-0.1, 0.1))
            ly = sofa.size[1] / 2 + gap + size[1] / 2
            yaw = sofa.yaw if spec.rotation is None else spec.rotation
            return _Proposal(_local_to_world(sofa, lx, ly), yaw, anchor=sofa.name, rule="facing_sofa")
        if kind == "armchair":
            focus_piece = self.latest(("coffee_table", "table"))
            focus = focus_piece.center if focus_piece is not None else self.geometry.centroid
            r = float(rng.uniform(0.9, 1.5)) + max(size[0], size[1]) / 2
            phi = float(rng.uniform(0.0, 2.0 * math.pi))
            c = (focus[0] + r * math.cos(phi), focus[1] + r * math.sin(phi))
            yaw = _facing_yaw(c, focus) + float(rng.uniform(-12.0, 12.0)) if spec.rotation is None else spec.rotation
            return _Proposal(c, yaw, anchor=None if focus_piece is None else focus_piece.name, rule="around_table")
        if kind in ("lamp", "plant"):
            return self.near_wall(spec, size, rng)
        if kind == "rug":
            anchor = self.latest(("coffee_table", "table", "sofa", "bed"))
            if anchor is None:
                return self.free(spec, size, rng)
            yaw = anchor.yaw if spec.rotation is None else spec.rotation
            jitter = float(rng.uniform(-0.05, 0.05))
            if anchor.kind in ("coffee_table", "table"):
                c = _local_to_world(anchor, jitter, 0.0)
            elif anchor.kind == "sofa":
                c = _local_to_world(anchor, jitter, anchor.size[1] / 2 + size[1] / 2 - 0.15)
            else:
                c = _local_to_world(anchor, jitter, anchor.size[1] / 2 + size[1] / 2 - 0.6)
            return _Proposal(c, yaw, anchor=anchor.name, rule="under_piece")
        if kind == "painting":
            names = list(self.geometry.walls)
            wall = self.geometry.walls[names[int(rng.integers(len(names)))]] if spec.wall is None else self.geometry.walls[spec.wall]
            yaw = wall.yaw
            lo, hi = size[0] / 2, wall.length - size[0] / 2
            along = float(rng.uniform(lo, hi)) if hi > lo else lo
            c = wall.point(along, size[1] / 2 + 0.002)
            room_h = self.geometry.spec.height
            zc = float(rng.uniform(1.35, 1.65))
            zc = min(zc, room_h - 0.15 - size[2] / 2)
            return _Proposal((float(c[0]), float(c[1])), yaw, z0=max(0.0, zc - size[2] / 2), wall=wall.name, rule="on_wall")
        # table and anything else: free-standing
        return self.free(spec, size, rng)

    # -- checks -----------------------------------------------------------------------------

    def _blocked(self, zone: Box2) -> bool:
        """A reserved zone overlaps a door's clearance or a placed piece."""
        if any(boxes_overlap(zone, z) for _, z in self.geometry.door_zones):
            return True
        return any(boxes_overlap(zone, p.box, PIECE_GAP) for p in self.placed if p.kind not in EXEMPT_KINDS)

    def problem(self, spec: FurnitureSpec, size, prop: _Proposal) -> str | None:
        """Why the proposal is refused, or None when it fits."""
        box = Box2(prop.center[0], prop.center[1], size[0] / 2, size[1] / 2, prop.yaw, prop.z0, prop.z0 + size[2])
        if not self.geometry.inside(box):
            return "outside the room"
        if box.z1 > self.geometry.spec.height + 1e-9:
            return f"taller than the room ({self.geometry.spec.height} m)"
        if spec.kind == "rug":
            return None
        if spec.kind == "bed" and self.nightstands_after:
            # keep room beside the bed for the nightstands that follow it in the template
            free_sides = 0
            for side in (-1.0, 1.0):
                a = math.radians(prop.yaw)
                lx, ly = side * (size[0] / 2 + NIGHTSTAND_ROOM / 2), -size[1] / 2 + 0.25
                zone = Box2(prop.center[0] + lx * math.cos(a) - ly * math.sin(a),
                            prop.center[1] + lx * math.sin(a) + ly * math.cos(a),
                            NIGHTSTAND_ROOM / 2, 0.25, prop.yaw, 0.0, 0.6)
                if self.geometry.inside(zone) and not self._blocked(zone):
                    free_sides += 1
            if free_sides < min(2, self.nightstands_after):
                return "no room beside it for the nightstands"
        if spec.kind == "desk" and self.chair_follows:
            # keep room in front of the desk for its chair
            a = math.radians(prop.yaw)
            ly = size[1] / 2 + 0.05 + CHAIR_ROOM / 2
            zone = Box2(prop.center[0] - ly * math.sin(a), prop.center[1] + ly * math.cos(a),
                        CHAIR_ROOM / 2 - 0.05, CHAIR_ROOM / 2, prop.yaw, 0.0, 1.0)
            if not self.geometry.inside(zone) or self._blocked(zone):
                return "no room in front of it for its chair"
        if spec.kind == "painting":
            wall = self.geometry.walls[prop.wall]
            along = float(np.dot(np.array(prop.center) - np.array(wall.start), wall.direction))
            for op in self.geometry.openings:
                if op.wall == wall.name:
                    a0, a1 = op.span
                    if along + size[0] / 2 > a0 - 0.1 and along - size[0] / 2 < a1 + 0.1 and box.z0 < op.sill + op.height + 0.1:
                        return f"covers {op.key}"
        else:
            for key, zone in self.geometry.door_zones:
                if boxes_overlap(box, zone):
                    return f"in the clearance zone in front of {key}"
            for key, zone in self.geometry.window_zones:
                if boxes_overlap(box, zone):
                    return f"blocks {key}"
        for other in self.placed:
            if other.kind == "rug":
                continue
            if boxes_overlap(box, other.box, PIECE_GAP):
                return f"overlaps {other.name!r}"
        return None


def place_furniture(geometry: RoomGeometry, furniture: list[FurnitureSpec], seed: int) -> list[PlacedPiece]:
    """Place the pieces in template order. Each piece draws its size, its geometry and then its
    placement (proposals retried up to MAX_TRIES) from ``object_rng(seed, stable_name)`` only.

    Raises InputError naming ``generator.room.furniture.N`` when a piece cannot be placed.
    """
    placed: list[PlacedPiece] = []
    placer = _Placer(geometry, placed)
    for index, spec in enumerate(furniture):
        key = f"generator.room.furniture.{index}"
        rng = object_rng(seed, spec.stable_name)
        placer.nightstands_after = sum(1 for later in furniture[index + 1:] if later.kind == "nightstand")
        placer.chair_follows = False
        for later in furniture[index + 1:]:
            if later.kind in ("table", "desk"):
                break
            if later.kind == "chair":
                placer.chair_follows = True
                break
        size = tuple(float(v) for v in spec.size) if spec.size is not None else draw_size(spec.kind, rng)
        if spec.kind == "painting" and spec.position is not None:
            raise InputError(
                f"{key}.position = {list(spec.position)}: a painting hangs on a wall at a drawn place; "
                f"remove the position and pin {key}.wall instead"
            )
        local_mesh = build_furniture(spec.kind, size, rng)
        label = f"{spec.kind} {spec.stable_name!r} ({size[0]:.2f} x {size[1]:.2f} x {size[2]:.2f} m)"

        if spec.position is not None:
            prop = placer.propose(spec, size, rng)  # for the rule's orientation and anchor
            pinned = (float(spec.position[0]), float(spec.position[1]))
            yaw = prop.yaw
            if spec.rotation is not None:
                yaw = spec.rotation
            elif spec.wall is not None:
                yaw = geometry.walls[spec.wall].yaw
            elif spec.kind in WALL_KINDS or (spec.kind == "nightstand" and prop.anchor is None):
                yaw = _nearest_wall(geometry, pinned).yaw  # its back to the nearest wall
            elif spec.kind in ("chair", "armchair"):
                anchor = next((p for p in placed if p.name == prop.anchor), None)
                focus = anchor.center if anchor is not None else geometry.centroid
                if math.dist(focus, pinned) > 1e-6:
                    yaw = _facing_yaw(pinned, focus)
            prop = _Proposal(pinned, yaw, wall=spec.wall, anchor=prop.anchor, rule="pinned_position")
            tries = 1
            why = placer.problem(spec, size, prop)
            if why is not None:
                raise InputError(
                    f"{key}.position = {list(spec.position)}: the {label} there is {why}; "
                    "move it, shrink it, or remove the position to let the generator place it"
                )
        else:
            reasons: Counter[str] = Counter()
            prop = None
            for tries in range(1, MAX_TRIES + 1):
                candidate = placer.propose(spec, size, rng)
                why = placer.problem(spec, size, candidate)
                if why is None:
                    prop = candidate
                    break
                reasons[why] += 1
            if prop is None:
                common = "; ".join(f"{r} ({n}x)" for r, n in reasons.most_common(3))
                if spec.wall is not None:
                    hint = (f"the {spec.wall} wall is full: pin another wall ({key}.wall), give a smaller "
                            f"{key}.size, or remove pieces before it")
                else:
                    hint = f"the room is too small for it: enlarge the room, give a smaller {key}.size, or remove pieces"
                raise InputError(f"{key}: cannot place the {label} after {MAX_TRIES} tries ({common}); {hint}")
        placed.append(PlacedPiece(
            index=index, name=spec.stable_name, kind=spec.kind, size=size,
            center=(float(prop.center[0]), float(prop.center[1])), z0=float(prop.z0), yaw=float(prop.yaw) % 360.0,
            wall=prop.wall, anchor=prop.anchor, local_mesh=local_mesh, rule=prop.rule, tries=tries,
        ))
    return placed
