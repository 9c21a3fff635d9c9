"""A shot's assembled outputs: the video, ``contact_sheet.png`` and ``manifest.json``.

All three are deterministic: the video is encoded through imageio-ffmpeg with one encoder thread and
bit-exact flags (no encoder version string, no creation time), at the template's fps, never
rescaled (``macro_block_size=8``: resolutions are multiples of 8); the contact sheet is a fixed grid
of frames beside their control images; the manifest holds no timestamps or host names.

The video (``render.video_codec``), from the stylised frames (sRGB PNGs):

- ``h264`` -> ``video.mp4``: H.264 High, 4:2:0, CRF ``render.video_quality`` (default 18);
- ``prores`` -> ``video.mov``: ProRes 422 HQ, 10-bit 4:2:2 (MP4 cannot hold ProRes);
- ``png`` -> ``video.mov``: PNG frames, lossless 8-bit RGB.

The YCbCr codecs are converted with the BT.709 matrix into limited (tv) range and tagged so:
primaries, transfer and matrix BT.709, range tv. The bundled ffmpeg ignores ``-color_primaries``
and ``-color_trc``, so the frames are tagged in the filter graph (``setparams``) and, for x264,
``colorprim``, ``transfer`` and ``colormatrix`` go into the one ``-x264-params``. PNG frames stay RGB
and full range: tagged BT.709 primaries, sRGB transfer, range pc.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from greybox import __version__ as GREYBOX_VERSION
from greybox.atomic_files import write_bytes_atomic
from greybox.frame_files import control_png_path, frame_name, frame_png_path

MANIFEST_SCHEMA_VERSION = 1
CONTACT_SHEET_MAX_ROWS = 12
CONTACT_SHEET_THUMB = 192  # longest side of one cell, pixels
VIDEO_FILES = {"h264": "video.mp4", "prores": "video.mov", "png": "video.mov"}  # render.video_codec -> file
DEFAULT_CRF = 18
_BITEXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-movflags", "+faststart"]
_TO_BT709_LIMITED = (
    "scale=out_color_matrix=bt709:out_range=tv:flags=bicubic+accurate_rnd+full_chroma_int,"
    "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
)
_RGB_TAGS = "setparams=color_primaries=bt709:color_trc=iec61966-2-1:colorspace=gbr:range=pc"


def video_encoding(codec: str = "h264", quality: int | None = None) -> tuple[str, str, list[str]]:
    """(ffmpeg encoder, output pixel format, output parameters) for ``render.video_codec`` and
    ``render.video_quality`` (the H.264 CRF; None: 18)."""
    if codec == "h264":
        crf = DEFAULT_CRF if quality is None else int(quality)
        x264 = "threads=1:sliced-threads=0:colorprim=bt709:transfer=bt709:colormatrix=bt709:range=tv"
        return "libx264", "yuv420p", ["-threads", "1", "-filter_threads", "1", "-x264-params", x264, "-preset", "medium",
                                      "-crf", str(crf), "-vf", _TO_BT709_LIMITED, *_BITEXACT]
    if quality is not None:
        raise ValueError(f"video quality {quality} is the H.264 CRF; video codec {codec!r} takes none")
    if codec == "prores":
        return "prores_ks", "yuv422p10le", ["-threads", "1", "-filter_threads", "1", "-profile:v", "3", "-vendor", "apl0",
                                            "-vf", _TO_BT709_LIMITED, *_BITEXACT]
    if codec == "png":
        return "png", "rgb24", ["-threads", "1", "-filter_threads", "1", "-pred", "mixed", "-vf", _RGB_TAGS, *_BITEXACT]
    raise ValueError(f"video codec {codec!r}: use one of {', '.join(VIDEO_FILES)}")


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def write_video(view: Path, frames: list[int], fps: int, out_path: Path, codec: str = "h264",
                quality: int | None = None) -> None:
    """Encode ``view/frames/NNNN.png`` for ``frames`` at ``fps`` into ``out_path`` with ``codec``
    (see the module docstring; ``quality`` is the H.264 CRF), to a temporary name, then renamed."""
    import imageio_ffmpeg

    # 1. Check inputs: every frame there, one size.
    encoder, pix_fmt_out, output_params = video_encoding(codec, quality)
    paths = [Path(view) / frame_png_path(f) for f in frames]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot assemble the video: {len(missing)} frames missing, first {missing[0]}")
    first = _load_rgb(paths[0])
    height, width = first.shape[:2]
    # 2. Encode to a temporary name in the same folder, then rename.
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}{out_path.suffix}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=fps, codec=encoder, pix_fmt_out=pix_fmt_out, quality=None,
        macro_block_size=8, ffmpeg_log_level="error", output_params=output_params,
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
    columns = [None, *controls]  # the stylised frame, then each control image
    cells: list[list[np.ndarray]] = []
    for f in rows:
        cells.append([_load_rgb(view / (frame_png_path(f) if kind is None else control_png_path(kind, f))) for kind in columns])
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
    references: list[dict] | None = None,
) -> dict:
    """The shot's manifest (deterministic: no timestamps, no hosts).

    ``shot``: name, source, template_hash, resolved, overrides. ``records``: stage -> frame ->
    store record (``passes``, ``stylize``; ``scene`` -> unit: its ``files`` meta gives
    ``template.inputs``, the sha256 of every model file the scene read). ``shot_files``: relpath ->
    sha256 for whole-shot files. ``models``: ``ResolvedModels.manifest()`` when the diffusion
    stylizer ran. ``references``: the shot's checked reference images (``ReferenceFile.to_json()``),
    recorded with their sha256 under ``direction`` with every region and the frames each was applied to.
    """
    from passes.pass_exr import ALL_GROUPS, exr_channel_names

    resolved = shot["resolved"]
    per_frame: dict[str, dict[str, str]] = {}
    versions: dict[str, str | None] = {"greybox": GREYBOX_VERSION}
    consistency: dict = {"mode": None, "keyframes": [], "generated_frames": [], "denoising_steps": 0}
    steps_by_frame: dict[str, int] = {}
    warp_by_frame: dict[str, dict] = {}
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
                if "denoising_steps_frame" in meta:
                    steps_by_frame[frame_name(f)] = int(meta["denoising_steps_frame"])
                if meta.get("warp_error"):
                    warp_by_frame[frame_name(f)] = meta["warp_error"]
    style = resolved["style"]
    brand_entries, brand_sums = _brand_sums(records.get("stylize", {}), frames)
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
            "exr_channels": exr_channel_names(resolved["passes"].get("exr_channels", ALL_GROUPS)),
            "exr_compression": resolved["passes"].get("exr_compression", "none"),
            "control": list(resolved["passes"]["control"]),
        },
        "frames": per_frame,
        "files": dict(sorted(shot_files.items())),
    }
    scene_record = records.get("scene", {}).get("scene") or {}
    model_files = (scene_record.get("meta") or {}).get("files")
    if model_files:  # every model file the scene read, by its path from the template's folder
        manifest["template"]["inputs"] = dict(sorted(model_files.items()))
    if stylized:
        manifest["stylizer"] = style["stylizer"]
        manifest["models"] = models
        # Cost is counted as denoising steps: UNet evaluations, each batch element counted (a CFG pair is 2).
        consistency["denoising_steps_per_frame"] = consistency["denoising_steps"] / max(len(frames), 1)
        if steps_by_frame:
            consistency["denoising_steps_by_frame"] = steps_by_frame
        if warp_by_frame:  # render_farm.frame_figures: sequence modes, where cheap
            consistency["warp_error"] = _warp_error_summary(warp_by_frame)
        manifest["consistency"] = consistency
        if style.get("stylizer") == "diffusion" and (style.get("regions") or style.get("reference_images")):
            manifest["direction"] = _direction_manifest(style, records.get("stylize", {}), frames, references, models)
        look = _look_summary(records.get("look", {}), (style.get("look") or {}).get("from", ""))
        if look is not None:
            manifest["look"] = look
        if brand_entries:
            from scenes.brand_targets import pooled_figures

            manifest["brand_colors"] = [{**entry, **pooled_figures(brand_sums.get(str(k), []))}
                                        for k, entry in enumerate(brand_entries)]
            from scenes.brand_targets import contract_warning

            for entry in manifest["brand_colors"]:  # a target that misses the contract says so (job_execution prints it)
                warning = contract_warning(entry)
                if warning:
                    entry["warning"] = warning
    return manifest


def _brand_sums(stylize_records: dict, frames: list[int]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The brand colour entries the frames recorded, and per entry the figures' sums of each frame."""
    entries: list[dict] = []
    sums: dict[str, list[dict]] = {}
    for f in frames:
        record = stylize_records.get(f)
        brand = ((record or {}).get("meta") or {}).get("brand_colors")
        if not brand:
            continue
        if len(brand["entries"]) > len(entries):
            entries = brand["entries"]
        for k, s in brand["sums"].items():
            sums.setdefault(k, []).append(s)
    return entries, sums


