"""Per-frame camera records for ``DIR/cameras.json``: K and world-to-camera in OpenCV axes, plus Blender's matrix.

OpenCV camera: x right, y down, z forward; pixel centres at +0.5 (so ``K @ world_to_camera``
projects a world point exactly as :meth:`scenes.scene_data.CameraTrack.project`).
"""

from __future__ import annotations

from scenes.scene_data import Scene


def camera_record(scene: Scene, frame: int) -> dict:
    """{'K': 3x3 pixels, 'world_to_camera': 4x4 OpenCV, 'blender_matrix_world': 4x4 camera-to-world} as lists."""
    track = scene.camera
    return {
        "K": track.intrinsics(frame, scene.width, scene.height).tolist(),
        "world_to_camera": track.world_to_camera_opencv(frame).tolist(),
        "blender_matrix_world": track.camera_to_world_blender(frame).tolist(),
    }


def camera_records(scene: Scene, frames) -> dict[str, dict]:
    """{str(frame): camera_record(scene, frame)} for every frame in ``frames``."""
    return {str(int(f)): camera_record(scene, int(f)) for f in frames}
