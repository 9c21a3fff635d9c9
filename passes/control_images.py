"""Control images (8-bit RGB, HxWx3) in each ControlNet's training convention, from exact passes.

- depth: inverse depth (disparity) normalised to a range, near = white, background 0, grey in
  three channels (MiDaS annotator convention; CONDITIONING.md "Depth");
- normal: BAE / normalbae, ``R = (1 - x) / 2, G = (1 + y) / 2, B = (1 + z) / 2`` of the
  camera-space normal, background (128, 128, 255);
- seg: exact ADE20K palette colours, the background painted with a chosen class;
- lines: white on black.
"""

from __future__ import annotations

import numpy as np

NORMAL_BACKGROUND = (128, 128, 255)


def disparity(depth: np.ndarray) -> np.ndarray:
    """1 / depth as float32, 0 where the depth is not finite or not positive (background)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape, dtype=np.float32)
    np.divide(1.0, depth, out=out, where=valid)
    return out


def per_frame_disparity_range(depth: np.ndarray, percentile: float = 99.5) -> tuple[float, float]:
    """(lo, hi) disparity for per-frame normalisation: lo = the smallest, hi = a robust maximum
    (``percentile`` of the valid disparities, so one near pixel does not dominate)."""
    disp = disparity(depth)
    valid = disp[disp > 0]
    if valid.size == 0:
        return 0.0, 1.0
    lo = float(valid.min())
    hi = float(np.percentile(valid, percentile))
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    return lo, hi


def depth_control(depth: np.ndarray, disparity_lo: float, disparity_hi: float) -> np.ndarray:
    """Planar depth (metres, inf on background) -> grey uint8 HxWx3 of ``(1/Z - lo) / (hi - lo) * 255``,
    clipped and rounded; background (disparity 0) is black unless ``lo`` is negative."""
    if not (np.isfinite(disparity_lo) and np.isfinite(disparity_hi)) or disparity_hi <= disparity_lo:
        raise ValueError(f"disparity range ({disparity_lo}, {disparity_hi}) must be finite with hi > lo")
    disp = disparity(depth)
    scale = np.float32(255.0 / (disparity_hi - disparity_lo))
    grey = (disp - np.float32(disparity_lo)) * scale
    grey += np.float32(0.5)  # + 0.5, then truncation: round half up
    np.clip(grey, 0.0, 255.0, out=grey)
    grey8 = grey.astype(np.uint8)
    return np.repeat(grey8[..., None], 3, axis=2)


def normal_control(normal_cam: np.ndarray) -> np.ndarray:
    """Camera-space unit normals (Blender camera axes; 0 on background) -> BAE RGB uint8 HxWx3."""
    normal = np.asarray(normal_cam, dtype=np.float32)
    rgb = normal * np.array([-127.5, 127.5, 127.5], dtype=np.float32)
    rgb += np.float32(127.5 + 0.5)  # + 0.5, then truncation: round half up
    np.clip(rgb, 0.0, 255.0, out=rgb)
    out = rgb.astype(np.uint8)
    background = (normal[..., 0] == 0) & (normal[..., 1] == 0) & (normal[..., 2] == 0)
    out[background] = NORMAL_BACKGROUND
    return out


def seg_control(class_id: np.ndarray, background_class_id: int) -> np.ndarray:
    """ADE20K class ids (1-based, 0 = background) -> palette colours uint8 HxWx3; background gets
    ``background_class_id``'s colour. Every pixel is an exact palette colour."""
    from scenes.semantic_palette import class_id_colours

    table = class_id_colours()
    if not (1 <= int(background_class_id) < len(table)):
        raise ValueError(f"background class id {background_class_id} is not an ADE20K class id (1..{len(table) - 1})")
    ids = np.asarray(class_id)
    if ids.size and int(ids.max()) >= len(table):
        raise ValueError(f"class id {int(ids.max())} is not an ADE20K class id (1..{len(table) - 1})")
    lut = np.array(table, dtype=np.uint8, copy=True)
    lut[0] = table[int(background_class_id)]
    return lut[ids]


def lines_control(lines: np.ndarray) -> np.ndarray:
    """A line mask (HxW, nonzero = line) -> white lines on black, uint8 HxWx3."""
    mask = np.asarray(lines) != 0
    grey = np.where(mask, np.uint8(255), np.uint8(0))
    return np.repeat(grey[..., None], 3, axis=2)
