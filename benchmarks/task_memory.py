"""Peak memory of a passes task and of an NPR stylisation task per resolution, beside the estimate
``render_farm.task_memory`` refuses tasks with (the calibration of its coefficients).

Each measurement runs in its own process (so its peak is that resolution's): build the bundled
living room at WxW, render one frame of passes with 2 Cycles threads through ``render_pass_frames``
(Blender's render, our read of its EXR, conversion, our EXR and the four control images), sampling
the resident memory plus Blender's scratch EXR in /dev/shm every 10 ms; then, in a fresh process,
stylise that frame with the NPR stylizer and sample the same way.

    .venv/bin/python benchmarks/task_memory.py [--resolutions 512,1024,2048] [--skip-npr]

4096^2 takes about 4 GB and a minute, 6144^2 about 8 GB and four minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


class PeakSampler:
    """Highest (resident memory + this process's scratch files in /dev/shm) seen, every 10 ms."""

    def __init__(self):
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        prefix = f"greybox-passes-{os.getpid()}-"
        while not self._stop.is_set():
            try:
                shm = sum(e.stat().st_size for e in os.scandir("/dev/shm") if e.name.startswith(prefix)) if os.path.isdir("/dev/shm") else 0
                self.peak = max(self.peak, self._process.memory_info().rss + shm)
            except OSError:
                pass
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _template(width: int):
    from scenes.template_loading import load_template

    extra = json.loads(os.environ.get("GREYBOX_BENCH_SET", "[]"))  # --set, passed on to the child processes
    return load_template("living_room", [f"render.resolution=[{width}, {width}]", "style.stylizer='npr'", *extra]).template


def measure_passes(width: int, view: str) -> dict:
    from passes.render_chunk import render_pass_frames
    from passes.scene_stage import build_shot_scene, write_camera_records, write_scene_data

    template = _template(width)
    scene = build_shot_scene(template)
    write_scene_data(scene, view)  # what the scene stage leaves in the view (the NPR run reads it)
    write_camera_records(scene, [1], view)
    with PeakSampler() as sampler:
        started = time.perf_counter()
        render_pass_frames(template, scene, [1], view, threads=2)
        seconds = time.perf_counter() - started
    return {"peak": sampler.peak, "seconds": seconds}


def measure_npr(width: int, view: str) -> dict:
    from stylize.stylize_stage import stylize_frames

    template = _template(width)
    with tempfile.TemporaryDirectory() as out, PeakSampler() as sampler:
        started = time.perf_counter()
        stylize_frames(template, [1], view, out, stylizer="npr", threads=2)
        seconds = time.perf_counter() - started
    return {"peak": sampler.peak, "seconds": seconds}


def _child(kind: str, width: int, view: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(width), view], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="512,1024,2048")
    parser.add_argument("--skip-npr", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="template override, e.g. passes.exr_channels=[\"normal\",\"class\",\"instance\"]")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WIDTH", "VIEW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, width, view = args.child
        print(json.dumps((measure_passes if kind == "passes" else measure_npr)(int(width), view)))
        return

    os.environ["GREYBOX_BENCH_SET"] = json.dumps(args.set)
    from render_farm.task_memory import estimate_peak_bytes

    print("| task | resolution | measured peak | estimate | estimate / measured | s/frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for width in (int(w) for w in args.resolutions.split(",")):
        with tempfile.TemporaryDirectory() as view:
            rows = [("passes", _child("passes", width, view))]
            if not args.skip_npr:
                rows.append(("stylize (npr)", _child("npr", width, view)))
        for kind, result in rows:
            estimate = estimate_peak_bytes("passes" if kind == "passes" else "stylize", width, width, stylizer="npr",
                                           exr_channels=_template(8).passes.exr_channels)
            print(f"| {kind} | {width}^2 | {result['peak'] / 1e9:.2f} GB | {estimate / 1e9:.2f} GB | "
                  f"{estimate / result['peak']:.2f} | {result['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
