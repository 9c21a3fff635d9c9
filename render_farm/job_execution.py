"""Run a whole job: check inputs, resolve models, lock the folder, run the graph, write manifests.

:func:`run_job` is what ``greybox passes`` and ``greybox render`` call. Order matters:

1. every template, option and frame selection is validated, every shot's scene is built
   (:func:`passes.scene_stage.check_scenes_build`, which also checks what the style's regions and
   reference images name against it), and the reference images are confined, read and hashed
   (InputError, exit 2, nothing written);
2. model weights are resolved (WeightsUnavailableError, exit 3, before anything renders);
3. the executor is made (a Ray cluster joined: exit 2 within a bounded time, folder untouched, when
   it cannot be), then the output folder is locked, and compared with what it holds (different
   inputs: exit 2 and what differs, unless ``force``);
4. the graph runs on the chosen executor; finished units come from the store;
5. each shot's ``manifest.json`` is written from the store records (deterministic), and the run
   (timings, host) is appended to ``run_log.jsonl``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from greybox.confined_files import check_folders, folder, remove, remove_temporary_files
from greybox.confined_files import write_json as write_json_confined
from greybox.errors import InputError, JobFailedError, WeightsUnavailableError, write_error
from render_farm.job_graph import JobGraph
from render_farm.job_lock import JobLock
from render_farm.job_plan import build_graph, stylize_batches
from render_farm.job_request import (
    JOB_FILE, JobRequest, Shot, input_differences, job_record, read_job_record, resolve_shots, resume_differences,
    shots_from_record,
)
from render_farm.job_runner import JobResult, RunLog, RunPolicy, run_graph, run_header
from render_farm.task_store import TaskStore, default_store_root

GRAPH_FILE = "graph.json"
RUN_LOG = "run_log.jsonl"
VIEW_ENTRIES = ("passes", "control", "frames", "video.mp4", "contact_sheet.png", "manifest.json", "cameras.json",
                "video.mov", "review.html", "review_proxy.mp4", "comfyui", "scene", "look")
META_DIR = ".greybox"
# What greybox writes in DIR and in each shot's folder: each must be a real folder or file of DIR.
VIEW_FOLDERS = ("", "passes", "frames", "control", "control/depth", "control/normal", "control/seg", "control/lines",
                "comfyui", "comfyui/masks", "scene", "look", "look/atlases", "look/generated")
VIEW_FILES = ("manifest.json", "cameras.json", "video.mp4", "contact_sheet.png", "video.mov", "review.html",
              "review_proxy.mp4", "comfyui/workflow_api.json", "comfyui/README.txt",
              "scene/scene.npz", "scene/layout.json", "scene/scene.glb", "scene/scene.blend",
              "scene/textured.glb", "scene/textured.blend", "look/look.json", "look/generation.json")


@dataclass
class JobSummary:
    job_dir: Path
    shots: list[Shot]
    result: JobResult
    manifests: dict[str, Path] = field(default_factory=dict)
    review_pages: list[Path] = field(default_factory=list)
    comfyui_workflows: dict[str, Path] = field(default_factory=dict)
    version: dict | None = None  # the version this run made (render_farm.job_versions), None when it made none

    def to_json(self) -> dict:
        r = self.result
        return {
            "version": self.version,
            "out": str(self.job_dir), "shots": {s.name: str(s.view(self.job_dir)) for s in self.shots},
            "tasks": {"done": r.done, "ran": r.ran, "reused": r.cached, "failed": len(r.failed)},
            "units": {kind: dict(counts) for kind, counts in r.units.items()},
            "recomputed": r.recomputed, "manifests": {k: str(v) for k, v in self.manifests.items()},
            "review": [str(p) for p in self.review_pages],
            "comfyui": {k: str(v) for k, v in self.comfyui_workflows.items()},
            "seconds": round(r.seconds, 3),
        }


def default_workers(threads: int) -> int:
    return max(1, (os.cpu_count() or 2) // max(1, threads))


def make_executor(farm: str, workers: int | None, threads: int, *, include_dashboard: bool | None = None):
    """``local`` (default), ``ray`` (the cluster in RAY_ADDRESS, else a private Ray on 127.0.0.1),
    ``ray://HOST:PORT`` or ``HOST:PORT`` (a cluster: see render_farm/ray_connection.py)."""
    from render_farm.ray_connection import parse_farm

    target = parse_farm(farm)
    if target.kind == "local":
        from render_farm.local_executor import LocalExecutor

        if os.environ.get("RAY_ADDRESS", "").strip():
            print("greybox: note: RAY_ADDRESS is set, but --farm is local; pass --farm ray to run on that cluster",
                  file=sys.stderr)
        return LocalExecutor(workers or default_workers(threads))
    from render_farm.ray_executor import RayExecutor, check_ray_installed

    check_ray_installed(farm)
    try:
        return RayExecutor(target, workers=workers or default_workers(threads), threads=threads,
                           include_dashboard=include_dashboard)
    except ConnectionError as err:
        raise InputError(f"--farm {farm}: {err}") from None


