"""Whether a 3D point is the surface a pixel of the depth pass shows: the depth test's tolerance.

The depth pass holds one sample per pixel centre (:mod:`passes.frame_passes`), so a point that
lies on the same surface elsewhere in the pixel (a texel centre, a sample along an edge) differs
from it by up to the local depth slope. The tolerance is

    absolute + relative x depth + slope_factor x slope

with ``slope`` the largest depth change from the pixel to a 4-neighbour showing the same
instance (:func:`depth_slope`): a point is on the shown surface when its planar depth is within
the tolerance of the pass's. Used by the keyframe atlases' visibility. (Line art's slope test,
``passes.line_art``, asks another question: whether a jump between two neighbours continues the
plane on either side, with ``1/z`` affine in pixel coordinates.) numpy only.
"""

from __future__ import annotations

import numpy as np


def depth_slope(depth: np.ndarray, instance_id: np.ndarray) -> np.ndarray:
    """(H, W) float64: per pixel, the largest |depth difference| to a 4-neighbour of the same
    instance (both depths finite); 0 where there is no such neighbour. Edges are not wrapped."""
    d = np.asarray(depth, dtype=np.float64)
    slope = np.zeros_like(d)
    for axis in (0, 1):
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        a, b = d[lo], d[hi]
        with np.errstate(invalid="ignore"):
            diff = np.abs(b - a)
        diff = np.where((instance_id[lo] == instance_id[hi]) & np.isfinite(a) & np.isfinite(b), diff, 0.0)
        slope[lo] = np.maximum(slope[lo], diff)
        slope[hi] = np.maximum(slope[hi], diff)
    return slope


def depth_tolerance(depth: np.ndarray, slope: np.ndarray, *, absolute: float = 0.0, relative: float = 0.0,
                    slope_factor: float = 1.0) -> np.ndarray:
    """``absolute + relative * depth + slope_factor * slope`` (see the module docstring)."""
    return absolute + relative * np.asarray(depth) + slope_factor * np.asarray(slope)
