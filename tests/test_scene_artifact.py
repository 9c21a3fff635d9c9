"""The scene as a recorded artifact: scene.npz and layout.json agree with each other and with the
template, ids are stable, scene.glb and scene.blend reopen in Blender with the same objects and
camera, the intrinsics are Blender's, and the store keys follow what each stage reads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from passes import scene_stage
from procedural.scene_builder import build_scene
from scenes.scene_data import LAYOUT_JSON, SCENE_BLEND, SCENE_GLB, SCENE_NPZ, CameraTrack, Scene
from scenes.semantic_palette import palette
from scenes.template_loading import BUNDLED_DIR, load_template

ROOT = Path(__file__).resolve().parents[1]

ROOM = textwrap.dedent("""\
    schema_version = 1
    name = "small_room"
    seed = 11

    [generator]
    kind = "room"

    [generator.room]
    width = 4.0
    depth = 3.5
    height = 2.5
    doors = [{ wall = "south", offset = 1.0, width = 0.9, height = 2.0 }]
    furniture = [
      { kind = "sofa", name = "sofa", wall = "west" },
      { kind = "coffee_table", name = "table" },
      { kind = "plant", name = "plant" },
    ]

    [[objects]]
    name = "crate"
    primitive = "box"
    position = [2.8, 1.0, 0.3]
    rotation = [10.0, 20.0, 30.0]
    size = [0.4, 0.5, 0.6]
    class = "box"

    [camera]
    focal_length = 22.0

    [camera.path]
    kind = "orbit"
    center = [2.0, 1.75, 0.6]
    radius = 1.0
    height = 1.5
    start_angle = 200.0
    end_angle = 250.0

    [render]
    resolution = [96, 64]
    frame_start = 1
    frame_end = 5
    fps = 12
    """)


@pytest.fixture(scope="module")
def room_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("templates") / "small_room.toml"
    path.write_text(ROOM)
    return path


@pytest.fixture(scope="module")
def room_scene(room_file) -> Scene:
    return build_scene(load_template(str(room_file)).template)


def _raw_npz(path: Path) -> tuple[dict, dict]:
    """scene.npz read with numpy alone (not through Scene.load_npz): (header, arrays), with each
    object's rows of the joined arrays also as ``object_<i>_<name>``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    v_ends, t_ends = np.cumsum(arrays["object_vertex_counts"]), np.cumsum(arrays["object_triangle_counts"])
    for i in range(len(v_ends)):
        v0, t0 = v_ends[i] - arrays["object_vertex_counts"][i], t_ends[i] - arrays["object_triangle_counts"][i]
        arrays[f"object_{i}_vertices"] = arrays["vertices"][v0:v_ends[i]]
        for name in ("triangles", "uvs", "normals"):
            arrays[f"object_{i}_{name}"] = arrays[name][t0:t_ends[i]]
    return json.loads(bytes(arrays.pop("scene_json")).decode()), arrays


# --------------------------------------------------------------------------------------------
# scene.npz and layout.json
# --------------------------------------------------------------------------------------------


