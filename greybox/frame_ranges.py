"""Frame selections (``--frames 1-12,20,30-32``) and fixed-boundary chunks of frames.

The one parser of ``--frames`` for the CLI, the farm and ``passes/blender_entry.py`` (which runs in
a studio's Blender, so this module needs nothing but the standard library and ``greybox.errors``).
"""

from __future__ import annotations

from greybox.errors import InputError


def parse_frames(text: str | None, frame_start: int, frame_end: int) -> list[int]:
    """Parse inclusive ranges and lists (``'1-12,20,30-32'``) inside ``frame_start..frame_end``.

    ``None`` or an empty string selects the whole range. Returns sorted unique frames; raises
    :class:`InputError` (exit 2) naming the bad part and the allowed range.
    """
    if text is None or not str(text).strip():
        return list(range(frame_start, frame_end + 1))
    allowed = f"frames inside the template's range {frame_start}-{frame_end}, e.g. --frames {frame_start}-{frame_end}"
    frames: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise InputError(f"--frames {text!r}: empty item; use ranges and lists like 1-12,20,30-32")
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise InputError(f"--frames {text!r}: {part!r} is not a frame or an inclusive range A-B") from None
        if hi < lo:
            raise InputError(f"--frames {text!r}: range {part!r} ends before it starts; write {hi}-{lo}")
        if lo < frame_start or hi > frame_end:
            raise InputError(f"--frames {text!r}: {part!r} is outside the template's range; allowed: {allowed}")
        frames.update(range(lo, hi + 1))
    return sorted(frames)


def format_frames(frames: list[int]) -> str:
    """Compact inverse of :func:`parse_frames`: [1,2,3,7] -> '1-3,7'."""
    parts: list[str] = []
    frames = sorted(frames)
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)


def chunk_frames(frames: list[int], chunk_size: int, frame_start: int) -> list[list[int]]:
    """Contiguous chunks aligned to fixed boundaries counted from ``frame_start``.

    Frame f belongs to chunk ``(f - frame_start) // chunk_size`` whichever frames a run selects, so
    a chunk's frames (and the batch boundaries of stages that batch) do not depend on the selection.
    """
    if chunk_size < 1:
        raise InputError(f"--chunk-size {chunk_size}: must be at least 1")
    chunks: dict[int, list[int]] = {}
    for f in sorted(frames):
        chunks.setdefault((f - frame_start) // chunk_size, []).append(f)
    return [chunks[k] for k in sorted(chunks)]
