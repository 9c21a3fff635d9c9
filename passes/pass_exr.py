"""``DIR/passes/NNNN.exr``: one frame's metric passes in our own single-part EXR, byte-identical on reruns.

Written with the ``OpenEXR`` package from the :class:`FramePasses` arrays (never Blender's own file,
whose header carries render times). Channels are named as in
:data:`passes.frame_passes.EXR_CHANNELS`: float32 for the float passes, uint32 for the ids.
The header is fixed: scanline image, increasing Y, no compression, a ``greybox.frame`` integer and
a ``greybox.passes_version`` string; no dates, host names or timings.

Compression, measured on the living room at 512^2 (13 channels): none 13.3 MB in ~7 ms; RLE
10.8 MB, ~26 ms; ZIP 5.0 MB, ~90 ms; ZSTD 2.5 MB, ~65 ms; PIZ 5.8 MB, ~190 ms (CPU time). The
float passes (flow, UV, depth) barely compress, and any codec but none breaks the 0.15 s per
frame budget, so files are uncompressed; :data:`COMPRESSION` is the one place to change that.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from greybox.atomic_files import write_bytes_atomic
from passes.frame_passes import EXR_CHANNELS, FramePasses

PASSES_VERSION = "1"
_ID_FIELDS = ("instance_id", "class_id")


COMPRESSION = "NO_COMPRESSION"  # an OpenEXR compression name; part of the file format (hashes change with it)


def _compression():
    import OpenEXR

    return getattr(OpenEXR, COMPRESSION)


def encode_passes_exr(passes: FramePasses) -> memoryview:
    """The EXR file's bytes for ``passes`` (deterministic: identical arrays give identical bytes),
    as a read-only view of the encoder's buffer (no copy: 54 MB at 1024^2)."""
    import OpenEXR

    channels: dict[str, np.ndarray] = {}
    for name, (field, component) in EXR_CHANNELS.items():
        array = getattr(passes, field)
        plane = array if component is None else array[..., component]
        dtype = np.uint32 if field in _ID_FIELDS else np.float32
        channels[name] = np.ascontiguousarray(plane, dtype=dtype)
    header = {
        "compression": _compression(),
        "type": OpenEXR.scanlineimage,
        "lineOrder": OpenEXR.INCREASING_Y,
        "greybox.frame": int(passes.frame),
        "greybox.passes_version": PASSES_VERSION,
    }
    buffer = io.BytesIO()
    with OpenEXR.File(header, channels) as exr:
        exr.write(buffer)
    return buffer.getbuffer().toreadonly()


def write_passes_exr(path: str | os.PathLike, passes: FramePasses) -> str:
    """Write ``passes`` to ``path`` atomically (temporary name in the same folder, then rename); return its sha256."""
    return write_bytes_atomic(Path(path), encode_passes_exr(passes))


def read_passes_exr(path: str | os.PathLike) -> FramePasses:
    """Read a file written by :func:`write_passes_exr` back into :class:`FramePasses` (exact round trip)."""
    import OpenEXR

    path = Path(path)
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        frame = int(exr.header().get("greybox.frame", -1))  # read inside: the header dict is emptied on close
        planes = {name: channel.pixels for name, channel in exr.channels().items()}
    missing = sorted(set(EXR_CHANNELS) - set(planes))
    if missing:
        raise ValueError(f"{path}: not a greybox passes EXR, channels {missing} are missing")
    grouped: dict[str, dict[int | None, np.ndarray]] = {}
    for name, (field, component) in EXR_CHANNELS.items():
        grouped.setdefault(field, {})[component] = planes[name]
    fields: dict[str, np.ndarray] = {}
    for field, parts in grouped.items():
        if None in parts:
            fields[field] = np.ascontiguousarray(parts[None])
        else:
            fields[field] = np.stack([parts[i] for i in sorted(parts)], axis=-1)
    for field in _ID_FIELDS:
        fields[field] = fields[field].astype(np.uint32, copy=False)
    return FramePasses(frame=frame, **fields)
