"""The passes stage for one chunk of frames: render, write ``passes/NNNN.exr`` and the control images.

:func:`render_pass_frames` is the stage entry (the farm calls it per chunk; ``blender_entry.py``
calls it in a studio's Blender). It renders the scene the scene stage recorded (never rebuilding
it), writes only per-frame files, each atomically, and returns their hashes; ``manifest.json``
and the scene stage's files belong to the caller.

Files are encoded on the calling thread and written (temporary name, fsync, rename) by one
background thread while Blender renders the next frame, so the disk wait overlaps the render.
A frame counts as done (``on_frame``, the returned hashes) only once all its files are renamed.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from greybox.atomic_files import encode_png, write_bytes_atomic
from greybox.errors import InputError
from greybox.frame_files import control_png_path, pass_exr_path
from passes import control_images
from passes.blender_render import discard_rendered
from passes.depth_range import template_disparity_range
from passes.frame_passes import FramePasses
from passes.line_art import render_lines
from passes.pass_exr import encode_passes_exr
from scenes.scene_data import Scene
from scenes.template_schema import CONTROL_PASSES

MAX_FRAMES_IN_FLIGHT = 2  # frames still being converted and written while the next renders
MAX_BYTES_IN_FLIGHT = 48 << 20  # ... and their pass arrays: 512^2 (16 MB a frame) overlaps; 1024^2 (64 MB) runs in
# step, which keeps a 1024^2 worker under 700 MB resident


def pass_frame_paths(frame: int, control_kinds: Iterable[str]) -> list[str]:
    """Relative paths (POSIX) of the files :func:`render_pass_frames` writes for ``frame``."""
    paths = [pass_exr_path(frame)]
    for kind in control_kinds:
        if kind not in CONTROL_PASSES:
            raise ValueError(f"unknown control kind {kind!r}; expected one of {', '.join(CONTROL_PASSES)}")
        paths.append(control_png_path(kind, frame))
    return paths


def control_image(
    kind: str, scene: Scene, frame_passes: FramePasses, template, disparity_range: tuple[float, float] | None
) -> np.ndarray:
    """One control image (uint8 HxWx3) of ``kind`` for a frame, as the template's ``[passes]`` asks."""
    pass_settings = template.passes
    if kind == "depth":
        lo, hi = disparity_range if disparity_range is not None else control_images.per_frame_disparity_range(frame_passes.depth)
        return control_images.depth_control(frame_passes.depth, lo, hi)
    if kind == "normal":
        return control_images.normal_control(frame_passes.normal)
    if kind == "seg":
        from scenes.semantic_palette import resolve_class

        return control_images.seg_control(frame_passes.class_id, resolve_class(pass_settings.seg_background).class_id)
    if kind == "lines":
        lines = render_lines(frame_passes, crease_angle_deg=pass_settings.line_crease_angle, width=pass_settings.line_width)
        return control_images.lines_control(lines)
    raise ValueError(f"unknown control kind {kind!r}")


def encode_frame_outputs(
    scene: Scene, frame_passes: FramePasses, template, disparity_range: tuple[float, float] | None,
    timings: dict[str, float] | None = None,
) -> dict[str, bytes | memoryview]:
    """One frame's files: {relative path: bytes-like content} for the EXR and each control PNG the template wants."""
    files: dict[str, bytes | memoryview] = {}
    t0 = time.perf_counter()
    pass_settings = template.passes  # Cryptomatte names come from the scene handed in, whichever stage built or loaded it
    files[pass_exr_path(frame_passes.frame)] = encode_passes_exr(frame_passes, scene, groups=pass_settings.exr_channels,
                                                              compression=pass_settings.exr_compression)
    t1 = time.perf_counter()
    build = lines = encode = 0.0
    for kind in template.passes.control:
        s0 = time.perf_counter()
        image = control_image(kind, scene, frame_passes, template, disparity_range)
        s1 = time.perf_counter()
        files[control_png_path(kind, frame_passes.frame)] = encode_png(image)
        s2 = time.perf_counter()
        if kind == "lines":
            lines += s1 - s0
        else:
            build += s1 - s0
        encode += s2 - s1
    if timings is not None:
        timings.update({"exr_encode": t1 - t0, "control": build, "line_art": lines, "png_encode": encode})
    return files


def write_frame_outputs(
    out_dir: Path, scene: Scene, frame_passes: FramePasses, template, disparity_range: tuple[float, float] | None,
    timings: dict[str, float] | None = None,
) -> dict[str, str]:
    """Encode and write (atomically, on this thread) one frame's files under ``out_dir``; return {relative path: sha256}."""
    files = encode_frame_outputs(scene, frame_passes, template, disparity_range, timings)
    t0 = time.perf_counter()
    hashes = {rel: write_bytes_atomic(Path(out_dir) / rel, data) for rel, data in files.items()}
    if timings is not None:
        timings["file_write"] = time.perf_counter() - t0
    return hashes


