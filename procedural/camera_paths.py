"""Camera paths: static, orbit, dolly (with easing) and a walkthrough spline, each with a look-at
target, evaluated on every frame from ``frame_start - 1`` to ``frame_end + 1``. Pure numpy.

The path parameter is ``t = (frame - frame_start) / (frame_end - frame_start)`` (0 at the first
frame, 1 at the last; a one-frame shot uses a span of 1). The frames on either side (t < 0, t > 1)
continue the motion smoothly: easings are extended linearly with their end slope (a path that
eases in was at rest before it started), a walkthrough continues along its end tangents.

Rotations are camera-to-world in Blender's camera axes: the camera looks down its local -Z, local
+Y is up, and there is no roll (local +X is horizontal).

Entry point: :func:`camera_track`.
"""

from __future__ import annotations

import math

import numpy as np

from greybox.errors import InputError
from scenes.scene_data import CameraTrack
from scenes.template_schema import CameraSpec, DollyPath, OrbitPath, StaticPath, WalkthroughPath

WORLD_UP = np.array([0.0, 0.0, 1.0])
SPLINE_SAMPLES_PER_SEGMENT = 512


# --------------------------------------------------------------------------------------------
# Easing
# --------------------------------------------------------------------------------------------

_EASINGS = {
    # name: (e(t), e'(t)) on [0, 1]
    "linear": (lambda t: t, lambda t: np.ones_like(t)),
    "ease_in": (lambda t: t * t, lambda t: 2.0 * t),
    "ease_out": (lambda t: t * (2.0 - t), lambda t: 2.0 - 2.0 * t),
    "ease_in_out": (lambda t: t * t * (3.0 - 2.0 * t), lambda t: 6.0 * t * (1.0 - t)),
}


def ease(name: str, t) -> np.ndarray:
    """The easing curve on [0, 1], extended past both ends linearly with its end slope (C1)."""
    f, df = _EASINGS[name]
    t = np.asarray(t, dtype=np.float64)
    inside = np.clip(t, 0.0, 1.0)
    out = f(inside)
    zero, one = np.zeros(1), np.ones(1)
    out = np.where(t < 0.0, f(zero)[0] + df(zero)[0] * t, out)
    out = np.where(t > 1.0, f(one)[0] + df(one)[0] * (t - 1.0), out)
    return out


# --------------------------------------------------------------------------------------------
# Walkthrough spline
# --------------------------------------------------------------------------------------------


class WalkthroughSpline:
    """A centripetal Catmull-Rom spline through ``points`` (N >= 3), parametrised by arc length.

    ``position(s)`` for s in [0, length] lies on the spline (a dense polyline of it); past the ends
    it continues along the end tangents. ``point_arc_lengths[i]`` is where it passes ``points[i]``.
    """

    def __init__(self, points, samples_per_segment: int = SPLINE_SAMPLES_PER_SEGMENT):
        p = np.asarray(points, dtype=np.float64)
        n = len(p)
        if n < 3:
            raise InputError(f"camera.path.points: a walkthrough needs at least 3 points, got {n}")
        for i in range(1, n):
            if np.linalg.norm(p[i] - p[i - 1]) < 1e-6:
                raise InputError(
                    f"camera.path.points.{i} = {p[i].tolist()}: repeats the previous point; consecutive points must differ"
                )
        controls = np.concatenate([[2 * p[0] - p[1]], p, [2 * p[-1] - p[-2]]])
        pieces = []
        for i in range(n - 1):
            seg = self._segment(controls[i:i + 4], samples_per_segment)
            pieces.append(seg if i == 0 else seg[1:])
        dense = np.concatenate(pieces)
        steps = np.linalg.norm(np.diff(dense, axis=0), axis=1)
        keep = np.concatenate([[True], steps > 1e-12])
        dense = dense[keep]
        self.dense = dense
        self.arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        self.length = float(self.arc[-1])
        self.points = p
        self.point_arc_lengths = np.array([self.arc[np.argmin(np.linalg.norm(dense - q, axis=1))] for q in p])
        self.start_tangent = self._unit(dense[1] - dense[0])
        self.end_tangent = self._unit(dense[-1] - dense[-2])

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    @staticmethod
    def _segment(q: np.ndarray, samples: int) -> np.ndarray:
        """Barry-Goldman evaluation of the centripetal segment from q[1] to q[2]."""
        t0 = 0.0
        t1 = t0 + math.sqrt(float(np.linalg.norm(q[1] - q[0])))
        t2 = t1 + math.sqrt(float(np.linalg.norm(q[2] - q[1])))
        t3 = t2 + math.sqrt(float(np.linalg.norm(q[3] - q[2])))
        u = np.linspace(t1, t2, samples + 1)[:, None]

        def lerp(a, b, ta, tb):
            return (tb - u) / (tb - ta) * a + (u - ta) / (tb - ta) * b

        a1 = lerp(q[0], q[1], t0, t1)
        a2 = lerp(q[1], q[2], t1, t2)
        a3 = lerp(q[2], q[3], t2, t3)
        b1 = lerp(a1, a2, t0, t2)
        b2 = lerp(a2, a3, t1, t3)
        c = lerp(b1, b2, t1, t2)
        c[0], c[-1] = q[1], q[2]
        return c

    def position(self, s) -> np.ndarray:
        """Points at arc lengths ``s`` (any shape) -> (..., 3)."""
        s = np.asarray(s, dtype=np.float64)
        flat = s.reshape(-1)
        out = np.empty((len(flat), 3))
        for axis in range(3):
            out[:, axis] = np.interp(flat, self.arc, self.dense[:, axis])
        before, after = flat < 0.0, flat > self.length
        out[before] = self.dense[0] + flat[before, None] * self.start_tangent
        out[after] = self.dense[-1] + (flat[after, None] - self.length) * self.end_tangent
        return out.reshape(s.shape + (3,))


