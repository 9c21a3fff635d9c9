"""The furniture placer: puts pieces into one room of a floor plan by rules, keeping clear of
everything already there. Pure Python (numpy for the free-floor rasters).

What a piece keeps clear of: the room's walls (its footprint stays inside the room's floor inside
the walls), the scene's explicit objects and imported assets (:class:`Obstacle`), the pieces
placed before it, the passage in front of every door (both sides), each door's swing and open
leaf, the space in front of windows (for pieces taller than the sill), the floor in front of a
piece that one needs to use it (:data:`procedural.furniture_library.FRONT_CLEARANCE`), and a
walkway between the room's doors (a person 0.6 m wide still gets from each door to every other).

A piece is a :class:`PieceRequest`: its size comes from outside (drawn from the library, given by
the template, or measured from an imported model), so the placer never needs its mesh. Each
piece's randomness comes only from the generator it is given (``object_rng(seed, stable name)``).
Pieces are placed in order; a piece that cannot be placed is a :class:`PlacementFailure` (what
blocked it, how often, and where in the room there would be room for it) and placement goes on
with the rest, so every unplaceable piece is reported at once.

Rules (``PlacedPiece.rule``): ``against_wall`` (back to a wall), ``in_corner`` (back to a wall, one
side to another), ``near_wall`` (a corner or along a wall, any yaw), ``free`` (anywhere),
``centre`` (near the room's middle, along its longest wall), ``beside_bed``, ``at_table``,
``table_seat`` (the n-th seat around a table), ``facing_sofa`` (a coffee table in front of the
sofa), ``facing_piece`` (back to the wall the anchor faces), ``around_table`` (an armchair turned
towards a table or the room's centre), ``under_piece`` (a rug under its anchor), ``on_wall`` (hung:
paintings, mirrors, wall cabinets), ``above_piece`` (hung above its anchor: a mirror over the
basin, a hood over the stove), ``fixed`` (a position a room planner computed), ``pinned_position``
(the template's position).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from procedural.floor_plan import PlacementZone, PlanRoom, WallLine
from procedural.furniture_library import EXEMPT_KINDS, FRONT_CLEARANCE, HUNG_HEIGHT, HUNG_KINDS, WALL_KINDS, worktop_height
from procedural.planar_geometry import (
    Footprint, convex_hull, footprint_inside_polygon, footprints_overlap, points_in_polygon,
)

PIECE_GAP = 0.02  # minimum gap between two pieces (pieces of one kitchen run may touch)
WALL_GAP = 0.01  # a piece's back is this far from its wall
CHAIR_ROOM = 0.7  # a desk keeps this much free in front of it when a chair follows
NIGHTSTAND_ROOM = 0.62  # a bed keeps this much free beside it for each nightstand that follows
MAX_TRIES = 300  # proposals per piece before giving up
OPTIONAL_TRIES = 100  # ... for a piece auto furnishing may leave out
WALKWAY_HALF_WIDTH = 0.3  # a person's half width: the walkway between doors is twice this wide
WALKWAY_CELL = 0.1  # metres: the walkway raster
WALKING_HEIGHT = 1.0  # pieces hung higher than this (wall cabinets) do not block the walkway
CLEARANCE_HEIGHT = 1.8  # the floor kept free in front of a piece, up to this height
FREE_CELL = 0.05  # metres: the raster that says where a piece would fit
SEATED_KINDS = ("chair", "office_chair", "stool")


@dataclass(frozen=True)
class Obstacle:
    """Something already in the room the placer must keep clear of (an explicit object, an asset)."""

    label: str  # for messages: "objects.2 'fridge'"
    footprint: Footprint


def obstacle_from_vertices(label: str, vertices: np.ndarray) -> Obstacle:
    """The convex hull of an object's vertices on the floor and its z range."""
    v = np.asarray(vertices, dtype=np.float64)
    return Obstacle(label, Footprint(convex_hull([(float(x), float(y)) for x, y in v[:, :2]]),
                                     float(v[:, 2].min()), float(v[:, 2].max())))


@dataclass(frozen=True)
class PieceRequest:
    """A piece to place. ``size`` is (width, depth, height) in its local frame (front +y)."""

    key: str  # template key path for messages ("generator.floor_plan.rooms.2.furniture.3")
    name: str  # stable name ("kitchen/fridge"; the room generator's pieces keep their own names)
    kind: str
    size: tuple[float, float, float]
    wall: int | None = None  # edge index the piece is pinned against
    position: tuple[float, float] | None = None
    rotation: float | None = None
    rule: str | None = None  # force a rule (room planners); None: by kind
    hint: dict = field(default_factory=dict)  # the rule's parameters
    group: str | None = None  # pieces of one group (a kitchen run) may touch
    optional: bool = False  # auto furnishing: left out, not an error, when it cannot be placed
    label: str = ""  # how messages name it ("sofa 'sofa' (2.05 x 0.97 x 0.80 m)")


