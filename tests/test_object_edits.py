"""Edits on tiny random-weight SD1.5 models and NPR: a changed region prompt regenerates only the
objects it names, on every frame; zero bytes change outside their masks (read here from the
passes' instance ids with OpenEXR), some inside do; the base kept whole; the same edit of the same
base gives the same bytes (even from an empty store); the summary and the manifest say what reran."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from render_farm.cli import main  # noqa: E402
from tests.test_render_end_to_end import forkserver_with_heavy_imports, warm_imports  # noqa: E402,F401
from tests.test_style_regions import SHOT  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    root = tmp_path_factory.mktemp("models")
    base = save_tiny_sd15(root / "sd15")
    return base, save_tiny_controlnet(root / "cn", base)


def template(folder: Path, tiny, mode: str, stylizer: str = "diffusion") -> Path:
    base, cn = tiny
    folder.mkdir(exist_ok=True)
    path = folder / f"lamp-{mode}-{stylizer}.toml"
    path.write_text(SHOT + f"""
[style]
stylizer = "{stylizer}"
prompt = "a room"
model = "{base}"
controlnets = [{{ pass = "depth", model = "{cn}", scale = 0.8 }}]
num_inference_steps = 2
guidance_scale = 3.0
consistency = "{mode}"

[[style.regions]]
objects = ["lamp"]
prompt = "a brass lamp"

[[style.regions]]
classes = ["table"]
prompt = "an oak table"
""")
    return path


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def instance_ids(exr: Path) -> np.ndarray:
    """The instance ids of a frame, straight from the EXR (OpenEXR, not greybox's reader)."""
    import OpenEXR

    with OpenEXR.File(str(exr), separate_channels=True) as f:
        return np.asarray(f.channels()["instance.id"].pixels).astype(np.int64)


def lamp_masks(out: Path) -> dict[int, np.ndarray]:
    layout = json.loads((out / "scene/layout.json").read_text())
    lamp = next(o["instance_id"] for o in layout["objects"] if o["name"] == "lamp")
    return {f: instance_ids(out / f"passes/{f:04d}.exr") == lamp for f in range(1, 5)}


@pytest.mark.parametrize("mode,stylizer", [("per_frame", "diffusion"), ("flow_warp", "diffusion"), ("per_frame", "npr")])
def test_an_edit_changes_only_the_named_object(forkserver_with_heavy_imports, tiny, warm_imports, tmp_path, capsys,  # noqa: F811
                                               mode, stylizer):
    path = template(tmp_path / "t", tiny, mode, stylizer)
    out, store = tmp_path / "out", tmp_path / "store"
    run = ["render", str(path), "--out", str(out), "--store", str(store), "--workers", "1"]
    assert main(run) == 0
    capsys.readouterr()
    masks = lamp_masks(out)
    showing = [f for f, m in masks.items() if m.any()]
    assert 0 < len(showing) < 4
    base = {f: (out / f"frames/{f:04d}.png").read_bytes() for f in range(1, 5)}

    # the edit: a new prompt for the lamp only (no --force needed: a direction key)
    edit = [*run, "--set", "style.regions.0.prompt=a red glass lamp", "--json"]
    assert main(edit) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"]["kind"] == "edit" and summary["version"]["base"] == 1
    assert summary["units"]["stylize"] == {"ran": len(showing), "reused": 4 - len(showing)}
    inside_changed = 0
    for f in range(1, 5):
        old, new = read_rgb(out / f"versions/001/frames/{f:04d}.png"), read_rgb(out / f"frames/{f:04d}.png")
        outside = ~masks[f]
        assert np.array_equal(old[outside], new[outside]), f"frame {f}: pixels outside the lamp changed"
        inside_changed += int((old[masks[f]] != new[masks[f]]).any(axis=-1).sum())
        if f not in showing:
            assert (out / f"frames/{f:04d}.png").read_bytes() == base[f]
        assert (out / f"versions/001/frames/{f:04d}.png").read_bytes() == base[f]  # the base kept whole
    if stylizer == "diffusion":
        assert inside_changed > 0
    else:  # NPR ignores region prompts: the lamp is regenerated as it was
        assert inside_changed == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["edit"]["base_version"] == 1 and manifest["edit"]["regenerated_frames"] == showing
    assert manifest["edit"]["targets"]["objects"] == ["lamp"]
    assert manifest["edit"]["base_manifest_sha256"] == json.loads((out / "versions/001/version.json").read_text())["manifests"]["lamp"]
    if stylizer == "npr":
        return

    # the same edit of the same base, from an empty store: the same bytes
    edited = {f: (out / f"frames/{f:04d}.png").read_bytes() for f in range(1, 5)}
    assert main(["render", str(out), "--revert", "1"]) == 0
    shutil.rmtree(store)
    assert main([*edit[:-1]]) == 0
    assert {f: (out / f"frames/{f:04d}.png").read_bytes() for f in range(1, 5)} == edited
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["001", "002", "003", "004"]
