"""Buildings (``generator.kind = "building"``): storeys, facade windows with glass, entrances, roofs
and the ground, checked against the template's numbers (analytic oracles) and ray probes through
the built meshes. numpy only (no Blender)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from procedural.scene_builder import build_scene, scene_problems
from room_oracles import signed_volume
from scenes.template_loading import load_template, validate_data

SLAB = 0.1  # the floor slab under every storey (procedural.room_shell.SLAB, the documented 0.1 m)
PALETTE = {c["name"]: c["index"] + 1 for c in json.loads(
    (Path(__file__).resolve().parents[1] / "scenes" / "data" / "ade20k_palette.json").read_text())}  # class ids are 1-based


def _segment_hit(obj, p0, p1):
    """The first crossing (0..1 along p0-p1) of the segment with the object's triangles, or None."""
    v, t = obj.vertices, obj.triangles
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p0 - a
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    w = inv * (q @ d)
    tt = inv * np.einsum("ij,ij->i", e2, q)
    hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (tt >= 0) & (tt <= 1)
    return float(tt[hit].min()) if hit.any() else None


def _hits(scene, p0, p1) -> set[str]:
    return {o.name for o in scene.objects if _segment_hit(o, p0, p1) is not None}


@lru_cache(maxsize=None)
def _house(*overrides):
    loaded = load_template("house", list(overrides))
    return loaded.template, build_scene(loaded.template)


def _building(rooms, doors, building, windows=(), camera=None):
    data = {
        "schema_version": 1, "name": "b", "seed": 0,
        "generator": {"kind": "building", "floor_plan": {"wall_thickness": 0.2, "height": 2.5, "rooms": rooms,
                                                         "doors": doors, "windows": list(windows)},
                      "building": building},
        "camera": camera or {"path": {"kind": "static", "position": [-12.0, -12.0, 4.0], "look_at": [3.0, 2.0, 2.0]}},
    }
    return validate_data(data, "b")


RECT = [{"name": "a", "type": "living_room", "rect": [0, 0, 6, 4], "furniture": []}]
L_SHAPE = [{"name": "a", "type": "living_room", "rect": [0, 0, 6, 4], "furniture": []},
           {"name": "b", "type": "bedroom", "rect": [0, 4, 3, 3], "furniture": []}]
ENTRANCE = [{"between": ["a", "outside"], "wall": 0, "width": 1.0}]


def test_storeys_are_the_plan_lifted_and_renamed():
    template, scene = _house()
    by_name = {o.name: o for o in scene.objects}
    h = template.generator.building.storey_height
    ground = [o for o in scene.objects if "/" not in o.name.split(":")[0] and o.kind in ("floor", "ceiling", "wall", "window")]
    assert len(ground) > 20
    for o in ground:
        upper = by_name[f"storey1/{o.name}"]
        assert upper.kind == o.kind and upper.semantic_class_id == o.semantic_class_id
        if o.kind in ("floor", "window"):  # the same plan, one storey up
            np.testing.assert_allclose(np.sort(upper.vertices, axis=0), np.sort(o.vertices + [0, 0, h], axis=0), atol=1e-9)
    rooms = [r.name for r in template.generator.floor_plan.rooms]
    for room in rooms:  # every room on both storeys, furnished on both
        assert f"floor:{room}" in by_name and f"storey1/floor:{room}" in by_name
    pieces = [o for o in scene.objects if o.source.placement is not None]
    upper_pieces = [o for o in pieces if o.name.startswith("storey1/")]
    assert upper_pieces and len(upper_pieces) < len(pieces)
    for o in upper_pieces:
        room = o.name.split("/")[1]
        assert room in rooms and o.bounds[0][2] >= h - 1e-9 and o.bounds[1][2] <= 2 * h
    # the entrance only on the ground floor; the doors inside on every storey
    assert "door:hallway|outside" in by_name and "storey1/door:hallway|outside" not in by_name
    assert {"storey1/door:hallway|living", "storey1/door:bedroom|hallway"} <= set(by_name)
    assert {"facade", "storey1/facade", "roof", "ground"} <= set(by_name)
    for name in ("facade", "storey1/facade", "roof"):
        assert by_name[name].semantic_class_id == PALETTE["building"]
    assert by_name["ground"].semantic_class_id == PALETTE["grass"]
    # every storey's floor at k * storey_height, its facade from the slab's bottom to the next slab
    for k, prefix in enumerate(("", "storey1/")):
        lo, hi = by_name[f"{prefix}facade"].bounds
        assert math.isclose(lo[2], k * h - SLAB, abs_tol=1e-9) and math.isclose(hi[2], (k + 1) * h - SLAB, abs_tol=1e-9)
        assert math.isclose(by_name[f"{prefix}floor:living"].bounds[1][2], k * h, abs_tol=1e-9)
    ids = [o.instance_id for o in scene.objects]
    assert ids == list(range(1, len(ids) + 1))


