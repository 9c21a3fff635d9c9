"""Triangle-mesh primitives with UV islands, in numpy: boxes, cylinders and planes; merging, rigid
transforms and packing each object's islands into [0, 1]^2.

A :class:`Mesh` keeps, per triangle, its island id and the corner coordinates inside that island
in metres (the island's own plane, unrolled for a cylinder's side). :func:`pack_uvs` turns them
into the final UVs of one object: every island scaled by the same factor (uniform texel density
within the object), rotated to lie landscape, shelf-packed with a gap between islands.

Conventions: triangles are counter-clockwise seen from outside (outward normals), and each island's
UVs are counter-clockwise too (the island is seen from the outside, not mirrored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UV_GAP = 1.0 / 96.0  # between islands in the packed UVs (the keyframe texturing dilates islands by <= 1/128)


@dataclass(frozen=True)
class Mesh:
    """Triangles with per-triangle island ids and island-local corner coordinates (metres)."""

    vertices: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int32
    island_uvs: np.ndarray  # (T, 3, 2) float64, metres within the island's plane
    island_ids: np.ndarray  # (T,) int64, 0 .. island_count - 1

    @property
    def island_count(self) -> int:
        return int(self.island_ids.max()) + 1 if len(self.island_ids) else 0

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------


def rotation_z(degrees: float) -> np.ndarray:
    """3x3 rotation about +Z (counter-clockwise seen from above)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def euler_xyz(degrees: tuple[float, float, float] | list[float]) -> np.ndarray:
    """Blender's XYZ Euler (degrees) as a 3x3 matrix: X applied first, then Y, then Z (R = Rz Ry Rx)."""
    x, y, z = (math.radians(float(v)) for v in degrees)
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------

_AXES = np.eye(3)


