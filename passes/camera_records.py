"""Per-frame camera records for ``DIR/cameras.json``: what the camera is, K, the projection and
world-to-camera in OpenCV axes, plus Blender's matrix.

OpenCV camera: x right, y down, z forward; pixel centres at +0.5. Per frame:

- ``type``: ``perspective`` or ``orthographic``;
- ``K``: 3x3 intrinsics in pixels, the principal point moved by the lens shift. Perspective:
  pixel ~ K (x, y, z) (divide by z); orthographic: pixel = K (x, y, 1), x and y in metres (K's
  diagonal is pixels per metre);
- ``projection``: 3x4 P from camera space to homogeneous pixels, pixel = (P X)[:2] / (P X)[2]
  for both types: ``K [I | 0]`` for a perspective camera, ``[[s, 0, 0, cx], [0, s, 0, cy],
  [0, 0, 0, 1]]`` (no perspective divide) for an orthographic one;
- ``ortho_scale`` (orthographic only): metres across the fitted side (Blender's);
- ``world_to_camera``: 4x4, OpenCV axes; ``blender_matrix_world``: 4x4 camera-to-world as Blender
  has it.

So ``projection @ world_to_camera`` projects a world point exactly as
:meth:`scenes.scene_data.CameraTrack.project`.
"""

from __future__ import annotations

from scenes.scene_data import Scene


def camera_record(scene: Scene, frame: int) -> dict:
    """The record of one frame (see the module docstring), as plain lists."""
    track = scene.camera
    record = {
        "type": track.type,
        "K": track.intrinsics(frame, scene.width, scene.height).tolist(),
        "projection": track.projection_matrix(frame, scene.width, scene.height).tolist(),
        "world_to_camera": track.world_to_camera_opencv(frame).tolist(),
        "blender_matrix_world": track.camera_to_world_blender(frame).tolist(),
    }
    if track.orthographic:
        record["ortho_scale"] = float(track.ortho_scales[track.index(frame)])
    return record


def camera_records(scene: Scene, frames) -> dict[str, dict]:
    """{str(frame): camera_record(scene, frame)} for every frame in ``frames``."""
    return {str(int(f)): camera_record(scene, int(f)) for f in frames}
