"""The scene stage: a shot's template -> its recorded scene, ``DIR/scene/`` and ``DIR/cameras.json``.

Every later stage reads what this stage wrote (:func:`scenes.scene_data.read_scene`) and never
rebuilds the scene. Files (each written to a temporary name and renamed):

- ``scene/scene.npz``: everything later stages need (:meth:`scenes.scene_data.Scene.npz_bytes`);
- ``scene/layout.json``: every object, readable (:mod:`scenes.scene_layout`);
- ``scene/scene.glb``: the scene for other tools, through Blender's own glTF exporter
  (:func:`passes.blender_scene.export_scene_gltf`);
- ``scene/scene.blend`` when asked (``passes.save_blend``);
- ``cameras.json``: per frame K, world-to-camera (OpenCV) and Blender's matrix, for the frames
  a run renders.

Entry points:

- :func:`build_shot_scene`: every object source of a template into one :class:`Scene`: the
  procedural builder (pure numpy), and the model files (``[[imports]]``, asset furniture, a file
  camera) read through Blender by :func:`passes.model_import.import_models` and passed as
  ``build_scene(template, imported=..., assets=..., camera=...)``. The sha256 of every file read
  is recorded in the scene (``metadata["files"]``, ``layout.json``'s ``files``).
- :func:`check_scenes_build`: the build check the driver (and ``greybox validate``) runs for every
  shot before anything is written: the builder's dry run (:func:`build_problems`), every problem
  at once; a template whose scene cannot be built is an ``InputError`` naming the shot and each
  problem's key path. Templates whose build needs Blender (:func:`build_needs_blender`) are checked
  in a subprocess (``python -m passes.scene_stage``, :func:`check_in_subprocess`), so the driver
  never imports bpy.
- :func:`write_scene_data` (numpy: npz and layout), :func:`write_scene_exports` (Blender: glb,
  blend), :func:`write_camera_records`, and :func:`write_scene_folder` for all of them
  (``passes/blender_entry.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from greybox.atomic_files import write_bytes_atomic, write_json_atomic
from greybox.errors import GreyboxError, InputError
from scenes.scene_data import LAYOUT_JSON, SCENE_BLEND, SCENE_GLB, SCENE_NPZ, Scene

CAMERAS_JSON = "cameras.json"
CHECK_TIMEOUT_S = 600.0
_ANSWER = "greybox-scene-check: "  # the child's answer line (Blender may print on stdout too)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def template_folder(source: str) -> Path:
    """The folder a template's model paths are relative to: the folder of the file ``source``
    names (absolute), or the bundled templates' folder for a bundled name."""
    from scenes.template_loading import find_template

    try:
        return find_template(str(source)).resolve().parent
    except InputError:
        return Path(source).resolve().parent


def model_roots(source_or_folder: str | Path, asset_roots=()):
    """:class:`passes.model_files.ModelRoots` of a template (its source path, or its folder when
    that is a folder) and the ``--asset-root`` folders."""
    from passes.model_files import ModelRoots

    folder = Path(source_or_folder)
    folder = folder if folder.is_dir() else template_folder(str(source_or_folder))
    for root in asset_roots:
        if not Path(root).is_dir():
            raise InputError(f"--asset-root {root}: not a folder; give a folder the template's models may come from")
    return ModelRoots.of(folder, asset_roots)


def build_shot_scene(template, roots=None) -> Scene:
    """The scene of a validated template from all of its object sources (see the module docstring).
    ``roots`` (:func:`model_roots`) is needed when the template has models (:func:`build_needs_blender`).

    Raises InputError naming the key path, the value and the fix when it cannot be built.
    """
    from procedural.scene_builder import build_scene

    if not build_needs_blender(template):
        return build_scene(template)
    from passes.model_import import import_models

    if roots is None:
        raise ValueError("build_shot_scene: a template with models needs its roots (model_roots(source))")
    models = import_models(template, roots)
    scene = build_scene(template, imported=models.objects, assets=models.assets, camera=models.camera)
    scene.metadata["files"] = dict(models.files)
    return scene