@contextmanager
def _shut_down_on_error(executor):
    """Shut ``executor`` down (when given) if the block raises; the run's own ``finally`` does it otherwise."""
    try:
        yield
    except BaseException:
        if executor is not None:
            try:
                executor.shutdown()
            except Exception:  # noqa: BLE001 - shutting down must not hide the real error
                pass
        raise


def _check_folder(job_dir: Path, record: dict | None, request: JobRequest, shots: list[Shot], stages: list[str],
                  force: bool, resume: bool, blender: str | None = None) -> list[str]:
    """Raise InputError when ``job_dir`` holds something else; return the differences (for --force).
    ``blender``: the release this job renders the passes with (a folder rendered by another one differs)."""
    if record is None:
        if job_dir.exists() and any(p.name != ".greybox" for p in job_dir.iterdir()) and not force:
            raise InputError(f"{job_dir} is not empty and holds no greybox job ({JOB_FILE} missing); "
                             "choose an empty or new --out, or pass --force to write into it anyway")
        return []
    if resume:
        if blender is not None and record.get("blender") not in (None, blender):
            raise InputError(f"--resume: {job_dir} was rendered with Blender {record['blender']}, this Python's bpy is "
                             f"{blender}; resume from a Python with bpy=={record['blender']}, or rerun without --resume "
                             "and with --force to render it again with this one")
        return []
    diffs = input_differences(record, request, shots, stages, blender)
    if diffs and not force:
        shown = "\n  ".join(diffs)
        raise InputError(f"{job_dir} holds a render of different inputs:\n  {shown}\n"
                         "pass --force to replace it (its files stay in the store), or choose another --out")
    return diffs


def _clear_views(job_dir: Path, record: dict) -> None:
    """--force over different inputs: remove the old views (their bytes stay in the store). Only
    inside ``job_dir``: the record's folders are checked names, and no link is followed."""
    for s in record.get("shots", []):
        view = s.get("folder") or ""
        for entry in VIEW_ENTRIES:
            remove(job_dir, f"{view}/{entry}" if view else entry)
        if view:
            with folder(job_dir) as dir_fd:
                try:
                    os.rmdir(view, dir_fd=dir_fd)
                except OSError:
                    pass  # not empty (the user's own files) or gone


def _view_paths(folders, entries) -> list[str]:
    return [f"{v}/{e}".strip("/") for v in sorted(folders) for e in entries]


def _check_links(job_dir: Path, shots: list[Shot], record: dict | None) -> None:
    """Refuse (exit 2, naming it) a link or a file planted where greybox writes a folder of DIR, or a
    link where it writes a file, before the first byte is written."""
    if not job_dir.is_dir():
        return
    views = {s.folder for s in shots} | {s.get("folder") or "" for s in (record or {}).get("shots", [])}
    check_folders(job_dir, [META_DIR, f"{META_DIR}/logs", "versions", *_view_paths(views, VIEW_FOLDERS)],
                  [JOB_FILE, RUN_LOG, f"{META_DIR}/lock", f"{META_DIR}/{GRAPH_FILE}", "review.html", *_view_paths(views, VIEW_FILES)])


def _check_memory(shots: list[Shot], command: str, max_memory: int | None) -> None:
    """Refuse (exit 2, saying what would fit) a shot whose tasks are estimated over the budget."""
    from render_farm.task_memory import check_task_memory, machine_free_bytes

    free = None if max_memory is not None else machine_free_bytes()
    for shot in shots:
        render = shot.template.render
        where = f"{shot.name}: " if len(shots) > 1 else ""
        check_task_memory("passes", render.width, render.height, controls=shot.template.passes.control,
                          max_memory=max_memory, free=free, where=where, exr_channels=shot.template.passes.exr_channels)
        if command == "render":
            check_task_memory("stylize", render.width, render.height, stylizer=shot.template.style.stylizer,
                              max_memory=max_memory, free=free, where=where)
            check_task_memory("assemble", render.width, render.height, controls=shot.template.passes.control,
                              frames=len(shot.frames), max_memory=max_memory, free=free, where=where)