@dataclass(frozen=True)
class PlacedPiece:
    key: str
    name: str
    kind: str
    size: tuple[float, float, float]
    center: tuple[float, float]  # footprint centre on the floor
    z0: float  # bottom (0 for floor pieces; hung pieces higher)
    yaw: float  # degrees
    wall: WallLine | None  # the wall its back is against
    anchor: str | None  # the piece it was placed relative to
    rule: str
    tries: int
    group: str | None = None
    details: dict = field(default_factory=dict)  # what the rule resolved (a kitchen's work triangle, ...)

    @property
    def footprint(self) -> Footprint:
        return Footprint.rectangle(self.center[0], self.center[1], self.size[0] / 2, self.size[1] / 2, self.yaw,
                                   self.z0, self.z0 + self.size[2])

    def local_to_world(self, lx: float, ly: float) -> tuple[float, float]:
        a = math.radians(self.yaw)
        return (self.center[0] + lx * math.cos(a) - ly * math.sin(a), self.center[1] + lx * math.sin(a) + ly * math.cos(a))

    @property
    def front(self) -> tuple[float, float]:
        a = math.radians(self.yaw)
        return (-math.sin(a), math.cos(a))


@dataclass(frozen=True)
class PlacementFailure:
    request: PieceRequest
    reasons: tuple[tuple[str, int], ...]  # (why, how many proposals) most common first
    tries: int
    room_for_it: str  # where there would be room, or what the largest free area is

    def message(self) -> str:
        req = self.request
        why = "; ".join(f"{r} ({n}x)" if self.tries > 1 else r for r, n in self.reasons[:4])
        if req.position is not None:
            head = f"{req.key}.position = {list(req.position)}: the {req.label} there is {why}"
            fix = f"{self.room_for_it}; move it, give a smaller size, or remove the position to let the generator place it"
        else:
            head = f"{req.key}: cannot place the {req.label} after {self.tries} tries ({why})"
            pinned = f"pin another wall ({req.key}.wall), " if req.wall is not None else ""
            fix = f"{self.room_for_it}; {pinned}give a smaller {req.key}.size, remove pieces before it, or enlarge the room"
        return f"{head}; {fix}"


@dataclass
class _Proposal:
    center: tuple[float, float]
    yaw: float
    z0: float = 0.0
    wall: WallLine | None = None
    anchor: str | None = None
    rule: str = "free"
    details: dict = field(default_factory=dict)


def extent_along(size, yaw: float, direction) -> float:
    """Half extent of a yawed footprint along a world direction."""
    a = math.radians(yaw)
    ax = (math.cos(a), math.sin(a))
    ay = (-math.sin(a), math.cos(a))
    return (abs(ax[0] * direction[0] + ax[1] * direction[1]) * size[0]
            + abs(ay[0] * direction[0] + ay[1] * direction[1]) * size[1]) / 2.0


def facing_yaw(from_xy, to_xy) -> float:
    """Yaw that turns a piece at ``from_xy`` to face ``to_xy`` with its front (local +y)."""
    return math.degrees(math.atan2(-(to_xy[0] - from_xy[0]), to_xy[1] - from_xy[1]))


def rule_of(kind: str) -> str:
    """The rule a piece of this kind follows when nothing forces one."""
    if kind in HUNG_KINDS:
        return "on_wall"
    if kind == "shower":
        return "in_corner"
    if kind in WALL_KINDS:
        return "against_wall"
    return {"nightstand": "beside_bed", "chair": "at_table", "office_chair": "at_table", "stool": "at_table",
            "coffee_table": "facing_sofa", "armchair": "around_table", "lamp": "near_wall", "plant": "near_wall",
            "rug": "under_piece"}.get(kind, "free")


# --------------------------------------------------------------------------------------------
# The placer for one room
# --------------------------------------------------------------------------------------------


