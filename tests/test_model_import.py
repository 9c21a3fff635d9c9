"""Models from files through Blender's own importers: every format lands at the same size, upright,
with the file's node paths and the same ids; classes from each kind of rule; modifiers, linked
duplicates and instances realised; UVs from the file when valid; file cameras with their poses
and per-frame focal length; assets placed as furniture by their real bounds; the trap .blend;
refusals with exit 2 and nothing written; a touched model re-renders only what depends on it.

The models are built once per module by this Blender's exporters (glTF, FBX, OBJ, .blend); the
USD cases are hand-written .usda (a stage Blender wrote is imported without unit conversion).
The oracles are the geometry the builder put in: a wall 2 m wide and 1.5 m tall, 3 m in front of
the origin, and a camera gliding 1 m along x over frames 1 to 11 with its lens going from 30 to 50 mm.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from passes import scene_stage
from passes.model_files import fbx_properties, gltf_json, read_fbx
from render_farm.job_request import toml_value
from scenes.scene_data import LAYOUT_JSON, SCENE_NPZ
from scenes.semantic_palette import resolve_class
from scenes.template_loading import load_template

ROOT = Path(__file__).resolve().parents[1]
WALL = {"min": [-1.0, 3.0, 0.0], "max": [1.0, 3.0, 1.5]}  # the wall every format must give
CLASS = {name: resolve_class(name).class_id for name in ("wall", "door", "window", "chair", "plant", "floor", "cabinet")}


# --------------------------------------------------------------------------------------------
# The models, built once by this Blender's exporters
# --------------------------------------------------------------------------------------------


def _mesh_object(bpy, name, vertices, faces, *, parent=None, collection=None, material=None, uvs=None, location=(0, 0, 0)):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(v) for v in vertices], [], [tuple(f) for f in faces])
    if uvs is not None:
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", np.asarray(uvs, dtype=np.float32).reshape(-1))
    if material is not None:
        mesh.materials.append(bpy.data.materials.get(material) or bpy.data.materials.new(material))
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    (collection or bpy.context.scene.collection).objects.link(obj)
    if parent is not None:
        obj.parent = parent
    return obj


def _box_faces():
    return [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]


def _box(x0, x1, y0, y1, z0, z1):
    return [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0), (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]


def _quad_xz(x0, x1, y, z0, z1):
    return [(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)]


def build_house(bpy):
    """The test house (see the module docstring) in an empty Blender scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    scene.frame_start, scene.frame_end = 1, 11
    building = bpy.data.objects.new("Building", None)
    scene.collection.objects.link(building)
    wall = _mesh_object(bpy, "Wall", _quad_xz(-1, 1, 3, 0, 1.5), [(0, 1, 2, 3)], parent=building, material="Plaster",
                        uvs=[(0, 0), (1, 0), (1, 1), (0, 1)])
    door = _mesh_object(bpy, "Door", _quad_xz(1.2, 2.0, 3, 0, 2.0), [(0, 1, 2, 3)], parent=building, material="Wood")
    door["greybox_class"] = "door"
    _mesh_object(bpy, "Window", _quad_xz(-2.2, -1.4, 3, 0.8, 1.6), [(0, 1, 2, 3)], parent=building, material="Glass_clear",
                 uvs=[(0, 0), (2, 0), (2, 2), (0, 2)])  # a tiling texture's UVs: packed by greybox
    _mesh_object(bpy, "Chair_01", _box(-0.2, 0.2, 1.8, 2.2, 0, 0.45), _box_faces(), parent=building, material="Wood")
    arrayed = _mesh_object(bpy, "Arrayed", [(-1, 1, 0.01), (-0.5, 1, 0.01), (-0.5, 1.5, 0.01), (-1, 1.5, 0.01)], [(0, 1, 2, 3)],
                           parent=building, material="Plaster")
    modifier = arrayed.modifiers.new("row", "ARRAY")
    modifier.count = 3
    copy = bpy.data.objects.new("WallCopy", wall.data)  # a linked duplicate: the wall's mesh, 1 m further back
    copy.location = (0, 1, 0)
    scene.collection.objects.link(copy)
    copy.parent = building
    plants = bpy.data.collections.new("Plants")
    scene.collection.children.link(plants)
    _mesh_object(bpy, "Fern", _box(1.5, 1.8, 1.0, 1.3, 0, 0.6), _box_faces(), collection=plants)
    # a camera gliding 1 m along x over frames 1..11, looking along +y, its lens from 30 to 50 mm
    cameras = bpy.data.objects.new("Cameras", None)
    scene.collection.objects.link(cameras)
    lens = bpy.data.cameras.new("ShotCam")
    lens.sensor_fit = "HORIZONTAL"
    cam = bpy.data.objects.new("ShotCam", lens)
    scene.collection.objects.link(cam)
    cam.parent = cameras
    cam.rotation_euler = (math.radians(90), 0, 0)
    for frame, x, mm in ((1, 0.0, 30.0), (11, 1.0, 50.0)):
        cam.location = (x, -1.0, 1.5)
        cam.keyframe_insert("location", frame=frame)
        lens.lens = mm
        lens.keyframe_insert("lens", frame=frame)
    _linear_keys(cam)
    _linear_keys(lens)
    scene.camera = cam
    return scene