def box(size, center=(0.0, 0.0, 0.0), rotation: np.ndarray | None = None) -> Mesh:
    """A closed box of ``size`` (x, y, z) centred on ``center``; six faces, six islands."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    vertices, triangles, island_uvs = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3  # e_u x e_v = +e_axis
            if sign < 0:
                u_axis, v_axis = v_axis, u_axis  # e_u x e_v = -e_axis
            base = len(vertices)
            corners_uv = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))  # CCW seen from outside
            for su, sv in corners_uv:
                p = sign * half[axis] * _AXES[axis] + su * half[u_axis] * _AXES[u_axis] + sv * half[v_axis] * _AXES[v_axis]
                vertices.append(p)
            uv = [((su + 1.0) * half[u_axis], (sv + 1.0) * half[v_axis]) for su, sv in corners_uv]
            triangles += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
            island_uvs += [(uv[0], uv[1], uv[2]), (uv[0], uv[2], uv[3])]
    mesh = Mesh(
        vertices=np.array(vertices, dtype=np.float64),
        triangles=np.array(triangles, dtype=np.int32),
        island_uvs=np.array(island_uvs, dtype=np.float64),
        island_ids=np.repeat(np.arange(6, dtype=np.int64), 2),
    )
    return transform(mesh, rotation, center)


def box_between(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> Mesh:
    """An axis-aligned box from its extents."""
    return box((x1 - x0, y1 - y0, z1 - z0), ((x0 + x1) / 2.0, (y0 + y1) / 2.0, (z0 + z1) / 2.0))


def cylinder(radius: float, height: float, segments: int = 24, center=(0.0, 0.0, 0.0),
             rotation: np.ndarray | None = None) -> Mesh:
    """A closed cylinder along local +Z, centred on ``center``. Side: one unwrapped strip island
    (the flat facets unrolled side by side: width n * chord, seam at angle 0); each cap: its own island."""
    n = int(segments)
    angles = np.linspace(0.0, 2.0 * math.pi, n + 1)
    angles[-1] = 2.0 * math.pi
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    ring[-1] = ring[0]  # exact seam
    h2 = height / 2.0
    bottom = np.column_stack([ring, np.full(n + 1, -h2)])
    top = np.column_stack([ring, np.full(n + 1, h2)])
    vertices = [bottom, top]
    k = np.arange(n)
    b0, b1, t0, t1 = k, k + 1, n + 1 + k, n + 2 + k
    side_tris = np.concatenate([np.stack([b0, b1, t1], 1), np.stack([b0, t1, t0], 1)])
    arc = np.arange(n + 1) * (2.0 * radius * math.sin(math.pi / n))  # unrolled facets: chord widths
    u0, u1 = arc[:-1], arc[1:]
    zeros, ones = np.zeros(n), np.full(n, height)
    side_uv = np.concatenate([
        np.stack([np.stack([u0, zeros], 1), np.stack([u1, zeros], 1), np.stack([u1, ones], 1)], 1),
        np.stack([np.stack([u0, zeros], 1), np.stack([u1, ones], 1), np.stack([u0, ones], 1)], 1),
    ])
    # caps: a centre vertex and the ring (without the seam duplicate)
    base = 2 * (n + 1)
    cap_ring = ring[:-1]
    vertices.append(np.array([[0.0, 0.0, h2]]))
    vertices.append(np.column_stack([cap_ring, np.full(n, h2)]))
    vertices.append(np.array([[0.0, 0.0, -h2]]))
    vertices.append(np.column_stack([cap_ring, np.full(n, -h2)]))
    top_c, top_r = base, base + 1
    bot_c, bot_r = base + 1 + n, base + 2 + n
    nxt = (k + 1) % n
    top_tris = np.stack([np.full(n, top_c), top_r + k, top_r + nxt], 1)
    bot_tris = np.stack([np.full(n, bot_c), bot_r + nxt, bot_r + k], 1)
    top_uv_pts = cap_ring + radius  # (x, y): e_u = x, e_v = y, x cross y = +z
    bot_uv_pts = cap_ring[:, ::-1] + radius  # (y, x): y cross x = -z
    centre_uv = np.array([radius, radius])
    top_uv = np.stack([np.broadcast_to(centre_uv, (n, 2)), top_uv_pts[k], top_uv_pts[nxt]], 1)
    bot_uv = np.stack([np.broadcast_to(centre_uv, (n, 2)), bot_uv_pts[nxt], bot_uv_pts[k]], 1)
    mesh = Mesh(
        vertices=np.concatenate(vertices).astype(np.float64),
        triangles=np.concatenate([side_tris, top_tris, bot_tris]).astype(np.int32),
        island_uvs=np.concatenate([side_uv, top_uv, bot_uv]).astype(np.float64),
        island_ids=np.concatenate([np.zeros(2 * n), np.ones(n), np.full(n, 2)]).astype(np.int64),
    )
    return transform(mesh, rotation, center)


def cylinder_between(cx: float, cy: float, z0: float, z1: float, radius: float, segments: int = 16) -> Mesh:
    """An upright cylinder standing on z0 up to z1 at (cx, cy)."""
    return cylinder(radius, z1 - z0, segments, (cx, cy, (z0 + z1) / 2.0))


def plane(size, center=(0.0, 0.0, 0.0), rotation: np.ndarray | None = None) -> Mesh:
    """A one-sided rectangle in local XY (normal +Z) of ``size`` (x, y), centred on ``center``."""
    hx, hy = size[0] / 2.0, size[1] / 2.0
    vertices = np.array([[-hx, -hy, 0.0], [hx, -hy, 0.0], [hx, hy, 0.0], [-hx, hy, 0.0]])
    uv = vertices[:, :2] + [hx, hy]
    mesh = Mesh(
        vertices=vertices,
        triangles=np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32),
        island_uvs=np.stack([uv[[0, 1, 2]], uv[[0, 2, 3]]]),
        island_ids=np.zeros(2, dtype=np.int64),
    )
    return transform(mesh, rotation, center)


# --------------------------------------------------------------------------------------------
# Combining and measuring
# --------------------------------------------------------------------------------------------


def transform(mesh: Mesh, rotation: np.ndarray | None = None, translation=(0.0, 0.0, 0.0)) -> Mesh:
    """Rigidly move a mesh (island coordinates are unchanged: they are intrinsic)."""
    vertices = mesh.vertices if rotation is None else mesh.vertices @ np.asarray(rotation, dtype=np.float64).T
    return Mesh(vertices + np.asarray(translation, dtype=np.float64), mesh.triangles, mesh.island_uvs, mesh.island_ids)


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh from several; islands stay separate."""
    vertices, triangles, island_uvs, island_ids = [], [], [], []
    v_offset = i_offset = 0
    for m in meshes:
        vertices.append(m.vertices)
        triangles.append(m.triangles + v_offset)
        island_uvs.append(m.island_uvs)
        island_ids.append(m.island_ids + i_offset)
        v_offset += len(m.vertices)
        i_offset += m.island_count
    return Mesh(
        vertices=np.concatenate(vertices).astype(np.float64),
        triangles=np.concatenate(triangles).astype(np.int32),
        island_uvs=np.concatenate(island_uvs).astype(np.float64),
        island_ids=np.concatenate(island_ids).astype(np.int64),
    )


