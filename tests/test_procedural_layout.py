"""The room and floor-plan generators' rules, checked on the built geometry of the bundled templates
over several seeds: no interpenetration, everything inside its room, door clearance, backs against
walls, instance ids, UV islands, outward triangles, glass in the windows, and clear errors for bad
openings. The rooms' shapes come from the templates (tests/room_oracles.py), not from the code."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from greybox.errors import InputError
from procedural.furniture_library import EXEMPT_KINDS, HUNG_KINDS, WALL_KINDS
from procedural.primitive_meshes import UV_GAP, box, cylinder, pack_uvs, plane
from procedural.scene_builder import build_scene
from room_oracles import edge_distance, inside, plan_rooms, signed_volume
from scenes.template_loading import bundled_templates, load_template, validate_data


BUNDLED = [name for name, _ in bundled_templates()]
ROOM_TEMPLATES = [n for n in BUNDLED if load_template(n).template.generator.kind == "room"]
PLAN_TEMPLATES = [n for n in BUNDLED if load_template(n).template.generator.kind == "floor_plan"]
BUILDING_TEMPLATES = [n for n in BUNDLED if load_template(n).template.generator.kind == "building"]
SEEDS = range(8)
# the floor plans build more (and the tests in tests/test_floor_plans.py sweep their own seeds): four seeds each
CASES = [(name, seed) for name in ROOM_TEMPLATES for seed in SEEDS] + [(name, seed) for name in PLAN_TEMPLATES for seed in range(4)]
CASES += [(name, seed) for name in BUILDING_TEMPLATES for seed in range(2)]  # every storey furnished as a plan


@lru_cache(maxsize=None)
def _built(name: str, seed: int):
    loaded = load_template(name, [f"seed={seed}"])
    return loaded.template, build_scene(loaded.template)


def _furniture(scene):
    """(object, its placement record with its kind) for every generated piece."""
    return [(o, {**o.source.placement, "kind": o.kind}) for o in scene.objects if o.source.placement is not None]


def _obb(obj, meta):
    """Oriented footprint (centre, axes (2, 2), half extents (2,)) from the mesh, in the piece's yaw frame."""
    a = math.radians(meta["yaw"])
    axes = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    local = obj.vertices[:, :2] @ axes.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre = ((lo + hi) / 2.0) @ axes
    return centre, axes, (hi - lo) / 2.0


def _separated_2d(a, b, tol=1e-6) -> bool:
    (ca, axa, ha), (cb, axb, hb) = a, b
    for axis in np.concatenate([axa, axb]):
        ra = abs(axa[0] @ axis) * ha[0] + abs(axa[1] @ axis) * ha[1]
        rb = abs(axb[0] @ axis) * hb[0] + abs(axb[1] @ axis) * hb[1]
        if abs((ca - cb) @ axis) >= ra + rb - tol:
            return True
    return False


def _z_range(obj):
    return obj.vertices[:, 2].min(), obj.vertices[:, 2].max()


@pytest.mark.parametrize("name, seed", CASES)
def test_furniture_does_not_interpenetrate(name, seed):
    """No two pieces (a rug lies under things) and no piece and explicit object overlap in volume;
    pieces of one kitchen run may touch."""
    template, scene = _built(name, seed)
    pieces = [(o, m) for o, m in _furniture(scene) if m["kind"] not in EXEMPT_KINDS]
    for i, (a, ma) in enumerate(pieces):
        for b, mb in pieces[i + 1:]:
            za, zb = _z_range(a), _z_range(b)
            if za[1] <= zb[0] or zb[1] <= za[0]:
                continue
            assert _separated_2d(_obb(a, ma), _obb(b, mb)), f"{a.name} and {b.name} interpenetrate (seed {seed})"
    explicit = [o for o in scene.objects if o.source.kind == "explicit"]
    for a, ma in pieces:
        for b in explicit:
            lo, hi = b.bounds
            za = _z_range(a)
            if za[1] <= lo[2] or hi[2] <= za[0]:
                continue
            box_b = ((lo[:2] + hi[:2]) / 2, np.eye(2), (hi[:2] - lo[:2]) / 2)
            assert _separated_2d(_obb(a, ma), box_b), f"{a.name} runs into the explicit object {b.name}"


def _room_of(template, meta):
    rooms, t, h = plan_rooms(template)
    poly = dict(rooms)[meta.get("room", "room")]
    return poly, t, h


