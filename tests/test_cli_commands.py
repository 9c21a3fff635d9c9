"""The greybox command line: exit codes and messages, nothing written on bad input, reruns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from render_farm.cli import main
from tests.support.tiny_templates import TINY  # noqa: F401  (also re-exported for branches that import it from here)

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom render_farm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'bpy', 'torch', 'ray', 'diffusers', 'pydantic', 'PIL') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "validate" in out.stdout and "render" in out.stdout


def test_templates_lists_bundled_names_first(capsys):
    assert main(["templates"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert "living_room" in names and "bedroom" in names
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_validate_ok_bad_and_json(tiny, tmp_path, capsys):
    assert main(["validate", str(tiny), "living_room"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("resolution = [64, 64]", "resolution = [63, 64]").replace("fps = 12", "fps = 0"))
    capsys.readouterr()
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and any("render.resolution.0 = 63" in line for line in err) and any("render.fps" in line for line in err)
    assert main(["validate", str(bad), "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)
    assert {p["key"] for p in problems} == {"render.resolution.0", "render.fps"}
    assert all(set(p) == {"file", "key", "value", "message"} for p in problems)
    assert main(["validate", str(tiny), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["validate", str(tiny), "--set", "render.fps=-1"]) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "3-9"], "outside the template's range"),
        (["--frames", "x"], "--frames"),
        (["--set", "render.fps=0"], "render.fps"),
        (["--set", "nokey"], "expected key.path=VALUE"),
        (["--chunk-size", "0"], "--chunk-size"),
        (["--farm", "slurm"], "--farm"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tiny, tmp_path, store, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not Path(store).exists()


def test_missing_template_exits_2(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file and no bundled template" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_passes_rerun_refuses_different_inputs_then_force(tiny, tmp_path, store, capsys):
    out = tmp_path / "out"
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--json", "--workers", "2", "--chunk-size", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"]["ran"] == 3 and summary["tasks"]["reused"] == 0
    for f in range(1, 5):
        assert (out / "passes" / f"{f:04d}.exr").is_file()
        for kind in ("depth", "normal", "seg", "lines"):
            assert (out / "control" / kind / f"{f:04d}.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    from importlib.metadata import version

    assert manifest["versions"]["bpy"] == version("bpy")  # the release that rendered: 4.2, 4.5 or 5.0
    assert "depth.Z" in manifest["passes"]["exr_channels"]
    cameras = json.loads((out / "cameras.json").read_text())
    assert set(cameras) == {"1", "2", "3", "4"}
    assert set(cameras["1"]) == {"type", "K", "projection", "world_to_camera", "blender_matrix_world"}
    assert cameras["1"]["type"] == "perspective"  # its projection is K [I | 0]
    assert cameras["1"]["projection"] == [row + [0.0] for row in cameras["1"]["K"]]
    before = (out / "manifest.json").read_bytes()

    # Same inputs: every frame is reused.
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["ran"] == 0
    assert (out / "manifest.json").read_bytes() == before

    # Different inputs: refused with what differs, nothing touched.
    moved = ["--set", "objects.1.position=[0.5, 0.0, 0.5]"]
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, *moved]) == 2
    err = capsys.readouterr().err
    assert "holds a render of different inputs" in err and "objects.1.position.0: 0.0 -> 0.5" in err and "--force" in err
    assert (out / "manifest.json").read_bytes() == before

    # --force replaces it: a moved object reruns the passes and the cameras task. (The rerun above
    # used another chunk size and still reused every frame: the store caches per frame.)
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--force", "--json", *moved]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == {"done": 2, "ran": 2, "reused": 0, "failed": 0}  # default chunk of 8: one passes task
    assert (out / "manifest.json").read_bytes() != before
    assert json.loads((out / "job.json").read_text())["shots"][0]["resolved"]["objects"][1]["position"][0] == 0.5


def test_render_npr_outputs_status_and_inspect(tiny, tmp_path, store, capsys):
    out = tmp_path / "out"
    assert main(["render", str(tiny), "--out", str(out), "--store", store, "--stylizer", "npr", "--chunk-size", "2"]) == 0
    for rel in ("video.mp4", "contact_sheet.png", "manifest.json", "cameras.json", "frames/0004.png", "run_log.jsonl", "job.json"):
        assert (out / rel).is_file(), rel
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["frames"]["0002"]) >= {"passes/0002.exr", "frames/0002.png", "control/seg/0002.png"}
    assert set(manifest["files"]) == {"video.mp4", "contact_sheet.png", "cameras.json", "scene/scene.npz",
                                      "scene/layout.json", "scene/scene.glb"}
    assert set(manifest["seeds"]) >= {"scene", "style", "frames"}
    text = json.dumps(manifest)
    assert "time" not in manifest and "host" not in text
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    status_text = capsys.readouterr().out
    assert "not running" in status_text and "assemble 1/1 done" in status_text
    assert main(["status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["done"] == len(status["tasks"])
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "depth.Z" in shown and "flow_forward.X" in shown and "frames/0003.png" in shown and "video.mp4" in shown
    # the layout, readably: one line per object with its id, name, class, ADE20K index and location
    rows = {line.split()[1]: line.split() for line in shown.splitlines() if line.strip().split(" ")[0].isdigit()}
    assert rows["floor"][:4] == ["1", "floor", "floor", "3"] and rows["box1"][:4] == ["2", "box1", "table", "15"]
    assert "(0.000, 0.000, 0.500)" in shown and "explicit objects.1" in shown
    assert main(["inspect", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"] == manifest
    assert shown["layout"] == json.loads((out / "scene" / "layout.json").read_text())
    assert [o["name"] for o in shown["layout"]["objects"]] == ["floor", "box1"]
    # The video is H.264 at the template's fps and size (never rescaled).
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(out / "video.mp4"))
    meta = next(reader)
    reader.close()
    assert meta["size"] == (64, 64) and meta["fps"] == 12 and "h264" in meta["codec"]


def test_status_and_inspect_of_a_folder_without_a_job(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no greybox job" in capsys.readouterr().err


def test_second_job_in_a_locked_folder_is_refused(tiny, tmp_path, store, capsys):
    from render_farm.job_lock import JobLock

    out = tmp_path / "out"
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--frames", "1"]) == 0
    with JobLock(out):
        capsys.readouterr()
        assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--frames", "1"]) == 2
        import os

        assert f"pid {os.getpid()}" in capsys.readouterr().err


def test_several_templates_and_a_sweep_get_subfolders(tiny, tmp_path, store, capsys):
    out = tmp_path / "out"
    sweep = 'style.prompt=["a red room", "a blue room"]'
    assert main(["render", str(tiny), "--out", str(out), "--store", store, "--sweep", sweep, "--frames", "1-2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    folders = sorted(Path(p).name for p in summary["shots"].values())
    assert folders == ["tiny-prompt-a_blue_room", "tiny-prompt-a_red_room"]
    for folder in folders:
        assert (out / folder / "video.mp4").is_file() and (out / folder / "frames" / "0002.png").is_file()
    # The passes are shared through the store: the second shot reused the first one's.
    assert summary["tasks"]["reused"] >= 2


def test_unavailable_weights_exit_3_before_anything_is_written(tiny, tmp_path, store, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    out = tmp_path / "out"
    args = ["render", str(tiny), "--out", str(out), "--store", store, "--stylizer", "diffusion",
            "--controlnet", "depth=nobody/no-such-controlnet"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "stable-diffusion-v1-5" in err and "--stylizer npr" in err and "Traceback" not in err
    assert not out.exists() and not Path(store).exists()


def test_render_choices_are_the_templates():
    """--stylizer and --consistency offer exactly what style.stylizer and style.consistency accept
    (spelled out in the CLI so that `greybox --help` loads no pydantic)."""
    import argparse

    from render_farm.cli import build_parser
    from scenes.template_schema import CONSISTENCY_MODES, STYLIZERS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a.choices for a in commands.choices["render"]._actions}
    assert tuple(options["stylizer"]) == STYLIZERS and tuple(options["consistency"]) == CONSISTENCY_MODES
