"""Blender's view of a :class:`scenes.scene_data.Scene`: meshes, pass indices, UVs and a keyframed camera.

``bpy`` is imported lazily, inside the functions, so the module imports without Blender. The code
is plain bpy for Blender 4.2, 4.5 and 5.0 (what differs between them goes through
:mod:`passes.blender_compat`): a studio runs it in its own Blender through ``passes/blender_entry.py``.

What :func:`instantiate_scene` builds, from an empty factory scene:
- for rendering (``joined``): one mesh object holding every :class:`SceneObject`'s triangles in
  world space, with the instance id of each triangle in the face attribute ``greybox_instance``
  (the passes read it through an AOV). Blender's render call then syncs one object per frame
  whatever the scene holds: with one Blender object per scene object, a scene of 28,000 objects
  spent about 2 s a frame in Cycles' object sync (and 20 s building the objects), against 0.1 s
  for the living room; joined, both follow the triangles;
- for the exported files (``object_frames``): one mesh object per :class:`SceneObject`, the vertices
  in the object's own frame, ``matrix_world = SceneObject.transform`` and custom properties
  (:data:`OBJECT_PROPERTIES`: stable name, class, class id, instance id, kind, source), which
  Blender's glTF exporter writes into each node's extras, ``pass_index = instance_id``;
- otherwise one mesh object per :class:`SceneObject` in world space with ``pass_index = instance_id``;
- every mesh flat shaded, UV layer ``UVMap`` (active for rendering) from ``SceneObject.uvs``;
- one camera (the track's type, sensor, sensor fit, focal length or ortho scale, and shift) keyframed on every frame of
  the camera track (``frame_start - 1`` .. ``frame_end + 1``: the vector pass reads both ends),
  location plus quaternion rotation with LINEAR interpolation, so every integer frame gives
  exactly the track's pose (to float32, Blender's storage); a focal length, ortho scale or shift
  that changes along the track is keyed on every frame too;
- resolution, fps and frame range.

:func:`export_scene_gltf` and :func:`save_scene_blend` write that scene (in object frames) as
``scene.glb`` (Blender's own glTF 2.0 exporter) and ``scene.blend``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from scenes.scene_data import Scene, SceneObject

CAMERA_NAME = "greybox_camera"
UV_LAYER_NAME = "UVMap"
JOINED_NAME = "greybox_scene"
INSTANCE_ATTRIBUTE = "greybox_instance"  # face attribute of the joined mesh: the triangle's instance id
# Custom properties on every mesh object (node extras in scene.glb).
OBJECT_PROPERTIES = ("greybox_name", "greybox_class", "greybox_class_id", "greybox_instance_id", "greybox_kind",
                     "greybox_source")


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


def _new_mesh(bpy, name: str, vertices: np.ndarray, triangles: np.ndarray, uvs: np.ndarray):
    """A flat-shaded triangle mesh with UV layer ``UVMap``, built from arrays (loop ``3t + c`` is
    corner ``c`` of triangle ``t``, as ``from_pydata`` orders them)."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1)
    corners = np.ascontiguousarray(triangles, dtype=np.int32).reshape(-1)
    n_tri = len(corners) // 3
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices) // 3)
    mesh.vertices.foreach_set("co", vertices)
    mesh.loops.add(len(corners))
    mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(n_tri)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_tri, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name=UV_LAYER_NAME)
    flat_uvs = np.ascontiguousarray(uvs, dtype=np.float32).reshape(-1)
    if flat_uvs.size != len(mesh.loops) * 2:
        raise ValueError(f"object {name!r}: {flat_uvs.size // 2} UV corners for {len(mesh.loops)} loops")
    uv_layer.data.foreach_set("uv", flat_uvs)
    uv_layer.active = True
    uv_layer.active_render = True
    mesh.shade_flat()
    mesh.update()
    return mesh


def blender_object_name(name: str) -> str:
    """A stable name as a Blender object name: itself when it fits Blender's 63 bytes, else cut and
    followed by a hash of the whole (so two long names never meet as ``.001``)."""
    import hashlib

    if len(name.encode("utf-8")) <= 63:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return name.encode("utf-8")[:52].decode("utf-8", errors="ignore") + "~" + digest


