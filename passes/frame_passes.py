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

A frame's EXR holds the pass groups ``passes.exr_channels`` names (:data:`EXR_GROUPS`; all by
default). A field whose group a file does not hold reads back as ``None``; template validation
refuses to drop a group a later stage of the same template reads
(``scenes.template_schema.EXR_GROUPS_NEEDED_BY``).
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

# Pass groups of ``passes.exr_channels``, in file order: group -> the FramePasses fields it holds
# (``float_ids`` and ``cryptomatte`` are derived from the ids and the scene's names when written;
# they are outputs for other tools and read back into no field).
EXR_GROUPS: dict[str, tuple[str, ...]] = {
    "depth": ("depth",),
    "normal": ("normal",),
    "flow": ("flow_forward", "flow_backward"),
    "instance": ("instance_id",),
    "class": ("class_id",),
    "uv": ("uv",),
    "float_ids": (),
    "cryptomatte": (),
}


def channels_of_groups(groups) -> dict[str, tuple[str, int | None]]:
    """The subset of :data:`EXR_CHANNELS` that ``groups`` (names of :data:`EXR_GROUPS`) hold."""
    fields = {f for g in groups for f in EXR_GROUPS[g]}
    return {name: spec for name, spec in EXR_CHANNELS.items() if spec[0] in fields}


@dataclass
class FramePasses:
    """One frame's passes; a field is ``None`` only when read from an EXR that does not hold its group."""

    frame: int
    depth: np.ndarray | None  # (H, W) float32
    normal: np.ndarray | None  # (H, W, 3) float32
    flow_forward: np.ndarray | None  # (H, W, 2) float32
    flow_backward: np.ndarray | None  # (H, W, 2) float32
    instance_id: np.ndarray | None  # (H, W) uint32
    class_id: np.ndarray | None  # (H, W) uint32
    uv: np.ndarray | None  # (H, W, 3) float32

    def _any_plane(self) -> np.ndarray:
        for field in ("depth", "instance_id", "class_id", "normal", "uv", "flow_forward", "flow_backward"):
            array = getattr(self, field)
            if array is not None:
                return array
        raise ValueError(f"frame {self.frame}: no pass arrays")

    @property
    def height(self) -> int:
        return int(self._any_plane().shape[0])

    @property
    def width(self) -> int:
        return int(self._any_plane().shape[1])

    @property
    def foreground(self) -> np.ndarray:
        return self.instance_id > 0
