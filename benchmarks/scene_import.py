"""A model of about a million triangles through the scene stage and the passes, beside the bundled
living room, in one run: import and extraction seconds, passes seconds per frame (line pass
included) and each worker's peak memory; the passes with the scene as one joined mesh (the
instance id a face attribute read through an AOV, what greybox renders) and, for comparison, the
joined mesh without its second user (``joined_rebuilt``: Cycles rebuilds its BVH at every frame,
see ``passes.blender_render.share_joined_mesh``) and one Blender object per scene object (what
it rendered before that).

The model is built here by Blender's own glTF exporter: ``--objects`` objects of one shared mesh
(linked duplicates, which the import realises; ``--unique-meshes``: each its own, no two alike) of
``--triangles / --objects`` triangles each, without UVs (so greybox packs them), on a grid 8 m
wide 10 m in front of a camera dollying 0.4 m. Each measurement runs in its own process (peak RSS is its
own): the import (``passes.scene_stage.build_shot_scene``: Blender's importer, then greybox's
extraction: evaluation, node paths, classes, UV checks and packing), then, from the recorded
``scene.npz``, ``render_pass_frames`` on a warm renderer (a warm-up frame excluded, then
``--frames`` frames, median wall seconds per frame, Cycles on ``--threads`` threads).

    .venv/bin/python benchmarks/scene_import.py [--objects 25000] [--triangles 1000000] [--frames 3]
        [--resolution 512] [--threads 2] [--skip-per-object]

Goals (issue 9): extraction at most 10 s, passes at most 2x the living room's seconds per frame,
every worker under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import math
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

MODEL = "models/grid.glb"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _prism(segments: int):
    """A closed prism of ``segments`` sides, 0.2 m across and 0.4 m tall: 4 * segments - 4 triangles."""
    top, bottom = [], []
    for k in range(segments):
        a = 2 * math.pi * k / segments
        x, y = 0.1 * math.cos(a), 0.1 * math.sin(a)
        bottom.append((x, y, 0.0))
        top.append((x, y, 0.4))
    vertices = bottom + top
    faces = [(k, (k + 1) % segments, segments + (k + 1) % segments, segments + k) for k in range(segments)]
    faces.append(tuple(range(segments - 1, -1, -1)))
    faces.append(tuple(range(segments, 2 * segments)))
    return vertices, faces


def make_model(folder: Path, objects: int, triangles: int, unique: bool) -> dict:
    """The grid model (see the module docstring), exported with Blender's glTF exporter; ``unique``:
    each object its own mesh, a little taller than the one before (no two alike)."""
    import bpy

    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()
    segments = max(3, round((triangles / objects + 4) / 4))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    vertices, faces = _prism(segments)
    mesh = bpy.data.meshes.new("Prism")
    mesh.from_pydata(vertices, [], faces)
    root = bpy.data.objects.new("Grid", None)
    bpy.context.scene.collection.objects.link(root)
    side = math.ceil(math.sqrt(objects))
    pitch = 8.0 / side  # the grid fills 8 x 8 m
    started = time.perf_counter()
    for i in range(objects):
        own = mesh
        if unique:
            own = bpy.data.meshes.new(f"Prism_{i:05d}")
            own.from_pydata([(x, y, z * (1.0 + i / objects)) for x, y, z in vertices], [], faces)
        obj = bpy.data.objects.new(f"Item_{i:05d}", own)
        obj.location = (-4.0 + pitch * (i % side), 4.0, -2.0 + pitch * (i // side) * 0.5)
        obj.scale = (pitch / 0.25,) * 3  # 0.8 of the pitch across
        obj.parent = root
        bpy.context.scene.collection.objects.link(obj)
    built = time.perf_counter() - started
    (folder / "models").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with _quiet_stdout():
        bpy.ops.export_scene.gltf(filepath=str(folder / MODEL), export_format="GLB", export_yup=True)
    return {"segments": segments, "triangles_each": 4 * segments - 4, "build_s": built,
            "export_s": time.perf_counter() - started, "bytes": (folder / MODEL).stat().st_size}


def write_template(folder: Path, resolution: int) -> Path:
    path = folder / "grid.toml"
    path.write_text("\n".join([
        "schema_version = 1", 'name = "grid"', "seed = 1",
        "[[imports]]", 'name = "grid"', f'file = "{MODEL}"', 'class = "box"',
        "[camera]", "focal_length = 24.0", "[camera.path]", 'kind = "dolly"', "start = [0.0, -6.0, 2.0]",
        "end = [0.4, -6.0, 2.0]", "look_at = [0.0, 4.0, 0.0]",
        "[render]", f"resolution = [{resolution}, {resolution}]", "frame_start = 1", "frame_end = 12",
        "[passes]", 'control = ["depth", "normal", "seg", "lines"]',
    ]) + "\n")
    return path


def measure_import(folder: Path) -> dict:
    """build_shot_scene on the grid template, Blender's import and greybox's extraction timed apart."""
    import passes.model_import as model_import
    from passes.scene_stage import build_shot_scene, model_roots, write_scene_data
    from scenes.template_loading import load_template

    timings = {"load": 0.0, "extract": 0.0, "uvs": 0.0}

    def timed(name, fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] += time.perf_counter() - started
        return run

    model_import.load_file = timed("load", model_import.load_file)
    model_import.extract_meshes = timed("extract", model_import.extract_meshes)
    model_import.scene_objects = timed("uvs", model_import.scene_objects)
    path = folder / "grid.toml"
    template = load_template(str(path)).template
    started = time.perf_counter()
    import bpy  # noqa: F401  (Blender's start-up, once per worker, is not the import's)

    bpy_s = time.perf_counter() - started
    started = time.perf_counter()
    scene = build_shot_scene(template, model_roots(str(path)))
    total = time.perf_counter() - started
    write_scene_data(scene, folder / "view")
    return {"import_s": timings["load"], "extract_s": timings["extract"], "uvs_s": timings["uvs"], "total_s": total, "bpy_s": bpy_s, "peak_mb": _peak_mb(),
            "objects": len(scene.objects), "triangles": int(sum(len(o.triangles) for o in scene.objects))}


def measure_passes(folder: Path | None, frames: int, threads: int, resolution: int, mode: str) -> dict:
    """render_pass_frames on a warm renderer: the grid's recorded scene, or the living room (folder None)."""
    import passes.blender_render as blender_render
    from passes.render_chunk import render_pass_frames
    from scenes.scene_data import read_scene
    from scenes.template_loading import load_template

    if mode == "joined_rebuilt":  # before: the joined mesh's one user, its BVH rebuilt at every frame
        blender_render.SHARED_MESH_MIN_TRIANGLES = float("inf")
    if mode == "per_object":  # what the passes rendered before: one Blender object per scene object
        import passes.blender_scene as blender_scene

        original = blender_scene.instantiate_scene
        blender_scene.instantiate_scene = lambda scene, **kw: original(scene, **{**kw, "joined": False})
    if folder is None:
        from procedural.scene_builder import build_scene

        template = load_template("living_room", [f"render.resolution=[{resolution}, {resolution}]"]).template
        scene = build_scene(template)
    else:
        template = load_template(str(folder / "grid.toml")).template
        scene = read_scene(folder / "view")
    started = time.perf_counter()
    renderer = blender_render.PassRenderer(scene, threads=threads)
    setup = time.perf_counter() - started
    scratch = Path(tempfile.mkdtemp(prefix="greybox-bench-import-"))
    try:
        first = template.render.frame_start
        render_pass_frames(template, scene, [first], scratch / "warm", renderer=renderer)
        per_frame, cpu, blender = [], [], []
        for frame in range(first + 1, first + 1 + frames):
            started, cpu0 = time.perf_counter(), time.process_time()
            render_pass_frames(template, scene, [frame], scratch / "timed", renderer=renderer)
            per_frame.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu0)
            blender.append(renderer.timings.get("render", float("nan")))
        renderer.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"setup_s": setup, "s_per_frame": statistics.median(per_frame), "cpu_per_frame": statistics.median(cpu),
            "blender_per_frame": statistics.median(blender), "peak_mb": _peak_mb(),
            "objects": len(scene.objects), "triangles": int(sum(len(o.triangles) for o in scene.objects))}