def _add_mesh_object(bpy, obj_data: SceneObject, collection, object_frames: bool = False):
    from scenes.semantic_palette import palette

    vertices = np.asarray(obj_data.vertices, dtype=np.float64)
    if object_frames:
        to_object = np.linalg.inv(obj_data.transform)
        vertices = vertices @ to_object[:3, :3].T + to_object[:3, 3]
    name = blender_object_name(obj_data.name)
    mesh = _new_mesh(bpy, name, vertices, obj_data.triangles, obj_data.uvs)
    obj = bpy.data.objects.new(name, mesh)
    obj.pass_index = int(obj_data.instance_id)
    if object_frames:  # the exported files: each object in its frame, with what it is
        import mathutils

        obj.matrix_world = mathutils.Matrix(obj_data.transform.tolist())  # rows
        entries = palette()
        class_id = int(obj_data.semantic_class_id)
        obj["greybox_name"] = obj_data.name
        obj["greybox_class"] = entries[class_id - 1].name if 1 <= class_id <= len(entries) else ""
        obj["greybox_class_id"] = class_id
        obj["greybox_instance_id"] = int(obj_data.instance_id)
        obj["greybox_kind"] = obj_data.kind
        obj["greybox_source"] = json.dumps(obj_data.source.to_json(), sort_keys=True)
    collection.objects.link(obj)
    return obj


