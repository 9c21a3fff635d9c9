"""The Ray executor: the same task graph on a private Ray (``--farm ray``) or a cluster it joins.

Where it runs is a :class:`~render_farm.ray_connection.FarmTarget`: a private Ray on this machine
(every listener on 127.0.0.1: ``_node_ip_address``, ``dashboard_host`` and Ray told not to swap
loopback for the machine's address), or a cluster joined by ``ray://HOST:PORT``, ``HOST:PORT`` or
``RAY_ADDRESS``, with its token authentication and a bounded wait (``ray_connection``). The store and
the output folder must then be on storage every node mounts at the same path. Blender tasks ask for
``num_cpus`` (their thread count); diffusion tasks ask for ``num_gpus=1`` when the cluster has GPUs.
Ray's own retries are off (``max_retries=0``): the scheduler retries with the reason in the task's
log, the same as locally. Workers keep warm state between tasks (``max_calls=0`` even for GPU tasks).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from render_farm.local_executor import Outcome
from render_farm.ray_connection import FarmTarget, join_cluster, parse_farm, restore_ray_settings, use_loopback_only

REPO_ROOT = Path(__file__).resolve().parents[1]


def check_ray_installed(farm: str) -> None:
    """Raise ``InputError`` (exit 2) naming the fix when Ray is not installed (``greybox[ray]`` is an extra)."""
    import importlib.util

    from greybox.errors import InputError

    if importlib.util.find_spec("ray") is None:
        raise InputError(f"--farm {farm}: Ray is not installed in this Python; pip install 'greybox[ray]', or use --farm local")


def _run_on_ray(spec: dict) -> dict:
    from render_farm.task_worker import execute_task

    return execute_task(spec)


class RayExecutor:
    """Submit task specs as Ray tasks; at most ``capacity`` in flight so time limits count from start."""

    name = "ray"

    def __init__(self, target: FarmTarget | str | None = None, *, workers: int = 2, threads: int = 2,
                 include_dashboard: bool | None = None, dashboard_port: int | None = None):
        """``target``: a FarmTarget, a ``--farm`` value, or None (a private Ray). Raises ConnectionError
        (ClusterUnavailable, with what to set) when a cluster cannot be joined."""
        if target is None:
            target = FarmTarget("private")
        elif isinstance(target, str):
            target = parse_farm(target)
        self.target = target
        self._owns = False
        already = sys.modules.get("ray")
        if already is not None and already.is_initialized():
            pass  # the caller connected Ray itself: use that
        elif target.is_cluster:
            join_cluster(target, log_to_driver=False, logging_level=logging.WARNING)
            self._owns = True  # ours to disconnect from (the cluster keeps running)
        else:
            # A private Ray on loopback only; workers find this source tree through PYTHONPATH.
            use_loopback_only()
            paths = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            import ray

            kwargs = {}
            if dashboard_port is not None:
                kwargs["dashboard_port"] = dashboard_port
            ray.init(
                address=None, num_cpus=max(1, workers * threads),
                include_dashboard=True if include_dashboard is None else include_dashboard,
                dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", log_to_driver=False,
                logging_level=logging.WARNING, **kwargs,
            )
            self._owns = True
        import ray

        self._ray = ray
        resources = ray.cluster_resources()
        self.cpus = float(resources.get("CPU", 1))
        self.gpus = float(resources.get("GPU", 0))
        self.capacity = max(1, int(self.cpus // max(1, threads)))
        self.workers = self.capacity
        self._remote = ray.remote(max_calls=0)(_run_on_ray)
        self._inflight: dict[object, tuple[dict, float | None]] = {}

    @property
    def has_gpu(self) -> bool:
        return self.gpus > 0

    def start(self) -> None:
        pass

    def free_slots(self) -> int:
        return self.capacity - len(self._inflight)

    def submit(self, spec: dict, avoid=frozenset()) -> None:
        num_gpus = float(spec.get("num_gpus") or 0) if self.has_gpu else 0.0
        ref = self._remote.options(
            num_cpus=float(spec.get("num_cpus") or 1), num_gpus=num_gpus, max_retries=0, retry_exceptions=False,
            name=spec["task_id"],
        ).remote(spec)
        timeout = spec.get("timeout_s")
        self._inflight[ref] = (spec, time.monotonic() + timeout if timeout else None)

    def poll(self, timeout: float) -> list[Outcome]:
        ray = self._ray
        if not self._inflight:
            time.sleep(min(timeout, 0.05))
            return []
        now = time.monotonic()
        deadlines = [d for _, d in self._inflight.values() if d is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - now))
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            more, _ = ray.wait([r for r in refs if r not in set(ready)], num_returns=len(refs) - len(ready), timeout=0)
            ready = ready + more
        outcomes = []
        for ref in ready:
            spec, _ = self._inflight.pop(ref)
            outcomes.append(self._outcome(ref, spec))
        now = time.monotonic()
        for ref, (spec, deadline) in list(self._inflight.items()):
            if deadline is not None and now >= deadline:
                self._inflight.pop(ref)
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or its worker is gone
                    pass
                outcomes.append(Outcome(spec["task_id"], spec.get("attempt", 1), False, {}, "timeout",
                                        f"over its time limit of {spec.get('timeout_s'):g} s; Ray task cancelled (worker killed)", "ray"))
        return outcomes

    def _outcome(self, ref, spec: dict) -> Outcome:
        ray = self._ray
        task_id, attempt = spec["task_id"], spec.get("attempt", 1)
        try:
            data = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            return Outcome(task_id, attempt, False, {}, "exception", f"{type(err.cause).__name__ if err.cause else 'error'}: {err.cause or err}", "ray")
        except ray.exceptions.OutOfMemoryError as err:
            return Outcome(task_id, attempt, False, {}, "died", f"Ray worker killed for lack of memory: {str(err)[:300]}", "ray")
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError) as err:
            return Outcome(task_id, attempt, False, {}, "died", f"Ray worker died ({type(err).__name__}): {str(err).splitlines()[0][:300]}", "ray")
        except ray.exceptions.RayError as err:
            return Outcome(task_id, attempt, False, {}, "died", f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}", "ray")
        worker = f"ray:{data.get('host')}/pid{data.get('pid')}"
        if data.get("ok"):
            return Outcome(task_id, attempt, True, data, None, "", worker)
        return Outcome(task_id, attempt, False, data, data.get("error_kind"), data.get("message", ""), worker)

    def cancel_all(self) -> list[str]:
        lost = []
        for ref, (spec, _) in list(self._inflight.items()):
            lost.append(spec["task_id"])
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._inflight.clear()
        return lost

    def shutdown(self) -> None:
        """Cancel what is in flight; stop the private Ray, or disconnect from the cluster (which keeps running)."""
        self.cancel_all()
        if self._owns:
            self._owns = False
            self._ray.shutdown()
            restore_ray_settings()

    def describe(self) -> str:
        where = f" {self.target.label()}" if self.target.is_cluster else ""
        return f"ray{where} ({self.cpus:g} CPUs, {self.gpus:g} GPUs)"
