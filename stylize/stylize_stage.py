"""The stylize stage: a job folder's passes and control images in, ``OUT/frames/NNNN.png`` out.

Reads (``JOB`` is the folder ``greybox passes`` wrote):
- ``JOB/control/<kind>/NNNN.png``: control images, exactly at ``render.resolution``;
- ``JOB/passes/NNNN.exr``: the metric passes (NPR, and the NPR draft used as an init image);
- ``JOB/cameras.json``: per frame, ``blender_matrix_world`` (NPR's camera rotation).

Writes ``OUT/frames/NNNN.png`` atomically and returns ``{frame: sha256}``. Only the ``per_frame``
consistency mode is run here; ``flow_warp`` and ``keyframes`` belong to the consistency stage.
Imports numpy at module level only; torch and diffusers load when the diffusion stylizer does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from greybox.atomic_files import write_png_atomic
from greybox.errors import InputError

from stylize.control_inputs import control_image_path, frame_file_name, load_control_image, load_control_images
from stylize.frame_seeds import frame_seed
from stylize.npr_stylizer import camera_rotation_from_matrix_world, stylize_npr

STYLIZERS = ("diffusion", "npr")


def batch_groups(frames: list[int], frame_start: int, batch_size: int) -> list[list[int]]:
    """Split sorted ``frames`` into batches with FIXED boundaries: frame f belongs to batch
    ``(f - frame_start) // batch_size`` whatever other frames are asked for, so a farm that
    splits a shot along these boundaries batches every frame with the same neighbours."""
    groups: dict[int, list[int]] = {}
    for f in frames:
        groups.setdefault((f - frame_start) // batch_size, []).append(f)
    return [groups[k] for k in sorted(groups)]


def stylize_frames(
    template,
    frames: list[int],
    job_dir: Path,
    out_dir: Path,
    *,
    stylizer: str | None = None,
    resolved=None,
    stylizer_instance=None,
    device=None,
    threads: int = 2,
) -> dict[int, str]:
    """Stylise ``frames`` of ``template`` from ``job_dir`` into ``out_dir/frames/NNNN.png``.

    ``stylizer`` (``diffusion`` or ``npr``) defaults to ``template.style.stylizer``. For diffusion,
    ``resolved`` (from ``resolve_models``) is resolved here when not given, and
    ``stylizer_instance`` (a loaded ``DiffusionStylizer``) is built here when not given, on
    ``device`` with ``threads`` CPU threads. ``style.init_image = 'npr_draft'`` runs img2img from
    the NPR render of the same frame with ``style.strength``. Returns ``{frame: sha256 of the PNG}``.
    Raises ``InputError`` (exit 2) for a bad request or missing inputs, before any work.
    """
    # 1. Check inputs.
    style = template.style
    kind = stylizer or style.stylizer
    if kind not in STYLIZERS:
        raise InputError(f"stylizer {kind!r} is not one of {', '.join(STYLIZERS)} (--stylizer / style.stylizer)")
    frames = sorted({int(f) for f in frames})
    render = template.render
    outside = [f for f in frames if f not in render.frames]
    if not frames:
        raise InputError("no frames to stylise: pass at least one frame")
    if outside:
        raise InputError(
            f"frame(s) {', '.join(map(str, outside))} are outside the template's range "
            f"render.frame_start..frame_end = {render.frame_start}..{render.frame_end}"
        )
    if kind == "diffusion" and style.consistency.mode != "per_frame":
        raise InputError(
            f"style.consistency.mode = {style.consistency.mode!r} is run by the consistency stage "
            "(stylize.consistency_modes.stylize_sequence), not by stylize_frames, which runs 'per_frame'; "
            "set style.consistency = \"per_frame\" or call that stage"
        )
    job_dir, out_dir = Path(job_dir), Path(out_dir)
    if not job_dir.is_dir():
        raise InputError(f"job folder {job_dir} does not exist; render the passes first (greybox passes)")
    width, height = render.width, render.height
    needs_npr = kind == "npr" or style.init_image == "npr_draft"
    use_lines = "lines" in template.passes.control

    if kind == "diffusion" and resolved is None and stylizer_instance is None:
        from stylize.model_resolution import resolve_models

        resolved = resolve_models(style)
    if stylizer_instance is not None:
        resolved = stylizer_instance.resolved
    control_kinds = (list(resolved.pass_names) if kind == "diffusion" else []) + (["lines"] if needs_npr and use_lines else [])
    _check_files_exist(job_dir, frames, control_kinds=control_kinds, needs_passes=needs_npr)
    # Fixed batch boundaries. Where a batch does not round like single frames (CUDA), also compute
    # the other frames of each touched batch whose inputs are here (their outputs are not
    # written), so a frame's pixels do not depend on which frames a task was given.
    compute = frames
    if kind == "diffusion" and style.batch_size > 1 and not _batch_invariant(stylizer_instance, device):
        touched = {(f - render.frame_start) // style.batch_size for f in frames}
        compute = [
            f for f in render.frames
            if (f - render.frame_start) // style.batch_size in touched
            and (f in frames or _inputs_present(job_dir, f, control_kinds, needs_npr))
        ]
    cameras = _read_cameras(job_dir, compute) if needs_npr else {}

    # 2. Load the diffusion models (once).
    if kind == "diffusion" and stylizer_instance is None:
        from stylize.diffusion_stylizer import DiffusionStylizer

        stylizer_instance = DiffusionStylizer(resolved, style, device=device, threads=threads)

    # 3. Stylise batch by batch, writing each frame atomically as soon as it exists.
    hashes: dict[int, str] = {}
    wanted = set(frames)
    for group in batch_groups(compute, render.frame_start, style.batch_size if kind == "diffusion" else 1):
        drafts = [_npr_frame(job_dir, f, cameras[f], style, use_lines) for f in group] if needs_npr else None
        if kind == "npr":
            images = drafts
        else:
            controls = [load_control_images(job_dir, f, resolved.pass_names, expected_size=(width, height)) for f in group]
            seeds = [frame_seed(template.style_seed, f, style.seed_mode) for f in group]
            init_images = drafts if style.init_image == "npr_draft" else None
            images = stylizer_instance.stylize(group, controls, init_images=init_images, seeds=seeds)
        for f, image in zip(group, images):
            if f not in wanted:
                continue
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise RuntimeError(f"frame {f}: the stylizer returned {image.dtype} {image.shape}, expected uint8 {(height, width, 3)}")
            hashes[f] = write_png_atomic(out_dir / "frames" / frame_file_name(f, "png"), image)
    return hashes


def _batch_invariant(stylizer_instance, device) -> bool:
    if stylizer_instance is not None:
        return bool(getattr(stylizer_instance, "batch_invariant", False))
    from stylize.diffusion_stylizer import choose_device_and_dtype

    return choose_device_and_dtype(device)[0].type == "cpu"


def _inputs_present(job_dir: Path, frame: int, control_kinds: list[str], needs_passes: bool) -> bool:
    try:
        _check_files_exist(job_dir, [frame], control_kinds=control_kinds, needs_passes=needs_passes)
    except InputError:
        return False
    return True


def _check_files_exist(job_dir: Path, frames: list[int], *, control_kinds: list[str], needs_passes: bool) -> None:
    missing = []
    for f in frames:
        missing += [control_image_path(job_dir, k, f) for k in control_kinds if not control_image_path(job_dir, k, f).is_file()]
        if needs_passes and not (job_dir / "passes" / frame_file_name(f, "exr")).is_file():
            missing.append(job_dir / "passes" / frame_file_name(f, "exr"))
    if needs_passes and not (job_dir / "cameras.json").is_file():
        missing.append(job_dir / "cameras.json")
    if missing:
        shown = ", ".join(str(p) for p in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise InputError(f"missing stylize inputs in {job_dir}: {shown}; render the passes first (greybox passes) for these frames")


def _read_cameras(job_dir: Path, frames: list[int]) -> dict[int, np.ndarray]:
    """``{frame: 3x3 camera-to-world rotation}`` from ``cameras.json``'s ``blender_matrix_world``."""
    path = job_dir / "cameras.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}; re-render the passes") from None
    records = data.get("frames", data) if isinstance(data, dict) else {}
    rotations = {}
    for f in frames:
        record = records.get(str(f)) if isinstance(records, dict) else None
        if not isinstance(record, dict) or "blender_matrix_world" not in record:
            raise InputError(f"{path} has no 'blender_matrix_world' for frame {f}; re-render the passes for it")
        rotations[f] = camera_rotation_from_matrix_world(record["blender_matrix_world"])
    return rotations


def _npr_frame(job_dir: Path, frame: int, rotation: np.ndarray, style, use_lines: bool) -> np.ndarray:
    from passes.pass_exr import read_passes_exr  # OpenEXR + numpy only

    passes = read_passes_exr(job_dir / "passes" / frame_file_name(frame, "exr"))
    lines = load_control_image(control_image_path(job_dir, "lines", frame)) if use_lines else None
    if lines is not None and lines.shape[:2] != (passes.height, passes.width):
        raise InputError(
            f"{control_image_path(job_dir, 'lines', frame)} is {lines.shape[1]}x{lines.shape[0]} but the passes are "
            f"{passes.width}x{passes.height}; re-render the passes"
        )
    return stylize_npr(passes, rotation, lines, style)
