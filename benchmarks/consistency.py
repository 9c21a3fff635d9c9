"""Benchmark: temporal consistency modes (per_frame, flow_warp, keyframes) on bundled camera paths.

For each shot (a 120-frame orbit of the bundled living room, a 120-frame walkthrough of the
bundled bedroom by default), the passes are rendered once (``passes.render_chunk.render_pass_frames``,
Blender; or ``--passes numpy``: the reference rasteriser in ``tests/support/reference_rasteriser.py``), then every
mode runs with each stylizer:

- ``diffusion``: tiny random-weight SD1.5 + ControlNets (``tests/support/random_weight_models.py``) on the
  CPU, or full-size random-weight ones with ``--full-size`` (GPU). Random weights make noise-like
  images, so per_frame flickers maximally; what the modes reuse drives E_warp down.
- ``npr``: the toon stylizer, lit from a fixed world direction: E_warp near 0 in every mode.

Columns: E_warp short range (t-1 -> t) and long range (frame 1 -> t), mean absolute RGB error in
0..1 with Lai et al.'s squared error beside it, both over the exact (ground-truth) flow and
occlusion; denoising cost = UNet evaluations x batch elements (CFG pair = 2) per output frame,
relative to per_frame; seconds per frame (stylisation only, passes excluded).
Goal (issue 5): keyframes at most 1/12 of per_frame's cost with E_warp at most 0.3 of per_frame's.

    python benchmarks/consistency.py                                  # 120 frames, 128x128, both stylizers
    python benchmarks/consistency.py --frames 24 --resolution 64 --shots orbit
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHOTS = {
    "orbit": ("living_room", []),
    "walkthrough": ("bedroom", []),
}
from scenes.template_schema import CONSISTENCY_MODES as MODES  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", nargs="+", default=list(SHOTS), choices=list(SHOTS))
    parser.add_argument("--frames", type=int, default=120, help="frames per shot (render.frame_end; default 120)")
    parser.add_argument("--resolution", type=int, default=128, help="square output side, multiple of 8 (default 128)")
    parser.add_argument("--stylizers", nargs="+", default=["npr", "diffusion"], choices=["npr", "diffusion"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps (default 20)")
    parser.add_argument("--strength", type=float, default=0.75, help="style.strength for flow_warp / inpainting")
    parser.add_argument("--threshold", type=float, default=None, help="keyframe_coverage_threshold (default: template's)")
    parser.add_argument("--max-keyframes", type=int, default=None, help="max_keyframes (default: template's)")
    parser.add_argument("--passes", choices=["blender", "numpy"], default="blender", help="how to render the passes")
    parser.add_argument("--full-size", action="store_true", help="full-size random-weight SD1.5 + ControlNets (GPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for passes and frames (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def render_shot(shot: str, args, work: Path):
    """Template, scene and a job folder with passes, control images, cameras.json and scene/scene.npz."""
    from passes.frame_passes import FramePasses  # noqa: F401
    from procedural.scene_builder import build_scene
    from scenes.scene_data import SCENE_NPZ
    from scenes.template_loading import load_template

    name, extra = SHOTS[shot]
    overrides = [f"render.frame_end={args.frames}", f"render.resolution=[{args.resolution}, {args.resolution}]", *extra]
    template = load_template(name, overrides).template
    scene = build_scene(template)
    job_dir = work / shot
    frames = list(template.render.frames)
    started = time.perf_counter()
    if not (job_dir / SCENE_NPZ).is_file():
        if args.passes == "blender":
            from passes.render_chunk import render_pass_frames

            render_pass_frames(template, scene, frames, job_dir, threads=args.threads)
        else:
            from passes.depth_range import template_disparity_range
            from passes.render_chunk import write_frame_outputs
            from tests.support.reference_rasteriser import render_scene_passes

            disparity = template_disparity_range(scene, template.passes) if "depth" in template.passes.control else None
            for f in frames:
                write_frame_outputs(job_dir, scene, render_scene_passes(scene, f), template, disparity)
        cameras = {"frames": {str(f): {"blender_matrix_world": scene.camera.camera_to_world_blender(f).tolist()} for f in frames}}
        (job_dir / "cameras.json").write_text(json.dumps(cameras))
        scene.save_npz(job_dir / SCENE_NPZ)
    print(f"[{shot}] passes for {len(frames)} frames at {args.resolution}^2 in {time.perf_counter() - started:.1f} s ({args.passes})",
          flush=True)
    return template, scene, job_dir


def diffusion_style(template, args, models: Path):
    """The template's style pointed at random-weight models saved under ``models``."""
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    from scenes.template_schema import CONTROL_PASSES

    pass_names = [c.pass_name for c in template.style.controlnets] or ["depth"]
    base = models / "sd15"
    if args.full_size:
        raise SystemExit("--full-size needs the full-size model folders; see benchmarks/stylize.py (not wired here)")
    if not (base / "model_index.json").is_file():
        save_tiny_sd15(base)
    for p in pass_names:  # each shot's templates may ask for other passes
        if not (models / f"controlnet_{p}" / "config.json").is_file():
            save_tiny_controlnet(models / f"controlnet_{p}", base, seed=10 + CONTROL_PASSES.index(p))
    style = template.style.model_dump(by_alias=True)
    style.update(stylizer="diffusion", model=str(base), num_inference_steps=args.steps, strength=args.strength)
    style["controlnets"] = [dict(c, model=str(models / f"controlnet_{c['pass']}")) for c in style["controlnets"]]
    return style


