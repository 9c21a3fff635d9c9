"""`greybox render` with a region prompt and a masked reference image on tiny random-weight models:
changing the region reruns only the frames whose passes show its object; the manifest records the
regions and the reference image (with its hash); the ComfyUI workflow masks the region."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from render_farm.cli import main  # noqa: E402
from tests.test_render_end_to_end import forkserver_with_heavy_imports, warm_imports  # noqa: E402,F401
from tests.test_style_regions import SHOT  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_ip_adapter, save_tiny_sd15

    root = tmp_path_factory.mktemp("models")
    base = save_tiny_sd15(root / "sd15")
    return base, save_tiny_controlnet(root / "cn", base), save_tiny_ip_adapter(root / "ip", base)


def shot(folder: Path, tiny) -> Path:
    from PIL import Image

    base, cn, ip = tiny
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "fabric.png")
    path = folder / "lamp.toml"
    path.write_text(SHOT + f"""
[style]
stylizer = "diffusion"
prompt = "a room"
model = "{base}"
controlnets = [{{ pass = "depth", model = "{cn}", scale = 0.8 }}]
num_inference_steps = 2
guidance_scale = 3.0

[[style.regions]]
objects = ["lamp"]
prompt = "a brass lamp"

[[style.reference_images]]
image = "fabric.png"
objects = ["lamp"]
scale = 0.8

[style.ip_adapter]
model = "{ip}"
""")
    return path


def test_changing_a_region_reruns_only_the_frames_that_show_its_object(forkserver_with_heavy_imports, tiny,  # noqa: F811
                                                                      warm_imports, tmp_path, capsys):  # noqa: F811
    from passes.pass_exr import read_passes_exr
    from tests.comfyui_reference import problems

    path = shot(tmp_path / "t", tiny)
    store = tmp_path / "store"
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["render", str(path), "--out", str(first), "--store", str(store)]) == 0
    capsys.readouterr()

    # which frames show the lamp, read from the passes themselves
    layout = json.loads((first / "scene/layout.json").read_text())
    lamp = next(o["instance_id"] for o in layout["objects"] if o["name"] == "lamp")
    showing = [f for f in range(1, 5) if (read_passes_exr(first / f"passes/{f:04d}.exr").instance_id == lamp).any()]
    assert 0 < len(showing) < 4

    # the manifest records the region and the reference image, with its hash and where each applied
    manifest = json.loads((first / "manifest.json").read_text())
    direction = manifest["direction"]
    assert direction["regions"][0]["prompt"] == "a brass lamp" and direction["regions"][0]["frames"] == showing
    image = direction["reference_images"][0]
    assert image["sha256"] == hashlib.sha256((tmp_path / "t/fabric.png").read_bytes()).hexdigest()
    assert image["frames"] == showing and direction["ip_adapter"]["weight_name"] == "ip-adapter_sd15.safetensors"
    steps = manifest["consistency"]["denoising_steps_by_frame"]
    assert all(steps[f"{f:04d}"] > steps[f"{g:04d}"] for f in showing for g in range(1, 5) if g not in showing)

    # the ComfyUI workflow masks the region (and the global prompt to the rest), as ComfyUI takes it
    workflow = json.loads((first / "comfyui/workflow_api.json").read_text())
    assert problems(workflow) == []
    masks = [n["inputs"]["image"] for n in workflow.values() if n["class_type"] == "LoadImageMask"]
    assert sorted(Path(m).parent.name for m in masks) == ["region_01", "rest"]
    assert (first / "comfyui/masks/region_01/0001.png").is_file()

    # a changed region prompt: only the frames that show the lamp run again (and the video)
    assert main(["render", str(path), "--out", str(second), "--store", str(store), "--json",
                 "--set", "style.regions.0.prompt=a red lamp"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"]["ran"] == len(showing) + 1  # per_frame: a task per frame, and the assembly
    for f in range(1, 5):
        same = (first / f"frames/{f:04d}.png").read_bytes() == (second / f"frames/{f:04d}.png").read_bytes()
        assert same == (f not in showing), f
