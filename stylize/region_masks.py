"""Region masks from the exact passes, and the per-pixel weight of each prompt at every attention resolution.

A frame's prompts are the global ``style.prompt`` (prompt 0) and the regions that touch the frame
(prompts 1..K, in template order). :func:`owner_map` gives each output pixel exactly one owner:
the last region whose targets (:class:`scenes.style_regions.Targets`) hold the pixel's instance id
(instance pass) or class id (class pass), else the global prompt. The masks are the passes' own
pixels: no anti-aliasing, no dilation, no threshold.

The mask rule (:func:`attention_weights`). The UNet's attention layers see the latent grid
(output size / 8) and its halvings (each side ``ceil(side / 2)``, as the stride-2 convolutions
make them). A cell of the grid at level ``l`` is nominally ``c = 8 * 2**l`` output pixels square
(the cells of the last row and column cover only the pixels inside the image). The weight of
prompt ``p`` in a cell is the share of the cell's output pixels that ``p`` owns::

    w_p(cell) = |{x in cell : owner(x) = p}| / |{x in cell}|

So, at every level:

- the weights of a cell lie in [0, 1] and sum to exactly 1 (each cell gets one prompt's worth of
  conditioning, split by area where an object boundary crosses it);
- a prompt has weight 0 in every cell that holds none of its pixels: nothing bleeds across an
  object boundary (no blur, dilation or interpolation moves weight past the cells the object's own
  output pixels reach), and weight 1 in every cell wholly inside its pixels;
- every level is computed from the output-resolution masks, not from the level below, so a small
  object keeps full weight where the cells are small: a 32x32-pixel object at 512x512 has weight 1
  on 4x4 cells of the 64x64 level and 2x2 of the 32x32 level, where the deepest 8x8 level (64-pixel
  cells) holds it at a quarter of one cell and a mask made there alone would lose it.

The cross-attention processors (:mod:`stylize.directed_attention`) attend to each prompt
separately and blend the results per cell with these weights. A masked reference image's
IP-Adapter term is gated by the same rule (:func:`mask_weights`: the share of the cell's output
pixels inside the objects' :func:`target_mask`), given to the adapter at each level's own grid, so
diffusers' bicubic resampling of ``ip_adapter_masks`` is the identity there and a small object keeps
its image where the cells are small (a bicubic downsampling of the full-resolution mask loses an
object of a few pixels, and its ringing bleeds past the object's cells). Its locality in the output
comes from the masked composite (:mod:`stylize.reference_adapter`). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LATENT_SCALE = 8


def target_mask(instance_id: np.ndarray, class_id: np.ndarray, targets) -> np.ndarray:
    """(H, W) bool: the pixels of ``targets`` (a :class:`scenes.style_regions.Targets`)."""
    if targets.whole_frame:
        return np.ones(instance_id.shape, dtype=bool)
    mask = np.zeros(instance_id.shape, dtype=bool)
    if targets.instance_ids:
        mask |= np.isin(instance_id, np.fromiter(targets.instance_ids, dtype=np.int64))
    if targets.class_ids:
        mask |= np.isin(class_id, np.fromiter(targets.class_ids, dtype=np.int64))
    return mask


def owner_map(instance_id: np.ndarray, class_id: np.ndarray, region_targets: list) -> np.ndarray:
    """(H, W) int16: 0 where the global prompt applies, ``k + 1`` where region ``region_targets[k]``
    does (the last region that names a pixel owns it)."""
    owner = np.zeros(instance_id.shape, dtype=np.int16)
    for k, targets in enumerate(region_targets):
        owner[target_mask(instance_id, class_id, targets)] = k + 1
    return owner


def attention_grids(height: int, width: int, levels: int = 6) -> list[tuple[int, int, int]]:
    """``(rows, columns, cell size in output pixels)`` of the latent grid and its halvings."""
    if height % LATENT_SCALE or width % LATENT_SCALE:
        raise ValueError(f"size {width}x{height} must be a multiple of {LATENT_SCALE}")
    grids = []
    rows, cols, cell = height // LATENT_SCALE, width // LATENT_SCALE, LATENT_SCALE
    for _ in range(levels):
        grids.append((rows, cols, cell))
        if rows == 1 and cols == 1:
            break
        rows, cols, cell = -(-rows // 2), -(-cols // 2), cell * 2
    return grids


def level_weights(owner: np.ndarray, prompts: int, rows: int, cols: int, cell: int) -> np.ndarray:
    """(prompts, rows * cols) float32: the area share of each prompt in each cell (row-major, as the
    attention layers flatten their tokens). See the module docstring."""
    height, width = owner.shape
    if rows != -(-height // cell) or cols != -(-width // cell):
        raise ValueError(f"a {rows}x{cols} grid of {cell}-pixel cells does not tile {width}x{height}")
    if owner.min(initial=0) < 0 or owner.max(initial=0) >= prompts:
        raise ValueError(f"owner map holds prompts outside 0..{prompts - 1}")
    cell_of = (np.arange(height) // cell)[:, None] * cols + (np.arange(width) // cell)[None, :]
    counts = np.bincount((owner.astype(np.int64) * (rows * cols) + cell_of).ravel(), minlength=prompts * rows * cols)
    counts = counts.reshape(prompts, rows * cols).astype(np.float64)
    return (counts / counts.sum(axis=0, keepdims=True)).astype(np.float32)


def attention_weights(owner: np.ndarray, prompts: int, levels: int = 6) -> dict[int, np.ndarray]:
    """``{tokens: (prompts, tokens) float32}`` for each attention grid (tokens = rows x columns)."""
    height, width = owner.shape
    return {rows * cols: level_weights(owner, prompts, rows, cols, cell)
            for rows, cols, cell in attention_grids(height, width, levels)}


def mask_weights(mask: np.ndarray, levels: int = 6) -> dict[int, np.ndarray]:
    """``{tokens: (rows, columns) float32}``: per attention grid, the share of each cell's output
    pixels inside ``mask`` ((H, W) bool), the rule above for one region against the rest."""
    height, width = mask.shape
    owner = mask.astype(np.int16)
    return {rows * cols: level_weights(owner, 2, rows, cols, cell)[1].reshape(rows, cols)
            for rows, cols, cell in attention_grids(height, width, levels)}


@dataclass
class FrameDirection:
    """What directs one frame, from its passes: the ``style.regions`` it shows (indices, template
    order) and their :func:`owner_map` (``owner``: 0 global, ``k + 1`` = ``regions[k]``), the
    whole-frame reference images (``references``) and the masked ones it shows, with their masks
    (``masked``: (index, (H, W) bool)). A region or masked reference image whose pixels the frame
    does not show is not in it: such a frame is rendered exactly as without it."""

    frame: int
    regions: tuple[int, ...] = ()
    owner: np.ndarray | None = None
    references: tuple[int, ...] = ()
    masked: tuple[tuple[int, np.ndarray], ...] = ()

    @property
    def directed(self) -> bool:
        return bool(self.regions or self.references or self.masked)

    def record(self) -> dict:
        """What the frame's store record and the manifest say was applied."""
        return {"regions": list(self.regions),
                "reference_images": sorted([*self.references, *(i for i, _ in self.masked)])}


def frame_direction(frame: int, instance_id: np.ndarray, class_id: np.ndarray, region_targets: list,
                    reference_targets: list) -> FrameDirection:
    """The :class:`FrameDirection` of a frame from its instance and class passes and the style's
    targets (:func:`scenes.style_regions.resolve_targets`)."""
    full = owner_map(instance_id, class_id, region_targets)
    present = [int(p) for p in np.unique(full) if p > 0]
    remap = np.zeros(len(region_targets) + 1, dtype=np.int16)
    for k, p in enumerate(present):
        remap[p] = k + 1
    masked = []
    for i, targets in enumerate(reference_targets):
        if not targets.whole_frame:
            mask = target_mask(instance_id, class_id, targets)
            if mask.any():
                masked.append((i, mask))
    return FrameDirection(
        frame=int(frame), regions=tuple(p - 1 for p in present), owner=remap[full] if present else None,
        references=tuple(i for i, t in enumerate(reference_targets) if t.whole_frame), masked=tuple(masked),
    )