class RoomPlacer:
    """Places pieces into one room: proposals by rule, checks against everything already there."""

    def __init__(self, room: PlanRoom, height: float, zones: list[PlacementZone], obstacles: list[Obstacle],
                 doors: list[tuple[str, tuple[float, float]]] = ()):
        self.room = room
        self.height = height
        self.zones = zones
        self.obstacles = [o for o in obstacles if _near(o.footprint, room.interior)]
        self.placed: list[PlacedPiece] = []
        self.clearances: list[tuple[PlacedPiece, Footprint]] = []
        self.walls = room.walls
        self.doors = list(doors)  # (name, a point just inside the room in front of the door)
        self.nightstands_after = 0
        self.chair_follows = False
        self._walk = _Walkway(room, self.doors, self.obstacles, zones) if len(self.doors) >= 2 else None

    # -- lookups -----------------------------------------------------------------------------

    def latest(self, kinds) -> PlacedPiece | None:
        for piece in reversed(self.placed):
            if piece.kind in kinds:
                return piece
        return None

    def by_name(self, name: str | None) -> PlacedPiece | None:
        return next((p for p in self.placed if p.name == name), None)

    def wall(self, index: int) -> WallLine:
        return self.walls[index]

    def nearest_wall(self, xy) -> WallLine:
        def distance(w: WallLine) -> float:
            rx, ry = xy[0] - w.start[0], xy[1] - w.start[1]
            along = min(max(rx * w.direction[0] + ry * w.direction[1], 0.0), w.length)
            return math.hypot(rx - along * w.direction[0], ry - along * w.direction[1])

        return min(self.walls, key=lambda w: (distance(w), w.index))

    # -- proposals ---------------------------------------------------------------------------

    def _walls_for(self, req: PieceRequest, size, yaw_of=None) -> list[WallLine]:
        if req.wall is not None:
            return [self.wall(req.wall)]
        fits = [w for w in self.walls if w.length >= extent_along(size, w.yaw if yaw_of is None else yaw_of, w.direction) * 2]
        return fits or list(self.walls)

    def against_wall(self, req, size, rng, rule="against_wall") -> _Proposal:
        walls = self._walls_for(req, size)
        wall = walls[int(rng.integers(len(walls)))]
        yaw = wall.yaw if req.rotation is None else req.rotation
        half_along = extent_along(size, yaw, wall.direction)
        half_into = extent_along(size, yaw, wall.inward)
        lo, hi = half_along, wall.length - half_along
        along = float(rng.uniform(lo, hi)) if hi > lo else lo
        if req.kind == "bed" and hi > lo and rng.random() < 0.75:  # beds favour the middle (room for nightstands)
            along = min(max(wall.length / 2.0 + float(rng.uniform(-0.25, 0.25)), lo), hi)
        if rule == "in_corner" and hi > lo:
            along = lo if rng.random() < 0.5 else hi
        c = wall.point(along, half_into + WALL_GAP)
        return _Proposal(c, yaw, wall=wall, rule=rule)

    def near_wall(self, req, size, rng) -> _Proposal:
        wall = self.walls[int(rng.integers(len(self.walls)))]
        yaw = float(rng.uniform(0.0, 360.0)) if req.rotation is None else req.rotation
        half_along = extent_along(size, yaw, wall.direction)
        half_into = extent_along(size, yaw, wall.inward)
        lo, hi = half_along, wall.length - half_along
        if hi <= lo:
            along = lo
        elif rng.random() < 0.6:  # corners are favoured
            along = lo + float(rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else hi - float(rng.uniform(0.0, 0.3))
            along = min(max(along, lo), hi)
        else:
            along = float(rng.uniform(lo, hi))
        c = wall.point(along, half_into + float(rng.uniform(0.03, 0.25)))
        return _Proposal(c, yaw, rule="near_wall")

    def free(self, req, size, rng, yaw_choices=(0.0, 90.0)) -> _Proposal:
        xs = [p[0] for p in self.room.interior]
        ys = [p[1] for p in self.room.interior]
        r = max(size[0], size[1]) / 2.0
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        x = float(rng.uniform(min(x0 + r, (x0 + x1) / 2), max(x1 - r, (x0 + x1) / 2)))
        y = float(rng.uniform(min(y0 + r, (y0 + y1) / 2), max(y1 - r, (y0 + y1) / 2)))
        base = self.main_yaw()
        yaw = (base + float(yaw_choices[int(rng.integers(len(yaw_choices)))])) % 360.0 if req.rotation is None else req.rotation
        return _Proposal((x, y), yaw)

    def main_yaw(self) -> float:
        """The direction of the room's longest wall (degrees): free pieces line up with it."""
        longest = max(self.walls, key=lambda w: (round(w.length, 6), -w.index))
        return math.degrees(math.atan2(longest.direction[1], longest.direction[0])) % 180.0

    def centre(self, req, size, rng) -> _Proposal:
        """Near the room's middle, along its longest wall; anywhere along it when the middle is taken."""
        if rng.random() < 0.5:
            cx, cy = self.room.centroid
            c = (cx + float(rng.uniform(-0.25, 0.25)), cy + float(rng.uniform(-0.25, 0.25)))
        else:
            c = self.free(req, size, rng).center
        yaw = self.main_yaw() if req.rotation is None else req.rotation
        return _Proposal(c, yaw, rule="centre")

    def propose(self, req: PieceRequest, size, rng) -> _Proposal:
        rule = req.rule or rule_of(req.kind)
        kind = req.kind
        if rule == "fixed":
            h = req.hint
            wall = self.wall(h["wall"]) if h.get("wall") is not None else None
            return _Proposal(tuple(h["center"]), float(h["yaw"]), z0=float(h.get("z0", 0.0)), wall=wall,
                             anchor=h.get("anchor"), rule=h.get("rule", "fixed"), details=dict(h.get("details", {})))
        if rule in ("against_wall", "in_corner"):
            return self.against_wall(req, size, rng, rule)
        if rule == "near_wall":
            return self.near_wall(req, size, rng)
        if rule == "centre":
            return self.centre(req, size, rng)
        if rule == "beside_bed":
            bed = self.by_name(req.hint.get("anchor")) or self.latest(("bed",))
            if bed is None:
                return self.against_wall(req, size, rng)
            side = req.hint.get("side") or (-1.0 if rng.random() < 0.5 else 1.0)
            gap = float(rng.uniform(0.03, 0.12))
            lx = side * (bed.size[0] / 2 + gap + size[0] / 2)
            ly = -bed.size[1] / 2 + size[1] / 2
            yaw = bed.yaw if req.rotation is None else req.rotation
            return _Proposal(bed.local_to_world(lx, ly), yaw, wall=bed.wall, anchor=bed.name, rule="beside_bed")
        if rule == "at_table":
            table = self.by_name(req.hint.get("anchor")) or self.latest(("table", "desk"))
            if table is None:
                return self.free(req, size, rng, (0.0, 90.0, 180.0, 270.0))
            side = 0 if table.kind == "desk" else int(rng.integers(4))
            return self._seat(req, size, rng, table, side, float(rng.uniform(-1.0, 1.0)), "at_table")
        if rule == "table_seat":
            table = self.by_name(req.hint["anchor"])
            if table is None:
                return self.free(req, size, rng, (0.0, 90.0, 180.0, 270.0))
            return self._seat(req, size, rng, table, int(req.hint["side"]), float(req.hint.get("slide", 0.0)), "table_seat",
                              jitter=True)
        if rule == "facing_sofa":
            sofa = self.by_name(req.hint.get("anchor")) or self.latest(("sofa",))
            if sofa is None:
                return self.free(req, size, rng)
            gap = float(rng.uniform(0.35, 0.5))
            lx = float(rng.uniform(-0.1, 0.1))
            ly = sofa.size[1] / 2 + gap + size[1] / 2
            yaw = sofa.yaw if req.rotation is None else req.rotation
            return _Proposal(sofa.local_to_world(lx, ly), yaw, anchor=sofa.name, rule="facing_sofa")
        if rule == "facing_piece":
            anchor = self.by_name(req.hint.get("anchor"))
            if anchor is None:
                return self.against_wall(req, size, rng)
            # the wall the anchor faces: its inward normal most opposite to the anchor's front
            f = anchor.front
            walls = sorted(self.walls, key=lambda w: (w.inward[0] * f[0] + w.inward[1] * f[1], w.index))
            wall = walls[0] if rng.random() < 0.85 or len(walls) == 1 else walls[1]
            yaw = wall.yaw
            half_along = extent_along(size, yaw, wall.direction)
            half_into = extent_along(size, yaw, wall.inward)
            target = wall.along_of(anchor.center) + float(rng.uniform(-0.3, 0.3))
            along = min(max(target, half_along), max(half_along, wall.length - half_along))
            return _Proposal(wall.point(along, half_into + WALL_GAP), yaw, wall=wall, anchor=anchor.name, rule="facing_piece")
        if rule == "around_table":
            focus_piece = self.latest(("coffee_table", "table"))
            focus = focus_piece.center if focus_piece is not None else self.room.centroid
            r = float(rng.uniform(0.9, 1.5)) + max(size[0], size[1]) / 2
            phi = float(rng.uniform(0.0, 2.0 * math.pi))
            c = (focus[0] + r * math.cos(phi), focus[1] + r * math.sin(phi))
            yaw = facing_yaw(c, focus) + float(rng.uniform(-12.0, 12.0)) if req.rotation is None else req.rotation
            return _Proposal(c, yaw, anchor=None if focus_piece is None else focus_piece.name, rule="around_table")
        if rule == "under_piece":
            anchor = self.by_name(req.hint.get("anchor")) or self.latest(("coffee_table", "table", "sofa", "bed"))
            if anchor is None:
                return self.free(req, size, rng)
            yaw = anchor.yaw if req.rotation is None else req.rotation
            jitter = float(rng.uniform(-0.05, 0.05))
            if anchor.kind in ("coffee_table", "table"):
                c = anchor.local_to_world(jitter, 0.0)
            elif anchor.kind == "sofa":
                c = anchor.local_to_world(jitter, anchor.size[1] / 2 + size[1] / 2 - 0.15)
            else:
                c = anchor.local_to_world(jitter, anchor.size[1] / 2 + size[1] / 2 - 0.6)
            return _Proposal(c, yaw, anchor=anchor.name, rule="under_piece")
        if rule == "above_piece":
            anchor = self.by_name(req.hint.get("anchor"))
            if anchor is None or anchor.wall is None:
                return self._on_wall(req, size, rng)
            wall = anchor.wall
            along = wall.along_of(anchor.center)
            c = wall.point(along, size[1] / 2 + 0.002 if req.kind in ("painting", "mirror") else size[1] / 2 + WALL_GAP)
            lo, hi = HUNG_HEIGHT.get(req.kind, (1.2, 1.4))
            z0 = max(float(rng.uniform(lo, hi)), anchor.z0 + anchor.size[2] + 0.05)
            return _Proposal(c, wall.yaw, z0=z0, wall=wall, anchor=anchor.name, rule="above_piece")
        if rule == "on_wall":
            return self._on_wall(req, size, rng)
        return self.free(req, size, rng)

    def _on_wall(self, req, size, rng) -> _Proposal:
        walls = self._walls_for(req, size)
        wall = walls[int(rng.integers(len(walls)))]
        lo, hi = size[0] / 2, wall.length - size[0] / 2
        along = float(rng.uniform(lo, hi)) if hi > lo else lo
        flat = req.kind in ("painting", "mirror")
        c = wall.point(along, size[1] / 2 + (0.002 if flat else WALL_GAP))
        z_lo, z_hi = HUNG_HEIGHT.get(req.kind, (1.1, 1.4))
        if req.kind == "painting":  # the old rule: the centre at 1.35 .. 1.65 m
            zc = min(float(rng.uniform(1.35, 1.65)), self.height - 0.15 - size[2] / 2)
            z0 = max(0.0, zc - size[2] / 2)
        else:
            z0 = min(float(rng.uniform(z_lo, z_hi)), max(0.0, self.height - 0.05 - size[2]))
        return _Proposal(c, wall.yaw, z0=z0, wall=wall, rule="on_wall")

    def _seat(self, req, size, rng, table: PlacedPiece, side: int, slide_unit: float, rule: str, jitter=False) -> _Proposal:
        gap = float(rng.uniform(0.03, 0.12)) if not jitter else float(rng.uniform(0.02, 0.08))
        tw, td = table.size[0] / 2, table.size[1] / 2
        if side in (0, 1):  # in front (+y) or behind (-y)
            reach = max(0.0, tw - size[0] / 2) * (0.4 if table.kind == "desk" else 0.8)
            slide = slide_unit * reach if not jitter else slide_unit + float(rng.uniform(-0.03, 0.03))
            s = 1.0 if side == 0 else -1.0
            lx, ly = slide, s * (td + gap + size[1] / 2)
            local_yaw = 180.0 if side == 0 else 0.0
        else:  # at an end (+x or -x)
            slide = slide_unit * max(0.0, td - size[0] / 2) * 0.5 if not jitter else float(rng.uniform(-0.03, 0.03))
            s = 1.0 if side == 2 else -1.0
            lx, ly = s * (tw + gap + size[1] / 2), slide
            local_yaw = 90.0 if side == 2 else -90.0
        yaw = (table.yaw + local_yaw) % 360.0 if req.rotation is None else req.rotation
        return _Proposal(table.local_to_world(lx, ly), yaw, anchor=table.name, rule=rule)

    # -- checks ------------------------------------------------------------------------------

    def _blocked(self, zone: Footprint) -> str | None:
        for z in self.zones:
            if z.kind in ("door_passage", "door_swing", "door_leaf") and footprints_overlap(zone, z.footprint):
                return z.label
        for p in self.placed:
            if p.kind not in EXEMPT_KINDS and footprints_overlap(zone, p.footprint, PIECE_GAP):
                return repr(p.name)
        for o in self.obstacles:
            if footprints_overlap(zone, o.footprint, PIECE_GAP):
                return o.label
        return None

    def problem(self, req: PieceRequest, size, prop: _Proposal, walkway: bool = True) -> str | None:
        """Why the proposal is refused, or None when it fits."""
        fp = Footprint.rectangle(prop.center[0], prop.center[1], size[0] / 2, size[1] / 2, prop.yaw, prop.z0, prop.z0 + size[2])
        if not footprint_inside_polygon(fp, self.room.interior):
            return "outside the room"
        if fp.z1 > self.height + 1e-9:
            return f"taller than the room ({self.height} m)"
        kind = req.kind
        if kind in EXEMPT_KINDS:
            return None
        hung = kind in HUNG_KINDS
        if kind == "bed" and self.nightstands_after:
            free_sides = 0
            for side in (-1.0, 1.0):
                a = math.radians(prop.yaw)
                lx, ly = side * (size[0] / 2 + NIGHTSTAND_ROOM / 2), -size[1] / 2 + 0.25
                zone = Footprint.rectangle(prop.center[0] + lx * math.cos(a) - ly * math.sin(a),
                                           prop.center[1] + lx * math.sin(a) + ly * math.cos(a),
                                           NIGHTSTAND_ROOM / 2, 0.25, prop.yaw, 0.0, 0.6)
                if footprint_inside_polygon(zone, self.room.interior) and self._blocked(zone) is None:
                    free_sides += 1
            if free_sides < min(2, self.nightstands_after):
                return "no room beside it for the nightstands"
        if kind in ("desk", "table") and self.chair_follows:
            a = math.radians(prop.yaw)
            ly = size[1] / 2 + 0.05 + CHAIR_ROOM / 2
            zone = Footprint.rectangle(prop.center[0] - ly * math.sin(a), prop.center[1] + ly * math.cos(a),
                                       min(size[0] / 2, CHAIR_ROOM / 2 - 0.05), CHAIR_ROOM / 2, prop.yaw, 0.0, 1.0)
            if not footprint_inside_polygon(zone, self.room.interior) or self._blocked(zone) is not None:
                return "no room in front of it for its chair"
        if hung:  # on the wall: not over an opening, not in an open door leaf
            for z in self.zones:
                if z.kind == "opening" and footprints_overlap(fp, z.footprint):
                    return f"covers {z.label}"
                if z.kind == "door_leaf" and footprints_overlap(fp, z.footprint):
                    return f"in {z.label}"
        else:
            body = fp  # what stands in front of a window: up to the worktop (a tap may rise in front of it)
            if kind in ("kitchen_sink", "stove"):
                body = Footprint(fp.points, fp.z0, fp.z0 + worktop_height(kind, size[2]))
            for z in self.zones:
                if z.kind == "window":
                    if footprints_overlap(body, z.footprint):
                        return f"blocks {z.label}"
                elif z.kind != "opening" and footprints_overlap(fp, z.footprint):
                    return f"in {z.label}"
        for p in self.placed:
            if p.kind in EXEMPT_KINDS:
                continue
            margin = 0.0 if (req.group is not None and p.group == req.group) else PIECE_GAP
            if footprints_overlap(fp, p.footprint, margin):
                return f"overlaps {p.name!r}"
        for o in self.obstacles:
            if footprints_overlap(fp, o.footprint, PIECE_GAP):
                return f"overlaps {o.label}"
        for p, zone in self.clearances:
            if (req.group is None or p.group != req.group) and footprints_overlap(fp, zone) and p.name != prop.anchor:
                return f"in the space kept free in front of {p.name!r}"
        clearance = FRONT_CLEARANCE.get(kind)
        if clearance is not None:
            zone = _front_zone(prop.center, size, prop.yaw, clearance)
            if not footprint_inside_polygon(zone, self.room.interior):
                return "no room in front of it to use it"
            for p in self.placed:
                if p.kind not in EXEMPT_KINDS and (req.group is None or p.group != req.group) and \
                        footprints_overlap(zone, p.footprint) and p.name != prop.anchor:
                    return f"{p.name!r} stands in the space it needs in front"
            for o in self.obstacles:
                if footprints_overlap(zone, o.footprint):
                    return f"{o.label} stands in the space it needs in front"
        if walkway and self._walk is not None and fp.z0 < WALKING_HEIGHT and not self._walk.keeps_walkway(fp):
            return "blocks the walkway between the doors"
        return None

    def commit(self, req: PieceRequest, size, prop: _Proposal, tries: int) -> PlacedPiece:
        piece = PlacedPiece(key=req.key, name=req.name, kind=req.kind, size=tuple(size),
                            center=(float(prop.center[0]), float(prop.center[1])), z0=float(prop.z0),
                            yaw=float(prop.yaw) % 360.0, wall=prop.wall, anchor=prop.anchor, rule=prop.rule, tries=tries,
                            group=req.group, details=prop.details)
        self.placed.append(piece)
        clearance = FRONT_CLEARANCE.get(req.kind)
        if clearance is not None:
            self.clearances.append((piece, _front_zone(piece.center, size, piece.yaw, clearance)))
        if self._walk is not None and piece.z0 < WALKING_HEIGHT and req.kind not in EXEMPT_KINDS:
            self._walk.add(piece.footprint)
        return piece

    def snapshot(self):
        """The placer's state, for :meth:`restore` (a room planner trying a layout)."""
        return (len(self.placed), len(self.clearances), None if self._walk is None else self._walk.free.copy())

    def restore(self, state) -> None:
        placed, clearances, walk = state
        del self.placed[placed:]
        del self.clearances[clearances:]
        if self._walk is not None:
            self._walk.free = walk

    # -- one piece ---------------------------------------------------------------------------

    def place(self, req: PieceRequest, rng: np.random.Generator, later: list[PieceRequest] = ()) -> PlacedPiece | PlacementFailure:
        """Place one piece (``later``: the pieces after it, for the room they need kept)."""
        size = req.size
        self.nightstands_after = sum(1 for p in later if p.kind == "nightstand")
        self.chair_follows = False
        for p in later:
            if p.kind in ("table", "desk"):
                break
            if p.kind in SEATED_KINDS:
                self.chair_follows = req.kind == "desk"
                break
        if req.position is not None:
            prop = self.propose(req, size, rng)
            pinned = (float(req.position[0]), float(req.position[1]))
            yaw = prop.yaw
            if req.rotation is not None:
                yaw = req.rotation
            elif req.wall is not None:
                yaw = self.wall(req.wall).yaw
            elif req.kind in WALL_KINDS or (req.kind == "nightstand" and prop.anchor is None):
                yaw = self.nearest_wall(pinned).yaw  # its back to the nearest wall
            elif req.kind in SEATED_KINDS + ("armchair",):
                anchor = self.by_name(prop.anchor)
                focus = anchor.center if anchor is not None else self.room.centroid
                if math.dist(focus, pinned) > 1e-6:
                    yaw = facing_yaw(pinned, focus)
            wall = self.wall(req.wall) if req.wall is not None else None
            if req.kind in HUNG_KINDS:
                z0 = prop.z0
            else:
                z0 = 0.0
            prop = _Proposal(pinned, yaw, z0=z0, wall=wall or prop.wall, anchor=prop.anchor, rule="pinned_position")
            why = self.problem(req, size, prop)
            if why is not None:
                return PlacementFailure(req, ((why, 1),), 1, "" if req.optional else self.room_for(req))
            return self.commit(req, size, prop, 1)
        reasons: Counter[str] = Counter()
        tries = {"fixed": 1, "above_piece": 5}.get(req.rule or rule_of(req.kind), OPTIONAL_TRIES if req.optional else MAX_TRIES)
        for attempt in range(1, tries + 1):
            candidate = self.propose(req, size, rng)
            why = self.problem(req, size, candidate)
            if why is None:
                return self.commit(req, size, candidate, attempt)
            reasons[why] += 1
        # where there would be room is worked out for the pieces that are reported, not those left out
        return PlacementFailure(req, tuple(reasons.most_common()), tries, "" if req.optional else self.room_for(req))

    # -- where there would be room -----------------------------------------------------------

    def room_for(self, req: PieceRequest) -> str:
        """Where on the floor the piece would fit (ignoring its rule), or the largest free area."""
        w, d, h = req.size
        if req.kind in HUNG_KINDS:
            return "no wall has a free stretch for it"
        grid = _FreeGrid(self, req)
        spot = grid.find(w, d)
        if spot is not None:
            (x, y), yaw = spot
            return (f"there is free floor for it at ({x:.2f}, {y:.2f}) turned {yaw:.0f} degrees "
                    f"(position = [{x:.2f}, {y:.2f}], rotation = {yaw:.0f})")
        area = grid.largest()
        if area is None:
            return "no free floor is left in the room"
        (x, y), (fw, fd) = area
        return (f"no free floor takes its {w:.2f} x {d:.2f} m footprint; the largest free area is about "
                f"{fw:.2f} x {fd:.2f} m, around ({x:.2f}, {y:.2f})")


def _front_zone(center, size, yaw, depth) -> Footprint:
    a = math.radians(yaw)
    ly = size[1] / 2 + depth / 2
    return Footprint.rectangle(center[0] - ly * math.sin(a), center[1] + ly * math.cos(a), size[0] / 2, depth / 2, yaw,
                               0.0, CLEARANCE_HEIGHT)


def _near(fp: Footprint, polygon) -> bool:
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    b = fp.box
    return not (b[2] < min(xs) - 0.5 or b[0] > max(xs) + 0.5 or b[3] < min(ys) - 0.5 or b[1] > max(ys) + 0.5)


# --------------------------------------------------------------------------------------------
# Rasters: the walkway between doors, the free floor for a piece
# --------------------------------------------------------------------------------------------


MAX_RASTER_CELLS = 250_000  # a raster over a very large room gets coarser cells rather than more of them


def _grid(polygon, cell: float, angle: float = 0.0):
    """Cell centres covering a polygon, in a frame turned by ``angle`` (radians): (xs, ys) world
    coordinates, (H, W) arrays, plus the frame's origin and axes. ``cell`` grows for rooms so large
    that the raster would exceed ``MAX_RASTER_CELLS``."""
    c, s = math.cos(angle), math.sin(angle)
    local = [(p[0] * c + p[1] * s, -p[0] * s + p[1] * c) for p in polygon]
    u0, u1 = min(p[0] for p in local), max(p[0] for p in local)
    v0, v1 = min(p[1] for p in local), max(p[1] for p in local)
    cell = max(cell, math.sqrt((u1 - u0) * (v1 - v0) / MAX_RASTER_CELLS))
    nu, nv = max(1, int(math.ceil((u1 - u0) / cell))), max(1, int(math.ceil((v1 - v0) / cell)))
    us = u0 + (np.arange(nu) + 0.5) * cell
    vs = v0 + (np.arange(nv) + 0.5) * cell
    uu, vv = np.meshgrid(us, vs)
    return uu * c - vv * s, uu * s + vv * c, (u0, v0), (c, s)


def _distance_to_polygon_edges(xs, ys, polygon) -> np.ndarray:
    best = np.full(xs.shape, np.inf)
    n = len(polygon)
    for i in range(n):
        (ax, ay), (bx, by) = polygon[i], polygon[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0.0, 1.0)
        best = np.minimum(best, np.hypot(xs - ax - t * dx, ys - ay - t * dy))
    return best


def _within(xs, ys, fp: Footprint, margin: float) -> np.ndarray:
    """Cells within ``margin`` of a convex footprint (square-cornered: conservative)."""
    out = np.ones(xs.shape, dtype=bool)
    pts = fp.points
    n = len(pts)
    for i in range(n):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % n]
        length = math.hypot(bx - ax, by - ay)
        if length < 1e-12:
            continue
        nx, ny = (by - ay) / length, -(bx - ax) / length  # outward for a counter-clockwise polygon
        out &= (xs - ax) * nx + (ys - ay) * ny < margin
    return out


