"""Orthographic and shifted cameras, rendered with the bpy wheel and checked against analytic
projections written out here (not ``CameraTrack.project``): orthographic depth and flow, the
projection ``cameras.json`` records, a shifted lens keeping vertical world lines vertical, a lens
that changes between frames (its flow is the principal point's or the scale's move), the plan view
of the bundled apartment (every room's floor in the seg pass, north up), and the consistency modes
(``flow_warp``, ``keyframes``) taking an orthographic camera with near-zero warp error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scenes.scene_data import CameraTrack, Scene
from tests.test_passes_analytic import box_object, look_at, plane_object, ray_box

W, H = 64, 48
ORTHO = 5.0  # metres across the width


def _scene(objects, positions, targets, *, type="perspective", ortho=None, shifts=None, focal=30.0, w=W, h=H) -> Scene:
    positions = np.asarray(positions, dtype=np.float64)
    targets = np.broadcast_to(np.asarray(targets, dtype=np.float64), positions.shape)
    rotations = np.stack([look_at(p, t) for p, t in zip(positions, targets)])
    frames = np.arange(0, len(positions), dtype=np.int64)
    camera = CameraTrack(frames=frames, positions=positions, rotations=rotations, focal_lengths_mm=focal,
                         sensor_width_mm=36.0, clip_start=0.05, clip_end=100.0, shifts=shifts, type=type, ortho_scales=ortho)
    return Scene(name="lens", seed=0, objects=tuple(objects), camera=camera, width=w, height=h,
                 frame_start=1, frame_end=len(positions) - 2, fps=24)


def _render(scene, frames):
    from passes.blender_render import PassRenderer

    renderer = PassRenderer(scene, threads=2)
    out = {f: renderer.render(f) for f in frames}
    renderer.close()
    return out


def _ortho_pixels(scene, frame, world):
    """Analytic orthographic projection: pixels = centre + s (x . right, -(x . up)), s = W / ortho_scale."""
    cam = scene.camera
    i = cam.index(frame)
    right, up = cam.rotations[i][:, 0], cam.rotations[i][:, 1]
    d = world - cam.positions[i]
    s = scene.width / cam.ortho_scales[i]
    return np.stack([scene.width / 2 + s * (d @ right), scene.height / 2 - s * (d @ up)], axis=-1)


def _ortho_rays(scene, frame):
    """Origins (H, W, 3) on the camera plane and the one direction (3,) of an orthographic camera's pixel rays."""
    cam = scene.camera
    i = cam.index(frame)
    right, up, forward = cam.rotations[i][:, 0], cam.rotations[i][:, 1], -cam.rotations[i][:, 2]
    s = scene.width / cam.ortho_scales[i]
    cols, rows = np.meshgrid(np.arange(scene.width) + 0.5, np.arange(scene.height) + 0.5)
    x, y = (cols - scene.width / 2) / s, -(rows - scene.height / 2) / s
    origins = cam.positions[i] + x[..., None] * right + y[..., None] * up
    return origins, forward


@pytest.fixture(scope="module")
def ortho_render():
    cube = box_object("cube", (0.0, 0.0, 0.5), (1.0, 1.0, 1.0), class_id=16, instance_id=1)
    floor = plane_object("floor", (0.0, 0.0, 0.0), (6.0, 6.0), class_id=4, instance_id=2)
    positions = [(6.0 + 0.1 * i, -5.0 + 0.15 * i, 4.0 + 0.05 * i) for i in range(5)]
    scene = _scene([cube, floor], positions, (0.0, 0.0, 0.4), type="orthographic", ortho=ORTHO)
    return scene, _render(scene, (1, 2, 3))