def _look_summary(look_records: dict, requested: str = "") -> dict | None:
    """The manifest's ``look``: its id, where it started from (the source look's id, and how this shot's
    ``style.look.from`` named it: ``requested``), and per atlas its key, size, texels seen and never seen
    and how those were filled (the look unit's record), and the generation's figures."""
    import re

    look = look_records.get("look")
    if look is None:
        return None
    record = look.get("meta", {}).get("look") or {}
    source = record.get("from")
    if source:
        requested = (requested or "").strip()
        kind = "previous" if requested == "previous" else "id" if re.fullmatch(r"[0-9a-f]{64}", requested) else "folder"
        source = {"id": source["id"], "kind": kind, **({"path": requested} if kind == "folder" else {})}
    atlases = {}
    for name, entry in record.get("atlases", {}).items():
        unit = look_records.get(f"atlas:{name}")
        atlases[name] = {**{k: v for k, v in entry.items() if k != "file"}, "key": unit["key"] if unit else None}
    return {"id": look["key"], "from": source, "generation": record.get("generation"),
            "generation_key": (look_records.get("generation") or {}).get("key"),
            "never_seen_texels": sum(a.get("never_seen", 0) for a in atlases.values()),
            "fill": {"seen_texels": "as the views painted them (16-bit)",
                     "never_seen_texels": "push-pull (Gortler et al. 1996) from the seen texels of the same atlas; an "
                                          "object no view saw: its flat NPR class colour (the background: the NPR sky)"},
            "atlases": atlases}