def _check_diffusion_memory(shot: Shot, resolved, max_memory: int | None, local: bool, where: str) -> None:
    """Refuse (exit 2, saying what would fit) a diffusion shot whose stylisation is estimated over
    the budget, from its resolved models' headers. A local job is checked for this machine's device
    (on a GPU only against --max-memory: the task measures the GPU); a farm's nodes are unknown
    here, so only what fits no device (the smaller, fp16 estimate over --max-memory) is refused."""
    from render_farm.task_memory import check_task_memory, diffusion_run
    from stylize.device_memory import likely_device_kind

    device = likely_device_kind() if local else "cuda"
    if device == "cuda" and max_memory is None:
        return
    run = diffusion_run(resolved, shot.template.style, device=device, sequence_frames=len(shot.frames))
    render = shot.template.render
    check_task_memory("stylize", render.width, render.height, stylizer="diffusion", diffusion=run,
                      max_memory=max_memory, where=where)


def _check_writable(path: Path, option: str) -> None:
    """Refuse (exit 2, naming the folder) an output folder or store that cannot be written: a
    read-only file system, or a folder this user may not write (root passes chmod, not ``ro``)."""
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if path != probe and not probe.is_dir():
        raise InputError(f"{option} {path}: {probe} is not a folder; choose a folder path")
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        reason = "read-only file system" if read_only else "permission denied"
        raise InputError(f"{option} {path}: cannot write in {probe} ({reason}); choose a folder you can write")


def _unit_records(graph: JobGraph, result: JobResult) -> dict[str, dict[str, dict]]:
    """shot -> stage -> {frame or unit: record}."""
    out: dict[str, dict[str, dict]] = {}
    for task_id, records in result.records.items():
        task = graph.tasks[task_id]
        by_stage = out.setdefault(task.shot, {}).setdefault(task.kind, {})
        for unit, record in records.items():
            by_stage[int(unit) if unit.isdigit() else unit] = record
    return out


def _check_reference_images(shots: list[Shot]) -> dict[str, list[dict]]:
    """{shot: its checked reference images} for the diffusion shots that have some
    (:func:`scenes.reference_images.reference_image_files`); one InputError listing every problem."""
    from scenes.reference_images import reference_image_files

    out, messages, problems = {}, [], []
    for shot in shots:
        style = shot.template.style
        if style.stylizer != "diffusion" or not style.reference_images:
            continue
        try:
            out[shot.name] = [r.to_json() for r in reference_image_files(shot.template, shot.source)]
        except InputError as err:
            messages.append(str(err))
            problems.extend(err.problems)
    if messages:
        raise InputError("\n".join(messages), problems)
    return out


def _write_manifests(job_dir: Path, shots: list[Shot], graph: JobGraph, result: JobResult, stylized: bool,
                     models: dict[str, dict | None], references: dict[str, list[dict]] | None = None,
                     edits: dict[str, dict] | None = None) -> dict[str, Path]:
    from render_farm.job_outputs import build_manifest, write_manifest

    records = _unit_records(graph, result)
    paths = {}
    for shot in shots:
        shot_records = records.get(shot.name, {})
        files: dict[str, str] = {}
        for kind in ("scene", "assemble"):
            for record in shot_records.get(kind, {}).values():
                files.update({rel: info["sha256"] for rel, info in record["outputs"].items()})
        for kind in ("textured",):
            for record in shot_records.get(kind, {}).values():
                files.update({rel: info["sha256"] for rel, info in record["outputs"].items()})
        manifest = build_manifest(
            shot={"name": shot.name, "source": shot.source, "template_hash": shot.template_hash,
                  "resolved": shot.resolved, "overrides": shot.overrides},
            frames=shot.frames, records=shot_records, shot_files=files, stylized=stylized,
            models=models.get(shot.name), references=(references or {}).get(shot.name),
        )
        if shot.name in (edits or {}):
            from render_farm.edit_plan import edit_manifest

            manifest["edit"] = edit_manifest(edits[shot.name], shot_records.get("stylize", {}), shot.frames)
        view = shot.view(job_dir)
        write_manifest(view, manifest)
        paths[shot.name] = view / "manifest.json"
        for entry in manifest.get("brand_colors", []):  # sRGB could not hold a brand colour's figures (stylize/brand_colours.py)
            if entry.get("warning"):
                print(f"greybox: warning ({shot.name}): {entry['warning']}", file=sys.stderr)
    return paths


