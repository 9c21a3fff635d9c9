"""A small barycentric triangle rasteriser (numpy only), and the per-pixel interpolation of corner values.

The keyframe atlases rasterise each object's triangles in UV space with it (which texel lies on
which triangle, where); the reference rasteriser of the tests (``tests/support/reference_rasteriser.py``)
rasterises them in screen space with a z-buffer.

Pixel (col, row) has its centre at (col + 0.5, row + 0.5), as in :mod:`passes.frame_passes`.
"""

from __future__ import annotations

import numpy as np


def rasterise_triangles(
    points: np.ndarray,
    width: int,
    height: int,
    depths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles given in pixel coordinates (pixel centres at +0.5).

    ``points``: (T, 3, 2) x right, y down (or u, v scaled to the atlas). ``depths``: (T, 3)
    positive planar depths for a z-buffer and perspective-correct barycentrics; None for UV space
    (no depth test; the first triangle to cover a pixel keeps it).
    Returns (triangle index (H, W) int64, -1 where empty; barycentrics (H, W, 3) float64).
    """
    tri_index = np.full((height, width), -1, dtype=np.int64)
    bary = np.zeros((height, width, 3), dtype=np.float64)
    zbuf = np.full((height, width), np.inf)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return tri_index, bary
    lo = np.floor(pts.min(axis=1) - 0.5).astype(np.int64)
    hi = np.ceil(pts.max(axis=1) - 0.5).astype(np.int64)
    for t in range(len(pts)):
        x0, y0 = max(lo[t, 0], 0), max(lo[t, 1], 0)
        x1, y1 = min(hi[t, 0], width - 1), min(hi[t, 1], height - 1)
        if x1 < x0 or y1 < y0:
            continue
        (ax, ay), (bx, by), (cx, cy) = pts[t]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-14:
            continue
        xs = np.arange(x0, x1 + 1) + 0.5
        ys = np.arange(y0, y1 + 1) + 0.5
        px, py = np.meshgrid(xs, ys)
        w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / area
        w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        if not inside.any():
            continue
        region = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        if depths is not None:
            inv = w0 / depths[t, 0] + w1 / depths[t, 1] + w2 / depths[t, 2]
            z = 1.0 / inv
            take = inside & (z < zbuf[region])
            if not take.any():
                continue
            pw = np.stack([w0 / depths[t, 0], w1 / depths[t, 1], w2 / depths[t, 2]], axis=-1) * z[..., None]
            zbuf[region] = np.where(take, z, zbuf[region])
        else:
            take = inside & (tri_index[region] < 0)
            if not take.any():
                continue
            pw = np.stack([w0, w1, w2], axis=-1)
        tri_index[region] = np.where(take, t, tri_index[region])
        bary[region] = np.where(take[..., None], pw, bary[region])
    return tri_index, bary


def interpolate_corners(corner_values: np.ndarray, tri_index: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per pixel, barycentric interpolation of (T, 3, C) corner values; zeros where empty."""
    safe = np.maximum(tri_index, 0)
    values = np.einsum("hwk,hwkc->hwc", bary, corner_values[safe])
    values[tri_index < 0] = 0.0
    return values