def _direction_manifest(style: dict, stylize_records: dict, frames: list[int], references: list[dict] | None,
                        models: dict | None) -> dict:
    """Every region and reference image of the style, each with the frames it was applied to (a
    frame's record says which), the reference images with their sha256, and the IP-Adapter."""
    applied: dict[str, dict[int, list[int]]] = {"regions": {}, "reference_images": {}}
    for f in frames:
        directed = (stylize_records.get(f) or {}).get("meta", {}).get("directed") or {}
        for table in applied:
            for i in directed.get(table, []):
                applied[table].setdefault(int(i), []).append(f)
    regions = [{"index": i, **region, "frames": applied["regions"].get(i, [])} for i, region in enumerate(style.get("regions", []))]
    images = []
    for i, entry in enumerate(style.get("reference_images", [])):
        checked = (references or [])[i] if references and i < len(references) else {}
        images.append({"index": i, **entry, "sha256": checked.get("sha256"), "size": checked.get("size"),
                       "frames": applied["reference_images"].get(i, [])})
    record = {"regions": regions, "reference_images": images}
    if images:
        record["ip_adapter"] = (models or {}).get("ip_adapter")
    return record


def _warp_error_summary(by_frame: dict[str, dict]) -> dict:
    """Means of the per-frame E_warp figures (frames without a figure left out), and the figures."""
    summary: dict = {"flow": "exact (renderer ground truth)"}
    for key in ("short_mae", "long_mae"):
        values = [entry[key] for entry in by_frame.values() if entry.get(key) is not None]
        if values:
            summary[key] = sum(values) / len(values)
    summary["by_frame"] = dict(sorted(by_frame.items()))
    return summary


def write_manifest(view: Path, manifest: dict) -> str:
    from greybox.confined_files import write_json

    return write_json(view, "manifest.json", manifest)
