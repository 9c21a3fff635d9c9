"""Geometric line art from the scene's own edges and the exact passes (never an edge detector on an image).

Two sources, OR-ed into one 1-px mask (white lines on black in the control image):

(a) Feature edges of each mesh: creases (dihedral angle above ``crease_angle_deg``) and open
    boundary edges. Vertices are welded by position first, so a mesh whose faces carry their own
    vertices (for UVs) still has its flat-face diagonals recognised as smooth. Each edge is
    clipped to the near plane and to the screen, sampled every ~0.5 px with perspective-correct
    depth, and a sample is drawn only where it is visible: its planar depth is at most the depth
    pass at that pixel plus a tolerance from the local depth slope (the edge lies on the surface
    the pixel shows, or in front of it at a silhouette).
(b) Silhouettes and object boundaries from the instance-id pass: a pixel whose 4-neighbour holds
    another instance and lies behind it (ties broken by id), so the line is one pixel wide on the
    occluding side.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from passes.frame_passes import FramePasses
from procedural.scene_data import Scene

WELD_DECIMALS = 6
ABS_DEPTH_TOLERANCE = 1e-3  # metres
REL_DEPTH_TOLERANCE = 2e-3  # of depth
SAMPLES_PER_PIXEL = 2.0


@dataclass(frozen=True)
class FeatureEdges:
    """World-space segments (E, 2, 3) of all objects' feature edges, with their instance ids (E,)."""

    segments: np.ndarray
    instance_ids: np.ndarray


def mesh_feature_edges(vertices: np.ndarray, triangles: np.ndarray, crease_angle_deg: float) -> np.ndarray:
    """(E, 2, 3) world segments of one mesh: creases sharper than ``crease_angle_deg`` and open boundaries."""
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    if len(triangles) == 0:
        return np.zeros((0, 2, 3))
    # weld by position so split vertices (per-face UVs) share edges
    _, weld = np.unique(np.round(vertices, WELD_DECIMALS), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    tri = weld[triangles]
    e1 = vertices[triangles[:, 1]] - vertices[triangles[:, 0]]
    e2 = vertices[triangles[:, 2]] - vertices[triangles[:, 0]]
    normals = np.cross(e1, e2)
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12
    normals[valid] /= lengths[valid, None]

    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # (3T, 2) welded ids
    corner_edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    faces = np.tile(np.arange(len(triangles)), 3)
    keep = (edges[:, 0] != edges[:, 1]) & np.tile(valid, 3)
    edges, corner_edges, faces = edges[keep], corner_edges[keep], faces[keep]
    key = np.sort(edges, axis=1)
    _, first, inverse, counts = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)

    cos_limit = np.cos(np.radians(crease_angle_deg))
    # the smallest cosine between any face of the edge and the edge's first face
    ref_normal = normals[faces[first]][inverse]
    cosines = np.einsum("ij,ij->i", normals[faces], ref_normal)
    min_cos = np.full(len(first), 1.0)
    np.minimum.at(min_cos, inverse, cosines)
    feature = (counts == 1) | (min_cos < cos_limit)
    chosen = corner_edges[first[feature]]
    return vertices[chosen]


_EDGE_CACHE: dict[tuple[int, float], tuple[weakref.ref, FeatureEdges]] = {}


def scene_feature_edges(scene: Scene, crease_angle_deg: float = 30.0) -> FeatureEdges:
    """Feature edges of every object (cached per scene object and angle)."""
    key = (id(scene), float(crease_angle_deg))
    cached = _EDGE_CACHE.get(key)
    if cached is not None and cached[0]() is scene:
        return cached[1]
    segments, ids = [], []
    for obj in scene.objects:
        s = mesh_feature_edges(obj.vertices, obj.triangles, crease_angle_deg)
        segments.append(s)
        ids.append(np.full(len(s), obj.instance_id, dtype=np.uint32))
    edges = FeatureEdges(
        segments=np.concatenate(segments) if segments else np.zeros((0, 2, 3)),
        instance_ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.uint32),
    )
    for k in [k for k, (ref, _) in _EDGE_CACHE.items() if ref() is None]:
        del _EDGE_CACHE[k]
    _EDGE_CACHE[key] = (weakref.ref(scene), edges)
    return edges


