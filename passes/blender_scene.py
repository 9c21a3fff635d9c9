"""Blender's view of a :class:`scenes.scene_data.Scene`: meshes, pass indices, UVs and a keyframed camera.

``bpy`` is imported lazily, inside the functions, so the module imports without Blender. The code
is plain bpy for Blender 4.2, 4.5 and 5.0 (what differs between them goes through
:mod:`passes.blender_compat`): a studio runs it in its own Blender through ``passes/blender_entry.py``.

What :func:`instantiate_scene` builds, from an empty factory scene:
- one mesh object per :class:`SceneObject` (world-space vertices, identity object transform),
  flat shaded, UV layer ``UVMap`` (active for rendering) from ``SceneObject.uvs``, and
  ``pass_index = instance_id`` (0 stays the background);
- one camera (horizontal sensor fit, principal point at the centre) keyframed on every frame of
  the camera track (``frame_start - 1`` .. ``frame_end + 1``: the vector pass reads both ends),
  location plus quaternion rotation with LINEAR interpolation, so every integer frame gives
  exactly the track's pose (to float32, Blender's storage);
- resolution, fps and frame range.
"""

from __future__ import annotations

import numpy as np

from scenes.scene_data import Scene, SceneObject

CAMERA_NAME = "greybox_camera"
UV_LAYER_NAME = "UVMap"


def _quaternions_wxyz(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) -> unit quaternions (N, 4; w, x, y, z), sign-continuous along N."""
    import mathutils

    quats = np.empty((len(rotations), 4), dtype=np.float64)
    for i, r in enumerate(rotations):
        q = mathutils.Matrix(r.tolist()).to_quaternion()
        quats[i] = (q.w, q.x, q.y, q.z)
    for i in range(1, len(quats)):
        if np.dot(quats[i], quats[i - 1]) < 0.0:
            quats[i] = -quats[i]
    return quats


def _add_mesh_object(bpy, obj_data: SceneObject, collection):
    vertices = np.asarray(obj_data.vertices, dtype=np.float64)
    triangles = np.asarray(obj_data.triangles, dtype=np.int32)
    mesh = bpy.data.meshes.new(obj_data.name)
    mesh.from_pydata(vertices.tolist(), [], triangles.tolist())
    # from_pydata keeps polygon order and loop order: loop 3*t + c is corner c of triangle t.
    uv_layer = mesh.uv_layers.new(name=UV_LAYER_NAME)
    uvs = np.asarray(obj_data.uvs, dtype=np.float32).reshape(-1)
    if uvs.size != len(mesh.loops) * 2:
        raise ValueError(f"object {obj_data.name!r}: {uvs.size // 2} UV corners for {len(mesh.loops)} loops")
    uv_layer.data.foreach_set("uv", uvs)
    uv_layer.active = True
    uv_layer.active_render = True
    mesh.shade_flat()
    mesh.update()
    obj = bpy.data.objects.new(obj_data.name, mesh)
    obj.pass_index = int(obj_data.instance_id)
    collection.objects.link(obj)
    return obj


def _keyframe_camera(bpy, cam_obj, scene: Scene) -> None:
    """Keyframe location and quaternion on every frame of the track, LINEAR interpolation."""
    from passes.blender_compat import action_fcurves

    track = scene.camera
    frames = np.asarray(track.frames, dtype=np.float64)
    positions = np.asarray(track.positions, dtype=np.float64)
    quats = _quaternions_wxyz(np.asarray(track.rotations, dtype=np.float64))

    cam_obj.rotation_mode = "QUATERNION"
    fcurves = action_fcurves(bpy, cam_obj, f"{CAMERA_NAME}_action", CAMERA_NAME)
    n = len(frames)
    for data_path, values in (("location", positions), ("rotation_quaternion", quats)):
        for component in range(values.shape[1]):
            fcurve = fcurves.new(data_path, index=component)
            fcurve.keyframe_points.add(n)
            co = np.empty((n, 2), dtype=np.float64)
            co[:, 0] = frames
            co[:, 1] = values[:, component]
            fcurve.keyframe_points.foreach_set("co", co.reshape(-1))
            for point in fcurve.keyframe_points:
                point.interpolation = "LINEAR"
            fcurve.extrapolation = "CONSTANT"
            fcurve.update()


def instantiate_scene(scene: Scene) -> None:
    """Replace Blender's current data with ``scene``: meshes, camera with keyframes, resolution, fps, range.

    Resets to an empty factory scene first (``read_factory_settings(use_empty=True)``), so nothing
    from a previous scene or a user's startup file leaks in.
    """
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bscene = bpy.context.scene
    collection = bscene.collection

    for obj_data in scene.objects:
        _add_mesh_object(bpy, obj_data, collection)

    track = scene.camera
    cam_data = bpy.data.cameras.new(CAMERA_NAME)
    cam_data.type = "PERSP"
    cam_data.lens_unit = "MILLIMETERS"
    cam_data.lens = float(track.focal_length_mm)
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = float(track.sensor_width_mm)
    cam_data.shift_x = 0.0
    cam_data.shift_y = 0.0
    cam_data.clip_start = float(track.clip_start)
    cam_data.clip_end = float(track.clip_end)
    cam_obj = bpy.data.objects.new(CAMERA_NAME, cam_data)
    collection.objects.link(cam_obj)
    bscene.camera = cam_obj
    _keyframe_camera(bpy, cam_obj, scene)

    render = bscene.render
    render.resolution_x = int(scene.width)
    render.resolution_y = int(scene.height)
    render.resolution_percentage = 100
    render.pixel_aspect_x = 1.0
    render.pixel_aspect_y = 1.0
    render.fps = int(scene.fps)
    render.fps_base = 1.0
    bscene.frame_start = int(scene.frame_start)
    bscene.frame_end = int(scene.frame_end)
    bscene.frame_set(int(scene.frame_start))
