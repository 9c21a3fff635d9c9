"""Plane geometry on the floor (x, y in metres), pure Python and numpy: polygon area and orientation,
point-in-polygon, segment crossings, mitred offsets, ear-clipping triangulation, convex hulls, and
the separating-axis test between convex footprints that the furniture placer runs thousands of
times (plain floats there: small numpy arrays cost more than they save).

Polygons are sequences of (x, y) vertices, counter-clockwise unless a function says otherwise,
without a repeated closing vertex.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Point = tuple[float, float]
EPS = 1e-9


def signed_area(polygon: Sequence[Point]) -> float:
    """Positive for counter-clockwise vertex order (shoelace formula)."""
    n = len(polygon)
    return 0.5 * sum(polygon[i][0] * polygon[(i + 1) % n][1] - polygon[(i + 1) % n][0] * polygon[i][1] for i in range(n))


def centroid(polygon: Sequence[Point]) -> Point:
    """Area centroid of a simple polygon."""
    a = signed_area(polygon)
    n = len(polygon)
    if abs(a) < EPS:
        return (sum(p[0] for p in polygon) / n, sum(p[1] for p in polygon) / n)
    cx = cy = 0.0
    for i in range(n):
        x0, y0 = polygon[i]
        x1, y1 = polygon[(i + 1) % n]
        cross = x0 * y1 - x1 * y0
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    return (cx / (6.0 * a), cy / (6.0 * a))


def cross2(ax: float, ay: float, bx: float, by: float) -> float:
    return ax * by - ay * bx


def orientation(a: Point, b: Point, c: Point) -> float:
    """> 0 when a, b, c turn left (counter-clockwise)."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def segments_cross(a: Point, b: Point, c: Point, d: Point, eps: float = 1e-9) -> bool:
    """The segments a-b and c-d cross at a point inside both (touching or collinear overlap is not crossing)."""
    d1, d2 = orientation(c, d, a), orientation(c, d, b)
    d3, d4 = orientation(a, b, c), orientation(a, b, d)
    scale = max(1.0, math.dist(a, b) * math.dist(c, d))
    e = eps * scale
    return ((d1 > e and d2 < -e) or (d1 < -e and d2 > e)) and ((d3 > e and d4 < -e) or (d3 < -e and d4 > e))


def segments_intersect(a: Point, b: Point, c: Point, d: Point, eps: float = 1e-9) -> bool:
    """The closed segments a-b and c-d share a point (touching counts)."""
    d1, d2 = orientation(c, d, a), orientation(c, d, b)
    d3, d4 = orientation(a, b, c), orientation(a, b, d)
    if ((d1 > eps and d2 < -eps) or (d1 < -eps and d2 > eps)) and ((d3 > eps and d4 < -eps) or (d3 < -eps and d4 > eps)):
        return True

    def on(p, q, r, o):  # r on segment p-q, given orientation o
        return abs(o) <= eps and min(p[0], q[0]) - eps <= r[0] <= max(p[0], q[0]) + eps and \
            min(p[1], q[1]) - eps <= r[1] <= max(p[1], q[1]) + eps

    return on(c, d, a, d1) or on(c, d, b, d2) or on(a, b, c, d3) or on(a, b, d, d4)


def segment_intersection_point(a: Point, b: Point, c: Point, d: Point) -> Point | None:
    """Where the lines a-b and c-d meet, or None when parallel."""
    rx, ry = b[0] - a[0], b[1] - a[1]
    sx, sy = d[0] - c[0], d[1] - c[1]
    den = cross2(rx, ry, sx, sy)
    if abs(den) < 1e-15:
        return None
    t = cross2(c[0] - a[0], c[1] - a[1], sx, sy) / den
    return (a[0] + t * rx, a[1] + t * ry)


