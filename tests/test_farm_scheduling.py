"""The job machinery without stages: dependencies, retries, time limits, failures, overhead, memory.

Task types injected here (``test_farm_scheduling:<name>``) run in real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
import tracemalloc
from pathlib import Path

import pytest

from greybox.errors import InputError
from render_farm.job_graph import JobGraph, Task
from render_farm.job_runner import RunLog, RunPolicy, run_graph
from render_farm.local_executor import LocalExecutor

HERE = "test_farm_scheduling"


# -- injectable task types (run inside worker processes) ------------------------------------
def _first_attempt(params) -> bool:
    """True the first time a marker is seen (files survive a killed worker)."""
    marker = Path(params["marker"])
    if marker.exists():
        return False
    marker.write_text(str(os.getpid()))
    return True


def hang_once(params, ctx):
    if _first_attempt(params):
        time.sleep(3600)
    return {"pid": os.getpid()}


def die_once(params, ctx):
    if _first_attempt(params):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}


def always_raises(params, ctx):
    raise RuntimeError("this task always breaks")


def bad_input(params, ctx):
    raise InputError("style.prompt = 3: must be a string")


def record_order(params, ctx):
    with open(params["log"], "a") as handle:
        handle.write(f"{params['frame']}\n")


@pytest.fixture(scope="module")
def executor():
    ex = LocalExecutor(workers=2)
    ex.start()
    yield ex
    ex.shutdown()


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hanging_task_is_timed_out_and_retried(executor, tmp_path):
    graph = JobGraph()
    graph.add(Task("hang", "test", f"{HERE}:hang_once", {"marker": str(tmp_path / "m")}, timeout_s=6.0))  # room for a fresh worker to start on a loaded machine
    graph.add(Task("after", "test", "tests.support.drill_tasks:noop", deps=("hang",)))
    run_log = RunLog(tmp_path / "run_log.jsonl")
    result = run_graph(graph, executor, None, run_log=run_log, log_dir=tmp_path / "logs", policy=RunPolicy(poll_s=0.2))
    run_log.close()
    assert result.ok and result.done == 2
    retries = [e for e in _events(tmp_path / "run_log.jsonl") if e.get("state") == "retry"]
    assert len(retries) == 1 and retries[0]["kind"] == "timeout"
    assert "over its time limit of 6 s" in (tmp_path / "logs" / "hang.log").read_text()


def test_killed_worker_task_is_retried_on_another_worker(executor, tmp_path):
    graph = JobGraph()
    graph.add(Task("dies", "test", f"{HERE}:die_once", {"marker": str(tmp_path / "m")}))
    result = run_graph(graph, executor, None, log_dir=tmp_path / "logs", policy=RunPolicy(poll_s=0.2))
    assert result.ok
    log = (tmp_path / "logs" / "dies.log").read_text()
    assert "died from SIGKILL" in log
    first_pid = int((tmp_path / "m").read_text())
    assert first_pid not in executor.worker_pids()


def test_failures_stop_past_threshold_and_block_dependents(executor, tmp_path):
    graph = JobGraph()
    graph.add(Task("broken", "test", f"{HERE}:always_raises"))
    graph.add(Task("child", "test", "tests.support.drill_tasks:noop", deps=("broken",)))
    result = run_graph(graph, executor, None, log_dir=tmp_path / "logs", policy=RunPolicy(retries=2, poll_s=0.1))
    assert not result.ok
    assert result.failed["broken"]["attempts"] == 3  # first try + 2 retries
    assert "always breaks" in result.failed["broken"]["reason"]
    assert result.blocked == ["child"]


def test_input_errors_are_not_retried(executor, tmp_path):
    graph = JobGraph()
    graph.add(Task("bad", "test", f"{HERE}:bad_input"))
    result = run_graph(graph, executor, None, policy=RunPolicy(retries=3, poll_s=0.1))
    assert result.failed["bad"] == {"kind": "input", "reason": "style.prompt = 3: must be a string", "attempts": 1}


def test_cross_frame_dependencies_are_respected(executor, tmp_path):
    """A flow-warp-like chain: frame t runs only after frame t-1 finished."""
    order = tmp_path / "order.txt"
    graph = JobGraph()
    previous = None
    for frame in range(1, 9):
        task = graph.add(Task(f"f{frame}", "test", f"{HERE}:record_order", {"log": str(order), "frame": frame},
                              deps=(previous,) if previous else ()))
        previous = task.task_id
    assert run_graph(graph, executor, None, policy=RunPolicy(poll_s=0.05)).ok
    assert [int(x) for x in order.read_text().split()] == list(range(1, 9))


def test_graph_refuses_unknown_dependencies():
    graph = JobGraph()
    with pytest.raises(ValueError, match="not in the graph"):
        graph.add(Task("a", "test", "tests.support.drill_tasks:noop", deps=("missing",)))


def test_ten_thousand_noop_tasks_overhead_and_flat_memory(executor, tmp_path):
    """4 shots x 2,500 frames: per-frame tasks chained in groups of 10 (cross-frame deps), one
    assembly per shot. Prints the per-task overhead (goal < 5 ms) and the memory growth."""
    graph = JobGraph()
    for shot in range(4):
        previous = None
        frames = []
        for frame in range(2500):
            tid = f"shot{shot}/stylize/{frame:04d}"
            deps = (previous,) if previous and frame % 10 else ()
            graph.add(Task(tid, "noop", "tests.support.drill_tasks:noop", shot=f"shot{shot}", frames=(frame,), deps=deps))
            previous = tid
            frames.append(tid)
        graph.add(Task(f"shot{shot}/assemble", "noop", "tests.support.drill_tasks:noop", deps=tuple(frames[9::10])))
    samples: list[int] = []
    done = [0]

    def on_event(kind, task, info):
        done[0] += 1
        if done[0] % 1000 == 0:
            samples.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    run_log = RunLog(tmp_path / "run_log.jsonl")
    started = time.perf_counter()
    result = run_graph(graph, executor, None, run_log=run_log, on_event=on_event, policy=RunPolicy(poll_s=0.5))
    elapsed = time.perf_counter() - started
    tracemalloc.stop()
    run_log.close()
    assert result.ok and result.done == len(graph) == 10_004
    per_task_ms = elapsed / len(graph) * 1000
    growth_mb = (max(samples) - samples[0]) / 2**20
    print(f"\n10,004 no-op tasks on 2 local workers: {per_task_ms:.3f} ms per task (goal < 5 ms); traced memory "
          f"after every 1,000 tasks (MB): {' '.join(f'{s / 2**20:.2f}' for s in samples)}")
    assert per_task_ms < 50
    assert growth_mb < 8, f"memory grew {growth_mb:.1f} MB between 1,000 and 10,000 tasks done"
