"""Pass files and control images: EXR round trip, byte-identical reruns (in one process and in two),
control-image conventions, the shot's depth range, camera records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from passes.frame_passes import EXR_CHANNELS, FramePasses
from test_passes_analytic import cube_scene

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent


def passes_template(**passes):
    """A minimal valid Template: only its [passes] table matters to the writers."""
    from scenes.template_schema import Template

    return Template.model_validate(
        {
            "schema_version": 1, "name": "analytic", "seed": 0,
            "camera": {"path": {"kind": "static", "position": [3.0, -2.5, 2.2], "look_at": [0.0, 0.0, 0.4]}},
            "render": {"resolution": [96, 64], "frame_start": 1, "frame_end": 3},
            "passes": passes,
        },
        strict=False,
    )


def random_passes(frame=7, h=24, w=40) -> FramePasses:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 20, (h, w)).astype(np.float32)
    depth[:3] = np.inf
    return FramePasses(
        frame=frame, depth=depth,
        normal=rng.normal(size=(h, w, 3)).astype(np.float32),
        flow_forward=rng.normal(size=(h, w, 2)).astype(np.float32),
        flow_backward=rng.normal(size=(h, w, 2)).astype(np.float32),
        instance_id=rng.integers(0, 70000, (h, w)).astype(np.uint32),
        class_id=rng.integers(0, 151, (h, w)).astype(np.uint32),
        uv=rng.random((h, w, 3)).astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# Our EXR
# --------------------------------------------------------------------------------------------


def test_pass_exr_round_trip_is_exact_and_deterministic(tmp_path):
    import OpenEXR

    from passes.pass_exr import read_passes_exr, write_passes_exr

    passes = random_passes()
    digest = write_passes_exr(tmp_path / "passes" / "0007.exr", passes)  # no scene: no Cryptomatte (test_compositor_outputs.py)
    again = write_passes_exr(tmp_path / "again.exr", passes)
    assert digest == again
    assert (tmp_path / "passes" / "0007.exr").read_bytes() == (tmp_path / "again.exr").read_bytes()
    assert [p.name for p in (tmp_path / "passes").iterdir()] == ["0007.exr"]  # no temporary left behind
    back = read_passes_exr(tmp_path / "passes" / "0007.exr")
    assert back.frame == 7
    for field in ("depth", "normal", "flow_forward", "flow_backward", "instance_id", "class_id", "uv"):
        a, b = getattr(passes, field), getattr(back, field)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    with OpenEXR.File(str(tmp_path / "again.exr"), separate_channels=True) as exr:
        assert set(exr.channels()) == set(EXR_CHANNELS) | {"instance_float.id", "class_float.id"}
        assert exr.channels()["instance.id"].pixels.dtype == np.uint32
        header = exr.header()
        assert not any(k for k in header if "time" in k.lower() or "date" in k.lower() or "host" in k.lower())


# --------------------------------------------------------------------------------------------
# Determinism: twice in one process, and in two processes
# --------------------------------------------------------------------------------------------

_RENDER_SCRIPT = """
import json, sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from test_passes_analytic import cube_scene
from test_passes_outputs import passes_template
from passes.blender_render import PassRenderer
from passes.render_chunk import write_frame_outputs
from passes.depth_range import shot_disparity_range
scene = cube_scene()
renderer = PassRenderer(scene, threads=2)
out = Path(sys.argv[1])
hashes = {{}}
for frame in (1, 3):
    hashes.update(write_frame_outputs(out, scene, renderer.render(frame), passes_template(seg_background="wall"),
                                      shot_disparity_range(scene)))