def _facade_windows(template, scene):
    """(window object, its outward normal (2,), its centre (3,)) for every window, the normal from
    the outline: the window lies on the outline's edge and faces away from the building's centre."""
    out = []
    plan = template.generator.floor_plan
    xs = [r.rect[0] for r in plan.rooms] + [r.rect[0] + r.rect[2] for r in plan.rooms]
    ys = [r.rect[1] for r in plan.rooms] + [r.rect[1] + r.rect[3] for r in plan.rooms]
    box = (min(xs), min(ys), max(xs), max(ys))
    for o in scene.objects:
        if o.kind != "window":
            continue
        lo, hi = o.bounds
        c = (lo + hi) / 2
        if math.isclose(c[0], box[0], abs_tol=1e-6):
            n = (-1.0, 0.0)
        elif math.isclose(c[0], box[2], abs_tol=1e-6):
            n = (1.0, 0.0)
        elif math.isclose(c[1], box[1], abs_tol=1e-6):
            n = (0.0, -1.0)
        else:
            assert math.isclose(c[1], box[3], abs_tol=1e-6), f"{o.name} is not on an exterior wall"
            n = (0.0, 1.0)
        out.append((o, np.array(n), c))
    return out


def test_facade_windows_on_every_exterior_wall_of_every_storey_with_glass_through_wall_and_facade():
    """Every window is on the outline, at the template's size and sill on its storey, spaced as
    asked along its wall; a segment from inside the room to outside the facade through the window
    meets only its pane; between windows the wall and the facade are solid; the entrance is open."""
    template, scene = _house()
    spec = template.generator.building.facade_windows
    h = template.generator.building.storey_height
    windows = _facade_windows(template, scene)
    assert len(windows) >= 20
    per_storey = {0: 0, 1: 0}
    along_wall: dict[tuple, list[float]] = {}
    for o, n, c in windows:
        k = 1 if o.name.startswith("storey1/") else 0
        per_storey[k] += 1
        lo, hi = o.bounds
        width = (hi - lo)[1] if n[0] else (hi - lo)[0]
        assert math.isclose(width, spec.width, abs_tol=1e-6)
        assert math.isclose(lo[2], k * h + spec.sill, abs_tol=1e-6) and math.isclose(hi[2], k * h + spec.sill + spec.height, abs_tol=1e-6)
        wall = (k, o.name.rsplit(":", 1)[0])
        along_wall.setdefault(wall, []).append(c[1] if n[0] else c[0])
        tangent = np.array([-n[1], n[0]])
        for frac_a in (-0.3, 0.3):
            for frac_z in (0.25, 0.75):
                xy = c[:2] + tangent * frac_a * spec.width
                z = lo[2] + frac_z * spec.height
                p0, p1 = np.r_[xy - 0.2 * n, z], np.r_[xy + 0.5 * n, z]
                assert _hits(scene, p0, p1) == {o.name}, f"{o.name}: {sorted(_hits(scene, p0, p1))} in the way"
    # upstairs: a window wherever the ground floor has one, and where the entrance is
    assert per_storey[1] >= per_storey[0] >= 10
    for positions in along_wall.values():
        gaps = np.diff(sorted(positions))
        np.testing.assert_allclose(gaps, spec.spacing, atol=1e-6)
    # between two windows (and above them) the wall and the facade are solid
    o, n, c = windows[0]
    for p in (c + np.r_[np.array([-n[1], n[0]]) * spec.spacing / 2, 0.0], c + [0.0, 0.0, spec.height / 2 + 0.2]):
        got = _hits(scene, np.r_[p[:2] - 0.2 * n, p[2]], np.r_[p[:2] + 0.5 * n, p[2]])
        assert any(name.endswith("facade") for name in got) and any(name.split("/")[-1].startswith("wall:") for name in got)
    # the entrance: from the hallway out through the door's opening above its leaf's sweep
    door = next(o for o in scene.objects if o.name == "door:hallway|outside")
    lo, hi = door.bounds
    centre = (lo + hi) / 2
    got = _hits(scene, np.array([centre[0], 0.6, 1.5]), np.array([centre[0], -1.0, 1.5]))
    assert got <= {door.name}, f"the entrance is blocked by {sorted(got - {door.name})}"


