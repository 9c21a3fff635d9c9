"""The NPR (non-photorealistic) stylizer: toon shading from exact passes, no model weights.

It is the draft mode users iterate layout and camera with:

- toon shading from the normal pass with a key light fixed in WORLD space
  (``style.light_direction``, pointing towards the light): the camera-space normals are rotated to
  world space with the camera's rotation, so shading sticks to surfaces as the camera moves;
  ``max(0, n . l)`` is quantised into ``style.toon_levels`` bands;
- flat base colours per semantic class: ``style.palette`` by class name, else a colour derived
  deterministically from the class's ADE20K colour (desaturated and lightened, so rooms read as
  soft paint rather than the segmentation palette);
- the visible geometric lines (the ``lines`` control image: white on black) drawn on top in dark ink;
- a flat sky colour where no object is hit.

numpy only; the same inputs give the same bytes.
"""

from __future__ import annotations

import numpy as np

from scenes.semantic_palette import class_id_colours, resolve_class

SKY_COLOUR = (203, 219, 234)
INK_COLOUR = (34, 31, 40)
AMBIENT = 0.42  # brightness of a surface facing away from the key light
DEFAULT_DESATURATION = 0.45  # keep this share of the ADE20K colour's saturation
DEFAULT_LIGHTEN = 0.35  # blend this much towards white


def default_class_colours() -> np.ndarray:
    """(151, 3) float32 in [0, 1]: the default flat colour of each class id (row 0 unused).

    Derived from the ADE20K palette: pulled towards its own grey (desaturated) then towards
    white (lightened)."""
    ade = class_id_colours().astype(np.float32) / 255.0
    grey = ade.mean(axis=1, keepdims=True)
    soft = grey + (ade - grey) * DEFAULT_DESATURATION
    return soft + (1.0 - soft) * DEFAULT_LIGHTEN


def class_colour_table(palette: dict[str, list[int]]) -> np.ndarray:
    """(151, 3) float32 in [0, 1]: ``palette`` (class name -> RGB 0..255) over the defaults."""
    table = default_class_colours()
    for name, rgb in palette.items():
        table[resolve_class(name).class_id] = np.asarray(rgb, dtype=np.float32) / 255.0
    return table


def toon_bands(lambert: np.ndarray, levels: int) -> np.ndarray:
    """Quantise ``lambert`` in [0, 1] into ``levels`` flat bands, returned in [0, 1]
    (band k of 0..levels-1 maps to k / (levels - 1))."""
    band = np.floor(np.clip(lambert, 0.0, 1.0) * levels).clip(0, levels - 1)
    return (band / (levels - 1)).astype(np.float32)


def stylize_npr(passes, camera_to_world_rotation: np.ndarray, lines: np.ndarray | None, style) -> np.ndarray:
    """One frame in the NPR style: uint8 (H, W, 3).

    ``passes`` is the frame's ``FramePasses`` (camera-space ``normal``, ``class_id``,
    ``instance_id``); ``camera_to_world_rotation`` the 3x3 rotation of the camera in Blender camera
    axes (its columns are the camera's +X, +Y, +Z in world space); ``lines`` the ``lines`` control
    image (uint8 (H, W) or (H, W, 3), white lines on black) or None; ``style`` the template's
    ``StyleSpec`` (``light_direction``, ``toon_levels``, ``palette``).
    """
    # 1. Check inputs.
    height, width = passes.height, passes.width
    rotation = np.asarray(camera_to_world_rotation, dtype=np.float64)
    if rotation.shape != (3, 3) or not np.all(np.isfinite(rotation)):
        raise ValueError(f"camera_to_world_rotation must be a finite 3x3 matrix, got shape {rotation.shape}")
    if passes.normal.shape != (height, width, 3):
        raise ValueError(f"normal pass has shape {passes.normal.shape}, expected {(height, width, 3)}")
    if lines is not None:
        lines = np.asarray(lines)
        if lines.shape[:2] != (height, width) or lines.dtype != np.uint8:
            raise ValueError(f"lines image is {lines.dtype} {lines.shape}, expected uint8 {height}x{width}")
    # Orthonormalise (a matrix_world with scale still gives the rotation).
    u, _, vt = np.linalg.svd(rotation)
    rotation = u @ vt

    # 2. Normals to world space: n_world = R @ n_cam (row vectors: n_cam @ R^T), re-normalised.
    normal_cam = passes.normal.astype(np.float64)
    normal_world = normal_cam @ rotation.T
    length = np.linalg.norm(normal_world, axis=-1, keepdims=True)
    normal_world = normal_world / np.maximum(length, 1e-8)

    # 3. Toon shading from the world-fixed key light.
    light = np.asarray(style.light_direction, dtype=np.float64)
    light = light / np.linalg.norm(light)
    lambert = np.einsum("hwc,c->hw", normal_world, light)
    shade = AMBIENT + (1.0 - AMBIENT) * toon_bands(lambert, style.toon_levels)

    # 4. Flat colour per class, shaded; sky where nothing is hit.
    table = class_colour_table(style.palette)
    class_id = np.clip(passes.class_id.astype(np.int64), 0, table.shape[0] - 1)
    colour = table[class_id] * shade[..., None]
    background = (passes.instance_id == 0) | (class_id == 0) | (length[..., 0] < 1e-6)
    colour[background] = np.asarray(SKY_COLOUR, dtype=np.float64) / 255.0

    # 5. Lines on top in dark ink (their grey level is the ink's coverage).
    if lines is not None:
        coverage = (lines if lines.ndim == 2 else lines.max(axis=2)).astype(np.float64) / 255.0
        ink = np.asarray(INK_COLOUR, dtype=np.float64) / 255.0
        colour = colour * (1.0 - coverage[..., None]) + ink * coverage[..., None]

    return np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)


def camera_rotation_from_matrix_world(matrix_world) -> np.ndarray:
    """The 3x3 camera-to-world rotation from a Blender ``matrix_world`` (4x4, rows as Blender prints them)."""
    matrix = np.asarray(matrix_world, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"matrix_world must be 4x4, got {matrix.shape}")
    block = matrix[:3, :3]
    return block / np.linalg.norm(block, axis=0, keepdims=True)
