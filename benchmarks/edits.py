"""Benchmark: the cost of editing one object of a shot relative to rendering it all again.

A 48-frame orbit of the bundled living room in ``keyframes`` (passes rendered once by Blender, as
``benchmarks/consistency.py`` does), stylised by the tiny random-weight SD1.5 + ControlNet on the
CPU. Then, on the same passes and models:

- ``full render``: the shot stylised from nothing (the base);
- ``edit``: one object (``--object``, the sofa by default) given a region prompt of its own, by
  :func:`stylize.object_edits.edit_frames` from the base's frames: only that object's atlas is
  rebuilt from its own keyframes and regathered, every other pixel is the base's;
- ``fresh render of the edited template``: the same template rendered with no base (a different
  request): what an edit saves, and how much it would change outside the object.

Columns: denoising steps (UNet evaluations x batch elements, a CFG pair counts 2) and relative to
the full render (the goal: an edit at most 0.25), seconds of stylisation, keyframes, frames whose
pixels were generated, and the share of pixels outside the object that differ from the base
(0 for an edit, by construction; checked here from the passes' instance ids).

    python benchmarks/edits.py                          # 48 frames, 64x64, 20 steps
    python benchmarks/edits.py --frames 24 --resolution 64 --steps 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.consistency import diffusion_style, render_shot, with_style  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the orbit (default 48)")
    parser.add_argument("--resolution", type=int, default=64, help="square output side, multiple of 8 (default 64)")
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps (default 20)")
    parser.add_argument("--strength", type=float, default=0.75, help="style.strength for inpainting")
    parser.add_argument("--object", default="sofa", help="the object edited (a stable name of the living room)")
    parser.add_argument("--prompt", default="a green velvet sofa", help="its new region prompt")
    parser.add_argument("--passes", choices=["blender", "numpy"], default="blender")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for passes and frames (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    args.full_size = False
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from passes.pass_exr import read_passes_exr
    from scenes.style_regions import Targets
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models
    from stylize.object_edits import edit_frames
    from stylize.stylize_stage import stylize_frames

    from greybox.frame_files import frame_png_path, pass_exr_path
    from passes.scene_stage import write_scene_data

    # 1. The shot's passes, its scene (layout included: the region names its object) and the models
    work = args.work or Path(tempfile.mkdtemp(prefix="greybox-edits-"))
    args.shots = ["orbit"]
    template, scene, job_dir = render_shot("orbit", args, work)
    write_scene_data(scene, job_dir)
    frames = list(template.render.frames)
    style = diffusion_style(template, args, work / "models")
    style["consistency"] = dict(style.get("consistency") or {}, mode="keyframes")
    base_template = with_style(template, style)
    edited_style = dict(style, regions=[{"objects": [args.object], "prompt": args.prompt}])
    edited_template = with_style(template, edited_style)
    target = next(o for o in scene.objects if o.name == args.object)
    targets = Targets(frozenset([target.instance_id]), frozenset())
    masks = {f: read_passes_exr(job_dir / pass_exr_path(f)).instance_id == target.instance_id for f in frames}
    print(f"[orbit] {args.object} (instance {target.instance_id}) shows in {sum(m.any() for m in masks.values())} of "
          f"{len(frames)} frames, {np.mean([m.mean() for m in masks.values()]):.1%} of the pixels", flush=True)

    def load(t):
        return DiffusionStylizer(resolve_models(t.style), t.style, device=args.device, threads=args.threads)

    def read(folder: Path) -> dict[int, np.ndarray]:
        from PIL import Image

        return {f: np.asarray(Image.open(folder / frame_png_path(f)).convert("RGB")) for f in frames}

    def outside_changed(images: dict[int, np.ndarray]) -> float:
        changed = sum(int((images[f] != base[f]).any(axis=-1)[~masks[f]].sum()) for f in frames)
        return changed / sum(int((~masks[f]).sum()) for f in frames)

    # 2. The full render (the base), the edit, a fresh render of the edited template
    rows = []
    full = stylize_frames(base_template, frames, job_dir, work / "full", stylizer_instance=load(base_template),
                          scene=scene, threads=args.threads)
    base = read(work / "full")
    rows.append({"run": "full render (base)", "steps": full.denoising_steps, "seconds": full.seconds,
                 "keyframes": len(full.keyframes), "generated": len(full.generated_frames), "outside_changed": 0.0})
    print(rows[-1], flush=True)
    instance = load(edited_template)
    started = time.perf_counter()
    edit = edit_frames(edited_template, frames, job_dir, base, targets, stylizer_instance=instance, threads=args.threads)
    edit_seconds = time.perf_counter() - started
    generated = [f for f in frames if edit.denoising_steps_by_frame.get(f)]
    rows.append({"run": f"edit of {args.object}", "steps": edit.denoising_steps, "seconds": edit_seconds,
                 "keyframes": len(edit.keyframes), "generated": len(generated),
                 "outside_changed": outside_changed(edit.images)})
    print(rows[-1], flush=True)
    fresh = stylize_frames(edited_template, frames, job_dir, work / "fresh", stylizer_instance=instance, scene=scene,
                           threads=args.threads, reference_files=[])
    rows.append({"run": "fresh render of the edited template", "steps": fresh.denoising_steps, "seconds": fresh.seconds,
                 "keyframes": len(fresh.keyframes), "generated": len(fresh.generated_frames),
                 "outside_changed": outside_changed(read(work / "fresh"))})
    for row in rows:
        row["relative_steps"] = row["steps"] / rows[0]["steps"] if rows[0]["steps"] else None
    print()
    print(f"living room orbit, {len(frames)} frames at {args.resolution}^2, keyframes, tiny random-weight SD1.5 + "
          f"ControlNet, {args.steps} steps, CPU ({args.threads} threads)")
    print(table(rows))
    goal = rows[1]["relative_steps"]
    print(f"\nedit / full render denoising steps: {goal:.3f} (goal <= 0.25: {'met' if goal <= 0.25 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


HEADER = ("run", "denoising steps", "rel. steps", "seconds", "keyframes", "frames generated", "outside pixels changed")


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["run"], str(r["steps"]), f"{r['relative_steps']:.3f}", f"{r['seconds']:.1f}", str(r["keyframes"]),
            str(r["generated"]), f"{r['outside_changed']:.2%}",
        ]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
