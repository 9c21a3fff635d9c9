"""Each task estimates its peak memory and is refused before it renders when its machine (or
--max-memory) cannot hold it, saying what would fit."""

from __future__ import annotations

import pytest

from greybox.errors import InputError
from render_farm import task_memory
from render_farm.cli import main
from render_farm.task_memory import MemoryLimitError, check_task_memory, estimate_peak_bytes, parse_size
from tests.support.tiny_templates import TINY


def test_the_estimate_is_linear_in_pixels_as_calibrated():
    # The calibration (benchmarks/task_memory.py): 1.51 GB at 2048^2, 3.79 GB at 4096^2, 7.59 GB at 6144^2.
    for side, measured in ((2048, 1.513e9), (4096, 3.790e9), (6144, 7.586e9)):
        assert abs(estimate_peak_bytes("passes", side, side) - measured) / measured < 0.02
    assert estimate_peak_bytes("passes", 8192, 8192) >= 12.4e9  # reported at 8192^2: never under
    assert estimate_peak_bytes("stylize", 512, 512, stylizer="diffusion") is None


@pytest.mark.parametrize("text, value", [("8G", 8e9), ("8GB", 8e9), ("8GiB", 8 * 2**30), ("500m", 5e8), ("12e9", 12e9), ("4096", 4096)])
def test_sizes(text, value):
    assert parse_size(text) == int(value)


@pytest.mark.parametrize("text", ["", "8X", "-1G", "G", "nan"])
def test_bad_sizes(text):
    with pytest.raises(InputError, match="--max-memory"):
        parse_size(text)


# A template's default passes/NNNN.exr (every group: the float ids and Cryptomatte too) adds 64 B a
# pixel to the calibrated 181 (what the EXR writer holds beyond the 13 pass channels).
DEFAULT_LAYOUT_BYTES_PER_PIXEL = 181 + 64


def _assert_largest_fit(message: str, budget: float, per_pixel: int = 181) -> None:
    """Independently: 0.75 GB + ``per_pixel`` B a pixel within the budget, 2:1, multiples of 8, the largest such."""
    fit = message.split("render.resolution = [")[1].split("]")[0]
    w, h = (int(v) for v in fit.split(", "))
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 2) < 0.02
    assert 750e6 + per_pixel * w * h <= budget < 750e6 + per_pixel * (w + 16) * (h + 8)


def test_refusal_says_what_fits():
    with pytest.raises(MemoryLimitError) as info:
        check_task_memory("passes", 8192, 4096, max_memory=4_000_000_000)
    message = str(info.value)
    assert "8192x4096" in message and "--max-memory allows 4.0 GB" in message
    _assert_largest_fit(message, 4e9)
    with pytest.raises(MemoryLimitError, match="not even the smallest"):
        check_task_memory("passes", 512, 512, max_memory=100_000_000)
    assert check_task_memory("passes", 512, 512, free=1_000_000_000) == estimate_peak_bytes("passes", 512, 512)
    with pytest.raises(MemoryLimitError, match="this machine .* has 2.0 GB free"):
        check_task_memory("passes", 4096, 4096, free=1_500_000_000, held=500_000_000)


def test_max_memory_refuses_before_anything_is_written(tmp_path, capsys):
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["render", str(template), "--out", str(out), "--store", str(store), "--set", "render.resolution=[8192, 8192]"]
    assert main([*args, "--max-memory", "4G"]) == 2
    err = capsys.readouterr().err
    assert "need about 17.2 GB" in err and "render.resolution = [" in err and "Traceback" not in err  # 0.75 GB + 245 B/px
    assert not out.exists() and not store.exists()
    assert main([*args, "--max-memory", "lots"]) == 2
    assert not out.exists()


def test_local_jobs_are_checked_against_this_machine(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(task_memory, "machine_free_bytes", lambda: 1_000_000_000)
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    out = tmp_path / "out"
    assert main(["passes", str(template), "--out", str(out), "--store", str(tmp_path / "s"), "--set", "render.resolution=[4096, 2048]"]) == 2
    err = capsys.readouterr().err
    assert "this machine" in err and "1.0 GB free" in err
    _assert_largest_fit(err, 1e9, DEFAULT_LAYOUT_BYTES_PER_PIXEL)
    assert not out.exists()


def test_a_task_checks_its_own_machine_before_rendering(tmp_path, monkeypatch):
    """On a farm the driver cannot see the node: the worker refuses (an input error: not retried)."""
    from render_farm.task_worker import THREAD_ENV_VARS, execute_task
    from scenes.template_loading import load_template

    for name in THREAD_ENV_VARS:  # execute_task fixes them for the task: restore them afterwards
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(task_memory, "machine_free_bytes", lambda: 500_000_000)
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    resolved = load_template(str(template), ["render.resolution=[4096, 4096]"]).resolved
    spec = {"task_id": "passes/0001-0001", "fn": "render_farm.stage_tasks:passes_chunk",
            "params": {"template": resolved, "scene_key": "k", "max_memory": None},
            "units": [("1", "0" * 64)], "store": str(tmp_path / "store"), "threads": 1}
    outcome = execute_task(spec)
    assert not outcome["ok"] and outcome["error_kind"] == "input"
    assert "passes/0001-0001: the passes at 4096x4096 need about 4.9 GB" in outcome["message"]  # 0.75 GB + 245 B/px
    assert not (tmp_path / "store").exists()
