"""A job as a graph of tasks with explicit dependencies.

A :class:`Task` is one piece of work a worker runs (``fn``, a ``module:function`` path, with JSON
``params``). Its outputs are cached in the store per *unit* (a frame's passes, a frame's stylised
image, a shot's video): ``units`` lists ``(name, key)``; a task whose every unit is in the store is
done without running. A task whose keys depend on what its upstream units recorded (region prompts keyed by the frames
that show their objects; the atlases a keyframes frame reads, known once the shot's look is planned) names ``keys_from``: the scheduler computes its units once its
dependencies are done, before looking for them in the store. ``deps`` are task ids that must finish first: passes before stylisation,
frame t-1 before frame t (flow warping), keyframes before the frames that gather from them,
every frame before assembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greybox.errors import InputError


@dataclass
class Task:
    """One schedulable piece of work."""

    task_id: str
    kind: str  # "scene", "passes", "stylize", "assemble" (for display and stats)
    fn: str  # "module:function" run in a worker as fn(params, ctx)
    params: dict = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    units: tuple[tuple[str, str], ...] = ()  # (unit name, store key)
    shot: str = ""
    view: str = ""  # folder the units' outputs are linked into (the shot's output folder)
    frames: tuple[int, ...] = ()
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int = 1  # fixed thread count inside the task, whichever executor runs it
    timeout_s: float | None = None
    affinity: str | None = None  # workers that ran a task of the same affinity are preferred (warm state)
    # "module:function" computing ``units`` when the dependencies are done, for keys that depend on
    # what upstream units hold: fn(params["keys"], {dep id: {unit: record}}, store, view) -> [(unit, key)];
    # the scheduler also puts them in params["sequence_keys"] ({unit: key})
    keys_from: str | None = None


class JobGraph:
    """Tasks in insertion order with checked dependencies (unknown ids and cycles are refused)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}

    def add(self, task: Task) -> Task:
        if task.task_id in self.tasks:
            raise ValueError(f"task {task.task_id!r} is already in the graph")
        for dep in task.deps:
            if dep not in self.tasks:
                raise ValueError(f"task {task.task_id!r} depends on {dep!r}, which is not in the graph (add it first)")
        self.tasks[task.task_id] = task
        return task

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks.values())

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for task in self.tasks.values():
            for dep in task.deps:
                out[dep].append(task.task_id)
        return out

    def check(self) -> None:
        """Deps must name earlier tasks, so the insertion order is a topological order (no cycles)."""
        seen: set[str] = set()
        for task in self.tasks.values():
            for dep in task.deps:
                if dep not in seen:
                    raise InputError(f"task {task.task_id!r} depends on {dep!r}, which comes after it: a cycle")
            seen.add(task.task_id)

    def summary(self) -> list[dict]:
        """Plain data for ``greybox status``: id, kind, shot, frames, deps."""
        return [
            {"id": t.task_id, "kind": t.kind, "shot": t.shot, "frames": list(t.frames), "deps": list(t.deps)}
            for t in self.tasks.values()
        ]
