"""The passes stage on a template: render_pass_frames and the studio entry script (under the wheel's Python)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """
schema_version = 1
name = "two_boxes"
seed = 3

[generator]
kind = "none"

[[objects]]
name = "floor"
primitive = "plane"
position = [0.0, 0.0, 0.0]
size = [8.0, 8.0]
class = "floor"

[[objects]]
name = "crate"
primitive = "box"
position = [0.0, 0.0, 0.5]
size = [1.0, 1.0, 1.0]
class = "cabinet"

[[objects]]
name = "post"
primitive = "cylinder"
position = [1.5, 0.8, 0.75]
radius = 0.2
height = 1.5
class = "column"

[camera]
focal_length = 30.0

[camera.path]
kind = "dolly"
start = [4.0, -3.0, 2.0]
end = [3.0, -4.0, 2.4]
look_at = [0.3, 0.2, 0.5]
easing = "linear"

[render]
resolution = [64, 48]
frame_start = 1
frame_end = 4
fps = 24

[passes]
control = ["depth", "normal", "seg", "lines"]
seg_background = "wall"
"""


@pytest.fixture(scope="module")
def template_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("templates") / "two_boxes.toml"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture(scope="module")
def template(template_file):
    from scenes.template_loading import load_template

    return load_template(str(template_file)).template


@pytest.fixture(scope="module")
def scene(template):
    from procedural.scene_builder import build_scene

    return build_scene(template)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_render_pass_frames_writes_the_layout_and_returns_hashes(template, scene, tmp_path):
    from passes.pass_exr import read_passes_exr
    from passes.render_chunk import pass_frame_paths, render_pass_frames

    seen = []
    result = render_pass_frames(template, scene, [2, 3], tmp_path, on_frame=seen.append)
    assert seen == [2, 3] and sorted(result) == [2, 3]
    for frame, files in result.items():
        assert sorted(files) == sorted(pass_frame_paths(frame, ["depth", "normal", "seg", "lines"]))
        for rel, digest in files.items():
            assert _sha(tmp_path / rel) == digest
    assert pass_frame_paths(12345, ["seg"]) == ["passes/12345.exr", "control/seg/12345.png"]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(r for files in result.values() for r in files)  # no temporaries, no manifest
    passes = read_passes_exr(tmp_path / "passes" / "0002.exr")
    assert passes.frame == 2 and passes.depth.shape == (48, 64)
    assert set(np.unique(passes.instance_id)) == {0, 1, 2, 3}
    from PIL import Image

    seg = np.array(Image.open(tmp_path / "control" / "seg" / "0002.png"))
    assert seg.shape == (48, 64, 3) and seg.dtype == np.uint8


def test_shot_depth_range_does_not_depend_on_the_frames_rendered(template, tmp_path):
    from PIL import Image

    from passes.blender_render import PassRenderer
    from passes.control_images import depth_control
    from passes.pass_exr import read_passes_exr
    from passes.render_chunk import render_pass_frames
    from procedural.scene_builder import build_scene
    from test_passes_outputs import shot_range_by_hand

    # two scenes built apart, so nothing computed for one run is cached for the other
    scene_a, scene_b = build_scene(template), build_scene(template)
    alone = render_pass_frames(template, scene_a, [3], tmp_path / "a", renderer=PassRenderer(scene_a))
    together = render_pass_frames(template, scene_b, [1, 2, 3, 4], tmp_path / "b", renderer=PassRenderer(scene_b))
    assert alone[3] == together[3]
    # and frame 3's depth image is normalised by the range of the whole camera path (a second implementation)
    depth = read_passes_exr(tmp_path / "a" / "passes" / "0003.exr").depth
    image = np.array(Image.open(tmp_path / "a" / "control" / "depth" / "0003.png").convert("RGB"))
    lo, hi = shot_range_by_hand(build_scene(template))
    assert np.abs(image.astype(int) - depth_control(depth, lo, hi).astype(int)).max() <= 1  # float32 rounding of the range


def test_frames_outside_the_range_and_a_foreign_renderer_are_refused(template, scene, tmp_path):
    from greybox.errors import InputError
    from passes.blender_render import PassRenderer
    from passes.render_chunk import render_pass_frames
    from test_passes_analytic import cube_scene

    with pytest.raises(InputError, match="outside"):
        render_pass_frames(template, scene, [0, 1], tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="different scene"):
        render_pass_frames(template, scene, [1], tmp_path, renderer=PassRenderer(cube_scene()))


def test_blender_entry_runs_under_the_wheels_python(template_file, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "passes" / "blender_entry.py"), "--", str(template_file), "--out", str(out),
           "--frames", "1-2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "passes" / "0001.exr").is_file() and (out / "control" / "lines" / "0002.png").is_file()
    cameras = json.loads((out / "cameras.json").read_text())
    assert sorted(cameras) == ["1", "2"]
    assert np.array(cameras["1"]["K"]).shape == (3, 3) and np.array(cameras["2"]["world_to_camera"]).shape == (4, 4)
    assert "Saved:" not in proc.stdout  # Blender's own chatter is kept off stdout
    # the scene stage's folder, as the farm writes it
    layout = json.loads((out / "scene" / "layout.json").read_text())
    assert [o["name"] for o in layout["objects"]] == ["floor", "crate", "post"]
    assert (out / "scene" / "scene.npz").is_file() and (out / "scene" / "scene.glb").is_file()
    assert not (out / "scene" / "scene.blend").exists()
    # a scene that cannot be built: exit 2, nothing written
    # (looking straight down is a plan view now; a target at the camera has no view direction)
    down = tmp_path / "down"
    no_view = subprocess.run(cmd[:5] + [str(down), "--set", 'camera.path={kind = "static", position = [0, 0, 3], look_at = [0, 0, 3]}'],
                             capture_output=True, text=True, timeout=300)
    assert no_view.returncode == 2 and "camera.path" in no_view.stderr and not down.exists()

    bad = subprocess.run(cmd[:-1] + ["0-9"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "outside" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, str(REPO_ROOT / "passes" / "blender_entry.py"), "--", "no_such_template",
                              "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