def test_layout_agrees_with_the_geometry_in_scene_npz(room_scene, tmp_path):
    written = scene_stage.write_scene_data(room_scene, tmp_path)
    assert sorted(written) == sorted([SCENE_NPZ, LAYOUT_JSON])
    header, arrays = _raw_npz(tmp_path / SCENE_NPZ)
    layout = json.loads((tmp_path / LAYOUT_JSON).read_text())
    assert header["format"] == "greybox.scene" and header["version"] == 2 and layout["schema"] == 1
    assert [o["name"] for o in layout["objects"]] == [o["name"] for o in header["objects"]]
    names = palette()
    all_vertices = []
    for i, (entry, record) in enumerate(zip(header["objects"], layout["objects"])):
        vertices, triangles = arrays[f"object_{i}_vertices"], arrays[f"object_{i}_triangles"]
        all_vertices.append(vertices)
        # bounds recomputed from the stored geometry, exactly
        assert record["bounds"] == {"min": vertices.min(axis=0).tolist(), "max": vertices.max(axis=0).tolist()}
        assert record["instance_id"] == entry["instance_id"] == i + 1
        assert record["class"]["id"] == entry["class_id"] and record["class"]["index"] == entry["class_id"] - 1
        assert record["class"]["name"] == names[entry["class_id"] - 1].names[0]
        assert record["triangles"] == len(triangles) == len(arrays[f"object_{i}_uvs"])
        transform = np.array(record["transform"])
        np.testing.assert_array_equal(transform, arrays["object_transforms"][i])
        assert record["location"] == transform[:3, 3].tolist()
        # normals: unit, along the winding's cross product
        corners = vertices[triangles]
        cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normals = arrays[f"object_{i}_normals"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
        assert (np.einsum("ij,ij->i", normals, cross) > 0).all()
    everything = np.concatenate(all_vertices)
    assert layout["scene"]["bounds"] == {"min": everything.min(axis=0).tolist(), "max": everything.max(axis=0).tolist()}

    by_name = {o["name"]: o for o in layout["objects"]}
    # the crate's frame: its centre and its XYZ Euler rotation, so in its own frame it is the axis-aligned box
    crate = by_name["crate"]
    assert crate["source"] == {"kind": "explicit", "template_key": "objects.0"} and crate["class"]["name"] == "box"
    i = [o["name"] for o in header["objects"]].index("crate")
    t = np.array(crate["transform"])
    local = (arrays[f"object_{i}_vertices"] - t[:3, 3]) @ t[:3, :3]
    np.testing.assert_allclose(local.min(axis=0), [-0.2, -0.25, -0.3], atol=1e-12)
    np.testing.assert_allclose(local.max(axis=0), [0.2, 0.25, 0.3], atol=1e-12)
    # generated furniture: the rule that placed it, and a frame whose origin is its footprint centre on the floor
    sofa = by_name["sofa"]
    assert sofa["source"]["template_key"] == "generator.room.furniture.0"
    placement = sofa["placement"]
    assert placement["rule"] == "against_wall" and placement["wall"] == "west" and placement["pinned"]["wall"]
    assert placement["size_drawn"] and placement["rng"]["key"] == "11/sofa"
    assert sofa["location"] == pytest.approx(placement["position"], abs=1e-6)
    i = [o["name"] for o in header["objects"]].index("sofa")
    t = np.array(sofa["transform"])
    local = (arrays[f"object_{i}_vertices"] - t[:3, 3]) @ t[:3, :3]
    np.testing.assert_allclose(local.min(axis=0), [-placement["size"][0] / 2, -placement["size"][1] / 2, 0.0], atol=2e-6)
    np.testing.assert_allclose(local.max(axis=0), [placement["size"][0] / 2, placement["size"][1] / 2, placement["size"][2]], atol=2e-6)
    assert by_name["table"]["placement"]["rule"] == "facing_sofa" and by_name["table"]["placement"]["anchor"] == "sofa"
    assert by_name["room.wall_west"]["source"] == {"kind": "generator", "generator": "room", "template_key": "generator.room"}
    assert "placement" not in by_name["room.wall_west"]

    # and the file reads back into the same scene
    back = Scene.load_npz(tmp_path / SCENE_NPZ)
    assert back.geometry_hash() == room_scene.geometry_hash() and back.metadata == room_scene.metadata
    assert [o.source for o in back.objects] == [o.source for o in room_scene.objects]


def test_instance_ids_follow_the_template_and_are_stable_across_processes(tmp_path):
    # the documented order, taken from the template file itself: the room shell, the furniture in template order
    data = tomllib.loads((BUNDLED_DIR / "living_room.toml").read_text())
    furniture = [f.get("name", f["kind"]) for f in data["generator"]["room"]["furniture"]]
    scene = build_scene(load_template("living_room").template)
    names = [o.name for o in sorted(scene.objects, key=lambda o: o.instance_id)]
    shell = [n for n in names if n.startswith("room.")]
    assert names == shell + furniture and shell[:2] == ["room.floor", "room.ceiling"]
    assert [o.instance_id for o in sorted(scene.objects, key=lambda o: o.instance_id)] == list(range(1, len(names) + 1))

    scene_stage.write_scene_data(scene, tmp_path / "here")
    scene_stage.write_scene_data(build_scene(load_template("living_room").template), tmp_path / "again")
    code = ("import sys\nfrom passes.scene_stage import build_shot_scene, write_scene_data\n"
            "from scenes.template_loading import load_template\n"
            "write_scene_data(build_shot_scene(load_template('living_room').template), sys.argv[1])\n")
    for seed in ("0", "4242"):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
    for rel in (SCENE_NPZ, LAYOUT_JSON):
        first = (tmp_path / "here" / rel).read_bytes()
        assert all((tmp_path / other / rel).read_bytes() == first for other in ("again", "0", "4242")), rel


# --------------------------------------------------------------------------------------------
# Blender: intrinsics, scene.glb, scene.blend
# --------------------------------------------------------------------------------------------


def _blender_k(bpy, cam_obj, width: int, height: int) -> np.ndarray:
    """K from Blender's own projection matrix (OpenGL clip space) for a width x height image."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    p = np.array(cam_obj.calc_matrix_camera(depsgraph, x=width, y=height, scale_x=1.0, scale_y=1.0))
    return np.array([[width / 2 * p[0, 0], 0.0, width / 2 * (1 - p[0, 2])],
                     [0.0, height / 2 * p[1, 1], height / 2 * (1 + p[1, 2])],
                     [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("fit, width, height", [
    ("HORIZONTAL", 96, 64), ("VERTICAL", 96, 64), ("AUTO", 96, 64), ("AUTO", 64, 96), ("HORIZONTAL", 64, 96),
])
def test_intrinsics_per_frame_are_blenders(room_scene, fit, width, height):
    """Focal length and shift changing on every frame, each sensor fit: K equals what Blender projects."""
    import bpy

    from passes.blender_scene import instantiate_scene

    base = room_scene.camera
    n = len(base.frames)
    track = CameraTrack(frames=base.frames, positions=base.positions, rotations=base.rotations,
                        focal_lengths_mm=np.linspace(18.0, 40.0, n), shifts=np.stack([np.linspace(-0.1, 0.2, n), np.linspace(0.15, -0.05, n)], 1),
                        sensor_width_mm=36.0, sensor_height_mm=20.0, sensor_fit=fit)
    scene = Scene(name="k", seed=0, objects=room_scene.objects[:1], camera=track, width=width, height=height,
                  frame_start=room_scene.frame_start, frame_end=room_scene.frame_end, fps=room_scene.fps)
    instantiate_scene(scene)
    bscene = bpy.context.scene
    ks = []
    for frame in track.frames:
        bscene.frame_set(int(frame))
        expected = _blender_k(bpy, bscene.camera, width, height)
        ks.append(track.intrinsics(int(frame), width, height))
        np.testing.assert_allclose(ks[-1], expected, rtol=1e-5, atol=1e-4)
    assert len({round(k[0, 0], 6) for k in ks}) == n  # the focal length really changes per frame


def test_scene_glb_reimports_with_the_same_objects_classes_and_camera(room_scene, tmp_path):
    import bpy

    written = scene_stage.write_scene_exports(room_scene, tmp_path)
    assert list(written) == [SCENE_GLB]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = room_scene.fps  # the importer turns glTF seconds into frames at the scene's fps
    bpy.ops.import_scene.gltf(filepath=str(tmp_path / SCENE_GLB))
    bscene = bpy.context.scene
    meshes = {o.name: o for o in bscene.objects if o.type == "MESH"}
    cameras = [o for o in bscene.objects if o.type == "CAMERA"]
    assert sorted(meshes) == sorted(o.name for o in room_scene.objects) and len(cameras) == 1
    names = palette()
    for obj in room_scene.objects:
        node = meshes[obj.name]
        assert node["greybox_name"] == obj.name and node["greybox_instance_id"] == obj.instance_id
        assert node["greybox_class_id"] == obj.semantic_class_id
        assert node["greybox_class"] == names[obj.semantic_class_id - 1].names[0]
        assert json.loads(node["greybox_source"]) == obj.source.to_json()
        np.testing.assert_allclose(np.array(node.matrix_world), obj.transform, atol=1e-5)
        world = np.array([node.matrix_world @ v.co for v in node.data.vertices])
        lo, hi = obj.bounds
        np.testing.assert_allclose(world.min(axis=0), lo, atol=1e-5)
        np.testing.assert_allclose(world.max(axis=0), hi, atol=1e-5)
    # the camera: its pose on every frame of the shot (glTF time = frame / fps) and its lens
    width, height = bscene["greybox_resolution"]
    assert (width, height) == (room_scene.width, room_scene.height) and bscene["greybox_fps"] == room_scene.fps
    assert list(bscene["greybox_frames"]) == [room_scene.frame_start, room_scene.frame_end]
    cam = cameras[0]
    for frame in range(room_scene.frame_start, room_scene.frame_end + 1):
        bscene.frame_set(frame)
        np.testing.assert_allclose(np.array(cam.matrix_world), room_scene.camera.camera_to_world_blender(frame), atol=1e-5)
        k = _blender_k(bpy, cam, width, height)
        np.testing.assert_allclose(k, room_scene.camera.intrinsics(frame, width, height), rtol=1e-5)


def test_scene_blend_reopens_with_the_camera_at_the_recorded_pose_on_every_frame(room_scene, tmp_path):
    import bpy

    written = scene_stage.write_scene_exports(room_scene, tmp_path, glb=False, blend=True)
    assert list(written) == [SCENE_BLEND]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / SCENE_BLEND), load_ui=False)
    bscene = bpy.context.scene
    assert (bscene.render.resolution_x, bscene.render.resolution_y, bscene.render.fps) == (96, 64, 12)
    assert (bscene.frame_start, bscene.frame_end) == (1, 5)
    for obj in room_scene.objects:
        node = bscene.objects[obj.name]
        assert node.pass_index == obj.instance_id and node["greybox_class_id"] == obj.semantic_class_id
    cam = bscene.camera
    track = room_scene.camera
    for frame in track.frames:  # frame_start - 1 .. frame_end + 1
        bscene.frame_set(int(frame))
        np.testing.assert_allclose(np.array(cam.matrix_world), track.camera_to_world_blender(int(frame)), atol=1e-5)
        np.testing.assert_allclose(_blender_k(bpy, cam, 96, 64), track.intrinsics(int(frame), 96, 64), rtol=1e-5)
    bpy.ops.wm.read_factory_settings(use_empty=True)


# --------------------------------------------------------------------------------------------
# The build check and the store keys
# --------------------------------------------------------------------------------------------


def _shots(path: Path, *overrides: str, sweeps=(), frames=None, save_blend=False):
    from render_farm.job_request import JobRequest, resolve_shots

    return resolve_shots(JobRequest(command="render", templates=[str(path)], overrides=list(overrides), sweeps=list(sweeps),
                                    frames=frames, save_blend=save_blend))


def test_the_build_check_in_a_subprocess_says_what_the_driver_says(room_file):
    bad = _shots(room_file, "generator.room.furniture.0.size=[3.8, 1.0, 0.9]")[0]
    good = _shots(room_file)[0]
    items = [(s.name, s.template, s.resolved, s.source) for s in (good, bad)]
    items[0] = ("good",) + items[0][1:]
    with pytest.raises(InputError) as here:
        scene_stage.check_scenes_build(items, isolate=False)
    with pytest.raises(InputError) as there:
        scene_stage.check_scenes_build(items, isolate=True)
    assert str(here.value) == str(there.value)
    assert "small_room: generator.room.furniture.0: cannot place the sofa" in str(here.value)
    assert "good" not in str(here.value) and here.value.problems[0]["key"] == "generator.room.furniture.0"
    scene_stage.check_scenes_build(items[:1], isolate=True)  # a good one passes


def test_store_keys_follow_what_each_stage_reads(room_file, tmp_path):
    from render_farm.job_plan import build_graph

    def keys(*overrides, frames=None, save_blend=False):
        shots = _shots(room_file, "style.stylizer=\"npr\"", *overrides, frames=frames, save_blend=save_blend)
        graph = build_graph(shots, command="render", job_dir=tmp_path)
        out = {}
        for task in graph:
            for unit, key in task.units:
                out[f"{task.kind}:{unit}"] = key
        scene_task = graph.tasks["scene"]
        assert all(graph.tasks[t].deps[0] == "scene" for t in graph.tasks if t.startswith(("passes/", "stylize/")))
        assert scene_task.kind == "scene"
        return out

    base = keys()
    assert {k for k in base if k.startswith("scene:")} == {"scene:scene", "scene:glb", "scene:cameras"}
    prompt = keys('style.prompt="a red room"')
    assert all(prompt[k] == base[k] for k in base if not k.startswith(("stylize:", "assemble:")))
    assert all(prompt[k] != base[k] for k in base if k.startswith("stylize:"))
    lines = keys("passes.line_width=2")
    assert all(lines[k] == base[k] for k in base if k.startswith("scene:")) and lines["passes:1"] != base["passes:1"]
    moved = keys("objects.0.position=[2.7, 1.0, 0.3]")
    assert all(moved[k] != base[k] for k in base)  # the scene, and everything after it
    some = keys(frames="2-3")
    assert some["scene:scene"] == base["scene:scene"] and some["scene:glb"] == base["scene:glb"]
    assert some["scene:cameras"] != base["scene:cameras"]
    assert some["passes:2"] == base["passes:2"]  # a frame's passes do not depend on which frames a run renders
    blend = keys(save_blend=True)
    assert blend["scene:blend"] and all(blend[k] == base[k] for k in base)


def test_passes_render_the_recorded_scene_not_the_template(room_file, room_scene, tmp_path):
    """The passes task renders the view's scene/scene.npz: a floor recorded with another class shows it."""
    import dataclasses

    from passes.pass_exr import read_passes_exr
    from render_farm import stage_tasks
    from render_farm.task_worker import TaskContext

    recorded = dataclasses.replace(room_scene, objects=tuple(
        dataclasses.replace(o, semantic_class_id=100) if o.name == "room.floor" else o for o in room_scene.objects))
    view = tmp_path / "view"
    recorded.save_npz(view / SCENE_NPZ)
    loaded = load_template(str(room_file))
    ctx = TaskContext({"task_id": "passes/0001-0001", "units": [("1", "k1")], "store": str(tmp_path / "store"),
                       "view": str(view), "threads": 1})
    params = {"template": loaded.resolved, "template_hash": loaded.template_hash, "source": str(room_file),
              "scene_key": "recorded-scene"}
    try:
        stage_tasks.passes_chunk(params, ctx)
    finally:
        TaskContext.release_warm("passes")
    passes = read_passes_exr(ctx.store.unit_dir("k1") / "passes" / "0001.exr")
    floor_id = next(o.instance_id for o in room_scene.objects if o.name == "room.floor")
    assert (passes.instance_id == floor_id).any()
    assert set(np.unique(passes.class_id[passes.instance_id == floor_id])) == {100}


# --------------------------------------------------------------------------------------------
# Through the command line: nothing written before the scene builds
# --------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def test_a_scene_that_cannot_be_built_leaves_the_folder_as_it_was(room_file, tmp_path, capsys):
    from render_farm.cli import main

    store, out = tmp_path / "store", tmp_path / "out"
    out.mkdir()
    base = ["passes", str(room_file), "--out", str(out), "--store", str(store), "--frames", "1"]
    unplaceable = ["--set", "generator.room.furniture.0.size=[3.8, 1.0, 0.9]"]
    in_the_wall = ["--set", 'camera.path={kind = "static", position = [4.05, 1.7, 1.5], look_at = [2.0, 1.7, 1.0]}']
    for bad, key in ((unplaceable, "generator.room.furniture.0"), (in_the_wall, "camera.path")):
        assert main(base + bad) == 2
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err
        assert list(out.iterdir()) == [] and not store.exists()
    # one bad shot of a batch stops them all, naming it
    assert main(base + ["--sweep", "generator.room.furniture.0.size=[[2.0, 0.9, 0.8], [3.8, 1.0, 0.9]]"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 scenes" in err and "small_room-size-3.8_1.0_0.9: generator.room.furniture.0" in err
    assert list(out.iterdir()) == [] and not store.exists()
    # greybox validate runs the same check
    assert main(["validate", str(room_file), *unplaceable, "--json"]) == 2
    assert json.loads(capsys.readouterr().out)[0]["key"] == "generator.room.furniture.0"

    # the fixed template runs in the same folder without --force; then a bad one leaves that job untouched
    assert main(base) == 0
    assert {LAYOUT_JSON, SCENE_NPZ, SCENE_GLB, "cameras.json", "passes/0001.exr"} <= set(_snapshot(out))
    before = _snapshot(out)
    for bad in (unplaceable, in_the_wall):
        assert main(base + bad + ["--force"]) == 2
        assert _snapshot(out) == before
    capsys.readouterr()
    # asking for scene.blend later adds it (no --force; only the scene task runs, for that file)
    assert main(base + ["--save-blend", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"]["ran"] == 1 and (out / SCENE_BLEND).is_file()
    kept = (SCENE_NPZ, LAYOUT_JSON, SCENE_GLB, "cameras.json", "passes/", "control/")
    after = _snapshot(out)
    assert {k: after[k] for k in before if k.startswith(kept)} == {k: v for k, v in before.items() if k.startswith(kept)}
    assert SCENE_BLEND in json.loads((out / "manifest.json").read_text())["files"]
