"""Operations on images and texel grids shared by the consistency modes: sampling, hole filling, uint8.

Conventions are those of :mod:`passes.frame_passes`: row 0 is the top, and the sample (col, row)
has its centre at (col + 0.5, row + 0.5); a continuous position (x, y) is in the same units.

- :func:`on_screen`, :func:`sample_nearest`, :func:`sample_bilinear`: look-ups at continuous
  positions (edges clamped; bilinear between sample centres).
- :func:`sample_same_surface`: bilinear where the 2x2 footprint shows one instance, nearest
  otherwise, so two surfaces are never blended.
- :func:`push_pull_fill`: fill unknown samples from known ones (Gortler et al. 1996), known ones kept
  bit-identical.
- :func:`to_uint8`: float 0..1 (or uint8) to uint8 RGB, rounding to nearest.

numpy only.
"""

from __future__ import annotations

import numpy as np


def on_screen(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where a continuous position lies inside the image (``0 <= x < width``, ``0 <= y < height``)."""
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        return finite & (x >= 0) & (x < width) & (y >= 0) & (y < height)


def sample_nearest(array: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Value of the pixel that contains (x, y) (clamped to the border; combine with :func:`on_screen`)."""
    h, w = array.shape[:2]
    xs = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    ys = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    cols = np.clip(np.floor(xs), 0, w - 1).astype(np.intp)
    rows = np.clip(np.floor(ys), 0, h - 1).astype(np.intp)
    return array[rows, cols]


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of an (H, W) or (H, W, C) image at continuous (x, y), edges clamped; float64 out."""
    h, w = image.shape[:2]
    img = image.astype(np.float64, copy=False)
    xs = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) - 0.5
    ys = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0) - 0.5
    x0 = np.floor(xs)
    y0 = np.floor(ys)
    fx = xs - x0
    fy = ys - y0
    x0i = np.clip(x0, 0, w - 1).astype(np.intp)
    x1i = np.clip(x0 + 1, 0, w - 1).astype(np.intp)
    y0i = np.clip(y0, 0, h - 1).astype(np.intp)
    y1i = np.clip(y0 + 1, 0, h - 1).astype(np.intp)
    if img.ndim == 3:
        fx = fx[..., None]
        fy = fy[..., None]
    top = img[y0i, x0i] * (1 - fx) + img[y0i, x1i] * fx
    bottom = img[y1i, x0i] * (1 - fx) + img[y1i, x1i] * fx
    return top * (1 - fy) + bottom * fy


def sample_same_surface(image: np.ndarray, instance_id: np.ndarray, xy: np.ndarray, instance: int) -> np.ndarray:
    """Colour of ``image`` (H, W, C) at continuous positions ``xy`` (N, 2) on the surface ``instance``:
    bilinear where the 2x2 footprint is all that instance in ``instance_id`` (H, W), the nearest
    pixel otherwise (never blend two surfaces). float64 (N, C)."""
    h, w = instance_id.shape
    xs, ys = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    x0 = np.clip(np.floor(xs), 0, w - 1).astype(np.intp)
    y0 = np.clip(np.floor(ys), 0, h - 1).astype(np.intp)
    x1 = np.clip(x0 + 1, 0, w - 1)
    y1 = np.clip(y0 + 1, 0, h - 1)
    inst = instance_id
    same = (inst[y0, x0] == instance) & (inst[y0, x1] == instance) & (inst[y1, x0] == instance) & (inst[y1, x1] == instance)
    bilinear = sample_bilinear(image, xy[:, 0], xy[:, 1])
    return np.where(same[:, None], bilinear, sample_nearest(image, xy[:, 0], xy[:, 1]))


def push_pull_fill(colour: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown texels from known ones by push-pull (Gortler et al. 1996); known texels are returned unchanged.

    Pull: weighted 2x2 averages up a pyramid (weights clamped at 1). Push: from the coarsest
    level down, ``C = w * C + (1 - w) * upsampled(C_coarser)``. ``colour`` (H, W, C), ``known`` (H, W).
    """
    if not known.any():
        return np.zeros_like(colour)
    levels_c = [np.where(known[..., None], colour, 0).astype(np.float64)]
    levels_w = [known.astype(np.float64)]
    while max(levels_w[-1].shape) > 1:
        c, w = levels_c[-1], levels_w[-1]
        h, wd = w.shape
        ph, pw = h % 2, wd % 2
        c = np.pad(c, ((0, ph), (0, pw), (0, 0)))
        w = np.pad(w, ((0, ph), (0, pw)))
        wsum = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        csum = (c[0::2, 0::2] * w[0::2, 0::2, None] + c[1::2, 0::2] * w[1::2, 0::2, None]
                + c[0::2, 1::2] * w[0::2, 1::2, None] + c[1::2, 1::2] * w[1::2, 1::2, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            cn = np.where(wsum[..., None] > 0, csum / np.maximum(wsum, 1e-300)[..., None], 0.0)
        levels_c.append(cn)
        levels_w.append(np.minimum(wsum, 1.0))
    filled = levels_c[-1]
    for level in range(len(levels_c) - 2, -1, -1):
        c, w = levels_c[level], levels_w[level]
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: c.shape[0], : c.shape[1]]
        filled = w[..., None] * c + (1.0 - w[..., None]) * up
    out = filled.astype(colour.dtype)
    out[known] = colour[known]
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """The first three channels as uint8: uint8 unchanged, float 0..1 rounded to nearest and clipped."""
    if image.dtype == np.uint8:
        return image[..., :3]
    return np.clip(np.rint(image[..., :3] * 255.0), 0, 255).astype(np.uint8)
