"""One frame's exact passes as numpy arrays, and the channel names they have in ``DIR/passes/NNNN.exr``.

This module imports numpy only: downstream stages (stylize, consistency) read passes through it.

Conventions (row 0 is the top of the image; pixel (col, row) has its centre at (col + 0.5, row + 0.5)):
- ``depth``: planar depth in metres (distance to the camera plane), ``inf`` where nothing is hit.
- ``normal``: unit normal in Blender camera space (+X right, +Y up, +Z towards the viewer);
  (0, 0, 0) on background.
- ``flow_forward``: pixels, image coordinates (x right, y down): where this pixel's surface point
  is in frame t+1, minus where it is now. ``flow_backward``: the same towards frame t-1.
  To pull frame t-1 into frame t, sample t-1 at (col + 0.5 + flow_backward_x, row + 0.5 + flow_backward_y).
- ``instance_id``: the object's instance id (1..), 0 on background.
- ``class_id``: ADE20K 1-based class id, 0 on background.
- ``uv``: (U, V, A) of the object's UV map; A is coverage (exactly 0 or 1 at one sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# EXR channel name -> (FramePasses field, component index or None)
EXR_CHANNELS: dict[str, tuple[str, int | None]] = {
    "depth.Z": ("depth", None),
    "normal.X": ("normal", 0),
    "normal.Y": ("normal", 1),
    "normal.Z": ("normal", 2),
    "flow_forward.X": ("flow_forward", 0),
    "flow_forward.Y": ("flow_forward", 1),
    "flow_backward.X": ("flow_backward", 0),
    "flow_backward.Y": ("flow_backward", 1),
    "instance.id": ("instance_id", None),
    "class.id": ("class_id", None),
    "uv.U": ("uv", 0),
    "uv.V": ("uv", 1),
    "uv.A": ("uv", 2),
}


@dataclass
class FramePasses:
    frame: int
    depth: np.ndarray  # (H, W) float32
    normal: np.ndarray  # (H, W, 3) float32
    flow_forward: np.ndarray  # (H, W, 2) float32
    flow_backward: np.ndarray  # (H, W, 2) float32
    instance_id: np.ndarray  # (H, W) uint32
    class_id: np.ndarray  # (H, W) uint32
    uv: np.ndarray  # (H, W, 3) float32

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def foreground(self) -> np.ndarray:
        return self.instance_id > 0
