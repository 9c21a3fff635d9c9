"""E_warp: temporal consistency of a stylised sequence, measured with the renderer's exact flow.

Short range: for each frame t from the second on, warp output t-1 onto t with frame t's exact
``flow_backward`` (bilinear colour), keep the pixels that pass the exact occlusion test of
:func:`stylize.flow_warp.warp_validity` (source on screen and covered, same instance, same UV),
and take the mean absolute RGB difference (0..1) over the valid pixel-channels. The report holds
the mean of the per-frame values, and beside it Lai et al.'s (2018) convention, the mean squared
difference. The flow and occlusion are ground truth from the renderer, not estimated, so the
numbers are not comparable with papers that estimate them.

Long range: each pixel of frame t is matched to frame 1 (the first of the sequence) through the
same surface point, i.e. the same instance id and the nearest UV within 0.75 px (through the
local UV Jacobian, as in the short-range test), found with a per-instance grid hash on frame 1's UVs (no flow chaining, so no drift); same statistics, with the
nearest frame-1 pixel's colour.

This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from passes.frame_passes import FramePasses
from stylize.flow_warp import (
    UV_ABSOLUTE_EPS,
    UV_TOLERANCE_PX,
    source_coordinates,
    uv_distance_px,
    uv_footprint,
    uv_to_pixel_jacobian,
    warp_validity,
)
from stylize.image_operations import sample_bilinear


@dataclass
class WarpErrorReport:
    """E_warp of one sequence. ``short_*`` over consecutive pairs, ``long_*`` against the first frame.

    ``*_mae``: mean over frames of the per-frame mean absolute RGB difference (0..1).
    ``*_mse``: the same with squared differences (Lai et al. 2018; papers often print it x 1e3).
    Per-frame lists are aligned with ``frames[1:]``; a frame with no valid pixel has NaN there
    and is left out of the means. ``*_valid_fraction``: share of the frame's pixels compared.
    """

    frames: list[int]
    short_mae: float
    short_mse: float
    long_mae: float
    long_mse: float
    short_mae_per_frame: list[float] = field(default_factory=list)
    short_mse_per_frame: list[float] = field(default_factory=list)
    short_valid_fraction: list[float] = field(default_factory=list)
    long_mae_per_frame: list[float] = field(default_factory=list)
    long_mse_per_frame: list[float] = field(default_factory=list)
    long_valid_fraction: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "short_mae": self.short_mae,
            "short_mse": self.short_mse,
            "long_mae": self.long_mae,
            "long_mse": self.long_mse,
            "mean_short_valid_fraction": _nanmean(self.short_valid_fraction),
            "mean_long_valid_fraction": _nanmean(self.long_valid_fraction),
            "flow": "exact (renderer ground truth)",
        }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def to_unit_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float64 0..1; float frames are taken to be 0..1 already. Keeps RGB only."""
    if frame.ndim != 3 or frame.shape[2] < 3:
        raise ValueError(f"frames must be (H, W, 3), got shape {frame.shape}")
    rgb = frame[..., :3]
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return rgb.astype(np.float64)