def _clip_near(a: np.ndarray, b: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip camera-space segments (OpenCV, z forward) to z >= near; drop those wholly behind."""
    za, zb = a[:, 2], b[:, 2]
    keep = (za >= near) | (zb >= near)
    a, b, za, zb = a[keep], b[keep], za[keep], zb[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (near - za) / (zb - za)
    on_near = a + t[:, None] * (b - a)
    return np.where((za < near)[:, None], on_near, a), np.where((zb < near)[:, None], on_near, b)


def _clip_screen(p0, p1, w0, w1, width, height):
    """Liang-Barsky clip of 2D segments to [0, width] x [0, height]; w = 1/z interpolated alongside."""
    d = p1 - p0
    t0 = np.zeros(len(p0))
    t1 = np.ones(len(p0))
    keep = np.ones(len(p0), dtype=bool)
    for axis, limit in ((0, width), (1, height)):
        for p, q in ((-d[:, axis], p0[:, axis]), (d[:, axis], limit - p0[:, axis])):
            parallel = p == 0
            keep &= ~(parallel & (q < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = q / p
            enter = (p < 0) & ~parallel
            leave = (p > 0) & ~parallel
            t0 = np.where(enter, np.maximum(t0, r), t0)
            t1 = np.where(leave, np.minimum(t1, r), t1)
    keep &= t0 <= t1
    p0, p1, d, w0, w1, t0, t1 = p0[keep], p1[keep], d[keep], w0[keep], w1[keep], t0[keep], t1[keep]
    q0 = p0 + t0[:, None] * d
    q1 = p0 + t1[:, None] * d
    return q0, q1, w0 + t0 * (w1 - w0), w0 + t1 * (w1 - w0)


def _visible(z: np.ndarray, row: np.ndarray, col: np.ndarray, depth: np.ndarray, instance_id: np.ndarray) -> np.ndarray:
    """Depth test of edge samples at (row, col): z <= depth + tolerance, the tolerance being a fixed
    floor, a share of the depth and the local depth slope (largest change to a 4-neighbour of the
    same object), since the edge need not pass through the pixel centre where depth was sampled."""
    h, w = depth.shape
    # pad by one pixel (inf depth, id of no object) so that neighbours need no bounds checks
    depth_p = np.full((h + 2, w + 2), np.inf, dtype=np.float32)
    depth_p[1:-1, 1:-1] = depth
    ids_p = np.full((h + 2, w + 2), np.iinfo(np.uint32).max, dtype=np.uint32)
    ids_p[1:-1, 1:-1] = instance_id
    depth_flat = depth_p.reshape(-1)
    ids_flat = ids_p.reshape(-1)
    index = (row + 1) * (w + 2) + (col + 1)
    d0 = depth_flat[index]
    id0 = ids_flat[index]
    finite0 = np.isfinite(d0)
    slope = np.zeros(len(index), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        for step in (-1, 1, -(w + 2), w + 2):
            dn = depth_flat[index + step]
            diff = np.abs(dn - d0)
            diff[(ids_flat[index + step] != id0) | ~finite0 | ~np.isfinite(dn)] = 0.0
            np.maximum(slope, diff, out=slope)
    tolerance = ABS_DEPTH_TOLERANCE + REL_DEPTH_TOLERANCE * d0 + 1.5 * slope
    return z <= d0 + tolerance


def id_boundaries(instance_id: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Bool HxW: pixels with a 4-neighbour of another instance that they occlude (nearer; ties: higher id)."""
    ids = instance_id.astype(np.int64)
    out = np.zeros(ids.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis] = slice(None, -1)
        b[axis] = slice(1, None)
        ia, ib = ids[tuple(a)], ids[tuple(b)]
        da, db = depth[tuple(a)], depth[tuple(b)]
        differ = ia != ib
        a_front = (da < db) | ((da == db) & (ia > ib))
        out[tuple(a)] |= differ & a_front
        out[tuple(b)] |= differ & ~a_front
    return out


def _dilate(mask: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return mask
    out = mask.copy()
    lo = -((width - 1) // 2)
    hi = width // 2
    h, w = mask.shape
    for dy in range(lo, hi + 1):
        for dx in range(lo, hi + 1):
            if dx == 0 and dy == 0:
                continue
            ys = slice(max(dy, 0), h + min(dy, 0))
            yd = slice(max(-dy, 0), h + min(-dy, 0))
            xs = slice(max(dx, 0), w + min(dx, 0))
            xd = slice(max(-dx, 0), w + min(-dx, 0))
            out[yd, xd] |= mask[ys, xs]
    return out


def feature_edge_mask(scene: Scene, frame: int, passes: FramePasses, crease_angle_deg: float = 30.0) -> np.ndarray:
    """Bool HxW: the visible pixels of the scene's feature edges at ``frame`` (part (a) of the module docstring)."""
    h, w = passes.depth.shape
    mask = np.zeros((h, w), dtype=bool)
    edges = scene_feature_edges(scene, crease_angle_deg)
    if len(edges.segments) == 0:
        return mask
    track = scene.camera
    w2c = track.world_to_camera_opencv(frame)
    k = track.intrinsics(w, h)
    cam = (edges.segments.reshape(-1, 3) @ w2c[:3, :3].T + w2c[:3, 3]).reshape(-1, 2, 3)
    a, b = _clip_near(cam[:, 0], cam[:, 1], max(track.clip_start, 1e-6))
    if len(a) == 0:
        return mask
    f = np.array([k[0, 0], k[1, 1]])
    c = np.array([k[0, 2], k[1, 2]])
    p0 = a[:, :2] / a[:, 2:3] * f + c
    p1 = b[:, :2] / b[:, 2:3] * f + c
    q0, q1, w0, w1 = _clip_screen(p0, p1, 1.0 / a[:, 2], 1.0 / b[:, 2], w, h)
    if len(q0) == 0:
        return mask
    length = np.linalg.norm(q1 - q0, axis=1)
    n = np.ceil(length * SAMPLES_PER_PIXEL).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(n)), n)
    starts = np.cumsum(n) - n
    t = ((np.arange(int(n.sum())) - starts[seg]) / np.maximum(n[seg] - 1, 1)).astype(np.float32)
    q0 = q0.astype(np.float32)
    dq = (q1 - q0).astype(np.float32)
    x = q0[seg, 0] + t * dq[seg, 0]
    y = q0[seg, 1] + t * dq[seg, 1]
    inv_z = w0[seg] + t * (w1 - w0)[seg]  # 1/z is linear in screen space
    col = np.minimum(np.maximum(x.astype(np.int64), 0), w - 1)  # x >= 0 after clipping: truncation = floor
    row = np.minimum(np.maximum(y.astype(np.int64), 0), h - 1)
    # one sample per pixel and edge is enough for the depth test: keep each pixel's nearest sample
    key = (seg * h + row) * w + col
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    row, col = row[first], col[first]
    z = (1.0 / inv_z[first]).astype(np.float32)
    visible = _visible(z, row, col, passes.depth, passes.instance_id)
    mask[row[visible], col[visible]] = True
    return mask


def render_lines(scene: Scene, frame: int, passes: FramePasses, crease_angle_deg: float = 30.0, width: int = 1) -> np.ndarray:
    """uint8 HxW line mask (255 = line): visible crease and boundary edges plus instance-id boundaries, ``width`` px."""
    mask = feature_edge_mask(scene, frame, passes, crease_angle_deg)
    mask |= id_boundaries(passes.instance_id, passes.depth)
    mask = _dilate(mask, int(width))
    return np.where(mask, np.uint8(255), np.uint8(0))
