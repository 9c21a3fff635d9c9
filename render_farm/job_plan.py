"""Turn a job's shots into a :class:`JobGraph` with store keys.

Per shot:

- ``scene``: the scene stage (``scene/scene.npz`` and ``scene/layout.json``: the ``scene`` unit;
  ``scene/scene.glb``: the ``glb`` unit; ``cameras.json`` for the selected frames: the ``cameras``
  unit; with ``passes.save_blend``, ``scene/scene.blend``: the ``blend`` unit);
- ``passes/AAAA-BBBB`` (after ``scene``): a contiguous chunk of frames (fixed boundaries counted
  from the template's ``frame_start``), one store unit per frame, rendered from the recorded
  scene; a worker loads it into Blender once and keeps it warm for the shot's next chunk
  (affinity = the scene unit's key);
- ``stylize/...`` (render only): per batch of ``style.batch_size`` frames for ``per_frame``; for
  ``flow_warp`` and ``keyframes`` one sequence task over the shot's frames (each frame builds on
  the ones before), after every passes chunk of the shot;
- ``assemble`` (render only): video and contact sheet once every frame is done.

Keys (:func:`render_farm.task_store.unit_key`): a unit's key hashes its stage's code
fingerprint, the part of the resolved template its stage reads (scene: everything but ``style``,
``passes``, ``name``, ``description`` and the ``render`` keys other than the resolution, frame
range and fps, plus the scene file's format version and the sha256 of every model file the scene
reads, with the Blender release when it reads any (its importers made the objects); passes:
everything but ``style``, ``name``, ``description`` and
``passes.save_blend``; stylisation: ``style``, ``seed`` and ``render``), the stage settings, the
frame, the greybox version and the keys of every unit it reads (cameras, glb and blend: the scene
unit; passes: the scene unit; stylisation: the scene unit and the frame's passes, and in a
sequence mode the other frames it reads, :func:`stylize_unit_keys`: the same frame rendered in
another sequence is another unit). The glb, blend and passes units also hash the Blender version
(the driver's installed bpy, read without importing it: their bytes depend on it; scene.npz,
layout.json and cameras.json are numpy's and do not), and a worker whose Blender differs refuses
the task rather than commit under that key. So a changed prompt reruns stylisation only, a moved
object reruns the scene, the passes and everything after, and asking for ``scene.blend`` writes
only that.

Region prompts and reference images (``style.regions``, ``style.reference_images``,
``style.ip_adapter``: :data:`scenes.style_regions.DIRECTION_KEYS`) are keyed per frame, by what
touches it: the stylisation inputs leave them out, and a frame's key adds (as ``direction``) the
regions and reference images that touch it, in template order (a reference image by its sha256,
scale and targets, not its path; the resolved IP-Adapter when one touches). A region or masked
reference image touches the frames whose passes show one of its objects (the passes units record
the instance and class ids each frame shows); a whole-frame reference image touches every frame.
Frames of a batched diffusion call share their batch's; in ``flow_warp`` a frame's key chains the
one before it, so what touches a frame touches every later one; in ``keyframes`` every frame takes
what touches any frame of the sequence (the atlases are shared). These keys need the passes'
records, so the scheduler computes them when the task's dependencies are done
(:attr:`render_farm.job_graph.Task.keys_from`: :func:`stylize_keys`, and :func:`assemble_keys`
after them); they depend only on the request and the upstream units' contents, never on what else
the store holds. A frame no region or reference image touches has the key it would have without
any, so adding, changing or removing one reruns only the frames it touches (and the assembly).
"""

from __future__ import annotations

from pathlib import Path

from greybox.errors import InputError
from greybox.frame_files import frame_name
from greybox.frame_ranges import chunk_frames, format_frames
from render_farm.job_graph import JobGraph, Task
from render_farm.job_request import Shot
from render_farm.task_store import unit_key
from scenes.template_loading import canonical_hash