def with_style(template, style: dict):
    from scenes.template_schema import Template

    data = template.model_dump(by_alias=True)
    data["style"] = style
    return Template.model_validate(data)


def main(argv=None) -> int:
    args = parse_args(argv)
    from stylize.stylize_stage import stylize_frames

    work = args.work or Path(tempfile.mkdtemp(prefix="greybox-consistency-"))
    rows = []
    for shot in args.shots:
        template, scene, job_dir = render_shot(shot, args, work)
        frames = list(template.render.frames)
        for kind in args.stylizers:
            style = template.style.model_dump(by_alias=True)
            style["stylizer"] = kind
            instance = None
            if kind == "diffusion":
                style = diffusion_style(template, args, work / "models")
            consistency = dict(style.get("consistency") or {})
            if args.threshold is not None:
                consistency["keyframe_coverage_threshold"] = args.threshold
            if args.max_keyframes is not None:
                consistency["max_keyframes"] = args.max_keyframes
            style["consistency"] = consistency
            shot_template = with_style(template, style)
            if kind == "diffusion":
                from stylize.diffusion_stylizer import DiffusionStylizer
                from stylize.model_resolution import resolve_models

                instance = DiffusionStylizer(resolve_models(shot_template.style), shot_template.style, device=args.device,
                                             threads=args.threads)
            baseline = None
            runs = [(m, shot_template) for m in args.modes]
            if kind == "diffusion" and "per_frame" in args.modes:
                # the variant: one seed for every frame (seed_mode = fixed)
                fixed = with_style(template, dict(style, seed_mode="fixed"))
                runs.insert(args.modes.index("per_frame") + 1, ("per_frame (fixed seed)", fixed))
            for label, run_template in runs:
                mode = label.split(" ")[0]
                out = work / f"{shot}-{kind}-{label.replace(' ', '_')}"
                # seeds come from the template's style; the loaded models are the same
                result = stylize_frames(run_template, frames, job_dir, out, mode=mode, stylizer=kind,
                                        stylizer_instance=instance, scene=scene, threads=args.threads,
                                        measure_warp_error=True)
                w = result.warp_error
                row = {
                    "shot": shot, "stylizer": kind, "mode": label, "frames": len(frames),
                    "short_mae": w.short_mae, "short_mse": w.short_mse, "long_mae": w.long_mae, "long_mse": w.long_mse,
                    "steps_per_frame": result.denoising_steps / len(frames), "keyframes": len(result.keyframes),
                    "generated_frames": len(result.generated_frames), "seconds_per_frame": result.seconds / len(frames),
                }
                if label == "per_frame":
                    baseline = row
                if baseline is not None:
                    row["relative_cost"] = (row["steps_per_frame"] / baseline["steps_per_frame"]) if baseline["steps_per_frame"] else None
                    row["relative_short_mae"] = row["short_mae"] / baseline["short_mae"] if baseline["short_mae"] else None
                    row["relative_long_mae"] = row["long_mae"] / baseline["long_mae"] if baseline["long_mae"] else None
                rows.append(row)
                print(format_row(row), flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


HEADER = ("shot", "stylizer", "mode", "E_warp short MAE", "(MSE x1e3)", "E_warp long MAE", "(MSE x1e3)",
          "steps/frame", "rel. cost", "rel. E short", "rel. E long", "keyframes", "generated", "s/frame")


def _fmt(value, spec):
    if value is None:
        return "-"
    return format(value, spec)


def format_row(r: dict) -> str:
    return " | ".join([
        r["shot"], r["stylizer"], r["mode"], _fmt(r["short_mae"], ".4f"), _fmt(r["short_mse"] * 1e3, ".2f"),
        _fmt(r["long_mae"], ".4f"), _fmt(r["long_mse"] * 1e3, ".2f"), _fmt(r["steps_per_frame"], ".2f"),
        _fmt(r.get("relative_cost"), ".3f"), _fmt(r.get("relative_short_mae"), ".3f"), _fmt(r.get("relative_long_mae"), ".3f"),
        str(r["keyframes"]), str(r["generated_frames"]), _fmt(r["seconds_per_frame"], ".3f"),
    ])


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + format_row(r) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
