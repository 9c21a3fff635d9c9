"""Camera paths: exact orbit and dolly geometry, easing, the walkthrough spline (through its points,
at constant speed), Blender camera axes without roll, the extra frame at each end, and a camera
that is never inside a wall or a piece of furniture on any frame of the bundled templates."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from greybox.errors import InputError
from procedural.camera_paths import WalkthroughSpline, camera_track, ease, look_at_rotation
from procedural.scene_builder import build_scene
from scenes.template_loading import bundled_templates, load_template
from scenes.template_schema import CameraSpec
from room_oracles import SHELL_KINDS, furniture as furniture_of, inside, plan_rooms, point_triangles_distance

BUNDLED = [name for name, _ in bundled_templates()]


def _camera(path: dict, **extra) -> CameraSpec:
    return CameraSpec.model_validate({"path": path, **extra})


def _check_rotations(rotations: np.ndarray, up=(0.0, 0.0, 1.0)):
    """Orthonormal, right-handed, no roll about ``up``: the right vector is perpendicular to it and
    the image's up does not point against it (it is perpendicular only when the view runs along it)."""
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    for r in rotations:
        assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert math.isclose(np.linalg.det(r), 1.0, abs_tol=1e-12)
        assert abs(r[:, 0] @ up) < 1e-12, "roll: the camera's right vector is not perpendicular to up"
        along = abs(r[:, 2] @ up) > 1 - 1e-9
        assert r[:, 1] @ up > 0.0 or (along and abs(r[:, 1] @ up) < 1e-12), "the camera's up vector points down"


def test_blender_camera_axes():
    r = look_at_rotation([0.0, 0.0, 0.0], [0.0, 5.0, 0.0])  # looking north
    assert np.allclose(r[:, 0], [1, 0, 0])  # right = east
    assert np.allclose(r[:, 1], [0, 0, 1])  # up
    assert np.allclose(r[:, 2], [0, -1, 0])  # the camera looks down its -Z
    with pytest.raises(ValueError):
        look_at_rotation([0, 0, 0], [0, 0, 3])


def test_orbit_radius_and_height_are_exact():
    path = {"kind": "orbit", "center": [1.0, 2.0, 0.5], "radius": 1.7, "height": 1.3,
            "start_angle": -40.0, "end_angle": 200.0, "easing": "linear"}
    track = camera_track(_camera(path), 1, 30)
    assert track.frames.tolist() == list(range(0, 32))
    d = track.positions[:, :2] - [1.0, 2.0]
    assert np.allclose(np.hypot(d[:, 0], d[:, 1]), 1.7, atol=1e-12, rtol=0)
    assert np.all(track.positions[:, 2] == 1.3)
    # start and end angles at the first and last frame (0 = +x, counter-clockwise)
    start, end = d[track.index(1)], d[track.index(30)]
    assert math.isclose(math.degrees(math.atan2(start[1], start[0])), -40.0, abs_tol=1e-9)
    assert math.isclose(math.degrees(math.atan2(end[1], end[0])) % 360, 200.0, abs_tol=1e-9)
    # linear: equal angular steps, continued past both ends
    angles = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    assert np.allclose(np.diff(angles), np.radians(240.0 / 29), atol=1e-12)
    # looks at the centre by default
    forward = -track.rotations[:, :, 2]
    to_centre = np.array([1.0, 2.0, 0.5]) - track.positions
    to_centre /= np.linalg.norm(to_centre, axis=1, keepdims=True)
    assert np.allclose(forward, to_centre, atol=1e-12)
    _check_rotations(track.rotations)


@pytest.mark.parametrize("easing", ["linear", "ease_in", "ease_out", "ease_in_out"])
def test_dolly_hits_its_endpoints(easing):
    path = {"kind": "dolly", "start": [0.5, 0.5, 1.2], "end": [3.0, 2.0, 1.6], "look_at": [4.0, 4.0, 0.8], "easing": easing}
    track = camera_track(_camera(path), 5, 20)
    assert np.allclose(track.positions[track.index(5)], [0.5, 0.5, 1.2], atol=1e-12)
    assert np.allclose(track.positions[track.index(20)], [3.0, 2.0, 1.6], atol=1e-12)
    assert len(track.frames) == 18 and track.frames[0] == 4 and track.frames[-1] == 21
    # on the line through start and end
    d = np.array([2.5, 1.5, 0.4])
    rel = track.positions - [0.5, 0.5, 1.2]
    assert np.allclose(np.cross(rel, d), 0.0, atol=1e-12)
    _check_rotations(track.rotations)


