"""Meshes read from model files, made into scene objects and furniture pieces. Pure numpy.

``passes/model_import.py`` reads a model through Blender (every mesh as Blender evaluates it, in
world space) into :class:`ModelMeshes`: all objects of one import in joined arrays. This module
decides each object's UVs and builds what the scene builder takes:

- :func:`scene_objects`: :class:`scenes.scene_data.SceneObject` s (instance id 0, in the order
  given) with the file's UVs where they are valid (:func:`valid_file_uvs`) and greybox's packer
  otherwise (one island per polygon, flattened in the polygon's plane, :func:`polygon_islands`);
- :func:`measure_asset`: a furniture piece (:class:`MeasuredAsset`) in the furniture library's
  local frame (footprint centred on the origin, base at z = 0, front towards +y) with its real size.

Valid UVs: every corner inside [0, 1]^2, no triangle of non-zero area flattened to zero area in
UV, and no two triangles overlapping by more than half a texel of the largest keyframe atlas
(:data:`UV_TEXEL`, 1/2048): no atlas texel is covered twice. The test is exact geometry
(separating axes on every pair of triangles that share a cell of a grid), so it costs in
proportion to the triangles, whatever the atlas size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procedural.primitive_meshes import UV_GAP, Mesh, pack_uvs, packed_layout
from scenes.scene_data import ObjectSource, SceneObject

UV_TEXEL = 1.0 / 2048.0  # the largest keyframe atlas (stylize.keyframe_atlas.atlas_size_for's max_size)
UV_OVERLAP_TOLERANCE = UV_TEXEL / 2.0
_UV_BOUNDS_TOLERANCE = 1e-6
_MAX_TRIANGLES_PER_CELL = 64  # denser cells mean stacked islands: not a valid atlas
_PAIR_BLOCK = 200_000


@dataclass
class ModelMeshes:
    """Every object of one import, as joined arrays (object i's rows follow the counts before it).

    ``vertices`` world space (metres, Z up), ``triangles`` indices into the object's own vertices,
    counter-clockwise seen from outside; ``polygons`` the source polygon of each triangle (index
    within the object); ``uvs`` per triangle corner from the file's active UV map, NaN where an
    object has none; ``transforms`` each object's frame (object to world).
    """

    names: list[str]  # stable names: <import name><node path>
    node_paths: list[str]
    class_ids: list[int]
    vertex_counts: np.ndarray  # (M,) int64
    triangle_counts: np.ndarray  # (M,) int64
    vertices: np.ndarray  # (sum V, 3) float64
    triangles: np.ndarray  # (sum T, 3) int32
    polygons: np.ndarray  # (sum T,) int64
    uvs: np.ndarray  # (sum T, 3, 2) float32
    transforms: np.ndarray  # (M, 4, 4) float64

    def __len__(self) -> int:
        return len(self.names)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Start rows of each object in ``vertices`` and in the per-triangle arrays."""
        v = np.concatenate([[0], np.cumsum(self.vertex_counts)[:-1]]).astype(np.int64)
        t = np.concatenate([[0], np.cumsum(self.triangle_counts)[:-1]]).astype(np.int64)
        return v, t

    def corners(self) -> np.ndarray:
        """(sum T, 3, 3) world positions of every triangle corner."""
        v_off, _ = self.offsets()
        owner = np.repeat(np.arange(len(self), dtype=np.int64), self.triangle_counts)
        return self.vertices[self.triangles.astype(np.int64) + v_off[owner][:, None]]


@dataclass(frozen=True)
class MeasuredAsset:
    """A model file measured as one furniture piece: its mesh in the library's local frame, its size
    (width x, depth y, height z of the bounds) and the parametric kind whose rules place it."""

    mesh: Mesh
    size: tuple[float, float, float]
    rule_kind: str
    uvs: np.ndarray | None  # (T, 3, 2) float32 from the file when valid, else None (packed)
    file: str


# --------------------------------------------------------------------------------------------
# UVs
# --------------------------------------------------------------------------------------------


def _cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def valid_file_uvs(meshes: ModelMeshes) -> np.ndarray:
    """(M,) bool: whether each object's own UVs can be used (see the module docstring)."""
    m = len(meshes)
    if m == 0:
        return np.zeros(0, dtype=bool)
    counts = meshes.triangle_counts
    owner = np.repeat(np.arange(m, dtype=np.int64), counts)
    uv = meshes.uvs.astype(np.float64)
    bad = np.zeros(m, dtype=np.int64)

    # 1. present and inside [0, 1]^2
    outside = ~np.all(np.isfinite(uv), axis=(1, 2)) | np.any((uv < -_UV_BOUNDS_TOLERANCE) | (uv > 1 + _UV_BOUNDS_TOLERANCE), axis=(1, 2))
    np.add.at(bad, owner[outside], 1)

    # 2. no surface flattened to nothing
    corners = meshes.corners()
    area3 = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    with np.errstate(invalid="ignore"):
        area2 = np.abs(_cross2(uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]))
    flat = (area3 > 1e-12) & ~(area2 > 1e-14)
    np.add.at(bad, owner[flat & ~outside], 1)
    ok = bad == 0

    # 3. no two triangles overlapping: candidate pairs from a grid per object, separating axes
    live = ok[owner] & (area2 > 1e-14)
    index = np.flatnonzero(live)
    if len(index) == 0:
        return ok
    grid = np.clip(np.ceil(np.sqrt(counts / 2.0)), 1, 256).astype(np.int64)
    g = grid[owner[index]]
    lo = uv[index].min(axis=1) + UV_OVERLAP_TOLERANCE
    hi = uv[index].max(axis=1) - UV_OVERLAP_TOLERANCE
    c0 = np.clip(np.floor(lo * g[:, None]), 0, g[:, None] - 1).astype(np.int64)
    c1 = np.clip(np.floor(hi * g[:, None]), 0, g[:, None] - 1).astype(np.int64)
    c1 = np.maximum(c1, c0)
    nx, ny = c1[:, 0] - c0[:, 0] + 1, c1[:, 1] - c0[:, 1] + 1
    cells = nx * ny
    entry_tri = np.repeat(index, cells)
    first = np.concatenate([[0], np.cumsum(cells)[:-1]])
    k = np.arange(int(cells.sum()), dtype=np.int64) - np.repeat(first, cells)
    rep = np.repeat(np.arange(len(index)), cells)
    cx = c0[rep, 0] + k % nx[rep]
    cy = c0[rep, 1] + k // nx[rep]
    cell_base = np.concatenate([[0], np.cumsum(grid * grid)[:-1]])
    key = cell_base[owner[entry_tri]] + cy * g[rep] + cx
    order = np.lexsort((entry_tri, key))
    key, entry_tri = key[order], entry_tri[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    dense = sizes > _MAX_TRIANGLES_PER_CELL
    if dense.any():
        ok[np.unique(owner[entry_tri[starts[dense]]])] = False
    group = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(len(key)) - np.repeat(starts, sizes)
    room = np.repeat(sizes, sizes) - pos - 1  # later entries in the same cell
    for d in range(1, int(min(sizes.max(), _MAX_TRIANGLES_PER_CELL))):
        take = np.flatnonzero(room >= d)
        take = take[~dense[group[take]]]
        if len(take) == 0:
            break
        a, b = entry_tri[take], entry_tri[take + d]
        for s in range(0, len(a), _PAIR_BLOCK):
            pa, pb = a[s:s + _PAIR_BLOCK], b[s:s + _PAIR_BLOCK]
            overlap = _triangles_overlap(uv[pa], uv[pb], UV_OVERLAP_TOLERANCE)
            if overlap.any():
                ok[np.unique(owner[pa[overlap]])] = False
    return ok


def _triangles_overlap(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    """(P,) bool: triangles a[i] and b[i] (P, 3, 2) overlap deeper than ``tolerance``.

    Bounding boxes apart: no overlap. Two triangles that share an edge (the common case of a valid
    layout) overlap only when their third corners lie on the same side of it. Otherwise: separating
    axes (the six edge normals)."""
    out = np.zeros(len(a), dtype=bool)
    boxes = ~((a.max(axis=1) <= b.min(axis=1) + tolerance) | (b.max(axis=1) <= a.min(axis=1) + tolerance)).any(axis=1)
    idx = np.flatnonzero(boxes)
    if len(idx) == 0:
        return out
    a, b = a[idx], b[idx]
    same = np.all(a[:, :, None, :] == b[:, None, :, :], axis=-1)  # (P, 3, 3): corner i of a == corner j of b
    shared = same.sum(axis=(1, 2))
    edge = shared == 2
    rest = ~edge
    if edge.any():
        e = np.flatnonzero(edge)
        ia = same[e].any(axis=2)  # corners of a on the shared edge
        ib = same[e].any(axis=1)
        p0 = a[e][ia].reshape(-1, 2, 2)  # the shared edge's two points
        pa = a[e][~ia].reshape(-1, 2)  # the third corners
        pb = b[e][~ib].reshape(-1, 2)
        d = p0[:, 1] - p0[:, 0]
        sa = _cross2(d, pa - p0[:, 0])
        sb = _cross2(d, pb - p0[:, 0])
        length = np.linalg.norm(d, axis=1)
        # the same side, and both further from the edge than the tolerance: folded over
        out[idx[e]] = (sa * sb > 0) & (np.minimum(np.abs(sa), np.abs(sb)) > tolerance * length)
    if rest.any():
        r = np.flatnonzero(rest)
        ar, br = a[r], b[r]
        edges = np.concatenate([np.roll(ar, -1, axis=1) - ar, np.roll(br, -1, axis=1) - br], axis=1)  # (P, 6, 2)
        axes = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
        length = np.sqrt(axes[..., 0] ** 2 + axes[..., 1] ** 2)[..., None]
        axes = np.divide(axes, length, out=np.zeros_like(axes), where=length > 0)
        pa = axes[:, :, None, 0] * ar[:, None, :, 0] + axes[:, :, None, 1] * ar[:, None, :, 1]  # (P, 6, 3)
        pb = axes[:, :, None, 0] * br[:, None, :, 0] + axes[:, :, None, 1] * br[:, None, :, 1]
        separated = (pa.max(axis=2) <= pb.min(axis=2) + tolerance) | (pb.max(axis=2) <= pa.min(axis=2) + tolerance)
        out[idx[r]] = ~separated.any(axis=1)
    return out


def polygon_islands(vertices: np.ndarray, triangles: np.ndarray, polygons: np.ndarray) -> Mesh:
    """A :class:`Mesh` whose UV islands are the source polygons, each flattened into its own plane
    (metres, counter-clockwise seen from outside), for :func:`procedural.primitive_meshes.pack_uvs`."""
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    _, island = np.unique(np.asarray(polygons), return_inverse=True)
    corners = vertices[triangles]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    n_islands = int(island.max()) + 1 if len(island) else 0
    summed = np.zeros((n_islands, 3))
    np.add.at(summed, island, normal)  # area-weighted polygon normal
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    n = np.divide(summed, length, out=np.tile([0.0, 0.0, 1.0], (n_islands, 1)), where=length > 1e-300)
    helper = np.where(np.abs(n[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    u = np.cross(helper, n)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(n, u)
    cu, cv = u[island], v[island]
    island_uvs = np.stack([np.einsum("tcd,td->tc", corners, cu), np.einsum("tcd,td->tc", corners, cv)], axis=-1)
    return Mesh(vertices=vertices, triangles=triangles.astype(np.int32), island_uvs=island_uvs, island_ids=island.astype(np.int64))


# --------------------------------------------------------------------------------------------
# Scene objects and assets
# --------------------------------------------------------------------------------------------


def packed_polygon_uvs(meshes: ModelMeshes, which: np.ndarray, gap: float = UV_GAP) -> np.ndarray:
    """(sum T, 3, 2) float32: for the objects ``which`` (M,) bool, the UVs
    ``pack_uvs(polygon_islands(...))`` gives each (one island per polygon, packed per object), in
    one pass over the joined arrays (the per-object steps, row by row, for every object at once;
    only each object's packing scale is searched object by object); NaN for the others."""
    out = np.full((len(meshes.triangles), 3, 2), np.nan, dtype=np.float32)
    owner = np.repeat(np.arange(len(meshes), dtype=np.int64), meshes.triangle_counts)
    rows = np.flatnonzero(which[owner] & (meshes.triangle_counts[owner] > 0))
    if len(rows) == 0:
        return out
    own = owner[rows]
    corners = meshes.corners()[rows]
    # polygon_islands: an island per (object, polygon), in each object's polygon order
    _, island = np.unique(own * (int(meshes.polygons.max(initial=0)) + 1) + meshes.polygons[rows], return_inverse=True)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    n_islands = int(island.max()) + 1
    summed = np.zeros((n_islands, 3))
    np.add.at(summed, island, normal)
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    n = np.divide(summed, length, out=np.tile([0.0, 0.0, 1.0], (n_islands, 1)), where=length > 1e-300)
    helper = np.where(np.abs(n[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    u = np.cross(helper, n)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(n, u)
    island_uvs = np.stack([np.einsum("tcd,td->tc", corners, u[island]), np.einsum("tcd,td->tc", corners, v[island])], axis=-1)
    # pack_uvs: island extents, landscape turn, the shelf packing's scale per object
    corner_ids = np.repeat(island, 3)
    lo = np.full((n_islands, 2), np.inf)
    hi = np.full((n_islands, 2), -np.inf)
    np.minimum.at(lo, corner_ids, island_uvs.reshape(-1, 2))
    np.maximum.at(hi, corner_ids, island_uvs.reshape(-1, 2))
    extent = np.maximum(hi - lo, 1e-9)
    rotate = extent[:, 1] > extent[:, 0] + 1e-12
    widths = np.where(rotate, extent[:, 1], extent[:, 0])
    heights = np.where(rotate, extent[:, 0], extent[:, 1])
    island_owner = np.zeros(n_islands, dtype=np.int64)
    island_owner[island] = own
    bounds = np.flatnonzero(np.r_[True, island_owner[1:] != island_owner[:-1], True])
    scale = np.zeros(n_islands)
    offsets = np.zeros((n_islands, 2))
    for a, b in zip(bounds[:-1], bounds[1:]):
        scale[a:b], offsets[a:b] = packed_layout(widths[a:b], heights[a:b], gap)
    local = island_uvs - lo[island][:, None, :]
    rotated = np.stack([extent[island, 1][:, None] - local[..., 1], local[..., 0]], axis=-1)
    local = np.where(rotate[island][:, None, None], rotated, local)
    out[rows] = np.clip(offsets[island][:, None, :] + scale[island][:, None, None] * local, 0.0, 1.0).astype(np.float32)
    return out


def scene_objects(meshes: ModelMeshes, *, kind: str, import_name: str, template_key: str, file: str) -> list[SceneObject]:
    """One :class:`SceneObject` per object of ``meshes`` (instance id 0), each with its UVs decided."""
    valid = valid_file_uvs(meshes)
    packed = packed_polygon_uvs(meshes, ~valid)
    v_off, t_off = meshes.offsets()
    out = []
    for i, name in enumerate(meshes.names):
        v0, v1 = v_off[i], v_off[i] + meshes.vertex_counts[i]
        t0, t1 = t_off[i], t_off[i] + meshes.triangle_counts[i]
        vertices = meshes.vertices[v0:v1]
        triangles = meshes.triangles[t0:t1]
        if valid[i]:
            uvs, where = np.ascontiguousarray(meshes.uvs[t0:t1], dtype=np.float32), "file"
        else:
            uvs, where = np.ascontiguousarray(packed[t0:t1]), "packed"
        out.append(SceneObject(
            name=name, kind=kind, semantic_class_id=int(meshes.class_ids[i]), instance_id=0,
            vertices=np.ascontiguousarray(vertices), triangles=np.ascontiguousarray(triangles, dtype=np.int32), uvs=uvs,
            source=ObjectSource("import", template_key=template_key, file=file, node_path=meshes.node_paths[i], uvs=where),
            transform=meshes.transforms[i],
        ))
    return out


def measure_asset(meshes: ModelMeshes, *, rule_kind: str, file: str) -> MeasuredAsset:
    """All of ``meshes`` (an asset file in its own frame, metres, Z up, front towards -y) as one
    furniture piece in the library's local frame: turned to face +y, centred on its footprint, its
    base at z = 0. UVs: the file's when there is one object with valid UVs, else packed."""
    if len(meshes) == 0 or len(meshes.triangles) == 0:
        raise ValueError("an asset without geometry")
    v_off, _ = meshes.offsets()
    owner = np.repeat(np.arange(len(meshes), dtype=np.int64), meshes.triangle_counts)
    triangles = meshes.triangles.astype(np.int64) + v_off[owner][:, None]
    vertices = meshes.vertices * [-1.0, -1.0, 1.0]  # half a turn about z: the front (-y) faces +y
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, lo[2]]
    size = tuple(float(v) for v in hi - lo)
    if min(size[0], size[1]) <= 0.0:
        raise ValueError(f"an asset without a footprint (bounds {size[0]:.3g} x {size[1]:.3g} m)")
    polygons = meshes.polygons + np.repeat(np.concatenate([[0], np.cumsum(meshes.triangle_counts)[:-1]]), meshes.triangle_counts)
    mesh = polygon_islands(vertices, triangles, polygons)
    uvs = None
    if len(meshes) == 1 and valid_file_uvs(meshes)[0]:
        uvs = np.ascontiguousarray(meshes.uvs, dtype=np.float32)
    return MeasuredAsset(mesh=mesh, size=size, rule_kind=rule_kind, uvs=uvs, file=file)


def asset_rule_kind(class_id: int, wall_pinned: bool) -> str:
    """The parametric furniture kind whose placement rules an asset of ``class_id`` follows: the kind
    whose default class it is (a chair goes to the last table, a bed against a wall), else a
    wall-standing cabinet's when its wall is pinned, else a free-standing table's."""
    from procedural.furniture_library import DEFAULT_CLASS
    from scenes.semantic_palette import resolve_class

    for kind, class_name in DEFAULT_CLASS.items():
        if resolve_class(class_name).class_id == class_id:
            return kind
    return "cabinet" if wall_pinned else "table"
