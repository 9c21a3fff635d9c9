"""What runs inside a worker (a local worker process or a Ray worker) for one task.

:func:`execute_task` takes a task spec (plain data), fixes the thread count, writes the task's
log, calls the task function ``fn(params, ctx)`` and returns plain data: the records of the units
it committed to the store. Exceptions are returned as data too, classified: ``input`` (the
user's input is wrong: never retried), ``weights`` (model weights unavailable: exit 3, never
retried) or ``exception`` (retried within the budget).

A worker keeps warm state between tasks (:meth:`TaskContext.warm`), e.g. one Blender scene per
process keyed by the scene's hash.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
import traceback
from pathlib import Path

from render_farm.task_store import TaskStore

# category -> (key, object): one warm object per category per worker process.
_WARM: dict[str, tuple[str, object]] = {}
_FUNCTIONS: dict[str, object] = {}

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def fix_thread_count(threads: int) -> None:
    """Set the thread-count variables every numeric library reads (Ray sets OMP_NUM_THREADS to a
    task's CPUs; we set it to the task's own setting so bytes do not depend on the executor)."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(int(threads))


def append_log(path: str | os.PathLike | None, line: str) -> None:
    """Append one line to a task's log (best effort: a log must never fail a task). Neither the
    log nor its folder is followed when it is a link (the job's folder prepares the folder)."""
    if not path:
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            fd = os.open(path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        with open(fd, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")
    except (OSError, ValueError):
        pass


def resolve_function(path: str):
    """The function a ``module:function`` path names (imported once per process)."""
    fn = _FUNCTIONS.get(path)
    if fn is None:
        module, _, name = path.partition(":")
        fn = getattr(importlib.import_module(module), name)
        _FUNCTIONS[path] = fn
    return fn


class TaskContext:
    """What a task function gets besides its params: its units, the store, its view, warm state."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.task_id: str = spec["task_id"]
        self.units: list[tuple[str, str]] = [tuple(u) for u in spec.get("units", ())]
        self.store = TaskStore(spec["store"]) if spec.get("store") else None
        self.view = Path(spec["view"]) if spec.get("view") else None
        self.threads: int = int(spec.get("threads", 1))
        self.records: dict[str, dict] = {}
        self._log_path = spec.get("log")

    def log(self, message: str) -> None:
        append_log(self._log_path, f"[{self.task_id}] {message}")

    def key(self, unit: str) -> str:
        for name, key in self.units:
            if name == unit:
                return key
        raise KeyError(f"task {self.task_id} has no unit {unit!r}")

    def staging(self, unit: str) -> Path:
        """A fresh folder to write ``unit``'s outputs into (same file system as the store)."""
        return self.store.new_staging(self.key(unit))

    def commit(self, unit: str, staging: Path, meta: dict | None = None) -> dict:
        """Move ``unit``'s finished outputs into the store; its record is written after them.

        A task whose params name the Blender its keys were made for (``params["blender"]``) commits
        only units whose meta records that same Blender (``meta["bpy"]``)."""
        expected = (self.spec.get("params") or {}).get("blender")
        if expected is not None and (meta or {}).get("bpy") != expected:
            raise RuntimeError(f"unit {unit} of {self.task_id}: made with Blender {(meta or {}).get('bpy')}, "
                               f"keyed for Blender {expected}; not committed")
        record = self.store.commit(self.key(unit), staging, meta)
        self.records[unit] = record
        return record

    @staticmethod
    def warm(category: str, key: str, factory):
        """One warm object per category in this worker process: reused while ``key`` matches,
        closed (``close()`` when it has one) and rebuilt when it changes."""
        held = _WARM.get(category)
        if held is not None and held[0] == key:
            return held[1]
        if held is not None:
            _WARM.pop(category)
            close = getattr(held[1], "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - a stale warm object must not fail the new task
                    pass
        obj = factory()
        _WARM[category] = (key, obj)
        return obj

    @staticmethod
    def release_warm(category: str) -> None:
        """Close and forget this process's warm object of ``category`` (e.g. before a task replaces
        the Blender data a warm renderer was built on)."""
        held = _WARM.pop(category, None)
        close = getattr(held[1], "close", None) if held is not None else None
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - a stale warm object must not fail the task
                pass


def drop_inherited_blender_paths() -> None:
    """Remove Blender's script folders from ``sys.path`` unless this process imported bpy itself.

    ``import bpy`` appends Blender's script folders to ``sys.path``, and multiprocessing's spawn
    hands the parent's ``sys.path`` to its children. A worker started by a program that had
    imported bpy would then find the pure-Python ``bpy`` package in ``scripts/modules`` (which
    needs Blender's built-in ``_bpy``) instead of the wheel. The worker's own ``import bpy`` adds
    the folders back.
    """
    if "bpy" in sys.modules:
        return
    sys.path[:] = [p for p in sys.path if not _is_blender_script_path(p)]


def _is_blender_script_path(path: str) -> bool:
    parts = Path(path).parts
    return "scripts" in parts and ("bpy" in parts or "blender" in parts)


def execute_task(spec: dict) -> dict:
    """Run one task spec in this process and return its outcome as plain data.

    ``{"ok": True, "records": {unit: record}, "result": ..., "pid", "host", "seconds"}`` or
    ``{"ok": False, "error_kind": "input"|"weights"|"exception", "message", "traceback", ...}``.
    """
    started = time.perf_counter()
    pid, host = os.getpid(), socket.gethostname()
    drop_inherited_blender_paths()
    fix_thread_count(int(spec.get("threads", 1)))
    ctx = TaskContext(spec)
    ctx.log(f"attempt {spec.get('attempt', 1)} started pid={pid} host={host}")
    try:
        result = resolve_function(spec["fn"])(spec.get("params", {}), ctx)
    except BaseException as err:  # noqa: BLE001 - every failure becomes data for the scheduler
        from greybox.errors import InputError, WeightsUnavailableError

        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        kind = "input" if isinstance(err, InputError) else "weights" if isinstance(err, WeightsUnavailableError) else "exception"
        message = str(err) if kind != "exception" else f"{type(err).__name__}: {err}"
        ctx.log(f"attempt {spec.get('attempt', 1)} failed ({kind}): {message}")
        return {
            "ok": False, "error_kind": kind, "message": message,
            "traceback": traceback.format_exc(limit=20), "pid": pid, "host": host,
            "seconds": time.perf_counter() - started,
        }
    seconds = time.perf_counter() - started
    ctx.log(f"attempt {spec.get('attempt', 1)} done in {seconds:.2f} s")
    return {"ok": True, "records": ctx.records, "result": result, "pid": pid, "host": host, "seconds": seconds}
