"""The disparity range (1/metres) that normalises the depth control images of a shot.

``shot`` mode computes it from the scene's geometry and the whole camera path (frame_start ..
frame_end), never from rendered frames, so a run that renders frames 1-12 and one that renders
13-24 write the same grey for the same wall. ``frame`` mode normalises each frame alone
(:func:`passes.control_images.per_frame_disparity_range`); ``fixed`` takes near/far metres from
the template (``passes.depth_range``).
"""

from __future__ import annotations

import weakref

import numpy as np

from scenes.scene_data import Scene

DEFAULT_SAMPLES = 10000
# Point-frame projections the range may take (memory and time stay bounded for any shot length):
# a shot with more frames than fit is sampled at evenly spaced frames, first and last included.
# The living room (about 14,000 points with its vertices) uses every frame of shots up to ~1,100
# frames; about 3 s and 100 MB on one core at the limit.
MAX_PROJECTIONS = 16_000_000
_BLOCK_PROJECTIONS = 1_000_000  # projected at once (about 8 MB per float64 temporary)
# R2 low-discrepancy sequence (Roberts 2018): deterministic, evenly spread barycentric samples.
_R2_PHI = 1.32471795724474602596
_R2_A = np.array([1.0 / _R2_PHI, 1.0 / _R2_PHI**2])


def surface_samples(scene: Scene, count: int = DEFAULT_SAMPLES) -> np.ndarray:
    """``count`` points spread over every triangle of the scene in proportion to area (deterministic, no rng)."""
    tris = [np.asarray(o.vertices, dtype=np.float64)[np.asarray(o.triangles)] for o in scene.objects if len(o.triangles)]
    if not tris:
        return np.zeros((0, 3))
    corners = np.concatenate(tris)  # (T, 3, 3)
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)
    cumulative = np.cumsum(area)
    total = cumulative[-1]
    if total <= 0:
        return corners.reshape(-1, 3)
    k = np.arange(count, dtype=np.float64)
    tri_index = np.searchsorted(cumulative, (k + 0.5) / count * total, side="right").clip(0, len(area) - 1)
    uv = np.mod(0.5 + k[:, None] * _R2_A, 1.0)
    fold = uv.sum(axis=1) > 1.0
    uv[fold] = 1.0 - uv[fold]
    points = corners[tri_index, 0] + uv[:, :1] * e1[tri_index] + uv[:, 1:] * e2[tri_index]
    # every vertex too, so small objects near the camera are never missed
    vertices = np.concatenate([np.asarray(o.vertices, dtype=np.float64) for o in scene.objects])
    return np.concatenate([points, vertices])


def _disparity_weighted_percentile(sorted_disp: np.ndarray, percentile: float) -> float:
    """Percentile of sorted disparities weighted by disparity^2 (the weight is a function of the
    value, so ties need no stable order)."""
    weights = np.cumsum(sorted_disp.astype(np.float64) ** 2)
    target = percentile / 100.0 * weights[-1]
    return float(sorted_disp[min(int(np.searchsorted(weights, target, side="left")), len(sorted_disp) - 1)])


_RANGE_CACHE: dict[tuple[int, float, int], tuple[weakref.ref, tuple[float, float]]] = {}