@pytest.mark.parametrize("name, seed", CASES)
def test_everything_inside_the_room(name, seed):
    """Every vertex of every piece inside its room's walls: in the room's polygon, at least half a
    wall thickness from its edges (the walls' faces), between the floor and the ceiling."""
    template, scene = _built(name, seed)
    tol = 1e-6
    for obj, meta in _furniture(scene):
        poly, t, h = _room_of(template, meta)
        v = obj.vertices
        floor = meta.get("storey", 0) * (template.generator.building.storey_height if "storey" in meta else 0.0)
        assert v[:, 2].min() >= floor - tol and v[:, 2].max() <= floor + h + tol, obj.name
        for x, y in v[:, :2]:
            assert inside(poly, x, y) or edge_distance(poly, x, y) < tol, f"{obj.name} leaves its room at ({x:.3f}, {y:.3f})"
            assert edge_distance(poly, x, y) >= t / 2 - 1e-6, f"{obj.name} reaches into a wall at ({x:.3f}, {y:.3f})"
        # the footprint's edges do not cut a corner of a non-convex room either: its OBB holds no room vertex
        centre, axes, half = _obb(obj, meta)
        for p in poly:
            local = (np.array(p) - centre) @ axes.T
            assert not (np.abs(local) < half - 1e-5).all(), f"{obj.name} straddles the room's corner {p}"


