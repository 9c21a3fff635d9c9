"""Drive a :class:`JobGraph` through an executor: cache checks, dispatch, retries, views, the run log.

The scheduler runs in the main process and never imports a stage. For each task whose
dependencies are done it checks the store: units whose record exists and whose bytes still match
are linked into the task's view without running; the rest go to a worker. A task that fails
(worker died, out of memory, over its time limit, an exception) is retried on another worker
within the retry budget, each reason appended to the task's log; an error in the user's input or
unavailable model weights is not retried. Past ``max_failed_tasks`` permanent failures nothing
new starts and the job ends with every failure and its reason.

Events go to ``DIR/run_log.jsonl`` (one JSON object a line: run start and end with host and
timings, each task's transitions); ``greybox status`` replays them.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from render_farm.job_graph import JobGraph, Task
from render_farm.task_store import TaskStore
from render_farm.task_worker import append_log, resolve_function

NOT_RETRIED = ("input", "weights")


@dataclass
class RunPolicy:
    retries: int = 3  # attempts after the first, per task
    max_failed_tasks: int = 1  # permanent failures after which nothing new starts
    verify_cache: bool = True  # re-hash cached outputs before trusting them
    poll_s: float = 0.5


@dataclass
class JobResult:
    done: int = 0
    ran: int = 0
    cached: int = 0
    failed: dict[str, dict] = field(default_factory=dict)  # task id -> {kind, reason, attempts}
    blocked: list[str] = field(default_factory=list)
    records: dict[str, dict[str, dict]] = field(default_factory=dict)  # task id -> unit -> record
    recomputed: list[str] = field(default_factory=list)  # "unit: reason" for outputs found broken
    # task kind -> {"ran": units computed by this job, "reused": units found in the store when
    # their task was (last) dispatched}: what really ran, whether or not its task did
    units: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class RunLog:
    """Append-only JSON lines (buffered; flushed at every scheduler wake-up and at the end).

    With ``root`` (the job's folder) the file is opened inside it without following a link.
    A flush that fails (no space left) raises the user's error once; :meth:`close` never raises.
    """

    def __init__(self, path: str | os.PathLike | None, *, root: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self._handle = None
        if self.path is not None:
            if root is not None:
                from greybox.confined_files import open_append

                fd = open_append(root, self.path.relative_to(root))
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            self._handle = open(fd, "a", encoding="utf-8", buffering=1 << 16)

    def write(self, event: dict) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")

    def flush(self) -> None:
        if self._handle is not None:
            try:
                self._handle.flush()
            except OSError as err:
                from greybox.errors import write_error

                handle, self._handle = self._handle, None
                try:
                    handle.close()
                except OSError:
                    pass
                raise write_error(err, self.path) from None

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError:
                pass  # best effort: the run's outcome is reported elsewhere


def task_log_path(log_dir: Path | None, task_id: str) -> str | None:
    if log_dir is None:
        return None
    return str(log_dir / (task_id.replace("/", "__") + ".log"))


def run_graph(
    graph: JobGraph,
    executor,
    store: TaskStore | None,
    *,
    policy: RunPolicy | None = None,
    run_log: RunLog | None = None,
    log_dir: Path | None = None,
    on_event=None,
) -> JobResult:
    """Run every task of ``graph`` (or find it done in ``store``); return what happened.

    ``on_event(kind, task, info)`` is called with kind in {"done", "cached", "retry", "failed",
    "blocked", "started"} (progress display). KeyboardInterrupt stops the executor's workers
    (losing at most the tasks in flight), logs ``interrupted`` and propagates.
    """
    # 1. Check inputs and set up the bookkeeping.
    policy = policy or RunPolicy()
    graph.check()
    run_log = run_log or RunLog(None)
    tasks = graph.tasks
    dependents = graph.dependents()
    waiting = {tid: len(t.deps) for tid, t in tasks.items()}
    ready = collections.deque(tid for tid, n in waiting.items() if n == 0)
    attempts: dict[str, int] = collections.defaultdict(int)
    avoid: dict[str, set[str]] = {}
    running: dict[str, float] = {}
    result = JobResult()
    started = time.perf_counter()
    emit = on_event or (lambda kind, task, info: None)
    stopping = False

    def finish(task: Task, records: dict, cached: bool, info: dict, reused: int | None = None) -> None:
        count = result.units.setdefault(task.kind, {"ran": 0, "reused": 0})
        reused = len(records) if cached else (reused or 0)
        count["reused"] += reused
        count["ran"] += len(records) - reused
        if records:
            result.records[task.task_id] = records
            if store is not None and task.view:
                view = Path(task.view)
                for unit, record in records.items():
                    store.link_into(record["key"], record, view)
        result.done += 1
        if cached:
            result.cached += 1
        else:
            result.ran += 1
        run_log.write({"event": "task", "id": task.task_id, "state": "done", "cached": cached, **info})
        emit("cached" if cached else "done", task, info)
        for child in dependents[task.task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)

    def block_dependents(task_id: str) -> None:
        stack = list(dependents[task_id])
        while stack:
            child = stack.pop()
            if waiting.get(child, 0) >= 0:
                waiting[child] = -1
                result.blocked.append(child)
                run_log.write({"event": "task", "id": child, "state": "blocked", "reason": f"depends on failed {task_id}"})
                emit("blocked", tasks[child], {})
                stack.extend(dependents[child])

    def fail(task: Task, kind: str, reason: str) -> None:
        nonlocal stopping
        result.failed[task.task_id] = {"kind": kind, "reason": reason, "attempts": attempts[task.task_id]}
        run_log.write({"event": "task", "id": task.task_id, "state": "failed", "kind": kind, "reason": reason,
                       "attempts": attempts[task.task_id]})
        append_log(task_log_path(log_dir, task.task_id), f"[{task.task_id}] FAILED for good ({kind}): {reason}")
        emit("failed", task, {"kind": kind, "reason": reason})
        block_dependents(task.task_id)
        if kind in NOT_RETRIED or len(result.failed) >= policy.max_failed_tasks:
            stopping = True

    def dispatch(task: Task) -> None:
        # Keys computed from what the dependencies recorded (Task.keys_from), then the store check:
        # units already in the store (and intact) are not recomputed.
        if task.keys_from and not task.units:
            compute = resolve_function(task.keys_from)
            upstream = {dep: result.records.get(dep, {}) for dep in task.deps}
            try:
                task.units = tuple((str(u), str(k)) for u, k in compute(task.params["keys"], upstream, store, task.view))
            except Exception as err:  # noqa: BLE001 - a unit that cannot be keyed fails its task, not the scheduler
                attempts[task.task_id] += 1
                append_log(task_log_path(log_dir, task.task_id), f"[{task.task_id}] keys: {type(err).__name__}: {err}")
                fail(task, "exception", f"its store keys could not be computed ({type(err).__name__}: {err})")
                return
            task.params["sequence_keys"] = dict(task.units)  # what a sequence task reads its stored frames by
        todo, have = [], {}
        if store is not None:
            for unit, key in task.units:
                record, broken = store.load_record(key, verify=policy.verify_cache)
                if record is None:
                    todo.append((unit, key))
                    if broken:
                        result.recomputed.append(f"{task.task_id}:{unit}: {broken}")
                        run_log.write({"event": "recompute", "id": task.task_id, "unit": unit, "reason": broken})
                        append_log(task_log_path(log_dir, task.task_id), f"[{task.task_id}] {unit}: {broken}; recomputing")
                else:
                    have[unit] = record
        else:
            todo = list(task.units)
        if task.units and not todo:
            finish(task, have, True, {})
            return
        if have and store is not None and task.view:
            for unit, record in have.items():
                store.link_into(record["key"], record, Path(task.view))
        attempts[task.task_id] += 1
        spec = {
            "task_id": task.task_id, "fn": task.fn, "params": task.params, "units": todo,
            "store": str(store.root) if store is not None else None, "view": task.view,
            "log": task_log_path(log_dir, task.task_id), "threads": task.threads,
            "attempt": attempts[task.task_id], "timeout_s": task.timeout_s, "affinity": task.affinity,
            "num_cpus": task.num_cpus, "num_gpus": task.num_gpus,
        }
        pending_records[task.task_id] = have
        executor.submit(spec, avoid=avoid.get(task.task_id, frozenset()))
        running[task.task_id] = time.perf_counter()
        run_log.write({"event": "task", "id": task.task_id, "state": "running", "attempt": attempts[task.task_id],
                       "units": len(todo)})
        emit("started", task, {"attempt": attempts[task.task_id]})

    pending_records: dict[str, dict] = {}
    try:
        # 2. Schedule until nothing is ready or running.
        while True:
            while ready and not stopping and executor.free_slots() > 0:
                tid = ready.popleft()
                if waiting.get(tid) == -1:
                    continue
                dispatch(tasks[tid])
            if not running:
                if ready and not stopping:
                    continue
                break
            for outcome in executor.poll(policy.poll_s):
                task = tasks[outcome.task_id]
                began = running.pop(task.task_id)
                have = pending_records.pop(task.task_id, {})
                if outcome.ok:
                    records = {**have, **outcome.data.get("records", {})}
                    info = {"attempt": outcome.attempt, "worker": outcome.worker, "host": outcome.data.get("host"),
                            "seconds": round(time.perf_counter() - began, 4)}
                    returned = outcome.data.get("result")
                    if isinstance(returned, dict) and returned.get("frame_seconds"):
                        info["frame_seconds"] = returned["frame_seconds"]  # the review page plots them
                    finish(task, records, False, info, reused=len(have))
                    continue
                reason = outcome.message or outcome.error_kind or "unknown failure"
                kind = outcome.error_kind or "exception"
                log_path = task_log_path(log_dir, task.task_id)
                append_log(log_path, f"[{task.task_id}] attempt {outcome.attempt} on {outcome.worker} failed ({kind}): {reason}")
                if outcome.data.get("traceback") and kind == "exception":
                    append_log(log_path, outcome.data["traceback"])
                if kind in NOT_RETRIED or attempts[task.task_id] > policy.retries:
                    fail(task, kind, reason)
                    continue
                avoid.setdefault(task.task_id, set()).add(outcome.worker)
                run_log.write({"event": "task", "id": task.task_id, "state": "retry", "kind": kind, "reason": reason,
                               "attempt": outcome.attempt, "worker": outcome.worker})
                emit("retry", task, {"kind": kind, "reason": reason})
                ready.appendleft(task.task_id)
            run_log.flush()
    except BaseException:
        lost = executor.cancel_all()
        for tid in lost:
            run_log.write({"event": "task", "id": tid, "state": "interrupted"})
        raise
    finally:
        result.seconds = time.perf_counter() - started
        run_log.flush()
    return result


def run_header(executor_name: str, argv: list[str] | None = None) -> dict:
    """The run log's first line of a run: when, where, how (not part of any deterministic output)."""
    return {
        "event": "run_start", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "pid": os.getpid(), "argv": list(argv if argv is not None else sys.argv), "executor": executor_name,
    }
