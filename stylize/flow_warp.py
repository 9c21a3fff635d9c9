"""Backward warping with the renderer's exact flow, and the exact occlusion test.

Conventions are those of :mod:`passes.frame_passes`: row 0 is the top, pixel (col, row) has its
centre at (col + 0.5, row + 0.5), and frame t's ``flow_backward`` says where each pixel's surface
point was in frame t-1, so frame t-1 is pulled onto frame t by sampling it at
``(col + 0.5 + flow_backward_x, row + 0.5 + flow_backward_y)``.

Colour is sampled bilinearly; ids and UVs with the nearest sample (never blend two surfaces).

The occlusion test uses no threshold on estimated flow: a pixel p of frame t is visible in frame
t-1 when its source lands on screen, the source pixel is covered (UV coverage A == 1), carries the
same instance id as p, and its UV agrees with p's. "Agrees" is measured in pixels, through the
inverse of the local UV Jacobian (of p's frame or of the source's, whichever is finer), because
the nearest source sample can sit up to sqrt(0.5) px from the exact source point while the next
pixel's point is 1 px away: the UV difference must map to at most ``uv_tolerance_px`` (0.75) px.
Sampling comes from :mod:`stylize.image_operations`, the background's rays from the camera track
(:meth:`scenes.scene_data.CameraTrack.pixel_rays`). This module imports numpy only.
"""

from __future__ import annotations

import numpy as np

from passes.frame_passes import FramePasses
from stylize.image_operations import on_screen, sample_bilinear, sample_nearest

# Default tolerance on the UV test, in pixels of the local UV footprint: the nearest sample is at
# most sqrt(0.5) ~ 0.71 px from the exact source point, while the next pixel is 1 px away.
UV_TOLERANCE_PX = 0.75
# Absolute floor on the UV tolerance (float32 UVs of a pixel-aligned move agree to ~1e-7).
UV_ABSOLUTE_EPS = 1e-5