def _wall_frame(room, wall: str):
    """(point on the interior face, along direction, inward normal, length) of a wall of [generator.room]."""
    w, d = room.width, room.depth
    if room.footprint == "l_shape":
        cut_x, cut_y = room.l_cut
    else:
        cut_x = cut_y = 0.0
    return {
        "south": (np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), w),
        "north": (np.array([0.0, d]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), w - cut_x),
        "west": (np.array([0.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), d),
        "east": (np.array([w, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), d - cut_y),
        "north_inner": (np.array([w - cut_x, d - cut_y]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), cut_x),
        "east_inner": (np.array([w - cut_x, d - cut_y]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), cut_y),
    }[wall]


def _door_zones(template, scene):
    """(name, zone OBB) in front of every door, on each side that is a room: 1 m deep, the door's width."""
    if template.generator.kind == "room":
        room = template.generator.room
        out = []
        for i, door in enumerate(room.doors):
            start, along, inward, _ = _wall_frame(room, door.wall)
            centre = start + along * door.offset + inward * 0.5
            out.append((f"room.door_{i}", (centre, np.array([along, inward]), np.array([door.width / 2, 0.5]))))
        return out
    t = template.generator.floor_plan.wall_thickness
    out = []
    for door in scene.metadata["generator"]["floor_plan"]["doors"]:
        c, n = np.array(door["centre"]), np.array(door["normal"])
        along = np.array([-n[1], n[0]])
        for sign, room in zip((1.0, -1.0), door["rooms"]):
            if room == "outside":
                continue
            centre = c + sign * n * (t / 2 + 0.5)
            out.append((door["name"], (centre, np.array([along, n]), np.array([door["width"] / 2, 0.5]))))
    return out


def _on_storey_of(door: str, meta: dict) -> bool:
    """Whether a door is on the piece's storey: a building's upper storeys have no entrances."""
    return meta.get("storey", 0) == 0 or "|outside" not in door


@pytest.mark.parametrize("name, seed", CASES)
def test_door_clearance_zone_is_free(name, seed):
    template, scene = _built(name, seed)
    zones = _door_zones(template, scene)
    assert zones
    for door, zone in zones:
        for obj, meta in _furniture(scene):
            if meta["kind"] in EXEMPT_KINDS or meta["kind"] in HUNG_KINDS or not _on_storey_of(door, meta):
                continue
            assert _separated_2d(_obb(obj, meta), zone), f"{obj.name} stands in front of {door} (seed {seed})"


def _interior_line(template, meta):
    """(a point on the interior face, the inward normal) of the wall a piece stands against."""
    if template.generator.kind == "room":
        start, _, inward, _ = _wall_frame(template.generator.room, meta["wall"])
        return start, inward
    poly, t, _ = _room_of(template, meta)
    k = meta["wall"]
    a, b = np.array(poly[k]), np.array(poly[(k + 1) % len(poly)])
    d = (b - a) / np.linalg.norm(b - a)
    inward = np.array([-d[1], d[0]])
    return a + inward * t / 2, inward


@pytest.mark.parametrize("name, seed", CASES)
def test_wall_kinds_have_their_backs_against_a_wall(name, seed):
    template, scene = _built(name, seed)
    checked = 0
    for obj, meta in _furniture(scene):
        if meta["kind"] not in WALL_KINDS or meta["pinned"]["position"] or meta["rule"] in ("free", "centre", "desk_cluster"):
            continue
        assert meta["wall"] is not None, obj.name
        if template.generator.kind == "room":
            assert meta["wall"] in ("south", "north", "east", "west", "north_inner", "east_inner"), obj.name
        start, inward = _interior_line(template, meta)
        distance = (obj.vertices[:, :2] - start) @ inward
        assert -1e-6 <= distance.min() <= 0.03, f"{obj.name}: back {distance.min():.3f} m from its wall"
        a = math.radians(meta["yaw"])
        front = np.array([-math.sin(a), math.cos(a)])
        assert front @ inward > 0.999, f"{obj.name} does not face into the room"
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("name, seed", CASES)
def test_chairs_and_nightstands_stay_by_their_table_and_bed(name, seed):
    _, scene = _built(name, seed)
    pieces = {o.name: (o, m) for o, m in _furniture(scene)}
    for obj, meta in pieces.values():
        if meta["kind"] in ("chair", "office_chair", "nightstand") and meta["anchor"] is not None:
            other, other_meta = pieces[meta["anchor"]]
            assert other_meta["kind"] in (("bed",) if meta["kind"] == "nightstand" else ("table", "desk"))
            ca, cb = obj.vertices[:, :2], other.vertices[:, :2]
            gap = max(0.0, max(ca.min(0)[k] - cb.max(0)[k] for k in range(2)),
                      max(cb.min(0)[k] - ca.max(0)[k] for k in range(2)))
            assert gap <= 0.2, f"{obj.name} is {gap:.2f} m from {other.name}"


@pytest.mark.parametrize("name, seed", CASES)
def test_instance_ids_are_one_to_n_in_a_stable_order(name, seed):
    template, scene = _built(name, seed)
    ids = [o.instance_id for o in scene.objects]
    assert ids == list(range(1, len(ids) + 1))
    names = [o.name for o in scene.objects]
    assert len(set(names)) == len(names)
    assert all(0 < o.semantic_class_id <= 150 for o in scene.objects)
    if template.generator.kind == "room":
        assert names[0] == "room.floor"
        furniture_names = [f.stable_name for f in template.generator.room.furniture]
        first = names.index(furniture_names[0])
        assert names[first:first + len(furniture_names)] == furniture_names
        assert all(n.startswith("room.") for n in names[:first])
        return
    rooms = [r.name for r in template.generator.floor_plan.rooms]
    kinds = [o.kind for o in scene.objects]
    shell = ["floor"] * len(rooms) + ["ceiling"] * len(rooms) * template.generator.floor_plan.ceiling
    assert kinds[:len(shell)] == shell and names[:len(rooms)] == [f"floor:{r}" for r in rooms]
    placed = [o.name for o in scene.objects if o.source.placement is not None]
    first = names.index(placed[0])
    assert names[first:first + len(placed)] == placed  # the furniture follows the shell, rooms in order
    order = [(int(n.split("/")[0].removeprefix("storey")) if n.startswith("storey") else 0,
              rooms.index(n.removeprefix(n.split("/")[0] + "/").split("/")[0] if n.startswith("storey") else n.split("/")[0]))
             for n in placed]
    assert order == sorted(order)  # storeys from the ground up, rooms in template order


def _rasterise_islands(uvs: np.ndarray, res: int) -> np.ndarray:
    """Label image (res x res): texel -> 1 + island index of the triangle whose interior holds its
    centre. Islands are found by connectivity through shared UV edges. Fails on any double cover."""
    corners = np.round(uvs.astype(np.float64) * 2**20).astype(np.int64)
    parent = list(range(len(uvs)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edge_owner: dict = {}
    for t, c in enumerate(corners):
        for k in range(3):
            a, b = tuple(c[k]), tuple(c[(k + 1) % 3])
            key = (min(a, b), max(a, b))
            if key in edge_owner:
                parent[find(t)] = find(edge_owner[key])
            else:
                edge_owner[key] = t
    labels = np.zeros((res, res), dtype=np.int64)
    owner = np.full((res, res), -1, dtype=np.int64)
    for t, tri in enumerate(uvs.astype(np.float64) * res):
        lo = np.floor(tri.min(axis=0)).astype(int)
        hi = np.ceil(tri.max(axis=0)).astype(int)
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0]) + 0.5, np.arange(lo[1], hi[1]) + 0.5)
        a, b, c = tri
        den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(den) < 1e-15:
            continue
        l1 = ((b[1] - c[1]) * (xs - c[0]) + (c[0] - b[0]) * (ys - c[1])) / den
        l2 = ((c[1] - a[1]) * (xs - c[0]) + (a[0] - c[0]) * (ys - c[1])) / den
        inside = (l1 > 1e-9) & (l2 > 1e-9) & (1 - l1 - l2 > 1e-9)
        for y, x in zip(*np.nonzero(inside)):
            px, py = lo[0] + x, lo[1] + y
            assert owner[py, px] == -1, f"texel {px},{py} covered twice (triangles {owner[py, px]} and {t})"
            owner[py, px] = t
            labels[py, px] = find(t) + 1
    return labels


