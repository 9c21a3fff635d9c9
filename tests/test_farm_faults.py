"""Fault drills on real jobs (tiny template, NPR stylizer): kill -9 a worker, kill the job,
Ctrl-C, resume, corrupted outputs, store reuse, and local vs Ray bytes.

Every drill compares the output folder with an uninterrupted reference run: the same files,
each exactly once, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from render_farm.cli import main
from tests.support.tiny_templates import TINY

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_8 = TINY.replace("frame_end = 4", "frame_end = 8")
JOB_ONLY = {"job.json", "run_log.jsonl", "review.html"}  # review.html holds this run's timings: no output


def _view_files(out: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(".greybox") and rel not in JOB_ONLY \
                and path.name != "version.json":  # a version's entry says what ran for it
            files[rel] = path.read_bytes()
    return files


def _assert_same_as_reference(out: Path, reference: dict[str, bytes]) -> None:
    got = _view_files(out)
    assert sorted(got) == sorted(reference), "the output folder's files differ from the reference run's"
    assert not [p for p in got if Path(p).name.startswith(".")], "temporary files left in the view"
    different = [rel for rel in reference if got[rel] != reference[rel]]
    assert not different, f"bytes differ from the uninterrupted run: {different[:5]}"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "tiny.toml"
    path.write_text(TEMPLATE_8)
    return path


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("reference")
    args = ["render", str(template), "--out", str(base / "out"), "--store", str(base / "store"), "--chunk-size", "2"]
    assert main(args) == 0
    return _view_files(base / "out")


def _job(template: Path, out: Path, store: Path, *extra: str) -> list[str]:
    return ["render", str(template), "--out", str(out), "--store", str(store), "--chunk-size", "2", *extra]


def _start(cli_args: list[str], victim: str, delay: float) -> subprocess.Popen:
    """The job in a subprocess, with only the task ``victim`` held ``delay`` seconds at its start
    (tests/support/delayed_job.py), so the drill's kill or Ctrl-C lands while it runs."""
    cmd = [sys.executable, "-m", "tests.support.delayed_job", victim, str(delay), *cli_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_started(out: Path, task_id: str, proc: subprocess.Popen, timeout: float = 90) -> int:
    """The pid of the worker that started task ``task_id`` (from its log)."""
    deadline = time.monotonic() + timeout
    log = out / ".greybox" / "logs" / (task_id.replace("/", "__") + ".log")
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the job ended early: {proc.communicate()}"
        match = re.search(r"started pid=(\d+)", log.read_text()) if log.is_file() else None
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not start within {timeout} s")


def _logs(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((out / ".greybox" / "logs").glob("*.log")))


def test_kill_worker_local_then_resume(template, reference, tmp_path):
    out, store = tmp_path / "out", tmp_path / "store"
    proc = _start(_job(template, out, store, "--workers", "2"), "passes/0003-0004", delay=0.8)
    pid = _wait_for_started(out, "passes/0003-0004", proc)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "died from SIGKILL" in _logs(out)
    _assert_same_as_reference(out, reference)
    # Resuming a finished job reuses everything and changes nothing.
    assert main(["render", "--resume", "--out", str(out), "--store", str(store)]) == 0
    _assert_same_as_reference(out, reference)
    # The killed worker's staging folders went with it: its owner on this host is gone.
    assert sorted(p.name for p in (store / "staging").iterdir()) == []


def test_kill_the_job_then_resume(template, reference, tmp_path, capsys):
    out, store = tmp_path / "out", tmp_path / "store"
    proc = _start(_job(template, out, store, "--workers", "2"), "stylize/0005", delay=0.8)
    _wait_for_started(out, "stylize/0005", proc)
    proc.kill()  # kill -9 of the main process: no clean-up at all
    proc.communicate(timeout=60)
    time.sleep(1.5)  # orphaned workers finish their task and exit
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "not running" in status and ("interrupted" in status or "pending" in status)
    assert main(["render", "--resume", "--out", str(out), "--store", str(store)]) == 0
    _assert_same_as_reference(out, reference)


def test_ctrl_c_exits_130_and_resume_finishes(template, reference, tmp_path):
    out, store = tmp_path / "out", tmp_path / "store"
    proc = _start(_job(template, out, store, "--workers", "2"), "passes/0005-0006", delay=0.8)
    _wait_for_started(out, "passes/0005-0006", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    # What the message says: the same command plus --resume.
    assert main([*_job(template, out, store, "--workers", "2"), "--resume"]) == 0
    _assert_same_as_reference(out, reference)


def test_truncated_output_is_detected_and_recomputed(template, reference, tmp_path, capsys):
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["render", str(template), "--out", str(out), "--store", str(store), "--chunk-size", "2", "--json"]
    assert main(args) == 0
    capsys.readouterr()
    victim = out / "passes" / "0003.exr"
    with open(victim, "r+b") as handle:  # the view is a hard link: the store's copy is truncated too
        handle.truncate(100)
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("passes/0003-0004:3" in line and "passes/0003.exr has 100 bytes" in line for line in summary["recomputed"])
    # Only that frame's passes ran again (frame 4 of the chunk came from the store).
    assert summary["tasks"]["ran"] == 1
    _assert_same_as_reference(out, reference)


def test_changed_prompt_reruns_only_stylisation(template, tmp_path, capsys):
    store = tmp_path / "store"
    base = ["render", str(template), "--store", str(store), "--chunk-size", "2", "--frames", "1-4"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--set", 'style.prompt="a different prompt"']) == 0
    events = [json.loads(line) for line in (tmp_path / "b" / "run_log.jsonl").read_text().splitlines()]
    done = {e["id"]: e["cached"] for e in events if e.get("state") == "done"}
    assert all(done[t] for t in done if t.startswith(("passes/", "scene"))), done
    assert not any(done[t] for t in done if t.startswith(("stylize/", "assemble"))), done
    assert sum(t.startswith("passes/") for t in done) == 2 and sum(t.startswith("stylize/") for t in done) == 4


def test_ray_kill_worker_same_bytes_as_local(template, reference, tmp_path):
    """Ray on loopback with 2 CPUs (one 2-thread task at a time): kill -9 the worker running a
    passes task; the task is retried and the output is byte-identical to the local run's."""
    pytest.importorskip("ray")
    out, store = tmp_path / "out", tmp_path / "store"
    proc = _start(_job(template, out, store, "--farm", "ray", "--workers", "1", "--threads", "2"), "passes/0001-0002", delay=0.8)
    pid = _wait_for_started(out, "passes/0001-0002", proc, timeout=120)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Ray worker died" in _logs(out)
    first = json.loads((out / "run_log.jsonl").read_text().splitlines()[0])
    assert first["executor"] == "ray" and first["executor_detail"].startswith("ray (2 CPUs")
    _assert_same_as_reference(out, reference)
