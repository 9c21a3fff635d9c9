"""Tours: a walkthrough planned through a floor plan's rooms (``camera.path.kind = "tour"``). numpy.

Given rooms ``[r0, r1, ..., rn]`` (each two consecutive ones share a door), :func:`plan_tour`
plans a path on the floor of one storey and :class:`TourRoute` walks it:

1. The free floor: in each room, the points at least ``clearance`` (plus a planning margin) from
   the obstacles at body height (everything whose bottom is below ``eye_height + clearance``):
   the walls (through a door only its jambs), the doors' open leaves, the furniture, explicit
   objects and imported models. Distances are exact (to the obstacles' footprints), sampled on a
   :data:`CELL` grid.
2. Through each door: a straight line along the door's normal through its centre, from a point in
   front of it in one room to a point in front of it in the other (the passage in front of a door
   is kept free of furniture). A door narrower than twice the clearance, or whose head is less
   than ``clearance`` above the eye, is a problem.
3. In each room the shortest way on the free floor (8-connected grid) from where the tour enters
   to where it leaves; the first room's way starts, and the last room's ends, at the room's most
   open spot (clearance at least :data:`OPEN_SPACE` where the room has it, else its largest)
   farthest along the floor from the door.
4. The way is pulled straight where the floor allows (every segment checked at
   :data:`SAMPLE_STEP`, so that no point between two samples comes closer than ``clearance``) and
   its corners rounded (Chaikin's cuts, each kept only when it stays clear), the door centres
   kept on it.

The camera then moves along the route at constant speed over the frame range (arc length
proportional to the path parameter; the frames before and after continue along the end tangents),
at ``eye_height`` above the storey's floor, looking ``look_ahead`` metres ahead along the route.
The build checks every rendered frame's clearance again, exactly (:func:`clearance_problems`).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from procedural.floor_plan import door_leaf_footprint, plan_problem
from procedural.planar_geometry import distances_to_boundary, points_in_polygon

CELL = 0.1  # metres: the planning grid
MARGIN = 0.075  # planning margin on the grid: a point between two cell centres is this close to one of them
SAMPLE_STEP = 0.02  # metres between the clearance samples along a segment
OPEN_SPACE = 1.0  # metres of clearance that make a spot "open"
APPROACH = 0.25  # metres beyond wall + clearance at which the tour passes in front of a door
SMOOTHING_ROUNDS = 4
BLOCK_POINTS = 2048  # points measured against every edge at once


# --------------------------------------------------------------------------------------------
# Obstacles and exact clearance
# --------------------------------------------------------------------------------------------


def _clip(polygon, normal, offset) -> list:
    """The part of a polygon where ``p . normal <= offset`` (Sutherland-Hodgman, one half-plane)."""
    out = []
    n = len(polygon)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        da = a[0] * normal[0] + a[1] * normal[1] - offset
        db = b[0] * normal[0] + b[1] * normal[1] - offset
        if da <= 0:
            out.append(a)
        if (da < 0 < db) or (db < 0 < da):
            t = da / (da - db)
            out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
    return out if len(out) >= 3 else []


class Obstacles:
    """What a camera at eye height keeps clear of on one storey: polygons on the floor (storey frame) and their labels."""

    def __init__(self, polygons: list, labels: list[str]):
        self.polygons = [list(p) for p in polygons]
        self.labels = list(labels)
        starts, ends, owner = [], [], []
        for k, poly in enumerate(self.polygons):
            n = len(poly)
            starts += poly
            ends += [poly[(i + 1) % n] for i in range(n)]
            owner += [k] * n
        self._a = np.array(starts, dtype=np.float64).reshape(-1, 2)
        self._b = np.array(ends, dtype=np.float64).reshape(-1, 2)
        self._owner = np.array(owner, dtype=np.int64)
        self._boxes = np.array([[min(x for x, _ in p), min(y for _, y in p), max(x for x, _ in p), max(y for _, y in p)]
                                for p in self.polygons]).reshape(-1, 4)

    def distance(self, x, y, reach: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the nearest obstacle, its index; -1 and inf when none is within ``reach``)
        for points (any shape); 0 inside one. All edges at once (points x edges)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.size > BLOCK_POINTS:  # bounded memory: points x edges per block
            flat_x, flat_y = x.reshape(-1), y.reshape(-1)
            parts = [self.distance(flat_x[i:i + BLOCK_POINTS], flat_y[i:i + BLOCK_POINTS], reach)
                     for i in range(0, flat_x.size, BLOCK_POINTS)]
            return (np.concatenate([d for d, _ in parts]).reshape(x.shape),
                    np.concatenate([w for _, w in parts]).reshape(x.shape))
        shape = x.shape
        px, py = x.reshape(-1, 1), y.reshape(-1, 1)
        best = np.full(px.shape[0], np.inf)
        which = np.full(px.shape[0], -1)
        if len(self.polygons) == 0 or px.shape[0] == 0:
            return best.reshape(shape), which.reshape(shape)
        lo_x, lo_y, hi_x, hi_y = px.min() - reach, py.min() - reach, px.max() + reach, py.max() + reach
        near = ~((self._boxes[:, 2] < lo_x) | (self._boxes[:, 0] > hi_x) | (self._boxes[:, 3] < lo_y) | (self._boxes[:, 1] > hi_y))
        edges = near[self._owner]
        if not edges.any():
            return best.reshape(shape), which.reshape(shape)
        a, b, owner = self._a[edges], self._b[edges], self._owner[edges]
        d = b - a
        length2 = np.maximum((d * d).sum(axis=1), 1e-24)
        t = np.clip(((px - a[:, 0]) * d[:, 0] + (py - a[:, 1]) * d[:, 1]) / length2, 0.0, 1.0)
        dist = np.hypot(px - a[:, 0] - t * d[:, 0], py - a[:, 1] - t * d[:, 1])  # (K, E)
        with np.errstate(divide="ignore", invalid="ignore"):
            crosses = ((a[:, 1] > py) != (b[:, 1] > py)) & (px < d[:, 0] * (py - a[:, 1]) / np.where(d[:, 1] == 0, 1.0, d[:, 1]) + a[:, 0])
        starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        per_polygon = np.minimum.reduceat(dist, starts, axis=1)  # (K, P)
        inside = np.add.reduceat(crosses.astype(np.int64), starts, axis=1) % 2 == 1
        per_polygon = np.where(inside, 0.0, per_polygon)
        k = np.argmin(per_polygon, axis=1)
        best = per_polygon[np.arange(len(k)), k]
        which = owner[starts][k]
        return best.reshape(shape), which.reshape(shape)


def storey_obstacles(storey, eye_height: float, clearance: float, extra: list = ()) -> Obstacles:
    """The obstacles of a storey for a camera at ``eye_height`` keeping ``clearance``: walls with
    their doors' openings cut out, open door leaves, furniture and ``extra`` footprints
    (:class:`procedural.planar_geometry.Footprint` in the storey's frame, e.g. explicit objects)
    whose bottom is below the eye plus the clearance."""
    g = storey.geometry
    below = eye_height + clearance
    polygons, labels = [], []
    for k, seg in enumerate(g.segments):
        pieces = [list(seg.footprint())]
        d = seg.direction
        for op in g.openings:
            if op.segment != k or op.kind != "door":
                continue
            p_a0, p_a1 = seg.point(op.a0), seg.point(op.a1)
            off0 = p_a0[0] * d[0] + p_a0[1] * d[1]
            off1 = p_a1[0] * d[0] + p_a1[1] * d[1]
            cut = []
            for piece in pieces:
                cut += [q for q in (_clip(piece, d, off0), _clip(piece, (-d[0], -d[1]), -off1)) if q]
            pieces = cut
        for piece in pieces:
            polygons.append(piece)
            labels.append(storey.prefix + seg.name)
    for op in g.openings:
        if op.kind == "door":
            polygons.append(list(door_leaf_footprint(g.segments[op.segment], op, op.hinge_along, g.thickness).points))
            labels.append(f"the open leaf of {storey.prefix}{op.name}")
    for furnishing in storey.furnishings.values():
        for piece in furnishing.placed:
            fp = piece.footprint
            if fp.z0 < below and fp.z1 > 0.0:
                polygons.append(list(fp.points))
                labels.append(piece.name)
    for label, fp in extra:
        if fp.z0 < below and fp.z1 > 0.0:
            polygons.append(list(fp.points))
            labels.append(label)
    return Obstacles(polygons, labels)


def segment_samples(a, b, step: float = SAMPLE_STEP) -> np.ndarray:
    """Points along a segment at most ``step`` apart, both ends included (K, 2)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = max(1, int(math.ceil(np.linalg.norm(b - a) / step)))
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return a + t * (b - a)


# --------------------------------------------------------------------------------------------
# The route
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TourRoute:
    """A planned tour: the route's polyline on the floor (M, 2), at ``z`` (world) for the eye."""

    points: np.ndarray
    z: float
    doors: tuple[str, ...]  # the doors passed, in order
    storey: int = 0  # which storey of the layout it walks

    @property
    def arc(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))])

    @property
    def length(self) -> float:
        return float(self.arc[-1])

    def position(self, s) -> np.ndarray:
        """Points at arc lengths ``s`` (N,) -> (N, 3); past the ends along the end tangents."""
        s = np.asarray(s, dtype=np.float64)
        arc, pts = self.arc, self.points
        xy = np.column_stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])])
        start = pts[1] - pts[0]
        end = pts[-1] - pts[-2]
        start, end = start / np.linalg.norm(start), end / np.linalg.norm(end)
        before, after = s < 0.0, s > arc[-1]
        xy[before] = pts[0] + s[before, None] * start
        xy[after] = pts[-1] + (s[after, None] - arc[-1]) * end
        return np.column_stack([xy, np.full(len(s), self.z)])

    def positions_and_targets(self, t: np.ndarray, look_ahead: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera positions and look-at targets at path parameters ``t`` (constant speed)."""
        s = np.asarray(t, dtype=np.float64) * self.length
        return self.position(s), self.position(s + look_ahead)


class _Grid:
    """The free floor of one room on a :data:`CELL` grid (storey frame)."""

    def __init__(self, room, obstacles: Obstacles, need: float):
        xs = [p[0] for p in room.interior]
        ys = [p[1] for p in room.interior]
        x0, y0 = min(xs), min(ys)
        nx = max(1, int(math.ceil((max(xs) - x0) / CELL)))
        ny = max(1, int(math.ceil((max(ys) - y0) / CELL)))
        self.x = x0 + (np.arange(nx) + 0.5) * CELL
        self.y = y0 + (np.arange(ny) + 0.5) * CELL
        gx, gy = np.meshgrid(self.x, self.y)
        inside = points_in_polygon(gx, gy, room.interior)
        walls = distances_to_boundary(gx, gy, room.interior)
        dist, _ = obstacles.distance(gx, gy, reach=OPEN_SPACE + 0.5)
        self.clearance = np.where(inside, np.minimum(walls, dist), -1.0)
        self.free = self.clearance >= need + MARGIN
        self.shape = (ny, nx)

    def point(self, flat: int) -> tuple[float, float]:
        r, c = divmod(int(flat), self.shape[1])
        return float(self.x[c]), float(self.y[r])

    def nearest_free(self, p, visible) -> int | None:
        """The free cell nearest to ``p`` from which ``visible(cell point)`` holds."""
        rows, cols = np.nonzero(self.free)
        if len(rows) == 0:
            return None
        d = np.hypot(self.x[cols] - p[0], self.y[rows] - p[1])
        for k in np.argsort(d, kind="stable")[:64]:
            flat = int(rows[k]) * self.shape[1] + int(cols[k])
            if visible(self.point(flat)):
                return flat
        return None

    def distances(self, source: int) -> tuple[np.ndarray, np.ndarray]:
        """Dijkstra over free cells (8-connected): (distance (H*W,), predecessor (H*W,))."""
        h, w = self.shape
        free = self.free.reshape(-1)
        dist = np.full(h * w, np.inf)
        prev = np.full(h * w, -1, dtype=np.int64)
        dist[source] = 0.0
        heap = [(0.0, source)]
        steps = [(dr, dc, CELL * math.hypot(dr, dc)) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
        while heap:
            d, k = heapq.heappop(heap)
            if d > dist[k]:
                continue
            r, c = divmod(k, w)
            for dr, dc, cost in steps:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w:
                    j = rr * w + cc
                    if free[j] and d + cost < dist[j] - 1e-12:
                        dist[j] = d + cost
                        prev[j] = k
                        heapq.heappush(heap, (d + cost, j))
        return dist, prev

    def way(self, prev: np.ndarray, target: int) -> list[tuple[float, float]]:
        """Cells from the Dijkstra source to ``target`` (inclusive)."""
        out = []
        k = target
        while k >= 0:
            out.append(self.point(k))
            k = int(prev[k])
        return out[::-1]

    def open_spot(self, dist: np.ndarray) -> int | None:
        """The most open reachable cell (clearance >= OPEN_SPACE where the room has it), farthest along the floor."""
        reach = np.isfinite(dist)
        if not reach.any():
            return None
        clear = self.clearance.reshape(-1)
        level = min(OPEN_SPACE, float(clear[reach].max()))
        candidates = np.flatnonzero(reach & (clear >= level - 1e-9))
        return int(candidates[np.argmax(dist[candidates])])


def _door_between(geometry, a: str, b: str):
    found = [p for p in geometry.door_passages() if set(p.rooms) == {a, b}]
    return max(found, key=lambda p: p.width) if found else None


def plan_tour(path, storeys, extra_for_storey) -> tuple[TourRoute | None, list[dict]]:
    """Plan ``path`` (a validated :class:`scenes.template_schema.TourPath`) over the layout's
    ``storeys``; ``extra_for_storey(storey)`` gives the explicit obstacles in its frame. Returns the
    route, or None and the problems (each naming its key path, value and fix)."""
    key = "camera.path"
    problems: list[dict] = []
    # 1. Check inputs: which storey, which rooms, which doors
    if not storeys:
        return None, [plan_problem(f"{key}.kind", "tour", "a tour walks through a floor plan's rooms: use generator.kind = "
                                   "'floor_plan' or 'building'")]
    resolved = []
    storey_index = None
    for i, name in enumerate(path.rooms):
        prefix, _, room = name.rpartition("/")
        k = int(prefix.removeprefix("storey")) if prefix else 0
        if k >= len(storeys):
            problems.append(plan_problem(f"{key}.rooms.{i}", name, f"the building has storeys 0 .. {len(storeys) - 1} "
                                         f"(storey<N>/ names the N-th above the ground floor)"))
            continue
        if storey_index is None:
            storey_index = k
        elif k != storey_index:
            problems.append(plan_problem(f"{key}.rooms.{i}", name, f"a tour stays on one storey (no stairs are built); the "
                                         f"first room is on storey {storey_index}"))
            continue
        geometry = storeys[k].geometry
        if room not in geometry.rooms:
            problems.append(plan_problem(f"{key}.rooms.{i}", name, f"no room is named {room!r} (rooms: "
                                         f"{', '.join(sorted(geometry.rooms))})"))
            continue
        resolved.append((i, room))
    if problems:
        return None, problems
    storey = storeys[storey_index]
    g = storey.geometry
    eye, clearance = float(path.eye_height), float(path.clearance)
    if eye < clearance or eye + clearance > g.height:
        problems.append(plan_problem(f"{key}.eye_height", path.eye_height,
                                     f"the eye keeps clearance {clearance:g} m from the floor and the ceiling "
                                     f"({g.height:g} m); allowed eye_height {clearance:g} .. {g.height - clearance:g}"))
    doors = []
    for (i, a), (j, b) in zip(resolved, resolved[1:]):
        if a == b:
            problems.append(plan_problem(f"{key}.rooms.{j}", path.rooms[j], "repeats the room before it; name each room "
                                         "the tour walks into once in a row"))
            continue
        door = _door_between(g, a, b)
        if door is None:
            linked = sorted({r for p in g.door_passages() if a in p.rooms for r in p.rooms} - {a, "outside"})
            problems.append(plan_problem(f"{key}.rooms.{j}", path.rooms[j], f"no door joins {a!r} and {b!r}; from {a!r} doors "
                                         f"lead to {', '.join(map(repr, linked)) or 'no room'}"))
            continue
        if door.width / 2.0 < clearance + MARGIN:
            problems.append(plan_problem(f"{key}.clearance", path.clearance,
                                         f"{door.name} is {door.width:g} m wide: a tour keeping {clearance:g} m from its jambs "
                                         f"needs doors at least {2 * (clearance + MARGIN):.3g} m wide; widen the door or lower "
                                         "the clearance"))
        if door.height < eye + clearance - 1e-9:
            problems.append(plan_problem(f"{key}.eye_height", path.eye_height,
                                         f"{door.name} is {door.height:g} m high: the eye passes under its head with "
                                         f"{clearance:g} m to spare only at eye_height <= {door.height - clearance:g}"))
        doors.append(door)
    if problems:
        return None, problems

    # 2. Obstacles, free floors, the points in front of each door
    obstacles = storey_obstacles(storey, eye, clearance, extra_for_storey(storey))
    need = clearance

    def clear(points: np.ndarray, margin: float = SAMPLE_STEP / 2.0) -> bool:
        d, _ = obstacles.distance(points[:, 0], points[:, 1], reach=need + margin + 0.01)
        return bool(np.all(d >= need + margin))

    def visible(a, b) -> bool:
        return clear(segment_samples(a, b))

    grids = {}
    for _, room in resolved:
        if room not in grids:
            grids[room] = _Grid(g.rooms[room], obstacles, need)
    approaches = []  # per door: (point in room a, point in room b)
    for (_, a), (_, b), door in zip(resolved, resolved[1:], doors):
        pair = []
        for room in (a, b):
            side = 1.0 if door.rooms[0] == room else -1.0
            found = None
            for extra in np.arange(0.0, 0.8, 0.05):
                depth = door.thickness / 2.0 + clearance + APPROACH + extra
                p = (door.centre[0] + side * depth * door.normal[0], door.centre[1] + side * depth * door.normal[1])
                if clear(np.array([p]), MARGIN) and visible(p, door.centre):
                    found = p
                    break
            if found is None:
                problems.append(plan_problem(f"{key}.clearance", path.clearance,
                                             f"there is no room {clearance:g} m clear of walls and furniture in front of "
                                             f"{door.name} in {room!r}; lower the clearance or move the furniture"))
                found = door.centre
            pair.append(found)
        approaches.append(tuple(pair))
    if problems:
        return None, problems

    # 3. The way through each room
    route: list[tuple[float, float]] = []
    locked: list[bool] = []  # kept by the pulling: door centres, the points in front of doors, the ends
    pinned: list[bool] = []  # kept by the rounding too: door centres, the ends
    last = len(resolved) - 1
    for n, (_, room) in enumerate(resolved):
        grid = grids[room]
        entry = approaches[n - 1][1] if n > 0 else None
        exit_ = approaches[n][0] if n < last else None
        anchor = exit_ if entry is None else entry
        source = grid.nearest_free(anchor, lambda q: visible(anchor, q))
        if source is None:
            problems.append(plan_problem(f"{key}.rooms.{resolved[n][0]}", path.rooms[resolved[n][0]],
                                         f"no floor in {room!r} is {clearance:g} m clear of walls and furniture next to the "
                                         "door; lower camera.path.clearance"))
            return None, problems
        dist, prev = grid.distances(source)
        if entry is not None and exit_ is not None:
            target = grid.nearest_free(exit_, lambda q: visible(exit_, q))
            if target is None or not np.isfinite(dist[target]):
                problems.append(plan_problem(f"{key}.rooms.{resolved[n][0]}", path.rooms[resolved[n][0]],
                                             f"no way {clearance:g} m clear of walls and furniture crosses {room!r} from "
                                             f"{doors[n - 1].name} to {doors[n].name}; lower camera.path.clearance"))
                return None, problems
            cells = grid.way(prev, target)
            way, keep = [entry] + cells + [exit_], [True] + [False] * len(cells) + [True]
        else:
            spot = grid.open_spot(dist)
            cells = grid.way(prev, spot)
            if entry is None:
                way, keep = cells[::-1] + [exit_], [True] + [False] * (len(cells) - 1) + [True]
            else:
                way, keep = [entry] + cells, [True] + [False] * (len(cells) - 1) + [True]
        if n > 0:
            route.append(doors[n - 1].centre)
            locked.append(True)
            pinned.append(True)
        route += way
        locked += keep
        pinned += [False] * len(way)
    pinned[0] = pinned[-1] = True

    # 4. Pulled straight (through each door square to its wall), corners rounded (the door centres kept)
    points, flags = _pull_straight(route, list(zip(locked, pinned)), visible)
    points = _round_corners(points, [p for _, p in flags], visible)
    return TourRoute(np.array(points, dtype=np.float64), float(storey.z + eye), tuple(d.name for d in doors), storey_index), []


def _pull_straight(points, flags, visible):
    """Greedy line of sight: from each kept point jump to the farthest later point it sees (never
    past a locked one, ``flags[i][0]``); the kept points' flags come along."""
    out, kept = [points[0]], [flags[0]]
    i = 0
    n = len(points)
    while i < n - 1:
        j = i + 1
        k = i + 1
        while k < n:
            if not visible(points[i], points[k]):
                break
            j = k
            if flags[k][0]:
                break
            k += 1
        out.append(points[j])
        kept.append(flags[j])
        i = j
    return out, kept


def _round_corners(points, locked, visible, rounds: int = SMOOTHING_ROUNDS):
    """Chaikin's corner cuts (a quarter of each neighbouring segment), kept only where the cut stays clear."""
    pts, lock = list(points), list(locked)
    for _ in range(rounds):
        out, flags = [pts[0]], [lock[0]]
        for i in range(1, len(pts) - 1):
            prev, here, nxt = np.asarray(pts[i - 1]), np.asarray(pts[i]), np.asarray(pts[i + 1])
            if lock[i]:
                out.append(pts[i])
                flags.append(True)
                continue
            a = tuple(here + 0.25 * (prev - here))
            b = tuple(here + 0.25 * (nxt - here))
            if visible(a, b):
                out += [a, b]
                flags += [False, False]
            else:
                out.append(pts[i])
                flags.append(False)
        out.append(pts[-1])
        flags.append(lock[-1])
        pts, lock = out, flags
    return pts


def clearance_problems(path, route: TourRoute, storeys, extra_for_storey, frames: np.ndarray, positions: np.ndarray) -> list[dict]:
    """The rendered frames whose camera comes closer than ``clearance`` to an obstacle (exact distances)."""
    from procedural.camera_checks import frame_ranges

    storey = storeys[route.storey]
    obstacles = storey_obstacles(storey, path.eye_height, path.clearance, extra_for_storey(storey))
    d, which = obstacles.distance(positions[:, 0], positions[:, 1])
    bad = d < path.clearance - 1e-9
    if not bad.any():
        return []
    k = int(np.argmax(bad))
    return [plan_problem("camera.path.clearance", path.clearance,
                         f"the tour comes {d[k]:.3f} m from {obstacles.labels[which[k]]} on frames {frame_ranges(frames[bad])}; "
                         "lower the clearance or move the furniture")]


__all__ = ["plan_tour", "TourRoute", "storey_obstacles", "clearance_problems"]