@pytest.mark.parametrize("name, seed", [(n, 0) for n in ROOM_TEMPLATES + ["kitchen"]] + [(n, 3) for n in ROOM_TEMPLATES])
def test_uv_islands_inside_unit_square_and_apart(name, seed):
    _, scene = _built(name, seed)
    res = 256
    for obj in scene.objects:
        uv = obj.uvs
        assert uv.dtype == np.float32 and uv.shape == (len(obj.triangles), 3, 2)
        assert uv.min() >= 0.0 and uv.max() <= 1.0, obj.name
        labels = _rasterise_islands(uv, res)
        # islands at least 1/128 apart: no texel of one island within one texel of another's
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = np.roll(np.roll(labels, dy, axis=0), dx, axis=1)
                clash = (labels > 0) & (shifted > 0) & (labels != shifted)
                assert not clash.any(), f"{obj.name}: two UV islands closer than 1/128"
        # uniform texel density within the object
        v, t = obj.vertices, obj.triangles
        world = 0.5 * np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1)
        e1, e2 = (uv[:, 1] - uv[:, 0]).astype(np.float64), (uv[:, 2] - uv[:, 0]).astype(np.float64)
        uv_area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        assert (uv_area > 0).all() or (uv_area[world > 1e-8] > 0).all(), f"{obj.name}: mirrored UV triangles"
        big = world > 1e-4
        ratio = uv_area[big] / world[big]
        assert ratio.max() / ratio.min() < 1.01, f"{obj.name}: texel density varies {ratio.min():.4g}..{ratio.max():.4g}"


def test_uv_packing_gap_and_cylinder_strip():
    mesh = cylinder(0.3, 1.0, 16)
    uvs = pack_uvs(mesh)
    side = uvs[mesh.island_ids == 0].reshape(-1, 2)
    caps = uvs[mesh.island_ids > 0].reshape(-1, 2)
    # the side is one strip, its 16 facets unrolled: bounding box aspect 16 * chord : h
    ext = side.max(0) - side.min(0)
    assert math.isclose(ext.max() / ext.min(), 16 * 2 * 0.3 * math.sin(math.pi / 16) / 1.0, rel_tol=1e-4)
    assert len(np.unique(mesh.island_ids)) == 3
    assert UV_GAP >= 1 / 128
    # caps do not overlap the side's bounding box
    lo, hi = side.min(0), side.max(0)
    inside = ((caps > lo + 1e-6) & (caps < hi - 1e-6)).all(axis=1)
    assert not inside.any()


@pytest.mark.parametrize("name, seed", [(n, s) for n in BUNDLED for s in (0, 5)])
def test_triangles_face_outward(name, seed):
    template, scene = _built(name, seed)
    for obj in scene.objects:
        assert obj.vertices.dtype == np.float64 and obj.triangles.dtype == np.int32
        assert signed_volume(obj.vertices, obj.triangles) > 0, f"{obj.name} is inside out"
    if template.generator.kind != "room":
        return
    room = template.generator.room
    # the walls' interior faces look into the room
    for obj in scene.objects:
        if obj.kind != "wall" or obj.name.endswith("_inner"):
            continue
        wall = obj.name.removeprefix("room.wall_")
        start, _, inward, _ = _wall_frame(room, wall)
        v, t = obj.vertices, obj.triangles
        centroids = v[t].mean(axis=1)[:, :2]
        on_face = np.abs((centroids - start) @ inward) < 1e-9
        normals = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])[:, :2]
        assert on_face.sum() >= 2
        assert ((normals[on_face] @ inward) > 0).all(), f"{obj.name}: interior face points out of the room"


