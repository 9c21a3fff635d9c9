"""Keyframe texture atlases: UV-space geometry, push-pull, projection, gathering, selection, the mode."""

from __future__ import annotations

import numpy as np
import pytest

from stylize.image_operations import push_pull_fill
from stylize.keyframe_sequence import run_keyframe_sequence, select_keyframes
from stylize.texture_atlas import AtlasSet, ObjectAtlas
from stylize.triangle_raster import rasterise_triangles
from stylize.warp_error import warp_error
from tests.test_consistency_scenes import box_object, orbit_scene, scene_passes


def world_texture(points: np.ndarray) -> np.ndarray:
    """A colour fixed in the world (what an ideal, perfectly consistent stylizer would paint)."""
    return np.stack([0.5 + 0.45 * np.sin(3.1 * points[..., 0] + 1), 0.5 + 0.45 * np.sin(2.3 * points[..., 1]),
                     0.5 + 0.45 * np.cos(4.0 * points[..., 2])], axis=-1)


def test_uv_rasterisation_gives_each_texel_its_world_position():
    box = box_object("b", 1, (1.0, 2.0, 3.0), (2.0, 1.0, 0.5))
    atlas = ObjectAtlas.from_object(box, 96)
    lo, hi = box.bounds
    assert atlas.island.mean() > 0.6  # six islands fill most of the square
    assert (atlas.positions >= lo - 1e-9).all() and (atlas.positions <= hi + 1e-9).all()
    # every texel lies on the box's surface: one coordinate at a face
    on_face = np.isclose(atlas.positions, lo, atol=1e-9) | np.isclose(atlas.positions, hi, atol=1e-9)
    assert on_face.any(axis=1).all()
    # and the face normal it carries points out of that face
    centre = (lo + hi) / 2
    assert (np.einsum("nc,nc->n", atlas.positions - centre, atlas.normals) > 0).all()


def test_rasteriser_covers_a_square_exactly_once():
    square = np.array([[[0, 0], [8, 0], [8, 8]], [[0, 0], [8, 8], [0, 8]]], float)
    tri, bary = rasterise_triangles(square, 10, 10)
    assert (tri[:8, :8] >= 0).all() and (tri[8:, :] < 0).all() and (tri[:, 8:] < 0).all()
    assert np.allclose(bary[:8, :8].sum(-1), 1.0)


def test_push_pull_fills_holes_and_keeps_known_texels_bit_identical():
    rng = np.random.default_rng(0)
    colour = rng.random((37, 29, 3)).astype(np.float32)
    known = rng.random((37, 29)) > 0.7
    filled = push_pull_fill(colour, known)
    assert np.array_equal(filled[known], colour[known])
    assert np.isfinite(filled).all()
    # a constant known colour fills the whole image with that colour
    flat = np.zeros((16, 16, 3), np.float32) + np.float32([0.2, 0.4, 0.6])
    mask = np.zeros((16, 16), bool)
    mask[3, 4] = mask[12, 9] = True
    assert np.allclose(push_pull_fill(flat, mask), flat)


def atlases_for(scene, passes, **kwargs):
    return AtlasSet.for_shot(scene, passes, min_size=32, max_size=256, **kwargs)


def painted(passes, scene):
    """Frames painted with the world-fixed texture (pixel world points from depth + camera)."""
    frames = []
    for p in passes:
        k = scene.camera.intrinsics(p.frame, p.width, p.height)
        cols, rows = np.meshgrid(np.arange(p.width) + 0.5, np.arange(p.height) + 0.5)
        z = np.where(np.isfinite(p.depth), p.depth, 1.0)
        cam = np.stack([(cols - k[0, 2]) / k[0, 0] * z, (rows - k[1, 2]) / k[1, 1] * z, z], axis=-1)
        w2c = scene.camera.world_to_camera_opencv(p.frame)
        world = (cam - w2c[:3, 3]) @ w2c[:3, :3]
        img = world_texture(world)
        img[~p.foreground] = [0.3, 0.5, 0.9]
        frames.append(img.astype(np.float32))
    return frames


def test_projecting_a_keyframe_and_gathering_reproduces_it():
    scene = orbit_scene(n_frames=3, size=48)
    passes = scene_passes(scene)
    frames = painted(passes, scene)
    atlases = atlases_for(scene, passes)
    written = atlases.project_views([(frames[0], passes[0])])
    assert written > 1000
    gathered, seen = atlases.gather(passes[0])
    assert seen.mean() > 0.95
    err = np.abs(gathered - frames[0])[seen & passes[0].foreground]
    assert np.median(err) < 0.01 and err.mean() < 0.03
    # a later frame gathers the world-fixed texture where the keyframe saw its surfaces
    gathered2, seen2 = atlases.gather(passes[2])
    err2 = np.abs(gathered2 - frames[2])[seen2 & passes[2].foreground]
    assert np.median(err2) < 0.02
    # projecting again with only_unknown leaves known texels bit-identical
    before = {i: a.colour.copy() for i, a in atlases.objects.items()}
    atlases.project_views([(1.0 - frames[1], passes[1])])
    for i, a in atlases.objects.items():
        known_before = before[i].any(axis=-1)
        assert np.array_equal(a.colour[known_before], before[i][known_before])