PASSES_FN = "render_farm.stage_tasks:passes_chunk"
SCENE_FN = "render_farm.stage_tasks:scene"
SCENE_RENDER_KEYS = ("resolution", "frame_start", "frame_end", "fps")
STYLIZE_FN = "render_farm.stage_tasks:stylize_batch"
ASSEMBLE_FN = "render_farm.stage_tasks:assemble_shot"
STYLIZE_KEYS_FN = "render_farm.job_plan:stylize_keys"
ASSEMBLE_KEYS_FN = "render_farm.job_plan:assemble_keys"
EDIT_KEYS_FN = "render_farm.edit_plan:edit_keys"


VIDEO_KEYS = ("video_codec", "video_quality")  # render keys only the assembly reads


def _render_without_video(render: dict) -> dict:
    return {k: v for k, v in render.items() if k not in VIDEO_KEYS}


def scene_inputs(resolved: dict) -> dict:
    """The part of a resolved template the scene stage reads."""
    out = {k: v for k, v in resolved.items() if k not in ("style", "passes", "name", "description", "render")}
    out["render"] = {k: resolved["render"][k] for k in SCENE_RENDER_KEYS}
    return out


def passes_inputs(resolved: dict) -> dict:
    """The part of a resolved template the passes depend on, besides the scene unit (another video
    codec reruns only the assembly; asking for scene.blend reruns nothing)."""
    inputs = {k: v for k, v in resolved.items() if k not in ("style", "name", "description")}
    if "render" in inputs:
        inputs["render"] = _render_without_video(inputs["render"])
    inputs["passes"] = {k: v for k, v in resolved["passes"].items() if k != "save_blend"}
    return inputs


def stylize_inputs(resolved: dict) -> dict:
    """The part of a resolved template stylisation depends on (besides its upstream passes); the
    direction keys (regions, reference images, IP-Adapter) are keyed per frame (module docstring)."""
    from scenes.style_regions import DIRECTION_KEYS

    style = {k: v for k, v in resolved["style"].items() if k not in DIRECTION_KEYS}
    return {"style": style, "seed": resolved["seed"], "render": _render_without_video(resolved["render"])}


def directed(style) -> bool:
    """Whether a style's stylisation keys depend on what each frame shows (diffusion with regions or reference images)."""
    return style.stylizer == "diffusion" and bool(style.regions or style.reference_images)