# --------------------------------------------------------------------------------------------
# UV packing
# --------------------------------------------------------------------------------------------


def _shelf_layout(widths: np.ndarray, heights: np.ndarray, order: np.ndarray, scale: float, gap: float):
    """Place islands (sorted by ``order``) in rows inside [gap/2, 1-gap/2]^2; None when they do not fit.

    Row by row, left to right: an island starts a new row when it would cross the right margin.
    Each row is found with one cumulative sum (the same additions, in the same order, as a loop
    over the islands), so many islands (an imported mesh packed one island per polygon) cost a
    pass per row, not per island."""
    margin = gap / 2.0
    limit = 1.0 - margin
    w_all = widths[order] * scale
    h_all = heights[order] * scale
    offsets = np.zeros((len(widths), 2))
    if len(order) == 0:
        return offsets
    if np.any(margin + w_all > limit):
        return None
    n = len(order)
    i, y, row_h = 0, margin, 0.0
    window = 64
    while i < n:
        while True:
            stop = min(n, i + window)
            x = np.add.accumulate(np.concatenate([[margin], w_all[i:stop] + gap]))  # x before each island
            over = np.flatnonzero(x[:-1] + w_all[i:stop] > limit)
            if len(over) or stop == n:
                break
            window *= 2
        count = int(over[0]) if len(over) else stop - i
        if i > 0:
            y += row_h + gap
        offsets[order[i:i + count], 0] = x[:count]
        offsets[order[i:i + count], 1] = y
        row_h = float(h_all[i:i + count].max())
        window = max(64, 2 * count)
        i += count
    if y + row_h > limit:
        return None
    return offsets


_SMALL_LAYOUT = 64  # islands up to which _shelf_layout loops in Python
_LAYOUT_CACHE: dict[tuple, tuple[float, np.ndarray]] = {}  # (extents, gap) -> (scale, offsets)
_LAYOUT_CACHE_MAX = 4096


def _small_shelf_layout(widths: np.ndarray, heights: np.ndarray, order: np.ndarray):
    """(fits, layout): :func:`_shelf_layout` for a few islands as a loop in Python floats (the same
    products and additions in the same order, so the same bits, without numpy's cost per call);
    ``fits(scale, gap)`` only says whether they fit."""
    ws, hs, where = widths[order].tolist(), heights[order].tolist(), order.tolist()
    count = len(ws)

    def fits(scale: float, gap: float) -> bool:
        margin = gap / 2.0
        limit = 1.0 - margin
        x, y, row_h = margin, margin, 0.0
        for k in range(count):
            w = ws[k] * scale
            if margin + w > limit:
                return False
            if x + w > limit:
                y += row_h + gap
                x, row_h = margin, 0.0
            x += w + gap
            h = hs[k] * scale
            if h > row_h:
                row_h = h
        return not (y + row_h > limit)

    def layout(_w, _h, _order, scale: float, gap: float):
        margin = gap / 2.0
        limit = 1.0 - margin
        scaled = [w * scale for w in ws]
        if any(margin + w > limit for w in scaled):
            return None
        x, y, row_h = margin, margin, 0.0
        placed = [None] * count
        for k in range(count):
            w = scaled[k]
            if x + w > limit:
                y += row_h + gap
                x, row_h = margin, 0.0
            placed[k] = (x, y)
            x += w + gap
            row_h = max(row_h, hs[k] * scale)
        if y + row_h > limit:
            return None
        offsets = np.zeros((count, 2))
        offsets[where] = placed
        return offsets

    return fits, layout