def source_coordinates(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (x, y) in the other frame for every pixel: ``col + 0.5 + flow_x``, ``row + 0.5 + flow_y``."""
    h, w = flow.shape[:2]
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return cols + 0.5 + flow[..., 0].astype(np.float64), rows + 0.5 + flow[..., 1].astype(np.float64)


def warp_backward(image: np.ndarray, flow_backward: np.ndarray) -> np.ndarray:
    """Pull an image of frame t-1 onto frame t with frame t's ``flow_backward`` (bilinear, float64)."""
    x, y = source_coordinates(flow_backward)
    return sample_bilinear(image, x, y)


def uv_footprint(frame_passes: FramePasses) -> np.ndarray:
    """Per pixel, how far UV moves per pixel step on the same surface (H, W), float64.

    For each axis the smaller of the two one-sided differences to a neighbour with the same
    instance id and full coverage (robust to UV seams); the larger axis is kept. Pixels with no
    such neighbour get their instance's median footprint.
    """
    uv = frame_passes.uv[..., :2].astype(np.float64)
    inst = frame_passes.instance_id
    covered = (frame_passes.uv[..., 2] >= 1.0) & (inst > 0)
    h, w = inst.shape
    per_axis = []
    for axis in (0, 1):
        diffs = []
        for shift in (1, -1):
            other_uv = np.roll(uv, shift, axis=axis)
            other_inst = np.roll(inst, shift, axis=axis)
            other_cov = np.roll(covered, shift, axis=axis)
            ok = covered & other_cov & (other_inst == inst)
            # np.roll wraps around: the wrapped row/column is not a neighbour
            if axis == 0:
                ok[0 if shift == 1 else h - 1, :] = False
            else:
                ok[:, 0 if shift == 1 else w - 1] = False
            d = np.linalg.norm(other_uv - uv, axis=-1)
            diffs.append(np.where(ok, d, np.inf))
        per_axis.append(np.minimum(diffs[0], diffs[1]))
    both = np.stack(per_axis)
    finite = np.isfinite(both)
    footprint = np.where(finite.any(axis=0), np.where(finite, both, -np.inf).max(axis=0), np.nan)
    # fill pixels without a same-surface neighbour with their instance's median
    missing = covered & ~np.isfinite(footprint)
    if missing.any():
        for instance in np.unique(inst[missing]):
            of_instance = covered & (inst == instance) & np.isfinite(footprint)
            fill = float(np.median(footprint[of_instance])) if of_instance.any() else 0.0
            footprint[missing & (inst == instance)] = fill
    footprint[~covered] = np.nan
    return footprint


def uv_to_pixel_jacobian(frame_passes: FramePasses) -> np.ndarray:
    """Per pixel, the 2x2 matrix taking a UV difference to a pixel displacement (H, W, 2, 2), float64.

    The inverse of the local UV Jacobian [dUV/dx, dUV/dy], each column the smaller of the two
    one-sided differences to a neighbour of the same instance with full coverage (robust to UV
    seams). Where that is unavailable or degenerate, the isotropic ``I / footprint`` is used.
    """
    uv = frame_passes.uv[..., :2].astype(np.float64)
    inst = frame_passes.instance_id
    covered = (frame_passes.uv[..., 2] >= 1.0) & (inst > 0)
    h, w = inst.shape
    columns = []
    for axis in (1, 0):  # x (columns) then y (rows)
        best = np.full((h, w, 2), np.nan)
        best_norm = np.full((h, w), np.inf)
        for shift, sign in ((-1, 1.0), (1, -1.0)):  # forward difference, then backward
            other_uv = np.roll(uv, shift, axis=axis)
            ok = covered & np.roll(covered, shift, axis=axis) & (np.roll(inst, shift, axis=axis) == inst)
            if axis == 0:
                ok[h - 1 if shift == -1 else 0, :] = False
            else:
                ok[:, w - 1 if shift == -1 else 0] = False
            d = sign * (other_uv - uv)
            n = np.linalg.norm(d, axis=-1)
            take = ok & (n < best_norm)
            best[take] = d[take]
            best_norm[take] = n[take]
        columns.append(best)
    jac = np.stack(columns, axis=-1)  # (H, W, 2 uv, 2 xy)
    det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
    footprint = np.nan_to_num(uv_footprint(frame_passes), nan=0.0)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(det) & (np.abs(det) > footprint * footprint * 1e-3)
    inv = np.zeros((h, w, 2, 2))
    safe_det = np.where(good, det, 1.0)
    inv[..., 0, 0] = jac[..., 1, 1] / safe_det
    inv[..., 0, 1] = -jac[..., 0, 1] / safe_det
    inv[..., 1, 0] = -jac[..., 1, 0] / safe_det
    inv[..., 1, 1] = jac[..., 0, 0] / safe_det
    iso = np.where(footprint > 0, 1.0 / np.maximum(footprint, 1e-300), 0.0)
    inv[~good] = np.eye(2) * iso[~good][:, None, None]
    inv[~covered] = 0.0
    return inv


def uv_distance_px(uv_delta: np.ndarray, to_pixels: np.ndarray) -> np.ndarray:
    """Length in pixels of UV differences (..., 2) through matrices from :func:`uv_to_pixel_jacobian` (..., 2, 2)."""
    return np.linalg.norm(np.einsum("...ij,...j->...i", to_pixels, uv_delta), axis=-1)


def warp_validity(
    previous: FramePasses,
    current: FramePasses,
    *,
    uv_tolerance_px: float = UV_TOLERANCE_PX,
) -> np.ndarray:
    """The exact occlusion test: True where pixel p of ``current`` shows a surface point visible in ``previous``.

    p must be foreground with coverage 1; its source ``(col + 0.5 + fx, row + 0.5 + fy)`` must be
    on screen, covered, of the same instance, and its (nearest) UV must be the same surface point:
    the UV difference, measured in pixels of either frame's local UV Jacobian, at most
    ``uv_tolerance_px`` (or within ``UV_ABSOLUTE_EPS`` in UV).
    """
    if previous.depth.shape != current.depth.shape:
        raise ValueError(f"passes differ in size: {previous.depth.shape} vs {current.depth.shape}")
    x, y = source_coordinates(current.flow_backward)
    h, w = current.height, current.width
    valid = (current.instance_id > 0) & (current.uv[..., 2] >= 1.0) & on_screen(x, y, w, h)
    src_inst = sample_nearest(previous.instance_id, x, y)
    src_cov = sample_nearest(previous.uv[..., 2], x, y)
    src_uv = sample_nearest(previous.uv[..., :2], x, y).astype(np.float64)
    valid &= (src_inst == current.instance_id) & (src_cov >= 1.0)
    delta = src_uv - current.uv[..., :2].astype(np.float64)
    here = uv_distance_px(delta, uv_to_pixel_jacobian(current))
    there = uv_distance_px(delta, sample_nearest(uv_to_pixel_jacobian(previous), x, y))
    same_point = (np.minimum(here, there) <= uv_tolerance_px) | (np.linalg.norm(delta, axis=-1) <= UV_ABSOLUTE_EPS)
    return valid & same_point


def background_source_coordinates(camera, frame: int, previous_frame: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel's ray direction was in ``previous_frame``, for background at infinity (rotation only):
    ``x_prev ~ K_prev R_prev^T R_cur K_cur^-1 x``; NaN where the direction was behind the camera.
    ``camera`` is a :class:`scenes.scene_data.CameraTrack`."""
    xy, _ = camera.project_directions(previous_frame, camera.pixel_rays(frame, width, height), width, height,
                                      min_forward=1e-9)
    return xy[..., 0], xy[..., 1]


def warp_with_background(previous_image: np.ndarray, previous: FramePasses, current: FramePasses, camera=None,
                         *, uv_tolerance_px: float = UV_TOLERANCE_PX) -> tuple[np.ndarray, np.ndarray]:
    """Pull the previous output onto the current frame: surfaces by the exact flow (valid where
    :func:`warp_validity` holds), background (instance 0) by the rotation-only homography when the
    camera track is given (valid where its source is on screen and background too).

    Returns (warped image (H, W, C) float64 in the input's scale, valid mask (H, W) bool).
    """
    x, y = source_coordinates(current.flow_backward)
    valid = warp_validity(previous, current, uv_tolerance_px=uv_tolerance_px)
    if camera is not None:
        background = current.instance_id == 0
        bx, by = background_source_coordinates(camera, current.frame, previous.frame, current.width, current.height)
        x = np.where(background, bx, x)
        y = np.where(background, by, y)
        ok = background & on_screen(bx, by, current.width, current.height)
        ok &= sample_nearest(previous.instance_id, bx, by) == 0
        valid |= ok
    return sample_bilinear(previous_image, x, y), valid