def scene_files(scene: Scene) -> dict[str, str]:
    """{label: sha256} of every model file the scene was built from ({} for procedural scenes)."""
    return dict(scene.metadata.get("files") or {})


def build_needs_blender(template) -> bool:
    """Whether building ``template``'s scene needs Blender: it imports model files (``[[imports]]``
    or asset furniture). Such templates are built by :func:`check_scenes_build` in a subprocess."""
    from passes.model_import import needs_import

    return needs_import(template)


def build_problems(template, roots=None) -> list[dict]:
    """Every problem building ``template``'s scene would meet, without building its meshes: the
    dry run (:func:`procedural.scene_builder.scene_problems`; numpy, no Blender for procedural
    templates; a template with models reads them first, through Blender, with ``roots``). Each
    problem names its key path, value and fix; empty when it builds."""
    return build_outcome(template, roots)[0]


def build_outcome(template, roots=None) -> tuple[list[dict], dict[str, str]]:
    """(every problem, as :func:`build_problems`; {label: sha256} of the model files read)."""
    from procedural.scene_builder import scene_problems

    files: dict[str, str] = {}
    kw = {}
    if build_needs_blender(template):
        from passes.model_import import import_models

        if roots is None:
            raise ValueError("build_outcome: a template with models needs its roots (model_roots(source))")
        try:
            models = import_models(template, roots)
        except InputError as err:
            return _problem_entries(err), files
        files = dict(models.files)
        kw = dict(imported=models.objects, assets=models.assets, camera=models.camera)
    found = [{"key": p.get("key") or problem_key(p["message"]), "value": p.get("value"), "message": p["message"]}
             for p in scene_problems(template, **kw)]
    if not found and (_style_targets_of(template.style) or template.style.brand_colors):
        from procedural.scene_builder import build_scene

        # what the regions, reference images and brand colours name, on the scene built once
        found = style_target_problems(template.style, build_scene(template, **kw))
    return found, files


def style_target_problems(style, scene: Scene) -> list[dict]:
    """What ``style.regions`` and ``style.reference_images`` name that ``scene`` does not have
    (:func:`scenes.style_regions.target_problems`: a glob matching no object, a class no object
    has), then, when those are fine, what ``style.brand_colors`` name that it does not have
    (:func:`scenes.brand_targets.brand_problems`); each with its key path, value and fix."""
    from scenes.brand_targets import brand_problems
    from scenes.style_regions import scene_objects, target_problems

    found = target_problems(style, scene_objects(scene)) if _style_targets_of(style) else []
    if not found and style.brand_colors:
        found = brand_problems(style, scene)
    return [{"key": key, "value": value, "message": f"{key} = {value!r}: {message}"} for key, value, message in found]


def _style_targets_of(style) -> bool:
    return any(e.objects or e.classes for e in (*style.regions, *style.reference_images))


def _style_targets(resolved: dict) -> list:
    """What the build check reads of the style: the objects and classes regions and reference images name."""
    style = resolved.get("style") or {}
    return [[entry.get("objects", []), entry.get("classes", [])]
            for table in ("regions", "reference_images") for entry in style.get(table, [])]


def _problem_entries(err: InputError) -> list[dict]:
    if getattr(err, "problems", None):
        return [{"key": p.get("key") or problem_key(p["message"]), "value": p.get("value"), "message": p["message"]}
                for p in err.problems]
    return [{"key": problem_key(str(err)), "value": None, "message": str(err)}]


