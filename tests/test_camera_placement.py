"""Where the camera may be: refused inside a wall or under a table (naming the frames), refused
outside every room of an interior scene unless ``camera.allow_outside``; and tours
(``camera.path.kind = "tour"``) through the bundled apartment's doors at eye height, at constant
speed, looking ahead, at least ``clearance`` from everything on every frame (checked from the
meshes and from the depth pass), with clear errors when a tour cannot be planned."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from greybox.errors import InputError
from procedural.scene_builder import build_scene, scene_problems
from room_oracles import point_triangles_distance, room_at
from scenes.template_loading import load_template

TOUR = 'camera.path={kind = "tour", rooms = ["kitchen", "hallway", "living"], eye_height = 1.6, clearance = 0.3}'
# the apartment's doors (scenes/bundled/apartment.toml): kitchen|hallway on the kitchen's east wall
# (x = 4) at offset 2.4; living|hallway centred on the living room's wall 2, (4, 5) -> (5.6, 5)
DOOR_CENTRES = [(4.0, 2.4), (4.8, 5.0)]


def _problems(*overrides):
    return scene_problems(load_template("apartment", list(overrides)).template)


def _frames_from_message(message: str) -> set[int]:
    """'on frames 1-3, 7' -> {1, 2, 3, 7} (the first list in the message)."""
    text = message.split("on frames ", 1)[1].split(" (", 1)[0].split(";", 1)[0]
    out = set()
    for part in text.split(", "):
        a, _, b = part.partition("-")
        out |= set(range(int(a), int(b or a) + 1))
    return out


def test_a_camera_inside_a_wall_is_refused_naming_the_frames_and_the_wall():
    got = _problems('camera.path={kind = "static", position = [4.0, 1.0, 1.5], look_at = [2.0, 1.0, 1.5]}')
    assert {p["key"] for p in got} == {"camera.path"}  # inside the wall, and so outside every room
    assert "inside geometry on frames 1-48" in got[0]["message"] and "wall:" in got[0]["message"]
    assert "clip_start" in got[0]["message"]
    # a dolly through the wall between the kitchen and the hallway (x = 4 +- 0.075, away from the door):
    # the frames named are those whose position is within the wall's half thickness + clip_start of x = 4
    loaded = load_template("apartment", ['camera.path={kind = "dolly", start = [2.0, 0.8, 1.5], end = [5.0, 0.8, 1.5], '
                                         'look_at = [6.0, 0.8, 1.5], easing = "linear"}'])
    got = scene_problems(loaded.template)
    assert got and got[0]["key"] == "camera.path"
    from procedural.camera_paths import camera_track

    track = camera_track(loaded.template.camera, 1, 48)
    x = np.array([track.positions[track.index(f)][0] for f in range(1, 49)])
    expected = {f for f, xf in zip(range(1, 49), x) if abs(xf - 4.0) < 0.075 + loaded.template.camera.clip_start}
    message = got[0]["message"]
    assert expected and _frames_from_message(message.split("wall:hallway|kitchen ", 1)[1]) == expected
    assert expected <= _frames_from_message(message)
    with pytest.raises(InputError, match="inside geometry"):
        build_scene(loaded.template)


def test_a_camera_under_a_table_is_refused():
    scene = build_scene(load_template("apartment").template)
    table = next(o for o in scene.objects if o.kind in ("table", "dining_table", "desk", "coffee_table"))
    lo, hi = table.bounds
    centre = (lo + hi) / 2
    under = f'camera.path={{kind = "static", position = [{centre[0]}, {centre[1]}, {lo[2] + 0.15}], look_at = [4.8, 2.0, 0.2]}}'
    got = _problems(under)
    assert got and table.name in got[0]["message"] and "under it" in got[0]["message"]


def test_outside_every_room_is_refused_unless_allowed(capsys):
    from render_farm.cli import main

    outside = 'camera.path={kind = "static", position = [-4.0, -4.0, 1.6], look_at = [3.0, 3.0, 1.0]}'
    got = _problems(outside)
    assert [p["key"] for p in got] == ["camera.path"] and "outside every room on frames 1-48" in got[0]["message"]
    assert "camera.allow_outside" in got[0]["message"]
    assert _problems(outside, "camera.allow_outside=true") == []
    assert main(["validate", "apartment", "--set", outside]) == 2
    err = capsys.readouterr().err
    assert "camera.path" in err and "outside every room" in err and "Traceback" not in err


@lru_cache(maxsize=None)
def _tour(*extra):
    loaded = load_template("apartment", [TOUR, *extra])
    return loaded.template, build_scene(loaded.template)


def test_a_tour_walks_through_the_door_centres_at_eye_height_at_constant_speed_looking_ahead():
    template, scene = _tour()
    track = scene.camera
    frames = range(template.render.frame_start, template.render.frame_end + 1)
    p = np.stack([track.positions[track.index(f)] for f in frames])
    np.testing.assert_allclose(p[:, 2], 1.6, atol=1e-12)
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    np.testing.assert_allclose(steps, steps.mean(), rtol=0.03)  # constant speed (chords of the rounded corners)
    # the rooms in order
    visited = [r for r in (room_at(template, x, y) for x, y in p[:, :2]) if r is not None]
    assert [r for i, r in enumerate(visited) if i == 0 or r != visited[i - 1]] == ["kitchen", "hallway", "living"]
    # through each door's centre: the polyline of the frames passes within 2 cm of it
    for c in DOOR_CENTRES:
        a, b = p[:-1, :2], p[1:, :2]
        t = np.clip(np.einsum("ij,ij->i", np.asarray(c) - a, b - a) / np.einsum("ij,ij->i", b - a, b - a), 0, 1)
        assert np.min(np.linalg.norm(a + t[:, None] * (b - a) - c, axis=1)) < 0.02, f"the tour misses the door at {c}"
    # looking ahead along the path: the view ray meets the path look_ahead metres on (along the frames' polyline)
    ahead = template.camera.path.look_ahead
    arc = np.r_[0.0, np.cumsum(steps)]
    fine = np.linspace(0, 1, 11)[:-1]
    dense = np.concatenate([p[j] + fine[:, None] * (p[j + 1] - p[j]) for j in range(len(p) - 1)])
    dense_arc = np.concatenate([arc[j] + fine * steps[j] for j in range(len(p) - 1)])
    checked = 0
    for i, f in enumerate(frames):
        if arc[-1] - arc[i] < ahead + 0.2:
            break
        forward = -track.rotations[track.index(f)][:, 2]
        v = dense - p[i]
        along = v @ forward
        off = np.linalg.norm(v - along[:, None] * forward, axis=1)
        near = (along > 0.1) & (off < 0.05)
        assert near.any(), f"frame {f} does not look along the path"
        gone = dense_arc[near] - arc[i]
        assert np.any(np.abs(gone - ahead) < 0.1), f"frame {f} looks at the path {gone.min():.2f} .. {gone.max():.2f} m on"
        checked += 1
    assert checked > 30


def test_a_tour_keeps_its_clearance_from_every_mesh_on_every_frame():
    template, scene = _tour()
    track = scene.camera
    clearance = template.camera.path.clearance
    nearest = np.inf
    for f in range(template.render.frame_start, template.render.frame_end + 1):
        p = track.positions[track.index(f)]
        for o in scene.objects:
            lo, hi = o.bounds
            if np.all(p > lo - clearance) and np.all(p < hi + clearance):
                d = point_triangles_distance(p, o.vertices, o.triangles)
                assert d >= clearance - 1e-6, f"frame {f}: {d:.3f} m from {o.name}"
                nearest = min(nearest, d)
    assert nearest < clearance + 0.25  # it does squeeze through the doors


def test_a_tour_keeps_its_clearance_in_the_depth_pass():
    """Every rendered pixel's surface point (depth pass, the lens' rays) is at least the clearance away."""
    from passes.blender_render import PassRenderer

    template, scene = _tour("render.resolution=[48, 48]", "render.frame_end=24")
    clearance = template.camera.path.clearance
    renderer = PassRenderer(scene, threads=2)
    nearest = np.inf
    for f in range(1, 25):
        depth = renderer.render(f).depth.astype(np.float64)
        k = scene.camera.intrinsics(f, 48, 48)
        cols, rows = np.meshgrid(np.arange(48) + 0.5, np.arange(48) + 0.5)
        ray = np.hypot(np.hypot((cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1]), 1.0)
        seen = np.isfinite(depth)
        assert seen.mean() > 0.9
        distance = float((depth * ray)[seen].min())
        assert distance >= clearance - 1e-3, f"frame {f}: a surface {distance:.3f} m away"
        nearest = min(nearest, distance)
    renderer.close()
    assert nearest < 1.0


def test_tours_that_cannot_be_planned_say_why():
    def problems(path):
        return _problems(f"camera.path={path}")

    got = problems('{kind = "tour", rooms = ["kitchen", "living"]}')
    assert got[0]["key"] == "camera.path.rooms.1" and "no door joins 'kitchen' and 'living'" in got[0]["message"]
    got = problems('{kind = "tour", rooms = ["kitchen", "attic"]}')
    assert got[0]["key"] == "camera.path.rooms.1" and "no room is named 'attic'" in got[0]["message"]
    got = problems('{kind = "tour", rooms = ["hallway", "bathroom"], clearance = 0.45}')
    assert got[0]["key"] == "camera.path.clearance" and "wide" in got[0]["message"]
    got = problems('{kind = "tour", rooms = ["hallway", "living"], eye_height = 2.6}')
    assert got[0]["key"] == "camera.path.eye_height"
    scene = load_template("living_room", ['camera.path={kind = "tour", rooms = ["a", "b"]}'])
    got = scene_problems(scene.template)
    assert got and got[0]["key"] == "camera.path.rooms.0"