def test_views_blend_by_angle_and_the_best_facing_view_dominates():
    scene = orbit_scene(n_frames=6, size=40, degrees_per_frame=15)
    passes = scene_passes(scene)
    atlases = atlases_for(scene, passes)
    red = np.zeros((40, 40, 3), np.float32) + [1, 0, 0]
    blue = np.zeros((40, 40, 3), np.float32) + [0, 0, 1]
    atlases.project_views([(red, passes[0]), (blue, passes[5])], only_unknown=False)
    colours = np.concatenate([a.colour[a.known] for a in atlases.objects.values()])
    mixed = (colours[:, 0] > 0.05) & (colours[:, 2] > 0.05)
    assert mixed.any()  # texels both views see are weighted means
    assert np.allclose(colours.sum(axis=1), 1.0, atol=1e-5)  # weights normalised per texel


def test_keyframes_are_chosen_by_coverage():
    scene = orbit_scene(n_frames=12, size=40, degrees_per_frame=6)
    passes = scene_passes(scene)
    atlases = atlases_for(scene, passes)
    few = select_keyframes(atlases, passes, threshold=0.3, max_keyframes=10)
    many = select_keyframes(atlases, passes, threshold=0.02, max_keyframes=10)
    assert few[0] == 1 and many[0] == 1
    assert len(few) < len(many)
    assert select_keyframes(atlases, passes, threshold=0.02, max_keyframes=2) == many[:2]
    # selection leaves the atlases empty
    assert not any(a.known.any() for a in atlases.atlases())


def test_keyframe_mode_generates_only_unseen_pixels_and_keeps_the_rest_bit_identical():
    scene = orbit_scene(n_frames=10, size=40, degrees_per_frame=2)
    passes = scene_passes(scene)
    truth = painted(passes, scene)
    atlases = atlases_for(scene, passes)
    calls = []

    def generate(frame, init, mask):
        calls.append((frame, None if mask is None else mask.copy(), None if init is None else init.copy()))
        # a deliberately inconsistent generator: the true texture plus a per-frame tint
        return np.clip(truth[frame - 1] + 0.1 * (frame % 3), 0, 1)

    result = run_keyframe_sequence(atlases, passes, generate, threshold=0.1, max_keyframes=3, min_generate_pixels=8)
    assert result.keyframes[0] == 1 and calls[0][0] == 1 and calls[0][1] is None
    assert set(result.keyframes) <= set(result.generated_frames)
    assert len(calls) == len(result.generated_frames) < len(passes)
    for frame, mask, init in calls[1:]:
        out = result.frames[frame].astype(np.float64) / 255
        # every pixel outside the generated mask is the gathered one, bit for bit
        expected = np.clip(np.rint(init * 255), 0, 255).astype(np.uint8)
        assert np.array_equal(result.frames[frame][~mask], expected[~mask])
        assert np.abs(out[mask] - np.clip(truth[frame - 1] + 0.1 * (frame % 3), 0, 1)[mask]).max() < 0.003
    # the tinted generator flickers per frame; gathering from the atlases does not
    alone = [np.clip(truth[i] + 0.1 * ((i + 1) % 3), 0, 1) for i in range(len(passes))]
    e_alone = warp_error(alone, passes)
    e_keys = warp_error([result.frames[p.frame] for p in passes], passes)
    assert e_keys.short_mae < 0.3 * e_alone.short_mae
    assert e_keys.long_mae < 0.5 * e_alone.long_mae


def test_background_is_kept_in_a_direction_atlas():
    scene = orbit_scene(n_frames=4, size=40, degrees_per_frame=3)
    passes = scene_passes(scene)
    atlases = atlases_for(scene, passes)
    sky = np.zeros((40, 40, 3), np.float32)
    sky[..., 2] = np.linspace(0, 1, 40)[:, None]  # a vertical gradient
    atlases.project_views([(sky, passes[0])])
    image, seen = atlases.gather(passes[1])
    bg = (passes[1].instance_id == 0) & seen
    assert bg.sum() > 50
    # the camera turns but the sky stays put in the world: same row -> about the same blue
    assert np.abs(image[bg, 2] - sky[bg, 2]).mean() < 0.08


def test_run_keyframe_sequence_checks_its_inputs():
    scene = orbit_scene(n_frames=2, size=24)
    passes = scene_passes(scene)
    atlases = atlases_for(scene, passes)
    with pytest.raises(ValueError, match="no frames"):
        run_keyframe_sequence(atlases, [], lambda f, i, m: None, threshold=0.1, max_keyframes=2)
    with pytest.raises(ValueError, match="threshold"):
        run_keyframe_sequence(atlases, passes, lambda f, i, m: None, threshold=1.5, max_keyframes=2)
