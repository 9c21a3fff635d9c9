"""The embedded local executor: a pool of worker PROCESSES on this machine, no server.

Blender holds one scene per process, so Blender work never runs in the main process. Workers are
started with the ``spawn`` context (no forked copies of the main process's state), ignore SIGINT
(the main process stops them on Ctrl-C) and keep warm state between tasks. A worker that dies
(killed, out of memory) or runs past its task's time limit is killed and replaced; its task comes
back as a failed :class:`Outcome` with the reason, and the scheduler retries it elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_any


@dataclass
class Outcome:
    """What came back for one submitted task attempt."""

    task_id: str
    attempt: int
    ok: bool
    data: dict = field(default_factory=dict)  # task_worker.execute_task's return value
    error_kind: str | None = None  # input | weights | exception | died | timeout
    message: str = ""
    worker: str = ""


def _worker_main(conn, threads_env: dict) -> None:
    """A worker process: run specs from the pipe until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(threads_env)
    from render_farm.task_worker import execute_task

    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        conn.send(execute_task(spec))


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory or by hand)" if -exitcode == signal.SIGKILL else ""
        return f"worker process died from {name}{hint}"
    return f"worker process exited with code {exitcode}"


class _Slot:
    __slots__ = ("index", "process", "conn", "spec", "deadline", "affinity", "generation")

    def __init__(self, index: int):
        self.index = index
        self.process = None
        self.conn = None
        self.spec: dict | None = None
        self.deadline: float | None = None
        self.affinity: str | None = None
        self.generation = 0

    @property
    def name(self) -> str:
        return f"local-{self.index}.{self.generation}" + (f"/pid{self.process.pid}" if self.process else "")


class LocalExecutor:
    """``workers`` worker processes; one task at a time each."""

    name = "local"

    def __init__(self, workers: int = 2, start_method: str = "spawn"):
        if workers < 1:
            from greybox.errors import InputError

            raise InputError(f"--workers {workers}: must be at least 1")
        self._ctx = multiprocessing.get_context(start_method)
        self._slots = [_Slot(i) for i in range(workers)]
        self.workers = workers

    # -- worker processes --------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        env = {k: os.environ.get(k, "1") for k in ("OMP_NUM_THREADS",)}
        process = self._ctx.Process(target=_worker_main, args=(child, env), name=f"greybox-worker-{slot.index}", daemon=True)
        process.start()
        child.close()
        slot.process, slot.conn = process, parent
        slot.generation += 1
        slot.affinity = None

    def _kill(self, slot: _Slot) -> None:
        if slot.process is not None:
            if slot.process.is_alive():
                try:
                    os.kill(slot.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            slot.process.join(5)
        if slot.conn is not None:
            slot.conn.close()
        slot.process = slot.conn = None

    def start(self) -> None:
        """Start every worker now (they import in parallel with the main process's planning)."""
        for slot in self._slots:
            if slot.process is None:
                self._start(slot)

    def worker_pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None]

    # -- scheduling --------------------------------------------------------------------------
    def free_slots(self) -> int:
        return sum(1 for s in self._slots if s.spec is None)

    def submit(self, spec: dict, avoid: set[str] | frozenset = frozenset()) -> None:
        """Send a task to an idle worker: one that has not failed this task, warm for its
        affinity when one is."""
        idle = [s for s in self._slots if s.spec is None]
        if not idle:
            raise RuntimeError("no idle worker: check free_slots() before submit()")
        fresh = [s for s in idle if f"local-{s.index}" not in avoid] or idle
        affinity = spec.get("affinity")
        slot = next((s for s in fresh if affinity and s.affinity == affinity and s.process is not None), None)
        if slot is None:
            slot = next((s for s in fresh if s.affinity is None), fresh[0])
        if slot.process is None or not slot.process.is_alive():
            self._kill(slot)
            self._start(slot)
        slot.spec = spec
        slot.affinity = affinity
        timeout = spec.get("timeout_s")
        slot.deadline = time.monotonic() + timeout if timeout else None
        slot.conn.send(spec)

    def _finish(self, slot: _Slot, ok: bool, data: dict, kind: str | None, message: str) -> Outcome:
        spec = slot.spec
        outcome = Outcome(spec["task_id"], spec.get("attempt", 1), ok, data, kind, message, f"local-{slot.index}")
        slot.spec = None
        slot.deadline = None
        return outcome

    def poll(self, timeout: float) -> list[Outcome]:
        """Wait up to ``timeout`` seconds for finished, failed or timed-out tasks."""
        busy = [s for s in self._slots if s.spec is not None]
        if not busy:
            time.sleep(min(timeout, 0.05))
            return []
        now = time.monotonic()
        deadlines = [s.deadline for s in busy if s.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - now))
        waitables = {}
        for s in busy:
            waitables[s.conn] = s
            waitables[s.process.sentinel] = s
        ready = wait_any(list(waitables), timeout)
        outcomes: list[Outcome] = []
        done: set[int] = set()
        for obj in ready:
            slot = waitables[obj]
            if slot.index in done or slot.spec is None:
                continue
            data = None
            if slot.conn.poll():
                try:
                    data = slot.conn.recv()
                except (EOFError, OSError):
                    data = None
            if data is not None:
                done.add(slot.index)
                if data.get("ok"):
                    outcomes.append(self._finish(slot, True, data, None, ""))
                else:
                    outcomes.append(self._finish(slot, False, data, data.get("error_kind"), data.get("message", "")))
            elif not slot.process.is_alive() or obj is slot.process.sentinel:
                slot.process.join(1)
                reason = _exit_reason(slot.process.exitcode)
                done.add(slot.index)
                outcomes.append(self._finish(slot, False, {}, "died", f"{reason} (pid {slot.process.pid})"))
                self._kill(slot)
        now = time.monotonic()
        for slot in self._slots:
            if slot.spec is not None and slot.deadline is not None and now >= slot.deadline:
                limit = slot.spec.get("timeout_s")
                pid = slot.process.pid if slot.process else "?"
                self._kill(slot)
                outcomes.append(self._finish(slot, False, {}, "timeout", f"over its time limit of {limit:g} s; worker pid {pid} killed"))
        return outcomes

    def cancel_all(self) -> list[str]:
        """Kill the workers running tasks; return those tasks' ids (lost, to be rerun)."""
        lost = []
        for slot in self._slots:
            if slot.spec is not None:
                lost.append(slot.spec["task_id"])
                self._kill(slot)
                slot.spec = None
        return lost

    def shutdown(self) -> None:
        for slot in self._slots:
            if slot.conn is not None and slot.spec is None and slot.process is not None and slot.process.is_alive():
                try:
                    slot.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 2
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.0, deadline - time.monotonic()))
            self._kill(slot)
            slot.spec = None

    def describe(self) -> str:
        return f"local ({self.workers} worker processes)"
