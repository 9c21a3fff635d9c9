"""Mode ``keyframes``: stylise a few keyframes, project them into texture atlases, gather every frame from them.

Keyframes are chosen along the camera path by coverage; each is projected into per-object texture
atlases (:mod:`stylize.texture_atlas`) through the exact geometry, and every frame is produced by
gathering from the atlases with its own UV and instance passes. Only the pixels no keyframe saw
are generated, and what is generated is written back so later frames reuse it.

- :func:`select_keyframes`: walk the frames; frame 1 is a keyframe; add one when the share of the
  frame's pixels not yet textured exceeds the threshold (capped).
- :func:`run_keyframe_sequence`: the whole mode over a ``generate`` callback (diffusion inpainting
  or the NPR stylizer), so the orchestration is tested without model weights.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from passes.frame_passes import FramePasses
from stylize.image_operations import to_uint8
from stylize.texture_atlas import AtlasSet


def significant_unseen(unseen: np.ndarray) -> np.ndarray:
    """Unseen pixels with at least 3 unseen pixels in their 3x3 neighbourhood (themselves included):
    isolated ones (grazing texels, pixel-grid rounding) are left to the atlases' push-pull fill."""
    padded = np.pad(unseen.astype(np.int32), 1)
    h, w = unseen.shape
    count = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return unseen & (count >= 3)


def select_keyframes(atlases: AtlasSet, shot_passes: list[FramePasses], *, threshold: float, max_keyframes: int) -> list[int]:
    """Keyframes by coverage: the first frame, then each frame whose share of pixels showing surface
    not yet textured by an earlier keyframe exceeds ``threshold``; at most ``max_keyframes``.

    With atlases that already hold texels (a look the shot starts from), the first frame is a
    keyframe only when it too shows more untextured surface than ``threshold``. Leaves the atlases
    as they were (it only uses their geometry and what they know). Returns frame numbers in order.
    """
    started_empty = not any(a.known.any() for a in atlases.atlases())
    saved = [(a, a.known.copy(), a.filled) for a in atlases.atlases()]
    keyframes: list[int] = []
    try:
        for p in shot_passes:
            if len(keyframes) >= max_keyframes:
                break
            if (started_empty and not keyframes) or atlases.unseen_share(p) > threshold:
                keyframes.append(p.frame)
                atlases.mark_seen(p)
    finally:
        for atlas, known, filled in saved:
            atlas.known[:] = known
            atlas.filled = filled
    return keyframes


class GenerateFn(Protocol):
    def __call__(self, frame: int, init: np.ndarray | None, generate_mask: np.ndarray | None) -> np.ndarray:
        """Stylise ``frame``: ``init`` (H, W, 3) float 0..1 is the content to keep outside
        ``generate_mask`` (H, W) bool (None: generate the whole frame). Returns (H, W, 3) uint8 or float 0..1."""


@dataclass
class KeyframeResult:
    frames: dict[int, np.ndarray]  # frame -> (H, W, 3) uint8
    keyframes: list[int]
    generated_frames: list[int]  # every frame that ran the generator, in the order it ran (keyframes first)
    generated_pixels: dict[int, int]
    # per frame that ran the generator: the pixels it generated (H, W) bool; its ``frames`` entry
    # holds them (and the atlas gather elsewhere), and it wrote them back into the atlases in that order
    generated_masks: dict[int, np.ndarray] = field(default_factory=dict)


def run_keyframe_sequence(
    atlases: AtlasSet,
    shot_passes: list[FramePasses],
    generate: GenerateFn | Callable,
    *,
    threshold: float,
    max_keyframes: int,
    min_generate_pixels: int = 16,
    lookahead: int = 24,
) -> KeyframeResult:
    """Mode ``keyframes`` over a generator callback.

    1. Select keyframes by coverage. 2. Stylise them in order: the first alone; each later one
    gathers what earlier keyframes textured and generates only the rest (so keyframes agree with
    each other); each is projected into the atlases (texels not yet known). 3. Every other frame,
    in order: gather from the atlases; if more than ``min_generate_pixels`` pixels show surface no
    keyframe saw (not counting isolated ones: fewer than 3 unseen in their 3x3 neighbourhood),
    generate them by inpainting -- at the frame up to ``lookahead`` ahead that shows
    the most untextured surface first, since the same new surface keeps entering an orbit -- and
    write what was generated back into the atlases. Fewer untextured pixels than that are filled
    from the atlases' push-pull fill. Every pixel outside the generated mask is the atlas gather,
    bit for bit.
    """
    # 1. Check inputs, then choose keyframes
    if not shot_passes:
        raise ValueError("run_keyframe_sequence got no frames")
    if not 0 < threshold < 1:
        raise ValueError(f"keyframe coverage threshold {threshold} must be in (0, 1)")
    if max_keyframes < 1:
        raise ValueError(f"max_keyframes {max_keyframes} must be at least 1")
    keyframes = select_keyframes(atlases, shot_passes, threshold=threshold, max_keyframes=max_keyframes)
    by_frame = {p.frame: p for p in shot_passes}
    order = [p.frame for p in shot_passes]
    frames: dict[int, np.ndarray] = {}
    generated: list[int] = []
    generated_pixels: dict[int, int] = {}
    generated_masks: dict[int, np.ndarray] = {}

    def produce(frame: int, force_mask: bool) -> None:
        p = by_frame[frame]
        gathered, seen = atlases.gather(p)
        mask = ~seen
        if not any(a.known.any() for a in atlases.atlases()):
            out = to_uint8(np.asarray(generate(frame, None, None)))
            mask = np.ones_like(mask)
        elif (mask.any() if force_mask else needs_generation(mask)):
            result = np.asarray(generate(frame, gathered, mask))
            out = np.where(mask[..., None], to_uint8(result), to_uint8(gathered))
        else:
            out = to_uint8(gathered)
            mask = np.zeros_like(mask)
        if mask.any():
            generated.append(frame)
            generated_pixels[frame] = int(mask.sum())
            generated_masks[frame] = mask
            atlases.write_pixels(out.astype(np.float64) / 255.0, p, mask)
        frames[frame] = out

    def needs_generation(unseen: np.ndarray) -> bool:
        return int(significant_unseen(unseen).sum()) > min_generate_pixels

    # 2. Keyframes first, each generating only what earlier ones did not texture
    for k in keyframes:
        produce(k, force_mask=True)
    # 3. The rest, in order
    for i, frame in enumerate(order):
        if frame in frames:
            continue
        seen = atlases.seen_pixels(by_frame[frame])
        if needs_generation(~seen) and lookahead > 0:
            window = [f for f in order[i + 1 : i + 1 + lookahead] if f not in frames and f not in keyframes]
            best, best_count = None, int(significant_unseen(~seen).sum())
            for f in window:
                count = int(significant_unseen(~atlases.seen_pixels(by_frame[f])).sum())
                if count > best_count:
                    best, best_count = f, count
            if best is not None:
                produce(best, force_mask=False)
        produce(frame, force_mask=False)
    return KeyframeResult(frames=frames, keyframes=keyframes, generated_frames=generated, generated_pixels=generated_pixels,
                          generated_masks=generated_masks)
