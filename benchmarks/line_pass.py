"""The line pass, old (projected mesh edges) against new (from the exact passes), in one run: seconds
a frame at 512^2 and 1024^2 for the bundled living room and for a synthetic scene of ~83k boxes /
~1M triangles, and the false line pixels of each over every frame of every bundled template.

Per scene and resolution: one PassRenderer (Blender, Cycles data passes as the passes stage
renders them), a warm-up frame, then the timed frames; on each frame's passes both line passes run
one after the other, CPU seconds, best of 5 runs (of 1 for a run of seconds), medians over the
frames. The old pass's per-scene set-up (welding and classifying every mesh edge, once per scene)
is timed apart. The old pass is kept here, verbatim but for taking its edges as an argument, as the
baseline: ``passes/line_art.py`` no longer has it.

The synthetic scene (numpy, seeded): a city block of 27,778 objects, each three stacked boxes
(83,334 boxes, 1,000,008 triangles), on a ground plane, seen by a camera dollying at roof height
into its streets. Blender's Object Index holds at most 32767 instances, so boxes are grouped three
to an object.

False line pixels: a line pixel whose 7x7 neighbourhood has instance id, class, normal (within the
crease angle) and depth (no jump above 2% of the depth) all continuous, counted with the checker
of ``tests/test_passes_lines.py`` on every frame of every bundled template at its own resolution.

    .venv/bin/python benchmarks/line_pass.py [--resolutions 512,1024] [--frames 6] [--synthetic-frames 2] [--skip-synthetic] [--skip-false-lines]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(1, str(REPO_ROOT / "tests"))

# --------------------------------------------------------------------------------------------
# The old line pass (projected feature edges + instance-id boundaries), as the baseline
# --------------------------------------------------------------------------------------------

WELD_DECIMALS = 6
ABS_DEPTH_TOLERANCE = 1e-3  # metres
REL_DEPTH_TOLERANCE = 2e-3  # of depth
SAMPLES_PER_PIXEL = 2.0


@dataclass(frozen=True)
class FeatureEdges:
    segments: np.ndarray  # (E, 2, 3) world
    instance_ids: np.ndarray  # (E,)


def mesh_feature_edges(vertices: np.ndarray, triangles: np.ndarray, crease_angle_deg: float) -> np.ndarray:
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    if len(triangles) == 0:
        return np.zeros((0, 2, 3))
    _, weld = np.unique(np.round(vertices, WELD_DECIMALS), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    tri = weld[triangles]
    normals = np.cross(vertices[triangles[:, 1]] - vertices[triangles[:, 0]], vertices[triangles[:, 2]] - vertices[triangles[:, 0]])
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12
    normals[valid] /= lengths[valid, None]
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    corner_edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    faces = np.tile(np.arange(len(triangles)), 3)
    keep = (edges[:, 0] != edges[:, 1]) & np.tile(valid, 3)
    edges, corner_edges, faces = edges[keep], corner_edges[keep], faces[keep]
    key = np.sort(edges, axis=1)
    _, first, inverse, counts = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    cos_limit = np.cos(np.radians(crease_angle_deg))
    ref_normal = normals[faces[first]][inverse]
    cosines = np.einsum("ij,ij->i", normals[faces], ref_normal)
    min_cos = np.full(len(first), 1.0)
    np.minimum.at(min_cos, inverse, cosines)
    feature = (counts == 1) | (min_cos < cos_limit)
    return vertices[corner_edges[first[feature]]]


def scene_feature_edges(scene, crease_angle_deg: float) -> FeatureEdges:
    segments, ids = [], []
    for obj in scene.objects:
        s = mesh_feature_edges(obj.vertices, obj.triangles, crease_angle_deg)
        segments.append(s)
        ids.append(np.full(len(s), obj.instance_id, dtype=np.uint32))
    return FeatureEdges(np.concatenate(segments), np.concatenate(ids))


def _clip_near(a, b, near):
    za, zb = a[:, 2], b[:, 2]
    keep = (za >= near) | (zb >= near)
    a, b, za, zb = a[keep], b[keep], za[keep], zb[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (near - za) / (zb - za)
    on_near = a + t[:, None] * (b - a)
    return np.where((za < near)[:, None], on_near, a), np.where((zb < near)[:, None], on_near, b)


def _clip_screen(p0, p1, w0, w1, width, height):
    d = p1 - p0
    t0, t1 = np.zeros(len(p0)), np.ones(len(p0))
    keep = np.ones(len(p0), dtype=bool)
    for axis, limit in ((0, width), (1, height)):
        for p, q in ((-d[:, axis], p0[:, axis]), (d[:, axis], limit - p0[:, axis])):
            parallel = p == 0
            keep &= ~(parallel & (q < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = q / p
            t0 = np.where((p < 0) & ~parallel, np.maximum(t0, r), t0)
            t1 = np.where((p > 0) & ~parallel, np.minimum(t1, r), t1)
    keep &= t0 <= t1
    p0, d, w0, w1, t0, t1 = p0[keep], d[keep], w0[keep], w1[keep], t0[keep], t1[keep]
    return p0 + t0[:, None] * d, p0 + t1[:, None] * d, w0 + t0 * (w1 - w0), w0 + t1 * (w1 - w0)


def _visible(z, row, col, depth, instance_id):
    h, w = depth.shape
    depth_p = np.full((h + 2, w + 2), np.inf, dtype=np.float32)
    depth_p[1:-1, 1:-1] = depth
    ids_p = np.full((h + 2, w + 2), np.iinfo(np.uint32).max, dtype=np.uint32)
    ids_p[1:-1, 1:-1] = instance_id
    depth_flat, ids_flat = depth_p.reshape(-1), ids_p.reshape(-1)
    index = (row + 1) * (w + 2) + (col + 1)
    d0, id0 = depth_flat[index], ids_flat[index]
    finite0 = np.isfinite(d0)
    slope = np.zeros(len(index), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        for step in (-1, 1, -(w + 2), w + 2):
            dn = depth_flat[index + step]
            diff = np.abs(dn - d0)
            diff[(ids_flat[index + step] != id0) | ~finite0 | ~np.isfinite(dn)] = 0.0
            np.maximum(slope, diff, out=slope)
    return z <= d0 + ABS_DEPTH_TOLERANCE + REL_DEPTH_TOLERANCE * d0 + 1.5 * slope


def _id_boundaries(instance_id, depth):
    ids = instance_id.astype(np.int64)
    out = np.zeros(ids.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        ia, ib, da, db = ids[tuple(a)], ids[tuple(b)], depth[tuple(a)], depth[tuple(b)]
        differ = ia != ib
        a_front = (da < db) | ((da == db) & (ia > ib))
        out[tuple(a)] |= differ & a_front
        out[tuple(b)] |= differ & ~a_front
    return out


def projected_edge_lines(edges: FeatureEdges, scene, frame: int, passes) -> np.ndarray:
    """The old pass: bool HxW, visible projected feature edges OR instance-id boundaries (width 1)."""
    h, w = passes.depth.shape
    mask = np.zeros((h, w), dtype=bool)
    track = scene.camera
    w2c = track.world_to_camera_opencv(frame)
    k = track.intrinsics(frame, w, h)
    cam = (edges.segments.reshape(-1, 3) @ w2c[:3, :3].T + w2c[:3, 3]).reshape(-1, 2, 3)
    a, b = _clip_near(cam[:, 0], cam[:, 1], max(track.clip_start, 1e-6))
    if len(a):
        f, c = np.array([k[0, 0], k[1, 1]]), np.array([k[0, 2], k[1, 2]])
        q0, q1, w0, w1 = _clip_screen(a[:, :2] / a[:, 2:3] * f + c, b[:, :2] / b[:, 2:3] * f + c, 1.0 / a[:, 2], 1.0 / b[:, 2], w, h)
        if len(q0):
            n = np.ceil(np.linalg.norm(q1 - q0, axis=1) * SAMPLES_PER_PIXEL).astype(np.int64) + 1
            seg = np.repeat(np.arange(len(n)), n)
            starts = np.cumsum(n) - n
            t = ((np.arange(int(n.sum())) - starts[seg]) / np.maximum(n[seg] - 1, 1)).astype(np.float32)
            q0 = q0.astype(np.float32)
            dq = (q1 - q0).astype(np.float32)
            x, y = q0[seg, 0] + t * dq[seg, 0], q0[seg, 1] + t * dq[seg, 1]
            inv_z = w0[seg] + t * (w1 - w0)[seg]
            col = np.minimum(np.maximum(x.astype(np.int64), 0), w - 1)
            row = np.minimum(np.maximum(y.astype(np.int64), 0), h - 1)
            key = (seg * h + row) * w + col
            first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            row, col = row[first], col[first]
            z = (1.0 / inv_z[first]).astype(np.float32)
            visible = _visible(z, row, col, passes.depth, passes.instance_id)
            mask[row[visible], col[visible]] = True
    return mask | _id_boundaries(passes.instance_id, passes.depth)


# --------------------------------------------------------------------------------------------
# The synthetic scene
# --------------------------------------------------------------------------------------------

# unit cube faces: outward normal, 4 corners counter-clockwise seen from outside
_FACES = (
    ((1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)),
    ((-1, 1, -1), (-1, -1, -1), (-1, -1, 1), (-1, 1, 1)),
    ((1, 1, -1), (-1, 1, -1), (-1, 1, 1), (1, 1, 1)),
    ((-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)),
    ((-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)),
    ((-1, 1, -1), (1, 1, -1), (1, -1, -1), (-1, -1, -1)),
)
_CORNERS = np.array(_FACES, dtype=np.float64).reshape(24, 3) / 2.0  # 24 corners of a unit cube at 0
_TRIANGLES = np.array([(4 * f, 4 * f + 1, 4 * f + 2) for f in range(6)] + [(4 * f, 4 * f + 2, 4 * f + 3) for f in range(6)])
_UV_QUAD = np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])


def synthetic_city(width: int, height: int, objects: int = 27_778, boxes_per_object: int = 3, frames: int = 6, seed: int = 0):
    """A Scene of ``objects`` objects, each ``boxes_per_object`` stacked boxes on a grid, and a slow
    dolly over it (``frames`` frames)."""
    from procedural.camera_paths import look_at_rotation
    from scenes.scene_data import CameraTrack, Scene, SceneObject

    rng = np.random.Generator(np.random.PCG64(seed))
    side = int(np.ceil(np.sqrt(objects)))
    spacing = 1.5
    cells = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:objects]
    scene_objects = []
    for i, (gx, gy) in enumerate(cells):
        centre = np.array([gx * spacing, gy * spacing])
        vertices, triangles, uvs = [], [], []
        z0, footprint = 0.0, rng.uniform(0.8, 1.2, 2)
        for k in range(boxes_per_object):
            size = np.array([footprint[0], footprint[1], rng.uniform(0.4, 1.6)])
            offset = np.array([centre[0], centre[1], z0 + size[2] / 2])
            vertices.append(_CORNERS * size + offset)
            triangles.append(_TRIANGLES + 24 * k)
            # one UV island per face in a 6 x boxes grid of cells
            cell = np.array([[(f + 0.1) / 6.0, (k + 0.1) / boxes_per_object] for f in range(6)])
            quad = cell[:, None, :] + _UV_QUAD[None] * np.array([0.8 / 6.0, 0.8 / boxes_per_object])
            uvs.append(np.concatenate([quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]))
            z0 += size[2]
            footprint = footprint * rng.uniform(0.55, 0.85, 2)
        scene_objects.append(SceneObject(
            name=f"block_{i:05d}", kind="box", semantic_class_id=2, instance_id=i + 1,  # ADE20K 2: building
            vertices=np.concatenate(vertices), triangles=np.concatenate(triangles).astype(np.int32),
            uvs=np.concatenate(uvs).astype(np.float32),
        ))
    lo, hi = -spacing, side * spacing
    scene_objects.append(SceneObject(
        name="ground", kind="floor", semantic_class_id=7, instance_id=len(scene_objects) + 1,  # ADE20K 7: road
        vertices=np.array([(lo, lo, 0.0), (hi, lo, 0.0), (hi, hi, 0.0), (lo, hi, 0.0)]),
        triangles=np.array([(0, 1, 2), (0, 2, 3)], dtype=np.int32),
        uvs=np.array([[_UV_QUAD[0], _UV_QUAD[1], _UV_QUAD[2]], [_UV_QUAD[0], _UV_QUAD[2], _UV_QUAD[3]]], dtype=np.float32) * 0.9 + 0.05,
    ))
    # a dolly at roof height along the block's diagonal, looking down into the streets ahead
    track_frames = np.arange(0, frames + 2)
    positions = np.stack([np.array([-3.0 + 0.25 * f, -3.0 + 0.25 * f, 5.0]) for f in track_frames])
    rotations = np.stack([look_at_rotation(p, p + np.array([10.0, 8.0, -5.0])) for p in positions])
    camera = CameraTrack(frames=track_frames.astype(np.int64), positions=positions, rotations=rotations,
                         focal_lengths_mm=24.0, sensor_width_mm=36.0, clip_start=0.1, clip_end=10.0 * side * spacing)
    return Scene(name="synthetic_city", seed=seed, objects=tuple(scene_objects), camera=camera, width=width,
                 height=height, frame_start=1, frame_end=frames, fps=24)


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


REPEATS = 5


def time_scene(label: str, scene, resolutions: list[int], frames: int, crease_angle_deg: float, line_width: int) -> list[dict]:
    from passes.blender_render import PassRenderer
    from passes.line_art import render_lines

    started = time.perf_counter()
    edges = scene_feature_edges(scene, crease_angle_deg)
    old_setup = time.perf_counter() - started
    rows = []
    for resolution in resolutions:
        sized = replace(scene, width=resolution, height=resolution)
        started = time.perf_counter()
        renderer = PassRenderer(sized, threads=2)
        blender_setup = time.perf_counter() - started
        timed = list(range(sized.frame_start, sized.frame_end + 1))[: frames + 1]
        renderer.render(timed[0])  # warm-up: BVH build, persistent data
        render_s, old_s, new_s, line_px = [], [], [], []
        for frame in timed[1:]:
            passes = renderer.render(frame)
            render_s.append(renderer.timings["render"])
            # CPU seconds (both passes are single-threaded numpy and Blender is idle meanwhile), best of
            # a few runs (of one where a run takes seconds): on a shared machine wall time mostly waits
            old_runs, new_runs = [], []
            while not old_runs or (len(old_runs) < REPEATS and sum(old_runs) < 1.0):
                t0 = time.process_time()
                old = projected_edge_lines(edges, sized, frame, passes)
                old_runs.append(time.process_time() - t0)
            for _ in range(REPEATS):
                t0 = time.process_time()
                new = render_lines(passes, crease_angle_deg=crease_angle_deg, width=line_width)
                new_runs.append(time.process_time() - t0)
            old_s.append(min(old_runs))
            new_s.append(min(new_runs))
            line_px.append((int(old.sum()), int((new != 0).sum())))
        renderer.close()
        rows.append({
            "scene": label, "resolution": resolution, "frames": len(render_s),
            "objects": len(scene.objects), "triangles": int(sum(len(o.triangles) for o in scene.objects)),
            "edges": len(edges.segments), "old_setup": old_setup, "blender_setup": blender_setup,
            "render": statistics.median(render_s), "old": statistics.median(old_s), "new": statistics.median(new_s),
            "old_px": statistics.median(p[0] for p in line_px), "new_px": statistics.median(p[1] for p in line_px),
        })
        print(f"  {label} {resolution}^2 done", file=sys.stderr)
    return rows


def false_line_counts() -> list[dict]:
    """Old and new false line pixels over every frame of every bundled template (own resolution)."""
    from passes.blender_render import PassRenderer
    from passes.line_art import render_lines
    from procedural.scene_builder import build_scene
    from scenes.template_loading import bundled_templates, load_template
    from test_passes_lines import false_line_pixels

    rows = []
    for name, _ in bundled_templates():
        template = load_template(name).template
        spec = template.passes
        scene = build_scene(template)
        edges = scene_feature_edges(scene, spec.line_crease_angle)
        renderer = PassRenderer(scene, threads=2)
        row = {"template": name, "resolution": f"{scene.width}x{scene.height}", "frames": 0,
               "old_false": 0, "new_false": 0, "old_px": 0, "new_px": 0, "old_worst": 0, "new_worst": 0, "old_only": 0}
        for frame in range(template.render.frame_start, template.render.frame_end + 1):
            passes = renderer.render(frame)
            old = projected_edge_lines(edges, scene, frame, passes)
            new = render_lines(passes, crease_angle_deg=spec.line_crease_angle, width=1) != 0
            old_false_mask = false_line_pixels(old, passes, spec.line_crease_angle)
            old_false = int(old_false_mask.sum())
            new_false = int(false_line_pixels(new, passes, spec.line_crease_angle).sum())
            # old line pixels, not false, more than 1 px from any new line pixel: what the new pass leaves out
            near_new = np.zeros_like(new)
            padded = np.pad(new, 1)
            for dr in (0, 1, 2):
                for dc in (0, 1, 2):
                    near_new |= padded[dr : dr + new.shape[0], dc : dc + new.shape[1]]
            row["old_only"] += int((old & ~old_false_mask & ~near_new).sum())
            row["frames"] += 1
            row["old_false"] += old_false
            row["new_false"] += new_false
            row["old_px"] += int(old.sum())
            row["new_px"] += int(new.sum())
            row["old_worst"] = max(row["old_worst"], old_false)
            row["new_worst"] = max(row["new_worst"], new_false)
        renderer.close()
        rows.append(row)
        print(f"  false lines: {name} done", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="512,1024")
    parser.add_argument("--frames", type=int, default=6, help="timed frames of the living room per resolution (after a warm-up)")
    parser.add_argument("--synthetic-frames", type=int, default=2, help="timed frames of the synthetic scene per resolution")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-false-lines", action="store_true")
    args = parser.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]

    from procedural.scene_builder import build_scene
    from scenes.template_loading import load_template

    template = load_template("living_room").template
    rows = time_scene("living room", build_scene(template), resolutions, args.frames,
                      template.passes.line_crease_angle, template.passes.line_width)
    if not args.skip_synthetic:
        started = time.perf_counter()
        city = synthetic_city(resolutions[0], resolutions[0], frames=args.synthetic_frames + 1)
        build = time.perf_counter() - started
        print(f"  synthetic scene built in {build:.1f} s", file=sys.stderr)
        rows += time_scene("synthetic city", city, resolutions, args.synthetic_frames, 30.0, 1)
    false_rows = [] if args.skip_false_lines else false_line_counts()

    print(f"\nLine pass, old (projected mesh edges) vs new (from the passes); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine: ratios hold, absolute figures vary)\n")
    head = (f"{'scene':>15} {'res':>6} {'objects':>8} {'triangles':>10} {'edges':>9} | {'blender s':>9} "
            f"{'old ms':>8} {'new ms':>7} {'old/new':>7} | {'old set-up s':>12} | {'old px':>7} {'new px':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scene']:>15} {r['resolution']:>4}^2 {r['objects']:>8} {r['triangles']:>10} {r['edges']:>9} | "
              f"{r['render']:9.3f} {1e3 * r['old']:8.1f} {1e3 * r['new']:7.1f} {r['old'] / r['new']:7.0f} | "
              f"{r['old_setup']:12.2f} | {r['old_px']:7.0f} {r['new_px']:7.0f}")
    print("""