def _linear_keys(id_data) -> None:
    """LINEAR interpolation on every key of ``id_data``'s action (4.2: the action's F-curves; 4.5 and 5.0: its channelbags')."""
    action = id_data.animation_data.action
    curves = list(getattr(action, "fcurves", None) or [])
    for layer in getattr(action, "layers", ()):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", ()):
                curves += list(bag.fcurves)
    for curve in curves:
        for key in curve.keyframe_points:
            key.interpolation = "LINEAR"


def camera_oracle(frame: int) -> tuple[np.ndarray, float]:
    """The builder's camera at ``frame``: position, and the lens (LINEAR keys at 1 and 11, constant outside)."""
    t = min(max((frame - 1) / 10.0, 0.0), 1.0)
    return np.array([t, -1.0, 1.5]), 30.0 + 20.0 * t


CAMERA_ROTATION = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # Euler X 90: looking along +y


def _export_house(bpy, folder: Path) -> None:
    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()
    with _quiet_stdout():
        build_house(bpy)
        bpy.ops.export_scene.gltf(filepath=str(folder / "house.glb"), export_format="GLB", export_apply=True, export_extras=True,
                                  export_cameras=True, export_animations=True, export_yup=True, export_force_sampling=True)
        build_house(bpy)
        bpy.ops.export_scene.fbx(filepath=str(folder / "house.fbx"), use_custom_props=True, bake_anim=True, use_mesh_modifiers=True)
        build_house(bpy)
        bpy.ops.wm.obj_export(filepath=str(folder / "house.obj"), export_materials=True, apply_modifiers=True)
        build_house(bpy)
        # a collection instance: the chair set, placed by an empty
        chairs = bpy.data.collections.new("ChairSet")
        _mesh_object(bpy, "Stool", _box(0, 0.3, 0, 0.3, 0, 0.4), _box_faces(), collection=chairs)
        holder = bpy.data.objects.new("Chairs", None)
        holder.instance_type = "COLLECTION"
        holder.instance_collection = chairs
        holder.location = (-2.0, 1.0, 0.0)
        bpy.context.scene.collection.objects.link(holder)
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / "house.blend"))


def _export_asset(bpy, folder: Path) -> None:
    """A cabinet 0.8 wide, 0.4 deep, 1.2 tall, its handle on its front (-y), standing on z = 0.2 in its file."""
    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()
    with _quiet_stdout():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        _mesh_object(bpy, "Body", _box(-0.4, 0.4, -0.2, 0.2, 0.2, 1.4), _box_faces())
        _mesh_object(bpy, "Handle", _box(-0.05, 0.05, -0.25, -0.2, 0.8, 0.9), _box_faces())
        bpy.ops.export_scene.gltf(filepath=str(folder / "cabinet.glb"), export_format="GLB", export_yup=True)


def _trap_blend(bpy, folder: Path, marker: Path) -> None:
    """An object whose driver writes ``marker`` when Python drivers run, and a text block registered as a module."""
    from passes.blender_render import _quiet_stdout

    with _quiet_stdout():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        obj = _mesh_object(bpy, "Trap", [(0, 3, 0), (1, 3, 0), (1, 3, 1)], [(0, 1, 2)])
        curve = obj.driver_add("location", 0)
        curve.driver.type = "SCRIPTED"
        curve.driver.expression = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') and 0.0"
        text = bpy.data.texts.new("trap.py")
        text.from_string(f"open({str(marker)!r}, 'w').write('ran')")
        text.use_module = True
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / "trap.blend"))


def _many_blend(bpy, folder: Path, count: int) -> None:
    """``count`` instances of one triangle (a mesh's vertices instancing it): more than the id pass holds."""
    from passes.blender_render import _quiet_stdout

    with _quiet_stdout():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        grid = bpy.data.meshes.new("Grid")
        grid.vertices.add(count)
        co = np.zeros((count, 3), dtype=np.float32)
        co[:, 0] = np.arange(count) % 200
        co[:, 1] = np.arange(count) // 200
        grid.vertices.foreach_set("co", co.reshape(-1))
        grid.update()
        holder = bpy.data.objects.new("Grid", grid)
        bpy.context.scene.collection.objects.link(holder)
        holder.instance_type = "VERTS"
        _mesh_object(bpy, "Leaf", [(0, 0, 0), (0.1, 0, 0), (0, 0.1, 0)], [(0, 1, 2)], parent=holder)
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / "many.blend"))


USDA_WALL = """#usda 1.0
(
    defaultPrim = "Building"
    metersPerUnit = {mpu}
    upAxis = "{up}"
)

def Xform "Building"
{{
    def Mesh "Wall"
    {{
        int[] faceVertexCounts = [4]
        int[] faceVertexIndices = [0, 1, 2, 3]
        point3f[] points = [{points}]
    }}
}}
"""