def _write_comfyui_workflows(job_dir: Path, shots: list[Shot], request: JobRequest, models: dict[str, dict | None]) -> dict[str, Path]:
    """``comfyui/workflow_api.json`` and its README for every shot whose style is diffusion."""
    from render_farm.comfyui_workflow import write_comfyui_workflow

    out = {}
    for shot in shots:
        style = shot.template.style
        if style.stylizer != "diffusion" or (request.command == "passes" and not style.controlnets):
            continue
        out[shot.name] = write_comfyui_workflow(shot.view(job_dir), shot=shot.name, template=shot.template,
                                                models=models.get(shot.name), frames=shot.frames)
    return out


def _write_review_pages(job_dir: Path, store: TaskStore) -> list[Path]:
    """The review pages at the job's end (a video proxy is encoded in the store's staging); a page
    that cannot be written is a note, never the job's failure."""
    from render_farm.review_page import write_review_pages

    scratch = store.new_staging("review")
    try:
        return write_review_pages(job_dir, scratch=scratch)
    except Exception as err:  # noqa: BLE001 - the page is a view of the outputs, which are complete without it
        print(f"greybox: note: the review page was not written ({type(err).__name__}: {err})", file=sys.stderr)
        return []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _record_version(job_dir: Path, shots: list[Shot], graph: JobGraph, result: JobResult, kind: str,
                    base: int | None = None) -> dict | None:
    """Keep the finished render as a new version when it changed a manifest (render_farm.job_versions)."""
    from render_farm.job_versions import latest_version, record_version

    frame_keys: dict[str, dict[str, str]] = {}
    for task_id, records in result.records.items():
        task = graph.tasks[task_id]
        if task.kind == "stylize":
            frame_keys.setdefault(task.shot, {}).update({unit: r["key"] for unit, r in records.items()})
    number = record_version(job_dir, {s.name: s.folder for s in shots}, kind=kind, units=result.units,
                            frame_keys=frame_keys, base=base)
    if number is None:  # the latest version again: what was recomputed puts back what changed in place
        from render_farm.job_versions import repair_version

        repair_version(job_dir, latest_version(job_dir))
    return latest_version(job_dir) if number is not None else None


