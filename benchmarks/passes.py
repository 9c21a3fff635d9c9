"""Passes per frame on a warm worker (bundled living room): end-to-end seconds, Blender's share versus
ours (broken down), the same frame path-traced at 128 samples, and the worker's peak memory.

Each resolution runs in its own worker process (so peak RSS is that resolution's): build the scene,
create one PassRenderer, render a warm-up frame (excluded), then time ``--frames`` frames end to end
(render + EXR read + conversion + our EXR + control images, written to a scratch folder) and take
medians. CPU seconds (all threads of the process) are printed beside wall seconds: on a shared
machine wall time includes waiting for the CPU.

    .venv/bin/python benchmarks/passes.py [--resolutions 512,1024] [--frames 8] [--threads 2] [--skip-path-trace]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

OUR_STEPS = ("exr_read", "convert", "line_art", "control", "exr_encode", "png_encode", "file_write")


def path_trace_seconds(frame: int, samples: int = 128) -> float:
    """Time one beauty render of the current Blender scene: default materials, a sun and a grey
    world, Cycles' default bounces and filter, ``samples`` samples, no denoising."""
    import bpy

    from passes.blender_render import _quiet_stdout

    bscene = bpy.context.scene
    layer = bscene.view_layers[0]
    layer.material_override = None
    for flag in ("use_pass_z", "use_pass_vector", "use_pass_object_index", "use_pass_uv", "use_pass_normal"):
        setattr(layer, flag, False)
    cycles = bscene.cycles
    cycles.samples = samples
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.filter_width = 1.5
    cycles.pixel_filter_type = "BLACKMAN_HARRIS"
    cycles.max_bounces = 12
    cycles.diffuse_bounces = 4
    cycles.glossy_bounces = 4
    cycles.transmission_bounces = 12
    cycles.transparent_max_bounces = 8
    cycles.use_light_tree = True
    bscene.render.film_transparent = False
    world = bpy.data.worlds.new("bench_world")
    world.color = (0.3, 0.3, 0.35)
    bscene.world = world
    sun = bpy.data.lights.new("bench_sun", type="SUN")
    sun.energy = 3.0
    sun_obj = bpy.data.objects.new("bench_sun", sun)
    sun_obj.rotation_euler = (0.7, 0.2, 0.8)
    bscene.collection.objects.link(sun_obj)
    bscene.render.image_settings.media_type = "IMAGE"
    bscene.render.image_settings.file_format = "PNG"
    bscene.render.filepath = os.path.join(tempfile.gettempdir(), f"greybox-bench-beauty-{os.getpid()}.png")
    bscene.frame_set(frame)
    started = time.perf_counter()
    with _quiet_stdout():
        bpy.ops.render.render(write_still=True)
    seconds = time.perf_counter() - started
    try:
        os.unlink(bscene.render.filepath)
    except FileNotFoundError:
        pass
    return seconds


