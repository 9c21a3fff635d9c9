"""Synthetic scenes for the consistency tests (boxes + an orbiting camera), and checks of the
reference rasteriser's passes (``tests/support/reference_rasteriser.py``) against Blender's and
against the conventions the consistency modes rely on.

Other tests import the builders from here (``from tests.test_consistency_scenes import ...``).
"""

from __future__ import annotations

import numpy as np

from passes.frame_passes import FramePasses
from scenes.scene_data import CameraTrack, Scene, SceneObject
from stylize.flow_warp import source_coordinates, warp_validity
from stylize.image_operations import sample_nearest
from tests.support.reference_rasteriser import render_scene_passes

# Box faces: (axis, sign) and the UV cell (col, row) of its island in a 3 x 2 layout.
_FACES = [((0, +1), (0, 0)), ((0, -1), (1, 0)), ((1, +1), (2, 0)), ((1, -1), (0, 1)), ((2, +1), (1, 1)), ((2, -1), (2, 1))]


def box_object(name: str, instance_id: int, centre, size, class_id: int = 1) -> SceneObject:
    """An axis-aligned box, 12 triangles CCW from outside, one UV island per face (3 x 2 grid with gaps)."""
    centre = np.asarray(centre, float)
    half = np.asarray(size, float) / 2
    vertices, triangles, uvs = [], [], []
    for (axis, sign), (cu, cv) in _FACES:
        a, b = (axis + 1) % 3, (axis + 2) % 3  # e_a x e_b = e_axis: counter-clockwise seen from outside
        if sign < 0:
            a, b = b, a
        corners = []
        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = np.zeros(3)
            p[axis] = sign * half[axis]
            p[a] = sa * half[a]
            p[b] = sb * half[b]
            corners.append(centre + p)
        base = len(vertices)
        vertices.extend(corners)
        # UV: island cell is 1/3 x 1/2 with a 0.02 gap
        u0, v0 = cu / 3 + 0.02, cv / 2 + 0.02
        du, dv = 1 / 3 - 0.04, 1 / 2 - 0.04
        cuv = [(u0, v0), (u0 + du, v0), (u0 + du, v0 + dv), (u0, v0 + dv)]
        for tri in ((0, 1, 2), (0, 2, 3)):
            triangles.append([base + t for t in tri])
            uvs.append([cuv[t] for t in tri])
    return SceneObject(name=name, kind="box", semantic_class_id=class_id, instance_id=instance_id,
                       vertices=np.array(vertices), triangles=np.array(triangles, dtype=np.int32),
                       uvs=np.array(uvs, dtype=np.float32))


def look_at_rotation(position, target) -> np.ndarray:
    """Camera-to-world rotation in Blender camera axes (looks down -Z, +Y up), world Z up."""
    f = np.asarray(target, float) - np.asarray(position, float)
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    return np.stack([r, u, -f], axis=1)


def orbit_scene(n_frames: int = 6, size: int = 48, degrees_per_frame: float = 2.0, radius: float = 4.0,
                with_room: bool = False) -> Scene:
    """Two boxes on a floor slab (partly occluding each other), camera orbiting the origin."""
    objects = [
        box_object("floor", 1, (0, 0, -0.05), (6, 6, 0.1), class_id=4),
        box_object("box_a", 2, (0, 0, 0.5), (1, 1, 1), class_id=11),
        box_object("box_b", 3, (1.2, 0.9, 0.35), (0.6, 0.8, 0.7), class_id=20),
    ]
    if with_room:
        objects.append(box_object("wall", 4, (0, -3.0, 1.0), (6, 0.1, 2.0), class_id=1))
    frames = np.arange(0, n_frames + 2)  # frame_start - 1 .. frame_end + 1
    positions, rotations = [], []
    for f in frames:
        angle = np.radians(20 + degrees_per_frame * (f - 1))
        pos = np.array([radius * np.cos(angle), radius * np.sin(angle), 2.0])
        positions.append(pos)
        rotations.append(look_at_rotation(pos, (0, 0, 0.4)))
    camera = CameraTrack(frames=frames, positions=np.array(positions), rotations=np.array(rotations),
                         focal_lengths_mm=30.0, sensor_width_mm=36.0, clip_start=0.05, clip_end=100.0)
    return Scene(name="orbit", seed=0, objects=tuple(objects), camera=camera, width=size, height=size,
                 frame_start=1, frame_end=n_frames, fps=24)


