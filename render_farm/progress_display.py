"""Progress of a job per stage: rich progress bars on a terminal, plain lines otherwise (logs, CI).

Counts are frames for per-frame stages (passes, stylize) and tasks for the others, each with the
time left at the stage's own pace (frames reused from the store are counted done, not timed).
Everything goes to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time

STAGE_ORDER = ("scene", "passes", "stylize", "assemble")


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
        self.started_at: dict[str, float] = {}  # when the stage's first task started running
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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
            from rich.text import Text

            display = self

            class StageTimeLeft(ProgressColumn):
                """Time left at the stage's own pace (rich's estimate would count reused frames as fast ones)."""

                def render(self, task) -> Text:
                    left = display.seconds_left(task.description)
                    if task.finished:
                        return Text("done", style="progress.remaining")
                    return Text("-:--:--" if left is None else f"{_duration(left)} left", style="progress.remaining")

            self._progress = Progress(
                TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(), StageTimeLeft(), console=Console(file=self.stream), transient=False,
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
        if kind == "started":
            self.started_at.setdefault(task.kind, time.monotonic())
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

    def seconds_left(self, kind: str, now: float | None = None) -> float | None:
        """Time left for stage ``kind`` at the pace of what it computed so far (None before there is a pace)."""
        done, total = self.done.get(kind, 0), self.totals.get(kind, 0)
        computed = done - self.reused.get(kind, 0)
        if done >= total:
            return 0.0
        if kind not in self.started_at or computed <= 0:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started_at[kind]
        return elapsed / computed * (total - done)

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < self._interval:
            return
        self._last_plain = now
        parts = []
        for kind in sorted(self.totals, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else 99):
            unit = "frames" if kind in ("passes", "stylize") else "tasks"
            notes = [f"{self.reused[kind]} reused"] if self.reused.get(kind) else []
            left = self.seconds_left(kind, now)
            if left is not None and left > 0:
                notes.append(f"~{_duration(left)} left")
            extra = f" ({', '.join(notes)})" if notes else ""
            parts.append(f"{kind} {self.done.get(kind, 0)}/{self.totals[kind]} {unit}{extra}")
        print("progress: " + ", ".join(parts), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