print(json.dumps(hashes, sort_keys=True))
"""


def _render_in_subprocess(out_dir: Path) -> dict:
    script = _RENDER_SCRIPT.format(root=str(REPO_ROOT), tests=str(TESTS_DIR))
    proc = subprocess.run([sys.executable, "-c", script, str(out_dir)], capture_output=True, text=True, timeout=300,
                          cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rendering_twice_and_in_two_processes_gives_identical_files(tmp_path):
    from passes.blender_render import PassRenderer
    from passes.depth_range import shot_disparity_range
    from passes.render_chunk import write_frame_outputs

    scene = cube_scene()
    template = passes_template(seg_background="wall")
    in_process = []
    for run in range(2):
        renderer = PassRenderer(scene, threads=2)
        hashes = {}
        for frame in (1, 3):
            hashes.update(write_frame_outputs(tmp_path / f"run{run}", scene, renderer.render(frame), template,
                                              shot_disparity_range(scene)))
        in_process.append(hashes)
    assert len(in_process[0]) == 2 * 5
    assert in_process[0] == in_process[1]

    first = _render_in_subprocess(tmp_path / "proc0")
    second = _render_in_subprocess(tmp_path / "proc1")
    assert first == second == in_process[0]
    for rel in first:
        assert (tmp_path / "proc0" / rel).read_bytes() == (tmp_path / "run0" / rel).read_bytes()


# --------------------------------------------------------------------------------------------
# Control images
# --------------------------------------------------------------------------------------------


def test_depth_control_convention():
    from passes.control_images import depth_control, per_frame_disparity_range

    depth = np.array([[1.0, 2.0], [4.0, np.inf]], dtype=np.float32)
    image = depth_control(depth, 0.25, 1.0)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], [[255, 85], [0, 0]])  # near = white; background 0
    assert np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2])
    lo, hi = per_frame_disparity_range(depth, percentile=100)
    assert (lo, hi) == (0.25, 1.0)
    with pytest.raises(ValueError):
        depth_control(depth, 1.0, 1.0)


def test_normal_control_convention():
    from passes.control_images import normal_control

    normals = np.array([[[0, 0, 1], [1, 0, 0]], [[0, 1, 0], [0, 0, 0]]], dtype=np.float32)
    image = normal_control(normals)
    np.testing.assert_array_equal(image[0, 0], [128, 128, 255])  # facing the camera: blue
    np.testing.assert_array_equal(image[0, 1], [0, 128, 128])  # facing right: low red
    np.testing.assert_array_equal(image[1, 0], [128, 255, 128])  # facing up: green
    np.testing.assert_array_equal(image[1, 1], [128, 128, 255])  # background


def test_control_png_is_lossless_and_deterministic():
    import io

    from PIL import Image

    from greybox.atomic_files import encode_png

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (9, 5), dtype=np.uint8)
    for image, mode in ((rgb, "RGB"), (grey, "L")):
        data = encode_png(image)
        assert data == encode_png(image.copy())
        decoded = Image.open(io.BytesIO(data))
        assert decoded.mode == mode
        np.testing.assert_array_equal(np.array(decoded), image)
    with pytest.raises(TypeError):
        encode_png(rgb.astype(np.float32))


def test_seg_control_background_and_bad_ids():
    from passes.control_images import seg_control
    from scenes.semantic_palette import class_id_colours, resolve_class

    sky = resolve_class("sky").class_id
    image = seg_control(np.array([[0, 1], [24, 0]], dtype=np.uint32), sky)
    table = class_id_colours()
    np.testing.assert_array_equal(image[0, 0], table[sky])
    np.testing.assert_array_equal(image[0, 1], table[1])
    np.testing.assert_array_equal(image[1, 0], table[24])
    with pytest.raises(ValueError):
        seg_control(np.array([[151]], dtype=np.uint32), sky)


# --------------------------------------------------------------------------------------------
# The shot's depth range
# --------------------------------------------------------------------------------------------


def shot_range_by_hand(scene, percentile: float = 99.5) -> tuple[float, float]:
    """A second implementation of ``passes.depth_range.shot_disparity_range``, frame by frame through
    ``CameraTrack.project``: the scene's surface samples kept inside each frame's frustum (on screen,
    between the clip planes), lo = the smallest disparity, hi = the disparity^2-weighted percentile."""
    from passes.depth_range import surface_samples

    points = surface_samples(scene)
    track = scene.camera
    disparities = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        xy, z = track.project(frame, points, scene.width, scene.height)
        inside = ((z >= track.clip_start) & (z <= track.clip_end) & (xy[:, 0] >= 0) & (xy[:, 0] <= scene.width)
                  & (xy[:, 1] >= 0) & (xy[:, 1] <= scene.height))
        disparities.append(1.0 / z[inside])
    disp = np.sort(np.concatenate(disparities))
    weight = np.cumsum(disp**2)
    hi = disp[np.argmax(weight >= percentile / 100.0 * weight[-1])]
    return float(disp[0]), float(hi)


def test_shot_range_comes_from_geometry_not_from_rendered_frames(tmp_path):
    import dataclasses

    from passes.blender_render import PassRenderer
    from passes.depth_range import shot_disparity_range, template_disparity_range
    from passes.render_chunk import write_frame_outputs

    scene = cube_scene()
    lo, hi = shot_disparity_range(scene)
    assert 0 < lo < hi
    # every depth seen on any frame lies inside (or just beyond, for the robust max) the range
    renderer = PassRenderer(scene)
    seen = np.concatenate([1.0 / renderer.render(f).depth.ravel() for f in range(scene.frame_start, scene.frame_end + 1)])
    seen = seen[seen > 0]
    assert lo <= seen.min() * 1.01 and np.percentile(seen, 50) < hi
    # the template's range is the shot's, from geometry: a second implementation agrees
    template = passes_template(control=["depth"])
    np.testing.assert_allclose(template_disparity_range(scene, template.passes), shot_range_by_hand(scene), rtol=1e-6)
    # same range, same PNG for frame 2, whichever frames a run renders: b renders frame 3 first and
    # takes its range from another copy of the scene (nothing cached between a and b)
    a = write_frame_outputs(tmp_path / "a", scene, renderer.render(2), template, template_disparity_range(scene, template.passes))
    renderer.render(3)
    copy = dataclasses.replace(scene)
    b = write_frame_outputs(tmp_path / "b", copy, renderer.render(2), template, template_disparity_range(copy, template.passes))
    assert a == b
    per_frame = passes_template(depth_normalization="frame", control=["depth"])
    from passes.control_images import depth_control, per_frame_disparity_range
    from passes.render_chunk import control_image

    passes = renderer.render(2)
    np.testing.assert_array_equal(
        control_image("depth", scene, passes, per_frame, template_disparity_range(scene, per_frame.passes)),
        depth_control(passes.depth, *per_frame_disparity_range(passes.depth)),
    )
    fixed = passes_template(depth_normalization="fixed", depth_range=[0.5, 8.0])
    assert template_disparity_range(scene, fixed.passes) == (1 / 8.0, 1 / 0.5)
    assert template_disparity_range(scene, passes_template(depth_normalization="frame").passes) is None


# --------------------------------------------------------------------------------------------
# Camera records
# --------------------------------------------------------------------------------------------


def test_camera_records_project_like_the_pinhole_they_describe():
    """An analytic camera: at (0.5 f - 1, -5, 1) in frame f, level, looking along +Y, 35 mm lens on a
    36 mm sensor, 64x48. A world point (x, y, z) is at OpenCV camera (x - cx, 1 - z, y + 5) and at
    pixel (F (x - cx) / (y + 5) + 32, F (1 - z) / (y + 5) + 24), F = 35 / 36 x 64."""
    from passes.camera_records import camera_records
    from scenes.scene_data import CameraTrack, Scene

    rotation = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # camera +X, +Y, +Z = world +X, +Z, -Y
    frames = np.arange(0, 4)
    centres = np.stack([0.5 * frames - 1.0, np.full(4, -5.0), np.ones(4)], axis=1)
    track = CameraTrack(frames=frames, positions=centres, rotations=np.stack([rotation] * 4), focal_lengths_mm=35.0,
                        sensor_width_mm=36.0, clip_start=0.1, clip_end=100.0)
    scene = Scene(name="pinhole", seed=0, objects=(), camera=track, width=64, height=48, frame_start=1, frame_end=2, fps=24)
    records = camera_records(scene, [1, 2])
    assert list(records) == ["1", "2"]
    json.dumps(records)  # plain lists
    f_px = 35.0 / 36.0 * 64
    points = np.array([[0.5, 0.5, 1.0], [-0.5, 0.3, 0.0], [0.1, -0.4, 0.7], [3.0, 20.0, -2.0]])
    for frame, record in records.items():
        cx = 0.5 * int(frame) - 1.0
        expected_cam = np.stack([points[:, 0] - cx, 1.0 - points[:, 2], points[:, 1] + 5.0], axis=1)
        expected_px = f_px * expected_cam[:, :2] / expected_cam[:, 2:] + [32.0, 24.0]
        k = np.array(record["K"])
        np.testing.assert_allclose(k, [[f_px, 0, 32.0], [0, f_px, 24.0], [0, 0, 1]], atol=1e-12)
        w2c = np.array(record["world_to_camera"])
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        np.testing.assert_allclose(cam, expected_cam, atol=1e-12)
        pix = cam @ k.T
        np.testing.assert_allclose(pix[:, :2] / pix[:, 2:], expected_px, atol=1e-9)
        # the track projects the same way (cameras.json describes what the passes were rendered with)
        on_track, depth = track.project(int(frame), points, scene.width, scene.height)
        np.testing.assert_allclose(on_track, expected_px, atol=1e-9)
        np.testing.assert_allclose(depth, expected_cam[:, 2], atol=1e-12)
        matrix_world = np.array(record["blender_matrix_world"])
        np.testing.assert_allclose(matrix_world[:3, :3], rotation, atol=1e-12)
        np.testing.assert_allclose(matrix_world[:3, 3], [cx, -5.0, 1.0], atol=1e-12)
        np.testing.assert_allclose(matrix_world[3], [0, 0, 0, 1])
