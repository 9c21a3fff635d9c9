"""Edit objects of a finished shot: regenerate only their pixels, keep every other pixel of the base.

Entry point: :func:`edit_frames` (the farm's stylize task calls it for an edit, the benchmark
directly). Inputs: the base version's frames (uint8, as the base's PNGs hold them), the shot's
passes (``JOB/passes/NNNN.exr``: the instance and class ids give each frame's exact mask of the
edited objects, :func:`stylize.region_masks.target_mask`), the *new* template (its prompts,
regions, reference images) and the :class:`scenes.style_regions.Targets` the change names.

Per consistency mode (the base's):

- ``per_frame``: each frame showing the objects is inpainted by the masked ControlNet loop
  (:func:`stylize.masked_denoising.masked_denoise` through the sequence modes' frame stylizer, so
  regions and reference images direct it as in a render) from pure noise inside the mask, every
  other pixel known (the base), at every step.
- ``flow_warp``: frames in order; inside the mask, the previous *edited* frame warped by the exact
  flow is kept where the warp is valid and only the rest is inpainted (``style.strength`` of the
  schedule once part of the object is carried, the whole schedule where none is), so the new look
  is carried from frame to frame as in a render.
- ``keyframes``: only the edited objects' texture atlases are rebuilt: keyframes chosen by the
  share of the objects' own pixels not yet textured (the first frame that shows them, then each
  frame where that share exceeds ``style.consistency.keyframe_coverage_threshold``), each
  inpainted inside the objects' masks and projected into their atlases; every frame showing them
  gathers them from the atlases, and what no keyframe saw is inpainted and written back. No other
  atlas is built or read.

In every mode the result is composited from the exact mask: pixels outside it are the base's
bytes, whatever the generator did there. The NPR stylizer regenerates the masked pixels with NPR
(brand colours change them; a region prompt does not). Frames that do not show the objects are
the base's frames, untouched.

numpy at module level; torch and diffusers only through the loaded stylizer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greybox.errors import InputError


@dataclass
class EditResult:
    """``images``: {frame: (H, W, 3) uint8} for every frame asked; ``regenerated``: frames whose
    masked pixels were generated again (they show the objects); ``pixels``: masked pixels per
    frame; ``keyframes`` (``keyframes`` mode: the objects' keyframes); denoising steps as the
    stylize stage counts them."""

    images: dict[int, np.ndarray]
    regenerated: list[int]
    pixels: dict[int, int]
    keyframes: list[int] = field(default_factory=list)
    denoising_steps: int = 0
    denoising_steps_by_frame: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    directed: dict[int, dict] = field(default_factory=dict)


def edit_masks(shot_passes, targets) -> dict[int, np.ndarray]:
    """{frame: (H, W) bool}: the pixels of ``targets`` in each frame, from its instance and class passes."""
    from stylize.region_masks import target_mask

    masks = {}
    for p in shot_passes:
        if p.instance_id is None or p.class_id is None:
            raise InputError(f"passes of frame {p.frame} hold no instance or class ids (passes.exr_channels); an edit "
                             "regenerates objects by their exact masks and needs both")
        masks[p.frame] = target_mask(p.instance_id, p.class_id, targets)
    return masks


def edit_frames(template, frames: list[int], job_dir: Path, base_images: dict[int, np.ndarray], targets, *,
                mode: str | None = None, stylizer: str | None = None, stylizer_instance=None, resolved=None,
                reference_files=None, device=None, threads: int = 2, min_generate_pixels: int | None = None,
                keyframe_lookahead: int = 24, atlas_max_size: int = 2048, regenerate: bool = True) -> EditResult:
    """Regenerate ``targets`` (a :class:`scenes.style_regions.Targets`) in ``frames`` of the base
    (``base_images``: frame -> uint8 image), with ``template``'s style; see the module docstring.
    ``regenerate`` False (the change is brand colours only, none removed): the base's pixels of the
    targets are recoloured by the brand correction instead, with no denoising."""
    from stylize.consistency_modes import _FrameStylizer, sequence_scene
    from stylize.stylize_stage import _frame_directions, _read_passes, _read_reference_images

    started = time.perf_counter()
    # 1. Check inputs
    style = template.style
    mode = mode or style.consistency.mode
    kind = stylizer or style.stylizer
    frames = sorted(int(f) for f in frames)
    job_dir = Path(job_dir)
    width, height = template.render.width, template.render.height
    missing = [f for f in frames if f not in base_images]
    if missing:
        raise InputError(f"an edit needs the base version's frame {missing[0]}; it is missing")
    for f in frames:
        if base_images[f].shape != (height, width, 3) or base_images[f].dtype != np.uint8:
            raise InputError(f"the base frame {f} is {base_images[f].shape}, expected {(height, width, 3)} uint8: "
                             "the base version was rendered at another resolution")
    shot_passes = _read_passes(job_dir, frames)
    masks = edit_masks(shot_passes, targets)
    showing = [f for f in frames if masks[f].any()]
    images = {f: base_images[f] for f in frames}
    if not showing:
        return EditResult(images=images, regenerated=[], pixels={}, seconds=time.perf_counter() - started)
    scene = sequence_scene(job_dir, shot_passes)
    by_frame = {p.frame: p for p in shot_passes}
    brands = _edit_brands(style, scene, targets)

    def branded(frame: int, image: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``image`` with the brand colours corrected at ``where`` (unbranded pixels, corrected once); a
        sequence mode's first frame showing an object fixes its lightness fit, per_frame fits each frame."""
        if not brands:
            return image
        from stylize.brand_colours import apply_to_frame, fix_fits

        instance_id = by_frame[frame].instance_id
        if mode != "per_frame":
            fix_fits(image, instance_id, brands)
        else:
            for b in brands:
                b.fits.clear()
        return np.where(where[..., None], apply_to_frame(image, instance_id, brands), image).astype(np.uint8)

    if not regenerate:  # brand colours only: the base's pixels recoloured, nothing generated
        for f in showing:
            images[f] = branded(f, base_images[f], masks[f])
        return EditResult(images=images, regenerated=showing, pixels={f: int(masks[f].sum()) for f in showing},
                          denoising_steps_by_frame={f: 0 for f in frames}, seconds=time.perf_counter() - started)
    if kind == "diffusion":
        if stylizer_instance is None:
            from stylize.diffusion_stylizer import DiffusionStylizer
            from stylize.model_resolution import resolve_models

            stylizer_instance = DiffusionStylizer(resolved or resolve_models(style), style, device=device, threads=threads)
        resolved = stylizer_instance.resolved
        if resolved.union or resolved.family != "sd15":
            raise InputError(f"an edit with the diffusion stylizer inpaints through the masked ControlNet loop, which runs "
                             f"SD1.x base models with ControlNetModel ControlNets; this style resolves to family "
                             f"{resolved.family!r}{' (union ControlNet)' if resolved.union else ''}: render the change "
                             "into another --out instead")
    directed = kind == "diffusion" and bool(style.regions or style.reference_images)
    directions = _frame_directions(template, job_dir, shot_passes) if directed else None
    if directed and style.reference_images:
        stylizer_instance.set_reference_images(*_read_reference_images(style, reference_files))
    frame_stylizer = _FrameStylizer(template, job_dir, scene, shot_passes, kind, stylizer_instance, directions)
    if min_generate_pixels is None:
        min_generate_pixels = int(style.consistency.min_generate_share * width * height)

    def generate(frame: int, known: np.ndarray, generate_mask: np.ndarray, strength: float) -> np.ndarray:
        """The frame with ``generate_mask`` generated and every other pixel ``known`` (uint8)."""
        began = time.perf_counter()
        try:
            if kind == "npr":
                out = np.asarray(frame_stylizer.npr(frame), dtype=np.uint8)
            else:
                out = frame_stylizer._diffuse(frame, known, ~generate_mask, strength)
        finally:
            frame_stylizer.generate_seconds[frame] = frame_stylizer.generate_seconds.get(frame, 0.0) + time.perf_counter() - began
        return branded(frame, np.where(generate_mask[..., None], out, known).astype(np.uint8), generate_mask)

    # 2. Regenerate the objects' pixels in the mode
    keyframes: list[int] = []
    if mode == "per_frame":
        for f in showing:
            images[f] = generate(f, base_images[f], masks[f], 1.0)
    elif mode == "flow_warp":
        images = _flow_warp_edit(frames, by_frame, masks, base_images, scene, generate, float(style.strength),
                                 min_generate_pixels)
    elif mode == "keyframes":
        images, keyframes = _keyframes_edit(frames, shot_passes, masks, base_images, scene, targets, generate,
                                            style, min_generate_pixels, keyframe_lookahead, atlas_max_size)
    else:
        raise ValueError(f"consistency mode {mode!r}")

    # 3. Composite from the exact masks: outside them, the base's bytes
    for f in frames:
        images[f] = np.where(masks[f][..., None], images[f], base_images[f]).astype(np.uint8)
    steps = {f: int(frame_stylizer.counter.per_frame.get(f, 0)) for f in frames}
    applied = {f: directions[f].record() for f in showing if directions[f].directed} if directions else {}
    return EditResult(images=images, regenerated=showing, pixels={f: int(masks[f].sum()) for f in showing},
                      keyframes=keyframes, denoising_steps=sum(steps.values()), denoising_steps_by_frame=steps,
                      seconds=time.perf_counter() - started, directed=applied)


def _edit_brands(style, scene, targets) -> list:
    """The style's brand colours (:mod:`stylize.brand_colours`) of the edited objects."""
    if not getattr(style, "brand_colors", None):
        return []
    from stylize.brand_colours import resolve_brand_colours

    ids = set(targets.instance_ids) | {o.instance_id for o in scene.objects if o.semantic_class_id in targets.class_ids}
    out = []
    for brand in resolve_brand_colours(style, scene):
        if targets.whole_frame or set(brand.instance_ids) & ids:
            out.append(brand)
    return out


def _flow_warp_edit(frames, by_frame, masks, base_images, scene, generate, strength: float, min_generate_pixels: int):
    """flow_warp: the previous edited frame warped onto this one inside the mask, the rest generated."""
    from stylize.flow_warp import warp_with_background
    from stylize.image_operations import push_pull_fill, to_uint8

    images: dict[int, np.ndarray] = {}
    previous = None
    for f in frames:
        mask = masks[f]
        base = base_images[f]
        if not mask.any():
            images[f] = base
            previous = f
            continue
        carried = np.zeros_like(mask)
        known = base
        if previous is not None:
            warped, valid = warp_with_background(images[previous].astype(np.float64) / 255.0, by_frame[previous], by_frame[f],
                                                 scene.camera)
            carried = mask & valid
            known = np.where(carried[..., None], to_uint8(warped), base)
        new = mask & ~carried
        if not new.any():
            images[f] = known
        elif carried.any() and new.sum() <= min_generate_pixels:
            # a handful of new pixels: filled from the carried ones, no denoising
            keep = ~new
            filled = push_pull_fill(known.astype(np.float64) / 255.0, keep)
            images[f] = np.where(new[..., None], to_uint8(filled), known)
        else:
            images[f] = generate(f, known, new, strength if carried.any() else 1.0)
        previous = f
    return images


def _keyframes_edit(frames, shot_passes, masks, base_images, scene, targets, generate, style, min_generate_pixels: int,
                    lookahead: int, atlas_max_size: int):
    """keyframes: only the edited objects' atlases, rebuilt from their own keyframes and regathered."""
    from stylize.keyframe_sequence import significant_unseen
    from stylize.texture_atlas import AtlasSet

    ids = set(targets.instance_ids) | {o.instance_id for o in scene.objects if o.semantic_class_id in targets.class_ids}
    atlases = AtlasSet.for_shot(scene, shot_passes, max_size=atlas_max_size)
    atlases.objects = {i: a for i, a in atlases.objects.items() if i in ids}
    by_frame = {p.frame: p for p in shot_passes}
    threshold = float(style.consistency.keyframe_coverage_threshold)

    def unseen(frame: int) -> np.ndarray:
        return masks[frame] & ~atlases.seen_pixels(by_frame[frame])

    # 1. The objects' keyframes: the first frame showing them, then each where the share of their
    #    pixels not yet textured exceeds the threshold
    keyframes: list[int] = []
    atlases.reset()
    for f in frames:
        if len(keyframes) >= style.consistency.max_keyframes:
            break
        count = int(masks[f].sum())
        if count and (not keyframes or unseen(f).sum() / count > threshold):
            keyframes.append(f)
            atlases.mark_seen(by_frame[f])
    atlases.reset()

    images: dict[int, np.ndarray] = {}

    def produce(frame: int, force: bool) -> None:
        p, mask, base = by_frame[frame], masks[frame], base_images[frame]
        if not mask.any():
            images[frame] = base
            return
        gathered, seen = atlases.gather(p)
        new = mask & ~seen
        textured = any(a.known.any() for a in atlases.objects.values())
        if not textured:
            new = mask
        elif not force and int(significant_unseen(new).sum()) <= min_generate_pixels:
            new = np.zeros_like(mask)  # isolated texels: the atlases' push-pull fill
        gathered8 = np.clip(np.rint(gathered.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        known = np.where((mask & ~new)[..., None], gathered8, base)
        if new.any():
            out = generate(frame, known, new, 1.0 if not textured else float(style.strength))
            atlases.write_pixels(out.astype(np.float64) / 255.0, p, new)
            known = out
        images[frame] = known

    # 2. Keyframes first, then every frame in order (the one up to ``lookahead`` ahead showing the
    #    most untextured object surface first, as the keyframes mode does)
    for k in keyframes:
        produce(k, force=True)
    for i, f in enumerate(frames):
        if f in images:
            continue
        if masks[f].any() and int(significant_unseen(unseen(f)).sum()) > min_generate_pixels and lookahead > 0:
            best, best_count = None, int(significant_unseen(unseen(f)).sum())
            for g in frames[i + 1 : i + 1 + lookahead]:
                if g in images:
                    continue
                count = int(significant_unseen(unseen(g)).sum())
                if count > best_count:
                    best, best_count = g, count
            if best is not None:
                produce(best, force=False)
        produce(f, force=False)
    return images, keyframes