def _add_joined_object(bpy, scene: Scene, collection):
    """Every object's triangles in one mesh object, world space, ``greybox_instance`` per face."""
    objects = [o for o in scene.objects if len(o.triangles)]
    if not objects:
        return None
    counts = np.array([len(o.vertices) for o in objects], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    tri_counts = np.array([len(o.triangles) for o in objects], dtype=np.int64)
    vertices = np.concatenate([np.asarray(o.vertices, dtype=np.float64) for o in objects])
    triangles = np.concatenate([np.asarray(o.triangles, dtype=np.int64) for o in objects]) + np.repeat(starts, tri_counts)[:, None]
    uvs = np.concatenate([np.asarray(o.uvs, dtype=np.float32) for o in objects])
    ids = np.repeat(np.array([o.instance_id for o in objects], dtype=np.float32), tri_counts)
    mesh = _new_mesh(bpy, JOINED_NAME, vertices, triangles, uvs)
    attribute = mesh.attributes.new(INSTANCE_ATTRIBUTE, "FLOAT", "FACE")
    attribute.data.foreach_set("value", ids)
    obj = bpy.data.objects.new(JOINED_NAME, mesh)
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


def _key_lens(cam_data, track) -> None:
    """Key the focal length, the ortho scale and the shift on every frame of the track when they change along it."""
    frames = [int(f) for f in track.frames]
    keyed = [("lens", track.focal_lengths_mm), ("shift_x", track.shifts[:, 0]), ("shift_y", track.shifts[:, 1])]
    if track.ortho_scales is not None:
        keyed.append(("ortho_scale", track.ortho_scales))
    for data_path, values in keyed:
        if np.all(values == values[0]):
            continue
        for frame, value in zip(frames, values):
            setattr(cam_data, data_path, float(value))
            cam_data.keyframe_insert(data_path, frame=frame)


def instantiate_scene(scene: Scene, *, object_frames: bool = False, joined: bool = False) -> None:
    """Replace Blender's current data with ``scene``: meshes, camera with keyframes, resolution, fps, range.

    Resets to an empty factory scene first (``read_factory_settings(use_empty=True)``), so nothing
    from a previous scene or a user's startup file leaks in. ``object_frames``: each object in its
    own frame (for the exported files); ``joined``: one mesh for all objects (for the passes, see
    the module docstring).
    """
    import bpy

    track = scene.camera
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bscene = bpy.context.scene
    collection = bscene.collection

    if joined and not object_frames:
        _add_joined_object(bpy, scene, collection)
    else:
        for obj_data in scene.objects:
            _add_mesh_object(bpy, obj_data, collection, object_frames)

    first = track.index(scene.frame_start)
    cam_data = bpy.data.cameras.new(CAMERA_NAME)
    cam_data.type = "ORTHO" if track.orthographic else "PERSP"
    cam_data.lens_unit = "MILLIMETERS"
    cam_data.lens = float(track.focal_lengths_mm[first])
    if track.orthographic:
        cam_data.ortho_scale = float(track.ortho_scales[first])
    cam_data.sensor_fit = track.sensor_fit
    cam_data.sensor_width = float(track.sensor_width_mm)
    cam_data.sensor_height = float(track.sensor_height_mm)
    cam_data.shift_x = float(track.shifts[first, 0])
    cam_data.shift_y = float(track.shifts[first, 1])
    cam_data.clip_start = float(track.clip_start)
    cam_data.clip_end = float(track.clip_end)
    cam_obj = bpy.data.objects.new(CAMERA_NAME, cam_data)
    collection.objects.link(cam_obj)
    bscene.camera = cam_obj
    _keyframe_camera(bpy, cam_obj, scene)
    _key_lens(cam_data, track)

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


def _scene_properties(bscene, scene: Scene) -> None:
    bscene["greybox_scene"] = scene.name
    bscene["greybox_seed"] = str(int(scene.seed))  # up to 2**63: kept exact as text
    bscene["greybox_resolution"] = [int(scene.width), int(scene.height)]
    bscene["greybox_frames"] = [int(scene.frame_start), int(scene.frame_end)]
    bscene["greybox_fps"] = int(scene.fps)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def export_scene_gltf(scene: Scene, path: str | os.PathLike) -> None:
    """Write ``scene`` as a binary glTF 2.0 file with Blender's own exporter (temporary name, then rename).

    Every object is a node in its own frame, with its stable name, class, class id, instance id,
    kind and source in the node's extras; the camera is a node with its perspective or orthographic camera,
    animated on every frame of the shot (sampled, so each frame holds the track's exact pose; glTF
    time = frame / fps: import with the scene's fps to get the frames back). The scene's extras
    hold its name, seed, resolution, frame range and fps.
    Y up, as glTF wants it (Blender's importer turns it back to Z up). No materials: the scene's
    meaning is in the extras and the class ids. Replaces Blender's current data.
    """
    import bpy

    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()  # bpy 4.2 crashes at exit after the glTF exporter otherwise
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    instantiate_scene(scene, object_frames=True)
    _scene_properties(bpy.context.scene, scene)
    tmp = _temporary(path)
    options = dict(  # every choice spelled out, so a changed default cannot change the file
        filepath=str(tmp), export_format="GLB", check_existing=False,
        use_selection=False, use_visible=False, use_renderable=False, use_active_collection=False,
        export_extras=True, export_yup=True, export_apply=False,
        export_texcoords=True, export_normals=True, export_tangents=False, export_materials="NONE",
        export_cameras=True, export_lights=False, export_draco_mesh_compression_enable=False,
        export_animations=True, export_frame_range=True, export_force_sampling=True, export_frame_step=1,
        export_anim_slide_to_zero=False, export_optimize_animation_size=False, export_current_frame=False,
    )
    known = {prop.identifier for prop in bpy.ops.export_scene.gltf.get_rna_type().properties}
    with _quiet_stdout():  # the exporter prints its progress on stdout
        result = bpy.ops.export_scene.gltf(**{k: v for k, v in options.items() if k in known})  # older exporters lack some
    if "FINISHED" not in result or not tmp.is_file():
        raise RuntimeError(f"Blender's glTF exporter did not write {path} ({result})")
    os.replace(tmp, path)


def save_scene_blend(scene: Scene, path: str | os.PathLike) -> None:
    """Write ``scene`` as a ``.blend`` (uncompressed; temporary name, then rename): the meshes in their
    frames with their custom properties and pass indices, the camera keyed on every frame of the
    track, resolution, fps and frame range. Replaces Blender's current data."""
    import bpy

    from passes.blender_render import _quiet_stdout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    instantiate_scene(scene, object_frames=True)
    _scene_properties(bpy.context.scene, scene)
    tmp = _temporary(path)
    with _quiet_stdout():  # "Info: Saved copy as ..."
        result = bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=False, relative_remap=False,
                                             check_existing=False)
    if "FINISHED" not in result or not tmp.is_file():
        raise RuntimeError(f"Blender did not write {path} ({result})")
    os.replace(tmp, path)


