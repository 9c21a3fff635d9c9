"""The shell of a floor plan as meshes: floors, ceilings, walls with their openings cut in, open
doors, and windows with frames and glass. Pure numpy.

Every wall segment (:class:`procedural.floor_plan.WallSegment`) is one closed, watertight solid:
its two faces are grids whose columns are the openings' jambs and whose rows are their sills
and heads, so no face is split where the surface does not change and every edge is shared whole
by the faces on either side (no T-junctions); the reveals (jambs, heads, sills) and the joins'
end caps share the same rows. One object per wall name: a room's outer wall on one edge, or the
wall two rooms share (several segments when they share several stretches).

Floors and ceilings are slabs over the rooms' wall centre-line polygons (``SLAB`` thick, below
z = 0 and above the room's height): neighbouring floors meet under the wall they share, and the
floor runs on through a door. A door stands open at 90 degrees into its room, hinged at one
jamb; a window is a frame in the middle of the wall's thickness with a pane of glass (class
``window``) where the wall's centre line runs, unless ``glass = false``.

Entry point: :func:`shell_parts` (a :class:`procedural.floor_plan.PlanGeometry` -> the parts in
their stable order: floors, ceilings, walls, doors, windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from procedural.floor_plan import DOOR_LEAF_THICKNESS, L_EDGE_NAMES, Opening, PlanGeometry, WallSegment
from procedural.planar_geometry import Point, signed_area, triangulate
from procedural.primitive_meshes import Mesh, box_between, merge, rotation_z, transform

SLAB = 0.1  # floor and ceiling slab thickness, metres
FRAME_DEPTH = 0.08  # window frames, across the wall
GLASS_THICKNESS = 0.006


@dataclass(frozen=True)
class ShellPart:
    name: str  # stable name: "floor:living", "wall:hall|living", "room.wall_north", ...
    kind: str  # floor, ceiling, wall, door, window
    semantic_class: str
    mesh: Mesh
    rooms: tuple[str, ...] = ()  # the rooms it belongs to or stands between


# --------------------------------------------------------------------------------------------
# A mesh of planar faces, each its own UV island
# --------------------------------------------------------------------------------------------


class _FaceMesh:
    """Accumulates planar faces: triangles (wound to the face's outward normal) and island
    coordinates in metres in a basis (u, v) with u x v = the normal (seen from outside, not mirrored)."""

    def __init__(self):
        self.vertices: list[np.ndarray] = []
        self.triangles: list[np.ndarray] = []
        self.island_uvs: list[np.ndarray] = []
        self.island_ids: list[np.ndarray] = []
        self.count = 0
        self.islands = 0

    @staticmethod
    def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = normal / np.linalg.norm(normal)
        up = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
        v = up - (up @ n) * n
        v /= np.linalg.norm(v)
        u = np.cross(v, n)
        return u, v

    def add(self, points: np.ndarray, triangles, normal) -> None:
        """One face: vertices (K, 3), triangles (indices into them) in any winding, its outward normal."""
        if len(triangles) == 0:
            return
        points = np.asarray(points, dtype=np.float64)
        tris = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
        normal = np.asarray(normal, dtype=np.float64)
        a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
        flip = np.cross(b - a, c - a) @ normal < 0
        tris = np.where(flip[:, None], tris[:, [0, 2, 1]], tris)
        u, v = self._basis(normal)
        uv = np.stack([points @ u, points @ v], axis=1)
        self.vertices.append(points)
        self.triangles.append(tris + self.count)
        self.island_uvs.append(uv[tris])
        self.island_ids.append(np.full(len(tris), self.islands, dtype=np.int64))
        self.count += len(points)
        self.islands += 1

    def polygon(self, points3d, normal) -> None:
        """A planar polygon given counter-clockwise seen from outside (collinear vertices kept)."""
        pts = np.asarray(points3d, dtype=np.float64)
        u, v = self._basis(np.asarray(normal, dtype=np.float64))
        flat = [(float(p @ u), float(p @ v)) for p in pts]
        if signed_area(flat) < 0:
            flat = flat[::-1]
            pts = pts[::-1]
        self.add(pts, triangulate(flat), normal)

    def mesh(self) -> Mesh:
        return Mesh(
            vertices=np.concatenate(self.vertices),
            triangles=np.concatenate(self.triangles).astype(np.int32),
            island_uvs=np.concatenate(self.island_uvs),
            island_ids=np.concatenate(self.island_ids),
        )


def prism(polygon, z0: float, z1: float) -> Mesh:
    """A closed slab over a simple counter-clockwise polygon: top, bottom, one quad per edge."""
    fm = _FaceMesh()
    n = len(polygon)
    top = [(x, y, z1) for x, y in polygon]
    fm.polygon(top, (0.0, 0.0, 1.0))
    fm.polygon([(x, y, z0) for x, y in reversed(polygon)], (0.0, 0.0, -1.0))
    for i in range(n):
        (x0, y0), (x1, y1) = polygon[i], polygon[(i + 1) % n]
        normal = (y1 - y0, -(x1 - x0), 0.0)
        fm.add(np.array([(x0, y0, z0), (x1, y1, z0), (x1, y1, z1), (x0, y0, z1)]), [(0, 1, 2), (0, 2, 3)], normal)
    return fm.mesh()


# --------------------------------------------------------------------------------------------
# Walls
# --------------------------------------------------------------------------------------------


def _local(seg: WallSegment, p: Point) -> tuple[float, float]:
    d, n = seg.direction, seg.normal
    rx, ry = p[0] - seg.p0[0], p[1] - seg.p0[1]
    return (rx * d[0] + ry * d[1], rx * n[0] + ry * n[1])


def wall_mesh(seg: WallSegment, openings: list[Opening], height: float, thickness: float) -> Mesh:
    """One wall segment as a closed solid with its openings cut through (see the module docstring).

    Built in the segment's frame (x along from p0, y across towards the owner room, z up) and
    moved into place."""
    h2 = thickness / 2.0
    ops = sorted(openings, key=lambda o: o.a0)
    rows = sorted({0.0, float(height)} | {o.sill for o in ops} | {o.top for o in ops})
    sr, sn, sl = (_local(seg, p) for p in seg.start_cap)
    er, en, el = (_local(seg, p) for p in seg.end_cap)
    fm = _FaceMesh()

    def in_opening(a_lo, a_hi, z_lo, z_hi) -> bool:
        return any(o.a0 - 1e-9 <= a_lo and a_hi <= o.a1 + 1e-9 and o.sill - 1e-9 <= z_lo and z_hi <= o.top + 1e-9 for o in ops)

    def columns(start: float, end: float) -> list[float]:
        return [start] + [v for o in ops for v in (o.a0, o.a1)] + [end]

    # the two faces: grids
    for y, start, end, normal in ((-h2, sr[0], er[0], (0.0, -1.0, 0.0)), (h2, sl[0], el[0], (0.0, 1.0, 0.0))):
        cols = columns(start, end)
        index = {}
        points = []
        tris = []
        for i in range(len(cols) - 1):
            for j in range(len(rows) - 1):
                if in_opening(cols[i], cols[i + 1], rows[j], rows[j + 1]):
                    continue
                corners = []
                for ci, rj in ((i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)):
                    if (ci, rj) not in index:
                        index[(ci, rj)] = len(points)
                        points.append((cols[ci], y, rows[rj]))
                    corners.append(index[(ci, rj)])
                tris += [(corners[0], corners[1], corners[2]), (corners[0], corners[2], corners[3])]
        fm.add(np.array(points), tris, normal)

    # top (whole) and bottom (cut by openings that reach the floor)
    def strip(a_from: float, a_to: float, start_cap: bool, end_cap: bool, z: float, normal) -> None:
        right = [(a, -h2) for a in columns(sr[0], er[0]) if a_from - 1e-9 <= a <= a_to + 1e-9]
        left = [(a, h2) for a in columns(sl[0], el[0]) if a_from - 1e-9 <= a <= a_to + 1e-9]
        if not start_cap:
            right = [(a_from, -h2)] + [p for p in right if p[0] > a_from + 1e-9]
            left = [(a_from, h2)] + [p for p in left if p[0] > a_from + 1e-9]
        if not end_cap:
            right = [p for p in right if p[0] < a_to - 1e-9] + [(a_to, -h2)]
            left = [p for p in left if p[0] < a_to - 1e-9] + [(a_to, h2)]
        outline = list(right)
        if end_cap:
            outline += [en]
        outline += list(reversed(left))
        if start_cap:
            outline += [sn]
        clean = []
        for p in outline:
            if not clean or math.dist(clean[-1], p) > 1e-9:
                clean.append(p)
        if math.dist(clean[0], clean[-1]) <= 1e-9:
            clean.pop()
        fm.add(np.array([(x, y, z) for x, y in clean]), triangulate(clean), normal)  # counter-clockwise in x, y

    strip(min(sr[0], sl[0]), max(er[0], el[0]), True, True, float(height), (0.0, 0.0, 1.0))
    floor_cuts = [o for o in ops if o.sill <= 1e-9]
    cursor, cursor_cap = min(sr[0], sl[0]), True
    for o in floor_cuts:
        strip(cursor, o.a0, cursor_cap, False, 0.0, (0.0, 0.0, -1.0))
        cursor, cursor_cap = o.a1, False
    strip(cursor, max(er[0], el[0]), cursor_cap, True, 0.0, (0.0, 0.0, -1.0))

    # end caps: vertical strips along the footprint from the left face's end through the node to the right face's
    def cap(points2d) -> None:
        for p, q in zip(points2d, points2d[1:]):
            if math.dist(p, q) <= 1e-9:
                continue
            normal = (q[1] - p[1], -(q[0] - p[0]), 0.0)
            pts, tris = [], []
            for j in range(len(rows) - 1):
                base = len(pts)
                pts += [(p[0], p[1], rows[j]), (q[0], q[1], rows[j]), (q[0], q[1], rows[j + 1]), (p[0], p[1], rows[j + 1])]
                tris += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
            fm.add(np.array(pts), tris, normal)

    cap([sl, sn, sr])  # counter-clockwise around the footprint: left face end -> node -> right face end
    cap([er, en, el])

    # reveals: jambs, heads, sills
    for o in ops:
        z_rows = [z for z in rows if o.sill - 1e-9 <= z <= o.top + 1e-9]
        for a, normal in ((o.a0, (1.0, 0.0, 0.0)), (o.a1, (-1.0, 0.0, 0.0))):
            pts, tris = [], []
            for j in range(len(z_rows) - 1):
                base = len(pts)
                pts += [(a, -h2, z_rows[j]), (a, h2, z_rows[j]), (a, h2, z_rows[j + 1]), (a, -h2, z_rows[j + 1])]
                tris += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
            fm.add(np.array(pts), tris, normal)
        fm.add(np.array([(o.a0, -h2, o.top), (o.a1, -h2, o.top), (o.a1, h2, o.top), (o.a0, h2, o.top)]),
               [(0, 1, 2), (0, 2, 3)], (0.0, 0.0, -1.0))
        if o.sill > 1e-9:
            fm.add(np.array([(o.a0, -h2, o.sill), (o.a1, -h2, o.sill), (o.a1, h2, o.sill), (o.a0, h2, o.sill)]),
                   [(0, 1, 2), (0, 2, 3)], (0.0, 0.0, 1.0))
    return _to_world(seg, fm.mesh())


def _to_world(seg: WallSegment, mesh: Mesh) -> Mesh:
    d = seg.direction
    return transform(mesh, rotation_z(math.degrees(math.atan2(d[1], d[0]))), (seg.p0[0], seg.p0[1], 0.0))


def _local_box(a0, a1, c0, c1, z0, z1) -> Mesh:
    return box_between(min(a0, a1), max(a0, a1), min(c0, c1), max(c0, c1), z0, z1)


def door_mesh(seg: WallSegment, op: Opening, thickness: float) -> Mesh:
    """The open leaf (90 degrees into the swing room, against the hinge jamb) with a handle on each side."""
    side = op.swing_side
    face = side * thickness / 2.0
    leaf_w = op.width - 0.01
    toward = 1.0 if op.hinge_along == op.a0 else -1.0
    b0 = op.hinge_along + toward * 0.005
    b1 = b0 + toward * DOOR_LEAF_THICKNESS
    z0, z1 = 0.01, op.top - 0.005
    leaf = _local_box(b0, b1, face, face + side * leaf_w, z0, z1)
    grip = face + side * (leaf_w - 0.08)
    zc = min(1.0, z0 + (z1 - z0) * 0.5)
    handles = [_local_box(b1, b1 + toward * 0.05, grip - 0.06, grip + 0.06, zc - 0.02, zc + 0.02),
               _local_box(b0, b0 - toward * 0.05, grip - 0.06, grip + 0.06, zc - 0.02, zc + 0.02)]
    return _to_world(seg, merge([leaf] + handles))


def window_mesh(seg: WallSegment, op: Opening) -> Mesh:
    """Frame bars in the middle of the wall's thickness; the glass pane through them (unless glass = false)."""
    a0, a1, z0, z1 = op.a0, op.a1, op.sill, op.top
    f = min(0.05, op.width / 8, op.height / 8)
    c0, c1 = -FRAME_DEPTH / 2, FRAME_DEPTH / 2
    bars = [
        _local_box(a0, a1, c0, c1, z0, z0 + f),
        _local_box(a0, a1, c0, c1, z1 - f, z1),
        _local_box(a0, a0 + f, c0, c1, z0 + f, z1 - f),
        _local_box(a1 - f, a1, c0, c1, z0 + f, z1 - f),
    ]
    if op.width > 1.0:
        m = (a0 + a1) / 2.0
        bars.append(_local_box(m - f / 2, m + f / 2, c0 + 0.01, c1 - 0.01, z0 + f, z1 - f))
    if op.glass:  # the pane's edges run inside the bars, so none of its faces lies against theirs
        g = GLASS_THICKNESS / 2
        bars.append(_local_box(a0 + f / 2, a1 - f / 2, -g, g, z0 + f / 2, z1 - f / 2))
    return _to_world(seg, merge(bars))


# --------------------------------------------------------------------------------------------
# All parts
# --------------------------------------------------------------------------------------------

_ROOM_WALL_ORDER = ("south", "east", "north", "west", "north_inner", "east_inner")


def shell_parts(geometry: PlanGeometry, z_offset: float = 0.0, name_prefix: str = "", *,
                wall_height: float | None = None, ceiling_top: float | None = None) -> list[ShellPart]:
    """Meshes of the plan's shell in a stable order: floors and ceilings (rooms in template order),
    walls (by first appearance over the rooms' edges; the room generator's south, east, north,
    west, then the L's inner walls), doors, windows (template order).

    ``z_offset`` lifts the whole shell (a storey of a building), ``name_prefix`` goes in front of
    every name (``storey1/``). ``wall_height`` (default the room's height) runs the walls higher
    (a building's walls reach the next storey's floor slab); ``ceiling_top`` (default the room's
    height plus ``SLAB``) thickens the ceilings (the slab between two storeys)."""
    parts = _shell_parts(geometry, wall_height, ceiling_top)
    if z_offset == 0.0 and not name_prefix:
        return parts
    return [ShellPart(name_prefix + p.name, p.kind, p.semantic_class, transform(p.mesh, None, (0.0, 0.0, z_offset)), p.rooms)
            for p in parts]


def _shell_parts(geometry: PlanGeometry, wall_height: float | None = None, ceiling_top: float | None = None) -> list[ShellPart]:
    plan = geometry.input
    naming = plan.naming
    t, h = plan.thickness, plan.height
    top = h + SLAB if ceiling_top is None else ceiling_top
    rooms = sorted(geometry.rooms.values(), key=lambda r: r.index)
    parts = [ShellPart(naming.floor(r.name), "floor", "floor", prism(r.outline, -SLAB, 0.0), (r.name,)) for r in rooms]
    if plan.ceiling:
        parts += [ShellPart(naming.ceiling(r.name), "ceiling", "ceiling", prism(r.outline, h, top), (r.name,))
                  for r in rooms]
    h = h if wall_height is None else wall_height
    names = geometry.wall_names()
    if plan.generator == "room":
        names.sort(key=lambda n: _ROOM_WALL_ORDER.index(n.removeprefix("room.wall_")))
    for name in names:
        meshes, wall_rooms = [], []
        for k, seg in enumerate(geometry.segments):
            if seg.name != name:
                continue
            ops = [o for o in geometry.openings if o.segment == k]
            meshes.append(wall_mesh(seg, ops, h, t))
            wall_rooms += [r for r in (seg.owner, seg.other) if r is not None and r not in wall_rooms]
        parts.append(ShellPart(name, "wall", "wall", merge(meshes), tuple(wall_rooms)))
    for op in sorted((o for o in geometry.openings if o.kind == "door"), key=lambda o: o.index):
        parts.append(ShellPart(op.name, "door", "door", door_mesh(geometry.segments[op.segment], op, t),
                               tuple(r for r in op.rooms)))
    for op in sorted((o for o in geometry.openings if o.kind == "window"), key=lambda o: o.index):
        parts.append(ShellPart(op.name, "window", "window", window_mesh(geometry.segments[op.segment], op), (op.rooms[0],)))
    return parts


assert set(L_EDGE_NAMES) == set(_ROOM_WALL_ORDER)