@pytest.mark.parametrize("roof", ["gable", "hip", "flat"])
def test_roofs_are_closed_solids_of_the_analytic_height_and_volume(roof):
    """On a 6 x 4 m plan: the facade's outer outline is (6 + t + 2f) x (4 + t + 2f); the ridge of a
    pitched roof is at base + (half the short side) tan(pitch) + its slab's vertical thickness; the
    solid's volume (slab over the eaves plus the attic) is computed here from the same numbers."""
    pitch, overhang, storeys, storey_height = 30.0, 0.5, 2, 3.0
    template = _building(RECT, ENTRANCE, {"storeys": storeys, "storey_height": storey_height, "roof": roof,
                                          "roof_pitch": pitch, "roof_overhang": overhang, "ground": "road", "ground_size": 40})
    scene = build_scene(template)
    by_name = {o.name: o for o in scene.objects}
    r = by_name["roof"]
    f = 0.03  # the facade skin (procedural.building.FACADE_THICKNESS)
    base = (storeys - 1) * storey_height + storey_height - SLAB
    a, b = (4 + 0.2 + 2 * f) / 2, (6 + 0.2 + 2 * f) / 2  # half the short and long sides of the facade's outline
    A, B = a + overhang, b + overhang
    tan = math.tan(math.radians(pitch))
    t = 0.2 if roof == "flat" else 0.2 / math.cos(math.radians(pitch))
    lo, hi = r.bounds
    np.testing.assert_allclose(lo[:2], [3 - B, 2 - A] if roof != "flat" else [3 - B, 2 - A], atol=1e-6)
    np.testing.assert_allclose(hi[:2], [3 + B, 2 + A], atol=1e-6)
    if roof == "flat":
        expected_top, expected_bottom = base + 0.2, base
        volume = (2 * A) * (2 * B) * 0.2
    else:
        expected_top, expected_bottom = base + a * tan + t, base - overhang * tan
        if roof == "gable":  # a sloped slab t thick (vertically) over the eaves, and a triangular attic prism
            volume = 2 * A * t * 2 * B + a * (a * tan) * 2 * b
        else:  # hip: the slab is t thick vertically everywhere over the eaves rectangle; the attic a hip solid
            ridge = b - a
            attic = (a * tan) * (2 * a * 2 * ridge / 2 + 4 * a * a / 3)  # prism over the ridge + pyramid ends
            volume = 2 * A * 2 * B * t + attic
    assert math.isclose(hi[2], expected_top, abs_tol=1e-6) and math.isclose(lo[2], expected_bottom, abs_tol=1e-6)
    assert math.isclose(signed_volume(r.vertices, r.triangles), volume, rel_tol=1e-6)
    assert by_name["ground"].semantic_class_id == PALETTE["road, route"]
    glo, ghi = by_name["ground"].bounds
    np.testing.assert_allclose([glo[0], glo[1], ghi[0], ghi[1], ghi[2]], [3 - 20, 2 - 20, 3 + 20, 2 + 20, -SLAB], atol=1e-9)
    for o in scene.objects:  # closed and outward, the roof's and the facades' too
        if o.kind in ("roof", "facade", "ground"):
            assert signed_volume(o.vertices, o.triangles) > 0, o.name
    # the roof sits on the top storey's walls: straight up from inside the top floor, the roof is hit first
    got = _hits(scene, np.array([3.0, 2.0, base - 0.5]), np.array([3.0, 2.0, base - 0.005]))
    assert got == {"storey1/ceiling:a"}
    got = _hits(scene, np.array([3.0, 2.0, base + 0.01]), np.array([3.0, 2.0, expected_top + 1.0]))
    assert got == {"roof"}