def self_crossing(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """A pair of non-adjacent edges (i, j) that touch or cross, or None when the polygon is simple."""
    n = len(polygon)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i or (j + 1) % n == i or (i + 1) % n == j:
                continue
            if segments_intersect(a, b, polygon[j], polygon[(j + 1) % n]):
                return i, j
    return None


def point_in_polygon(x: float, y: float, polygon: Sequence[Point]) -> bool:
    """Crossing-number test (a point on the boundary may go either way)."""
    inside = False
    n = len(polygon)
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def points_in_polygon(xs: np.ndarray, ys: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """Vectorised crossing-number test over arrays of points."""
    inside = np.zeros(np.shape(xs), dtype=bool)
    n = len(polygon)
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if yi != yj:
            crosses = ((yi > ys) != (yj > ys)) & (xs < (xj - xi) * (ys - yi) / (yj - yi) + xi)
            inside ^= crosses
        j = i
    return inside


def distances_to_boundary(xs: np.ndarray, ys: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """Vectorised: the distance from each point to the nearest edge of a polygon (inside or out)."""
    best = np.full(np.shape(xs), np.inf)
    n = len(polygon)
    for i in range(n):
        (ax, ay), (bx, by) = polygon[i], polygon[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        if length2 < 1e-24:
            continue
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0.0, 1.0)
        best = np.minimum(best, np.hypot(xs - ax - t * dx, ys - ay - t * dy))
    return best


def distance_to_segment(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 < 1e-18 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def distance_to_boundary(p: Point, polygon: Sequence[Point]) -> float:
    n = len(polygon)
    return min(distance_to_segment(p, polygon[i], polygon[(i + 1) % n]) for i in range(n))


def unit(dx: float, dy: float) -> Point:
    length = math.hypot(dx, dy)
    return (dx / length, dy / length)


def left_normal(direction: Point) -> Point:
    """The direction turned 90 degrees counter-clockwise (into a counter-clockwise polygon from its edge)."""
    return (-direction[1], direction[0])


def offset_polygon(polygon: Sequence[Point], distances: Sequence[float]) -> list[Point]:
    """Move each edge i of a counter-clockwise polygon by ``distances[i]`` to its left (inward;
    negative: outward) and join neighbouring edges with mitres. Collinear neighbours keep the
    shared vertex moved along their common normal."""
    n = len(polygon)
    lines = []
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        d = unit(b[0] - a[0], b[1] - a[1])
        nx, ny = left_normal(d)
        s = distances[i]
        lines.append(((a[0] + s * nx, a[1] + s * ny), (b[0] + s * nx, b[1] + s * ny), d, (nx, ny), s))
    out = []
    for i in range(n):
        prev, cur = lines[i - 1], lines[i]
        p = segment_intersection_point(prev[0], prev[1], cur[0], cur[1])
        if p is None or abs(cross2(*prev[2], *cur[2])) < 1e-9:  # collinear: move along the normal
            v = polygon[i]
            p = (v[0] + cur[4] * cur[3][0], v[1] + cur[4] * cur[3][1])
        out.append(p)
    return out


def triangulate(polygon: Sequence[Point]) -> list[tuple[int, int, int]]:
    """Ear-clipping triangulation of a simple counter-clockwise polygon: index triples, each
    counter-clockwise. Collinear vertices are kept (no zero-area triangle is emitted while another
    ear exists), so edges shared with neighbouring faces stay whole."""
    n = len(polygon)
    if n < 3:
        return []
    idx = list(range(n))
    out: list[tuple[int, int, int]] = []
    scale = max(1e-12, max(abs(c) for p in polygon for c in p))
    eps = 1e-12 * scale * scale
    guard = 0
    while len(idx) > 3 and guard < 10 * n * n:
        guard += 1
        m = len(idx)
        best = None
        for k in range(m):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % m]
            a, b, c = polygon[i0], polygon[i1], polygon[i2]
            turn = orientation(a, b, c)
            if turn <= eps:
                continue  # reflex or collinear: not an ear
            ok = True
            for j in idx:
                if j in (i0, i1, i2):
                    continue
                p = polygon[j]
                if orientation(a, b, p) >= -eps and orientation(b, c, p) >= -eps and orientation(c, a, p) >= -eps:
                    # p inside or on the candidate ear: a vertex on its boundary would make a T-junction
                    ok = False
                    break
            if ok:
                # prefer the fattest ear (better-shaped triangles, deterministic)
                quality = turn / (math.dist(a, b) ** 2 + math.dist(b, c) ** 2 + math.dist(c, a) ** 2)
                if best is None or quality > best[0] + 1e-12:
                    best = (quality, k)
        if best is None:
            # only collinear runs left (or numerical trouble): clip the first convex-or-flat vertex
            k = next((k for k in range(m) if orientation(polygon[idx[k - 1]], polygon[idx[k]], polygon[idx[(k + 1) % m]]) > -eps), 0)
        else:
            k = best[1]
        i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
        if orientation(polygon[i0], polygon[i1], polygon[i2]) > eps:
            out.append((i0, i1, i2))
        idx.pop(k)
    if len(idx) == 3 and orientation(polygon[idx[0]], polygon[idx[1]], polygon[idx[2]]) > eps:
        out.append((idx[0], idx[1], idx[2]))
    return out


def convex_hull(points: Sequence[Point]) -> list[Point]:
    """Counter-clockwise convex hull (Andrew's monotone chain), without collinear points."""
    pts = sorted(set((float(x), float(y)) for x, y in points))
    if len(pts) <= 2:
        return pts

    def half(seq):
        out: list[Point] = []
        for p in seq:
            while len(out) >= 2 and orientation(out[-2], out[-1], p) <= 1e-12:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


# --------------------------------------------------------------------------------------------
# Convex footprints with a z range: the placer's volumes
# --------------------------------------------------------------------------------------------


class Footprint:
    """A convex polygon on the floor (counter-clockwise) and a z interval: a piece's, an obstacle's
    or a kept-free zone's volume. Axes and the bounding box are cached for the separating-axis test."""

    __slots__ = ("points", "z0", "z1", "axes", "box")

    def __init__(self, points: Sequence[Point], z0: float = -math.inf, z1: float = math.inf):
        self.points = tuple((float(x), float(y)) for x, y in points)
        self.z0, self.z1 = float(z0), float(z1)
        axes = []
        n = len(self.points)
        for i in range(n):
            (x0, y0), (x1, y1) = self.points[i], self.points[(i + 1) % n]
            dx, dy = x1 - x0, y1 - y0
            length = math.hypot(dx, dy)
            if length > 1e-12:
                ax, ay = -dy / length, dx / length
                if all(abs(ax * by - ay * bx) > 1e-12 for bx, by in axes):  # parallel edges share an axis
                    axes.append((ax, ay))
        self.axes = tuple(axes)
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        self.box = (min(xs), min(ys), max(xs), max(ys))

    @classmethod
    def rectangle(cls, cx: float, cy: float, half_w: float, half_d: float, yaw_deg: float,
                  z0: float = -math.inf, z1: float = math.inf) -> "Footprint":
        """A rectangle centred on (cx, cy), local x (width) turned by ``yaw_deg`` from world x."""
        a = math.radians(yaw_deg)
        c, s = math.cos(a), math.sin(a)
        ux, uy, vx, vy = c * half_w, s * half_w, -s * half_d, c * half_d
        fp = cls.__new__(cls)  # the rectangle's two axes and box directly (the placer makes thousands)
        fp.points = ((cx - ux - vx, cy - uy - vy), (cx + ux - vx, cy + uy - vy),
                     (cx + ux + vx, cy + uy + vy), (cx - ux + vx, cy - uy + vy))
        fp.z0, fp.z1 = float(z0), float(z1)
        fp.axes = ((c, s), (-s, c))
        ex, ey = abs(ux) + abs(vx), abs(uy) + abs(vy)
        fp.box = (cx - ex, cy - ey, cx + ex, cy + ey)
        return fp

    @property
    def centre(self) -> Point:
        n = len(self.points)
        return (sum(p[0] for p in self.points) / n, sum(p[1] for p in self.points) / n)

    def __repr__(self) -> str:
        return f"Footprint({len(self.points)} points, box={tuple(round(v, 3) for v in self.box)}, z={self.z0:.3g}..{self.z1:.3g})"


def footprints_overlap(a: Footprint, b: Footprint, margin: float = 0.0) -> bool:
    """True when the two volumes come closer than ``margin`` on the floor (separating axes of both
    polygons; conservative near corners) and their z intervals overlap. Touching at exactly
    ``margin`` counts as apart."""
    if a.z1 <= b.z0 + 1e-9 or b.z1 <= a.z0 + 1e-9:
        return False
    ab, bb = a.box, b.box
    if ab[2] + margin <= bb[0] + 1e-9 or bb[2] + margin <= ab[0] + 1e-9 or \
            ab[3] + margin <= bb[1] + 1e-9 or bb[3] + margin <= ab[1] + 1e-9:
        return False
    for ax, ay in a.axes + b.axes:
        amin = amax = a.points[0][0] * ax + a.points[0][1] * ay
        for x, y in a.points[1:]:
            v = x * ax + y * ay
            amin = v if v < amin else amin
            amax = v if v > amax else amax
        bmin = bmax = b.points[0][0] * ax + b.points[0][1] * ay
        for x, y in b.points[1:]:
            v = x * ax + y * ay
            bmin = v if v < bmin else bmin
            bmax = v if v > bmax else bmax
        if amax + margin <= bmin + 1e-9 or bmax + margin <= amin + 1e-9:
            return False
    return True


def footprint_inside_polygon(fp: Footprint, polygon: Sequence[Point], tol: float = 1e-6) -> bool:
    """Every corner of the convex footprint lies inside the simple polygon and no polygon edge
    crosses it (a non-convex room's corner poking in)."""
    for x, y in fp.points:
        if not point_in_polygon(x, y, polygon) and distance_to_boundary((x, y), polygon) > tol:
            return False
    n = len(polygon)
    bx0, by0, bx1, by1 = fp.box
    for i in range(n):
        px, py = polygon[i]
        # a polygon vertex strictly inside the footprint means the boundary cuts into it
        if bx0 + tol < px < bx1 - tol and by0 + tol < py < by1 - tol:
            if all(orientation(fp.points[k], fp.points[(k + 1) % len(fp.points)], (px, py)) > tol
                   for k in range(len(fp.points))):
                return False
    m = len(fp.points)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        if max(a[0], b[0]) < bx0 or min(a[0], b[0]) > bx1 or max(a[1], b[1]) < by0 or min(a[1], b[1]) > by1:
            continue
        for k in range(m):
            if segments_cross(a, b, fp.points[k], fp.points[(k + 1) % m], eps=1e-7):
                return False
    return True
