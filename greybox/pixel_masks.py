"""Binary masks on a pixel (or texel) grid: dilation.

The one dilation of the house: texel masks of the keyframe atlases (square neighbourhoods) and the
inward feather of the masked denoising loop (4-connected steps) grow masks with it. Edges are not
wrapped: a pixel outside the grid is never set. numpy only.
"""

from __future__ import annotations

import numpy as np

_NEIGHBOURS = {
    4: ((1, 0), (-1, 0), (0, 1), (0, -1)),
    8: ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)),
}


def dilate(mask: np.ndarray, radius: int, *, connectivity: int = 8) -> np.ndarray:
    """``mask`` (H, W) bool grown by ``radius`` steps to the neighbours of each set pixel.

    ``connectivity`` 8: a (2r+1) x (2r+1) square around every set pixel; 4: a diamond of
    city-block radius r. ``radius`` 0 (or less) returns a copy.
    """
    if connectivity not in _NEIGHBOURS:
        raise ValueError(f"connectivity {connectivity} must be 4 or 8")
    out = np.asarray(mask, dtype=bool).copy()
    h, w = out.shape
    for _ in range(max(int(radius), 0)):
        grown = out.copy()
        for dy, dx in _NEIGHBOURS[connectivity]:
            # every pixel takes the value of its neighbour at (-dy, -dx): set pixels spread by (dy, dx)
            grown[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= out[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        out = grown
    return out
