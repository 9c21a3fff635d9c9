"""Task functions the farm runs in workers, one per stage: ``fn(params, ctx) -> result``.

Each imports its stage lazily (Blender only in the scene and passes tasks, torch and diffusers
only in the stylize task), writes its outputs into store staging folders through ``ctx`` and
commits one store unit per frame (per shot for the scene and assembly). A unit is committed as
soon as its files are written, so a worker killed mid-chunk loses only the frame in flight.
Stages after the scene read the scene the scene task recorded in the shot's view
(``scene/scene.npz``); they never rebuild it.

``params["template"]`` is the resolved template (plain data); workers validate it back into a
:class:`scenes.template_schema.Template` once per process.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from greybox.frame_files import frame_png_path

_TEMPLATES: dict[str, object] = {}


def template_from_params(params: dict):
    """The validated Template for ``params['template']`` (cached per worker by its hash)."""
    from scenes.template_loading import canonical_hash, validate_data

    resolved = params["template"]
    key = params.get("template_hash") or canonical_hash(resolved)
    template = _TEMPLATES.get(key)
    if template is None:
        template = validate_data(resolved, params.get("source", "template"))
        _TEMPLATES.clear()
        _TEMPLATES[key] = template
    return template


def _move_into(src_root: Path, relpaths, dst_root: Path) -> None:
    for rel in relpaths:
        dst = dst_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src_root / rel, dst)


def _check_memory(ctx, kind: str, template, params: dict) -> None:
    """Refuse (before rendering) a task estimated over --max-memory or what this machine has free."""
    from render_farm.task_memory import check_task_memory, process_resident_bytes

    check_task_memory(kind, template.render.width, template.render.height, controls=template.passes.control,
                      stylizer=template.style.stylizer if kind == "stylize" else None,
                      max_memory=params.get("max_memory"), held=process_resident_bytes(), where=f"{ctx.task_id}: ",
                      exr_channels=template.passes.exr_channels)


def _check_diffusion_memory(ctx, template, params: dict, resolved, frames: int) -> None:
    """Refuse (before loading the models) a diffusion task estimated over --max-memory or what its
    device has free: this machine's memory on the CPU, the GPU's on CUDA."""
    from render_farm.task_memory import check_task_memory, diffusion_run, process_resident_bytes
    from stylize.device_memory import task_device_memory

    device, itemsize, free, held = task_device_memory()
    run = diffusion_run(resolved, template.style, device=device, itemsize=itemsize, sequence_frames=frames)
    check_task_memory("stylize", template.render.width, template.render.height, stylizer="diffusion", diffusion=run,
                      max_memory=params.get("max_memory"), free=free,
                      held=process_resident_bytes() if device == "cpu" else held, where=f"{ctx.task_id}: ")


def passes_chunk(params: dict, ctx) -> dict:
    """Render the passes and control images of this task's frames (one store unit per frame) from
    the scene the shot's scene task recorded (``ctx.view/scene/scene.npz``).

    The worker keeps one warm :class:`passes.blender_render.PassRenderer` per scene unit, so a
    shot's chunks on one worker build the Blender scene once.
    """
    # 1. Check inputs, that this worker's Blender is the one the units' keys name (else it must not commit),
    #    and that this machine can hold the task
    started = time.perf_counter()
    template = template_from_params(params)
    frames = [int(unit) for unit, _ in ctx.units]
    if not frames:
        return {}
    _check_memory(ctx, "passes", template, params)
    from passes.blender_compat import check_running_blender

    meta = {"bpy": check_running_blender(params.get("blender"))}
    from passes.render_chunk import pass_frame_paths, render_pass_frames
    from scenes.scene_data import read_scene

    # 2. A warm renderer for this scene
    def make_renderer():
        from passes.blender_render import PassRenderer

        return PassRenderer(read_scene(ctx.view), threads=ctx.threads)

    renderer = ctx.warm("passes", params["scene_key"], make_renderer)

    # 3. Render, committing each frame's files as soon as they are written
    chunk_dir = ctx.store.new_staging(f"chunk-{ctx.units[0][1]}")
    controls = list(template.passes.control)

    frame_seconds: dict[str, float] = {}
    last = [started]
    shows: dict[int, dict] = {}  # the ids each frame shows: the planner keys region prompts by them

    def commit_frame(frame: int) -> None:
        unit = str(frame)
        staging = ctx.staging(unit)
        _move_into(chunk_dir, pass_frame_paths(frame, controls), staging)
        ctx.commit(unit, staging, {**meta, "frame": frame, "shows": shows.pop(frame)})
        now = time.perf_counter()  # the chunk's first frame includes building (or warming) the Blender scene
        frame_seconds[unit], last[0] = round(now - last[0], 4), now

    try:
        render_pass_frames(template, renderer.scene, frames, chunk_dir, threads=ctx.threads, renderer=renderer,
                           on_frame=commit_frame, shows=shows)
    finally:
        shutil.rmtree(chunk_dir, ignore_errors=True)
    return {"bpy": meta["bpy"], "frame_seconds": frame_seconds}


def scene(params: dict, ctx) -> dict:
    """The shot's scene stage (:mod:`passes.scene_stage`), up to four store units:

    - ``scene``: ``scene/scene.npz`` and ``scene/layout.json`` (numpy only);
    - ``glb``: ``scene/scene.glb`` (Blender's exporter, keyed by its release);
    - ``blend``: ``scene/scene.blend`` (when the template asks for it; keyed by the release);
    - ``cameras``: ``cameras.json`` for the shot's frames (numpy only).

    The scene is built only when its unit is to be made; otherwise it is read from the shot's view,
    where the runner linked the stored unit (a new frame selection, another Blender release, or a
    first ``--save-blend``).
    """
    # 1. Check inputs
    template = template_from_params(params)
    todo = {unit for unit, _ in ctx.units}
    if not todo:
        return {}
    from passes import scene_stage
    from scenes.scene_data import read_scene

    # 2. The scene (models are read through Blender's importers: the release the key names, the
    #    files the key hashes; Blender's data is replaced, so a warm renderer goes first)
    meta: dict = {}
    if "scene" in todo:
        roots = None
        if scene_stage.build_needs_blender(template):
            from passes.blender_compat import check_running_blender

            meta["bpy"] = check_running_blender(params.get("import_blender"))
            ctx.release_warm("passes")
            roots = scene_stage.model_roots(params.get("template_dir") or params.get("source", "."), params.get("asset_roots") or ())
        scene_data = scene_stage.build_shot_scene(template, roots)
        read = scene_stage.scene_files(scene_data)
        if read != dict(params.get("files") or {}):
            from greybox.errors import InputError

            changed = sorted(k for k in set(read) | set(params.get("files") or {}) if read.get(k) != (params.get("files") or {}).get(k))
            raise InputError(f"the model files changed while the job ran ({', '.join(changed[:10])}); run the job again")
        staging = ctx.staging("scene")
        scene_stage.write_scene_data(scene_data, staging)
        ctx.commit("scene", staging, {"objects": len(scene_data.objects), **({"files": read} if read else {}), **meta})
    else:
        scene_data = read_scene(ctx.view)

    # 3. The files Blender writes: this worker's Blender must be the release their keys name (and
    #    Blender's data is replaced: drop a warm renderer first)
    if todo & {"glb", "blend"}:
        from passes.blender_compat import check_running_blender

        meta["bpy"] = check_running_blender(params.get("export_blender"))
        ctx.release_warm("passes")
    for unit, flags in (("glb", {"glb": True}), ("blend", {"glb": False, "blend": True})):
        if unit in todo:
            staging = ctx.staging(unit)
            scene_stage.write_scene_exports(scene_data, staging, **flags)
            ctx.commit(unit, staging, meta)

    # 4. The camera records of the frames this run renders
    if "cameras" in todo:
        staging = ctx.staging("cameras")
        scene_stage.write_camera_records(scene_data, params["frames"], staging)
        ctx.commit("cameras", staging, {})
    return meta


def _library_versions() -> dict:
    versions = {}
    for name in ("torch", "diffusers", "transformers"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing library is recorded as absent
            versions[name] = None
    return versions


def _stored_frame(store, key: str | None, frame: int):
    """The stylised frame of store unit ``key`` as (H, W, 3) uint8, or ``None`` when it is not intact there."""
    if store is None or key is None:
        return None
    record, _ = store.load_record(key)
    rel = frame_png_path(frame)
    if record is None or rel not in record["outputs"]:
        return None
    import numpy as np
    from PIL import Image

    with Image.open(store.unit_dir(key) / rel) as image:
        return np.asarray(image.convert("RGB"))


def sequence_to_run(mode: str, todo: list[int], sequence: list[int], anchored: bool, stored) -> tuple[list[int], tuple | None]:
    """The frames a stylisation task must compute to produce its missing units ``todo``, and the
    stored frame a ``flow_warp`` sequence continues from.

    ``per_frame``: ``todo``. ``keyframes``: the whole ``sequence`` (every frame reads all of it).
    ``flow_warp``: the sequence up to the last missing frame; when the frame before the first
    missing one is in the store (``stored(frame)`` gives its image) and no anchor attention ties
    every frame to the first one's generation, from there on (frame t reads only t-1's output).
    """
    if mode == "keyframes":
        return list(sequence), None
    if mode != "flow_warp":
        return list(todo), None
    run = [f for f in sequence if f <= max(todo)]
    before = [f for f in run if f < min(todo)]
    if before and not anchored:
        image = stored(before[-1])
        if image is not None:
            return [f for f in run if f >= min(todo)], (before[-1], image)
    return run, None


def _figure_frames(store, keys: dict, sequence: list[int], frames: list[int], continue_from, frames_dir: Path) -> list[int]:
    """The frames whose E_warp figures a sequence task records (short range: each against the one
    before it; long range: against the sequence's first), with every PNG they need in ``frames_dir``.

    A run that continued from stored frame c computed only c+1 onwards: c and the sequence's first
    frame are linked in from their store units and put in front (the figure that pairs them is
    not kept: only the committed frames' are)."""
    if continue_from is None:
        return list(frames)
    lead = [f for f in dict.fromkeys([sequence[0], continue_from[0]])]
    for f in lead:
        rel = Path(frame_png_path(f)).name
        src = store.unit_dir(keys[str(f)]) / frame_png_path(f)
        try:
            os.link(src, frames_dir / rel)
        except OSError:
            shutil.copyfile(src, frames_dir / rel)
    return lead + list(frames)


def _stylizer_for(params: dict, ctx, template, frames: int):
    """(resolved models, the worker's warm DiffusionStylizer) for diffusion, (None, None) for NPR
    (after its memory check); one warm pipeline per worker, for this style and these models."""
    if params["stylizer"] == "npr":
        _check_memory(ctx, "stylize", template, params)
        return None, None
    from scenes.template_loading import canonical_hash
    from stylize.model_resolution import resolve_models

    overrides = params.get("controlnet_overrides") or None
    resolved = resolve_models(template.style, model_override=params.get("model_override"), controlnet_overrides=overrides)
    _check_diffusion_memory(ctx, template, params, resolved, frames)

    def load():
        from stylize.diffusion_stylizer import DiffusionStylizer

        return DiffusionStylizer(resolved, template.style, device=None, threads=ctx.threads)

    warm_key = canonical_hash({"style": params["template"]["style"], "models": resolved.manifest(), "threads": ctx.threads})
    return resolved, ctx.warm("stylizer", warm_key, load)


def _read_base_frame(base_dir: Path, frame: int, sha256: str) -> bytes:
    """The base version's PNG of ``frame``, checked against the sha256 its manifest records."""
    import hashlib

    from greybox.errors import InputError

    path = Path(base_dir) / frame_png_path(frame)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"the edit's base frame {path} cannot be read ({err.strerror or err}); the base version was "
                         "changed outside greybox: revert to another version, or render into another --out") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InputError(f"the edit's base frame {path} does not match its version's manifest (sha256); the base version "
                         "was changed outside greybox: revert to another version, or render into another --out")
    return data


def _edit_batch(params: dict, ctx, template, todo: list[int]) -> dict:
    """An edit's stylisation task (:mod:`stylize.object_edits`): the base version's frames with the
    edited objects regenerated. A frame that does not show them is the base's PNG, byte for byte."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from scenes.edit_targets import edit_targets
    from scenes.scene_data import LAYOUT_JSON
    from scenes.style_regions import scene_objects
    from stylize.object_edits import edit_frames

    # 1. Inputs: the base frames (checked), the edited objects in this scene
    edit = params["edit"]
    mode = template.style.consistency.mode
    sequence = [int(f) for f in params.get("sequence") or todo]
    frames = sequence if mode != "per_frame" else todo  # a sequence mode's frames build on earlier ones
    data = {f: _read_base_frame(edit["base_dir"], f, edit["base_frames"][str(f)]) for f in frames}
    base = {}
    for f, raw in data.items():
        with Image.open(io.BytesIO(raw)) as image:
            base[f] = np.asarray(image.convert("RGB"))
    layout = json.loads((Path(ctx.view) / LAYOUT_JSON).read_text(encoding="utf-8"))
    targets = edit_targets(edit["targets"], scene_objects(layout))
    # a brand-colour-only edit recolours the base's pixels: no model to load
    resolved, instance = (_stylizer_for(params, ctx, template, len(frames)) if edit.get("regenerate", True)
                          else (None, None))

    # 2. Regenerate, then one unit per missing frame
    result = edit_frames(template, frames, Path(ctx.view), base, targets, stylizer=params["stylizer"], resolved=resolved,
                         stylizer_instance=instance, threads=ctx.threads, reference_files=params.get("reference_files"),
                         regenerate=edit.get("regenerate", True))
    meta = {"stylizer": params["stylizer"]}
    if params["stylizer"] == "diffusion":
        meta.update(_library_versions())
    from greybox.atomic_files import encode_png

    for frame in todo:
        unit = str(frame)
        staging = ctx.staging(unit)
        regenerated = frame in result.regenerated
        out = staging / frame_png_path(frame)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(encode_png(result.images[frame]) if regenerated else data[frame])
        steps = int(result.denoising_steps_by_frame.get(frame, 0))
        frame_meta = {**meta, "frame": frame, "consistency": {"mode": mode, "keyframes": list(result.keyframes)},
                      "generated": regenerated, "denoising_steps": steps, "denoising_steps_frame": steps,
                      "edit": {"base_sha256": edit["base_frames"][str(frame)], "regenerated": regenerated,
                               "pixels": int(result.pixels.get(frame, 0))}}
        if frame in result.directed:
            frame_meta["directed"] = result.directed[frame]
        ctx.commit(unit, staging, frame_meta)
    seconds = result.seconds / max(len(frames), 1)
    return {**meta, "frame_seconds": {str(f): round(seconds, 4) for f in todo}}


def stylize_batch(params: dict, ctx) -> dict:
    """Stylise this task's frames from the shot's control images and passes (the view ``ctx.view``).

    The task's units are the frames missing from the store; a sequence mode computes what they
    read too (:func:`sequence_to_run`) and commits only the missing ones."""
    # 1. Check inputs
    template = template_from_params(params)
    todo = [int(unit) for unit, _ in ctx.units]
    if not todo:
        return {}
    if params.get("edit"):
        return _edit_batch(params, ctx, template, todo)
    from stylize.stylize_stage import stylize_frames

    mode = template.style.consistency.mode
    keys = params.get("sequence_keys") or {}
    anchored = params["stylizer"] == "diffusion" and template.style.consistency.anchor_attention
    frames, continue_from = sequence_to_run(mode, todo, [int(f) for f in params.get("sequence") or todo], anchored,
                                            lambda f: _stored_frame(ctx.store, keys.get(str(f)), f))

    stylizer = params["stylizer"]
    if stylizer == "npr":
        _check_memory(ctx, "stylize", template, params)
    resolved = instance = None
    if stylizer == "diffusion":
        # One warm pipeline per worker, for this style and these models.
        from scenes.template_loading import canonical_hash
        from stylize.model_resolution import resolve_models

        overrides = params.get("controlnet_overrides") or None
        resolved = resolve_models(template.style, model_override=params.get("model_override"), controlnet_overrides=overrides)
        _check_diffusion_memory(ctx, template, params, resolved, len(frames))

        def load():
            from stylize.diffusion_stylizer import DiffusionStylizer

            return DiffusionStylizer(resolved, template.style, device=None, threads=ctx.threads)

        warm_key = canonical_hash({"style": params["template"]["style"], "models": resolved.manifest(), "threads": ctx.threads})
        instance = ctx.warm("stylizer", warm_key, load)

    # 2. Stylise into staging in the template's consistency mode (per_frame: this batch alone;
    #    flow_warp and keyframes: the shot's sequence, planned as one task), then one store unit per
    #    missing frame, each with the denoising steps spent on it.
    batch_dir = ctx.store.new_staging(f"batch-{ctx.units[0][1]}")
    meta = {"stylizer": stylizer}
    if stylizer == "diffusion":
        meta.update(_library_versions())
    try:
        result = stylize_frames(template, frames, ctx.view, batch_dir, stylizer=stylizer, resolved=resolved,
                                stylizer_instance=instance, threads=ctx.threads, continue_from=continue_from,
                                reference_files=params.get("reference_files"))
        consistency = {"mode": result.mode, "keyframes": list(result.keyframes)}
        warp_errors = {}
        if result.mode != "per_frame":  # E_warp of the sequence, from the exact passes, where cheap
            from render_farm.frame_figures import sequence_warp_error

            width, height = template.render.resolution
            figure_frames = _figure_frames(ctx.store, keys, [int(f) for f in params.get("sequence") or todo],
                                           frames, continue_from, batch_dir / "frames")
            warp_errors = sequence_warp_error(ctx.view, batch_dir / "frames", figure_frames, width, height)
        for frame in todo:
            unit = str(frame)
            staging = ctx.staging(unit)
            _move_into(batch_dir, [frame_png_path(frame)], staging)
            frame_meta = {
                **meta, "frame": frame, "consistency": consistency,
                "generated": frame in result.generated_frames,
                # the steps spent on this frame, whichever frames this run computed
                "denoising_steps": int(result.denoising_steps_by_frame.get(frame, 0)),
                "denoising_steps_frame": int(result.denoising_steps_by_frame.get(frame, 0)),
            }
            if frame in warp_errors:
                frame_meta["warp_error"] = warp_errors[frame]
            if frame in result.directed:  # the regions and reference images applied to it
                frame_meta["directed"] = result.directed[frame]
            if result.brands:  # the brand colours' figures' sums (render_farm/job_outputs.py pools them)
                frame_meta["brand_colors"] = {
                    "entries": [b.record() for b in result.brands],
                    "sums": {str(k): v for k, v in result.brand_sums.get(frame, {}).items() if v is not None}}
            ctx.commit(unit, staging, frame_meta)
    finally:
        shutil.rmtree(batch_dir, ignore_errors=True)
    # Timings go back to the scheduler's run log, never into a store record (they differ per run).
    return {**meta, "frame_seconds": {str(f): round(s, 4) for f, s in result.frame_seconds.items()}}


def assemble_shot(params: dict, ctx) -> None:
    """The video (``video.mp4``, or ``video.mov`` for ProRes and PNG) and ``contact_sheet.png`` of the
    shot, from its stylised frames and control images."""
    from render_farm.job_outputs import VIDEO_FILES, write_contact_sheet, write_video

    unit = ctx.units[0][0]
    staging = ctx.staging(unit)
    frames = [int(f) for f in params["frames"]]
    codec = params.get("video_codec", "h264")
    write_video(ctx.view, frames, params["fps"], staging / VIDEO_FILES[codec], codec, params.get("video_quality"))
    write_contact_sheet(ctx.view, frames, params["controls"], staging / "contact_sheet.png")
    ctx.commit(unit, staging, {})


# -- looks: keyframes and the baked stylizer (render_farm/look_plan.py) ---------------------------

def _look_source(look_from: dict, store, view: Path):
    """The :class:`stylize.look_atlases.Look` a shot starts from (read from the store), or None."""
    import json

    from stylize.look_atlases import LOOK_JSON, read_look

    kind = (look_from or {}).get("kind")
    if not kind:
        return None
    if kind == "previous":
        look_id = json.loads((Path(look_from["view"]) / LOOK_JSON).read_text(encoding="utf-8"))["id"]
    else:
        look_id = look_from["id"]
    record, reason = store.load_record(look_id)
    if record is None:
        from greybox.errors import InputError

        raise InputError(f"look {look_id} (style.look.from) is not intact in the store {store.root}: {reason or 'missing'}")
    return read_look(store.unit_dir(look_id), expected_id=look_id)


def _read_generation(view: Path):
    """The generation a look task committed (linked into the shot's view): a :class:`stylize.look_atlases.Generation`."""
    import json

    import numpy as np
    from PIL import Image

    from stylize.look_atlases import GENERATION_JSON, Generation, generated_relpaths

    record = json.loads((Path(view) / GENERATION_JSON).read_text(encoding="utf-8"))
    events = []
    for f in record["generated_frames"]:
        image_rel, mask_rel = generated_relpaths(int(f))
        with Image.open(Path(view) / image_rel) as image, Image.open(Path(view) / mask_rel) as mask:
            events.append((int(f), np.asarray(image.convert("RGB")), np.asarray(mask.convert("L")) > 127))
    return Generation(events=events, keyframes=list(record["keyframes"]),
                      steps_by_frame={int(k): int(v) for k, v in record["denoising_steps_by_frame"].items()},
                      shows={int(k): list(v) for k, v in record["shows"].items()})


def _diffusion_instance(params: dict, template, ctx):
    """The warm diffusion stylizer of a stylize task (one per worker, for this style and these models)."""
    from scenes.template_loading import canonical_hash
    from stylize.model_resolution import resolve_models

    overrides = params.get("controlnet_overrides") or None
    resolved = resolve_models(template.style, model_override=params.get("model_override"), controlnet_overrides=overrides)

    def load():
        from stylize.diffusion_stylizer import DiffusionStylizer

        return DiffusionStylizer(resolved, template.style, device=None, threads=ctx.threads)

    warm_key = canonical_hash({"style": params["template"]["style"], "models": resolved.manifest(), "threads": ctx.threads})
    return ctx.warm("stylizer", warm_key, load)


def build_look(params: dict, ctx) -> dict:
    """The shot's look: its generation (unless the store has it: then replayed), every atlas, the
    look record (:mod:`render_farm.look_plan`, :mod:`stylize.look_atlases`)."""
    # 1. Check inputs: what is missing, the scene, the passes, the look it starts from
    template = template_from_params(params)
    todo = {unit: key for unit, key in ctx.units}
    if not todo:
        return {}
    import json

    import numpy as np

    from greybox.atomic_files import encode_png, write_bytes_atomic
    from scenes.scene_data import read_scene
    from stylize.consistency_modes import build_look as make_look
    from stylize.consistency_modes import effective_brands, sequence_scene
    from stylize.look_atlases import (
        GENERATION_JSON, LOOK_JSON, atlas_relpath, generated_relpaths, look_record, write_atlas,
    )
    from stylize.stylize_stage import _read_passes

    frames = [int(f) for f in params["keys"]["frames"]]
    kind = params["stylizer"]
    shot_passes = _read_passes(ctx.view, frames)
    shot_scene = sequence_scene(ctx.view, shot_passes, read_scene(ctx.view))
    source = _look_source(params.get("look_from"), ctx.store, ctx.view)
    brands = effective_brands(template.style, shot_scene, source)
    cached = None if "generation" in todo else _read_generation(ctx.view)

    # 2. The generation (or its replay) and the finished atlases
    instance = None
    if kind == "diffusion" and cached is None:
        _check_memory(ctx, "stylize", template, params)
        instance = _diffusion_instance(params, template, ctx)
    elif kind != "diffusion":
        _check_memory(ctx, "stylize", template, params)
    directions = None
    style = template.style
    if kind == "diffusion" and cached is None and (style.regions or style.reference_images):
        from stylize.stylize_stage import _frame_directions, _read_reference_images

        directions = _frame_directions(template, ctx.view, shot_passes)  # region prompts and reference images
        if style.reference_images:
            instance.set_reference_images(*_read_reference_images(style, params.get("reference_files")))
    generation, atlases = make_look(template, ctx.view, shot_passes, shot_scene, kind, instance, source=source, brands=brands,
                                    generation=cached, directions=directions)
    meta = {"stylizer": kind}
    if kind == "diffusion":
        meta.update(_library_versions())

    # 3. Commit: the generation, each atlas, the look (its id is its key)
    record = generation.record()
    if "generation" in todo:
        staging = ctx.staging("generation")
        write_bytes_atomic(staging / GENERATION_JSON, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        for f, image, mask in generation.events:
            image_rel, mask_rel = generated_relpaths(f)
            write_bytes_atomic(staging / image_rel, encode_png(np.ascontiguousarray(image)))
            write_bytes_atomic(staging / mask_rel, encode_png(np.where(mask, 255, 0).astype(np.uint8)))
        ctx.commit("generation", staging, {**meta, **record})
    files: dict[str, str] = {}
    for name, atlas in atlases.items():
        unit = f"atlas:{name}"
        if unit in todo:
            staging = ctx.staging(unit)
            files[name] = write_atlas(staging / atlas_relpath(name), atlas)
            ctx.commit(unit, staging, {"name": name, "instance_id": atlas.instance_id, "brand": atlas.brand, **atlas.stats})
    if "look" in todo:
        from greybox.atomic_files import sha256_file

        staging = ctx.staging("look")
        for name in atlases:  # the look unit holds its atlases (links to the atlas units' files): one folder per look
            rel = atlas_relpath(name)
            src = ctx.store.unit_dir(ctx.records[f"atlas:{name}"]["key"]) / rel if f"atlas:{name}" in ctx.records else ctx.view / rel
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, staging / rel)
            except OSError:
                shutil.copyfile(src, staging / rel)
            files.setdefault(name, sha256_file(staging / rel))
        # only the source's id: the look unit is shared by every request with this key (how this job named
        # its source, a folder, an id or 'previous', goes into its own manifest)
        source_entry = None if source is None else {"id": source.id}
        summary = {"keyframes": record["keyframes"], "generated_frames": record["generated_frames"],
                   "denoising_steps": record["denoising_steps"]}
        look = look_record(ctx.key("look"), atlases, files, generation=summary, source=source_entry)
        write_bytes_atomic(staging / LOOK_JSON, (json.dumps(look, indent=1, sort_keys=True) + "\n").encode())
        ctx.commit("look", staging, {"look": look})
    return {**meta, "replayed": cached is not None}


def gather_frames(params: dict, ctx) -> dict:
    """The frames of a look shot, gathered from its atlases (the look task's units, linked into the
    view), with the generated pixels of the frames that ran the generator and the brand colours;
    E_warp and brand figures recorded per frame."""
    # 1. Check inputs
    started = time.perf_counter()
    template = template_from_params(params)
    todo = sorted(int(unit) for unit, _ in ctx.units)
    if not todo:
        return {}
    import numpy as np

    from greybox.atomic_files import write_png_atomic
    from scenes.scene_data import read_scene
    from stylize.brand_colours import BrandColour, frame_figure_sums, resolve_brand_colours
    from stylize.look_atlases import atlas_relpath, frame_from_look, read_atlas
    from stylize.stylize_stage import _read_passes

    sequence = [int(f) for f in params["sequence"]]
    generation = _read_generation(ctx.view)
    shot_scene = read_scene(ctx.view)
    atlases: dict = {}

    def atlas(name):
        if name not in atlases:
            atlases[name] = read_atlas(ctx.view / atlas_relpath(name))
        return atlases[name]

    # the brand colours the look gave its objects: the style's entries (for their figures), and
    # inherited ones per object
    brands = resolve_brand_colours(template.style, shot_scene)
    named = {i for b in brands for i in b.instance_ids}
    for f in todo:
        for name in generation.shows.get(f, []):
            a = atlas(name)
            if a.brand and a.instance_id not in named and a.instance_id:
                brands.append(BrandColour(name, a.brand, [a.instance_id]))
                named.add(a.instance_id)
    from stylize.look_atlases import attach_fits  # each target's lightness fit, as its atlas recorded it

    names = {int(o.instance_id): o.name for o in shot_scene.objects}
    attach_fits(brands, {names[i]: atlas(names[i]) for b in brands for i in b.instance_ids
                         if i in names and (ctx.view / atlas_relpath(names[i])).is_file()})
    events = {f: (image, mask) for f, image, mask in generation.events}

    # 2. Each frame
    batch_dir = ctx.store.new_staging(f"gather-{ctx.units[0][1]}")
    mode = "baked" if params["stylizer"] == "baked" else "keyframes"
    consistency = {"mode": mode, "keyframes": list(generation.keyframes)}
    try:
        sums: dict[int, dict] = {}
        for p in _read_passes(ctx.view, todo):
            shown = [atlas(n) for n in generation.shows.get(p.frame, [])]
            textures = {a.instance_id: a.colour for a in shown}
            plain = {a.instance_id: (a.unbranded if a.unbranded is not None else a.colour) for a in shown}
            image, before = frame_from_look(p, shot_scene.camera, textures, brands, events.get(p.frame), plain)
            write_png_atomic(batch_dir / frame_png_path(p.frame), np.ascontiguousarray(image))
            sums[p.frame] = {str(k): s for k, b in enumerate(brands)
                             if (s := frame_figure_sums(image, p.instance_id, b, before)) is not None}
        # E_warp of the frames against the one before and the sequence's first (stored ones read from the view)
        figure = sorted(set(todo) | {f - 1 for f in todo if f - 1 in sequence} | {sequence[0]})
        for f in figure:
            if f not in todo:
                rel = frame_png_path(f)
                (batch_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ctx.view / rel, batch_dir / rel)
        from render_farm.frame_figures import sequence_warp_error

        width, height = template.render.resolution
        warp = sequence_warp_error(ctx.view, batch_dir / "frames", figure, width, height)
        previous = dict(zip(figure[1:], figure[:-1]))
        for frame in todo:
            unit = str(frame)
            staging = ctx.staging(unit)
            _move_into(batch_dir, [frame_png_path(frame)], staging)
            steps = int(generation.steps_by_frame.get(frame, 0))
            frame_meta = {"stylizer": params["stylizer"], "frame": frame, "consistency": consistency,
                          "generated": frame in generation.generated_frames, "denoising_steps": steps,
                          "denoising_steps_frame": steps}
            entry = dict(warp.get(frame) or {})
            if entry and previous.get(frame) != frame - 1:
                entry.pop("short_mae", None)
                entry.pop("short_valid", None)
            if entry:
                frame_meta["warp_error"] = entry
            if brands:
                frame_meta["brand_colors"] = {"entries": [b.record() for b in brands], "sums": sums[frame]}
            ctx.commit(unit, staging, frame_meta)
    finally:
        shutil.rmtree(batch_dir, ignore_errors=True)
    seconds = (time.perf_counter() - started) / len(todo)
    return {"frame_seconds": {str(f): round(seconds, 4) for f in todo}}


def textured_scene(params: dict, ctx) -> dict:
    """``scene/textured.glb`` (and ``scene/textured.blend``): the recorded scene with each object's
    atlas of the shot's look as its base-colour texture (Blender's glTF exporter)."""
    template = template_from_params(params)
    if not ctx.units:
        return {}
    import numpy as np

    from passes.blender_compat import check_running_blender
    from scenes.scene_data import read_scene
    from stylize.look_atlases import ENVIRONMENT, read_look

    meta = {"bpy": check_running_blender(params.get("blender"))}
    ctx.release_warm("passes")  # Blender's data is replaced
    shot_scene = read_scene(ctx.view)
    look = read_look(ctx.view)
    textures = {name: np.clip(np.rint(a.colour * 255.0), 0, 255).astype(np.uint8)
                for name, a in look.atlases.items() if name != ENVIRONMENT}
    from passes.blender_scene import export_textured_scene

    staging = ctx.staging("textured")
    export_textured_scene(shot_scene, textures, staging / "scene" / "textured.glb",
                          staging / "scene" / "textured.blend" if params.get("save_blend") or template.passes.save_blend else None)
    ctx.commit("textured", staging, {**meta, "look": look.id})
    return meta