def _usda(path: Path, mpu: float, up: str) -> None:
    s = 1.0 / mpu
    if up == "Y":  # Y up, the camera's +y is the file's -z
        pts = [(-1 * s, 0, -3 * s), (1 * s, 0, -3 * s), (1 * s, 1.5 * s, -3 * s), (-1 * s, 1.5 * s, -3 * s)]
    else:
        pts = [(-1 * s, 3 * s, 0), (1 * s, 3 * s, 0), (1 * s, 3 * s, 1.5 * s), (-1 * s, 3 * s, 1.5 * s)]
    path.write_text(USDA_WALL.format(mpu=mpu, up=up, points=", ".join(f"({x:g}, {y:g}, {z:g})" for x, y, z in pts)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A project folder: models/ (house in every format, USD cases, trap), assets/ (the cabinet)."""
    import bpy

    root = tmp_path_factory.mktemp("project")
    (root / "models").mkdir()
    (root / "assets").mkdir()
    _export_house(bpy, root / "models")
    _export_asset(bpy, root / "assets")
    _trap_blend(bpy, root / "models", root / "trap_ran.txt")
    _usda(root / "models" / "wall_cm_yup.usda", 0.01, "Y")
    _usda(root / "models" / "wall_m_zup.usda", 1.0, "Z")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return root


def write_template(folder: Path, name: str, *, imports=(), furniture=None, camera=True, frames=(1, 3),
                   resolution=(64, 48), extra: str = "") -> Path:
    lines = ["schema_version = 1", f'name = "{name}"', "seed = 3"]
    if furniture is not None:
        lines += ["[generator]", 'kind = "room"', "[generator.room]", "width = 4.0", "depth = 3.5", "height = 2.5",
                  f"furniture = {toml_value(list(furniture))}"]
    for spec in imports:
        lines.append("[[imports]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in spec.items()]
    if camera:
        lines += ["[camera]", "focal_length = 20.0", "[camera.path]", 'kind = "static"', "position = [0.5, 0.5, 0.75]",
                  "look_at = [0.5, 3.0, 0.75]"]
    lines += ["[render]", f"resolution = [{resolution[0]}, {resolution[1]}]", f"frame_start = {frames[0]}", f"frame_end = {frames[1]}"]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def build(path: Path, *asset_roots):
    loaded = load_template(str(path))
    return scene_stage.build_shot_scene(loaded.template, scene_stage.model_roots(str(path), asset_roots))


HOUSE = {"name": "house", "class": "wall", "classes": [{"object": "*Chair*", "class": "chair"},
                                                       {"material": "Glass*", "class": "window"},
                                                       {"collection": "Plants", "class": "plant"}]}


def _by_path(scene) -> dict:
    return {o.source.node_path: o for o in scene.objects if o.source.kind == "import"}


def _bounds(obj) -> dict:
    return {"min": obj.vertices.min(axis=0).tolist(), "max": obj.vertices.max(axis=0).tolist()}


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return all(np.allclose(a[k], b[k], atol=tol) for k in ("min", "max"))


# --------------------------------------------------------------------------------------------
# Formats, units, axes, ids
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def house_scenes(models):
    """The house imported from each format (OBJ says its units and axis)."""
    scenes = {}
    for fmt in ("glb", "fbx", "blend", "obj"):
        spec = {**HOUSE, "file": f"models/house.{fmt}"}
        if fmt == "obj":
            spec.update(units="m", up_axis="Y")
        scenes[fmt] = build(write_template(models, f"house_{fmt}", imports=[spec]))
    return scenes


def test_every_format_lands_the_wall_at_the_same_size_upright_and_the_same_ids(house_scenes, models):
    common = ["/Building/Arrayed", "/Building/Chair_01", "/Building/Door", "/Building/Wall", "/Building/WallCopy", "/Building/Window"]
    reference = None
    for fmt, scene in house_scenes.items():
        objects = _by_path(scene)
        paths = {p.split("/")[-1] for p in objects} if fmt == "obj" else set(objects)
        wanted = {p.split("/")[-1] for p in common} if fmt == "obj" else set(common)
        assert wanted <= paths, (fmt, sorted(paths))
        wall = objects["/Wall" if fmt == "obj" else "/Building/Wall"]
        assert _close(_bounds(wall), WALL), (fmt, _bounds(wall))
        copy = objects["/WallCopy" if fmt == "obj" else "/Building/WallCopy"]
        assert _close(_bounds(copy), {"min": [-1, 4, 0], "max": [1, 4, 1.5]}), fmt  # the linked duplicate, 1 m back
        assert np.allclose(wall.normals, [0.0, -1.0, 0.0], atol=1e-6)  # facing the origin: winding kept
        if fmt != "obj":  # ids follow (import name, node path), whatever the file's order
            order = [o.source.node_path for o in sorted(scene.objects, key=lambda o: o.instance_id) if o.source.node_path in common]
            assert order == common
            summary = [(o.source.node_path, o.semantic_class_id, np.round(o.vertices.min(0), 4).tolist(),
                        np.round(o.vertices.max(0), 4).tolist()) for o in sorted(scene.objects, key=lambda o: o.instance_id)
                       if o.source.node_path in common]
            reference = reference or summary
            assert summary == reference, fmt
    # the FBX is a centimetre file (what Blender's exporter writes by default), landed in metres
    assert fbx_properties(read_fbx(models / "models" / "house.fbx"))["UnitScaleFactor"] == 1.0


def test_classes_come_from_the_property_then_the_rules_in_order_then_the_default(house_scenes):
    objects = _by_path(house_scenes["blend"])
    assert objects["/Building/Door"].semantic_class_id == CLASS["door"]  # greybox_class custom property
    assert objects["/Building/Chair_01"].semantic_class_id == CLASS["chair"]  # object glob
    assert objects["/Building/Window"].semantic_class_id == CLASS["window"]  # material glob
    assert objects["/Fern"].semantic_class_id == CLASS["plant"]  # collection glob (.blend keeps collections)
    assert objects["/Building/Wall"].semantic_class_id == CLASS["wall"]  # the import's default
    for fmt in ("glb", "fbx"):  # the custom property travels in glTF extras and FBX user properties
        assert _by_path(house_scenes[fmt])["/Building/Door"].semantic_class_id == CLASS["door"], fmt


def test_modifiers_linked_duplicates_and_collection_instances_are_realised(house_scenes):
    objects = _by_path(house_scenes["blend"])
    arrayed = objects["/Building/Arrayed"]  # a live array modifier in the .blend: three quads, 1.5 m long
    assert len(arrayed.triangles) == 6
    assert _close(_bounds(arrayed), {"min": [-1, 1, 0.01], "max": [0.5, 1.5, 0.01]})
    stools = [o for p, o in objects.items() if p.startswith("/Chairs/Stool")]
    assert len(stools) == 1 and _close(_bounds(stools[0]), {"min": [-2, 1, 0], "max": [-1.7, 1.3, 0.4]})
    assert len(objects["/Building/WallCopy"].triangles) == len(objects["/Building/Wall"].triangles) == 2


def test_file_uvs_are_kept_when_valid_and_packed_otherwise(house_scenes, tmp_path):
    objects = _by_path(house_scenes["blend"])
    wall, window = objects["/Building/Wall"], objects["/Building/Window"]
    assert wall.source.uvs == "file" and window.source.uvs == "packed"  # the window's tile past [0, 1]
    np.testing.assert_allclose(np.sort(wall.uvs.reshape(-1, 2), axis=0)[[0, -1]], [[0, 0], [1, 1]])
    assert window.uvs.min() >= 0 and window.uvs.max() <= 1
    scene_stage.write_scene_data(house_scenes["blend"], tmp_path)
    records = {o["source"].get("node_path"): o for o in json.loads((tmp_path / LAYOUT_JSON).read_text())["objects"]}
    assert records["/Building/Wall"]["source"]["uvs"] == "file" and records["/Building/Window"]["source"]["uvs"] == "packed"
    assert records["/Building/Wall"]["source"]["file"] == "models/house.blend"


def test_usd_units_and_up_axis_land_like_the_gltf(models):
    """A Y-up centimetre stage (hand-written: Blender's importer converts only stages it did not write)
    and a Z-up metre stage both stand the wall upright at 2 x 1.5 m; 4.2's importer ignores
    metersPerUnit and greybox applies it."""
    for name in ("wall_cm_yup.usda", "wall_m_zup.usda"):
        scene = build(write_template(models, f"usd_{name[:-5]}", imports=[{"name": "u", "file": f"models/{name}", "class": "wall"}]))
        (wall,) = scene.objects
        assert wall.source.node_path == "/Building/Wall"
        assert _close(_bounds(wall), WALL), (name, _bounds(wall))
    # units and up_axis given replace what the file says: the same centimetres read as metres are 100x larger
    scene = build(write_template(models, "usd_override", imports=[{"name": "u", "file": "models/wall_cm_yup.usda", "class": "wall",
                                                                    "units": "m"}]))
    assert _close(_bounds(scene.objects[0]), {"min": [-100, 300, 0], "max": [100, 300, 150]}, tol=1e-3)


def test_units_up_axis_and_the_template_transform_on_top_of_the_file(models):
    spec = {**HOUSE, "file": "models/house.fbx", "objects": ["/Building/Wall"], "units": "m", "position": [10, 0, 0],
            "rotation": [0, 0, 90], "scale": 0.5}
    (wall,) = build(write_template(models, "fbx_override", imports=[spec])).objects
    # the centimetre numbers read as metres (x100), halved, turned 90 degrees about z, moved 10 m along x
    expected = np.array([[-1, 3, 0], [1, 3, 1.5]]) * 100 * 0.5
    turned = expected @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]]) + [10, 0, 0]
    assert _close(_bounds(wall), {"min": turned.min(0).tolist(), "max": turned.max(0).tolist()}, tol=1e-3)
    np.testing.assert_allclose(wall.transform[:3, 3], [10, 0, 0], atol=1e-6)
    # a glTF said to be Z up (written wrongly) is turned back: its wall then lies flat
    spec = {**HOUSE, "file": "models/house.glb", "objects": ["/Building/Wall"], "up_axis": "Z"}
    (flat,) = build(write_template(models, "glb_zup", imports=[spec])).objects
    extent = flat.vertices.max(0) - flat.vertices.min(0)
    np.testing.assert_allclose(extent, [2.0, 1.5, 0.0], atol=1e-5)


def test_an_imported_wall_renders_at_its_analytic_depth(house_scenes, models):
    """The static camera at (0.5, 0.5) looks along +y at the glTF's wall in the plane y = 3, 2.5 m away:
    depth 2.5 wherever it is hit."""
    from passes.blender_render import PassRenderer

    scene = build(write_template(models, "depth", imports=[{**HOUSE, "file": "models/house.glb", "objects": ["/Building/Wall"]}],
                                 resolution=(64, 48)))
    passes = PassRenderer(scene, threads=1).render(1)
    hit = passes.instance_id == scene.objects[0].instance_id
    assert hit.sum() > 300  # about 24 x 18 pixels
    np.testing.assert_allclose(passes.depth[hit], 2.5, rtol=0, atol=1e-4)
    assert np.all(passes.class_id[hit] == CLASS["wall"])
    # the wall spans x in [-1, 1], z in [0, 1.5]: its image, by the pinhole model
    k = scene.camera.intrinsics(1, 64, 48)
    cols = np.flatnonzero(hit.any(axis=0))
    expected = (k[0, 0] * (np.array([-1.0, 1.0]) - 0.5) / 2.5 + k[0, 2])
    assert abs(cols.min() - expected[0]) <= 1 and abs(cols.max() + 1 - expected[1]) <= 1


# --------------------------------------------------------------------------------------------
# File cameras
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fbx", "blend", "glb"])
def test_the_file_camera_gives_its_pose_and_focal_length_on_every_frame(models, fmt, tmp_path):
    path = write_template(models, f"cam_{fmt}", imports=[{**HOUSE, "file": f"models/house.{fmt}", "camera": "/Cameras/ShotCam"}],
                          camera=False, frames=(2, 12))
    scene = build(path)
    track = scene.camera
    assert track.frames.tolist() == list(range(1, 14))  # the template's range wins (and one frame either side)
    for frame in track.frames:
        position, lens = camera_oracle(int(frame))
        i = track.index(int(frame))
        np.testing.assert_allclose(track.positions[i], position, atol=1e-5)
        np.testing.assert_allclose(track.rotations[i], CAMERA_ROTATION, atol=1e-5)
        if fmt != "glb":  # FBX and .blend animate the focal length: per-frame intrinsics
            assert track.focal_lengths_mm[i] == pytest.approx(lens, abs=1e-4)
    if fmt == "glb":
        # glTF cameras have a vertical field of view: the importer gives a vertical sensor fit
        doc = gltf_json(models / "models" / "house.glb")
        yfov = next(c["perspective"]["yfov"] for c in doc["cameras"])
        assert track.sensor_fit == "VERTICAL"
        k = track.intrinsics(5, 64, 48)
        assert k[1, 1] == pytest.approx(24.0 / math.tan(yfov / 2.0), rel=1e-5)
    else:
        k3, k12 = track.intrinsics(3, 64, 48), track.intrinsics(12, 64, 48)
        assert k3[0, 0] == pytest.approx(camera_oracle(3)[1] / 36.0 * 64, rel=1e-5)
        assert k12[0, 0] == pytest.approx(50.0 / 36.0 * 64, rel=1e-5)
        scene_stage.write_camera_records(scene, [3, 12], tmp_path)
        records = json.loads((tmp_path / "cameras.json").read_text())
        assert records["3"]["K"][0][0] == pytest.approx(k3[0, 0]) and records["12"]["K"][0][0] == pytest.approx(k12[0, 0])
    scene_stage.write_scene_data(scene, tmp_path)
    layout = json.loads((tmp_path / LAYOUT_JSON).read_text())
    assert layout["camera"]["path"] == "file" and layout["camera"]["node_path"] == "/Cameras/ShotCam"


# --------------------------------------------------------------------------------------------
# Assets as furniture
# --------------------------------------------------------------------------------------------


def test_an_asset_is_placed_by_the_rules_at_its_measured_bounds(models, tmp_path):
    path = write_template(models, "room_asset", furniture=[{"kind": "asset", "file": "assets/cabinet.glb", "class": "cabinet",
                                                           "wall": "north"}])
    scene = build(path)
    (cabinet,) = [o for o in scene.objects if o.kind == "asset"]
    assert cabinet.name == "cabinet" and cabinet.semantic_class_id == CLASS["cabinet"]
    lo, hi = cabinet.vertices.min(0), cabinet.vertices.max(0)
    np.testing.assert_allclose(hi - lo, [0.8, 0.45, 1.2], atol=1e-5)  # the model's bounds (handle included), turned 180
    assert lo[2] == pytest.approx(0.0, abs=1e-9)  # its base on the floor
    from procedural.furniture_placement import WALL_GAP

    assert hi[1] == pytest.approx(3.5 - WALL_GAP, abs=1e-6)  # its back against the north wall
    handle = cabinet.vertices[cabinet.vertices[:, 2] > 0.55]
    handle = handle[handle[:, 2] < 0.75]
    assert handle[:, 1].min() == pytest.approx(lo[1], abs=1e-6)  # its front (the handle) faces into the room
    scene_stage.write_scene_data(scene, tmp_path)
    record = next(o for o in json.loads((tmp_path / LAYOUT_JSON).read_text())["objects"] if o["name"] == "cabinet")
    assert record["source"]["kind"] == "import" and record["source"]["file"] == "assets/cabinet.glb"
    assert record["placement"]["rule"] == "against_wall" and record["placement"]["wall"] == "north"
    assert record["placement"]["size"] == pytest.approx([0.8, 0.45, 1.2], abs=1e-6) and not record["placement"]["size_drawn"]


def _plan_template(folder: Path, name: str, study_furniture, living_furniture) -> Path:
    """Two rooms of a floor plan sharing the wall x = 4 (a door in it): living [0, 4] x [0, 3.5] and
    study [4, 7] x [0, 3.5], walls 0.2 thick (interiors inset by 0.1)."""
    lines = ["schema_version = 1", f'name = "{name}"', "seed = 3", "[generator]", 'kind = "floor_plan"',
             "[generator.floor_plan]", "wall_thickness = 0.2", "height = 2.5",
             "[[generator.floor_plan.rooms]]", 'name = "living"', "rect = [0.0, 0.0, 4.0, 3.5]",
             f"furniture = {toml_value(list(living_furniture))}",
             "[[generator.floor_plan.rooms]]", 'name = "study"', "rect = [4.0, 0.0, 3.0, 3.5]",
             f"furniture = {toml_value(list(study_furniture))}",
             "[[generator.floor_plan.doors]]", 'between = ["living", "study"]', "wall = 1", "offset = 0.8",
             "[camera]", "focal_length = 20.0", "[camera.path]", 'kind = "static"', "position = [2.0, 0.5, 1.5]",
             "look_at = [2.0, 3.0, 0.75]", "[render]", "resolution = [64, 48]", "frame_start = 1", "frame_end = 2"]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_assets_are_furniture_in_a_floor_plans_rooms_by_their_class_rules(models, tmp_path):
    """The cabinet model against the study's north edge (edge 2) and, as a chair, at the living
    room's table: placed by the rules of the class's kind, at the model's own bounds."""
    from procedural.furniture_placement import WALL_GAP

    path = _plan_template(models, "plan_assets",
                          [{"kind": "asset", "file": "assets/cabinet.glb", "class": "cabinet", "wall": 2}],
                          [{"kind": "table", "name": "table", "size": [1.2, 0.8, 0.75]},
                           {"kind": "asset", "name": "seat", "file": "assets/cabinet.glb", "class": "chair"}])
    scene = build(path)
    objects = {o.name: o for o in scene.objects}
    cabinet, seat, table = objects["study/cabinet"], objects["living/seat"], objects["living/table"]
    assert cabinet.kind == seat.kind == "asset" and table.kind == "table"
    assert cabinet.semantic_class_id == CLASS["cabinet"] and seat.semantic_class_id == CLASS["chair"]
    for model in (cabinet, seat):
        lo, hi = model.vertices.min(0), model.vertices.max(0)
        extent = np.sort((hi - lo)[:2])
        np.testing.assert_allclose(extent, [0.45, 0.8], atol=1e-5)  # the model's footprint, however turned
        assert hi[2] - lo[2] == pytest.approx(1.2, abs=1e-5) and lo[2] == pytest.approx(0.0, abs=1e-9)
    lo, hi = cabinet.vertices.min(0), cabinet.vertices.max(0)
    assert hi[1] == pytest.approx(3.5 - 0.1 - WALL_GAP, abs=1e-6)  # its back against the study's north wall
    assert lo[0] >= 4.1 - 1e-6 and hi[0] <= 6.9 + 1e-6  # inside the study
    np.testing.assert_allclose(hi - lo, [0.8, 0.45, 1.2], atol=1e-5)
    slo, shi = seat.vertices.min(0), seat.vertices.max(0)
    assert slo[0] >= 0.1 - 1e-6 and shi[0] <= 3.9 + 1e-6 and slo[1] >= 0.1 - 1e-6 and shi[1] <= 3.4 + 1e-6  # the living room
    scene_stage.write_scene_data(scene, tmp_path)
    records = {o["name"]: o for o in json.loads((tmp_path / LAYOUT_JSON).read_text())["objects"]}
    cab, st = records["study/cabinet"], records["living/seat"]
    assert cab["source"]["kind"] == "import" and cab["source"]["file"] == "assets/cabinet.glb"
    assert cab["source"]["template_key"] == "generator.floor_plan.rooms.1.furniture.0"
    assert cab["placement"]["rule"] == "against_wall" and cab["placement"]["wall"] == 2 and cab["placement"]["room"] == "study"
    assert st["placement"]["rule"] == "at_table" and st["placement"]["anchor"] == "living/table"
    assert st["placement"]["rules_of"] == "chair" and st["placement"]["measured"] and not st["placement"]["size_drawn"]
    # an edge the room does not have: one problem at its key path, before anything is built
    bad = _plan_template(models, "plan_bad_edge", [{"kind": "asset", "file": "assets/cabinet.glb", "class": "cabinet", "wall": 9}], [])
    with pytest.raises(InputError) as err:
        build(bad)
    assert [p["key"] for p in err.value.problems] == ["generator.floor_plan.rooms.1.furniture.0.wall"]


# --------------------------------------------------------------------------------------------
# Untrusted files
# --------------------------------------------------------------------------------------------


def test_a_blend_never_runs_its_scripts_or_python_drivers(models):
    """First the trap is shown to work (auto-run on, appended by hand); then greybox imports it with
    auto-run turned on beforehand, and nothing runs."""
    import bpy

    from passes.blender_render import _quiet_stdout

    marker = models / "trap_ran.txt"
    marker.unlink(missing_ok=True)
    with _quiet_stdout():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.preferences.filepaths.use_scripts_auto_execute = True
        with bpy.data.libraries.load(str(models / "models" / "trap.blend"), link=False) as (_, target):
            target.objects = ["Trap"]
        bpy.context.scene.collection.objects.link(target.objects[0])
        bpy.context.scene.frame_set(2)
        bpy.context.evaluated_depsgraph_get().update()
    assert marker.read_text() == "ran"  # the trap is real
    marker.unlink()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = True  # as a user's preferences might have it
    scene = build(write_template(models, "trap", imports=[{"name": "t", "file": "models/trap.blend", "class": "wall"}]))
    assert not marker.exists()
    assert bpy.context.preferences.filepaths.use_scripts_auto_execute is False
    assert [o.source.node_path for o in scene.objects] == ["/Trap"]


def test_more_objects_than_the_id_pass_holds_is_a_clear_error(models, tmp_path):
    import bpy

    _many_blend(bpy, tmp_path, 32768)
    path = write_template(tmp_path, "many", imports=[{"name": "m", "file": "many.blend", "class": "plant"}])
    with pytest.raises(InputError) as err:
        build(path)
    text = str(err.value)
    count = int(text.split(" mesh objects")[0].rsplit(" ", 1)[-1])
    assert count >= 32768 and "at most 32767" in text and "objects = [" in text and "imports.0.file = 'many.blend'" in text


def _greybox(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GREYBOX_STORE": str(cwd / "store")}
    return subprocess.run([sys.executable, "-m", "render_farm.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=str(cwd), env=env)


def test_every_refusal_exits_2_naming_the_file_and_what_the_importer_said(models, tmp_path):
    """One ``greybox validate`` (one Blender subprocess for all of them), then one job that writes nothing."""
    project = tmp_path / "project"
    shutil.copytree(models / "models", project / "models")
    (project / "models" / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage that is no glTF at all")
    (project / "models" / "broken.fbx").write_bytes(b"Kaydara FBX Binary  \x00\x1a\x00" + b"\xff" * 40)
    (project / "models" / "folder.glb").mkdir()
    (tmp_path / "elsewhere.glb").write_bytes((models / "models" / "house.glb").read_bytes())
    (project / "models" / "link.glb").symlink_to(tmp_path / "elsewhere.glb")
    cases = {
        "missing": ({"file": "models/nothing.glb"}, ["nothing.glb", "no such file"]),
        "not_a_file": ({"file": "models/folder.glb"}, ["folder.glb", "is not a file"]),
        "corrupt_glb": ({"file": "models/broken.glb"}, ["broken.glb", "could not read it"]),
        "corrupt_fbx": ({"file": "models/broken.fbx"}, ["broken.fbx", "could not read it"]),
        "outside": ({"file": "../elsewhere.glb"}, ["elsewhere.glb", "outside"]),
        "symlink": ({"file": "models/link.glb"}, ["link.glb", "symbolic link"]),
        "glob": ({"file": "models/house.glb", "objects": ["/Building/Roof*"]}, ["imports.0.objects", "'/Building/Roof*'",
                                                                              "/Building/Wall"]),
        "camera": ({"file": "models/house.glb", "camera": "/Cameras/Nope"}, ["imports.0.camera", "/Cameras/Nope",
                                                                           "/Cameras/ShotCam"]),
        "no_class": ({"file": "models/house.glb", "class": None}, ["get no class", "/Building/Wall"]),
        "extension": ({"file": "models/house.3ds"}, ["house.3ds", ".glb"]),
    }
    names = []
    for name, (spec, _) in cases.items():
        entry = {**HOUSE, **spec, "name": "m"}
        entry = {k: v for k, v in entry.items() if v is not None}
        write_template(project, name, imports=[entry], camera="camera" not in spec)
        names.append(f"{name}.toml")
    proc = _greybox("validate", "--json", *names, cwd=project)
    assert proc.returncode == 2, proc.stderr[-3000:]
    problems = json.loads(proc.stdout)
    for name, (_, words) in cases.items():
        text = " ".join(p["message"] for p in problems if f"{name}.toml" in str(p.get("file")))
        for word in words:
            assert word in text, (name, word, text)
    # a job with one of them writes nothing: the empty output folder stays empty
    out = tmp_path / "out"
    out.mkdir()
    proc = _greybox("passes", "corrupt_glb.toml", "--out", str(out), cwd=project)
    assert proc.returncode == 2 and "broken.glb" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
    assert _greybox("validate", "glob.toml", "--asset-root", str(tmp_path / "nowhere"), cwd=project).returncode == 2


def test_an_asset_root_admits_models_and_references_outside_the_template_folder(models, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(models / "assets", shared)
    project = tmp_path / "project"
    project.mkdir()
    path = write_template(project, "rooted", furniture=[{"kind": "asset", "file": "../shared/cabinet.glb", "class": "cabinet",
                                                        "wall": "north"}])
    with pytest.raises(InputError, match="outside"):
        build(path)
    scene = build(path, shared)
    assert scene.metadata["files"] == {"<asset-root 1>/cabinet.glb": __import__("hashlib").sha256((shared / "cabinet.glb").read_bytes()).hexdigest()}


def test_touching_a_model_re_renders_what_depends_on_it_and_nothing_else(models, tmp_path):
    import bpy

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    for name in ("a", "b"):
        shutil.copy(models / "models" / "house.glb", project / "models" / f"{name}.glb")
        write_template(project, name, imports=[{**HOUSE, "file": f"models/{name}.glb", "objects": ["/Building/Wall"]}],
                       resolution=(32, 24), frames=(1, 2))
    out = tmp_path / "out"

    def run() -> dict:
        proc = _greybox("passes", "a.toml", "b.toml", "--out", str(out), "--json", "--workers", "1", cwd=project)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    first = run()
    assert first["tasks"]["ran"] == first["tasks"]["done"] == 4  # per shot: the scene and one passes chunk
    manifest = json.loads((out / "a" / "manifest.json").read_text())
    assert manifest["template"]["inputs"] == {"models/a.glb": __import__("hashlib").sha256((project / "models" / "a.glb").read_bytes()).hexdigest()}
    os.utime(project / "models" / "a.glb", (1, 1))  # a new date, the same bytes: nothing to do
    assert run()["tasks"]["ran"] == 0
    # new bytes: a's wall moves 1 m; a's scene and passes render again, b's come from the store
    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    keep_exit_clean()
    with _quiet_stdout():
        build_house(bpy)
        bpy.data.objects["Wall"].location = (0, 1, 0)
        bpy.ops.export_scene.gltf(filepath=str(project / "models" / "a.glb"), export_format="GLB", export_extras=True)
    before_b = (out / "b" / "passes" / "0001.exr").read_bytes()
    third = run()
    assert third["tasks"]["ran"] == 2 and third["tasks"]["reused"] == 2
    assert all(line.startswith("a/") or "a/" in line for line in third["recomputed"]), third["recomputed"]
    assert (out / "b" / "passes" / "0001.exr").read_bytes() == before_b
    layout = json.loads((out / "a" / SCENE_NPZ.replace("scene.npz", "layout.json")).read_text())
    assert layout["objects"][0]["bounds"]["min"][1] == pytest.approx(4.0, abs=1e-5)


def test_binary_usd_imports_where_the_release_keeps_prim_names_and_is_refused_on_4_2(models, tmp_path):
    """Blender's own .usdc of the house: 4.5 and 5.0 import it with the file's prim paths; 4.2's importer
    drops transform names and ignores metersPerUnit, and greybox reads those from text layers only."""
    import bpy

    from passes.blender_compat import running_blender_version
    from passes.blender_render import _quiet_stdout

    with _quiet_stdout():
        build_house(bpy)
        bpy.ops.wm.usd_export(filepath=str(tmp_path / "house.usdc"))
    path = write_template(tmp_path, "usdc", imports=[{**HOUSE, "file": "house.usdc"}])
    if running_blender_version().startswith("4.2."):
        with pytest.raises(InputError, match=r"binary USD layer.*\.usda"):
            build(path)
        return
    objects = _by_path(build(path))
    # Blender writes each object as a transform prim holding its mesh prim, under a root prim of its own
    assert "/root/Building/Wall/Wall" in objects and "/root/Building/Door/Door" in objects
    assert _close(_bounds(objects["/root/Building/Wall/Wall"]), WALL)
    assert objects["/root/Building/Door/Door"].semantic_class_id == CLASS["door"]  # the transform's greybox_class


def _other_pythons() -> list[str]:
    return [p for p in os.environ.get("GREYBOX_OTHER_BLENDER_PYTHONS", "").split(os.pathsep) if p]


@pytest.mark.skipif(not _other_pythons(), reason="set GREYBOX_OTHER_BLENDER_PYTHONS to other bpy environments' Pythons (.ci/run does)")
def test_a_blend_saved_by_5_0_is_refused_by_4_2_naming_both_releases(models, tmp_path):
    from importlib.metadata import version

    pythons = {version("bpy")[:3]: sys.executable}
    for python in _other_pythons():
        release = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('bpy'))"], capture_output=True,
                                 text=True, timeout=60, check=True).stdout.strip()
        pythons.setdefault(release[:3], python)
    if "5.0" not in pythons or "4.2" not in pythons:
        pytest.skip("needs Blender 5.0 and 4.2")
    save = ("import bpy\nbpy.ops.wm.read_factory_settings(use_empty=True)\n"
            "m = bpy.data.meshes.new('T'); m.from_pydata([(0, 3, 0), (1, 3, 0), (1, 3, 1)], [], [(0, 1, 2)])\n"
            "bpy.context.scene.collection.objects.link(bpy.data.objects.new('T', m))\n"
            f"bpy.ops.wm.save_as_mainfile(filepath={str(tmp_path / 'new.blend')!r})\n")
    subprocess.run([pythons["5.0"], "-c", save], capture_output=True, timeout=300, check=True)
    write_template(tmp_path, "newer", imports=[{"name": "n", "file": "new.blend", "class": "wall"}])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GREYBOX_STORE": str(tmp_path / "store")}
    results = {}
    for series in ("4.2", "5.0"):
        proc = subprocess.run([pythons[series], "-m", "render_farm.cli", "validate", "newer.toml"], capture_output=True, text=True,
                              timeout=600, cwd=str(tmp_path), env=env)
        results[series] = proc
    assert results["5.0"].returncode == 0, results["5.0"].stderr[-2000:]
    assert results["4.2"].returncode == 2 and "new.blend" in results["4.2"].stderr
    assert "Blender 5.0" in results["4.2"].stderr and "4.2" in results["4.2"].stderr and "Traceback" not in results["4.2"].stderr


def test_the_readme_example_project_builds_its_models_and_places_them(tmp_path):
    """passes/example_models.py (the README's example): the bookshelf lands where the template puts
    it with the file's node paths and the class rules, the armchair asset by the armchair's rules."""
    from passes.example_models import write_example_project

    path = write_example_project(tmp_path / "example")
    with pytest.raises(FileExistsError):
        write_example_project(tmp_path / "example")  # nothing overwritten
    scene = build(path)
    shelf = {p: o for p, o in _by_path(scene).items() if o.name.startswith("bookshelf/")}
    assert sorted(p for p in shelf if "/Book_" in p) == [f"/Bookshelf/Book_{k}" for k in range(1, 7)]
    assert {shelf[p].semantic_class_id for p in shelf if "/Book_" in p} == {resolve_class("book").class_id}
    assert {shelf[p].semantic_class_id for p in shelf if "/Frame_" in p} == {resolve_class("shelf").class_id}
    everything = np.concatenate([o.vertices for o in shelf.values()])
    np.testing.assert_allclose(everything.min(0), [1.4, 3.375, 0.0], atol=1e-5)  # the file's frame + position
    np.testing.assert_allclose(everything.max(0), [2.6, 3.725, 1.8], atol=1e-5)
    (chair,) = [o for o in scene.objects if o.kind == "asset"]
    assert chair.semantic_class_id == resolve_class("armchair").class_id
    lo, hi = chair.vertices.min(0), chair.vertices.max(0)
    assert hi[2] - lo[2] == pytest.approx(0.85, abs=1e-5) and lo[2] == pytest.approx(0.0, abs=1e-9)
    assert chair.source.placement["rule"] == "around_table" and chair.source.placement["anchor"] == "coffee_table"
