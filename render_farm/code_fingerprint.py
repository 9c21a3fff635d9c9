"""Per-stage code fingerprints: a hash of the sources a stage runs, part of every store key.

The greybox version in a key does not change when the code does, so without this a change to what
a stage writes would silently reuse the units the old code wrote. :data:`STAGE_SOURCES` names, per
stage, the sources its task runs: its own package, the shared packages it imports, and the farm
glue that runs it and records its files (``render_farm/stage_tasks.py``; ``task_memory.py`` for
the stages that check their memory before they start).
Paths are relative to the folder that holds greybox's packages (the repository root, or
site-packages when installed). A folder entry means every ``.py`` file under it plus the files in
its ``data/`` folder (e.g. the segmentation palette); a file entry brings the ``__init__.py`` of its
package with it. Templates (``scenes/bundled``) are inputs, keyed by their resolved content instead.

:func:`code_fingerprint` hashes the listed files' paths and bytes once per process (the
scheduler computes every key of a job up front). ``tests/test_farm_store.py`` walks each stage's
imports (lazy ones included) from its task function and fails when a module it reaches is not
listed here, so a new import cannot slip past the fingerprint.

Deliberately coarse: a change to a shared package (``scenes/``, ``greybox/``) or to the task glue
reruns every stage that reads it, even when the change is cosmetic. Reusing a unit written by
different code is the failure this prevents; recomputing is only time.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGES_ROOT = Path(__file__).resolve().parents[1]

_TASK_GLUE = ("render_farm/stage_tasks.py",)

# The scene task writes the scene, glb, cameras and blend units: the procedural builders, the
# scene data model and layout, the camera records and the glTF/.blend export through Blender,
# and the model import (files read through Blender's importers, their confinement and hashes).
_SCENE = ("greybox/", "scenes/", "procedural/", "passes/scene_stage.py", "passes/blender_scene.py",
          "passes/model_import.py", "passes/model_files.py",
          "passes/blender_compat.py", "passes/blender_render.py", "passes/camera_records.py", "passes/frame_passes.py",
          "passes/reprojected_flow.py", *_TASK_GLUE)

STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "scene": _SCENE, "glb": _SCENE, "cameras": _SCENE, "blend": _SCENE,
    # EXR passes and control images from the recorded scene: Blender, the pass and control writers.
    "passes": ("greybox/", "scenes/", "passes/", "render_farm/task_memory.py", *_TASK_GLUE),
    # Stylised frames: the stylizers and consistency modes, reading the passes' EXRs and the scene,
    # and the per-frame figures recorded with them.
    "stylize": ("greybox/", "scenes/", "stylize/", "passes/frame_passes.py", "passes/pass_exr.py", "passes/depth_tolerance.py",
                "passes/cryptomatte.py", "render_farm/task_memory.py", "render_farm/frame_figures.py", *_TASK_GLUE),
    # A shot's look (keyframes, baked): its generation, atlases and record, written by the stylizers.
    "look": ("greybox/", "scenes/", "stylize/", "passes/frame_passes.py", "passes/pass_exr.py", "passes/depth_tolerance.py",
             "passes/cryptomatte.py", "render_farm/task_memory.py", "render_farm/frame_figures.py", *_TASK_GLUE),
    "atlas": ("greybox/", "scenes/", "stylize/", "passes/frame_passes.py", "passes/pass_exr.py", "passes/depth_tolerance.py",
              "passes/cryptomatte.py", "render_farm/task_memory.py", "render_farm/frame_figures.py", *_TASK_GLUE),
    # scene/textured.glb and .blend: the scene's export through Blender, with the look's atlases as textures.
    "textured": (*_SCENE, "stylize/", "passes/pass_exr.py", "passes/depth_tolerance.py", "passes/cryptomatte.py",
                 "render_farm/task_memory.py", "render_farm/frame_figures.py"),
    # video and contact sheet from the view's frames and control images.
    "assemble": ("greybox/", "render_farm/job_outputs.py", "passes/frame_passes.py", "passes/pass_exr.py",
                 "passes/cryptomatte.py", "scenes/semantic_palette.py", "scenes/brand_targets.py", "stylize/frame_seeds.py",
                 *_TASK_GLUE),
}


def stage_source_files(stage: str, root: Path = PACKAGES_ROOT) -> list[Path]:
    """The files :func:`code_fingerprint` hashes for ``stage``, sorted, relative to ``root``."""
    try:
        entries = STAGE_SOURCES[stage]
    except KeyError:
        raise KeyError(f"stage {stage!r} has no entry in render_farm.code_fingerprint.STAGE_SOURCES; "
                       "list the sources it runs there") from None
    files: set[Path] = set()
    for entry in entries:
        path = root / entry
        if entry.endswith("/"):
            if not path.is_dir():
                raise FileNotFoundError(f"STAGE_SOURCES[{stage!r}] lists {entry}, which is not a folder under {root}")
            files.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
            files.update(p for p in path.rglob("*") if p.is_file() and p.parent.name == "data")
        else:
            if not path.is_file():
                raise FileNotFoundError(f"STAGE_SOURCES[{stage!r}] lists {entry}, which is not a file under {root}")
            files.add(path)
            package = path.parent
            while package != root and (package / "__init__.py").is_file():
                files.add(package / "__init__.py")
                package = package.parent
    return sorted(p.relative_to(root) for p in files)


def fingerprint_of(stage: str, root: Path = PACKAGES_ROOT) -> str:
    """sha256 over the relative path and sha256 of every file :func:`stage_source_files` lists."""
    digest = hashlib.sha256()
    for rel in stage_source_files(stage, root):
        digest.update(rel.as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


@functools.cache
def code_fingerprint(stage: str) -> str:
    """The fingerprint of the installed sources of ``stage``, computed once per process."""
    return fingerprint_of(stage)