def _masked_errors(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    fraction = float(valid.mean())
    if not valid.any():
        return float("nan"), float("nan"), fraction
    diff = a[valid] - b[valid]
    return float(np.abs(diff).mean()), float((diff * diff).mean()), fraction


class SurfaceLookup:
    """Per-instance grid hash on one frame's UVs: find, for query (instance, uv) pairs, the pixel of
    the reference frame showing the same surface point (nearest UV within tolerance)."""

    def __init__(self, frame_passes: FramePasses, *, uv_tolerance_px: float = UV_TOLERANCE_PX):
        self.height, self.width = frame_passes.height, frame_passes.width
        self.uv_tolerance_px = uv_tolerance_px
        covered = (frame_passes.instance_id > 0) & (frame_passes.uv[..., 2] >= 1.0)
        self.flat_index = np.flatnonzero(covered)
        self.instance = frame_passes.instance_id.reshape(-1)[self.flat_index].astype(np.int64)
        self.uv = frame_passes.uv[..., :2].reshape(-1, 2)[self.flat_index].astype(np.float64)
        self.footprint = uv_footprint(frame_passes).reshape(-1)[self.flat_index]
        self.to_pixels = uv_to_pixel_jacobian(frame_passes).reshape(-1, 2, 2)[self.flat_index]
        # one cell size per instance: the 90th percentile footprint x tolerance of its pixels, so a
        # match within tolerance is in the 3x3 block of cells around the query for all but the
        # most grazing pixels (those may go unmatched: left out, never mismatched)
        self.cell: dict[int, float] = {}
        for instance in np.unique(self.instance):
            f = self.footprint[self.instance == instance]
            size = float(np.nanpercentile(f, 90)) * max(uv_tolerance_px, 1.0) if np.isfinite(f).any() else 0.0
            self.cell[int(instance)] = max(size, 1e-4)
        cells = self._cells(self.instance, self.uv)
        self.order = np.argsort(cells, kind="stable")
        self.sorted_keys = cells[self.order]

    def _cell_size(self, instance: np.ndarray) -> np.ndarray:
        sizes = np.full(instance.shape, np.nan)
        for inst, size in self.cell.items():
            sizes[instance == inst] = size
        return sizes

    @staticmethod
    def _key(instance: np.ndarray, cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
        # cells index UV in [0, 1] at >= 1e-4: fewer than 2^20 per axis (clamped for safety)
        cu = np.clip(cu, -1, (1 << 20) - 2) + 1
        cv = np.clip(cv, -1, (1 << 20) - 2) + 1
        return (instance.astype(np.int64) << 42) | (cu.astype(np.int64) << 21) | cv.astype(np.int64)

    def _cells(self, instance: np.ndarray, uv: np.ndarray) -> np.ndarray:
        size = self._cell_size(instance)
        cu = np.floor(uv[:, 0] / size).astype(np.int64)
        cv = np.floor(uv[:, 1] / size).astype(np.int64)
        return self._key(instance, cu, cv)

    def match(self, instance: np.ndarray, uv: np.ndarray, to_pixels: np.ndarray) -> np.ndarray:
        """For query pixels (instance (N,), uv (N, 2), UV->pixel matrices (N, 2, 2)), the flat pixel
        index of the reference frame showing the same surface point, or -1: the nearest candidate
        (in pixels, through the finer of the two frames' local UV Jacobians) within tolerance."""
        n = len(instance)
        best = np.full(n, -1, dtype=np.int64)
        best_dist = np.full(n, np.inf)
        known = np.isin(instance, list(self.cell)) if self.cell else np.zeros(n, bool)
        if not known.any():
            return best
        q = np.flatnonzero(known)
        inst = instance[q].astype(np.int64)
        quv = uv[q].astype(np.float64)
        qmat = to_pixels[q]
        size = self._cell_size(inst)
        cu = np.floor(quv[:, 0] / size).astype(np.int64)
        cv = np.floor(quv[:, 1] / size).astype(np.int64)
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                key = self._key(inst, cu + du, cv + dv)
                lo = np.searchsorted(self.sorted_keys, key, side="left")
                hi = np.searchsorted(self.sorted_keys, key, side="right")
                k = 0
                while True:
                    has = lo + k < hi
                    if not has.any():
                        break
                    idx = np.flatnonzero(has)
                    cand = self.order[lo[idx] + k]
                    delta = self.uv[cand] - quv[idx]
                    d = np.minimum(uv_distance_px(delta, qmat[idx]), uv_distance_px(delta, self.to_pixels[cand]))
                    d = np.where(np.linalg.norm(delta, axis=-1) <= UV_ABSOLUTE_EPS, 0.0, d)
                    better = d < best_dist[q[idx]]
                    best_dist[q[idx[better]]] = d[better]
                    best[q[idx[better]]] = cand[better]
                    k += 1
        ok = (best >= 0) & (best_dist <= self.uv_tolerance_px)
        return np.where(ok, self.flat_index[np.maximum(best, 0)], -1)


def long_range_matches(reference: FramePasses, current: FramePasses, *, uv_tolerance_px: float = UV_TOLERANCE_PX,
                       lookup: SurfaceLookup | None = None) -> np.ndarray:
    """(H, W) flat pixel index into ``reference`` showing the same surface point as each pixel of ``current``, or -1."""
    lookup = lookup or SurfaceLookup(reference, uv_tolerance_px=uv_tolerance_px)
    covered = (current.instance_id > 0) & (current.uv[..., 2] >= 1.0)
    out = np.full(current.instance_id.size, -1, dtype=np.int64)
    idx = np.flatnonzero(covered)
    to_pixels = uv_to_pixel_jacobian(current).reshape(-1, 2, 2)[idx]
    out[idx] = lookup.match(
        current.instance_id.reshape(-1)[idx], current.uv[..., :2].reshape(-1, 2)[idx], to_pixels
    )
    return out.reshape(current.instance_id.shape)


def warp_error(
    frames: list[np.ndarray],
    shot_passes: list[FramePasses],
    *,
    uv_tolerance_px: float = UV_TOLERANCE_PX,
    long_range: bool = True,
) -> WarpErrorReport:
    """E_warp of a stylised sequence with exact flow; see the module docstring.

    ``frames``: (H, W, 3) uint8 (0..255) or float (0..1) outputs, in order; ``shot_passes``: the same
    frames' exact passes. Needs at least two frames.
    """
    # 1. Check inputs
    if len(frames) != len(shot_passes):
        raise ValueError(f"{len(frames)} frames but {len(shot_passes)} passes; give one FramePasses per frame")
    if len(frames) < 2:
        raise ValueError("E_warp needs at least two frames")
    images = [to_unit_rgb(f) for f in frames]
    for image, p in zip(images, shot_passes):
        if image.shape[:2] != p.depth.shape:
            raise ValueError(f"frame {p.frame}: image {image.shape[:2]} and passes {p.depth.shape} differ in size")

    # 2. Short range: t-1 warped onto t
    short_mae, short_mse, short_valid = [], [], []
    for t in range(1, len(frames)):
        valid = warp_validity(shot_passes[t - 1], shot_passes[t], uv_tolerance_px=uv_tolerance_px)
        x, y = source_coordinates(shot_passes[t].flow_backward)
        warped = sample_bilinear(images[t - 1], x, y)
        mae, mse, fraction = _masked_errors(images[t], warped, valid)
        short_mae.append(mae)
        short_mse.append(mse)
        short_valid.append(fraction)

    # 3. Long range: every frame against the first, through the same surface point
    long_mae, long_mse, long_valid = [], [], []
    if long_range:
        lookup = SurfaceLookup(shot_passes[0], uv_tolerance_px=uv_tolerance_px)
        first = images[0].reshape(-1, 3)
        for t in range(1, len(frames)):
            match = long_range_matches(shot_passes[0], shot_passes[t], lookup=lookup)
            valid = match >= 0
            reference = first[np.maximum(match, 0).reshape(-1)].reshape(images[t].shape)
            mae, mse, fraction = _masked_errors(images[t], reference, valid)
            long_mae.append(mae)
            long_mse.append(mse)
            long_valid.append(fraction)

    return WarpErrorReport(
        frames=[p.frame for p in shot_passes],
        short_mae=_nanmean(short_mae),
        short_mse=_nanmean(short_mse),
        long_mae=_nanmean(long_mae),
        long_mse=_nanmean(long_mse),
        short_mae_per_frame=short_mae,
        short_mse_per_frame=short_mse,
        short_valid_fraction=short_valid,
        long_mae_per_frame=long_mae,
        long_mse_per_frame=long_mse,
        long_valid_fraction=long_valid,
    )


def cross_shot_difference(frames_a: list[np.ndarray], passes_a: list[FramePasses], frames_b: list[np.ndarray],
                          passes_b: list[FramePasses], texel_sizes: dict[int, int], *, tolerance_texels: float = 0.5,
                          max_candidates: int = 16) -> dict:
    """How much two shots of one scene agree where they show the same surface point: over every
    covered pixel of ``frames_b`` whose instance id some pixel of ``frames_a`` shares with a UV within
    ``tolerance_texels`` texels (``texel_sizes``: {instance id: its atlas side}; the nearest such
    pixel, among at most ``max_candidates`` per texel, is its match), the mean absolute RGB
    difference (0..1) and the share of shot B's covered pixels matched.

    Pixels are hashed by (instance, texel); a match within half a texel lies in the pixel's texel or
    one of its 8 neighbours."""
    def covered(images, shot_passes):
        inst, uv, rgb = [], [], []
        for image, p in zip(images, shot_passes):
            sel = (p.instance_id > 0) & (p.uv[..., 2] >= 1.0) & np.isin(p.instance_id, list(texel_sizes))
            inst.append(p.instance_id[sel].astype(np.int64))
            uv.append(p.uv[..., :2][sel].astype(np.float64))
            rgb.append(to_unit_rgb(image)[sel])
        return np.concatenate(inst), np.concatenate(uv), np.concatenate(rgb)

    inst_a, uv_a, rgb_a = covered(frames_a, passes_a)
    inst_b, uv_b, rgb_b = covered(frames_b, passes_b)
    if len(inst_a) == 0 or len(inst_b) == 0:
        return {"mae": float("nan"), "matched_fraction": 0.0, "pixels": 0}
    size_of = np.zeros(int(max(texel_sizes)) + 1)
    for i, s in texel_sizes.items():
        size_of[int(i)] = s
    ta = uv_a * size_of[inst_a][:, None]
    tb = uv_b * size_of[inst_b][:, None]

    def key(inst, cu, cv):
        return (inst << 42) | ((np.clip(cu, -1, (1 << 20) - 2) + 1) << 21) | (np.clip(cv, -1, (1 << 20) - 2) + 1)

    keys_a = key(inst_a, np.floor(ta[:, 0]).astype(np.int64), np.floor(ta[:, 1]).astype(np.int64))
    order = np.argsort(keys_a, kind="stable")
    sorted_keys = keys_a[order]
    best = np.full(len(inst_b), -1, dtype=np.int64)
    best_d = np.full(len(inst_b), np.inf)
    cu, cv = np.floor(tb[:, 0]).astype(np.int64), np.floor(tb[:, 1]).astype(np.int64)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            k = key(inst_b, cu + du, cv + dv)
            lo = np.searchsorted(sorted_keys, k, side="left")
            hi = np.minimum(np.searchsorted(sorted_keys, k, side="right"), lo + max_candidates)
            for j in range(max_candidates):
                has = lo + j < hi
                if not has.any():
                    break
                idx = np.flatnonzero(has)
                cand = order[lo[idx] + j]
                d = np.linalg.norm(ta[cand] - tb[idx], axis=-1)
                better = d < best_d[idx]
                best_d[idx[better]] = d[better]
                best[idx[better]] = cand[better]
    ok = best_d <= tolerance_texels
    if not ok.any():
        return {"mae": float("nan"), "matched_fraction": 0.0, "pixels": 0}
    diff = np.abs(rgb_b[ok] - rgb_a[best[ok]])
    return {"mae": float(diff.mean()), "matched_fraction": float(ok.mean()), "pixels": int(ok.sum())}