def range_frames(frame_start: int, frame_end: int, points: int, budget: int = MAX_PROJECTIONS) -> np.ndarray:
    """The frames the shot's range projects ``points`` points into: every frame from ``frame_start``
    to ``frame_end`` while ``points x frames`` fits ``budget``, else evenly spaced frames (first
    and last included) that fit."""
    count = frame_end - frame_start + 1
    fit = max(2, budget // max(points, 1))
    if count <= fit:
        return np.arange(frame_start, frame_end + 1, dtype=np.int64)
    return np.unique(np.linspace(frame_start, frame_end, fit).round().astype(np.int64))


def shot_disparity_range(scene: Scene, percentile: float = 99.5, samples: int = DEFAULT_SAMPLES) -> tuple[float, float]:
    """(lo, hi) disparity over the whole shot, from geometry: surface samples projected into every
    frame from ``frame_start`` to ``frame_end`` (evenly spaced frames of a shot too long for
    :data:`MAX_PROJECTIONS`), kept inside the view volume (on screen, between the clip planes;
    orthographic cameras project without a divide, their depth is planar too);
    lo = the smallest disparity (farthest point), hi = the ``percentile`` of disparity
    weighted by 1/Z^2 (each sample's share of the screen), so a few points close to the lens do not
    wash out the rest. Occlusion is ignored (points behind walls can only lower lo).
    Cached per scene object (a warm worker asks once per chunk)."""
    key = (id(scene), float(percentile), int(samples))
    cached = _RANGE_CACHE.get(key)
    if cached is not None and cached[0]() is scene:
        return cached[1]
    points = surface_samples(scene, samples)
    track = scene.camera
    frames = range_frames(scene.frame_start, scene.frame_end, len(points))
    px, py, pz = (points[:, axis : axis + 1] for axis in range(3))  # (N, 1) each
    kept: list[np.ndarray] = []
    block = max(1, _BLOCK_PROJECTIONS // max(len(points), 1))
    for first in range(0, len(frames), block):
        w2c = np.stack([track.world_to_camera_opencv(int(f)) for f in frames[first : first + block]])  # (B, 4, 4)
        k = np.stack([track.intrinsics(int(f), scene.width, scene.height) for f in frames[first : first + block]])  # (B, 3, 3)
        # camera coordinates (N, B), element by element (no BLAS: the same bits whatever the block)
        cx, cy, z = (px * w2c[:, axis, 0] + py * w2c[:, axis, 1] + pz * w2c[:, axis, 2] + w2c[:, axis, 3] for axis in range(3))
        if track.orthographic:  # no perspective divide (K's diagonal is pixels per metre)
            x = cx * k[:, 0, 0] + k[:, 0, 2]
            y = cy * k[:, 1, 1] + k[:, 1, 2]
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = cx / z * k[:, 0, 0] + k[:, 0, 2]
                y = cy / z * k[:, 1, 1] + k[:, 1, 2]
        keep = (z >= track.clip_start) & (z <= track.clip_end) & (x >= 0) & (x <= scene.width) & (y >= 0) & (y <= scene.height)
        kept.append((1.0 / z[keep]).astype(np.float32))
    disp = np.sort(np.concatenate(kept))
    if disp.size == 0:
        result = (1.0 / track.clip_end, 1.0 / track.clip_start)
    else:
        lo = float(disp[0])
        hi = _disparity_weighted_percentile(disp, percentile)
        if hi <= lo:
            hi = lo + max(lo, 1e-6) * 1e-3
        result = (lo, hi)
    for stale in [k_ for k_, (ref, _) in _RANGE_CACHE.items() if ref() is None]:
        del _RANGE_CACHE[stale]
    _RANGE_CACHE[key] = (weakref.ref(scene), result)
    return result


def fixed_disparity_range(near: float, far: float) -> tuple[float, float]:
    """(lo, hi) = (1/far, 1/near) for depth_normalization = 'fixed' with depth_range = [near, far] metres."""
    if not (0 < near < far):
        raise ValueError(f"depth range [{near}, {far}] must satisfy 0 < near < far")
    return 1.0 / far, 1.0 / near


def template_disparity_range(scene: Scene, passes_spec) -> tuple[float, float] | None:
    """The range a template's ``[passes]`` asks for: shot or fixed; ``None`` for per-frame normalisation."""
    mode = passes_spec.depth_normalization
    if mode == "shot":
        return shot_disparity_range(scene)
    if mode == "fixed":
        near, far = passes_spec.depth_range
        return fixed_disparity_range(near, far)
    return None
