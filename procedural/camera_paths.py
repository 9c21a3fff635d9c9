"""Camera paths: static, orbit, dolly (with easing) and a walkthrough spline, each with a look-at
target, evaluated on every frame from ``frame_start - 1`` to ``frame_end + 1``. Pure numpy.

The path parameter is ``t = (frame - frame_start) / (frame_end - frame_start)`` (0 at the first
frame, 1 at the last; a one-frame shot uses a span of 1). The frames on either side (t < 0, t > 1)
continue the motion smoothly: easings are extended linearly with their end slope (a path that
eases in was at rest before it started), a walkthrough continues along its end tangents.

Rotations are camera-to-world in Blender's camera axes: the camera looks down its local -Z, local
+Y is up, and there is no roll: local +X is perpendicular to ``camera.up`` (default world +Z, so
+X is horizontal). A frame that looks along ``up`` (a plan view straight down) keeps the image-up
of its nearest frame that does not; when none does, the world axis next in Z, Y, X is up (+Y for
a camera looking straight down with the default up: north at the top). No view direction is
refused; a frame whose look-at target is its position is, naming the frames.

The lens: ``camera.type`` (perspective, or orthographic with ``ortho_scale`` metres across the
width), ``shift_x`` and ``shift_y`` (fractions of the width), the same on every frame.

A ``tour`` path is planned through the floor plan (:mod:`procedural.camera_tours`); the builder
passes its route to :func:`camera_track`.

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


def look_at_rotation(position, target, up=WORLD_UP) -> np.ndarray:
    """Camera-to-world rotation (Blender camera axes, no roll about ``up``) looking from ``position``
    at ``target``. Raises ValueError when the target is the position or the view runs along ``up``."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("the camera's target coincides with its position")
    forward = forward / norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    rn = np.linalg.norm(right)
    if rn < 1e-6:
        raise ValueError("the camera looks along its up direction; its roll is undefined")
    right = right / rn
    image_up = np.cross(right, forward)
    return np.column_stack([right, image_up, -forward])


FALLBACK_UPS = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))


def orientations(positions: np.ndarray, targets: np.ndarray, up=None) -> tuple[np.ndarray, list[int]]:
    """Rotations (N, 3, 3) looking from each position at its target, with no roll about ``up``
    (default +Z); and the indices whose target coincides with the position (their rotation is the
    nearest defined one). A view along ``up`` takes the image-up of the nearest frame whose view is
    not along it, else the first of +Z, +Y, +X that is not along it (see the module docstring)."""
    up = WORLD_UP if up is None else np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    n = len(positions)
    forward = np.asarray(targets, dtype=np.float64) - np.asarray(positions, dtype=np.float64)
    norms = np.linalg.norm(forward, axis=1)
    coincident = [int(i) for i in np.flatnonzero(norms < 1e-9)]
    forward = forward / np.where(norms < 1e-9, 1.0, norms)[:, None]
    rotations = np.full((n, 3, 3), np.nan)
    along_up = []
    for i in range(n):
        if i in coincident:
            continue
        right = np.cross(forward[i], up)
        if np.linalg.norm(right) < 1e-6:
            along_up.append(i)
            continue
        rotations[i] = look_at_rotation(positions[i], targets[i], up)
    defined = [i for i in range(n) if i not in coincident and i not in along_up]
    for i in along_up:  # the image-up of the nearest frame that has one, else a world axis
        if defined:
            j = min(defined, key=lambda k: (abs(k - i), k))
            image_up = rotations[j][:, 1]
        else:
            image_up = next(a for a in FALLBACK_UPS if np.linalg.norm(np.cross(forward[i], a)) > 1e-6)
        right = np.cross(forward[i], image_up)
        if np.linalg.norm(right) < 1e-6:
            image_up = next(a for a in FALLBACK_UPS if np.linalg.norm(np.cross(forward[i], a)) > 1e-6)
            right = np.cross(forward[i], image_up)
        right /= np.linalg.norm(right)
        rotations[i] = np.column_stack([right, np.cross(right, forward[i]), -forward[i]])
    known = [i for i in range(n) if i not in coincident]
    for i in coincident:
        if known:
            rotations[i] = rotations[min(known, key=lambda k: (abs(k - i), k))]
    return rotations, coincident


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


def camera_track(camera: CameraSpec, frame_start: int, frame_end: int, *, tour=None) -> CameraTrack:
    """Pose and lens on every frame from ``frame_start - 1`` to ``frame_end + 1``.

    ``tour``: the planned route of a ``tour`` path (:class:`procedural.camera_tours.TourRoute`).
    Raises InputError naming ``camera.path`` and the frames whose target coincides with the camera
    (the extra frames before and after the shot take their neighbour's view instead).
    """
    # 1. Check inputs
    if frame_end < frame_start:
        raise InputError(f"render.frame_end = {frame_end}: must be >= frame_start {frame_start}")
    if camera.clip_end <= camera.clip_start:
        raise InputError(f"camera.clip_end = {camera.clip_end}: must be greater than clip_start {camera.clip_start}")
    if camera.path.kind == "tour" and tour is None:
        raise InputError("camera.path.kind = 'tour': the tour is planned through the floor plan by the scene builder "
                         "(procedural.scene_builder.build_scene)")

    # 2. Positions and targets along the path
    frames = np.arange(frame_start - 1, frame_end + 2, dtype=np.int64)
    t = path_parameter(frames, frame_start, frame_end)
    if tour is not None:
        positions, targets = tour.positions_and_targets(t, camera.path.look_ahead)
    else:
        positions, targets = path_positions_and_targets(camera.path, t)

    # 3. Orientations
    rotations, coincident = orientations(positions, targets, camera.up)
    shot = [i for i in coincident if frame_start <= frames[i] <= frame_end]
    if shot or len(coincident) == len(frames):
        from procedural.camera_checks import frame_ranges

        i = (shot or coincident)[0]
        raise InputError(
            f"camera.path ({camera.path.kind}): the camera's target coincides with its position on frames "
            f"{frame_ranges([int(frames[k]) for k in (shot or coincident)])} (camera {np.round(positions[i], 4).tolist()}); "
            "move the look_at point or the path"
        )
    n = len(frames)
    return CameraTrack(
        frames=frames, positions=positions.astype(np.float64), rotations=rotations,
        focal_lengths_mm=float(camera.focal_length), sensor_width_mm=float(camera.sensor_width), sensor_fit="HORIZONTAL",
        clip_start=float(camera.clip_start), clip_end=float(camera.clip_end),
        shifts=np.tile([float(camera.shift_x), float(camera.shift_y)], (n, 1)),
        type=camera.type, ortho_scales=None if camera.ortho_scale is None else float(camera.ortho_scale),
    )
