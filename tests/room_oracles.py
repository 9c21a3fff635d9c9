"""Independent oracles for the room and floor-plan tests: the rooms' polygons read straight from
the template (not from the code under test), point-in-polygon, distances to polygon edges and to
triangle meshes, and the pieces of furniture of a built scene."""

from __future__ import annotations

import math

import numpy as np


def plan_rooms(template) -> tuple[list[tuple[str, list[tuple[float, float]]]], float, float]:
    """([(room name, wall centre-line polygon)], wall thickness, room height) from the template.

    ``[generator.room]``: the interior spans [0, width] x [0, depth] (the L loses its north-east
    corner), walls outward, so the centre lines run half a thickness outside it."""
    gen = template.generator
    if gen.kind == "room":
        room = gen.room
        w, d, t = room.width, room.depth, room.wall_thickness
        h2 = t / 2
        if room.footprint == "l_shape":
            cx, cy = room.l_cut
            poly = [(-h2, -h2), (w + h2, -h2), (w + h2, d - cy + h2), (w - cx + h2, d - cy + h2), (w - cx + h2, d + h2), (-h2, d + h2)]
        else:
            poly = [(-h2, -h2), (w + h2, -h2), (w + h2, d + h2), (-h2, d + h2)]
        return [("room", poly)], t, room.height
    plan = gen.floor_plan
    rooms = []
    for r in plan.rooms:
        if r.polygon is not None:
            poly = [(float(x), float(y)) for x, y in r.polygon]
        else:
            x, y, w, d = r.rect
            poly = [(x, y), (x + w, y), (x + w, y + d), (x, y + d)]
        rooms.append((r.name, poly))
    return rooms, plan.wall_thickness, plan.height


def inside(poly, x: float, y: float) -> bool:
    result = False
    n = len(poly)
    for i in range(n):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            result = not result
    return result


def edge_distance(poly, x: float, y: float) -> float:
    best = math.inf
    n = len(poly)
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, math.hypot(x - ax - t * dx, y - ay - t * dy))
    return best


def room_at(template, x: float, y: float, margin: float = 0.0) -> str | None:
    """The room whose floor inside the walls holds (x, y) at least ``margin`` from its walls' faces."""
    rooms, t, _ = plan_rooms(template)
    for name, poly in rooms:
        if inside(poly, x, y) and edge_distance(poly, x, y) >= t / 2 + margin - 1e-9:
            return name
    return None


def point_triangles_distance(p: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> float:
    """The distance from a point to a triangle mesh (closest point on each triangle, Ericson's regions)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 / (va + vb + vc)
        v = vb * denom
        w = vc * denom
        closest = a + ab * v[:, None] + ac * w[:, None]  # inside the face
        # edges
        t_ab = np.clip(d1 / (d1 - d3), 0, 1)
        t_ac = np.clip(d2 / (d2 - d6), 0, 1)
        t_bc = np.clip((d4 - d3) / ((d4 - d3) + (d5 - d6)), 0, 1)
    on_ab = a + ab * np.nan_to_num(t_ab)[:, None]
    on_ac = a + ac * np.nan_to_num(t_ac)[:, None]
    on_bc = b + (c - b) * np.nan_to_num(t_bc)[:, None]
    face = (va > 0) & (vb > 0) & (vc > 0)
    candidates = np.stack([on_ab, on_ac, on_bc, a, b, c])
    dist = np.linalg.norm(candidates - p, axis=2).min(axis=0)
    dist_face = np.linalg.norm(np.nan_to_num(closest) - p, axis=1)
    return float(np.where(face, np.minimum(dist, dist_face), dist).min())


def signed_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Signed volume enclosed by triangles (divergence theorem; positive when they face outward)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def furniture(scene) -> list:
    """The generated pieces of furniture (objects with a placement record)."""
    return [o for o in scene.objects if o.source.placement is not None]


SHELL_KINDS = ("floor", "ceiling", "wall", "door", "window")
