"""Floor plans: how long validating and building a 20-room plan takes, and what a frame of passes
costs for the bundled apartment beside the living room, in one run.

1. A generated plan of 20 rooms (a 5 x 4 grid of 4 x 3.5 m rooms sharing walls, types in turn,
   doors (0.8 m from a corner) along each row and down the first column, a window on every outer edge, ``furniture =
   "auto"`` everywhere), the bundled apartment and the bundled living room, each in this process:
   ``validate`` is ``greybox validate FILE`` as the command line runs it (load, schema, the
   build's dry run: the plan, every opening, every piece's placement, the camera; no mesh);
   ``dry run`` is the dry run alone; ``build`` is the whole scene (meshes and UVs). Medians of
   ``--repeats`` runs after one warm-up.
2. Passes per frame at 512^2 for the apartment and the living room: each in its own worker
   process, one PassRenderer (2 Cycles threads), a warm-up frame, then ``--frames`` frames through
   ``render_pass_frames`` (render, EXR, control images, written to a scratch folder); medians.

    .venv/bin/python benchmarks/floor_plans.py [--repeats 5] [--frames 8] [--skip-passes]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TYPES = ("living_room", "bedroom", "kitchen", "dining_room", "bathroom", "office", "bedroom", "hallway", "living_room", "bedroom")


def twenty_rooms(columns: int = 5, rows: int = 4, width: float = 4.0, depth: float = 3.5) -> str:
    """The 20-room plan as TOML."""
    out = ['schema_version = 1', 'name = "twenty_rooms"', 'seed = 0', '', '[generator]', 'kind = "floor_plan"', '',
           '[generator.floor_plan]', 'wall_thickness = 0.15', 'height = 2.7', '']
    name = lambda i, j: f"r{j}_{i}"  # noqa: E731
    k = 0
    for j in range(rows):
        for i in range(columns):
            out += ['[[generator.floor_plan.rooms]]', f'name = "{name(i, j)}"', f'type = "{TYPES[k % len(TYPES)]}"',
                    f'rect = [{i * width}, {j * depth}, {width}, {depth}]', 'furniture = "auto"', '']
            k += 1
    doors = [(name(0, 0), "outside", 0)]
    for j in range(rows):
        doors += [(name(i, j), name(i + 1, j), None) for i in range(columns - 1)]
        if j:
            doors.append((name(0, j), name(0, j - 1), None))
    for a, b, wall in doors:  # near one end of the wall, as doors usually are
        out += ['[[generator.floor_plan.doors]]', f'between = ["{a}", "{b}"]', 'offset = 0.8'] + \
            ([f"wall = {wall}"] if wall is not None else []) + ['']
    for j in range(rows):
        for i in range(columns):
            edges = ([0] if j == 0 else []) + ([1] if i == columns - 1 else []) + ([2] if j == rows - 1 else []) + ([3] if i == 0 else [])
            for edge in edges:
                if (i, j, edge) == (0, 0, 0):
                    continue
                out += ['[[generator.floor_plan.windows]]', f'room = "{name(i, j)}"', f'wall = {edge}', 'width = 1.2', '']
    out += ['[camera]', 'focal_length = 18.0', '', '[camera.path]', 'kind = "static"', 'position = [2.0, 1.75, 1.6]',
            'look_at = [3.5, 3.0, 1.0]', '']
    return "\n".join(out)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def layout_row(label: str, source: str, repeats: int) -> dict:
    from procedural.scene_builder import build_scene, scene_problems
    from render_farm.cli import main as cli
    from scenes.template_loading import load_template

    template = load_template(source).template

    def validate():
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
            code = cli(["validate", source])
        if code != 0:
            raise SystemExit(f"{label} does not validate:\n{err.getvalue()}")

    problems = scene_problems(template)
    if problems:
        raise SystemExit(f"{label}: " + "\n".join(p["message"] for p in problems))
    scene = build_scene(template)
    plan = template.generator.floor_plan
    return {
        "label": label,
        "rooms": len(plan.rooms) if plan is not None else 1,
        "objects": len(scene.objects), "triangles": int(sum(len(o.triangles) for o in scene.objects)),
        "pieces": sum(1 for o in scene.objects if o.source.placement is not None),
        "validate": median_seconds(validate, repeats),
        "dry_run": median_seconds(lambda: scene_problems(template), repeats),
        "build": median_seconds(lambda: build_scene(template), repeats),
    }


def passes_worker(name: str, frames: int) -> dict:
    from passes.blender_render import PassRenderer
    from passes.render_chunk import render_pass_frames
    from procedural.scene_builder import build_scene
    from scenes.template_loading import load_template

    template = load_template(name, ["render.resolution=[512, 512]"]).template
    scene = build_scene(template)
    renderer = PassRenderer(scene, threads=2)
    all_frames = list(range(template.render.frame_start, template.render.frame_end + 1))
    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-plans-"))
    try:
        render_pass_frames(template, scene, all_frames[:1], scratch / "warm", renderer=renderer)
        seconds, renders = [], []
        for frame in all_frames[1 : frames + 1]:
            started = time.perf_counter()
            render_pass_frames(template, scene, [frame], scratch / "e2e", renderer=renderer)
            seconds.append(time.perf_counter() - started)
            renders.append(renderer.timings.get("render", float("nan")))
        renderer.close()
        return {"name": name, "s_per_frame": statistics.median(seconds), "render": statistics.median(renders),
                "objects": len(scene.objects), "triangles": int(sum(len(o.triangles) for o in scene.objects)),
                "frames": len(seconds), "load": os.getloadavg()[0]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--skip-passes", action="store_true")
    parser.add_argument("--passes-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.passes_worker:
        print(json.dumps(passes_worker(args.passes_worker, args.frames)))
        return

    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-plans-"))
    try:
        plan_file = scratch / "twenty_rooms.toml"
        plan_file.write_text(twenty_rooms())
        rows = [layout_row("20-room plan", str(plan_file), args.repeats),
                layout_row("apartment (bundled)", "apartment", args.repeats),
                layout_row("living room (bundled)", "living_room", args.repeats)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nFloor plans: validate and build, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"(medians of {args.repeats})\n")
    head = f"{'template':<22} {'rooms':>5} {'pieces':>6} {'objects':>7} {'triangles':>9} {'validate s':>10} {'dry run s':>9} {'build s':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['label']:<22} {r['rooms']:>5} {r['pieces']:>6} {r['objects']:>7} {r['triangles']:>9} "
              f"{r['validate']:>10.3f} {r['dry_run']:>9.3f} {r['build']:>8.3f}")
    print("\nvalidate: `greybox validate FILE` in this process (load, schema, the build's dry run); dry run: the\n"
          "plan, openings, placement and camera checks alone, no mesh; build: the whole scene with meshes and UVs.")
    if args.skip_passes:
        return
    results = []
    for name in ("apartment", "living_room"):
        proc = subprocess.run([sys.executable, __file__, "--passes-worker", name, "--frames", str(args.frames)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"passes worker for {name} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nPasses at 512^2, warm worker, 2 Cycles threads (median of {args.frames} frames after a warm-up)\n")
    head = f"{'template':<14} {'objects':>7} {'triangles':>9} {'s/frame':>8} {'blender':>8} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    base = results[-1]["s_per_frame"]
    for r in results:
        print(f"{r['name']:<14} {r['objects']:>7} {r['triangles']:>9} {r['s_per_frame']:>8.3f} {r['render']:>8.3f} "
              f"{r['s_per_frame'] / base:>5.2f}x")
    print("\ns/frame: render_pass_frames for one frame (render, EXR, control images, files); blender: the bpy\n"
          "render call's share; ratio: against the living room, in this run. Load averages at the end: "
          + ", ".join(f"{r['load']:.1f}" for r in results))


if __name__ == "__main__":
    main()