def _direction_entries(resolved: dict, references: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """What keys each region and reference image: the region's resolved entry; a reference image's
    bytes (sha256), scale and targets (its path is not keyed: a renamed file reruns nothing)."""
    style = resolved["style"]
    regions = [dict(r) for r in style.get("regions", [])]
    refs = []
    for i, r in enumerate(style.get("reference_images", [])):
        refs.append({"sha256": (references or [{}] * (i + 1))[i].get("sha256"), "scale": r["scale"],
                     "objects": r.get("objects", []), "classes": r.get("classes", [])})
    return regions, refs


_LAYOUTS: dict[str, list] = {}


def _scene_objects(scene_record: dict, store, view: str) -> list:
    """The (name, instance id, class id) table of a scene unit's layout.json (cached per key)."""
    import json

    from scenes.scene_data import LAYOUT_JSON
    from scenes.style_regions import scene_objects

    key = scene_record["key"]
    if key not in _LAYOUTS:
        path = (store.unit_dir(key) if store is not None else Path(view)) / LAYOUT_JSON
        _LAYOUTS.clear()
        _LAYOUTS[key] = scene_objects(json.loads(path.read_text(encoding="utf-8")))
    return _LAYOUTS[key]




def _shows_from_exr(record: dict, frame: int, store, view: str) -> dict:
    """What a frame shows, read from its passes EXR, for a passes unit whose record predates the
    ``shows`` field (a store written before region prompts): the instance and class ids, as
    :func:`passes.render_chunk.shown_ids` records them."""
    import numpy as np

    from greybox.frame_files import pass_exr_path
    from passes.pass_exr import read_passes_exr

    base = store.unit_dir(record["key"]) if store is not None else Path(view)
    passes = read_passes_exr(base / pass_exr_path(frame))
    if passes.instance_id is None or passes.class_id is None:
        raise RuntimeError(f"the passes of frame {frame} ({record.get('key')}) hold no instance or class ids")
    return {"instances": [int(i) for i in np.unique(passes.instance_id) if i > 0],
            "classes": [int(c) for c in np.unique(passes.class_id) if c > 0]}


def stylize_batches(mode: str, frames: list[int], batch_size: int, frame_start: int) -> list[list[int]]:
    """The frames of each stylisation task.

    ``per_frame``: fixed batches of ``batch_size`` from ``frame_start``, independent.
    ``flow_warp`` and ``keyframes``: the shot's frames as one sequence task. Frame t of
    ``flow_warp`` starts from t-1's output; ``keyframes`` chooses its keyframes by surface coverage
    from the rendered passes, and later frames reuse (and add to) the texture atlases the earlier
    ones filled, so the sequence cannot be split without changing its output. The frames must be
    consecutive.
    """
    if mode in ("flow_warp", "keyframes"):
        if frames != list(range(frames[0], frames[-1] + 1)):
            raise InputError(
                f"--frames: consistency mode {mode!r} needs consecutive frames (each builds on the ones before); "
                f"got {format_frames(frames)}. Pick one range, e.g. --frames {frames[0]}-{frames[-1]}"
            )
        return [list(frames)]
    return chunk_frames(frames, batch_size, frame_start)


def stylize_unit_keys(mode: str, frames: list[int], base: dict, passes_key: dict[int, str],
                      batch_of: dict[int, list[int] | None] | None = None, shared: list[str] = (),
                      extra: dict[int, dict] | None = None) -> dict[int, str]:
    """The store key of each stylised frame of one stylisation task, keyed by everything it reads.

    ``base``: the stylisation inputs every frame shares (template part, stage settings);
    ``passes_key``: frame -> its passes unit's key; ``shared``: the keys of units every frame
    reads (the shot's scene unit); ``extra``: frame -> inputs of that frame alone (the regions and
    reference images that touch it, :func:`stylize_keys`).

    - ``per_frame``: the frame's passes (and, for a batched diffusion call, the batch's frames,
      ``batch_of[frame]``, since batching changes the bytes).
    - ``flow_warp``: frame t reads frame t-1's output and passes, and through them every frame
      before it back to the sequence's first, which is generated alone: its key chains t-1's key.
      Only earlier frames count, so extending a sequence at its end reuses what it had.
    - ``keyframes``: the keyframes are chosen over the whole sequence's passes, the atlases sized
      over it, and every frame gathers from atlases that every earlier-produced frame wrote to:
      each frame reads the whole sequence, so its key names the sequence's frames and all their
      passes' keys (hashed together once).
      (Finer units, e.g. per-object atlases keyed by the keyframes they project, can replace the
      sequence upstream here once the atlases are store units.)
    """
    keys: dict[int, str] = {}
    extra = extra or {}
    if mode == "flow_warp":
        previous = None
        for f in frames:
            upstream = [*shared, passes_key[f]] + ([] if previous is None else [passes_key[previous], keys[previous]])
            keys[f] = unit_key("stylize", {**base, **extra.get(f, {}), "frame": f,
                                           "sequence": {"mode": mode, "previous": previous}}, upstream)
            previous = f
    elif mode == "keyframes":
        # Every frame's passes, hashed once (a frame's key stays small however long the shot).
        sequence = canonical_hash({"mode": mode, "frames": list(frames), "passes": [passes_key[f] for f in frames]})
        for f in frames:
            keys[f] = unit_key("stylize", {**base, **extra.get(f, {}), "frame": f, "sequence": {"mode": mode, "reads": sequence}},
                               [*shared, passes_key[f]])
    else:
        for f in frames:
            batch = (batch_of or {}).get(f)
            keys[f] = unit_key("stylize", {**base, **extra.get(f, {}), "frame": f, "batch": batch}, [*shared, passes_key[f]])
    return keys


def stylize_keys(spec: dict, upstream: dict[str, dict[str, dict]], store=None, view: str = "") -> list[tuple[str, str]]:
    """The units of a directed stylisation task once its dependencies are done: ``[(frame, key)]``.

    ``spec`` (the task's ``params["keys"]``): ``base`` (inputs every frame shares), ``shared`` and
    ``passes`` (upstream keys), ``frames``, ``batches`` ({frame: batch or None}), ``mode``,
    ``regions`` / ``references`` (what keys each entry), ``style`` (the regions and reference
    images as the template gives them), ``ip_adapter`` (the resolved adapter or None), and the
    ``scene_task`` and ``passes_tasks`` whose records say what each frame shows."""
    from scenes.style_regions import resolve_targets, touching
    from scenes.template_schema import StyleSpec

    # 1. What each frame shows, and what touches it
    objects = _scene_objects(upstream[spec["scene_task"]]["scene"], store, view)
    region_targets, reference_targets = resolve_targets(StyleSpec.model_validate(spec["style"]), objects)
    frames = [int(f) for f in spec["frames"]]
    touched: dict[int, tuple[set, set]] = {}
    for f in frames:
        record = upstream[spec["passes_tasks"][str(f)]][str(f)]
        shows = record.get("meta", {}).get("shows") or _shows_from_exr(record, f, store, view)
        found = touching(region_targets, reference_targets, shows["instances"], shows["classes"])
        touched[f] = (set(found["regions"]), set(found["reference_images"]))

    # 2. What a frame reads beyond itself: its batch (per_frame), the sequence (keyframes); in
    #    flow_warp the frame before it, whose key its own chains
    def union(group):
        return set().union(*(touched[g][0] for g in group)), set().union(*(touched[g][1] for g in group))

    mode = spec["mode"]
    batch_of = {f: spec["batches"].get(str(f)) for f in frames}
    extra = {}
    for f in frames:
        regions, references = union(frames if mode == "keyframes" else [f] if mode == "flow_warp" else batch_of[f] or [f])
        if regions or references:
            extra[f] = {"direction": {
                "regions": [spec["regions"][i] for i in sorted(regions)],
                "reference_images": [spec["references"][i] for i in sorted(references)],
                "ip_adapter": spec["ip_adapter"] if references else None,
            }}

    # 3. The keys: the region-free key plus the entries that touch the frame
    passes = {f: spec["passes"][str(f)] for f in frames}
    keys = stylize_unit_keys(mode, frames, spec["base"], passes, batch_of, shared=spec["shared"], extra=extra)
    return [(str(f), keys[f]) for f in frames]


def assemble_keys(spec: dict, upstream: dict[str, dict[str, dict]], store=None, view: str = "") -> list[tuple[str, str]]:
    """The assembly unit of a shot whose stylisation keys were computed at run time: keyed by them."""
    stylized = {int(unit): record["key"] for task in spec["stylize_tasks"] for unit, record in upstream[task].items()}
    keys = [stylized[f] for f in spec["frames"]] + [spec["passes"][str(f)] for f in spec["frames"]]
    return [("assembly", unit_key("assemble", spec["inputs"], keys))]


def build_graph(
    shots: list[Shot],
    *,
    command: str,
    job_dir: Path,
    chunk_size: int = 8,
    threads: int = 2,
    task_timeout_s: float | None = None,
    models: dict[str, dict | None] | None = None,
    model_override: str | None = None,
    controlnet_overrides: dict[str, str] | None = None,
    gpu: bool = False,
    max_memory: int | None = None,
    references: dict[str, list[dict]] | None = None,
    scene_files: dict[str, dict[str, str]] | None = None,
    asset_roots=(),
    look_sources: dict[str, dict | None] | None = None,
    edits: dict[str, dict] | None = None,
) -> JobGraph:
    """The job's task graph; ``models[shot.name]`` is ``ResolvedModels.manifest()`` for diffusion shots.
    ``max_memory`` (bytes) is each task's memory budget (None: what its machine has free).
    ``references[shot.name]``: the shot's checked reference images (``ReferenceFile.to_json()``).
    ``scene_files[shot.name]``: {label: sha256} of the model files the shot's scene reads (from the
    build check, :func:`passes.scene_stage.check_scenes_build`); ``asset_roots``: the ``--asset-root`` folders.
    ``look_sources[shot.name]``: where the shot's look starts from (:func:`render_farm.look_plan.resolve_look_sources`);
    shots in ``keyframes`` or ``baked`` get the look's tasks (:mod:`render_farm.look_plan`).
    ``edits[shot.name]``: the shot is an edit of the folder's latest version
    (:func:`render_farm.edit_plan.plan_edits`): its stylisation tasks regenerate only the edited
    objects, keyed by :func:`render_farm.edit_plan.edit_keys`."""
    from passes.blender_compat import installed_blender_version
    from scenes.scene_data import SCENE_FORMAT_VERSION

    graph = JobGraph()
    models = models or {}
    references = references or {}
    look_sources = look_sources or {}
    look_tasks: dict[str, str] = {}
    blender = installed_blender_version()  # the bpy distribution's version; bpy is not imported here
    for shot in shots:
        prefix = f"{shot.name}/" if shot.folder else ""
        view = str(shot.view(job_dir))
        resolved = shot.resolved
        p_inputs = passes_inputs(resolved)
        common = {"template": resolved, "template_hash": shot.template_hash, "source": shot.source, "max_memory": max_memory}
        template = shot.template
        start = template.render.frame_start

        # The scene stage: the scene itself (numpy), its glTF (Blender's exporter: keyed by the release),
        # cameras.json for the selected frames, the .blend when asked.
        files = dict((scene_files or {}).get(shot.name) or {})
        scene_key_inputs = {"template": scene_inputs(resolved), "format": SCENE_FORMAT_VERSION}
        if files:  # models read through Blender's importers: their bytes and the release that read them
            scene_key_inputs.update({"files": files, "blender": blender})
        scene_key = unit_key("scene", scene_key_inputs)
        scene_units = [("scene", scene_key), ("glb", unit_key("glb", {"blender": blender}, [scene_key])),
                       ("cameras", unit_key("cameras", {"frames": shot.frames}, [scene_key]))]
        if template.passes.save_blend:
            scene_units.append(("blend", unit_key("blend", {"blender": blender}, [scene_key])))
        scene_params = {**common, "frames": shot.frames, "export_blender": blender}
        if files:
            scene_params.update({"files": files, "import_blender": blender, "template_dir": shot.template_dir,
                                 "asset_roots": [str(r) for r in asset_roots]})
        scene_task = graph.add(Task(
            f"{prefix}scene", "scene", SCENE_FN, scene_params,
            units=tuple(scene_units), shot=shot.name, view=view, threads=1,
            timeout_s=task_timeout_s or 600.0,
        ))

        # Passes: contiguous chunks, one unit per frame.
        passes_key: dict[int, str] = {}
        chunk_of: dict[int, str] = {}
        for chunk in chunk_frames(shot.frames, chunk_size, start):
            units = []
            for f in chunk:
                passes_key[f] = unit_key("passes", {"template": p_inputs, "frame": f, "threads": threads, "blender": blender},
                                      [scene_key])
                units.append((str(f), passes_key[f]))
            tid = f"{prefix}passes/{frame_name(chunk[0])}-{frame_name(chunk[-1])}"
            graph.add(Task(
                tid, "passes", PASSES_FN, {**common, "scene_key": scene_key, "blender": blender}, deps=(scene_task.task_id,),
                units=tuple(units),
                shot=shot.name, view=view, frames=tuple(chunk), num_cpus=threads, threads=threads,
                timeout_s=task_timeout_s or (300.0 + 120.0 * len(chunk)), affinity=scene_key,
            ))
            for f in chunk:
                chunk_of[f] = tid
        if command != "render":
            continue

        # Stylisation: batches with cross-frame dependencies as the consistency mode needs. With regions
        # or reference images the keys wait for what the passes record (Task.keys_from).
        style = template.style
        s_inputs = stylize_inputs(resolved)
        shot_models = models.get(shot.name)
        ip_adapter = (shot_models or {}).get("ip_adapter")
        if shot_models:  # the IP-Adapter is keyed only where a reference image touches a frame
            shot_models = {k: v for k, v in shot_models.items() if k != "ip_adapter"}
        settings = {"threads": threads, "models": shot_models,
                    "model_override": model_override, "controlnet_overrides": controlnet_overrides or {}}
        from render_farm.look_plan import makes_look

        # the look, then frames gathered from it (render_farm/look_plan.py); an edit regenerates only its
        # objects' atlases from the base's frames instead (stylize/object_edits.py)
        if makes_look(style) and shot.name not in (edits or {}):
            _add_look_tasks(graph, shot, prefix, view, common, scene_key, scene_task.task_id, passes_key, chunk_of,
                            settings, look_sources.get(shot.name), look_tasks, threads=threads, gpu=gpu,
                            timeout=task_timeout_s, blender=blender, model_override=model_override,
                            controlnet_overrides=controlnet_overrides, references=references.get(shot.name),
                            ip_adapter=ip_adapter)
            continue
        plan = stylize_batches(style.consistency.mode, shot.frames, style.batch_size, start)
        is_directed = directed(style)
        regions, refs = _direction_entries(resolved, references.get(shot.name))
        batch_tasks: list[str] = []
        batch_keys: list[list[str]] = []
        mode = style.consistency.mode
        edit = (edits or {}).get(shot.name)
        for frames in plan:
            batch = frames if (style.stylizer == "diffusion" and style.batch_size > 1) else None
            params = {**common, "stylizer": style.stylizer, "model_override": model_override,
                      "controlnet_overrides": controlnet_overrides or {}, "sequence": list(frames),
                      "reference_files": references.get(shot.name) or []}
            keys_from = None
            if edit is not None:  # the base's frames, the edited objects regenerated (render_farm.edit_plan)
                keys_from = EDIT_KEYS_FN
                params["edit"] = {"base_dir": edit["base_dir"], "targets": edit["targets"], "regenerate": edit["regenerate"],
                                  "base_frames": {str(f): edit["base_frames"][str(f)] for f in frames}}
                params["keys"] = {
                    "base": {**s_inputs, "settings": settings,
                             "direction": {"regions": regions, "reference_images": refs, "ip_adapter": ip_adapter}},
                    "shared": [scene_key], "passes": {str(f): passes_key[f] for f in frames}, "frames": list(frames),
                    "mode": mode, "scene_task": scene_task.task_id, "passes_tasks": {str(f): chunk_of[f] for f in frames},
                    "edit": {"targets": edit["targets"], "entries": edit["entries"], "base_frames": params["edit"]["base_frames"],
                             "base_keys": {str(f): edit["base_keys"][str(f)] for f in frames if str(f) in edit["base_keys"]}},
                }
                units, keys = [], []
            elif is_directed:
                keys_from = STYLIZE_KEYS_FN
                params["keys"] = {
                    "base": {**s_inputs, "settings": settings}, "shared": [scene_key],
                    "passes": {str(f): passes_key[f] for f in frames}, "frames": list(frames),
                    "batches": {str(f): batch for f in frames}, "mode": mode,
                    "regions": regions, "references": refs, "ip_adapter": ip_adapter,
                    "style": {"regions": resolved["style"].get("regions", []),
                              "reference_images": resolved["style"].get("reference_images", [])},
                    "scene_task": scene_task.task_id, "passes_tasks": {str(f): chunk_of[f] for f in frames},
                }
                units, keys = [], []
            else:
                frame_keys = stylize_unit_keys(mode, frames, {**s_inputs, "settings": settings}, passes_key,
                                               {f: batch for f in frames}, shared=[scene_key])
                units = [(str(f), frame_keys[f]) for f in frames]
                keys = [frame_keys[f] for f in frames]
                params["sequence_keys"] = {str(f): k for f, k in frame_keys.items()}
            deps = list(dict.fromkeys([scene_task.task_id, *(chunk_of[f] for f in frames)]))
            name = frame_name(frames[0]) if len(frames) == 1 else f"{frame_name(frames[0])}-{frame_name(frames[-1])}"
            tid = f"{prefix}stylize/{name}"
            if tid in graph.tasks:
                tid = f"{prefix}stylize/{len(batch_tasks)}-{name}"
            graph.add(Task(
                tid, "stylize", STYLIZE_FN, params,
                deps=tuple(deps), units=tuple(units), shot=shot.name, view=view, frames=tuple(frames),
                num_cpus=threads, num_gpus=1.0 if (gpu and style.stylizer == "diffusion") else 0.0, threads=threads,
                timeout_s=task_timeout_s or (600.0 + 600.0 * len(frames)), keys_from=keys_from,
            ))
            batch_tasks.append(tid)
            batch_keys.append(keys)

        # Assembly once every frame is done.
        all_keys = [k for keys in batch_keys for k in keys] + [passes_key[f] for f in shot.frames]
        fps = template.render.fps
        controls = list(template.passes.control)
        video = {"video_codec": template.render.video_codec, "video_quality": template.render.video_quality}
        asm_inputs = {"fps": fps, "frames": shot.frames, "controls": controls, **video}
        asm_params = {"frames": shot.frames, "fps": fps, "controls": controls, **video}
        asm_units, asm_keys_from = (("assembly", unit_key("assemble", asm_inputs, all_keys)),), None
        if is_directed or edit is not None:
            asm_params["keys"] = {"inputs": asm_inputs, "frames": shot.frames, "stylize_tasks": batch_tasks,
                                  "passes": {str(f): passes_key[f] for f in shot.frames}}
            asm_units, asm_keys_from = (), ASSEMBLE_KEYS_FN
        graph.add(Task(
            f"{prefix}assemble", "assemble", ASSEMBLE_FN, asm_params,
            deps=tuple(batch_tasks), units=asm_units, shot=shot.name, view=view, threads=1,
            timeout_s=task_timeout_s or (300.0 + 2.0 * len(shot.frames)), keys_from=asm_keys_from,
        ))
    return graph


def _add_look_tasks(graph: JobGraph, shot: Shot, prefix: str, view: str, common: dict, scene_key: str, scene_task: str,
                    passes_key: dict[int, str], chunk_of: dict[int, str], settings: dict, source: dict | None,
                    look_tasks: dict[str, str], *, threads: int, gpu: bool, timeout: float | None, blender: str,
                    model_override, controlnet_overrides, references: list[dict] | None = None, ip_adapter=None) -> None:
    """A look shot's tasks: ``look``, ``stylize`` (gathered frames), ``textured``, ``assemble`` (keys at run time).
    Regions and reference images (diffusion) direct the look's generation: their entries (a reference
    image by its bytes' sha256) and the IP-Adapter go into its key."""
    from render_farm import look_plan

    template, resolved = shot.template, shot.resolved
    style = template.style
    frames = shot.frames
    passes_tasks = list(dict.fromkeys(chunk_of[f] for f in frames))
    look_from = {"kind": None}
    key_source = None
    deps = [scene_task, *passes_tasks]
    if source is not None and source["kind"] == "previous":
        prev_task = look_tasks[source["shot"]]
        deps.append(prev_task)
        key_source = {"task": prev_task}
        look_from = {"kind": "previous", "shot": source["shot"], "view": graph.tasks[prev_task].view}
    elif source is not None:
        key_source = {"id": source["id"], "record": source.get("record")}
        look_from = {"kind": source["kind"], "id": source["id"], "path": source.get("path")}
    diffusion = style.stylizer == "diffusion"
    look_task = graph.add(Task(
        f"{prefix}look", "look", look_plan.LOOK_FN,
        {**common, "stylizer": style.stylizer, "model_override": model_override,
         "controlnet_overrides": controlnet_overrides or {}, "look_from": look_from, "reference_files": references or [],
         "keys": {"scene_task": scene_task, "frames": frames, "passes": {str(f): passes_key[f] for f in frames},
                  "generation": {**look_plan.generation_inputs(resolved), "settings": settings,
                                 **({"direction": _direction_entries(resolved, references),
                                     "ip_adapter": ip_adapter if style.reference_images else None}
                                    if diffusion and directed(style) else {})},
                  "source": key_source,
                  "brands": [dict(b) for b in resolved["style"].get("brand_colors", [])]}},
        deps=tuple(dict.fromkeys(deps)), shot=shot.name, view=view, frames=tuple(frames), num_cpus=threads,
        num_gpus=1.0 if (gpu and diffusion) else 0.0, threads=threads,
        timeout_s=timeout or (600.0 + 600.0 * len(frames)), keys_from=look_plan.LOOK_KEYS_FN,
    ))
    look_tasks[shot.name] = look_task.task_id
    name = frame_name(frames[0]) if len(frames) == 1 else f"{frame_name(frames[0])}-{frame_name(frames[-1])}"
    gather = graph.add(Task(
        f"{prefix}stylize/{name}", "stylize", look_plan.GATHER_FN,
        {**common, "stylizer": style.stylizer, "sequence": list(frames),
         "keys": {"look_task": look_task.task_id, "frames": frames, "scene": scene_key,
                  "passes": {str(f): passes_key[f] for f in frames},
                  "base": {"resolution": list(template.render.resolution), "mode": style.consistency.mode,
                           "stylizer": style.stylizer}}},
        deps=(look_task.task_id,), shot=shot.name, view=view, frames=tuple(frames), num_cpus=threads, threads=threads,
        timeout_s=timeout or (300.0 + 60.0 * len(frames)), keys_from=look_plan.GATHER_KEYS_FN,
    ))
    textured_inputs = {"blender": blender, "blend": bool(template.passes.save_blend)}
    graph.add(Task(
        f"{prefix}textured", "textured", look_plan.TEXTURED_FN,
        {**common, "blender": blender, "save_blend": textured_inputs["blend"],
         "keys": {"look_task": look_task.task_id, "scene": scene_key, "inputs": textured_inputs}},
        deps=(look_task.task_id,), shot=shot.name, view=view, threads=1, timeout_s=timeout or 900.0,
        keys_from=look_plan.TEXTURED_KEYS_FN,
    ))
    fps = template.render.fps
    controls = list(template.passes.control)
    video = {"video_codec": template.render.video_codec, "video_quality": template.render.video_quality}
    inputs = {"fps": fps, "frames": frames, "controls": controls, **video}
    graph.add(Task(
        f"{prefix}assemble", "assemble", ASSEMBLE_FN,
        {"frames": frames, "fps": fps, "controls": controls, **video,
         "keys": {"inputs": inputs, "frames": frames, "stylize_tasks": [gather.task_id],
                  "passes": {str(f): passes_key[f] for f in frames}}},
        deps=(gather.task_id,), shot=shot.name, view=view, threads=1,
        timeout_s=timeout or (300.0 + 2.0 * len(frames)), keys_from=look_plan.ASSEMBLE_KEYS_FN,
    ))