def scene_passes(scene: Scene) -> list[FramePasses]:
    return [render_scene_passes(scene, f) for f in range(scene.frame_start, scene.frame_end + 1)]


# ---------------------------------------------------------------------------------------------


def test_reference_passes_have_the_documented_conventions():
    scene = orbit_scene(n_frames=3, size=40)
    p1, p2 = scene_passes(scene)[:2]
    assert p1.instance_id.dtype == np.uint32 and set(np.unique(p1.instance_id)) <= {0, 1, 2, 3}
    fg = p1.foreground
    assert fg.mean() > 0.3
    assert np.all(p1.uv[..., 2][fg] == 1.0) and np.all(p1.uv[..., 2][~fg] == 0.0)
    assert np.all(np.isinf(p1.depth[~fg])) and np.all(p1.depth[fg] > 0)
    # the planar depth equals the projection's z of the surface points the camera sees
    assert np.allclose(np.linalg.norm(p1.normal[fg], axis=-1), 1.0, atol=1e-5)
    # backward flow pulls frame 1's UVs onto frame 2 wherever the exact occlusion test passes
    valid = warp_validity(p1, p2)
    assert valid.mean() > 0.3
    x, y = source_coordinates(p2.flow_backward)
    src_uv = sample_nearest(p1.uv[..., :2], x, y)
    err = np.linalg.norm(src_uv - p2.uv[..., :2], axis=-1)[valid]
    assert np.median(err) < 0.01
    # forward flow of frame 1 and backward flow of frame 2 are inverse where both see the point
    fx, fy = source_coordinates(p1.flow_forward)
    back = sample_nearest(p2.flow_backward, fx, fy)
    round_trip = p1.flow_forward + back
    same = (sample_nearest(p2.instance_id, fx, fy) == p1.instance_id) & fg
    assert np.median(np.abs(round_trip[same])) < 0.5


def test_reference_rasteriser_clips_geometry_behind_the_camera():
    scene = orbit_scene(n_frames=1, size=32, radius=2.0)
    # the camera at radius 2 is inside the floor slab's footprint: the floor crosses the near plane
    p = render_scene_passes(scene, 1)
    floor = p.instance_id == 1
    assert floor.any()
    assert np.isfinite(p.depth[floor]).all() and (p.depth[floor] >= scene.camera.clip_start).all()


def test_reference_rasteriser_agrees_with_blenders_passes():
    """The sequences the consistency tests build come from the reference rasteriser: it must render
    what Blender renders (passes.blender_render, Cycles at one sample per pixel centre)."""
    from passes.blender_render import PassRenderer

    scene = orbit_scene(n_frames=3, size=48, with_room=True)
    renderer = PassRenderer(scene)
    for frame in (1, 3):
        blender, reference = renderer.render(frame), render_scene_passes(scene, frame)
        same = blender.instance_id == reference.instance_id
        assert same.mean() > 0.995, f"frame {frame}: instance ids differ on {(~same).sum()} pixels"
        assert set(np.unique(reference.instance_id)) == {0, 1, 2, 3, 4}
        fg = same & (reference.instance_id > 0)
        assert np.array_equal(blender.class_id[same], reference.class_id[same])
        assert np.array_equal(blender.uv[..., 2][same], reference.uv[..., 2][same])
        assert np.isinf(blender.depth[same & ~fg]).all() and np.isinf(reference.depth[same & ~fg]).all()
        np.testing.assert_allclose(blender.depth[fg], reference.depth[fg], rtol=1e-3)
        np.testing.assert_allclose(blender.normal[same], reference.normal[same], atol=1e-4)
        np.testing.assert_allclose(blender.uv[fg][:, :2], reference.uv[fg][:, :2], atol=2e-3)
        for name in ("flow_forward", "flow_backward"):  # pixels
            np.testing.assert_allclose(getattr(blender, name)[same], getattr(reference, name)[same], atol=0.01, err_msg=name)
