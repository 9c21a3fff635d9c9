"""Farm task functions for the scheduling tests and the fault drills; no production graph uses them.

- :func:`noop`: does nothing (scheduling overhead, dependency tests).
- :func:`delayed`: holds its first attempt ``params["drill_delay_s"]`` seconds after it starts, then
  runs the task function ``params["drill_fn"]`` with the other params. A drill wraps its victim in
  it (:func:`delay_task`), so that a kill or a Ctrl-C lands while that task runs and no other
  task waits; a retry runs at once.
"""

from __future__ import annotations

import importlib
import time

DELAYED_FN = "tests.support.drill_tasks:delayed"


def noop(params: dict, ctx) -> None:
    """Does nothing."""
    return None


def delayed(params: dict, ctx):
    """Sleep (first attempt only), then run the wrapped task function."""
    params = dict(params)
    module, _, name = params.pop("drill_fn").partition(":")
    delay = float(params.pop("drill_delay_s"))
    if int(ctx.spec.get("attempt", 1)) == 1:
        ctx.log(f"drill: holding this attempt {delay:g} s")
        time.sleep(delay)
    return getattr(importlib.import_module(module), name)(params, ctx)


def delay_task(graph, task_id: str, delay_s: float) -> None:
    """Wrap ``graph``'s task ``task_id`` in :func:`delayed` (its store units and keys are unchanged)."""
    if task_id not in graph.tasks:
        raise KeyError(f"no task {task_id!r} in the graph; it has {', '.join(graph.tasks)}")
    task = graph.tasks[task_id]
    task.params = {**task.params, "drill_fn": task.fn, "drill_delay_s": float(delay_s)}
    task.fn = DELAYED_FN