def _spread(free: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Every free cell in a run (along rows) of free cells that holds a reached cell."""
    h, w = free.shape
    flat = free.ravel()
    starts = np.zeros(h * w, dtype=bool)
    starts[::w] = True
    ids = np.cumsum(~flat | starts)
    hit = np.zeros(int(ids[-1]) + 1, dtype=bool)
    hit[ids[reached.ravel() & flat]] = True
    return (hit[ids] & flat).reshape(h, w)


def _reach(free: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """Cells of ``free`` 4-connected to ``seed``: runs along rows and columns spread in turn until
    nothing changes (as many rounds as the path has turns)."""
    reached = np.zeros_like(free)
    if not free[seed]:
        return reached
    reached[seed] = True
    count = 1
    while True:
        reached = _spread(free, reached)
        reached = _spread(free.T, reached.T).T
        total = int(reached.sum())
        if total == count:
            return reached
        count = total


class _Walkway:
    """The room's floor where a person fits (half width ``WALKWAY_HALF_WIDTH`` from walls and
    pieces), and whether every door still reaches the doors it reached before."""

    def __init__(self, room: PlanRoom, doors, obstacles: list[Obstacle], zones: list[PlacementZone]):
        self.xs, self.ys, _, _ = _grid(room.interior, WALKWAY_CELL)
        inside = points_in_polygon(self.xs, self.ys, room.interior)
        self.free = inside & (_distance_to_polygon_edges(self.xs, self.ys, room.interior) >= WALKWAY_HALF_WIDTH)
        for o in obstacles:
            if o.footprint.z0 < WALKING_HEIGHT:
                self.free &= ~_within(self.xs, self.ys, o.footprint, WALKWAY_HALF_WIDTH)
        for z in zones:
            if z.kind == "door_leaf":
                self.free &= ~_within(self.xs, self.ys, z.footprint, WALKWAY_HALF_WIDTH)
        self.cells = []
        for _, point in doors:
            d = np.hypot(self.xs - point[0], self.ys - point[1])
            self.cells.append(np.unravel_index(int(np.argmin(np.where(self.free, d, np.inf))), d.shape))
        self.groups = self._groups(self.free)

    def _groups(self, free: np.ndarray) -> int:
        """How many separate parts of the floor the doors open onto."""
        remaining = list(range(len(self.cells)))
        groups = 0
        while remaining:
            first = remaining.pop(0)
            groups += 1
            reached = _reach(free, self.cells[first])
            remaining = [k for k in remaining if not reached[self.cells[k]]]
        return groups

    def keeps_walkway(self, fp: Footprint) -> bool:
        return self._groups(self.free & ~_within(self.xs, self.ys, fp, WALKWAY_HALF_WIDTH)) <= self.groups

    def add(self, fp: Footprint) -> None:
        self.free &= ~_within(self.xs, self.ys, fp, WALKWAY_HALF_WIDTH)


def free_floor(room: PlanRoom, footprints: list[Footprint], clearance: float, cell: float = WALKWAY_CELL,
               below: float = WALKING_HEIGHT):
    """Where one can stand in a room: (mask (H, W) bool, xs, ys world coordinates of the cell
    centres) of the floor at least ``clearance`` from the room's walls and from every footprint
    whose bottom is lower than ``below`` (a tour's free space; a camera's clearance)."""
    xs, ys, _, _ = _grid(room.interior, cell)
    free = points_in_polygon(xs, ys, room.interior) & (_distance_to_polygon_edges(xs, ys, room.interior) >= clearance)
    for fp in footprints:
        if fp.z0 < below:
            free &= ~_within(xs, ys, fp, clearance)
    return free, xs, ys


class _FreeGrid:
    """Where a piece's footprint would fit: the floor free of walls, kept-free zones, obstacles and
    pieces at its height, in a raster along the room's longest wall."""

    def __init__(self, placer: RoomPlacer, req: PieceRequest):
        self.angle = math.radians(placer.main_yaw())
        self.xs, self.ys, _, _ = _grid(placer.room.interior, FREE_CELL, self.angle)
        self.cell = math.hypot(self.xs[0, 1] - self.xs[0, 0], self.ys[0, 1] - self.ys[0, 0]) if self.xs.shape[1] > 1 else FREE_CELL
        free = points_in_polygon(self.xs, self.ys, placer.room.interior)
        free &= _distance_to_polygon_edges(self.xs, self.ys, placer.room.interior) >= FREE_CELL / 2
        z0, z1 = 0.0, req.size[2]
        rug = req.kind in EXEMPT_KINDS
        if not rug:
            for z in placer.zones:
                if z.kind != "opening" and z.footprint.z1 > z0 and z.footprint.z0 < z1:
                    free &= ~_within(self.xs, self.ys, z.footprint, FREE_CELL / 2)
            for p in placer.placed:
                if p.kind not in EXEMPT_KINDS and p.z0 < z1 and p.z0 + p.size[2] > z0:
                    free &= ~_within(self.xs, self.ys, p.footprint, PIECE_GAP + FREE_CELL / 2)
            for o in placer.obstacles:
                if o.footprint.z0 < z1 and o.footprint.z1 > z0:
                    free &= ~_within(self.xs, self.ys, o.footprint, PIECE_GAP + FREE_CELL / 2)
            for _, zone in placer.clearances:
                free &= ~_within(self.xs, self.ys, zone, FREE_CELL / 2)
        self.free = free
        self.centre = placer.room.centroid

    def find(self, w: float, d: float):
        """The free spot nearest the room's middle for a w x d footprint: ((x, y), yaw) or None."""
        best = None
        table = np.pad(self.free.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        for yaw_extra, (along, across) in ((0.0, (w, d)), (90.0, (d, w))):
            nu, nv = int(math.ceil(along / self.cell)), int(math.ceil(across / self.cell))
            H, W = self.free.shape
            if nv > H or nu > W:
                continue
            sums = table[nv:, nu:] - table[:-nv, nu:] - table[nv:, :-nu] + table[:-nv, :-nu]
            ok = sums == nu * nv
            if not ok.any():
                continue
            rows, cols = np.nonzero(ok)
            # window [rows, rows + nv) x [cols, cols + nu): its centre
            cx = (self.xs[rows, cols] + self.xs[rows + nv - 1, cols + nu - 1]) / 2
            cy = (self.ys[rows, cols] + self.ys[rows + nv - 1, cols + nu - 1]) / 2
            dist = np.hypot(cx - self.centre[0], cy - self.centre[1])
            k = int(np.argmin(dist))
            if best is None or dist[k] < best[0]:
                best = (float(dist[k]), (float(cx[k]), float(cy[k])), (math.degrees(self.angle) + yaw_extra) % 360.0)
        return None if best is None else (best[1], best[2])

    def largest(self):
        """The largest free rectangle: (centre, (along, across) metres), or None."""
        H, W = self.free.shape
        heights = np.zeros(W, dtype=np.int64)
        best = (0, None)
        for r in range(H):
            heights = np.where(self.free[r], heights + 1, 0)
            stack: list[int] = []
            for c in range(W + 1):
                hc = heights[c] if c < W else 0
                while stack and heights[stack[-1]] >= hc:
                    top = stack.pop()
                    height = heights[top]
                    left = stack[-1] + 1 if stack else 0
                    area = height * (c - left)
                    if area > best[0]:
                        best = (area, (r - height + 1, r, left, c - 1))
                stack.append(c)
        if best[1] is None:
            return None
        r0, r1, c0, c1 = best[1]
        cx = (self.xs[r0, c0] + self.xs[r1, c1]) / 2
        cy = (self.ys[r0, c0] + self.ys[r1, c1]) / 2
        return (float(cx), float(cy)), ((c1 - c0 + 1) * self.cell, (r1 - r0 + 1) * self.cell)
