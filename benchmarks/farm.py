"""Farm throughput: frames per minute for the passes of a 48-frame orbit (bundled living room),
with 1 and 2 workers, on the local executor and on a private Ray, and Ray's overhead against local.

Every run starts from an empty store (nothing reused). Ray's start-up (``ray.init``) is timed
separately from the job. Threads per task = cores / workers, so each configuration uses the whole
machine. Prints a table.

    .venv/bin/python benchmarks/farm.py [--template living_room] [--frames 1-48] [--chunk-size 8] [--skip-ray]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render_farm.job_execution import make_executor, run_job  # noqa: E402
from render_farm.job_request import JobRequest  # noqa: E402


def run_once(template: str, frames: str, farm: str, workers: int, chunk_size: int, overrides: list[str]) -> dict:
    cores = os.cpu_count() or 2
    threads = max(1, cores // workers)
    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-farm-"))
    try:
        started = time.perf_counter()
        executor = make_executor(farm, workers, threads, include_dashboard=False)
        startup = time.perf_counter() - started
        try:
            if hasattr(executor, "start"):
                executor.start()
            request = JobRequest(command="passes", templates=[template], frames=frames, chunk_size=chunk_size,
                                 threads=threads, overrides=overrides)
            began = time.perf_counter()
            summary = run_job(request, scratch / "out", store=scratch / "store", executor=executor, progress=False)
            seconds = time.perf_counter() - began
        finally:
            executor.shutdown()
        n = sum(len(s.frames) for s in summary.shots)
        return {"farm": farm, "workers": workers, "threads": threads, "frames": n, "seconds": seconds,
                "startup": startup, "fpm": n / seconds * 60}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="living_room")
    parser.add_argument("--frames", default="1-48")
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    rows = []
    for farm in ["local"] + ([] if args.skip_ray else ["ray"]):
        for workers in (1, 2):
            row = run_once(args.template, args.frames, farm, workers, args.chunk_size, args.overrides)
            rows.append(row)
            print(f"  {farm:<5} {workers} worker(s): {row['frames']} frames in {row['seconds']:.1f} s", file=sys.stderr)
    local = {r["workers"]: r for r in rows if r["farm"] == "local"}
    print(f"\nPasses of {args.template} frames {args.frames} (chunk {args.chunk_size}), {os.cpu_count()} cores, empty store each run")
    print(f"{'executor':<9}{'workers':>8}{'threads':>8}{'frames':>8}{'job s':>9}{'frames/min':>12}{'startup s':>11}{'vs local':>10}")
    for r in rows:
        ratio = r["seconds"] / local[r["workers"]]["seconds"] if r["farm"] != "local" else 1.0
        print(f"{r['farm']:<9}{r['workers']:>8}{r['threads']:>8}{r['frames']:>8}{r['seconds']:>9.1f}{r['fpm']:>12.1f}"
              f"{r['startup']:>11.1f}{ratio:>9.2f}x")
    print("vs local: the Ray job's wall time over the local job's with the same workers (start-up excluded).")


if __name__ == "__main__":
    main()