def check_in_subprocess(items: list[tuple[str, dict, str]], timeout_s: float = CHECK_TIMEOUT_S, *,
                        asset_roots=(), folders: dict[str, str] | None = None,
                        files: dict[str, dict] | None = None) -> dict[str, list[dict]]:
    """Check each (label, resolved template, source) in a fresh Python process (where model imports
    load Blender); return {label: problems} for those that cannot be built. ``folders``: {label:
    template folder} where it is not the source's folder; ``files``, when given, receives {label:
    {file label: sha256}} of the model files each build read.

    The child is ``python -m passes.scene_stage check``: a JSON request on stdin, a JSON answer on
    one stdout line. A child that crashes or times out is a GreyboxError (exit 1) with its last output.
    """
    folders = folders or {}
    request = json.dumps({"asset_roots": [str(r) for r in asset_roots],
                          "shots": [{"label": l, "resolved": r, "source": s, "folder": str(folders.get(l, "")) or None}
                                    for l, r, s in items]})
    # this greybox first on the child's path; the working folder stays ours, so relative sources still resolve
    repo_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "passes.scene_stage", "check"], input=request, text=True,
                              capture_output=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise GreyboxError(f"the scene build check took longer than {timeout_s:.0f} s and was stopped") from None
    answer = None
    for line in proc.stdout.splitlines():
        if line.startswith(_ANSWER):
            try:
                answer = json.loads(line[len(_ANSWER):])
            except ValueError:
                answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise GreyboxError(f"the scene build check process failed (exit {proc.returncode}):\n{tail}")
    if files is not None:
        files.update(answer.get("files", {}))
    return {p["label"]: p["problems"] for p in answer.get("problems", [])}


