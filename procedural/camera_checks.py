"""Where a camera may be: never inside geometry, and inside the rooms of an interior scene. numpy.

Checked on every rendered frame (``frame_start .. frame_end``) by the build's dry run, before
anything is written, from the layout (no meshes are built):

- **inside geometry**: within ``camera.clip_start`` of the inside of a solid (the near plane would
  cut it open): a wall (its footprint over its height, except through a door's opening), a floor
  or ceiling slab, an open door's leaf, a piece of furniture (its footprint up to its top: a
  camera *under* a table is inside it), an explicit box or cylinder, an imported model (closed
  meshes, by ray parity), and for a building its facade, its roof with the attic, and the ground
  (a camera below it). Always an error.
- **outside every room**: for an interior scene (``generator.kind`` ``room``, ``floor_plan``, or
  ``building`` with ``camera.allow_outside = false``) a camera that is neither inside a room
  (over its floor, under its ceiling) nor in a door's opening. An error unless
  ``camera.allow_outside = true`` (the default for buildings): plan views and exteriors set it.

Each problem names the frames (as ranges), where the camera is on the first of them and what it
is in (up to :data:`MAX_LISTED` objects), with the fix. Entry point: :func:`camera_position_problems`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from procedural.floor_plan import door_leaf_footprint, plan_problem
from procedural.planar_geometry import distances_to_boundary, points_in_polygon
from procedural.primitive_meshes import euler_xyz
from procedural.room_shell import SLAB
from scenes.template_schema import BoxPrimitive, CylinderPrimitive

MAX_LISTED = 6  # objects a message names (then "and N more")


def frame_ranges(frames: Sequence[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``."""
    out, start, prev = [], None, None
    for f in [int(f) for f in frames] + [None]:
        if start is not None and (f is None or f != prev + 1):
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if f is not None and start is None:
            start = f
        prev = f
    return ", ".join(out)


def _in_polygon(x, y, polygon, margin: float) -> np.ndarray:
    """Inside the polygon or within ``margin`` of its boundary."""
    inside = points_in_polygon(x, y, polygon)
    if margin > 0:
        inside |= distances_to_boundary(x, y, polygon) < margin
    return inside


def allows_outside(template) -> bool:
    allow = template.camera.allow_outside
    return template.generator.kind == "building" if allow is None else bool(allow)


def is_interior(template) -> bool:
    return template.generator.kind in ("room", "floor_plan", "building")


def _door_corridors(storey, p, clip: float) -> np.ndarray:
    """(N,) bool: the points in a door's opening of this storey (between its jambs, under its head,
    across the wall and its facade), at least ``clip`` from the jambs and the head."""
    g = storey.geometry
    x, y, lz = p[:, 0], p[:, 1], p[:, 2] - storey.z
    out = np.zeros(len(p), dtype=bool)
    reach = g.thickness / 2.0 + 0.1  # the facade skin is thinner than this
    for op in g.openings:
        if op.kind != "door":
            continue
        seg = g.segments[op.segment]
        (dx, dy), (nx, ny) = seg.direction, seg.normal
        along = (x - seg.p0[0]) * dx + (y - seg.p0[1]) * dy
        across = (x - seg.p0[0]) * nx + (y - seg.p0[1]) * ny
        out |= (along >= op.a0 + clip) & (along <= op.a1 - clip) & (np.abs(across) <= reach) & (lz >= op.sill) & (lz <= op.top - clip)
    return out