def packed_layout(widths: np.ndarray, heights: np.ndarray, gap: float) -> tuple[float, np.ndarray]:
    """(common scale, island offsets) of the shelf packing; remembered by the islands' extents, so
    the copies of one mesh (an imported file's linked duplicates) are packed once."""
    key = (widths.tobytes(), heights.tobytes(), float(gap))
    hit = _LAYOUT_CACHE.get(key)
    if hit is not None:
        return hit[0], hit[1].copy()
    n = len(widths)
    order = np.lexsort((np.arange(n), -widths, -heights))  # tallest rows first, stable
    layout = _shelf_layout
    if n <= _SMALL_LAYOUT:
        fits, layout = _small_shelf_layout(widths, heights, order)
        # the same bisection on the fit alone; best is always the layout at ``low``
        low, high = 0.0, (1.0 - gap) / float(max(widths.max(), heights.max()))
        if fits(high, gap):
            low = high
        else:
            if not fits(0.0, gap):
                raise ValueError(f"{n} UV islands do not fit in [0, 1]^2 with gap {gap}")
            for _ in range(40):
                mid = 0.5 * (low + high)
                if fits(mid, gap):
                    low = mid
                else:
                    high = mid
        best = layout(widths, heights, order, low, gap)
        _remember(key, low, best)
        return low, best

    # the largest common scale that fits (bisection on a monotone-enough shelf packing)
    low, high = 0.0, (1.0 - gap) / float(max(widths.max(), heights.max()))
    best = layout(widths, heights, order, high, gap)
    if best is not None:
        low = high
    else:
        best = layout(widths, heights, order, 0.0, gap)
        if best is None:
            raise ValueError(f"{n} UV islands do not fit in [0, 1]^2 with gap {gap}")
        for _ in range(40):
            mid = 0.5 * (low + high)
            found = layout(widths, heights, order, mid, gap)
            if found is None:
                high = mid
            else:
                low, best = mid, found
    _remember(key, low, best)
    return low, best


def _remember(key: tuple, scale: float, offsets: np.ndarray) -> None:
    if len(_LAYOUT_CACHE) >= _LAYOUT_CACHE_MAX:
        _LAYOUT_CACHE.clear()
    _LAYOUT_CACHE[key] = (scale, offsets.copy())


def pack_uvs(mesh: Mesh, gap: float = UV_GAP) -> np.ndarray:
    """Final UVs (T, 3, 2) float32 of one object: islands at one common scale (uniform texel
    density), rotated landscape, shelf-packed inside [0, 1]^2 with ``gap`` between islands."""
    n = mesh.island_count
    if n == 0:
        return np.zeros((0, 3, 2), dtype=np.float32)
    ids = mesh.island_ids
    corners = mesh.island_uvs.reshape(-1, 2)
    corner_ids = np.repeat(ids, 3)
    lo = np.full((n, 2), np.inf)
    hi = np.full((n, 2), -np.inf)
    np.minimum.at(lo, corner_ids, corners)
    np.maximum.at(hi, corner_ids, corners)
    extent = np.maximum(hi - lo, 1e-9)
    rotate = extent[:, 1] > extent[:, 0] + 1e-12
    widths = np.where(rotate, extent[:, 1], extent[:, 0])
    heights = np.where(rotate, extent[:, 0], extent[:, 1])
    scale, best = packed_layout(widths, heights, gap)

    local = mesh.island_uvs - lo[ids][:, None, :]
    rot = rotate[ids][:, None]
    # rotation by +90 degrees keeps the winding: (u, v) -> (h - v, u)
    rotated = np.stack([extent[ids, 1][:, None] - local[..., 1], local[..., 0]], axis=-1)
    local = np.where(rot[..., None], rotated, local)
    uvs = best[ids][:, None, :] + scale * local
    return np.clip(uvs, 0.0, 1.0).astype(np.float32)
