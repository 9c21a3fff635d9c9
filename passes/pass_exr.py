"""``DIR/passes/NNNN.exr``: one frame's metric passes in our own single-part EXR, byte-identical on reruns.

Written with the ``OpenEXR`` package from the :class:`FramePasses` arrays (never Blender's own file,
whose header carries render times). The file holds the pass groups ``passes.exr_channels`` names
(:data:`passes.frame_passes.EXR_GROUPS`, all by default):

- the passes, named as in :data:`passes.frame_passes.EXR_CHANNELS`: float32 for the float passes,
  uint32 for ``instance.id`` and ``class.id``;
- ``float_ids``: ``instance_float.id`` and ``class_float.id``, float32 copies of the ids (exact,
  since ids stay far below 2^24), for readers that turn uint32 into normalised floats
  (OpenImageIO and everything built on it read id 1 as 2.3e-10);
- ``cryptomatte``: the ``CryptoObject`` and ``CryptoMaterial`` layers and their manifests
  (:mod:`passes.cryptomatte`), built from the scene's names.

The header is fixed: scanline image, increasing Y, the compression ``passes.exr_compression`` names
(none by default), a ``greybox.frame`` integer, a ``greybox.passes_version`` string and the
Cryptomatte metadata; no dates, host names or timings.

Compression, measured on the living room at 512^2 (the 13 pass channels): none 13.3 MB in ~7 ms;
RLE 10.8 MB, ~26 ms; ZIP 5.0 MB, ~90 ms; ZSTD 2.5 MB, ~65 ms; PIZ 5.8 MB, ~190 ms (CPU time). The
float passes (flow, UV, depth) barely compress, and any codec but none breaks the 0.15 s per frame
budget, so files are uncompressed unless the template asks. Only lossless codecs are offered.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from greybox.atomic_files import write_bytes_atomic
from passes.frame_passes import EXR_CHANNELS, EXR_GROUPS, FramePasses, channels_of_groups

PASSES_VERSION = "2"
_ID_FIELDS = ("instance_id", "class_id")
ALL_GROUPS = tuple(EXR_GROUPS)
# passes.exr_compression -> OpenEXR's name. Lossless only: PXR24 rounds float32 to 24 bits, B44 and
# DWA are lossy, and any of them would break the exact depth, flow and ids.
COMPRESSIONS = {
    "none": "NO_COMPRESSION", "rle": "RLE_COMPRESSION", "zips": "ZIPS_COMPRESSION", "zip": "ZIP_COMPRESSION",
    "piz": "PIZ_COMPRESSION", "zstd": "ZSTD_COMPRESSION",
}
FLOAT_ID_CHANNELS = {"instance_float.id": "instance_id", "class_float.id": "class_id"}


def _compression(name: str):
    import OpenEXR

    if name not in COMPRESSIONS:
        raise ValueError(f"EXR compression {name!r}: use one of {', '.join(COMPRESSIONS)}")
    return getattr(OpenEXR, COMPRESSIONS[name])


def exr_channel_names(groups=ALL_GROUPS) -> list[str]:
    """Every channel a file with ``groups`` holds, sorted as OpenEXR stores them."""
    from passes.cryptomatte import CLASS_LAYER, OBJECT_LAYER

    names = list(channels_of_groups(groups))
    if "float_ids" in groups:
        names += list(FLOAT_ID_CHANNELS)
    if "cryptomatte" in groups:
        names += [f"{layer}00.{c}" for layer in (OBJECT_LAYER, CLASS_LAYER) for c in "RGBA"]
    return sorted(names)


def writer_bytes_per_pixel(groups=ALL_GROUPS) -> int:
    """Bytes a pixel :func:`encode_passes_exr` holds at once for ``groups``: the file's pixels, the
    contiguous copies of the multi-component passes' planes and the planes it derives (float ids;
    Cryptomatte's two id planes, one shared coverage plane and one shared zero plane). The memory
    estimate of a passes task adds what a layout holds beyond the one it was calibrated with."""
    file_bytes = 4 * len(exr_channel_names(groups))
    copies = 4 * sum(1 for _, component in channels_of_groups(groups).values() if component is not None)
    derived = (8 if "float_ids" in groups else 0) + (16 if "cryptomatte" in groups else 0)
    return file_bytes + copies + derived


def encode_passes_exr(passes: FramePasses, scene=None, *, groups=None, compression: str = "none") -> memoryview:
    """The EXR file's bytes for ``passes`` (deterministic: identical inputs give identical bytes),
    as a read-only view of the encoder's buffer (no copy: 54 MB at 1024^2).

    ``scene`` (anything with ``objects`` carrying ``name``, ``instance_id``, ``semantic_class_id``)
    names the Cryptomatte ids. ``groups``: the pass groups to write (``passes.exr_channels``); a
    ``cryptomatte`` asked for without a scene is an error. None: every group, Cryptomatte only when
    a scene is given.
    """
    import OpenEXR

    if groups is None:
        groups = ALL_GROUPS if scene is not None else tuple(g for g in ALL_GROUPS if g != "cryptomatte")
    unknown = sorted(set(groups) - set(EXR_GROUPS))
    if unknown:
        raise ValueError(f"unknown EXR pass groups {unknown}; use some of {', '.join(EXR_GROUPS)}")
    channels: dict[str, np.ndarray] = {}
    for name, (field, component) in channels_of_groups(groups).items():
        array = getattr(passes, field)
        plane = array if component is None else array[..., component]
        dtype = np.uint32 if field in _ID_FIELDS else np.float32
        channels[name] = np.ascontiguousarray(plane, dtype=dtype)
    header = {
        "compression": _compression(compression),
        "type": OpenEXR.scanlineimage,
        "lineOrder": OpenEXR.INCREASING_Y,
        "greybox.frame": int(passes.frame),
        "greybox.passes_version": PASSES_VERSION,
    }
    if "float_ids" in groups:
        for name, field in FLOAT_ID_CHANNELS.items():
            channels[name] = getattr(passes, field).astype(np.float32)  # exact: ids < 2^24
    if "cryptomatte" in groups:
        if scene is None:
            raise ValueError("the cryptomatte pass group needs the scene (its objects' names)")
        from passes.cryptomatte import scene_layers

        object_layer, class_layer = scene_layers(scene)
        # Every object has a class, so both layers cover the same pixels: one coverage plane and one
        # plane of zeros (the empty rank 1) serve both.
        coverage = (passes.instance_id > 0).astype(np.float32)
        empty = np.zeros(coverage.shape, dtype=np.float32)
        channels.update(object_layer.channels(passes.instance_id, coverage, empty))
        channels.update(class_layer.channels(passes.class_id, coverage, empty))
        header.update(object_layer.header())
        header.update(class_layer.header())
    buffer = io.BytesIO()
    with OpenEXR.File(header, channels) as exr:
        exr.write(buffer)
    return buffer.getbuffer().toreadonly()


def write_passes_exr(path: str | os.PathLike, passes: FramePasses, scene=None, *, groups=None,
                     compression: str = "none") -> str:
    """Write ``passes`` to ``path`` atomically (temporary name in the same folder, then rename); return its sha256."""
    return write_bytes_atomic(Path(path), encode_passes_exr(passes, scene, groups=groups, compression=compression))


def read_passes_exr(path: str | os.PathLike) -> FramePasses:
    """Read a file written by :func:`write_passes_exr` back into :class:`FramePasses` (exact round trip).

    A field whose group the file does not hold (``passes.exr_channels``) is ``None``; a file with
    only part of a group's channels is refused.
    """
    import OpenEXR

    path = Path(path)
    wanted = {name for name in EXR_CHANNELS}
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        frame = int(exr.header().get("greybox.frame", -1))  # read inside: the header dict is emptied on close
        planes = {name: channel.pixels for name, channel in exr.channels().items() if name in wanted}
    if not planes:
        raise ValueError(f"{path}: not a greybox passes EXR (none of the channels {', '.join(EXR_CHANNELS)})")
    grouped: dict[str, dict[int | None, np.ndarray]] = {}
    for name, (field, component) in EXR_CHANNELS.items():
        if name in planes:
            grouped.setdefault(field, {})[component] = planes[name]
    fields: dict[str, np.ndarray | None] = {field: None for field, _ in EXR_CHANNELS.values()}
    for field, parts in grouped.items():
        expected = [c for f, c in EXR_CHANNELS.values() if f == field]
        if sorted(parts, key=str) != sorted(expected, key=str):
            missing = [n for n, (f, c) in EXR_CHANNELS.items() if f == field and c not in parts]
            raise ValueError(f"{path}: not a greybox passes EXR, channels {missing} are missing")
        if None in parts:
            fields[field] = np.ascontiguousarray(parts[None])
        else:
            fields[field] = np.stack([parts[i] for i in sorted(parts)], axis=-1)
    for field in _ID_FIELDS:
        if fields[field] is not None:
            fields[field] = fields[field].astype(np.uint32, copy=False)
    return FramePasses(frame=frame, **fields)
