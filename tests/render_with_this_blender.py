"""Run by tests/test_blender_versions.py under each Blender's Python (one subprocess per Blender):
writes what a Blender-dependent stage writes, so the test can compare the bytes across releases.

    python tests/render_with_this_blender.py scene OUT TEMPLATE...
        the procedural scene of each TEMPLATE as OUT/TEMPLATE.npz (numpy only: bpy is not imported)
    python tests/render_with_this_blender.py npz SCENE_NPZ TEMPLATE OUT FRAMES [--set k=v ...]
        the passes and control images of the given scene file for FRAMES (e.g. 1,2), with the
        template's [passes] settings, and OUT/cameras.json
    python tests/render_with_this_blender.py blend OUT
        OUT/saved.blend (one triangle) saved by this Blender

Prints one line ``BLENDER X.Y.Z`` (the running Blender, or for ``scene`` the installed one) when done.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _overrides(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "scene":
        from procedural.scene_builder import build_scene
        from scenes.template_loading import load_template

        out = Path(argv[1])
        out.mkdir(parents=True, exist_ok=True)
        for name in argv[2:]:
            build_scene(load_template(name).template).save_npz(out / f"{name}.npz")
        from passes.blender_compat import installed_blender_version

        print(f"BLENDER {installed_blender_version()}", flush=True)
        return
    elif mode == "npz":
        from greybox.atomic_files import write_json_atomic
        from passes.blender_render import PassRenderer
        from passes.camera_records import camera_records
        from passes.depth_range import template_disparity_range
        from passes.render_chunk import write_frame_outputs
        from scenes.scene_data import Scene
        from scenes.template_loading import load_template

        scene = Scene.load_npz(argv[1])
        template = load_template(argv[2], _overrides(argv)).template
        out = Path(argv[3])
        frames = [int(f) for f in argv[4].split(",")]
        renderer = PassRenderer(scene, threads=2)
        disparity = template_disparity_range(scene, template.passes)
        for frame in frames:
            write_frame_outputs(out, scene, renderer.render(frame), template, disparity)
        renderer.close()
        write_json_atomic(out / "cameras.json", camera_records(scene, frames))
    elif mode == "blend":
        import bpy

        bpy.ops.wm.read_factory_settings(use_empty=True)
        mesh = bpy.data.meshes.new("triangle")
        mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
        bpy.context.scene.collection.objects.link(bpy.data.objects.new("triangle", mesh))
        out = Path(argv[1])
        out.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "saved.blend"), compress=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    from passes.blender_compat import running_blender_version

    print(f"BLENDER {running_blender_version()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