blender s: median wall seconds of Blender's render call per frame (Cycles data passes, 2 threads);
old ms / new ms: line-pass CPU milliseconds per frame on the same passes, best of 5, median over the
frames (old: projected feature edges with a depth test, plus id boundaries; new:
passes.line_art.render_lines); old set-up: the old pass's once-per-scene edge extraction (wall);
old px / new px: line pixels in a frame (median).""")
    if false_rows:
        print(f"\n{'template':>12} {'resolution':>10} {'frames':>6} | {'old false px':>12} {'worst frame':>11} "
              f"{'old line px':>11} {'old only':>8} | {'new false px':>12} {'worst frame':>11} {'new line px':>11}")
        for r in false_rows:
            print(f"{r['template']:>12} {r['resolution']:>10} {r['frames']:>6} | {r['old_false']:>12} {r['old_worst']:>11} "
                  f"{r['old_px']:>11} {r['old_only']:>8} | {r['new_false']:>12} {r['new_worst']:>11} {r['new_px']:>11}")
        print("""
false px: line pixels whose 7x7 neighbourhood has instance id, class, normal (within the crease angle) and
depth (no jump above 2% of the depth) all continuous, summed over every frame (worst frame beside); old
only: the old pass's pixels, not false, more than 1 px from any line of the new pass.""")


if __name__ == "__main__":
    main()
