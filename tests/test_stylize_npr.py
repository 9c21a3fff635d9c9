"""The NPR stylizer (no weights) and the stylize stage running it from a job folder."""

from __future__ import annotations

import numpy as np
import pytest

from passes.frame_passes import FramePasses
from scenes.semantic_palette import resolve_class
from scenes.template_schema import StyleSpec, Template
from stylize.npr_stylizer import INK_COLOUR, SKY_COLOUR, default_class_colours, stylize_npr

WALL = resolve_class("wall").class_id
FLOOR = resolve_class("floor").class_id
SOFA = resolve_class("sofa").class_id


def uniform_passes(normal_cam, class_id=WALL, size=8, frame=1) -> FramePasses:
    h = w = size
    return FramePasses(
        frame=frame,
        depth=np.full((h, w), 2.0, np.float32),
        normal=np.broadcast_to(np.asarray(normal_cam, np.float32), (h, w, 3)).copy(),
        flow_forward=np.zeros((h, w, 2), np.float32),
        flow_backward=np.zeros((h, w, 2), np.float32),
        instance_id=np.ones((h, w), np.uint32),
        class_id=np.full((h, w), class_id, np.uint32),
        uv=np.zeros((h, w, 3), np.float32),
    )


def cube_corner_passes(frame=1, size=16) -> FramePasses:
    """Top rows background, then a wall facing the camera (left), a floor (right) and a sofa block."""
    p = uniform_passes((0.0, 0.0, 1.0), WALL, size, frame)
    p.normal[:, size // 2 :] = (0.0, 1.0, 0.0)
    p.class_id[:, size // 2 :] = FLOOR
    p.instance_id[:, size // 2 :] = 2
    p.normal[size // 2 :, size // 4 : size // 2] = (0.7071, 0.0, 0.7071)
    p.class_id[size // 2 :, size // 4 : size // 2] = SOFA
    p.instance_id[size // 2 :, size // 4 : size // 2] = 3
    p.instance_id[:2] = 0
    p.class_id[:2] = 0
    p.normal[:2] = 0.0
    p.depth[:2] = np.inf
    return p


def rotation(axis, degrees):
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array([
        [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
        [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
        [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
    ])


def test_light_is_fixed_in_world_space():
    style = StyleSpec(toon_levels=4, light_direction=[0.3, -0.2, 0.9])
    n_world = np.array([0.0, 0.6, 0.8])
    shades = []
    for cam in (np.eye(3), rotation([1, 0, 0], 60), rotation([1, 0.4, 0.2], -75) @ rotation([0, 0, 1], 130)):
        n_cam = cam.T @ n_world  # the same world-space surface seen from another camera
        shades.append(stylize_npr(uniform_passes(n_cam), cam, None, style))
    assert np.array_equal(shades[0], shades[1]) and np.array_equal(shades[0], shades[2])
    # The same camera-space normal under another camera rotation is another world normal: another shade.
    other = stylize_npr(uniform_passes(n_world), rotation([1, 0, 0], 150), None, style)
    assert not np.array_equal(other, shades[0])


def test_palette_colour_when_fully_lit_and_toon_bands():
    light = np.array([0.4, -0.5, 0.75])
    style = StyleSpec(palette={"wall": [200, 10, 10]}, light_direction=light.tolist(), toon_levels=3)
    lit = stylize_npr(uniform_passes(light / np.linalg.norm(light)), np.eye(3), None, style)
    assert (lit.reshape(-1, 3) == (200, 10, 10)).all()
    # A fan of normals through every angle: exactly toon_levels flat shades of the wall colour.
    angles = np.linspace(0, np.pi, 64)
    fan = uniform_passes((0, 0, 1), size=64)
    fan.normal[:] = np.stack([np.sin(angles), np.zeros_like(angles), np.cos(angles)], -1)[None, :, :]
    out = stylize_npr(fan, np.eye(3), None, StyleSpec(palette={"wall": [200, 100, 50]}, light_direction=[0, 0, 1], toon_levels=3))
    assert len({tuple(c) for c in out.reshape(-1, 3)}) == 3


def test_default_colours_background_lines_and_determinism():
    style = StyleSpec()
    passes = cube_corner_passes(size=16)
    plain = stylize_npr(passes, np.eye(3), None, style)
    again = stylize_npr(passes, np.eye(3), None, style)
    assert np.array_equal(plain, again) and plain.dtype == np.uint8 and plain.shape == (16, 16, 3)
    assert (plain[:2].reshape(-1, 3) == SKY_COLOUR).all()
    # Defaults are the ADE20K colours softened, distinct per class, and deterministic.
    table = default_class_colours()
    assert np.array_equal(table, default_class_colours())
    assert len({tuple(np.round(table[c], 4)) for c in (WALL, FLOOR, SOFA)}) == 3
    assert len({tuple(plain[8, c]) for c in (1, 5, 12)}) == 3  # wall, sofa, floor differ
    lines = np.zeros((16, 16), np.uint8)
    lines[10, :] = 128
    lines[:, 3] = 255
    inked = stylize_npr(passes, np.eye(3), lines, style)
    assert (inked[:, 3].reshape(-1, 3) == INK_COLOUR).all()
    untouched = np.ones((16, 16), bool)
    untouched[:, 3] = False
    untouched[10, :] = False
    assert np.array_equal(inked[untouched], plain[untouched])
    half = inked[10, 0].astype(int)
    assert np.all(np.abs(half - (plain[10, 0].astype(int) * 127 + np.array(INK_COLOUR) * 128) / 255) <= 1)
    assert np.array_equal(stylize_npr(passes, np.eye(3), np.dstack([lines] * 3), style), inked)


def test_bad_rotation_is_refused():
    with pytest.raises(ValueError, match="3x3"):
        stylize_npr(uniform_passes((0, 0, 1)), np.eye(4), None, StyleSpec())


def test_stylize_frames_npr_from_a_job_folder(tmp_path):
    from greybox.atomic_files import sha256_file, write_json_atomic, write_png_atomic
    from greybox.errors import InputError
    from passes.pass_exr import write_passes_exr
    from stylize.stylize_stage import stylize_frames

    job = tmp_path / "job"
    turn = rotation([0, 0, 1], 40)
    cameras = {}
    for f in (1, 2):
        write_passes_exr(job / "passes" / f"{f:04d}.exr", cube_corner_passes(f, 16))
        lines = np.zeros((16, 16, 3), np.uint8)
        lines[:, 7] = 255
        write_png_atomic(job / "control" / "lines" / f"{f:04d}.png", lines)
        matrix = np.eye(4)
        matrix[:3, :3] = np.eye(3) if f == 1 else turn
        matrix[:3, 3] = (1.0, -2.0, 1.5)
        cameras[str(f)] = {"blender_matrix_world": matrix.tolist()}
    write_json_atomic(job / "cameras.json", cameras)
    template = Template.model_validate({
        "schema_version": 1, "name": "npr", "seed": 0,
        "camera": {"path": {"kind": "static", "position": [0, -3, 1], "look_at": [0, 0, 1]}},
        "render": {"resolution": [16, 16], "frame_start": 1, "frame_end": 2},
        "style": {"stylizer": "npr", "palette": {"floor": [90, 140, 60]}},
    })
    hashes = stylize_frames(template, [1, 2], job, tmp_path / "out").frame_hashes
    assert sorted(hashes) == [1, 2]
    for f in (1, 2):
        assert sha256_file(tmp_path / "out" / "frames" / f"{f:04d}.png") == hashes[f]
    assert hashes[1] != hashes[2]  # frame 2 is turned: same camera-space normals, other shading
    assert stylize_frames(template, [2, 1], job, tmp_path / "again").frame_hashes == hashes
    (job / "cameras.json").write_text("{}")
    with pytest.raises(InputError, match="blender_matrix_world"):
        stylize_frames(template, [1], job, tmp_path / "out")