def _child(*args: str) -> dict:
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(args[:1] + args[2:])}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if proc.returncode != 0:
        sys.exit(f"benchmark step {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=25000)
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=3, help="timed frames after the warm-up frame")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-per-object", action="store_true", help="leave out the one-object-per-scene-object passes")
    parser.add_argument("--unique-meshes", action="store_true", help="every object its own mesh (no linked duplicates)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        step, *rest = args.child
        if step == "make":
            out = make_model(Path(rest[0]), int(rest[1]), int(rest[2]), rest[3] == "unique")
        elif step == "import":
            out = measure_import(Path(rest[0]))
        else:
            folder = None if rest[0] == "-" else Path(rest[0])
            out = measure_passes(folder, int(rest[1]), int(rest[2]), int(rest[3]), rest[4])
        print(json.dumps(out))
        return

    folder = Path(tempfile.mkdtemp(prefix="greybox-bench-scene-import-"))
    try:
        made = _child("make", str(folder), str(args.objects), str(args.triangles), "unique" if args.unique_meshes else "shared")
        write_template(folder, args.resolution)
        imported = _child("import", str(folder))
        rows = []
        modes = ["joined", "joined_rebuilt"] + ([] if args.skip_per_object else ["per_object"])
        for mode in modes:
            for what, where in (("living room", "-"), ("grid model", str(folder))):
                r = _child("passes", where, str(args.frames), str(args.threads), str(args.resolution), mode)
                rows.append({"scene": what, "mode": mode, **r})
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nScene import and passes, {args.resolution}^2, {args.threads} Cycles threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"Model: {args.objects} objects x {made['triangles_each']} triangles "
          f"({'each its own mesh' if args.unique_meshes else 'one shared mesh, linked duplicates'}), "
          f"GLB {made['bytes'] / 1e6:.1f} MB (built in {made['build_s']:.1f} s, exported in {made['export_s']:.1f} s)\n")
    print("| step | objects | triangles | seconds | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| Blender's glTF importer | {imported['objects']} | {imported['triangles']} | {imported['import_s']:.2f} | |")
    print(f"| greybox's extraction (evaluate, node paths, classes) | | | {imported['extract_s']:.2f} | |")
    print(f"| greybox's UVs (file UV check, packing) | | | {imported['uvs_s']:.2f} | |")
    print(f"| scene build in all (build_shot_scene) | | | {imported['total_s']:.2f} | {imported['peak_mb']:.0f} MB |")
    print(f"| (before it: importing bpy) | | | {imported['bpy_s']:.2f} | |\n")
    print("| passes | scene | objects | triangles | renderer set-up s | s/frame | of it Blender's render | CPU s/frame "
          "| vs living room (s, CPU s) | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {r["mode"]: r for r in rows if r["scene"] == "living room"}
    for r in rows:
        b = base[r["mode"]]
        print(f"| {r['mode']} | {r['scene']} | {r['objects']} | {r['triangles']} | {r['setup_s']:.2f} | "
              f"{r['s_per_frame']:.2f} | {r['blender_per_frame']:.2f} | {r['cpu_per_frame']:.2f} | "
              f"{r['s_per_frame'] / b['s_per_frame']:.1f}x, {r['cpu_per_frame'] / b['cpu_per_frame']:.1f}x | {r['peak_mb']:.0f} MB |")
    from passes.blender_render import SHARED_MESH_MIN_TRIANGLES

    print("\njoined: what greybox renders (one mesh, the instance id an AOV; from "
          f"{SHARED_MESH_MIN_TRIANGLES} triangles with a second, unseen user, so Cycles keeps its BVH "
          "between frames); joined_rebuilt: the same without the second user (before: the BVH rebuilt at every "
          "frame); per_object: one Blender object per "
          "scene object (before; its instance pass is not read). s/frame: render_pass_frames per frame on a warm "
          "renderer (render, EXR, control images with the line pass), median; CPU s: the worker process's CPU "
          "seconds per frame (all threads; steadier than wall seconds on a shared machine).")


if __name__ == "__main__":
    main()