def _texture_materials(bpy, textures: dict, folder: Path) -> None:
    """Give every mesh object whose stable name has a texture a material with it as base colour:
    an image (sRGB, packed) on the object's UV map through a Principled BSDF. ``textures``:
    {stable name: (S, S', 3) uint8, row 0 at v = 0}; each is written as a PNG in ``folder`` first
    (our own encoder, so the packed and exported bytes are those), then loaded."""
    from greybox.atomic_files import encode_png
    from passes.blender_compat import new_node_material

    folder.mkdir(parents=True, exist_ok=True)
    for index, obj in enumerate(o for o in bpy.context.scene.objects if o.type == "MESH" and o.name in textures):
        pixels = np.asarray(textures[obj.name], dtype=np.uint8)
        path = folder / f"texture_{index:05d}.png"
        path.write_bytes(encode_png(np.ascontiguousarray(pixels[::-1])))  # PNG rows run from the top (v = 1) down
        image = bpy.data.images.load(str(path))
        image.name = f"{obj.name}_look"
        image.colorspace_settings.name = "sRGB"
        image.pack()
        mat = new_node_material(bpy.data, f"{obj.name}_look")
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None) or nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        if not bsdf.outputs["BSDF"].links:
            links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Linear"
        uv = nodes.new("ShaderNodeUVMap")
        uv.uv_map = UV_LAYER_NAME
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        obj.data.materials.clear()
        obj.data.materials.append(mat)


def export_textured_scene(scene: Scene, textures: dict, glb_path: str | os.PathLike,
                          blend_path: str | os.PathLike | None = None) -> None:
    """``scene`` as :func:`export_scene_gltf` writes it, each object with its look's atlas as its
    base-colour texture on its UV map (``textures``: {stable name: (S, S', 3) uint8 sRGB}), through
    Blender's glTF exporter (materials exported, images as PNG inside the .glb); with ``blend_path``
    also a .blend with the images packed. Replaces Blender's current data."""
    import bpy

    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()
    glb_path = Path(glb_path)
    glb_path.parent.mkdir(parents=True, exist_ok=True)
    instantiate_scene(scene, object_frames=True)
    _scene_properties(bpy.context.scene, scene)
    _texture_materials(bpy, textures, glb_path.parent / f".textures-{os.getpid()}")
    tmp = _temporary(glb_path)
    options = dict(
        filepath=str(tmp), export_format="GLB", check_existing=False,
        use_selection=False, use_visible=False, use_renderable=False, use_active_collection=False,
        export_extras=True, export_yup=True, export_apply=False,
        export_texcoords=True, export_normals=True, export_tangents=False, export_materials="EXPORT",
        export_image_format="AUTO", export_cameras=True, export_lights=False, export_draco_mesh_compression_enable=False,
        export_animations=True, export_frame_range=True, export_force_sampling=True, export_frame_step=1,
        export_anim_slide_to_zero=False, export_optimize_animation_size=False, export_current_frame=False,
    )
    known = {prop.identifier for prop in bpy.ops.export_scene.gltf.get_rna_type().properties}
    with _quiet_stdout():
        result = bpy.ops.export_scene.gltf(**{k: v for k, v in options.items() if k in known})
    if "FINISHED" not in result or not tmp.is_file():
        raise RuntimeError(f"Blender's glTF exporter did not write {glb_path} ({result})")
    os.replace(tmp, glb_path)
    if blend_path is not None:
        blend_path = Path(blend_path)
        tmp = _temporary(blend_path)
        with _quiet_stdout():
            result = bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=False, relative_remap=False,
                                                 check_existing=False)
        if "FINISHED" not in result or not tmp.is_file():
            raise RuntimeError(f"Blender did not write {blend_path} ({result})")
        os.replace(tmp, blend_path)
    import shutil

    shutil.rmtree(glb_path.parent / f".textures-{os.getpid()}", ignore_errors=True)
