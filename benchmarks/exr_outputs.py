"""What ``passes.exr_channels`` and ``passes.exr_compression`` cost per frame: EXR bytes, encode time
(our writer, in memory) and write time (temporary name, fsync, rename), for the bundled living room,
and the end-to-end seconds per frame of the passes stage with and without the Cryptomatte and
float-id groups (one warm renderer, taken in one run so the ratio holds on a shared machine).

    .venv/bin/python benchmarks/exr_outputs.py [--resolutions 512,1920x1080] [--frames 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PASS_GROUPS = ["depth", "normal", "flow", "instance", "class", "uv"]
VARIANTS = [  # (label, groups, compression)
    ("passes only (before)", PASS_GROUPS, "none"),
    ("+ float_ids", PASS_GROUPS + ["float_ids"], "none"),
    ("+ cryptomatte", PASS_GROUPS + ["cryptomatte"], "none"),
    ("all (default)", PASS_GROUPS + ["float_ids", "cryptomatte"], "none"),
    ("all, zip", PASS_GROUPS + ["float_ids", "cryptomatte"], "zip"),
    ("all, zstd", PASS_GROUPS + ["float_ids", "cryptomatte"], "zstd"),
    ("NPR's needs only", ["normal", "class", "instance"], "none"),
]


def parse_resolution(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def run(resolution: tuple[int, int], frames: int, threads: int) -> list[dict]:
    from greybox.atomic_files import write_bytes_atomic
    from greybox.frame_files import frame_name
    from passes.blender_render import PassRenderer
    from passes.cryptomatte import scene_layers
    from passes.pass_exr import encode_passes_exr
    from passes.render_chunk import render_pass_frames
    from procedural.scene_builder import build_scene
    from scenes.template_loading import load_template

    width, height = resolution
    size = f"render.resolution=[{width}, {height}]"
    scene = build_scene(load_template("living_room", [size]).template)
    renderer = PassRenderer(scene, threads=threads)
    rendered = [renderer.render(f) for f in range(2, 2 + frames)]
    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-exr-"))
    rows = []
    try:
        t0 = time.perf_counter()
        for _ in range(20):
            scene_layers(scene)
        layers_ms = (time.perf_counter() - t0) / 20 * 1e3
        for label, groups, compression in VARIANTS:
            encode_s, encode_cpu, write_s, sizes = [], [], [], []
            for p in rendered:
                c0, t0 = time.process_time(), time.perf_counter()
                data = encode_passes_exr(p, scene, groups=groups, compression=compression)
                c1, t1 = time.process_time(), time.perf_counter()
                write_bytes_atomic(scratch / f"{frame_name(p.frame)}.exr", data)
                t2 = time.perf_counter()
                encode_s.append(t1 - t0)
                encode_cpu.append(c1 - c0)
                write_s.append(t2 - t1)
                sizes.append(len(data))
            rows.append({"resolution": f"{width}x{height}", "variant": label, "mb": statistics.median(sizes) / 1e6,
                         "encode_ms": statistics.median(encode_s) * 1e3, "encode_cpu_ms": statistics.median(encode_cpu) * 1e3,
                         "write_ms": statistics.median(write_s) * 1e3})
        # End to end through the stage entry, the two file layouts interleaved so load drifts hit both.
        e2e: dict[str, list[float]] = {"before": [], "default": []}
        for rep in range(2):
            for key, groups in (("before", PASS_GROUPS), ("default", PASS_GROUPS + ["float_ids", "cryptomatte"])):
                template = load_template("living_room", [size, f"passes.exr_channels={groups!r}".replace("'", '"')]).template
                out = scratch / f"e2e-{key}-{rep}"
                t0 = time.perf_counter()
                render_pass_frames(template, scene, list(range(2, 2 + frames)), out, renderer=renderer)
                e2e[key].append((time.perf_counter() - t0) / frames)
                shutil.rmtree(out)
        rows.append({"resolution": f"{width}x{height}", "e2e_before": min(e2e["before"]), "e2e_default": min(e2e["default"]),
                     "layers_ms": layers_ms})
    finally:
        renderer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="512,1920x1080")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"\nEXR layouts, bundled living room, {args.frames} frames, {args.threads} Cycles threads, {os.cpu_count()} CPUs\n")
    print(f"{'resolution':>10} {'file':<22} {'MB':>7} {'encode ms':>10} {'encode CPU ms':>14} {'write ms':>9}")
    summaries = []
    for text in args.resolutions.split(","):
        rows = run(parse_resolution(text), args.frames, args.threads)
        for r in rows[:-1]:
            print(f"{r['resolution']:>10} {r['variant']:<22} {r['mb']:7.1f} {r['encode_ms']:10.1f} {r['encode_cpu_ms']:14.1f} "
                  f"{r['write_ms']:9.1f}")
        summaries.append(rows[-1])
    print(f"\n{'resolution':>10} {'s/frame before':>15} {'s/frame default':>16} {'added':>8} {'names->ids':>11}")
    for s in summaries:
        added = s["e2e_default"] - s["e2e_before"]
        print(f"{s['resolution']:>10} {s['e2e_before']:15.3f} {s['e2e_default']:16.3f} {added:+8.3f} {s['layers_ms']:9.2f}ms")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (a shared machine: wall times include waiting for the CPU)")
    print("encode: our writer in memory (CPU ms: this process only); write: temporary name, fsync, rename; s/frame:"
          " render_pass_frames on a warm renderer, files written on its background thread, best of two runs")


if __name__ == "__main__":
    main()