def test_primitives_are_closed_and_outward():
    for mesh in (box((1, 2, 3)), cylinder(0.5, 2.0, 12)):
        assert signed_volume(mesh.vertices, mesh.triangles) > 0
    assert math.isclose(signed_volume(box((1, 2, 3)).vertices, box((1, 2, 3)).triangles), 6.0)
    c = cylinder(1.0, 1.0, 256)
    assert math.isclose(signed_volume(c.vertices, c.triangles), math.pi, rel_tol=1e-3)
    p = plane((2.0, 1.0))
    n = np.cross(p.vertices[p.triangles[:, 1]] - p.vertices[p.triangles[:, 0]],
                 p.vertices[p.triangles[:, 2]] - p.vertices[p.triangles[:, 0]])
    assert (n[:, 2] > 0).all()


def _segment_hits(vertices: np.ndarray, triangles: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> float | None:
    """Where along p0-p1 (0..1) the segment first crosses the triangles (Moller-Trumbore, vectorised), or None."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p0 - a
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = inv * (q @ d)
    t = inv * np.einsum("ij,ij->i", e2, q)
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t >= 0) & (t <= 1)
    return float(t[hit].min()) if hit.any() else None


def _window_probes(template):
    """(window index, glass, [(p0 inside the room, p1 outside, where the wall's centre line is along it)])."""
    if template.generator.kind == "room":
        room = template.generator.room
        t = room.wall_thickness
        for index, window in enumerate(room.windows):
            start, along, inward, _ = _wall_frame(room, window.wall)
            segs = []
            for frac_a in (0.25, 0.75):
                for frac_z in (0.3, 0.7):
                    centre = start + along * (window.offset + (frac_a - 0.5) * window.width)
                    z = window.sill + window.height * frac_z
                    p0, p1 = np.r_[centre + inward * 0.25, z], np.r_[centre - inward * 1.0, z]
                    segs.append((p0, p1, (0.25 + t / 2) / 1.25))
            yield index, window.glass, segs
        return
    plan = template.generator.floor_plan
    rooms = {r.name: r for r in plan.rooms}
    for index, window in enumerate(plan.windows):
        poly = rooms[window.room].vertices
        a, b = np.array(poly[window.wall]), np.array(poly[(window.wall + 1) % len(poly)])
        length = np.linalg.norm(b - a)
        d = (b - a) / length
        inward = np.array([-d[1], d[0]])
        offset = window.offset if window.offset is not None else None
        segs = []
        if offset is None:
            yield index, window.glass, None
            continue
        for frac_a in (0.25, 0.75):
            for frac_z in (0.3, 0.7):
                on_line = a + d * (offset + (frac_a - 0.5) * window.width)
                z = window.sill + window.height * frac_z
                p0, p1 = np.r_[on_line + inward * 0.5, z], np.r_[on_line - inward * 0.5, z]
                segs.append((p0, p1, 0.5))
        yield index, window.glass, segs


@pytest.mark.parametrize("name", BUNDLED)
def test_windows_have_glass_at_the_walls_centre_line(name):
    """Segments through each window, from inside the room to outside, meet the window's pane first,
    where the wall's centre line runs (within the pane's half thickness); with glass = false,
    nothing at all. Elsewhere the walls are solid."""
    template, scene = _built(name, 0)
    if template.generator.kind == "building":
        pytest.skip("a building's facade windows: tests/test_buildings.py")
    by_name = {o.name: o for o in scene.objects}
    windows = [o for o in scene.objects if o.kind == "window"]
    checked = 0
    for index, glass, segs in _window_probes(template):
        if segs is None:
            continue
        window = windows[index]
        assert window.semantic_class_id == 9  # ADE20K "windowpane, window"
        for p0, p1, centre_t in segs:
            length = np.linalg.norm(p1 - p0)
            hits = {o.name: _segment_hits(o.vertices, o.triangles, p0, p1) for o in scene.objects}
            hits = {k: v for k, v in hits.items() if v is not None}
            assert glass, "a template's window without glass"
            assert set(hits) == {window.name}, f"window {index}: {sorted(hits)} in the way"
            assert abs(hits[window.name] - centre_t) * length <= 0.0031, f"window {index}: the pane is not at the centre line"
            checked += 1
    assert checked > 0
    # with glass = false the opening is a hole to the sky
    key = "generator.room.windows" if template.generator.kind == "room" else "generator.floor_plan.windows"
    open_scene = build_scene(load_template(name, [f"{key}.0.glass=false"]).template)
    for index, glass, segs in _window_probes(template):
        if index != 0 or segs is None:
            continue
        for p0, p1, _ in segs:
            for obj in open_scene.objects:
                assert _segment_hits(obj.vertices, obj.triangles, p0, p1) is None, f"{obj.name} blocks the open window"
    if template.generator.kind == "room":
        wall = by_name["room.wall_south"]
        assert _segment_hits(wall.vertices, wall.triangles, np.array([0.3, 0.5, 1.0]), np.array([0.3, -1.0, 1.0])) is not None


def test_explicit_objects_only():
    data = {
        "schema_version": 1, "name": "analytic", "seed": 0,
        "generator": {"kind": "none"},
        "objects": [
            {"name": "cube", "primitive": "box", "position": [0, 0, 1], "size": [2, 2, 2], "rotation": [0, 0, 45], "class": "box"},
            {"name": "card", "primitive": "plane", "position": [0, 3, 1], "size": [1, 2], "rotation": [90, 0, 0], "class": "painting"},
            {"name": "pillar", "primitive": "cylinder", "position": [3, 0, 1], "radius": 0.5, "height": 2, "class": 42},
        ],
        "camera": {"path": {"kind": "static", "position": [0, -6, 1.5], "look_at": [0, 0, 1]}},
    }
    scene = build_scene(validate_data(data, "analytic"))
    assert [o.name for o in scene.objects] == ["cube", "card", "pillar"]
    assert [o.instance_id for o in scene.objects] == [1, 2, 3]
    assert [o.kind for o in scene.objects] == ["box", "plane", "cylinder"]
    cube, card, pillar = scene.objects
    assert np.allclose((cube.bounds[0] + cube.bounds[1]) / 2, [0, 0, 1])
    half = math.sqrt(2.0)  # a 2 m cube turned 45 degrees about z
    assert np.allclose(cube.bounds[1], [half, half, 2.0])
    # the card, turned 90 degrees about x (Blender XYZ Euler), stands up facing -y
    assert np.allclose(card.bounds[0], [-0.5, 3.0, 0.0]) and np.allclose(card.bounds[1], [0.5, 3.0, 2.0])
    n = np.cross(card.vertices[card.triangles[0, 1]] - card.vertices[card.triangles[0, 0]],
                 card.vertices[card.triangles[0, 2]] - card.vertices[card.triangles[0, 0]])
    assert n[1] < 0 and abs(n[0]) < 1e-9 and abs(n[2]) < 1e-9
    assert np.allclose(pillar.bounds[0], [2.5, -0.5, 0.0], atol=1e-9)
    assert pillar.semantic_class_id == 43


@pytest.mark.parametrize("overrides, key", [
    (["generator.room.doors.0.offset=5.9"], "generator.room.doors.0.offset"),
    (["generator.room.doors.0.width=7.0"], "generator.room.doors.0.width"),
    (["generator.room.windows.1.offset=0.2"], "generator.room.windows.1.offset"),
    (["generator.room.windows.0.height=2.5"], "generator.room.windows.0.height"),
    # a window overlapping the door on the south wall
    (["generator.room.windows.0.wall=south", "generator.room.windows.0.offset=2.0"], "generator.room.windows.0.offset"),
])
def test_bad_openings_name_the_key(overrides, key):
    with pytest.raises(InputError) as err:
        build_scene(load_template("living_room", overrides).template)
    message = str(err.value)
    assert key in message
    assert overrides[-1].split("=")[1] in message
    assert ".." in message or ">=" in message  # the allowed range


def test_l_shape_north_wall_is_shorter():
    # the bedroom's north wall spans 0 .. width - l_cut.x: a window past it is refused
    with pytest.raises(InputError, match=r"generator\.room\.windows\.0\.offset"):
        build_scene(load_template("bedroom", ["generator.room.windows.0.wall=north",
                                              "generator.room.windows.0.offset=3.6"]).template)


def test_unplaceable_piece_names_the_furniture_key():
    with pytest.raises(InputError) as err:
        build_scene(load_template("living_room", ["generator.room.furniture.0.size=[5.5, 1.0, 0.9]"]).template)
    assert "generator.room.furniture.0" in str(err.value) and "sofa" in str(err.value)
    with pytest.raises(InputError, match=r"generator\.room\.furniture\.2\.position"):
        build_scene(load_template("living_room", ["generator.room.furniture.2.position=[0.3, 0.3]"]).template)