def test_orthographic_depth_is_the_parallel_rays_planar_depth(ortho_render):
    scene, frames = ortho_render
    origins, d = _ortho_rays(scene, 2)
    t_cube, _ = ray_box(origins, np.broadcast_to(d, origins.shape), (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0))
    t_floor = -origins[..., 2] / d[2]
    hit = np.all(np.abs((origins + t_floor[..., None] * d)[..., :2]) < 3.0, axis=-1)
    t = np.minimum(t_cube, np.where(hit, t_floor, np.inf))  # unit direction along the axis: t is the planar depth
    finite = np.isfinite(t)
    assert 0.2 * t.size < finite.sum() < t.size
    passes = frames[2]
    assert np.count_nonzero(np.isfinite(passes.depth) != finite) <= 2  # pixels grazing the floor's edge
    both = finite & np.isfinite(passes.depth)
    np.testing.assert_allclose(passes.depth[both], t[both], rtol=1e-4, atol=1e-4)
    on_cube = np.isfinite(t_cube) & (t_cube <= t)
    assert np.count_nonzero(on_cube != (passes.instance_id == 1)) <= 3


@pytest.mark.parametrize("frame", [1, 2, 3])
def test_orthographic_flow_matches_the_analytic_reprojection(ortho_render, frame):
    scene, frames = ortho_render
    passes = frames[frame]
    fg = passes.foreground
    origins, d = _ortho_rays(scene, frame)
    world = origins[fg] + passes.depth[fg].astype(np.float64)[:, None] * d
    rows, cols = np.nonzero(fg)
    here = np.stack([cols + 0.5, rows + 0.5], axis=1)
    for other, flow in ((frame + 1, passes.flow_forward), (frame - 1, passes.flow_backward)):
        expected = _ortho_pixels(scene, other, world) - here
        assert np.abs(expected).max() > 1.0  # the camera really moves
        np.testing.assert_allclose(flow[fg], expected, rtol=0, atol=0.01)
    assert np.all(passes.flow_forward[~fg] == 0)