def _solids(template, layout, p: np.ndarray, clip: float, imported) -> list[tuple[str, np.ndarray]]:
    """(what, (N,) bool inside it) for every solid a camera at the points ``p`` (N, 3) could be in."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    out: list[tuple[str, np.ndarray]] = []
    for storey in layout.storeys:
        g = storey.geometry
        lz = z - storey.z
        doors = _door_corridors(storey, p, clip)
        for seg in g.segments:
            inside = _in_polygon(x, y, seg.footprint(), clip) & (lz > -clip) & (lz < storey.wall_height + clip) & ~doors
            out.append((storey.prefix + seg.name, inside))
        for op in g.openings:
            if op.kind == "door":
                leaf = door_leaf_footprint(g.segments[op.segment], op, op.hinge_along, g.thickness)
                inside = _in_polygon(x, y, leaf.points, clip) & (lz > leaf.z0 - clip) & (lz < leaf.z1 + clip)
                out.append((f"the open leaf of {storey.prefix}{op.name}", inside))
        naming = g.input.naming
        for room in sorted(g.rooms.values(), key=lambda r: r.index):
            over = _in_polygon(x, y, room.outline, 0.0)
            out.append((storey.prefix + naming.floor(room.name), over & (lz > -SLAB - clip) & (lz < clip)))
            if g.input.ceiling:
                out.append((storey.prefix + naming.ceiling(room.name),
                            over & (lz > g.height - clip) & (lz < storey.ceiling_top + clip)))
        for furnishing in storey.furnishings.values():
            for piece in furnishing.placed:
                fp = piece.footprint
                inside = _in_polygon(x, y, fp.points, clip) & (lz > fp.z0 - clip) & (lz < fp.z1 + clip)
                out.append((f"{piece.name} ({piece.kind.replace('_', ' ')}: inside or under it)", inside))
    building = layout.building
    if building is not None:
        inner, _, outer = building.rings
        ring = _in_polygon(x, y, outer, clip) & ~(points_in_polygon(x, y, inner) & (distances_to_boundary(x, y, inner) >= clip))
        ring &= (z > -SLAB - clip) & (z < building.roof.base + clip)
        for storey in layout.storeys:
            ring &= ~_door_corridors(storey, p, clip)
        out.append(("the facade", ring))
        roof = building.roof
        over = _in_polygon(x, y, roof.eaves, clip)
        out.append(("the roof", over & (z > roof.lower(x, y) - clip) & (z < roof.upper(x, y) + clip)))
        half = building.ground_size / 2.0
        cx, cy = building.ground_centre
        under = (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half) & (z < -SLAB + clip)
        out.append(("the ground (below it)", under))
    for i, obj in enumerate(template.objects):
        if not isinstance(obj, (BoxPrimitive, CylinderPrimitive)):
            continue  # a plane has no inside
        local = (p - np.asarray(obj.position, dtype=np.float64)) @ euler_xyz(obj.rotation)  # R^T (p - c)
        if isinstance(obj, BoxPrimitive):
            inside = np.all(np.abs(local) < np.asarray(obj.size) / 2.0 + clip, axis=1)
        else:
            inside = (np.hypot(local[:, 0], local[:, 1]) < obj.radius + clip) & (np.abs(local[:, 2]) < obj.height / 2.0 + clip)
        out.append((f"objects.{i} {obj.name!r}", inside))
    for obj in imported:
        lo, hi = obj.bounds
        near = np.all((p > lo - clip) & (p < hi + clip), axis=1)
        inside = np.zeros(len(p), dtype=bool)
        if near.any():
            inside[near] = inside_closed_mesh(p[near], obj.vertices, obj.triangles)
        out.append((f"{obj.name!r} (imported)", inside))
    return out


def inside_closed_mesh(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N,) bool: points inside a closed triangle mesh, by the parity of crossings along +x and +z
    (both must be odd: an open mesh is rarely taken for a solid)."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]
    a, e1, e2 = v[:, 0], v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    result = np.ones(len(points), dtype=bool)
    for direction in (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])):
        h = np.cross(direction, e2)
        det = np.einsum("ij,ij->i", e1, h)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        counts = np.zeros(len(points), dtype=np.int64)
        for n, q in enumerate(points):
            s = q - a
            u = np.einsum("ij,ij->i", s, h) * inv
            qv = np.cross(s, e1)
            w = (qv @ direction) * inv
            t = np.einsum("ij,ij->i", e2, qv) * inv
            counts[n] = int(np.count_nonzero(ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)))
        result &= counts % 2 == 1
    return result


def _in_rooms(layout, p: np.ndarray, clip: float) -> np.ndarray:
    """(N,) bool: over some room's floor and under its ceiling, or in a door's opening."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ok = np.zeros(len(p), dtype=bool)
    for storey in layout.storeys:
        g = storey.geometry
        lz = z - storey.z
        for room in g.rooms.values():
            ok |= points_in_polygon(x, y, room.interior) & (lz >= 0.0) & (lz <= g.height)
        ok |= _door_corridors(storey, p, 0.0)
    return ok


def camera_position_problems(template, layout, track, imported=()) -> list[dict]:
    """The camera problems of a built track (see the module docstring): every rendered frame."""
    render = template.render
    frames = np.arange(render.frame_start, render.frame_end + 1)
    p = np.stack([track.positions[track.index(int(f))] for f in frames])
    clip = float(track.clip_start)
    kind = template.camera.path.kind
    problems = []
    hits = [(what, mask) for what, mask in _solids(template, layout, p, clip, imported) if mask.any()]
    if hits:
        any_hit = np.any([m for _, m in hits], axis=0)
        first = int(np.argmax(any_hit))
        listed = "; ".join(f"{what} on frames {frame_ranges(frames[mask])}" for what, mask in hits[:MAX_LISTED])
        more = f"; and {len(hits) - MAX_LISTED} more objects" if len(hits) > MAX_LISTED else ""
        problems.append(plan_problem(
            "camera.path", None,
            f"({kind}) the camera is inside geometry on frames {frame_ranges(frames[any_hit])} (frame {int(frames[first])} at "
            f"{_xyz(p[first])}): {listed}{more}; move the camera's path (or the objects) so that it stays at least "
            f"camera.clip_start = {clip:g} m from every surface"))
    if is_interior(template) and not allows_outside(template) and layout.storeys:
        outside = ~_in_rooms(layout, p, clip)
        if outside.any():
            first = int(np.argmax(outside))
            problems.append(plan_problem(
                "camera.path", None,
                f"({kind}) the camera is outside every room on frames {frame_ranges(frames[outside])} (frame "
                f"{int(frames[first])} at {_xyz(p[first])}): an interior scene is seen from inside its rooms; move the "
                "path inside them, or set camera.allow_outside = true for views from outside (exteriors, plan views)"))
    return problems


def _xyz(v) -> str:
    return "(" + ", ".join(f"{float(c):.2f}" for c in v) + ")"


__all__ = ["camera_position_problems", "frame_ranges", "inside_closed_mesh", "allows_outside", "is_interior"]
