"""Store stress: concurrent job pairs on one store, one-frame chunks, no failure allowed.

Each trial starts two ``greybox render`` jobs at the same moment on one shared store, with the
same template and a seed of their own (so both compute the same fresh units at the same time and
race to commit them), ``--chunk-size 1`` and the NPR stylizer. A trial passes when both jobs
exit 0 and their output folders hold the same files with the same bytes (manifest included; not
the job's own records, job.json, run_log.jsonl and review.html, which hold its paths and timings). ``--parallel`` trials
run at once (so 2 x parallel jobs share the store). Every failure is printed with the tail of
its job's stderr. Exit status 1 when any trial failed.

    .venv/bin/python benchmarks/store_concurrency.py [--pairs 50] [--parallel 2] [--frames 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.tiny_templates import two_boxes_template  # noqa: E402



def view_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith(".greybox")
            and p.name not in ("job.json", "run_log.jsonl", "review.html")}  # review.html holds the run's timings


def trial(n: int, template: Path, store: Path, scratch: Path, args) -> tuple[int, str | None, float]:
    """Two concurrent jobs with seed ``n``; (n, None or what failed, seconds)."""
    started = time.perf_counter()
    outs = [scratch / f"t{n:03d}-{side}" for side in "ab"]
    cmds = [[sys.executable, "-m", "render_farm.cli", "render", str(template), "--out", str(out), "--store", str(store),
             "--chunk-size", "1", "--stylizer", "npr", "--consistency", args.consistency, "--set", f"seed={n}",
             "--workers", str(args.workers), "--threads", "1"] for out in outs]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    results = [p.communicate(timeout=args.timeout) for p in procs]
    seconds = time.perf_counter() - started
    for side, proc, (_, err) in zip("ab", procs, results):
        if proc.returncode != 0:
            return n, f"job {side} exited {proc.returncode}:\n{textwrap.indent(err[-1500:], '    ')}", seconds
    a, b = (view_files(o) for o in outs)
    if sorted(a) != sorted(b):
        return n, f"the two outputs hold different files: {sorted(set(a) ^ set(b))[:8]}", seconds
    different = [rel for rel in a if a[rel] != b[rel]]
    if different:
        return n, f"bytes differ: {different[:8]}", seconds
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    return n, None, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2, help="trials at once (2 jobs each)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per job")
    parser.add_argument("--consistency", default="per_frame", choices=("per_frame", "flow_warp", "keyframes"))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="greybox-store-stress-"))
    template = scratch / "stress.toml"
    template.write_text(two_boxes_template(name="stress", seed=0, resolution=32, frame_end=args.frames))
    store = scratch / "store"
    failures: list[tuple[int, str]] = []
    durations: list[float] = []
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            for n, failure, seconds in pool.map(lambda i: trial(i, template, store, scratch, args), range(args.pairs)):
                durations.append(seconds)
                status = "ok" if failure is None else "FAILED"
                print(f"trial {n:3d}: {status} ({seconds:.1f} s)", flush=True)
                if failure is not None:
                    failures.append((n, failure))
                    print(failure, flush=True)
        leftover = sorted(p.name for p in (store / "staging").iterdir()) if (store / "staging").is_dir() else []
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - started
    print()
    print("| pairs | jobs at once | frames/job | workers/job | chunk | failed | staging left | wall s | s/pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.pairs} | {2 * args.parallel} | {args.frames} | {args.workers} | 1 | {len(failures)} | "
          f"{len(leftover)} | {total:.0f} | {sum(durations) / max(len(durations), 1):.1f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