def test_cameras_json_records_the_orthographic_projection(ortho_render):
    from passes.camera_records import camera_records

    scene, _ = ortho_render
    records = json.loads(json.dumps(camera_records(scene, [1, 2])))
    corners = np.array([(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (0.0, 1.0)])
    for frame in (1, 2):
        rec = records[str(frame)] if str(frame) in records else records["frames"][str(frame)]
        assert rec["type"] == "orthographic" and rec["ortho_scale"] == ORTHO
        p = np.array(rec["projection"]) @ np.array(rec["world_to_camera"])
        homogeneous = np.c_[corners, np.ones(len(corners))] @ p.T
        np.testing.assert_allclose(homogeneous[:, 2], 1.0)  # no perspective divide
        np.testing.assert_allclose(homogeneous[:, :2], _ortho_pixels(scene, frame, corners), atol=1e-9)
        k = np.array(rec["K"])
        np.testing.assert_allclose(k, [[W / ORTHO, 0, W / 2], [0, W / ORTHO, H / 2], [0, 0, 1]])


def _tower(shift_y=0.0, tilt_to=None, shifts=None, positions=None):
    tower = box_object("tower", (0.0, 0.0, 3.0), (3.0, 3.0, 6.0), class_id=2, instance_id=1)
    positions = positions or [(0.0, -8.0, 1.5)] * 4
    target = tilt_to or (0.0, 0.0, 1.5)
    if shifts is None:
        shifts = np.tile([0.0, shift_y], (len(positions), 1))
    return _scene([tower], positions, target, shifts=shifts, focal=24.0, w=TW, h=TW)


TW = 96  # the tower's images


def test_a_shifted_lens_keeps_vertical_world_lines_vertical():
    """Looking level with shift_y = 0.25 the tower's sides are image columns and it spans the rows the
    shifted pinhole gives (f = 24/36 W, cy = H/2 + 0.25 W); tilting up to frame it instead makes them
    converge (its front face, 6.5 m away, is narrower at the top than at the bottom)."""
    shifted = _tower(0.25)
    tilted = _tower(tilt_to=(0.0, 0.0, 4.0))
    got = _render(shifted, (1,))[1].instance_id == 1
    conv = _render(tilted, (1,))[1].instance_id == 1
    f, cx, cy, half, depth = 24.0 / 36.0 * TW, TW / 2, TW / 2 + 0.25 * TW, 1.5, 6.5

    def sides(mask):
        rows = np.flatnonzero(mask.any(axis=1))
        left = np.array([np.flatnonzero(mask[r])[0] for r in rows])
        right = np.array([np.flatnonzero(mask[r])[-1] for r in rows])
        return rows, left, right

    rows, left, right = sides(got)
    assert len(rows) > 25
    assert left.max() - left.min() == 0 and right.max() - right.min() == 0
    # the front face's edges (y = -1.5): columns cx +- f half / depth; its top z = 6, its bottom z = 0
    assert abs(left[0] - (cx - f * half / depth)) <= 1.0 and abs(right[0] + 1 - (cx + f * half / depth)) <= 1.0
    assert abs(rows[0] - (cy - f * 4.5 / depth)) <= 1.0 and abs(rows[-1] + 1 - (cy + f * 1.5 / depth)) <= 1.0
    rows, left, right = sides(conv)
    widths = right - left
    assert widths[-1] - widths[0] >= 5  # converging verticals without the shift (about 8 px here)


def test_a_lens_that_changes_between_frames_moves_the_flow_by_the_principal_point():
    """A still camera whose shift grows 0.02 of the width a frame: every surface pixel's flow is the
    principal point's move, (-dx W, +dy W); an orthographic camera zooming (ortho scale 5 -> 4.5):
    pixels move away from the centre by s'/s - 1."""
    steps = np.arange(4)[:, None] * [0.02, 0.03]
    scene = _tower(shifts=steps + [0.0, 0.2])
    passes = _render(scene, (1, 2))
    for frame, p in passes.items():
        fg = p.foreground
        assert fg.sum() > 100
        np.testing.assert_allclose(p.flow_forward[fg], np.broadcast_to([-0.02 * TW, 0.03 * TW], (fg.sum(), 2)), atol=1e-3)
        np.testing.assert_allclose(p.flow_backward[fg], np.broadcast_to([0.02 * TW, -0.03 * TW], (fg.sum(), 2)), atol=1e-3)
    tower = box_object("tower", (0.0, 0.0, 1.0), (2.0, 2.0, 2.0), class_id=2, instance_id=1)
    scales = np.array([5.0, 4.5, 4.0, 3.5])
    zoom = _scene([tower], [(0.0, -8.0, 1.0)] * 4, (0.0, 0.0, 1.0), type="orthographic", ortho=scales, w=W, h=H)
    p = _render(zoom, (1,))[1]
    fg = p.foreground
    rows, cols = np.nonzero(fg)
    centred = np.stack([cols + 0.5 - W / 2, rows + 0.5 - H / 2], axis=1)
    np.testing.assert_allclose(p.flow_forward[fg], centred * (scales[1] / scales[2] - 1), atol=1e-3)
    np.testing.assert_allclose(p.flow_backward[fg], centred * (scales[1] / scales[0] - 1), atol=1e-3)


def test_the_plan_view_shows_every_rooms_floor_north_up():
    from passes.blender_render import PassRenderer
    from procedural.scene_builder import build_scene
    from room_oracles import plan_rooms
    from scenes.template_loading import load_template

    template = load_template("apartment_plan", ["render.resolution=[128, 128]"]).template
    assert template.camera.type == "orthographic" and tuple(template.camera.up) == (0.0, 1.0, 0.0)
    scene = build_scene(template)
    passes = PassRenderer(scene).render(1)
    ids = {o.name: o.instance_id for o in scene.objects}
    rooms, _, _ = plan_rooms(template)
    s = 128 / template.camera.ortho_scale
    cx, cy = template.camera.path.position[:2]
    for name, poly in rooms:
        seen = passes.instance_id == ids[f"floor:{name}"]
        assert seen.sum() >= 30, f"{name}'s floor is not seen from above"
        rows, cols = np.nonzero(seen)
        # north up, east right, one scale: every seen floor pixel maps back into the room's bounds
        x = cx + (cols + 0.5 - 64) / s
        y = cy - (rows + 0.5 - 64) / s
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        assert x.min() >= min(xs) - 0.02 and x.max() <= max(xs) + 0.02
        assert y.min() >= min(ys) - 0.02 and y.max() <= max(ys) + 0.02
        assert np.all(passes.class_id[seen] == scene.objects[ids[f"floor:{name}"] - 1].semantic_class_id)


@pytest.mark.parametrize("mode", ["flow_warp", "keyframes"])
def test_consistency_modes_take_an_orthographic_camera(tmp_path_factory, mode):
    """An orthographic orbit rendered by Blender, stylised by the NPR stylizer: the warp error (UV
    correspondences, independent of the camera model) stays near zero, as for perspective cameras."""
    from passes.render_chunk import write_frame_outputs
    from scenes.scene_data import SCENE_NPZ
    from stylize.stylize_stage import stylize_frames
    from tests.test_consistency_modes import make_template
    from tests.test_consistency_scenes import box_object as uv_box

    job_dir = tmp_path_factory.mktemp(f"ortho_{mode}")
    objects = [uv_box("floor", 1, (0, 0, -0.05), (6, 6, 0.1), class_id=4), uv_box("box_a", 2, (0, 0, 0.5), (1, 1, 1), class_id=11),
               uv_box("box_b", 3, (1.2, 0.9, 0.35), (0.6, 0.8, 0.7), class_id=20)]
    angles = np.radians(20 + 1.5 * (np.arange(8) - 1))
    positions = np.stack([6 * np.cos(angles), 6 * np.sin(angles), np.full(8, 3.0)], axis=1)
    scene = _scene(objects, positions, (0.0, 0.0, 0.4), type="orthographic", ortho=4.0, shifts=np.tile([0.05, 0.1], (8, 1)),
                   w=32, h=32)
    template = make_template()
    for p in _render(scene, range(1, 7)).values():
        write_frame_outputs(job_dir, scene, p, template, None)
    cameras = {"frames": {str(f): {"blender_matrix_world": scene.camera.camera_to_world_blender(f).tolist()} for f in range(1, 7)}}
    (job_dir / "cameras.json").write_text(json.dumps(cameras))
    scene.save_npz(job_dir / SCENE_NPZ)
    out = tmp_path_factory.mktemp(f"ortho_{mode}_out")
    result = stylize_frames(template, list(range(1, 7)), job_dir, out, mode=mode, measure_warp_error=True)
    assert sorted(result.frame_hashes) == list(range(1, 7))
    assert result.warp_error.short_mae < 0.03 and result.warp_error.long_mae < 0.05


def test_keyframe_atlases_project_through_the_orthographic_camera():
    """The keyframes mode's texel projection and view weights (stylize.texture_atlas) against the
    analytic orthographic camera: pixels without a divide, parallel rays (|cos| = |n . axis|), planar depth."""
    from stylize.texture_atlas import ObjectAtlas

    cube = box_object("cube", (0.0, 0.0, 0.5), (1.0, 1.0, 1.0), class_id=16, instance_id=1)
    positions = [(6.0 + 0.1 * i, -5.0 + 0.15 * i, 4.0 + 0.05 * i) for i in range(4)]
    scene = _scene([cube], positions, (0.0, 0.0, 0.4), type="orthographic", ortho=ORTHO, shifts=np.tile([0.1, -0.05], (4, 1)))
    atlas = ObjectAtlas.from_object(cube, 32)
    assert len(atlas.positions) > 500
    cam = scene.camera
    for frame in (1, 2):
        xy, depth = atlas.texel_pixels(cam, frame, W, H)
        expected = _ortho_pixels(scene, frame, atlas.positions) + [-0.1 * W, -0.05 * W]  # the shift moves the principal point
        np.testing.assert_allclose(xy, expected, atol=1e-9)
        i = cam.index(frame)
        forward = -cam.rotations[i][:, 2]
        np.testing.assert_allclose(depth, (atlas.positions - cam.positions[i]) @ forward, atol=1e-9)
        cos, dist = atlas.view_cosines(cam, frame)
        np.testing.assert_allclose(cos, np.abs(atlas.normals @ forward), atol=1e-9)
        np.testing.assert_allclose(dist, depth, atol=1e-9)
