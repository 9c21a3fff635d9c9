"""Binary masks on a pixel (or texel) grid: dilation.

The one dilation of the house: texel masks of the keyframe atlases (square neighbourhoods), the
inward feather of the masked denoising loop (4-connected steps) and the width of the line pass
(:func:`widen`, a square that may have an even side) grow masks with it. Edges are not wrapped: a
pixel outside the grid is never set. numpy only.
"""

from __future__ import annotations

import numpy as np

_NEIGHBOURS = {
    4: ((1, 0), (-1, 0), (0, 1), (0, -1)),
}


def dilate(mask: np.ndarray, radius: int, *, connectivity: int = 8) -> np.ndarray:
    """``mask`` (H, W) bool grown by ``radius`` steps to the neighbours of each set pixel.

    ``connectivity`` 8: a (2r+1) x (2r+1) square around every set pixel; 4: a diamond of
    city-block radius r. ``radius`` 0 (or less) returns a copy.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity {connectivity} must be 4 or 8")
    out = np.asarray(mask, dtype=bool).copy()
    radius = max(int(radius), 0)
    if connectivity == 8:
        return _grow_box(out, radius, radius)
    h, w = out.shape
    for _ in range(radius):
        grown = out.copy()
        for dy, dx in _NEIGHBOURS[connectivity]:
            # every pixel takes the value of its neighbour at (-dy, -dx): set pixels spread by (dy, dx)
            grown[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= out[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        out = grown
    return out


def widen(mask: np.ndarray, width: int) -> np.ndarray:
    """Grow a 1-px line mask to ``width`` px: each set pixel covers a ``width`` x ``width`` square,
    ``(width - 1) // 2`` pixels up and left of it and ``width // 2`` down and right (an odd width is
    :func:`dilate` by ``(width - 1) // 2``); ``width`` <= 1 returns a copy."""
    width = int(width)
    out = np.asarray(mask, dtype=bool).copy()
    if width <= 1:
        return out
    return _grow_box(out, (width - 1) // 2, width // 2)


def _grow_box(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Each set pixel of ``mask`` (H, W) bool covers the box from ``before`` pixels up and left of it
    to ``after`` pixels down and right, one axis at a time."""
    out = mask
    for axis in (0, 1):
        src, grown, n = np.moveaxis(out, axis, 0), np.zeros_like(out), out.shape[axis]
        dst = np.moveaxis(grown, axis, 0)
        for d in range(-before, after + 1):  # dst[i + d] |= src[i]
            if abs(d) < n:
                dst[max(d, 0) : n + min(d, 0)] |= src[max(-d, 0) : n - max(d, 0)]
        out = grown
    return out