def shown_ids(frame_passes: FramePasses) -> dict[str, list[int]]:
    """The instance ids and class ids a frame's passes show (0, the background, left out), sorted:
    the passes units record them, so the planner knows which frames a region's objects appear in
    without reading a pass."""
    return {"instances": [int(i) for i in np.unique(frame_passes.instance_id) if i > 0],
            "classes": [int(c) for c in np.unique(frame_passes.class_id) if c > 0]}


def render_pass_frames(
    template,
    scene: Scene,
    frames: list[int],
    out_dir: Path,
    *,
    threads: int = 2,
    renderer=None,
    on_frame: Callable[[int], None] | None = None,
    shows: dict[int, dict] | None = None,
) -> dict[int, dict[str, str]]:
    """Render ``frames`` of ``scene`` (the shot's recorded scene) into ``out_dir`` as ``template``'s
    ``[passes]`` asks: ``passes/NNNN.exr`` and ``control/<kind>/NNNN.png``.

    ``renderer`` (a :class:`passes.blender_render.PassRenderer` for this scene) is reused when
    given, as a warm worker does; otherwise one is built. ``on_frame(frame)`` is called
    once each frame's files are all written, in frame order. ``shows``, when given, receives per
    frame :func:`shown_ids` (before ``on_frame`` runs for it). Returns {frame: {relative path: sha256}}.
    Raises :class:`InputError` for frames outside the template's range.
    """
    # 1. Check inputs
    render = template.render
    frames = [int(f) for f in frames]
    outside = [f for f in frames if not (render.frame_start <= f <= render.frame_end)]
    if outside:
        raise InputError(
            f"frames {outside[:10]} are outside the template's range {render.frame_start}-{render.frame_end}; "
            "choose frames inside render.frame_start..render.frame_end"
        )
    out_dir = Path(out_dir)
    if (scene.width, scene.height) != (render.width, render.height):
        raise InputError(
            f"the scene is {scene.width}x{scene.height} but render.resolution is {render.width}x{render.height}; "
            "build the scene of this template again (greybox passes --force)"
        )

    # 2. The renderer: reuse a warm one when it was built for this very scene
    if renderer is None:
        from passes.blender_render import PassRenderer

        renderer = PassRenderer(scene, threads=threads)
    elif renderer.scene is not scene and (
        (renderer.scene.width, renderer.scene.height) != (scene.width, scene.height)
        or renderer.scene.geometry_hash() != scene.geometry_hash()
    ):
        raise ValueError("the renderer given was built for a different scene; build a new PassRenderer for this template")
    else:
        scene = renderer.scene  # the same data; keeps per-scene caches (the depth range) warm

    disparity_range = None
    if "depth" in template.passes.control:
        disparity_range = template_disparity_range(scene, template.passes)

    # 3. Render each frame on this thread; read, convert, encode and write it on a background thread
    #    while the next frame renders (bpy releases the GIL while Cycles runs, so our work fills the core
    #    Blender leaves idle between its own steps). Frames finish, and on_frame runs, in order.
    results: dict[int, dict[str, str]] = {}
    pending: list[tuple[int, Future]] = []
    frame_bytes = scene.width * scene.height * 4 * 16  # ~16 float32 planes a frame in flight
    in_flight = min(MAX_FRAMES_IN_FLIGHT, MAX_BYTES_IN_FLIGHT // frame_bytes)  # 0: no overlap

    def finish_oldest() -> None:
        frame, future = pending.pop(0)
        results[frame] = future.result()
        if on_frame is not None:
            on_frame(frame)

    def finish_frame(path: str, frame: int) -> dict[str, str]:
        del scratch[frame]  # read_rendered deletes the file, whatever happens
        frame_passes = renderer.read_rendered(path, frame)
        if shows is not None:
            shows[frame] = shown_ids(frame_passes)
        return write_frame_outputs(out_dir, scene, frame_passes, template, disparity_range)

    scratch: dict[int, str] = {}  # rendered, not yet read

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="greybox-pass-writer") as writer:
        try:
            for frame in frames:
                path = scratch[frame] = renderer.render_to_file(frame)
                if in_flight == 0:
                    results[frame] = finish_frame(path, frame)
                    if on_frame is not None:
                        on_frame(frame)
                    continue
                pending.append((frame, writer.submit(finish_frame, path, frame)))
                while pending and (len(pending) > in_flight or pending[0][1].done()):
                    finish_oldest()
            while pending:
                finish_oldest()
        finally:
            for _, future in pending:  # on an error: let a started frame finish before leaving
                future.cancel() or future.exception()
            for path in scratch.values():  # rendered but never read (an error stopped the chunk)
                discard_rendered(path)

    # 4. Hashes of everything written
    return results
