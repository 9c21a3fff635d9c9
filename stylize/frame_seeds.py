"""The noise seed of each frame, derived from the style seed.

``per_frame``: frame f's seed is the first 8 bytes of sha256("greybox-frame-seed:<seed>:<f>"),
as an unsigned integer below 2**63, so neighbouring frames get unrelated noise and the seed of a
frame never depends on which other frames are rendered. ``fixed``: every frame uses the style
seed itself (the same noise for every frame). Both are recorded in the manifest.
"""

from __future__ import annotations

import hashlib

SEED_MODES = ("per_frame", "fixed")


def frame_seed(style_seed: int, frame: int, seed_mode: str) -> int:
    """The noise seed (0 <= seed < 2**63) of ``frame`` for the job's ``style_seed`` and ``seed_mode``."""
    if isinstance(style_seed, bool) or not isinstance(style_seed, int) or style_seed < 0:
        raise ValueError(f"style seed must be a non-negative integer, got {style_seed!r}")
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise ValueError(f"frame must be a non-negative integer, got {frame!r}")
    if seed_mode == "fixed":
        return style_seed
    if seed_mode == "per_frame":
        digest = hashlib.sha256(f"greybox-frame-seed:{style_seed}:{frame}".encode("ascii")).digest()
        return int.from_bytes(digest[:8], "big") >> 1
    raise ValueError(f"seed_mode {seed_mode!r} is not one of {', '.join(SEED_MODES)}")


def frame_seeds(style_seed: int, frames: list[int], seed_mode: str) -> dict[int, int]:
    """``{frame: seed}`` for several frames (what the manifest records)."""
    return {f: frame_seed(style_seed, f, seed_mode) for f in frames}
