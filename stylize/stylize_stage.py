"""The stylize stage: a job folder's passes and control images in, ``OUT/frames/NNNN.png`` out.

Entry point: :func:`stylize_frames` (the farm's stylize task and the benchmarks call it). It runs
one consistency mode (``style.consistency.mode`` unless ``mode`` says otherwise):

- ``per_frame``: every frame alone, in batches with fixed boundaries (here). Diffusion runs the
  diffusers pipelines (:mod:`stylize.diffusion_stylizer`, SD1.5 and SDXL families), optionally
  img2img from the NPR draft (``style.init_image = 'npr_draft'``); or the NPR stylizer.
- ``flow_warp`` and ``keyframes``: the frames as one sequence, each building on earlier outputs
  (:mod:`stylize.consistency_modes`); diffusion there runs SD1.x models only.

Reads (``JOB`` is the folder ``greybox passes`` wrote):
- ``JOB/control/<kind>/NNNN.png``: control images, exactly at ``render.resolution``;
- ``JOB/passes/NNNN.exr``: the metric passes (NPR, the NPR draft, the sequence modes, E_warp);
- ``JOB/cameras.json``: per frame, ``blender_matrix_world`` (per_frame NPR's camera rotation);
- ``JOB/scene/scene.npz``: the scene the scene stage recorded, for the sequence modes (unless ``scene=``
  gives it); it is never rebuilt here;
- ``JOB/scene/layout.json`` and the instance and class passes, when the style has regions or
  reference images (diffusion): each frame's :class:`stylize.region_masks.FrameDirection`;
- the reference images (``reference_files``: checked, hashed files, as
  :func:`scenes.reference_images.reference_image_files` gives them; each is re-hashed on reading).

Writes ``OUT/frames/NNNN.png`` atomically and returns a :class:`StylizeResult`. Every input is
checked before the first frame is written. Imports numpy at module level only; torch and diffusers
load when the diffusion stylizer does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greybox.atomic_files import write_png_atomic
from greybox.errors import InputError
from greybox.frame_files import frame_png_path, pass_exr_path
from greybox.frame_ranges import chunk_frames
from scenes.template_schema import CONSISTENCY_MODES, STYLIZERS
from stylize.control_inputs import control_image_path, load_control_image, load_control_images
from stylize.frame_seeds import frame_seed
from stylize.npr_stylizer import camera_rotation_from_matrix_world, stylize_npr


@dataclass
class StylizeResult:
    """What a stylize run did. ``frame_hashes``: {frame: sha256 of its PNG}. ``denoising_steps``:
    UNet evaluations x batch elements (a CFG pair counts 2). ``generated_frames``: frames that ran
    the generator (all of them in per_frame)."""

    mode: str
    stylizer: str
    frame_hashes: dict[int, str]
    denoising_steps: int
    keyframes: list[int] = field(default_factory=list)
    generated_frames: list[int] = field(default_factory=list)
    seconds: float = 0.0
    warp_error: object | None = None  # stylize.warp_error.WarpErrorReport when asked for
    # per frame: denoising steps (as ``denoising_steps``), and seconds (the generator's time on the
    # frame plus an even share of the rest: reading passes, warping, gathering, projecting)
    denoising_steps_by_frame: dict[int, int] = field(default_factory=dict)
    frame_seconds: dict[int, float] = field(default_factory=dict)
    # per frame: the style.regions and style.reference_images applied to it (indices), when it has any
    directed: dict[int, dict] = field(default_factory=dict)
    # keyframes and baked: the shot's look ({name: stylize.look_atlases.StoredAtlas}) and its Generation
    atlases: dict | None = None
    generation: object | None = None
    # brand colours: the resolved entries, and per frame per entry the sums of its figures
    # (stylize.brand_colours.frame_figure_sums: after the correction, and before it)
    brands: list = field(default_factory=list)
    brand_sums: dict[int, dict[int, dict]] = field(default_factory=dict)

    def brand_figures(self) -> list[dict]:
        """Per brand colour: its entry and its figures over the frames (stylize.brand_colours.pooled_figures)."""
        from scenes.brand_targets import pooled_figures

        return [{**b.record(), **pooled_figures([self.brand_sums.get(f, {}).get(k) for f in sorted(self.frame_hashes)])}
                for k, b in enumerate(self.brands)]

    def manifest(self) -> dict:
        record = {
            "mode": self.mode,
            "stylizer": self.stylizer,
            "denoising_steps": self.denoising_steps,
            "denoising_steps_per_frame": self.denoising_steps / max(len(self.frame_hashes), 1),
            "keyframes": list(self.keyframes),
            "generated_frames": list(self.generated_frames),
        }
        if self.warp_error is not None:
            record["warp_error"] = self.warp_error.summary()
        if self.brands:
            record["brand_colors"] = self.brand_figures()
        return record


def unet_evaluations_per_frame(scheduler, num_inference_steps: int, *, strength: float = 1.0, guidance_scale: float = 1.0) -> int:
    """UNet evaluations one diffusers text-to-image (strength 1) or img2img call runs, x2 under CFG."""
    scheduler.set_timesteps(num_inference_steps)
    init = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init, 0)
    n = len(scheduler.timesteps[t_start * scheduler.order :])
    return n * (2 if guidance_scale > 1.0 else 1)


def stylize_frames(
    template,
    frames: list[int],
    job_dir: Path,
    out_dir: Path,
    *,
    mode: str | None = None,
    stylizer: str | None = None,
    resolved=None,
    stylizer_instance=None,
    scene=None,
    device=None,
    threads: int = 2,
    measure_warp_error: bool = False,
    min_generate_pixels: int | None = None,
    keyframe_lookahead: int = 24,
    atlas_max_size: int = 2048,
    continue_from: tuple[int, np.ndarray] | None = None,
    reference_files=None,
    look_source=None,
) -> StylizeResult:
    """Stylise ``frames`` of ``template`` from ``job_dir`` into ``out_dir/frames/NNNN.png``.

    ``mode`` (``per_frame``, ``flow_warp`` or ``keyframes``) defaults to ``style.consistency.mode``,
    ``stylizer`` (``diffusion`` or ``npr``) to ``style.stylizer``. For diffusion, ``resolved`` (from
    ``resolve_models``) is resolved here when not given, and ``stylizer_instance`` (a loaded
    ``DiffusionStylizer``) is built here when not given, on ``device`` with ``threads`` CPU threads.
    ``scene``: the shot's :class:`scenes.scene_data.Scene` for the sequence modes (else ``JOB/scene/scene.npz``).
    ``measure_warp_error`` adds E_warp of the written frames. ``min_generate_pixels`` (default
    ``style.consistency.min_generate_share`` of the frame), ``keyframe_lookahead`` and
    ``atlas_max_size`` tune the sequence modes. ``continue_from``: ``(frames[0] - 1, its output)``
    for ``flow_warp`` without anchor attention: the sequence goes on from that frame's output (read
    back from the store) as if it had just generated it, byte for byte (frame t depends only on
    frame t-1's output and the passes). ``reference_files``: the style's reference images
    (:class:`scenes.reference_images.ReferenceFile` or ``{"path", "sha256"}`` each, in order), needed
    by diffusion when the style has some. ``look_source`` (a :class:`stylize.look_atlases.Look`):
    the look a ``keyframes`` shot starts from (``baked``: renders from, generating nothing). Brand
    colours (``style.brand_colors``) are corrected in every mode; their figures are in the result.
    Raises ``InputError`` (exit 2) for a bad request or missing inputs, before any work.
    """
    started = time.perf_counter()
    # 1. Check inputs: the request, then the job folder's files
    style = template.style
    render = template.render
    mode = mode or style.consistency.mode
    kind = stylizer or style.stylizer
    if mode not in CONSISTENCY_MODES:
        raise InputError(f"consistency mode {mode!r} is not one of {', '.join(CONSISTENCY_MODES)} (--consistency / style.consistency)")
    if kind not in STYLIZERS:
        raise InputError(f"stylizer {kind!r} is not one of {', '.join(STYLIZERS)} (--stylizer / style.stylizer)")
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise InputError("no frames to stylise: pass at least one frame")
    outside = [f for f in frames if f not in render.frames]
    if outside:
        raise InputError(
            f"frame(s) {', '.join(map(str, outside[:10]))} are outside the template's range "
            f"render.frame_start..frame_end = {render.frame_start}..{render.frame_end}"
        )
    if kind == "baked" and look_source is None:
        raise InputError("stylizer 'baked' renders from a look: set style.look.from to a job folder or a look id")
    if look_source is not None and mode != "keyframes" and kind != "baked":
        raise InputError(f"style.look.from: a look is what consistency mode 'keyframes' makes and starts from; this "
                         f"shot renders in {mode!r}: set style.consistency.mode = 'keyframes' (or --stylizer baked)")
    sequence = mode != "per_frame" or kind == "baked"
    if sequence and kind != "baked" and frames != list(range(frames[0], frames[-1] + 1)):
        raise InputError(
            f"consistency mode {mode!r} needs consecutive frames (each depends on the one before); got {frames[:10]}..."
        )
    if continue_from is not None:
        anchored = kind == "diffusion" and style.consistency.anchor_attention
        if mode != "flow_warp" or anchored or continue_from[0] != frames[0] - 1:
            raise ValueError(f"continue_from {continue_from[0]} needs mode flow_warp without anchor attention and "
                             f"the frame just before {frames[0]}")
    job_dir, out_dir = Path(job_dir), Path(out_dir)
    if not job_dir.is_dir():
        raise InputError(f"job folder {job_dir} does not exist; render the passes first (greybox passes)")
    if kind == "diffusion" and resolved is None and stylizer_instance is None:
        from stylize.model_resolution import resolve_models

        resolved = resolve_models(style)
    if stylizer_instance is not None:
        resolved = stylizer_instance.resolved
    if kind == "diffusion" and sequence and (resolved.union or resolved.family != "sd15"):
        raise InputError(
            f"consistency mode {mode!r} with the diffusion stylizer supports SD1.x base models with ControlNetModel "
            f"ControlNets; this style resolves to family {resolved.family!r}{' (union ControlNet)' if resolved.union else ''}. "
            "Use style.consistency = \"per_frame\" or an SD1.5 base model"
        )
    needs_npr = kind == "npr" or (not sequence and style.init_image == "npr_draft")
    directed = kind == "diffusion" and bool(style.regions or style.reference_images)
    use_lines = "lines" in template.passes.control
    control_kinds = (list(resolved.pass_names) if kind == "diffusion" else []) + (["lines"] if needs_npr and use_lines else [])
    branded = bool(style.brand_colors)
    needs_passes = needs_npr or sequence or measure_warp_error or directed or branded
    _check_files_exist(job_dir, frames, control_kinds=control_kinds, needs_passes=needs_passes,
                       needs_cameras=needs_npr and not sequence)
    lead = [continue_from[0]] if continue_from is not None else []  # read, not written
    references = _read_reference_images(style, reference_files) if directed and style.reference_images else ([], [])
    shot_passes = _read_passes(job_dir, lead + frames) if sequence or measure_warp_error or directed else None
    directions = _frame_directions(template, job_dir, shot_passes) if directed else None
    brands: list = []
    if sequence:
        from stylize.consistency_modes import effective_brands, sequence_scene

        scene = sequence_scene(job_dir, shot_passes, scene)
        brands = effective_brands(style, scene, look_source)
    else:
        if branded:
            from stylize.brand_colours import resolve_brand_colours

            brands = resolve_brand_colours(style, scene if scene is not None else _layout(job_dir))
        # Fixed batch boundaries. Where a batch does not round like single frames (CUDA), also compute
        # the other frames of each touched batch whose inputs are here (their outputs are not
        # written), so a frame's pixels do not depend on which frames a task was given.
        compute = frames
        if kind == "diffusion" and style.batch_size > 1 and not _batch_invariant(stylizer_instance, device):
            touched = {(f - render.frame_start) // style.batch_size for f in frames}
            compute = [
                f for f in render.frames
                if (f - render.frame_start) // style.batch_size in touched
                and (f in frames or _inputs_present(job_dir, f, control_kinds, needs_npr or directed))
            ]
            if directed and set(compute) != set(frames):
                directions.update(_frame_directions(template, job_dir, _read_passes(job_dir, [f for f in compute if f not in frames])))
        cameras = _read_cameras(job_dir, compute) if needs_npr else {}

    # 2. Load the diffusion models (once).
    if kind == "diffusion" and stylizer_instance is None:
        from stylize.diffusion_stylizer import DiffusionStylizer

        stylizer_instance = DiffusionStylizer(resolved, style, device=device, threads=threads)
    if directed and style.reference_images:
        stylizer_instance.set_reference_images(*references)

    # 3. Stylise in the mode, writing each frame atomically
    keyframes: list[int] = []
    brand_sums: dict[int, dict[int, dict]] = {}
    run = None
    if not sequence:
        masked_before = dict(stylizer_instance.counter.per_frame) if kind == "diffusion" else {}
        hashes = _stylize_per_frame(template, frames, compute, job_dir, out_dir, kind, resolved, stylizer_instance,
                                    cameras, needs_npr, use_lines, directions, brands, brand_sums)
        generated = list(frames)
        per_frame_steps = 0
        if kind == "diffusion":
            strength = style.strength if style.init_image == "npr_draft" else 1.0
            per_frame_steps = unet_evaluations_per_frame(stylizer_instance.pipeline.scheduler, style.num_inference_steps,
                                                         strength=strength, guidance_scale=style.guidance_scale)
        # the pipeline's steps, and the masked loop's for a frame's masked reference images
        masked_steps = {f: (stylizer_instance.counter.per_frame.get(f, 0) - masked_before.get(f, 0)) if kind == "diffusion" else 0
                        for f in frames}
        steps_by_frame = {f: per_frame_steps + masked_steps[f] for f in frames}
        steps = sum(steps_by_frame.values())
        seconds = time.perf_counter() - started
        frame_seconds = {f: seconds / len(frames) for f in frames}
        images = None
    else:
        from stylize.consistency_modes import run_sequence

        run = run_sequence(mode, template, job_dir, shot_passes, scene, kind, stylizer_instance,
                           min_generate_pixels=min_generate_pixels, keyframe_lookahead=keyframe_lookahead,
                           atlas_max_size=atlas_max_size,
                           first_image=continue_from[1] if continue_from is not None else None, directions=directions,
                           look_source=look_source, brands=brands)
        images = {f: image for f, image in run.images.items() if f in frames}
        if brands:
            from stylize.brand_colours import frame_figure_sums

            by_frame = {p.frame: p for p in shot_passes}
            for f in frames:
                brand_sums[f] = {k: frame_figure_sums(images[f], by_frame[f].instance_id, b, run.unbranded[f])
                                 for k, b in enumerate(brands)}
        generated, keyframes, steps = run.generated_frames, run.keyframes, run.denoising_steps
        hashes = {f: write_png_atomic(out_dir / frame_png_path(f), np.ascontiguousarray(images[f])) for f in sorted(images)}
        steps_by_frame = {f: run.denoising_steps_by_frame.get(f, 0) for f in frames}
        seconds = time.perf_counter() - started
        rest = max(seconds - sum(run.generate_seconds.values()), 0.0) / len(frames)
        frame_seconds = {f: run.generate_seconds.get(f, 0.0) + rest for f in frames}

    # 4. E_warp of the written frames, when asked for
    report = None
    if measure_warp_error and len(frames) > 1:
        from stylize.warp_error import warp_error

        if images is None:
            from PIL import Image

            images = {f: np.asarray(Image.open(out_dir / frame_png_path(f)).convert("RGB")) for f in frames}
        report = warp_error([images[f] for f in frames], shot_passes[len(lead):])
    applied = {f: directions[f].record() for f in frames if directions[f].directed} if directions else {}
    return StylizeResult(mode=mode, stylizer=kind, frame_hashes=hashes, denoising_steps=steps, keyframes=keyframes,
                         generated_frames=generated, seconds=seconds, warp_error=report,
                         denoising_steps_by_frame=steps_by_frame, frame_seconds=frame_seconds, directed=applied,
                         atlases=run.atlases if run is not None else None,
                         generation=run.generation if run is not None else None, brands=brands, brand_sums=brand_sums)


def _layout(job_dir: Path) -> dict:
    from scenes.scene_layout import read_layout

    layout = read_layout(job_dir)
    if layout is None:
        raise InputError(f"{Path(job_dir) / 'scene' / 'layout.json'} is missing: style.brand_colors names objects of the "
                         "recorded scene; render the passes first (greybox passes)")
    return layout


def _stylize_per_frame(template, frames, compute, job_dir, out_dir, kind, resolved, instance, cameras, needs_npr,
                       use_lines, directions=None, brands=(), brand_sums=None) -> dict[int, str]:
    """Mode per_frame: batch by batch, each frame written atomically as soon as it exists (brand
    colours corrected first, their figures' sums into ``brand_sums``)."""
    from stylize.brand_colours import apply_to_frame, frame_figure_sums

    style = template.style
    render = template.render
    width, height = render.width, render.height
    hashes: dict[int, str] = {}
    wanted = set(frames)
    # fixed batch boundaries from frame_start, whichever frames were asked for
    for group in chunk_frames(compute, style.batch_size if kind == "diffusion" else 1, render.frame_start):
        drafts = [_npr_frame(job_dir, f, cameras[f], style, use_lines) for f in group] if needs_npr else None
        if kind == "npr":
            images = drafts
        else:
            controls = [load_control_images(job_dir, f, resolved.pass_names, expected_size=(width, height)) for f in group]
            seeds = [frame_seed(template.style_seed, f, style.seed_mode) for f in group]
            init_images = drafts if style.init_image == "npr_draft" else None
            images = instance.stylize(group, controls, init_images=init_images, seeds=seeds,
                                      directions=None if directions is None else [directions[f] for f in group])
        for f, image in zip(group, images):
            if f not in wanted:
                continue
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise RuntimeError(f"frame {f}: the stylizer returned {image.dtype} {image.shape}, expected uint8 {(height, width, 3)}")
            if brands:
                instance_id = _read_passes(job_dir, [f])[0].instance_id
                before, image = image, apply_to_frame(image, instance_id, brands)
                brand_sums[f] = {k: frame_figure_sums(image, instance_id, b, before) for k, b in enumerate(brands)}
            hashes[f] = write_png_atomic(out_dir / frame_png_path(f), image)
    return hashes


def _batch_invariant(stylizer_instance, device) -> bool:
    if stylizer_instance is not None:
        return bool(getattr(stylizer_instance, "batch_invariant", False))
    from stylize.diffusion_stylizer import choose_device_and_dtype

    return choose_device_and_dtype(device)[0].type == "cpu"


def _inputs_present(job_dir: Path, frame: int, control_kinds: list[str], needs_npr: bool) -> bool:
    try:
        _check_files_exist(job_dir, [frame], control_kinds=control_kinds, needs_passes=needs_npr, needs_cameras=needs_npr)
    except InputError:
        return False
    return True


def _check_files_exist(job_dir: Path, frames: list[int], *, control_kinds: list[str], needs_passes: bool,
                       needs_cameras: bool) -> None:
    missing = []
    for f in frames:
        missing += [control_image_path(job_dir, k, f) for k in control_kinds if not control_image_path(job_dir, k, f).is_file()]
        if needs_passes and not (job_dir / pass_exr_path(f)).is_file():
            missing.append(job_dir / pass_exr_path(f))
    if needs_cameras and not (job_dir / "cameras.json").is_file():
        missing.append(job_dir / "cameras.json")
    if missing:
        shown = ", ".join(str(p) for p in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise InputError(f"missing stylize inputs in {job_dir}: {shown}; render the passes first (greybox passes) for these frames")


def _frame_directions(template, job_dir: Path, shot_passes) -> dict:
    """{frame: :class:`stylize.region_masks.FrameDirection`} from the shot's layout and each frame's
    instance and class passes."""
    from scenes.scene_layout import read_layout
    from scenes.style_regions import resolve_targets, scene_objects
    from stylize.region_masks import frame_direction

    layout = read_layout(job_dir)
    if layout is None:
        raise InputError(f"{Path(job_dir) / 'scene' / 'layout.json'} is missing: the style's regions and reference images "
                         "name objects of the recorded scene; render the passes first (greybox passes)")
    regions, references = resolve_targets(template.style, scene_objects(layout))
    out = {}
    for p in shot_passes:
        if p.instance_id is None or p.class_id is None:
            raise InputError(f"passes of frame {p.frame} hold no instance or class ids (passes.exr_channels); the style's "
                             "regions and reference images need both")
        out[p.frame] = frame_direction(p.frame, p.instance_id, p.class_id, regions, references)
    return out


def _read_reference_images(style, reference_files) -> tuple[list[np.ndarray], list[str]]:
    """The reference images as uint8 RGB and their sha256, each checked against the hash recorded when the
    job was planned (a file changed since is refused: the keys name the bytes that were checked)."""
    import hashlib

    from PIL import Image

    if reference_files is None or len(reference_files) != len(style.reference_images):
        raise InputError(f"the style has {len(style.reference_images)} reference image(s): give them as reference_files "
                         "(scenes.reference_images.reference_image_files)")
    images, hashes = [], []
    for i, ref in enumerate(reference_files):
        path = Path(ref["path"] if isinstance(ref, dict) else ref.path)
        expected = ref["sha256"] if isinstance(ref, dict) else ref.sha256
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InputError(f"style.reference_images.{i}.image: cannot read {path} ({err.strerror or err})") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise InputError(f"style.reference_images.{i}.image: {path} changed since the job was checked (sha256 "
                             f"{digest[:12]}, expected {expected[:12]}); run the job again")
        import io

        with Image.open(io.BytesIO(data)) as image:
            images.append(np.asarray(image.convert("RGB")))
        hashes.append(digest)
    return images, hashes


def _read_passes(job_dir: Path, frames: list[int]):
    from passes.pass_exr import read_passes_exr  # OpenEXR + numpy only

    return [read_passes_exr(job_dir / pass_exr_path(f)) for f in frames]


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

    frame_passes = read_passes_exr(job_dir / pass_exr_path(frame))
    lines = load_control_image(control_image_path(job_dir, "lines", frame)) if use_lines else None
    if lines is not None and lines.shape[:2] != (frame_passes.height, frame_passes.width):
        raise InputError(
            f"{control_image_path(job_dir, 'lines', frame)} is {lines.shape[1]}x{lines.shape[0]} but the passes are "
            f"{frame_passes.width}x{frame_passes.height}; re-render the passes"
        )
    return stylize_npr(frame_passes, rotation, lines, style)
