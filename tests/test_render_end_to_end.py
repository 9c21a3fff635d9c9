"""`greybox render` end to end with the diffusion stylizer on tiny random-weight models (CPU).

The models are built from configs, saved to a temporary folder and loaded back through the real
``from_pretrained`` path, as a user's local folders would be. Same template, seed and machine:
byte-identical frames, also when everything is recomputed from an empty store.

Each CLI job starts fresh worker processes; for the diffusion test they are forked from one
server that imported torch and diffusers once (``warm_imports``), so the jobs do not each pay that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from render_farm.cli import main
from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15
from tests.test_cli_commands import TINY


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = save_tiny_sd15(root / "sd15")
    nets = {p: save_tiny_controlnet(root / f"cn_{p}", base, seed=10 + i) for i, p in enumerate(("depth", "seg"))}
    return base, nets


@pytest.fixture(scope="module")
def forkserver_with_heavy_imports():
    """A multiprocessing forkserver that imports torch, diffusers and transformers once
    (tests/support/warm_imports.py), started before the tiny models are built so its imports overlap that."""
    import multiprocessing
    import multiprocessing.forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(["tests.support.warm_imports"])
    multiprocessing.forkserver.ensure_running()


@pytest.fixture
def warm_imports(forkserver_with_heavy_imports, monkeypatch):
    """The CLI's local executor with its workers forked from that server: still fresh processes for
    every job, without each paying the imports."""
    import render_farm.job_execution as job_execution
    from render_farm.local_executor import LocalExecutor

    def make_executor(farm, workers, threads, **_):
        assert farm == "local", farm
        return LocalExecutor(workers or job_execution.default_workers(threads), start_method="forkserver")

    monkeypatch.setattr(job_execution, "make_executor", make_executor)


@pytest.fixture
def template(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("frame_end = 4", "frame_end = 3") + '\n[style]\nprompt = "a red room"\nnum_inference_steps = 2\n')
    return path


def render(template, out, store, models, *extra):
    base, nets = models
    args = ["render", str(template), "--out", str(out), "--store", str(store), "--stylizer", "diffusion",
            "--model", str(base), *[a for p, d in nets.items() for a in ("--controlnet", f"{p}={d}")], *extra]
    return main(args)


def frame_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


def test_render_diffusion_tiny_models_byte_identical_with_provenance(forkserver_with_heavy_imports, tiny_models, warm_imports,
                                                                    template, tmp_path, capsys):
    # 1. A first render.
    first = tmp_path / "first"
    assert render(template, first, tmp_path / "store_a", tiny_models) == 0
    frames = frame_bytes(first)
    assert list(frames) == ["0001.png", "0002.png", "0003.png"]
    for name in ("video.mp4", "contact_sheet.png", "manifest.json", "cameras.json"):
        assert (first / name).is_file(), name

    # 2. Everything recomputed from an empty store into a new folder: the same bytes.
    second = tmp_path / "second"
    assert render(template, second, tmp_path / "store_b", tiny_models) == 0
    assert frame_bytes(second) == frames
    manifest_a = json.loads((first / "manifest.json").read_text())
    manifest_b = json.loads((second / "manifest.json").read_text())
    assert manifest_a["frames"] == manifest_b["frames"]

    # 3. The manifest says what made the frames.
    assert manifest_a["stylizer"] == "diffusion"
    for lib in ("bpy", "torch", "diffusers", "greybox"):
        assert manifest_a["versions"].get(lib), lib
    models = manifest_a["models"]
    assert models["base"]["id"] == str(tiny_models[0])
    assert sorted(c["pass"] for c in models["controlnets"]) == ["depth", "seg"]
    assert manifest_a["seeds"]["scene"] == 3 and len(manifest_a["seeds"]["frames"]) == 3
    assert manifest_a["consistency"]["mode"] == "per_frame"
    assert manifest_a["consistency"]["denoising_steps"] > 0
    for name, files in manifest_a["frames"].items():
        assert f"frames/{name}.png" in files and f"passes/{name}.exr" in files and f"control/seg/{name}.png" in files

    # 4. A changed prompt changes the frames but reuses the passes (store hits).
    capsys.readouterr()
    third = tmp_path / "third"
    assert render(template, third, tmp_path / "store_a", tiny_models, "--set", "style.prompt=a blue room") == 0
    assert frame_bytes(third) != frames
    assert (third / "passes" / "0001.exr").read_bytes() == (first / "passes" / "0001.exr").read_bytes()


@pytest.mark.parametrize("mode", ["flow_warp", "keyframes"])
def test_render_sequence_modes_with_npr(template, tmp_path, mode):
    out = tmp_path / mode
    assert main(["render", str(template), "--out", str(out), "--store", str(tmp_path / "store"),
                 "--stylizer", "npr", "--consistency", mode]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["consistency"]["mode"] == mode
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == ["0001.png", "0002.png", "0003.png"]
    if mode == "keyframes":
        assert manifest["consistency"]["keyframes"][0] == 1


def test_farm_workers_start_cleanly_from_a_program_that_imported_bpy(template, tmp_path):
    """bpy puts Blender's script folders on sys.path, which spawn hands to the workers; they must
    still import the bpy wheel, not Blender's pure-Python `bpy` package."""
    import subprocess
    import sys

    out = tmp_path / "out"
    code = (
        "import sys, bpy\nfrom render_farm.cli import main\n"
        f"sys.exit(main(['passes', {str(template)!r}, '--out', {str(out)!r}, '--store', {str(tmp_path / 'store')!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert sorted(p.name for p in (out / "passes").glob("*.exr")) == ["0001.exr", "0002.exr", "0003.exr"]
