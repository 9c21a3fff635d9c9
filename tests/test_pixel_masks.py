"""greybox.pixel_masks against brute force: every output pixel checked against the set pixels within
its footprint (Chebyshev distance for squares, city-block distance for diamonds)."""

from __future__ import annotations

import numpy as np
import pytest

from greybox.pixel_masks import dilate, widen


def _brute(mask: np.ndarray, inside) -> np.ndarray:
    """Pixel (y, x) is set when some set pixel (sy, sx) has inside(y - sy, x - sx)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for sy, sx in zip(*np.nonzero(mask)):
        for y in range(h):
            for x in range(w):
                if inside(y - sy, x - sx):
                    out[y, x] = True
    return out


@pytest.fixture
def mask():
    rng = np.random.default_rng(0)
    m = rng.random((9, 11)) < 0.06
    m[0, 0] = m[8, 10] = True  # corners: nothing wraps
    return m


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_dilate_squares_and_diamonds(mask, radius):
    square = _brute(mask, lambda dy, dx: max(abs(dy), abs(dx)) <= radius)
    diamond = _brute(mask, lambda dy, dx: abs(dy) + abs(dx) <= radius)
    assert np.array_equal(dilate(mask, radius), square)
    assert np.array_equal(dilate(mask, radius, connectivity=4), diamond)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_widen_covers_a_width_square_anchored_up_left(mask, width):
    up, down = (width - 1) // 2, width // 2
    expected = _brute(mask, lambda dy, dx: -up <= dy <= down and -up <= dx <= down)
    assert np.array_equal(widen(mask, width), expected)


def test_bad_connectivity_is_refused(mask):
    with pytest.raises(ValueError, match="connectivity"):
        dilate(mask, 1, connectivity=6)
