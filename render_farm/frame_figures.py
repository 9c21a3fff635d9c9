"""Per-frame figures of a stylised sequence, recorded with its frames: E_warp short and long range.

The sequence modes (``flow_warp``, ``keyframes``) are one task per shot; when it has written its
frames, :func:`sequence_warp_error` measures them with :func:`stylize.warp_error.warp_error`
against the exact passes of the job's view, frame by frame, and the task stores the result in each
frame's unit record (it is deterministic: the same frames and passes give the same numbers). The
manifest sums it up and the review page plots it.

Only when it is cheap next to the stylisation. Measured on the project's shared 2-core CPU machine
(living room, 6 frames, load about 7): reading a frame's EXR and PNG 0.04 s at 256x256, 0.1 s at
512x512; short range 0.30 s a frame at 256x256, 0.83 s at 512x512; long range 7.4 s and 12.7 s (its
nearest-UV candidate search in :class:`stylize.warp_error.SurfaceLookup`, not the pixel count,
dominates), against seconds to minutes of diffusion a frame. So: short range up to
``SHORT_RANGE_MAX_PIXELS`` pixels a frame, long range up to ``LONG_RANGE_MAX_PIXELS``. The limits
are on pixels, not on time taken, so whether a figure exists never depends on the machine.
"""

from __future__ import annotations

import math
from pathlib import Path

from greybox.frame_files import frame_name, pass_exr_path

SHORT_RANGE_MAX_PIXELS = 512 * 512
LONG_RANGE_MAX_PIXELS = 128 * 128


def warp_error_ranges(width: int, height: int) -> tuple[bool, bool]:
    """(short range, long range): which E_warp figures a sequence at this size gets."""
    pixels = int(width) * int(height)
    return pixels <= SHORT_RANGE_MAX_PIXELS, pixels <= LONG_RANGE_MAX_PIXELS


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def sequence_warp_error(view: Path, frames_dir: Path, frames: list[int], width: int, height: int) -> dict[int, dict]:
    """``{frame: {"short_mae", "long_mae", "short_valid", "long_valid"}}`` for ``frames[1:]``, or ``{}``.

    ``view``: the job view holding ``passes/NNNN.exr``; ``frames_dir``: the folder holding the
    sequence's ``NNNN.png``. A figure that is not computed (too large, see the module docstring) is
    absent; one with no pixel to compare is None.
    """
    short, long = warp_error_ranges(width, height)
    if not short or len(frames) < 2:
        return {}
    import numpy as np
    from PIL import Image

    from passes.pass_exr import read_passes_exr
    from stylize.warp_error import warp_error

    shot_passes = [read_passes_exr(Path(view) / pass_exr_path(f)) for f in frames]
    images = []
    for f in frames:
        with Image.open(Path(frames_dir) / f"{frame_name(f)}.png") as image:
            images.append(np.asarray(image.convert("RGB")))
    report = warp_error(images, shot_passes, long_range=long)
    out: dict[int, dict] = {}
    for i, f in enumerate(frames[1:]):
        entry = {"short_mae": _finite_or_none(report.short_mae_per_frame[i]),
                 "short_valid": _finite_or_none(report.short_valid_fraction[i])}
        if long:
            entry["long_mae"] = _finite_or_none(report.long_mae_per_frame[i])
            entry["long_valid"] = _finite_or_none(report.long_valid_fraction[i])
        out[f] = entry
    return out
