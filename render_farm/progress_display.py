"""Progress of a job per stage: rich progress bars on a terminal, plain lines otherwise (logs, CI).

Counts are frames for per-frame stages (passes, stylize) and tasks for the others. Everything goes
to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time

STAGE_ORDER = ("cameras", "passes", "stylize", "assemble")


class ProgressDisplay:
    """Call :meth:`on_event` from the scheduler; use as a context manager around the run."""

    def __init__(self, graph, *, stream=None, enabled: bool = True, plain_interval_s: float = 2.0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.totals: dict[str, int] = {}
        for task in graph:
            self.totals[task.kind] = self.totals.get(task.kind, 0) + self._amount(task)
        self.done = {kind: 0 for kind in self.totals}
        self.reused = {kind: 0 for kind in self.totals}
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._progress = None
        self._bars: dict[str, int] = {}
        self._last_plain = 0.0
        self._interval = plain_interval_s

    @staticmethod
    def _amount(task) -> int:
        return len(task.frames) if task.frames else 1

    def __enter__(self):
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=self.stream), transient=False,
            )
            self._progress.start()
            for kind in sorted(self.totals, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else 99):
                unit = "frames" if kind in ("passes", "stylize") else "tasks"
                self._bars[kind] = self._progress.add_task(kind, total=self.totals[kind], unit=unit)
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        elif self.enabled:
            self._plain(force=True)

    def on_event(self, kind: str, task, info: dict) -> None:
        if kind in ("done", "cached"):
            amount = self._amount(task)
            self.done[task.kind] = self.done.get(task.kind, 0) + amount
            if kind == "cached":
                self.reused[task.kind] = self.reused.get(task.kind, 0) + amount
            if self._progress is not None:
                self._progress.update(self._bars[task.kind], advance=amount)
            elif self.enabled:
                self._plain()
        elif kind in ("retry", "failed") and self.enabled:
            verb = "retrying" if kind == "retry" else "FAILED"
            line = f"{task.task_id}: {verb} ({info.get('kind')}): {info.get('reason')}"
            if self._progress is not None:
                self._progress.console.print(line)
            else:
                print(line, file=self.stream, flush=True)

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < self._interval:
            return
        self._last_plain = now
        parts = []
        for kind in sorted(self.totals, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else 99):
            reused = f" ({self.reused[kind]} reused)" if self.reused.get(kind) else ""
            parts.append(f"{kind} {self.done.get(kind, 0)}/{self.totals[kind]}{reused}")
        print("progress: " + ", ".join(parts), file=self.stream, flush=True)