# --------------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------------


def look_at_rotation(position, target) -> np.ndarray:
    """Camera-to-world rotation (Blender camera axes, no roll) looking from ``position`` at ``target``."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("the camera's target coincides with its position")
    forward = forward / norm
    right = np.cross(forward, WORLD_UP)
    rn = np.linalg.norm(right)
    if rn < 1e-6:
        raise ValueError("the camera looks straight up or down; its roll is undefined")
    right = right / rn
    up = np.cross(right, forward)
    return np.column_stack([right, up, -forward])


# --------------------------------------------------------------------------------------------
# The track
# --------------------------------------------------------------------------------------------


def path_parameter(frames: np.ndarray, frame_start: int, frame_end: int) -> np.ndarray:
    span = max(frame_end - frame_start, 1)
    return (frames.astype(np.float64) - frame_start) / span


def path_positions_and_targets(path, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera positions (N, 3) and look-at targets (N, 3) at path parameters ``t`` (N,)."""
    n = len(t)
    if isinstance(path, StaticPath):
        return np.tile(np.asarray(path.position, float), (n, 1)), np.tile(np.asarray(path.look_at, float), (n, 1))
    if isinstance(path, OrbitPath):
        e = ease(path.easing, t)
        angle = np.radians(path.start_angle + (path.end_angle - path.start_angle) * e)
        c = np.asarray(path.center, float)
        positions = np.column_stack([c[0] + path.radius * np.cos(angle), c[1] + path.radius * np.sin(angle),
                                     np.full(n, float(path.height))])
        target = c if path.look_at is None else np.asarray(path.look_at, float)
        return positions, np.tile(target, (n, 1))
    if isinstance(path, DollyPath):
        e = ease(path.easing, t)[:, None]
        a, b = np.asarray(path.start, float), np.asarray(path.end, float)
        return a + (b - a) * e, np.tile(np.asarray(path.look_at, float), (n, 1))
    if isinstance(path, WalkthroughPath):
        spline = WalkthroughSpline(path.points)
        s = t * spline.length
        positions = spline.position(s)
        if path.look_at is not None:
            targets = np.tile(np.asarray(path.look_at, float), (n, 1))
        else:
            targets = spline.position(s + path.look_ahead)
        return positions, targets
    raise TypeError(f"unknown camera path {type(path).__name__}")


def camera_track(camera: CameraSpec, frame_start: int, frame_end: int) -> CameraTrack:
    """Pose on every frame from ``frame_start - 1`` to ``frame_end + 1``.

    Raises InputError naming ``camera.path`` when a frame's view is undefined (target at the
    camera, or looking straight up or down).
    """
    # 1. Check inputs
    if frame_end < frame_start:
        raise InputError(f"render.frame_end = {frame_end}: must be >= frame_start {frame_start}")
    if camera.clip_end <= camera.clip_start:
        raise InputError(f"camera.clip_end = {camera.clip_end}: must be greater than clip_start {camera.clip_start}")

    # 2. Positions and targets along the path
    frames = np.arange(frame_start - 1, frame_end + 2, dtype=np.int64)
    t = path_parameter(frames, frame_start, frame_end)
    positions, targets = path_positions_and_targets(camera.path, t)

    # 3. Orientations
    rotations = np.empty((len(frames), 3, 3))
    for i, frame in enumerate(frames):
        try:
            rotations[i] = look_at_rotation(positions[i], targets[i])
        except ValueError as err:
            raise InputError(
                f"camera.path ({camera.path.kind}): at frame {int(frame)} {err} "
                f"(camera {np.round(positions[i], 4).tolist()}, target {np.round(targets[i], 4).tolist()}); "
                "move the look_at point or the path"
            ) from None
    return CameraTrack(
        frames=frames, positions=positions.astype(np.float64), rotations=rotations,
        focal_lengths_mm=float(camera.focal_length), sensor_width_mm=float(camera.sensor_width), sensor_fit="HORIZONTAL",
        clip_start=float(camera.clip_start), clip_end=float(camera.clip_end),
    )