def worker(resolution: int, frames: int, threads: int, path_trace: bool) -> dict:
    """One resolution, in this process: end-to-end seconds per frame through render_pass_frames (the
    stage entry, files written in the background), a per-step breakdown (steps run one after the
    other), peak RSS, and the path-trace time."""
    from greybox.frame_files import pass_exr_path
    from passes.blender_render import PassRenderer
    from passes.depth_range import template_disparity_range
    from passes.render_chunk import render_pass_frames, write_frame_outputs
    from procedural.scene_builder import build_scene
    from scenes.template_loading import load_template

    template = load_template("living_room", [f"render.resolution=[{resolution}, {resolution}]"]).template
    scene = build_scene(template)
    started = time.perf_counter()
    renderer = PassRenderer(scene, threads=threads)
    setup = time.perf_counter() - started
    all_frames = list(range(template.render.frame_start, template.render.frame_end + 1))
    warm_up, timed = all_frames[0], all_frames[1 : frames + 1]
    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-passes-"))
    try:
        # end to end, as the farm runs it: the stage entry on a warm renderer
        render_pass_frames(template, scene, [warm_up], scratch / "warm", renderer=renderer)
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        render_pass_frames(template, scene, timed, scratch / "e2e", renderer=renderer)
        end_to_end = (time.perf_counter() - wall0) / len(timed)
        cpu = (time.process_time() - cpu0) / len(timed)

        # per-step breakdown, one step after the other
        disparity_range = template_disparity_range(scene, template.passes)
        rows = []
        for frame in timed:
            passes = renderer.render(frame)
            timings: dict[str, float] = {}
            write_frame_outputs(scratch / "steps", scene, passes, template, disparity_range, timings)
            rows.append({**renderer.timings, **timings})
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        result = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        exr_mb = (scratch / "e2e" / pass_exr_path(timed[0])).stat().st_size / 1e6
        result.update({"resolution": resolution, "frames": len(timed), "total": end_to_end, "cpu": cpu,
                       "setup": setup, "peak_rss_mb": peak_rss_mb, "exr_mb": exr_mb,
                       "triangles": int(sum(len(o.triangles) for o in scene.objects)),
                       "load": os.getloadavg()[0]})
        renderer.close()
        result["path_trace"] = path_trace_seconds(timed[-1]) if path_trace else None
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def print_table(results: list[dict], threads: int) -> None:
    print(f"\nPasses, bundled living room, warm worker, {threads} Cycles threads, {os.cpu_count()} CPUs "
          "(load average at the end: " + ", ".join(f"{r['load']:.1f}" for r in results) + ")\n")
    head = (f"{'resolution':>10} {'s/frame':>8} {'cpu s':>6} {'blender':>8} {'ours':>6} {'our %':>6} | "
            + " ".join(f"{k:>10}" for k in OUR_STEPS) + f" | {'PT 128spp':>9} {'ratio':>6} {'peak RSS':>9} {'EXR':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        ours = r["total"] - r["render"]
        pt = r["path_trace"]
        pt_text = f"{pt:9.2f}" if pt is not None else f"{'-':>9}"
        ratio = f"{pt / r['total']:6.0f}" if pt is not None else f"{'-':>6}"
        print(
            f"{r['resolution']:>8}^2 {r['total']:8.3f} {r['cpu']:6.3f} {r['render']:8.3f} {ours:6.3f} "
            f"{100 * ours / r['total']:5.0f}% | " + " ".join(f"{r[k]:10.4f}" for k in OUR_STEPS)
            + f" | {pt_text} {ratio} {r['peak_rss_mb']:7.0f}MB {r['exr_mb']:5.1f}MB"
        )
    print("""
s/frame: render_pass_frames on a warm renderer, wall seconds per frame (warm-up frame excluded);
cpu s: CPU seconds per frame of the whole process (Cycles threads included). blender: median of
the bpy render call (sync, Cycles, its EXR to /dev/shm); ours = s/frame - blender. The steps
(medians, run one after the other): exr_read (Blender's file), convert (to FramePasses), line_art,
control (depth/normal/seg images), exr_encode (our EXR), png_encode, file_write (temporary name,
rename; in render_pass_frames conversion, encoding and writing overlap the next render). PT: one 128-sample beauty render
of the same frame (default materials, sun + world), ratio = PT / s per frame.""")
    print("Scene: " + ", ".join(f"{r['resolution']}^2 PassRenderer set-up {r['setup']:.2f} s" for r in results)
          + f"; {results[0]['triangles']} triangles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="512,1024")
    parser.add_argument("--frames", type=int, default=8, help="timed frames after the warm-up frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-path-trace", action="store_true")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.frames, args.threads, not args.skip_path_trace)))
        return

    results = []
    for resolution in (int(r) for r in args.resolutions.split(",")):
        cmd = [sys.executable, __file__, "--worker", str(resolution), "--frames", str(args.frames),
               "--threads", str(args.threads)] + (["--skip-path-trace"] if args.skip_path_trace else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"worker for {resolution}^2 failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print_table(results, args.threads)


if __name__ == "__main__":
    main()