def test_problems_name_the_building_key():
    def problems(**kw):
        rooms, doors, windows = kw.pop("rooms", RECT), kw.pop("doors", ENTRANCE), kw.pop("windows", ())
        return scene_problems(_building(rooms, doors, {"storeys": 2, **kw}, windows))

    got = problems(roof="gable", rooms=L_SHAPE)
    assert [p["key"] for p in got] == ["generator.building.roof"] and "rectangular" in got[0]["message"]
    assert problems(roof="hip", rooms=L_SHAPE)[0]["key"] == "generator.building.roof"
    assert problems(roof="flat", rooms=L_SHAPE) == []
    got = problems(storey_height=2.6)
    assert got[0]["key"] == "generator.building.storey_height" and "2.7" in got[0]["message"]
    got = problems(facade_windows={"spacing": 2.0}, windows=[{"room": "a", "wall": 0, "width": 1.0}])
    assert got[0]["key"] == "generator.building.facade_windows"
    assert problems(ground_size=5.0)[0]["key"] == "generator.building.ground_size"
    apart = [{"name": "a", "type": "living_room", "rect": [0, 0, 3, 3], "furniture": []},
             {"name": "b", "type": "bedroom", "rect": [5, 0, 3, 3], "furniture": []}]
    got = problems(rooms=apart, doors=[])
    assert got[0]["key"] == "generator.floor_plan.rooms" and "2 separate blocks" in got[0]["message"]
    with pytest.raises(InputError, match="generator.building"):
        validate_data({"schema_version": 1, "name": "x", "generator": {"kind": "room", "building": {"storeys": 2}},
                       "camera": {"path": {"kind": "static", "position": [1, 1, 1], "look_at": [2, 2, 1]}}}, "x")


def test_an_interior_camera_reaches_the_upper_storey_and_the_exterior_needs_no_flag():
    inside = {"path": {"kind": "static", "position": [3.0, 2.0, 3.0 + 1.6], "look_at": [5.0, 3.0, 3.0 + 1.2]}}
    template = _building(RECT, ENTRANCE, {"storeys": 2}, camera={**inside, "allow_outside": False})
    assert scene_problems(template) == []
    outside = {"path": {"kind": "static", "position": [-10.0, -10.0, 3.0], "look_at": [3.0, 2.0, 2.0]}}
    assert scene_problems(_building(RECT, ENTRANCE, {"storeys": 2}, camera=outside)) == []
    got = scene_problems(_building(RECT, ENTRANCE, {"storeys": 2}, camera={**outside, "allow_outside": False}))
    assert [p["key"] for p in got] == ["camera.path"] and "outside every room on frames 1" in got[0]["message"]
    in_roof = {"path": {"kind": "static", "position": [3.0, 2.0, 6.3], "look_at": [5.0, 3.0, 6.3]}}
    got = scene_problems(_building(RECT, ENTRANCE, {"storeys": 2, "roof": "gable"}, camera=in_roof))
    assert got and "the roof" in got[0]["message"]
