"""Exact passes on analytic scenes (a plane, a cube, a known camera motion) rendered with the bpy wheel.

The scene builders here are also imported by the other ``test_passes_*`` modules.
"""

from __future__ import annotations

import numpy as np
import pytest

from scenes.scene_data import CameraTrack, Scene, SceneObject

# --------------------------------------------------------------------------------------------
# Analytic scene builders (hand-made Scene objects, independent of the procedural builder)
# --------------------------------------------------------------------------------------------


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world rotation in Blender camera axes (looks down -Z, +Y up)."""
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        right = np.cross(forward, (0.0, 1.0, 0.0))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    return np.stack([right, true_up, -forward], axis=1)


# each face: outward normal axis/sign, then its 4 corners (unit cube in [-1, 1]^3) counter-clockwise from outside
_CUBE_FACES = (
    ((1, 0, 0), [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)]),
    ((-1, 0, 0), [(-1, 1, -1), (-1, -1, -1), (-1, -1, 1), (-1, 1, 1)]),
    ((0, 1, 0), [(1, 1, -1), (-1, 1, -1), (-1, 1, 1), (1, 1, 1)]),
    ((0, -1, 0), [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)]),
    ((0, 0, 1), [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)]),
    ((0, 0, -1), [(-1, 1, -1), (1, 1, -1), (1, -1, -1), (-1, -1, -1)]),
)
CUBE_NORMALS = np.array([n for n, _ in _CUBE_FACES], dtype=np.float64)


def box_object(name: str, center, size, class_id: int, instance_id: int) -> SceneObject:
    """Axis-aligned box with its own 4 vertices per face (like the procedural builder) and one UV island per face."""
    center = np.asarray(center, dtype=np.float64)
    half = np.asarray(size, dtype=np.float64) / 2.0
    vertices, triangles, uvs = [], [], []
    for f, (_, corners) in enumerate(_CUBE_FACES):
        base = len(vertices)
        vertices += [center + np.asarray(c) * half for c in corners]
        triangles += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
        u0, v0 = (f % 3) / 3.0 + 0.02, (f // 3) / 2.0 + 0.02
        quad = [(u0, v0), (u0 + 0.28, v0), (u0 + 0.28, v0 + 0.45), (u0, v0 + 0.45)]
        uvs += [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
    return SceneObject(
        name=name, kind="box", semantic_class_id=class_id, instance_id=instance_id,
        vertices=np.array(vertices), triangles=np.array(triangles, dtype=np.int32), uvs=np.array(uvs, dtype=np.float32),
    )


def plane_object(name: str, center, size, class_id: int, instance_id: int) -> SceneObject:
    """A rectangle in the XY plane at ``center``, normal +Z, UVs covering [0.1, 0.9]^2."""
    cx, cy, cz = center
    hx, hy = size[0] / 2.0, size[1] / 2.0
    vertices = np.array([(cx - hx, cy - hy, cz), (cx + hx, cy - hy, cz), (cx + hx, cy + hy, cz), (cx - hx, cy + hy, cz)])
    quad = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    return SceneObject(
        name=name, kind="plane", semantic_class_id=class_id, instance_id=instance_id, vertices=vertices,
        triangles=np.array([(0, 1, 2), (0, 2, 3)], dtype=np.int32),
        uvs=np.array([[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]], dtype=np.float32),
    )


def make_scene(objects, positions, targets, *, width=64, height=64, frame_start=1, focal=35.0, name="analytic") -> Scene:
    """A scene whose camera track covers frame_start-1 .. frame_start-1+len(positions)-1 (so frame_end = that - 1)."""
    positions = np.asarray(positions, dtype=np.float64)
    targets = np.broadcast_to(np.asarray(targets, dtype=np.float64), positions.shape)
    rotations = np.stack([look_at(p, t) for p, t in zip(positions, targets)])
    frames = np.arange(frame_start - 1, frame_start - 1 + len(positions), dtype=np.int64)
    camera = CameraTrack(frames=frames, positions=positions, rotations=rotations, focal_lengths_mm=focal,
                         sensor_width_mm=36.0, clip_start=0.05, clip_end=100.0)
    return Scene(name=name, seed=0, objects=tuple(objects), camera=camera, width=width, height=height,
                 frame_start=frame_start, frame_end=int(frames[-1]) - 1, fps=24)


def cube_scene(width=96, height=64) -> Scene:
    """A 1 m cube (class id 16, table) on a floor plane (class id 4), seen from a corner by a moving camera."""
    cube = box_object("cube", (0.0, 0.0, 0.5), (1.0, 1.0, 1.0), class_id=16, instance_id=1)
    floor = plane_object("floor", (0.0, 0.0, 0.0), (6.0, 6.0), class_id=4, instance_id=2)
    positions = [(3.0 + 0.05 * i, -2.5 + 0.03 * i, 2.2 + 0.02 * i) for i in range(5)]
    return make_scene([cube, floor], positions, (0.0, 0.0, 0.4), width=width, height=height, focal=30.0)


def analytic_k(scene: Scene, frame: int) -> np.ndarray:
    """K of a horizontal-fit pinhole camera with no shift, from the track's focal length and sensor width
    (written out here, independently of ``CameraTrack.intrinsics``)."""
    cam = scene.camera
    f = cam.focal_lengths_mm[cam.index(frame)] / cam.sensor_width_mm * scene.width
    return np.array([[f, 0.0, scene.width / 2.0], [0.0, f, scene.height / 2.0], [0.0, 0.0, 1.0]])


def pixel_rays(scene: Scene, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """World origin (3,) and unit directions (H, W, 3) of the rays through each pixel centre."""
    k = analytic_k(scene, frame)
    cols, rows = np.meshgrid(np.arange(scene.width) + 0.5, np.arange(scene.height) + 0.5)
    cam = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones_like(cols)], axis=-1)
    w2c = scene.camera.world_to_camera_opencv(frame)
    directions = cam @ w2c[:3, :3]  # R^T applied to each row vector
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return scene.camera.positions[scene.camera.index(frame)], directions


def ray_box(origin, directions, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry distance (inf on miss) and the index into CUBE_NORMALS of the face entered."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (np.asarray(lo) - origin) / directions
        t2 = (np.asarray(hi) - origin) / directions
    near = np.minimum(t1, t2)
    far = np.maximum(t1, t2)
    t_enter = near.max(axis=-1)
    t_exit = far.min(axis=-1)
    hit = (t_enter <= t_exit) & (t_exit > 0)
    axis = near.argmax(axis=-1)
    sign = -np.sign(np.take_along_axis(directions, axis[..., None], axis=-1)[..., 0])
    face = np.where(sign > 0, 2 * axis, 2 * axis + 1)  # CUBE_NORMALS order: +x, -x, +y, -y, +z, -z
    return np.where(hit, t_enter, np.inf), face


@pytest.fixture(scope="module")
def cube_render():
    from passes.blender_render import PassRenderer

    scene = cube_scene()
    renderer = PassRenderer(scene, threads=2)
    frames = {f: renderer.render(f) for f in (1, 2, 3)}
    renderer.close()
    return scene, frames


# --------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------


def test_plane_facing_camera_gives_its_distance_and_inf_elsewhere():
    from passes.blender_render import PassRenderer

    distance = 4.0
    plane = plane_object("wall", (0.0, 0.0, 0.0), (2.0, 2.0), class_id=1, instance_id=1)
    positions = [(0.0, 0.0, distance)] * 3
    scene = make_scene([plane], positions, (0.0, 0.0, 0.0), width=64, height=48)
    # look_at straight down needs another up; the rotation is the identity up to a roll
    passes = PassRenderer(scene).render(1)

    k = analytic_k(scene, 1)
    cols, rows = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    w2c = scene.camera.world_to_camera_opencv(1)
    cam_dirs = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones_like(cols)], axis=-1)
    world = cam_dirs * distance @ w2c[:3, :3] + scene.camera.positions[1]
    expected_fg = (np.abs(world[..., 0]) < 1.0) & (np.abs(world[..., 1]) < 1.0)

    assert expected_fg.sum() > 200
    np.testing.assert_array_equal(passes.foreground, expected_fg)
    np.testing.assert_allclose(passes.depth[expected_fg], distance, rtol=0, atol=1e-5)
    assert np.all(np.isposinf(passes.depth[~expected_fg]))
    assert np.all(passes.instance_id[expected_fg] == 1) and np.all(passes.class_id[expected_fg] == 1)
    assert np.all(passes.class_id[~expected_fg] == 0)
    # facing the camera: camera-space normal +Z, exactly one of the UV island's values, coverage 1
    np.testing.assert_allclose(passes.normal[expected_fg], np.broadcast_to([0.0, 0.0, 1.0], (int(expected_fg.sum()), 3)), atol=1e-5)
    assert np.all(passes.normal[~expected_fg] == 0)
    assert np.all(passes.uv[expected_fg, 2] == 1.0) and np.all(passes.uv[~expected_fg] == 0.0)
    u, v = passes.uv[expected_fg, 0], passes.uv[expected_fg, 1]
    np.testing.assert_allclose(u, 0.1 + 0.8 * (world[expected_fg, 0] + 1.0) / 2.0, atol=1e-4)
    np.testing.assert_allclose(v, 0.1 + 0.8 * (world[expected_fg, 1] + 1.0) / 2.0, atol=1e-4)


def test_tilted_floor_depth_matches_ray_casting(cube_render):
    """Planar depth of every pixel (row 0 at the top) equals the analytic ray-cast depth."""
    scene, frames = cube_render
    passes = frames[2]
    origin, dirs = pixel_rays(scene, 2)
    t_cube, _ = ray_box(origin, dirs, (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dirs[..., 2] < 0, -origin[2] / dirs[..., 2], np.inf)
    hit_floor = np.abs(origin[0] + t_floor * dirs[..., 0]) < 3.0
    hit_floor &= np.abs(origin[1] + t_floor * dirs[..., 1]) < 3.0
    t_floor = np.where(hit_floor, t_floor, np.inf)
    t = np.minimum(t_cube, t_floor)
    forward = -scene.camera.rotations[scene.camera.index(2)][:, 2]
    planar = t * (dirs @ forward)
    finite = np.isfinite(planar)
    assert finite.sum() > 0.5 * planar.size and (~finite).sum() > 0
    assert np.array_equal(np.isfinite(passes.depth), finite)
    # the one sample sits within the 0.01 px filter width of the pixel centre: at a grazing floor
    # that moves the depth by up to ~1e-4 relative
    np.testing.assert_allclose(passes.depth[finite], planar[finite], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------------------------


def test_cube_faces_give_camera_space_normals_and_bae_colours(cube_render):
    from passes.control_images import normal_control

    scene, frames = cube_render
    passes = frames[2]
    origin, dirs = pixel_rays(scene, 2)
    t_cube, face = ray_box(origin, dirs, (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0))
    on_cube = np.isfinite(t_cube)
    assert on_cube.sum() > 300
    assert np.count_nonzero(on_cube != (passes.instance_id == 1)) <= 2  # only pixels grazing an edge may differ
    rotation = scene.camera.rotations[scene.camera.index(2)]
    expected = CUBE_NORMALS[face] @ rotation  # world -> Blender camera space
    both = on_cube & (passes.instance_id == 1)
    np.testing.assert_allclose(passes.normal[both], expected[both], atol=1e-4)
    assert len(np.unique(face[both])) == 3  # three faces seen from a corner

    rgb = normal_control(passes.normal)
    expected_rgb = np.rint(
        np.stack([(1 - expected[..., 0]) / 2, (1 + expected[..., 1]) / 2, (1 + expected[..., 2]) / 2], -1) * 255
    )
    assert np.abs(rgb[both].astype(int) - expected_rgb[both]).max() <= 1
    # the top face (+Z world) seen from above is mostly "up" (green), the floor too
    top = both & (face == 4)
    assert np.all(rgb[top, 1] > 200)
    assert np.all(rgb[~passes.foreground] == (128, 128, 255))


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------


def test_segmentation_holds_exactly_the_palette_colours_present(cube_render):
    from passes.control_images import seg_control
    from scenes.semantic_palette import class_id_colours, resolve_class

    _, frames = cube_render
    passes = frames[1]
    background = resolve_class("wall").class_id
    image = seg_control(passes.class_id, background)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    table = class_id_colours()
    assert colours == {tuple(table[16]), tuple(table[4]), tuple(table[background])}
    np.testing.assert_array_equal(image[passes.instance_id == 1], np.broadcast_to(table[16], image[passes.instance_id == 1].shape))
    np.testing.assert_array_equal(image[~passes.foreground], np.broadcast_to(table[background], image[~passes.foreground].shape))


# --------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [1, 2, 3])
def test_flow_matches_analytic_reprojection(cube_render, frame):
    """Back-project each pixel's surface point with the depth pass, project it into t+1 and t-1."""
    scene, frames = cube_render
    passes = frames[frame]
    fg = passes.foreground
    rows, cols = np.nonzero(fg)
    k = analytic_k(scene, frame)
    z = passes.depth[fg].astype(np.float64)
    cam = np.stack([(cols + 0.5 - k[0, 2]) / k[0, 0] * z, (rows + 0.5 - k[1, 2]) / k[1, 1] * z, z], axis=1)
    w2c = scene.camera.world_to_camera_opencv(frame)
    world = (cam - w2c[:3, 3]) @ w2c[:3, :3]
    here = np.stack([cols + 0.5, rows + 0.5], axis=1)
    for other, flow in ((frame + 1, passes.flow_forward), (frame - 1, passes.flow_backward)):
        there, _ = scene.camera.project(other, world, scene.width, scene.height)
        expected = there - here
        assert np.abs(expected).max() > 0.3  # the camera really moves
        np.testing.assert_allclose(flow[fg], expected, rtol=0, atol=0.01)
    assert np.all(passes.flow_forward[~fg] == 0) and np.all(passes.flow_backward[~fg] == 0)


