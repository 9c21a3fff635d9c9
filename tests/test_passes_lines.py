"""Geometric line art: a cube's silhouette and visible creases are drawn, its hidden edges are not."""

from __future__ import annotations

import numpy as np
import pytest

from test_passes_analytic import _CUBE_FACES, box_object, cube_scene


@pytest.fixture(scope="module")
def cube_lines():
    from passes.blender_render import PassRenderer
    from passes.line_art import render_lines

    scene = cube_scene(width=192, height=128)
    passes = PassRenderer(scene).render(2)
    return scene, passes, render_lines(scene, 2, passes)


def _cube_edges():
    """The 12 edges of the unit cube at (0, 0, 0.5) as (corner a, corner b, the two adjacent face normals)."""
    edges: dict[tuple, list] = {}
    for normal, corners in _CUBE_FACES:
        for i in range(4):
            a, b = corners[i], corners[(i + 1) % 4]
            edges.setdefault(tuple(sorted((a, b))), []).append(normal)
    out = []
    for (a, b), normals in edges.items():
        to_world = lambda c: np.array(c, dtype=np.float64) * 0.5 + (0.0, 0.0, 0.5)  # noqa: E731
        out.append((to_world(a), to_world(b), [np.array(n, dtype=np.float64) for n in normals]))
    assert len(out) == 12
    return out


def _distance_to_segments(points, segments):
    """Distance (pixels) from each 2D point to the nearest of the 2D segments."""
    best = np.full(len(points), np.inf)
    for a, b in segments:
        d = b - a
        t = np.clip(((points - a) @ d) / max(d @ d, 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * d), axis=1))
    return best


def test_cube_visible_edges_drawn_hidden_edges_not(cube_lines):
    scene, passes, lines = cube_lines
    assert lines.dtype == np.uint8 and lines.shape == (128, 192) and set(np.unique(lines)) == {0, 255}
    camera = scene.camera.positions[scene.camera.index(2)]
    visible_2d, hidden = [], []
    for a, b, normals in _cube_edges():
        facing = [n @ (camera - (a + b) / 2) > 0 for n in normals]
        (visible_2d if any(facing) else hidden).append((a, b))
        if any(facing):
            pa, _ = scene.camera.project(2, np.stack([a, b]), scene.width, scene.height)
            visible_2d[-1] = (pa[0], pa[1])
    assert len(hidden) == 3 and len(visible_2d) == 9
    h, w = lines.shape
    padded = np.pad(lines, 1)
    for a2, b2 in visible_2d:
        t = np.linspace(0.1, 0.9, 25)[:, None]
        pts = a2 + t * (b2 - a2)
        cols, rows = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
        inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        near_line = np.array([padded[r:r + 3, c:c + 3].max() for r, c in zip(rows[inside], cols[inside])])
        assert np.mean(near_line == 255) >= 0.95
    for a, b in hidden:
        t = np.linspace(0.25, 0.75, 25)[:, None]
        pts, _ = scene.camera.project(2, a + t * (b - a), scene.width, scene.height)
        far_from_visible = _distance_to_segments(pts, visible_2d) > 2.5
        assert far_from_visible.sum() >= 5
        cols, rows = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
        assert np.all(lines[rows[far_from_visible], cols[far_from_visible]] == 0)


def test_silhouette_follows_instance_boundaries(cube_lines):
    from passes.line_art import id_boundaries

    _, passes, lines = cube_lines
    boundary = id_boundaries(passes.instance_id, passes.depth)
    assert boundary.sum() > 100
    assert np.all(lines[boundary] == 255)
    # one pixel wide, on the occluding side: background is never marked, the cube's rim against the
    # background always is, and every pair of 4-neighbours with different ids has a marked pixel
    ids = np.pad(passes.instance_id.astype(int), 1, constant_values=-1)
    neighbours = np.stack([ids[:-2, 1:-1], ids[2:, 1:-1], ids[1:-1, :-2], ids[1:-1, 2:]])
    centre = passes.instance_id.astype(int)
    assert not boundary[centre == 0].any()
    cube_rim = (centre == 1) & np.any(neighbours == 0, axis=0)
    assert cube_rim.sum() > 20 and boundary[cube_rim].all()
    for axis in (0, 1):
        differ = np.diff(centre, axis=axis) != 0
        a = boundary[:-1, :] if axis == 0 else boundary[:, :-1]
        b = boundary[1:, :] if axis == 0 else boundary[:, 1:]
        assert np.all((a | b)[differ])


def test_flat_faces_have_no_diagonals_and_width_dilates():
    from passes.line_art import _dilate, mesh_feature_edges

    cube = box_object("c", (0, 0, 0), (1, 1, 1), 16, 1)
    edges = mesh_feature_edges(cube.vertices, cube.triangles, 30.0)
    assert len(edges) == 12  # split vertices welded; the 6 face diagonals are flat
    lengths = np.linalg.norm(edges[:, 1] - edges[:, 0], axis=1)
    np.testing.assert_allclose(lengths, 1.0)
    assert len(mesh_feature_edges(cube.vertices, cube.triangles, 95.0)) == 0
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    assert _dilate(mask, 1).sum() == 1 and _dilate(mask, 2).sum() == 4 and _dilate(mask, 3).sum() == 9