def run_job(
    request: JobRequest | None,
    out: str | os.PathLike,
    *,
    farm: str = "local",
    workers: int | None = None,
    store: str | os.PathLike | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    executor=None,
    include_dashboard: bool | None = None,
    max_memory: int | None = None,
) -> JobSummary:
    """Run a ``passes`` or ``render`` job into ``out``; ``request`` None with ``resume`` reads ``job.json``.

    Raises InputError (2), WeightsUnavailableError (3), JobFailedError (1); KeyboardInterrupt
    propagates after the workers are stopped (the caller returns 130).
    """
    job_dir = Path(out).expanduser().absolute()
    # 1. Check inputs (nothing is written before this is through).
    if executor is None:
        from render_farm.ray_connection import parse_farm

        target = parse_farm(farm)  # a malformed --farm (or RAY_ADDRESS) fails here; joining the cluster comes in 3.
        if target.kind != "local":
            from render_farm.ray_executor import check_ray_installed

            check_ray_installed(farm)
    if job_dir.exists() and not job_dir.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder; choose a folder path")
    if resume:
        record = read_job_record(job_dir)
        if record is None:
            raise InputError(f"--resume: {job_dir} holds no job to resume ({JOB_FILE} missing); start it without --resume")
        recorded = JobRequest.from_json(record["request"])
        if request is not None and request.command != recorded.command and request.command == "passes":
            raise InputError(f"--resume: {job_dir} holds a {recorded.command} job; resume it with greybox {recorded.command}")
        if request is not None and request.templates:
            # The same command plus --resume: continue when its inputs are the ones the folder recorded.
            shots = resolve_shots(request)
            stages = ["passes"] + (["stylize"] if request.command == "render" else [])
            diffs = resume_differences(record, request, shots, stages)
            if diffs:
                shown = "\n  ".join(diffs)
                raise InputError(
                    f"--resume: {job_dir} holds a job of other inputs than this command's:\n  {shown}\n"
                    f"continue that job as recorded with `greybox {recorded.command} --resume --out {job_dir}`, or drop "
                    "--resume to run this one there (--force replaces the other)"
                )
        else:
            request = recorded if request is None or request.command == recorded.command else JobRequest(**{**recorded.to_json(), "command": request.command})
            shots = shots_from_record(record)
    else:
        if request is None:
            raise InputError("nothing to run: give TEMPLATE or --resume")
        shots = resolve_shots(request)
    stages = ["passes"] + (["stylize"] if request.command == "render" else [])
    from passes.blender_compat import installed_blender_version

    blender = installed_blender_version()  # the passes are keyed by it: no bpy, or an unsupported one, exits 2 here
    if request.command == "render":
        for shot in shots:  # a sequence mode needs consecutive frames: refuse before writing anything
            style = shot.template.style
            stylize_batches(style.consistency.mode, shot.frames, style.batch_size, shot.template.render.frame_start)
    from passes.scene_stage import check_scenes_build  # every shot's scene builds, before the first byte

    scene_files = check_scenes_build([(shot.name, shot.template, shot.resolved, shot.source) for shot in shots],
                                     asset_roots=request.asset_roots, folders={s.name: s.template_dir for s in shots})
    references = _check_reference_images(shots) if request.command == "render" else {}
    # Each task's memory: over --max-memory, or (local workers) over what this machine has free.
    if max_memory is not None or (executor is None and farm == "local"):
        _check_memory(shots, request.command, max_memory)
    store_root = Path(store).expanduser() if store else default_store_root()
    _check_writable(job_dir, "--out")
    _check_writable(store_root.absolute(), "--store")
    look_sources: dict = {}
    if request.command == "render":  # style.look.from: a look in the store, or the shot before (render_farm/look_plan.py)
        from render_farm.look_plan import resolve_look_sources

        look_sources = resolve_look_sources(shots, store_root)

    # 2. Resolve model weights before anything renders (exit 3 at once).
    models: dict[str, dict | None] = {}
    if request.command == "render":
        for shot in shots:
            if shot.template.style.stylizer == "diffusion":
                from stylize.model_resolution import resolve_models

                resolved = resolve_models(shot.template.style, model_override=request.model,
                                          controlnet_overrides=request.controlnets or None)
                models[shot.name] = resolved.manifest()
                if max_memory is not None or (executor is None and farm == "local"):  # its memory, before the first byte
                    _check_diffusion_memory(shot, resolved, max_memory, executor is None and farm == "local",
                                            f"{shot.name}: " if len(shots) > 1 else "")
                for warning in resolved.warnings:  # e.g. the union ControlNet runs one guidance window
                    print(f"greybox: note ({shot.name}): {warning}", file=sys.stderr)

    # 3. Lock the folder, compare with what it holds, record the request. A change of the direction
    #    keys only is an edit of the folder's latest version (render_farm.edit_plan).
    from render_farm.edit_plan import plan_edits

    existing = read_job_record(job_dir) if job_dir.is_dir() else None
    _check_folder(job_dir, existing, request, shots, stages, force, resume, blender)
    _check_links(job_dir, shots, existing)
    plan_edits(job_dir, shots, request.command, models)
    # The executor before the first write: a cluster that cannot be joined leaves the folder as it was.
    own_executor = executor is None
    if own_executor:
        executor = make_executor(farm, workers, request.threads, include_dashboard=include_dashboard)
    with _shut_down_on_error(executor if own_executor else None):
        try:
            job_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(err, job_dir) from None
    with _shut_down_on_error(executor if own_executor else None), JobLock(job_dir):
        existing = read_job_record(job_dir)
        diffs = _check_folder(job_dir, existing, request, shots, stages, force, resume, blender)
        _check_links(job_dir, shots, existing)
        edits = {}
        if request.command == "render":  # what the folder holds is kept whole before a run replaces any of it
            from render_farm.job_versions import adopt_current, remove_temporary_versions

            remove_temporary_versions(job_dir)
            adopt_current(job_dir, existing)
            edits = plan_edits(job_dir, shots, request.command, models)
        if diffs and existing is not None:
            _clear_views(job_dir, existing)
        # Temporary files of a run that died mid-write (the lock is ours: nobody else writes here).
        remove_temporary_files(job_dir, [META_DIR, *_view_paths({s.folder for s in shots}, VIEW_FOLDERS)])
        kept = set(existing.get("stages", [])) if existing is not None and not diffs else set()
        write_json_confined(job_dir, JOB_FILE, job_record(request, shots, sorted(kept | set(stages), key=["passes", "stylize"].index), blender))
        for rel in [f"{META_DIR}/logs", *sorted({s.folder for s in shots})]:
            with folder(job_dir, rel):  # every view a real folder of DIR before a task links into it
                pass
        task_store = TaskStore(store_root)
        task_store.clean_staging()

        # 4. The graph, on the executor.
        gpu = bool(getattr(executor, "has_gpu", False))
        graph = build_graph(
            shots, command=request.command, job_dir=job_dir, chunk_size=request.chunk_size, threads=request.threads,
            task_timeout_s=request.task_timeout_s, models=models, model_override=request.model,
            controlnet_overrides=request.controlnets, gpu=gpu, max_memory=max_memory, references=references,
            scene_files=scene_files, asset_roots=request.asset_roots,
            look_sources=look_sources,
            edits=edits,
        )
        meta = job_dir / META_DIR
        write_json_confined(job_dir, f"{META_DIR}/{GRAPH_FILE}", {"tasks": graph.summary()})
        run_log = RunLog(job_dir / RUN_LOG, root=job_dir)
        run_log.write({**run_header(executor.name), "store": str(task_store.root), "tasks": len(graph),
                       "executor_detail": executor.describe()})
        from render_farm.progress_display import ProgressDisplay

        policy = RunPolicy(retries=request.retries, max_failed_tasks=request.max_failed_tasks)
        status = "interrupted"
        try:
            if hasattr(executor, "start"):
                executor.start()
            with ProgressDisplay(graph, enabled=progress) as display:
                result = run_graph(graph, executor, task_store, policy=policy, run_log=run_log,
                                   log_dir=meta / "logs", on_event=display.on_event)
            status = "ok" if result.ok else "failed"
        finally:
            if own_executor:
                try:
                    executor.shutdown()
                except Exception:  # noqa: BLE001 - shutting down must not hide the real outcome
                    pass
            if status != "ok":
                run_log.write({"event": "run_end", "status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                run_log.close()

        # 5. Failures (with a review page of what there is), or the manifests, the ComfyUI workflows and the review pages.
        if not result.ok:
            _write_review_pages(job_dir, task_store)
            kinds = {f["kind"] for f in result.failed.values()}
            lines = [f"  {tid}: {f['reason']} ({f['kind']}, {f['attempts']} attempt(s))" for tid, f in result.failed.items()]
            tail = f"\n  {len(result.blocked)} task(s) not run because they depend on a failed one" if result.blocked else ""
            message = f"{len(result.failed)} task(s) failed:\n" + "\n".join(lines) + tail
            message += f"\nlogs: {meta / 'logs'}; `greybox status {job_dir}` lists every task; rerun with --resume"
            if "input" in kinds:
                raise InputError(message)
            if "weights" in kinds:
                raise WeightsUnavailableError(message)
            raise JobFailedError(message)
        # A passes run into a folder that also holds stylised frames keeps the full manifest.
        manifests, workflows = {}, {}
        if request.command == "render" or "stylize" not in kept:
            manifests = _write_manifests(job_dir, shots, graph, result, request.command == "render", models, references, edits)
            workflows = _write_comfyui_workflows(job_dir, shots, request, models)
        version = None
        if request.command == "render":
            kind = "force" if diffs else "edit" if edits else "render"
            base = next(iter(edits.values()))["base_version"] if edits else None
            version = _record_version(job_dir, shots, graph, result, kind, base)
        run_log.write({"event": "run_end", "status": "ok", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "seconds": round(result.seconds, 3), "ran": result.ran, "reused": result.cached, "units": result.units,
                       "recomputed": result.recomputed})
        run_log.close()
        pages = _write_review_pages(job_dir, task_store)
        return JobSummary(job_dir, shots, result, manifests, pages, workflows, version)