def test_blender_camera_reproduces_track_at_every_frame(cube_render):
    import bpy

    scene, _ = cube_render
    from passes.blender_render import PassRenderer

    PassRenderer(scene)
    for frame in scene.camera.frames:
        bpy.context.scene.frame_set(int(frame))
        got = np.array(bpy.context.scene.camera.matrix_world)
        np.testing.assert_allclose(got, scene.camera.camera_to_world_blender(int(frame)), atol=1e-6)
    obj = bpy.data.objects["greybox_scene"]  # every object in one mesh, the instance id per face
    ids = np.empty(len(obj.data.polygons), dtype=np.float32)
    obj.data.attributes["greybox_instance"].data.foreach_get("value", ids)
    expected = np.concatenate([np.full(len(o.triangles), o.instance_id) for o in scene.objects])
    np.testing.assert_array_equal(ids, expected)
    assert obj.data.uv_layers["UVMap"].active_render


# --------------------------------------------------------------------------------------------
# Depth control
# --------------------------------------------------------------------------------------------


def test_depth_control_of_plane_at_known_distance(cube_render):
    from passes.blender_render import PassRenderer
    from passes.control_images import depth_control
    from passes.depth_range import fixed_disparity_range

    plane = plane_object("wall", (0.0, 0.0, 0.0), (2.0, 2.0), class_id=1, instance_id=1)
    scene = make_scene([plane], [(0.0, 0.0, 2.5)] * 3, (0.0, 0.0, 0.0))
    passes = PassRenderer(scene).render(1)
    lo, hi = fixed_disparity_range(1.0, 10.0)
    image = depth_control(passes.depth, lo, hi)
    grey = int(np.rint((1 / 2.5 - 0.1) / (1.0 - 0.1) * 255))  # 85
    assert np.all(image[passes.foreground] == grey)
    assert np.all(image[~passes.foreground] == 0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_a_second_renderer_retires_the_first():
    from passes.blender_render import PassRenderer

    first = PassRenderer(cube_scene(width=16, height=16))
    second = PassRenderer(cube_scene(width=16, height=16))
    with pytest.raises(RuntimeError, match="retired"):
        first.render(1)
    assert second.render(1).depth.shape == (16, 16)


def test_a_large_scene_shares_its_joined_mesh_with_the_same_passes(cube_render, monkeypatch):
    """From SHARED_MESH_MIN_TRIANGLES on, the joined mesh gets a second user no camera ray sees (so
    Cycles keeps its BVH between frames): depth, flow, ids and UV the same bits as the mesh's one
    user gives, the normal within a float32 ulp; a small scene keeps the one user."""
    import bpy

    import passes.blender_render as blender_render
    from passes.blender_scene import JOINED_NAME

    scene, alone = cube_render
    blender_render.PassRenderer(cube_scene(width=16, height=16))
    assert blender_render.SHARED_MESH_NAME not in bpy.data.objects
    assert bpy.data.objects[JOINED_NAME].data.users == 1
    monkeypatch.setattr(blender_render, "SHARED_MESH_MIN_TRIANGLES", 1)
    renderer = blender_render.PassRenderer(scene, threads=2)
    second = bpy.data.objects[blender_render.SHARED_MESH_NAME]
    assert second.data == bpy.data.objects[JOINED_NAME].data and not second.visible_camera
    assert bpy.data.materials[blender_render.NORMAL_MATERIAL_NAME].cycles.emission_sampling == "NONE"
    for frame in (1, 2, 3):
        shared = renderer.render(frame)
        for field in ("depth", "flow_forward", "flow_backward", "instance_id", "class_id", "uv"):
            a, b = getattr(shared, field), getattr(alone[frame], field)
            assert a.dtype == b.dtype and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), field
        np.testing.assert_allclose(shared.normal, alone[frame].normal, rtol=0, atol=1e-6)
        assert np.count_nonzero(shared.instance_id == 1) > 300  # the cube is in view
    renderer.close()
