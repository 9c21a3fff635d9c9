"""Render greybox passes inside a studio's own Blender 4.2 LTS, 4.5 LTS or 5.0 (no greybox install needed in Blender's Python).

Usage::

    blender -b -P passes/blender_entry.py -- TEMPLATE --out DIR [--frames 1-24] [--set key.path=VALUE ...] [--threads N] [--save-blend] [--asset-root DIR ...]

Arguments after ``--`` are ours (Blender keeps the rest). The repository root (this file's
parent's parent) is put on ``sys.path``; Blender's Python needs numpy, pydantic and OpenEXR.
Builds the scene first (a template that cannot be built exits 2 with nothing written), then
writes the scene folder as the scene stage does (``DIR/scene/scene.npz``, ``layout.json``,
``scene.glb``, and ``scene.blend`` with ``--save-blend`` or ``passes.save_blend``),
``DIR/cameras.json``, and the passes of that scene: ``DIR/passes/NNNN.exr`` and
``DIR/control/<kind>/NNNN.png``. Exit status: 0 done, 2 bad input (template, option, path) or a Blender greybox does not support,
1 anything else.

The same script runs under the bpy wheel's Python: ``python passes/blender_entry.py -- TEMPLATE --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str]) -> int:
    """Parse our arguments (those after ``--``), render the passes, write cameras.json; return the exit status."""
    from greybox.errors import GreyboxError

    args_after = argv[argv.index("--") + 1:] if "--" in argv else argv[1:]
    parser = argparse.ArgumentParser(prog="blender -b -P passes/blender_entry.py --", description=__doc__.split("\n")[0])
    parser.add_argument("template", help="bundled template name or path to a .toml")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", default=None, help="inclusive ranges and lists, e.g. 1-12,20 (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.path=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-blend", action="store_true", help="also write DIR/scene/scene.blend")
    parser.add_argument("--asset-root", dest="asset_roots", action="append", default=[], metavar="DIR",
                        help="a folder the template's model files may also come from; repeatable")
    try:
        args = parser.parse_args(args_after)
    except SystemExit as exc:
        return 2 if exc.code else 0

    try:
        # 1. Check inputs
        from greybox.frame_ranges import parse_frames
        from scenes.template_loading import load_template

        loaded = load_template(args.template, list(args.overrides))
        template = loaded.template
        render = template.render
        frames = parse_frames(args.frames, render.frame_start, render.frame_end)
        if args.threads < 1:
            from greybox.errors import InputError

            raise InputError(f"--threads {args.threads}: must be at least 1")
        out_dir = Path(args.out)
        from passes.blender_compat import check_running_blender

        blender = check_running_blender()
        from passes import scene_stage

        roots = scene_stage.model_roots(loaded.source, args.asset_roots) if scene_stage.build_needs_blender(template) else None
        scene = scene_stage.build_shot_scene(template, roots)  # a build error exits 2 before anything is written

        # 2. The scene stage: the scene folder and the camera records for the frames asked
        scene_stage.write_scene_folder(scene, out_dir, frames, save_blend=args.save_blend or template.passes.save_blend)

        # 3. Render the passes and control images of that scene
        from passes.render_chunk import render_pass_frames

        results = render_pass_frames(
            template, scene, frames, out_dir, threads=args.threads,
            on_frame=lambda f: print(f"greybox: frame {f} done", flush=True),
        )
        print(f"greybox: {len(results)} frames written to {out_dir} (Blender {blender})", flush=True)
        return 0
    except GreyboxError as err:
        print(f"greybox: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    status = main(sys.argv)
    sys.stdout.flush()
    if status:
        sys.exit(status)
