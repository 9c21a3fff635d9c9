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
from tests.support.tiny_templates import TINY


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


def test_a_diffusion_render_within_max_memory_runs(forkserver_with_heavy_imports, tiny_models, warm_imports, template, tmp_path):
    """--max-memory at every task's estimate (the diffusion one from the models' headers): the driver's
    and each task's own check let it through."""
    from render_farm.task_memory import diffusion_run, estimate_peak_bytes
    from scenes.template_loading import load_template
    from scenes.template_schema import StyleSpec
    from stylize.model_resolution import resolve_models

    base, nets = tiny_models
    style = StyleSpec.model_validate({"stylizer": "diffusion", "model": str(base), "num_inference_steps": 2,
                                      "controlnets": [{"pass": p, "model": str(d)} for p, d in nets.items()]})
    diffusion = estimate_peak_bytes("stylize", 64, 64, stylizer="diffusion", diffusion=diffusion_run(resolve_models(style), style))
    passes = load_template(str(template)).template.passes
    budget = max(diffusion, estimate_peak_bytes("passes", 64, 64, exr_channels=passes.exr_channels),
                 estimate_peak_bytes("assemble", 64, 64, frames=1, controls=passes.control))
    out = tmp_path / "out"
    assert render(template, out, tmp_path / "store", tiny_models, "--frames", "1-1", "--max-memory", str(budget)) == 0
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == ["0001.png"]


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


# -- a frame of a sequence is keyed by its sequence (issue 16) ---------------------------------------

def _frame_bytes_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


@pytest.fixture(scope="module")
def warm_executor():
    """One local worker kept across the jobs of a test module (its stylizer stays loaded)."""
    from render_farm.local_executor import LocalExecutor

    executor = LocalExecutor(1)
    yield executor
    executor.shutdown()


def _sequence_case(tmp_path: Path, executor, mode: str, **request) -> None:
    """``--frames 3-4``, then ``1-2``, then ``1-4`` into one store, against ``1-4`` from an empty one.

    The 3-4 sequence's frames are not frames 3-4 of the 1-4 sequence (a fresh store makes other
    bytes), so they must not be reused; frames 1-2 of the 1-2 sequence are frames 1-2 of the 1-4
    sequence in flow_warp (frame t reads only the frames before it) but not in keyframes (every
    frame reads the whole sequence). The summary counts what ran."""
    from render_farm.job_execution import run_job
    from render_farm.job_request import JobRequest

    shared = tmp_path / "store"

    def run(out: str, frames: str, store: Path = shared) -> dict:
        job = JobRequest(command="render", templates=[str(tmp_path / "tiny4.toml")], frames=frames, consistency=mode,
                         **request)
        return run_job(job, tmp_path / out, store=store, executor=executor, progress=False).to_json()

    run("late", "3-4")
    run("early", "1-2")
    summary = run("whole", "1-4")
    fresh = run("fresh", "1-4", tmp_path / "empty_store")
    whole, reference = _frame_bytes_of(tmp_path / "whole"), _frame_bytes_of(tmp_path / "fresh")
    assert list(reference) == ["0001.png", "0002.png", "0003.png", "0004.png"]
    assert whole == reference
    # The defect this guards against is visible here: the 3-4 sequence made other frames.
    late = _frame_bytes_of(tmp_path / "late")
    assert late["0003.png"] != reference["0003.png"] and late["0004.png"] != reference["0004.png"]
    assert summary["units"]["passes"] == {"ran": 0, "reused": 4}
    expected = {"ran": 2, "reused": 2} if mode == "flow_warp" else {"ran": 4, "reused": 0}
    assert summary["units"]["stylize"] == expected
    assert fresh["units"]["stylize"] == {"ran": 4, "reused": 0}
    manifest = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert manifest["consistency"] == json.loads((tmp_path / "fresh" / "manifest.json").read_text())["consistency"]
    assert manifest["consistency"]["mode"] == mode
    # the per-frame figures (E_warp against the frame before and the sequence's first) are there too
    assert manifest["consistency"]["warp_error"] and manifest["consistency"]["denoising_steps_by_frame"]


@pytest.mark.parametrize("mode", ["flow_warp", "keyframes"])
def test_sequence_frames_are_keyed_by_their_sequence_npr(tmp_path, warm_executor, mode):
    (tmp_path / "tiny4.toml").write_text(TINY)
    _sequence_case(tmp_path, warm_executor, mode, stylizer="npr")


@pytest.mark.parametrize("mode", ["flow_warp", "keyframes"])
def test_sequence_frames_are_keyed_by_their_sequence_tiny_models(tmp_path, warm_executor, tiny_models, mode):
    # 32x32 and no classifier-free guidance: the sequence logic, not the model, is under test here
    small = TINY.replace("resolution = [64, 64]", "resolution = [32, 32]")
    (tmp_path / "tiny4.toml").write_text(small + '\n[style]\nprompt = "a red room"\nnum_inference_steps = 2\nguidance_scale = 1.0\n')
    base, nets = tiny_models
    _sequence_case(tmp_path, warm_executor, mode, stylizer="diffusion", model=str(base),
                   controlnets={p: str(d) for p, d in nets.items()})


def test_changed_stage_code_reruns_that_stage_and_what_follows(tmp_path, warm_executor, monkeypatch):
    """A unit's key carries its stage's code fingerprint: new stylisation code reruns every
    stylised frame and the assembly, and reuses the passes."""
    from render_farm import task_store
    from render_farm.job_execution import run_job
    from render_farm.job_request import JobRequest

    (tmp_path / "tiny4.toml").write_text(TINY)
    request = JobRequest(command="render", templates=[str(tmp_path / "tiny4.toml")], stylizer="npr")
    first = run_job(request, tmp_path / "a", store=tmp_path / "store", executor=warm_executor, progress=False).to_json()
    assert first["units"]["stylize"] == {"ran": 4, "reused": 0}
    real = task_store.code_fingerprint
    monkeypatch.setattr(task_store, "code_fingerprint", lambda stage: real(stage) + ("+edited" if stage == "stylize" else ""))
    second = run_job(request, tmp_path / "b", store=tmp_path / "store", executor=warm_executor, progress=False).to_json()
    assert second["units"] == {"scene": {"ran": 0, "reused": 3}, "passes": {"ran": 0, "reused": 4},
                               "stylize": {"ran": 4, "reused": 0}, "assemble": {"ran": 1, "reused": 0}}