def check_scenes_build(shots: Iterable[tuple[str, object, dict, str]], *, isolate: bool | None = None,
                       asset_roots=(), folders: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Build the scene of every (label, template, resolved, source) before anything is written.

    Shots whose scene inputs are the same (a sweep over the prompt) are built once; each distinct
    scene is also checked against what its style's regions and reference images name. ``isolate``:
    True builds every shot in a subprocess, False in this process, None (default) in a subprocess
    only the templates that :func:`build_needs_blender`. ``asset_roots`` and ``folders`` ({label:
    template folder}, default: the source's folder) say where model files may come from.
    Returns {label: {file label: sha256}} of the model files each shot's scene reads ({} for
    procedural scenes). Raises one InputError listing every shot that cannot be built (exit 2;
    each line starts with the shots' labels), so one bad shot of a batch stops them all. Its
    ``problems`` hold one entry per line (file = the label, key = the template key the message
    names, when it names one).
    """
    from scenes.template_loading import canonical_hash

    # 1. Check inputs: one build per distinct scene (the template's folder counts when it has models)
    folders = dict(folders or {})
    groups: dict[str, list[str]] = {}
    first: dict[str, tuple[object, dict, str, str]] = {}
    for label, template, resolved, source in shots:
        needs = build_needs_blender(template)
        folder = str(folders.get(label) or (template_folder(source) if needs else ""))
        key = canonical_hash({"scene": {k: v for k, v in resolved.items() if k not in ("name", "description", "style")},
                              "targets": _style_targets(resolved), "folder": folder if needs else None,
                              "brand_targets": [b.get("target") for b in (resolved.get("style") or {}).get("brand_colors", [])]})
        groups.setdefault(key, []).append(label)
        first.setdefault(key, (template, resolved, source, folder))

    # 2. Check: here, or in a subprocess when Blender is needed
    problems: dict[str, list[dict]] = {}
    files: dict[str, dict] = {}
    remote = []
    for key, (template, resolved, source, folder) in first.items():
        if isolate or (isolate is None and build_needs_blender(template)):
            remote.append((key, resolved, source))
            continue
        found, files[key] = build_outcome(template, model_roots(folder or source, asset_roots) if build_needs_blender(template) else None)
        if found:
            problems[key] = found
    if remote:
        problems.update(check_in_subprocess(remote, asset_roots=asset_roots, files=files,
                                            folders={key: first[key][3] for key, _, _ in remote}))

    # 3. One error naming every problem of every shot that cannot be built
    if problems:
        lines, entries = [], []
        for key, found in problems.items():
            label = ", ".join(groups[key])
            for p in found:
                lines.append(f"{label}: {p['message']}")
                entries.append({"file": label, "key": p["key"], "value": p.get("value"), "message": p["message"]})
        styled = all(e["key"].startswith("style.") for e in entries)
        header = ("the style names objects or classes the scene does not have" if styled else "the scene cannot be built") + (
            f" ({len(problems)} of {len(groups)} scenes)" if len(groups) > 1 else "")
        raise InputError(header + ":\n  " + "\n  ".join(lines), entries)
    return {label: dict(files.get(key, {})) for key, labels in groups.items() for label in labels}


def problem_key(message: str) -> str:
    """The template key path a build message starts with (``generator.room.furniture.2``), or ''."""
    from scenes.template_schema import Template

    match = re.match(r"([A-Za-z_]\w*(?:\.\w+)*)", message)
    if match and match.group(1).split(".")[0] in Template.model_fields:
        return match.group(1)
    return ""


def _check_main(stream_in, stream_out) -> int:
    """``python -m passes.scene_stage check``: build each requested template; print the problems as JSON."""
    from scenes.template_loading import validate_data

    request = json.loads(stream_in.read())
    problems = []
    files = {}
    asset_roots = request.get("asset_roots") or []
    for item in request["shots"]:
        try:
            template = validate_data(item["resolved"], item.get("source", "template"))
            roots = model_roots(item.get("folder") or item.get("source", "."), asset_roots) if build_needs_blender(template) else None
            found, files[item["label"]] = build_outcome(template, roots)
        except InputError as err:
            found = _problem_entries(err)
        if found:
            problems.append({"label": item["label"], "problems": found})
    stream_out.write(_ANSWER + json.dumps({"problems": problems, "files": files}, default=repr) + "\n")
    stream_out.flush()
    return 0


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_scene_data(scene: Scene, out_dir: str | Path) -> dict[str, str]:
    """``scene/scene.npz`` and ``scene/layout.json`` under ``out_dir`` (numpy only); {relative path: sha256}."""
    from scenes.scene_layout import layout_bytes

    out_dir = Path(out_dir)
    return {
        SCENE_NPZ: scene.save_npz(out_dir / SCENE_NPZ),
        LAYOUT_JSON: write_bytes_atomic(out_dir / LAYOUT_JSON, layout_bytes(scene)),
    }


def write_scene_exports(scene: Scene, out_dir: str | Path, *, glb: bool = True, blend: bool = False) -> dict[str, str]:
    """``scene/scene.glb`` and, with ``blend``, ``scene/scene.blend`` under ``out_dir`` (needs bpy;
    replaces Blender's current data); {relative path: sha256}."""
    from greybox.atomic_files import sha256_file
    from passes.blender_scene import export_scene_gltf, save_scene_blend

    out_dir = Path(out_dir)
    written = {}
    if glb:
        export_scene_gltf(scene, out_dir / SCENE_GLB)
        written[SCENE_GLB] = sha256_file(out_dir / SCENE_GLB)
    if blend:
        save_scene_blend(scene, out_dir / SCENE_BLEND)
        written[SCENE_BLEND] = sha256_file(out_dir / SCENE_BLEND)
    return written


def write_camera_records(scene: Scene, frames, out_dir: str | Path) -> str:
    """``cameras.json`` for ``frames`` under ``out_dir``; its sha256."""
    from passes.camera_records import camera_records

    return write_json_atomic(Path(out_dir) / CAMERAS_JSON, camera_records(scene, frames))


def write_scene_folder(scene: Scene, out_dir: str | Path, frames, *, save_blend: bool = False) -> dict[str, str]:
    """Everything the scene stage writes for a shot into ``out_dir``; {relative path: sha256}."""
    written = write_scene_data(scene, out_dir)
    written.update(write_scene_exports(scene, out_dir, blend=save_blend))
    written[CAMERAS_JSON] = write_camera_records(scene, frames, out_dir)
    return written


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print("usage: python -m passes.scene_stage check  (a JSON request on stdin)", file=sys.stderr)
        sys.exit(2)
    sys.exit(_check_main(sys.stdin, sys.stdout))