def test_easing_curves():
    t = np.linspace(0, 1, 101)
    for name in ("linear", "ease_in", "ease_out", "ease_in_out"):
        e = ease(name, t)
        assert e[0] == 0.0 and e[-1] == 1.0 and np.all(np.diff(e) >= 0)
    h = 1e-6
    # ease_in_out has zero velocity at both ends, and extends smoothly (C1) past them
    assert abs(ease("ease_in_out", h) - ease("ease_in_out", 0.0)) / h < 1e-5
    assert abs(ease("ease_in_out", 1.0) - ease("ease_in_out", 1.0 - h)) / h < 1e-5
    assert ease("ease_in_out", -0.1) == 0.0 and ease("ease_in_out", 1.1) == 1.0
    assert math.isclose(ease("linear", -0.1), -0.1) and math.isclose(ease("linear", 1.1), 1.1)
    assert math.isclose((ease("ease_in", 1.0 + h) - ease("ease_in", 1.0)) / h, 2.0, rel_tol=1e-6)
    assert math.isclose((ease("ease_out", 0.0) - ease("ease_out", -h)) / h, 2.0, rel_tol=1e-6)


def test_ease_in_out_dolly_starts_and_ends_at_rest():
    path = {"kind": "dolly", "start": [0.0, 0.0, 1.5], "end": [4.0, 0.0, 1.5], "look_at": [2.0, 5.0, 1.0]}
    track = camera_track(_camera(path), 1, 48)
    steps = np.linalg.norm(np.diff(track.positions, axis=0), axis=1)
    assert steps[0] == 0.0 and steps[-1] == 0.0  # frames 0->1 and 48->49: at rest
    assert steps[1] < 0.05 * steps.max() and steps[-2] < 0.05 * steps.max()
    assert np.argmax(steps) in (len(steps) // 2 - 1, len(steps) // 2)


def test_walkthrough_passes_through_its_points_at_constant_speed():
    points = [[0.5, 0.5, 1.5], [2.0, 1.0, 1.6], [2.5, 2.5, 1.5], [1.0, 3.0, 1.4]]
    spline = WalkthroughSpline(points)
    assert np.allclose(spline.position(spline.point_arc_lengths), points, atol=1e-12)
    assert spline.point_arc_lengths[0] == 0.0 and math.isclose(spline.point_arc_lengths[-1], spline.length)
    # the polyline distance between points is a lower bound of the arc length
    chord = sum(np.linalg.norm(np.subtract(points[i + 1], points[i])) for i in range(3))
    assert spline.length >= chord

    track = camera_track(_camera({"kind": "walkthrough", "points": points}), 1, 60)
    assert np.allclose(track.positions[track.index(1)], points[0], atol=1e-12)
    assert np.allclose(track.positions[track.index(60)], points[-1], atol=1e-12)
    steps = np.linalg.norm(np.diff(track.positions, axis=0), axis=1)
    expected = spline.length / 59
    assert np.allclose(steps, expected, rtol=5e-3), (steps.min(), steps.max(), expected)
    # looking along the path, look_ahead (0.5 m) ahead, when no look_at is given
    forward = -track.rotations[:, :, 2]
    s = (track.frames - 1) / 59 * spline.length
    ahead = spline.position(s + 0.5) - track.positions
    assert np.allclose(forward, ahead / np.linalg.norm(ahead, axis=1, keepdims=True), atol=1e-9)
    _check_rotations(track.rotations)


def test_walkthrough_look_at_and_smooth_ends():
    points = [[0.5, 0.5, 1.5], [2.0, 1.0, 1.6], [2.5, 2.5, 1.5]]
    track = camera_track(_camera({"kind": "walkthrough", "points": points, "look_at": [1.0, 2.5, 0.8]}), 1, 24)
    forward = -track.rotations[:, :, 2]
    to_target = np.array([1.0, 2.5, 0.8]) - track.positions
    assert np.allclose(forward, to_target / np.linalg.norm(to_target, axis=1, keepdims=True), atol=1e-12)
    # the frames before the first and after the last continue the motion at the same speed
    steps = np.linalg.norm(np.diff(track.positions, axis=0), axis=1)
    assert np.allclose(steps[0], steps[1], rtol=0.02) and np.allclose(steps[-1], steps[-2], rtol=0.02)


def test_static_and_single_frame():
    track = camera_track(_camera({"kind": "static", "position": [1, 2, 3], "look_at": [1, 5, 3]}), 7, 7)
    assert track.frames.tolist() == [6, 7, 8]
    assert np.allclose(track.positions, [1, 2, 3])
    assert np.allclose(track.rotations[1], look_at_rotation([1, 2, 3], [1, 5, 3]))


def test_tracks_are_deterministic():
    path = {"kind": "walkthrough", "points": [[0, 0, 1.5], [1, 1, 1.5], [2, 0, 1.5], [3, 1, 1.6]]}
    a = camera_track(_camera(path), 1, 40)
    b = camera_track(_camera(path), 1, 40)
    assert a.positions.tobytes() == b.positions.tobytes() and a.rotations.tobytes() == b.rotations.tobytes()


def test_undefined_views_are_input_errors():
    with pytest.raises(InputError, match="camera.path"):
        camera_track(_camera({"kind": "static", "position": [1, 1, 1], "look_at": [1, 1, 1]}), 1, 2)
    # looking straight down is a plan view, not an error: +Y (north) is up in the image
    down = camera_track(_camera({"kind": "static", "position": [1, 1, 1], "look_at": [1, 1, 0]}), 1, 2)
    assert np.allclose(down.rotations[:, :, 1], [0.0, 1.0, 0.0]) and np.allclose(down.rotations[:, :, 2], [0.0, 0.0, 1.0])
    with pytest.raises(InputError, match=r"camera\.path\.points\.2"):
        camera_track(_camera({"kind": "walkthrough", "points": [[0, 0, 1], [1, 0, 1], [1, 0, 1]]}), 1, 2)


# --------------------------------------------------------------------------------------------
# Bundled templates: the camera stays in the open and sees the furniture
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _bundled(name: str, seed: int | None = None):
    loaded = load_template(name, [] if seed is None else [f"seed={seed}"])
    return loaded.template, build_scene(loaded.template)


@pytest.mark.parametrize("name, seed", [(n, None) for n in BUNDLED] + [(n, s) for n in BUNDLED for s in range(4)])
def test_camera_never_inside_a_wall_or_furniture(name, seed):
    """Every frame, frame_start - 1 .. frame_end + 1, of the bundled templates (and a few other seeds):
    inside a room (or walking through a door), clear of every wall, door and window mesh, and
    outside the bounds of every other object."""
    template, scene = _bundled(name, seed)
    track = scene.camera
    assert track.frames[0] == template.render.frame_start - 1 and track.frames[-1] == template.render.frame_end + 1
    margin = max(track.clip_start, 0.1)  # clip_start at least, and a little body room
    rooms, _, height = plan_rooms(template)
    shell = [o for o in scene.objects if o.kind in SHELL_KINDS]
    others = [o for o in scene.objects if o.kind not in SHELL_KINDS]
    outside_allowed = template.camera.allow_outside or template.generator.kind == "building"  # plan views, exteriors
    for i, frame in enumerate(track.frames):
        p = track.positions[i]
        if not outside_allowed:
            assert any(inside(poly, p[0], p[1]) for _, poly in rooms), f"frame {frame}: camera {p} outside every room"
            assert margin <= p[2] <= height - margin, f"frame {frame}: camera {p} in the floor or the ceiling"
        for obj in shell:
            lo, hi = obj.bounds
            if np.all(p > lo - margin) and np.all(p < hi + margin):
                d = point_triangles_distance(p, obj.vertices, obj.triangles)
                assert d >= margin, f"frame {frame}: camera {p} {d:.3f} m from {obj.name}"
        for obj in others:
            lo, hi = obj.bounds
            within = np.all(p > lo - margin) and np.all(p < hi + margin)
            assert not within, f"frame {frame}: camera {p} within {margin} m of {obj.name}'s bounds"
    _check_rotations(track.rotations, template.camera.up or (0.0, 0.0, 1.0))


@pytest.mark.parametrize("name", BUNDLED)
def test_camera_sees_the_furniture(name):
    template, scene = _bundled(name)
    furniture = [o for o in furniture_of(scene) if o.kind not in ("rug", "painting")]
    w, h = scene.width, scene.height
    for frame in scene.camera.frames:
        visible = 0
        for obj in furniture:
            lo, hi = obj.bounds
            xy, z = scene.camera.project(int(frame), ((lo + hi) / 2)[None], w, h)
            if z[0] > scene.camera.clip_start and 0 <= xy[0, 0] < w and 0 <= xy[0, 1] < h:
                visible += 1
        assert visible >= 3, f"frame {frame}: only {visible} pieces of furniture in view"


def test_views_along_up_keep_the_nearest_roll_and_the_lens_keys_reach_the_track():
    # a linear dolly over the target: the middle frame looks straight down, along the default up;
    # it keeps the roll of the frame before (image up +Y, right +X: the nearer of two equally near);
    # after it the camera has turned round (no roll about +Z: image up towards +Z again)
    dolly = camera_track(_camera({"kind": "dolly", "start": [0, -1, 5], "end": [0, 1, 5], "look_at": [0, 0, 0],
                                  "easing": "linear"}), 1, 3)
    middle = dolly.rotations[dolly.index(2)]
    np.testing.assert_allclose(middle[:, 2], [0, 0, 1], atol=1e-12)  # looking down -Z
    np.testing.assert_allclose(middle[:, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(middle[:, 1], [0, 1, 0], atol=1e-12)
    assert dolly.rotations[dolly.index(1)][:, 1] @ [0, 1, 0] > 0.9 and dolly.rotations[dolly.index(3)][:, 1] @ [0, -1, 0] > 0.9
    # an explicit up: a plan view with +X up in the image (east at the top), right = -Y
    east_up = camera_track(_camera({"kind": "static", "position": [1, 1, 9], "look_at": [1, 1, 0]}, up=[1, 0, 0]), 1, 1)
    np.testing.assert_allclose(east_up.rotations[1][:, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(east_up.rotations[1][:, 0], [0, -1, 0], atol=1e-12)
    ortho = camera_track(_camera({"kind": "static", "position": [0, -5, 1], "look_at": [0, 0, 1]}, type="orthographic",
                                 ortho_scale=12.0, shift_x=0.1, shift_y=-0.2), 1, 4)
    assert ortho.type == "orthographic" and np.all(ortho.ortho_scales == 12.0)
    np.testing.assert_array_equal(ortho.shifts, np.tile([0.1, -0.2], (6, 1)))
    k = ortho.intrinsics(1, 200, 100)  # s = 200 px / 12 m; the principal point moves left by 0.1 W and down by 0.2 W
    np.testing.assert_allclose(k, [[200 / 12, 0, 100 - 20], [0, 200 / 12, 50 - 40], [0, 0, 1]])
    # a point 3 m right of the axis and 1 m up, whatever its depth, lands s * (3, -1) from the principal point
    for depth in (2.0, 7.0):
        xy, z = ortho.project(1, np.array([[3.0, -5.0 + depth, 2.0]]), 200, 100)
        np.testing.assert_allclose(xy[0], [80 + 3 * 200 / 12, 10 - 200 / 12], atol=1e-9)
        assert math.isclose(z[0], depth)


@pytest.mark.parametrize("extra, key", [
    ({"type": "orthographic"}, "ortho_scale"),
    ({"ortho_scale": 5.0}, "type = 'orthographic'"),
    ({"up": [0, 0, 0]}, "up must not be the zero vector"),
    ({"shift_y": 3.0}, "shift_y"),
])
def test_lens_keys_are_checked(extra, key):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        _camera({"kind": "static", "position": [0, -5, 1], "look_at": [0, 0, 1]}, **extra)
