"""Flow by reprojection, where Blender's vector pass does not hold the camera's motion. numpy only.

greybox scenes are static: only the camera moves. The flow of a pixel towards another frame is
then where its surface point (the pixel centre at the depth pass's planar depth) projects in that
frame, minus where it is now, which :func:`reprojected_flow` computes from the depth pass and the
camera track (:meth:`scenes.scene_data.CameraTrack.unproject` and ``project``).

Where Blender's vector pass is wrong (measured on a cube and a floor against this reprojection,
``tests/test_cameras_orthographic.py``): a moving orthographic camera in Blender 4.5 and 5.0
(errors of up to 25 px where the true flow is 4 px; 4.2 is exact), and in every release a
change of the lens between the two frames (shift and ortho scale in 4.2, 4.5 and 5.0; the focal
length in 4.2). :func:`needs_reprojection` says when the passes take the reprojected flow
instead: an orthographic camera, or a perspective lens (focal length, shift) that differs between
the two frames. Otherwise the vector pass stands (it agrees with the reprojection to 1e-4 px).
"""

from __future__ import annotations

import numpy as np

from scenes.scene_data import CameraTrack


def needs_reprojection(track: CameraTrack, frame: int, other: int) -> bool:
    """Whether the flow from ``frame`` towards ``other`` is computed here rather than read from Blender's vector pass."""
    if track.orthographic:
        return True
    i, j = track.index(frame), track.index(other)
    return bool(track.focal_lengths_mm[i] != track.focal_lengths_mm[j] or np.any(track.shifts[i] != track.shifts[j]))


def reprojected_flow(depth: np.ndarray, track: CameraTrack, frame: int, other: int) -> np.ndarray:
    """(H, W, 2) float32 pixels, image coordinates: for every pixel with a finite depth, where its
    surface point is in ``other`` minus where it is in ``frame`` (0 on background), as
    :mod:`passes.frame_passes` defines ``flow_forward`` (``other = frame + 1``) and ``flow_backward``."""
    h, w = depth.shape
    out = np.zeros((h, w, 2), dtype=np.float32)
    rows, cols = np.nonzero(np.isfinite(depth))
    if len(rows) == 0:
        return out
    here = np.column_stack([cols + 0.5, rows + 0.5])
    world = track.unproject(frame, here, depth[rows, cols].astype(np.float64), w, h)
    there, _ = track.project(other, world, w, h)
    out[rows, cols] = (there - here).astype(np.float32)
    return out
