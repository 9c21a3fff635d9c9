"""A shot's assembled outputs: ``video.mp4``, ``contact_sheet.png`` and ``manifest.json``.

All three are deterministic: the video is H.264 through imageio-ffmpeg with one encoder thread and
bit-exact flags (no encoder version string, no creation time), at the template's fps, never
rescaled (``macro_block_size=8``: resolutions are multiples of 8); the contact sheet is a fixed grid
of frames beside their control images; the manifest holds no timestamps or host names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from greybox import __version__ as GREYBOX_VERSION
from greybox.atomic_files import write_bytes_atomic
from render_farm.frame_ranges import frame_name

MANIFEST_SCHEMA_VERSION = 1
CONTACT_SHEET_MAX_ROWS = 12
CONTACT_SHEET_THUMB = 192  # longest side of one cell, pixels
VIDEO_OUTPUT_PARAMS = [
    "-threads", "1", "-x264-params", "threads=1:sliced-threads=0",
    "-preset", "medium", "-crf", "18",
    "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-movflags", "+faststart",
]


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def write_video(view: Path, frames: list[int], fps: int, out_path: Path) -> None:
    """Encode ``view/frames/NNNN.png`` for ``frames`` into an H.264 mp4 at ``fps`` (temp name, then rename)."""
    import imageio_ffmpeg

    # 1. Check inputs: every frame there, one size.
    paths = [Path(view) / "frames" / f"{frame_name(f)}.png" for f in frames]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot assemble the video: {len(missing)} frames missing, first {missing[0]}")
    first = _load_rgb(paths[0])
    height, width = first.shape[:2]
    # 2. Encode to a temporary name in the same folder, then rename.
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}{out_path.suffix}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=8, ffmpeg_log_level="error", output_params=list(VIDEO_OUTPUT_PARAMS),
    )
    writer.send(None)
    try:
        for i, path in enumerate(paths):
            image = first if i == 0 else _load_rgb(path)
            if image.shape[:2] != (height, width):
                raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]}, the first frame is {width}x{height}")
            writer.send(np.ascontiguousarray(image))
    finally:
        writer.close()
    os.replace(tmp, out_path)


def contact_sheet_frames(frames: list[int], max_rows: int = CONTACT_SHEET_MAX_ROWS) -> list[int]:
    """At most ``max_rows`` frames, evenly spread, first and last included."""
    frames = sorted(frames)
    if len(frames) <= max_rows:
        return frames
    picks = np.linspace(0, len(frames) - 1, max_rows).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def write_contact_sheet(view: Path, frames: list[int], controls: list[str], out_path: Path) -> None:
    """One row per chosen frame: the stylised frame, then its control images in ``controls`` order."""
    from PIL import Image

    view = Path(view)
    rows = contact_sheet_frames(frames)
    columns = [("frames", None)] + [("control", kind) for kind in controls]
    cells: list[list[np.ndarray]] = []
    for f in rows:
        row = []
        for folder, kind in columns:
            path = view / folder / (kind or "") / f"{frame_name(f)}.png" if kind else view / folder / f"{frame_name(f)}.png"
            row.append(_load_rgb(path))
        cells.append(row)
    h, w = cells[0][0].shape[:2]
    scale = min(1.0, CONTACT_SHEET_THUMB / max(h, w))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    gap = 4
    sheet = np.full((len(rows) * (th + gap) + gap, len(columns) * (tw + gap) + gap, 3), 24, np.uint8)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            # Nearest neighbour keeps segmentation colours exact and is fully deterministic.
            thumb = np.asarray(Image.fromarray(image).resize((tw, th), Image.Resampling.NEAREST))
            y, x = gap + r * (th + gap), gap + c * (tw + gap)
            sheet[y : y + th, x : x + tw] = thumb
    from greybox.atomic_files import encode_png

    write_bytes_atomic(out_path, encode_png(sheet))


def build_manifest(
    *,
    shot: dict,
    frames: list[int],
    records: dict[str, dict[int, dict]],
    shot_files: dict[str, str],
    stylized: bool,
    models: dict | None,
) -> dict:
    """The shot's manifest (deterministic: no timestamps, no hosts).

    ``shot``: name, source, template_hash, resolved, overrides. ``records``: stage -> frame ->
    store record (``passes``, ``stylize``). ``shot_files``: relpath -> sha256 for whole-shot files.
    ``models``: ``ResolvedModels.manifest()`` when the diffusion stylizer ran.
    """
    from passes.frame_passes import EXR_CHANNELS

    resolved = shot["resolved"]
    per_frame: dict[str, dict[str, str]] = {}
    versions: dict[str, str | None] = {"greybox": GREYBOX_VERSION}
    consistency: dict = {"mode": None, "keyframes": [], "generated_frames": [], "denoising_steps": 0}
    for stage in ("passes", "stylize"):
        for f in frames:
            record = records.get(stage, {}).get(f)
            if record is None:
                continue
            entry = per_frame.setdefault(frame_name(f), {})
            for rel, info in record["outputs"].items():
                entry[rel] = info["sha256"]
            meta = record.get("meta", {})
            if stage == "passes" and meta.get("bpy"):
                versions["bpy"] = meta["bpy"]
            if stage == "stylize":
                for lib in ("torch", "diffusers", "transformers"):
                    if meta.get(lib):
                        versions[lib] = meta[lib]
                if "consistency" in meta:
                    consistency["mode"] = meta["consistency"]["mode"]
                    consistency["keyframes"] = sorted(set(consistency["keyframes"]) | set(meta["consistency"]["keyframes"]))
                    consistency["denoising_steps"] += int(meta.get("denoising_steps", 0))
                    if meta.get("generated"):
                        consistency["generated_frames"].append(f)
    style = resolved["style"]
    style_seed = resolved["seed"] if style.get("seed") is None else style["seed"]
    seeds: dict = {"scene": resolved["seed"]}
    if stylized:
        from stylize.frame_seeds import frame_seeds

        seeds.update({
            "style": style_seed, "seed_mode": style.get("seed_mode", "per_frame"),
            "frames": {frame_name(f): s for f, s in frame_seeds(style_seed, list(frames), style.get("seed_mode", "per_frame")).items()},
        })
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "greybox_version": GREYBOX_VERSION,
        "shot": shot["name"],
        "template": {"source": shot["source"], "hash": shot["template_hash"], "resolved": resolved},
        "overrides": list(shot.get("overrides", [])),
        "seeds": seeds,
        "versions": versions,
        "passes": {
            "exr_channels": list(EXR_CHANNELS),
            "control": list(resolved["passes"]["control"]),
        },
        "frames": per_frame,
        "files": dict(sorted(shot_files.items())),
    }
    if stylized:
        manifest["stylizer"] = style["stylizer"]
        manifest["models"] = models
        # Cost is counted as denoising steps: UNet evaluations, each batch element counted (a CFG pair is 2).
        consistency["denoising_steps_per_frame"] = consistency["denoising_steps"] / max(len(frames), 1)
        manifest["consistency"] = consistency
    return manifest


def write_manifest(view: Path, manifest: dict) -> str:
    from greybox.confined_files import write_json

    return write_json(view, "manifest.json", manifest)
