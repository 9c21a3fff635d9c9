"""Floor plans: analytic checks of the shell (a shared wall built once, continuous and watertight, the
walls tiling their footprint exactly, openings where asked, glass at the wall's centre line), the
stable names, validation that reports every problem at once with its key path, determinism
(changing one room moves nothing else), and furniture that keeps clear of explicit objects, door
swings and the walkway between doors, with rooms that read as what they are."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from greybox.errors import InputError
from procedural.scene_builder import build_scene, scene_problems
from room_oracles import edge_distance, inside, signed_volume
from scenes.template_loading import load_template, validate_data

T = 0.15
H = 2.5


def _plan(rooms, doors=(), windows=(), objects=(), seed=0, **plan):
    data = {
        "schema_version": 1, "name": "plan", "seed": seed,
        "generator": {"kind": "floor_plan", "floor_plan": {"wall_thickness": T, "height": H, "rooms": list(rooms),
                                                          "doors": list(doors), "windows": list(windows), **plan}},
        "objects": list(objects),
        "camera": {"path": {"kind": "static", "position": [1.0, 1.0, 1.5], "look_at": [2.0, 2.0, 1.0]}},
    }
    return validate_data(data, "plan")


TWO_ROOMS = dict(
    rooms=[{"name": "a", "type": "living_room", "rect": [0, 0, 4, 3], "furniture": "auto"},
           {"name": "b", "type": "bedroom", "rect": [4, 0, 3, 3], "furniture": "auto"}],
    doors=[{"between": ["b", "a"], "offset": 1.5, "width": 0.9, "height": 2.1}],
    windows=[{"room": "a", "wall": 0, "offset": 2.0, "width": 1.2, "height": 1.2, "sill": 0.9}],
)


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


def _hits(scene, p0, p1):
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    out = {o.name: _segment_hit(o, p0, p1) for o in scene.objects}
    return {k: v for k, v in out.items() if v is not None}


def _closed_edges(obj) -> bool:
    """Every edge of the mesh is used once in each direction (closed, consistently wound, no T-junction)."""
    key = np.round(obj.vertices * 1e7).astype(np.int64)
    count: dict = {}
    for tri in obj.triangles:
        for k in range(3):
            e = (tuple(key[tri[k]]), tuple(key[tri[(k + 1) % 3]]))
            count[e] = count.get(e, 0) + 1
    return all(count.get((b, a), 0) == n for (a, b), n in count.items())


# --------------------------------------------------------------------------------------------
# The shell
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_rooms():
    return build_scene(_plan(**TWO_ROOMS))


def test_stable_names_follow_the_contract(two_rooms):
    names = [o.name for o in two_rooms.objects]
    shell = ["floor:a", "floor:b", "ceiling:a", "ceiling:b", "wall:a:0", "wall:a|b", "wall:a:2", "wall:a:3",
             "wall:b:0", "wall:b:1", "wall:b:2", "door:a|b", "window:a:0:0"]
    assert names[:len(shell)] == shell
    assert all(n.startswith(("a/", "b/")) for n in names[len(shell):]) and len(names) > len(shell)
    classes = {o.name: o.semantic_class_id for o in two_rooms.objects}
    assert classes["floor:a"] == 4 and classes["ceiling:b"] == 6 and classes["wall:a|b"] == 1
    assert classes["door:a|b"] == 15 and classes["window:a:0:0"] == 9  # ADE20K door, "windowpane, window"
    # a second door between the same rooms, an outside door, a second window on one edge
    bare = [{**r, "furniture": []} for r in TWO_ROOMS["rooms"]]
    scene = build_scene(_plan(bare, doors=TWO_ROOMS["doors"] + [
        {"between": ["a", "b"], "offset": 0.6, "width": 0.7}, {"between": ["a", "outside"], "wall": 3}],
        windows=TWO_ROOMS["windows"] + [{"room": "a", "wall": 0, "offset": 3.3, "width": 0.6}]))
    names = {o.name for o in scene.objects}
    assert {"door:a|b", "door:a|b:1", "door:a|outside", "window:a:0:0", "window:a:0:1"} <= names


def test_the_shared_wall_is_built_once_and_the_walls_tile_their_footprint(two_rooms):
    walls = {o.name: o for o in two_rooms.objects if o.kind == "wall"}
    shared = walls["wall:a|b"]
    # all of it in the band around x = 4, and no other wall reaches into that band (away from the joins)
    assert np.all(np.abs(shared.vertices[:, 0] - 4.0) <= T / 2 + 1e-9)
    for name, wall in walls.items():
        if name == "wall:a|b":
            continue
        v = wall.vertices
        in_band = (np.abs(v[:, 0] - 4.0) < T / 2 - 1e-6) & (v[:, 1] > T / 2 + 1e-6) & (v[:, 1] < 3 - T / 2 - 1e-6)
        assert not in_band.any(), f"{name} reaches into the shared wall"
    for wall in walls.values():
        assert _closed_edges(wall), f"{wall.name} is not closed (or has a T-junction)"
    # the shared wall: the band between the outer walls' faces plus the two mitre triangles, minus the door
    door = 0.9 * 2.1 * T
    band = T * (3 - T) + 2 * (0.5 * T * T / 2)
    assert math.isclose(signed_volume(shared.vertices, shared.triangles), band * H - door, rel_tol=1e-9)
    # all walls together: the outline grown by half a thickness, less the rooms' floors, less the openings
    outer = (7 + T) * (3 + T)
    floors = (4 - T) * (3 - T) + (3 - T) * (3 - T)
    window = 1.2 * 1.2 * T
    total = sum(signed_volume(w.vertices, w.triangles) for w in walls.values())
    assert math.isclose(total, (outer - floors) * H - door - window, rel_tol=1e-9)


def test_openings_where_asked_and_glass_at_the_centre_line(two_rooms):
    # the door: along b's west edge (from (4, 3) down), 1.5 m from its start: centred at y = 1.5
    assert _hits(two_rooms, [3.5, 1.5, 1.0], [4.5, 1.5, 1.0]) == {}
    assert set(_hits(two_rooms, [3.5, 1.5, 2.3], [4.5, 1.5, 2.3])) == {"wall:a|b"}  # above the door
    assert set(_hits(two_rooms, [3.5, 2.3, 1.0], [4.5, 2.3, 1.0])) == {"wall:a|b"}  # beside it
    # the door stands open into b (the first room named), against one jamb
    leaf = next(o for o in two_rooms.objects if o.name == "door:a|b")
    lo, hi = leaf.bounds
    assert lo[0] >= 4 + T / 2 - 1e-9 and hi[0] <= 4 + T / 2 + 0.9
    assert math.isclose(lo[1], 1.05, abs_tol=0.06) or math.isclose(hi[1], 1.95, abs_tol=0.06)
    # the window on a's edge 0 (y = 0), 2 m from (0, 0): its pane where the wall's centre line runs
    for x, z in ((1.7, 1.2), (2.3, 1.8)):
        hits = _hits(two_rooms, [x, 0.5, z], [x, -0.5, z])
        assert set(hits) == {"window:a:0:0"}
        assert abs(hits["window:a:0:0"] * 1.0 - 0.5) <= 0.0031  # y = 0 within the pane's half thickness
    assert set(_hits(two_rooms, [2.0, 0.5, 2.3], [2.0, -0.5, 2.3])) == {"wall:a:0"}  # above the window
    # layout.json's door record: where it is, which way it opens
    door = two_rooms.metadata["generator"]["floor_plan"]["doors"][0]
    assert door["rooms"] == ["b", "a"] and door["centre"] == [4.0, 1.5] and door["normal"] == [1.0, 0.0]


def test_floors_meet_under_the_shared_wall(two_rooms):
    by = {o.name: o for o in two_rooms.objects}
    a, b = by["floor:a"].bounds, by["floor:b"].bounds
    assert math.isclose(a[1][0], 4.0) and math.isclose(b[0][0], 4.0)  # along the centre line
    assert math.isclose(a[1][2], 0.0) and math.isclose(by["ceiling:a"].bounds[0][2], H)


# --------------------------------------------------------------------------------------------
# The room generator is a one-room plan: the same objects
# --------------------------------------------------------------------------------------------


def test_room_templates_build_the_same_objects():
    """Names and ADE20K classes of the living room as the room generator built them before it became a plan."""
    scene = build_scene(load_template("living_room").template)
    expected = [("room.floor", 4), ("room.ceiling", 6), ("room.wall_south", 1), ("room.wall_east", 1), ("room.wall_north", 1),
                ("room.wall_west", 1), ("room.door_0", 15), ("room.window_0", 9), ("room.window_1", 9), ("sofa", 24),
                ("rug", 29), ("coffee_table", 65), ("armchair", 31), ("tv_stand", 11), ("bookcase", 63), ("plant", 18),
                ("floor_lamp", 37), ("painting", 23)]
    assert [(o.name, o.semantic_class_id) for o in scene.objects] == expected
    # the room's interior is where it was: the walls' faces at x = 0 and 6, y = 0 and 5
    west = next(o for o in scene.objects if o.name == "room.wall_west")
    assert math.isclose(west.vertices[:, 0].max(), 0.0, abs_tol=1e-12) and math.isclose(west.vertices[:, 0].min(), -0.15)
    assert all(_closed_edges(o) for o in scene.objects if o.kind == "wall")


# --------------------------------------------------------------------------------------------
# Validation: every problem at once, each with its key path, value and fix
# --------------------------------------------------------------------------------------------


def _bad_plan():
    rooms = [
        {"name": "a", "rect": [0, 0, 4, 3]},
        {"name": "b", "rect": [4, 0, 3, 3], "furniture": [{"kind": "sofa", "size": [5.0, 1.0, 0.9]},
                                                          {"kind": "bed", "size": [3.5, 2.8, 1.0]},
                                                          {"kind": "plant"}]},
        {"name": "c", "rect": [10, 0, 2, 2]},
        {"name": "d", "rect": [1, 1, 2, 4]},  # overlaps a
        {"name": "e", "polygon": [[20, 0], [20, 3], [23, 3], [23, 0]]},  # clockwise
    ]
    doors = [
        {"between": ["a", "b"], "width": 3.5},  # wider than the 3 m wall they share
        {"between": ["a", "c"]},  # they share no wall
        {"between": ["a", "outside"], "wall": 0, "offset": 1.0},
    ]
    windows = [
        {"room": "a", "wall": 0, "offset": 1.4, "width": 0.8},  # overlaps the outside door
        {"room": "a", "wall": 3, "width": 1.0, "height": 2.4, "sill": 0.5},  # taller than the room
        {"room": "b", "wall": 3, "width": 1.0},  # b's edge 3 is the wall it shares with a
    ]
    return _plan(rooms, doors, windows)


EXPECTED_KEYS = {
    "generator.floor_plan.rooms.3.rect": "overlaps room 'a'",
    "generator.floor_plan.rooms.4.polygon": "counter-clockwise",
    "generator.floor_plan.doors.0.width": "allowed width",
    "generator.floor_plan.doors.1.between": "share no wall",
    "generator.floor_plan.windows.0.offset": "overlaps generator.floor_plan.doors.2",
    "generator.floor_plan.windows.1.height": "allowed height",
    "generator.floor_plan.windows.2.wall": "outer walls",
    "generator.floor_plan.rooms.1.furniture.0": "cannot place the sofa",
    "generator.floor_plan.rooms.1.furniture.1": "cannot place the bed",
}


def test_every_problem_is_reported_at_once_with_its_key_path():
    problems = scene_problems(_bad_plan())
    by_key = {}
    for p in problems:
        by_key.setdefault(p["key"], []).append(p["message"])
    for key, text in EXPECTED_KEYS.items():
        assert key in by_key, f"{key} not reported; got {sorted(by_key)}"
        assert any(m.startswith(key) and text in m for m in by_key[key]), by_key[key]
    assert len(problems) == len(EXPECTED_KEYS), [p["message"] for p in problems]
    # each line names the value and a fix
    messages = {p["key"]: p["message"] for p in problems}
    assert "= 3.5:" in messages["generator.floor_plan.doors.0.width"] and ".. 2.75" in messages["generator.floor_plan.doors.0.width"]
    assert "allowed offset >=" in messages["generator.floor_plan.windows.0.offset"]
    assert "outer edges: 0, 1, 2" in messages["generator.floor_plan.windows.2.wall"]
    sofa = messages["generator.floor_plan.rooms.1.furniture.0"]
    assert "'b/sofa' (5.00 x 1.00 x 0.90 m)" in sofa and "largest free area is about" in sofa
    assert "wider" not in messages["generator.floor_plan.rooms.3.rect"]
    with pytest.raises(InputError) as err:
        build_scene(_bad_plan())
    assert len(err.value.problems) == len(problems) and str(err.value).count("\n") == len(problems) - 1


def test_validate_on_the_command_line_lists_every_problem(tmp_path, capsys):
    from render_farm.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(_toml(_bad_plan()))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for key in EXPECTED_KEYS:
        assert f"{path}: {key}" in err
    assert "Traceback" not in err
    assert main(["validate", str(path), "--json"]) == 2
    listed = json.loads(capsys.readouterr().out)
    assert {p["key"] for p in listed} == set(EXPECTED_KEYS)


def _toml(template) -> str:
    """A validated template back as TOML (only what this test's templates hold)."""
    data = template.model_dump(mode="json", by_alias=True, exclude_none=True)

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"

    return "\n".join(f"{k} = {value(v)}" for k, v in data.items()) + "\n"


def test_the_dry_run_builds_no_mesh(monkeypatch):
    import procedural.room_shell as room_shell
    import procedural.scene_builder as scene_builder

    def refuse(*args, **kwargs):
        raise AssertionError("the dry run built a mesh")

    monkeypatch.setattr(scene_builder, "build_furniture", refuse)
    monkeypatch.setattr(room_shell, "wall_mesh", refuse)
    monkeypatch.setattr(scene_builder, "shell_parts", refuse)
    assert scene_problems(load_template("apartment").template) == []
    assert len(scene_problems(_bad_plan())) == len(EXPECTED_KEYS)


@pytest.mark.parametrize("rooms, key, text", [
    ([{"name": "a", "polygon": [[0, 0], [4, 0], [1, 3], [3, 3]]}], "generator.floor_plan.rooms.0.polygon", "cross"),
    ([{"name": "a", "rect": [0, 0, 0.2, 3]}], "generator.floor_plan.rooms.0.rect", "at least"),
    ([{"name": "a", "polygon": [[0, 0], [6, 0], [0, 1]]}], "generator.floor_plan.rooms.0.polygon", "degrees"),
    ([{"name": "a", "rect": [0, 0, 4, 3]}, {"name": "a", "rect": [4, 0, 3, 3]}], "generator.floor_plan.rooms.1.name", "unique"),
    ([{"name": "a", "rect": [0, 0, 4, 3]}, {"name": "b", "rect": [4.05, 0, 3, 3]}], "generator.floor_plan.rooms.1.rect", "share the edge"),
    ([{"name": "a", "rect": [0, 0, 4, 3], "furniture": [{"kind": "sofa", "wall": "north"}]}],
     "generator.floor_plan.rooms.0.furniture.0.wall", "edge index"),
])
def test_bad_rooms_name_their_key(rooms, key, text):
    problems = scene_problems(_plan(rooms))
    assert any(p["key"] == key and text in p["message"] for p in problems), [p["message"] for p in problems]


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def _vertices(scene) -> dict[str, bytes]:
    return {o.name: o.vertices.tobytes() + o.triangles.tobytes() for o in scene.objects}


def test_changing_one_room_moves_nothing_else():
    base = load_template("apartment")
    before = _vertices(build_scene(base.template))
    assert before == _vertices(build_scene(load_template("apartment").template))
    # another type for the bedroom: only its furniture changes
    after = _vertices(build_scene(load_template("apartment", ["generator.floor_plan.rooms.3.type=\"office\""]).template))
    changed = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
    assert changed and all(n.startswith("bedroom/") for n in changed), sorted(changed)
    # a window moved along the living room's wall: the window, its wall and at most the living room's furniture
    after = _vertices(build_scene(load_template("apartment", ["generator.floor_plan.windows.1.offset=1.9"]).template))
    changed = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
    assert {"window:living:4:0", "wall:living:4"} <= changed
    assert all(n in ("window:living:4:0", "wall:living:4") or n.startswith("living/") for n in changed), sorted(changed)


# --------------------------------------------------------------------------------------------
# Placement: explicit objects, door swings, the walkway, rooms that read as rooms
# --------------------------------------------------------------------------------------------


def _obb(obj):
    """(centre, axes, half extents) of a piece's footprint, in its own yaw frame."""
    yaw = math.radians(obj.source.placement["yaw"])
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    local = obj.vertices[:, :2] @ axes.T
    lo, hi = local.min(0), local.max(0)
    return ((lo + hi) / 2) @ axes, axes, (hi - lo) / 2


def _in_obb(points, obb, tol=1e-6):
    centre, axes, half = obb
    local = (points - centre) @ axes.T
    return (np.abs(local) < half - tol).all(axis=1)


CROWDED = [{"kind": k} for k in ("sofa", "armchair", "bookcase", "plant", "lamp", "cabinet", "table", "chair")]


@pytest.mark.parametrize("seed", range(6))
def test_pieces_keep_clear_of_explicit_objects(seed):
    crate = {"name": "fridge_box", "primitive": "box", "position": [2.5, 2.0, 0.9], "size": [1.2, 1.0, 1.8],
             "rotation": [0, 0, 30], "class": "refrigerator"}
    template = _plan([{"name": "a", "rect": [0, 0, 5.5, 4.5], "furniture": CROWDED}],
                     doors=[{"between": ["a", "outside"], "wall": 0, "offset": 1.0}], objects=[crate], seed=seed)
    scene = build_scene(template)
    box = next(o for o in scene.objects if o.name == "fridge_box")
    # the crate's own footprint, sampled densely
    u, v = np.meshgrid(np.linspace(-0.6, 0.6, 25), np.linspace(-0.5, 0.5, 21))
    a = math.radians(30)
    pts = np.stack([2.5 + u.ravel() * math.cos(a) - v.ravel() * math.sin(a), 2.0 + u.ravel() * math.sin(a) + v.ravel() * math.cos(a)], 1)
    placed = [o for o in scene.objects if o.source.placement is not None]
    assert len(placed) >= 6
    for obj in placed:
        if obj.vertices[:, 2].min() >= box.bounds[1][2]:
            continue
        assert not _in_obb(pts, _obb(obj)).any(), f"{obj.name} runs into the explicit box (seed {seed})"
    # a piece pinned onto it is refused, naming the object
    pinned = _plan([{"name": "a", "rect": [0, 0, 5, 4], "furniture": [{"kind": "plant", "position": [2.5, 2.0]}]}],
                   objects=[crate], seed=seed)
    problems = scene_problems(pinned)
    assert len(problems) == 1 and problems[0]["key"] == "generator.floor_plan.rooms.0.furniture.0.position"
    assert "objects.0 'fridge_box'" in problems[0]["message"] and "free floor for it at" in problems[0]["message"]


def test_the_free_spot_a_message_offers_is_free():
    """"there is free floor for it at (x, y)": pinning the piece there builds."""
    crowded = [{"kind": "bookcase", "wall": 2, "size": [1.2, 0.35, 1.9]}, {"kind": "bookcase", "name": "b2", "wall": 2, "size": [1.2, 0.35, 1.9]},
               {"kind": "cabinet", "wall": 2, "size": [1.0, 0.5, 1.0]}]
    template = _plan([{"name": "a", "rect": [0, 0, 3.2, 4], "furniture": crowded}])
    problems = scene_problems(template)
    assert len(problems) == 1 and problems[0]["key"] == "generator.floor_plan.rooms.0.furniture.2"
    message = problems[0]["message"]
    assert "pin another wall" in message
    spot = message.split("position = [")[1].split("]")[0]
    rotation = message.split("rotation = ")[1].split(")")[0]
    x, y = (float(v) for v in spot.split(", "))
    crowded[2] = {"kind": "cabinet", "size": [1.0, 0.5, 1.0], "position": [x, y], "rotation": float(rotation)}
    assert scene_problems(_plan([{"name": "a", "rect": [0, 0, 3.2, 4], "furniture": crowded}])) == []


@pytest.mark.parametrize("seed", range(8))
def test_pieces_keep_clear_of_door_swings(seed):
    """A door wider than the passage kept in front of it (1.4 m): no piece stands in the quarter disc its leaf sweeps."""
    rooms = [{"name": "a", "type": "living_room", "rect": [0, 0, 4.5, 4], "furniture": "auto"},
             {"name": "b", "type": "bedroom", "rect": [4.5, 0, 4, 4], "furniture": "auto"}]
    scene = build_scene(_plan(rooms, doors=[{"between": ["b", "a"], "width": 1.4, "offset": 2.0}], seed=seed))
    leaf = next(o for o in scene.objects if o.name == "door:a|b")
    lo, hi = leaf.bounds
    assert lo[0] >= 4.5 + T / 2 - 1e-9  # it opens into b
    # the hinge: the jamb the leaf stands against (the door spans y = 1.3 .. 2.7 on x = 4.5)
    hinge_y = 1.3 if abs(lo[1] - 1.3) < abs(hi[1] - 2.7) else 2.7
    r, phi = np.meshgrid(np.linspace(0.02, 1.4, 30), np.linspace(0, math.pi / 2, 30))
    toward = 1.0 if hinge_y == 1.3 else -1.0
    disc = np.stack([4.5 + T / 2 + (r * np.sin(phi)).ravel(), hinge_y + toward * (r * np.cos(phi)).ravel()], 1)
    for obj in scene.objects:
        if obj.source.placement is None or obj.kind == "rug":
            continue
        assert not _in_obb(disc, _obb(obj)).any(), f"{obj.name} stands in the door's swing (seed {seed})"


def _walk_free(scene, template, room, clearance):
    """Floor cells of a room at least ``clearance`` from its walls and from every piece's footprint."""
    rooms = {r.name: r for r in template.generator.floor_plan.rooms}
    poly = rooms[room].vertices
    xs = np.arange(min(p[0] for p in poly), max(p[0] for p in poly), 0.05) + 0.025
    ys = np.arange(min(p[1] for p in poly), max(p[1] for p in poly), 0.05) + 0.025
    free = np.zeros((len(ys), len(xs)), dtype=bool)
    pts = []
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            if inside(poly, x, y) and edge_distance(poly, x, y) >= T / 2 + clearance:
                free[i, j] = True
            pts.append((x, y))
    pts = np.array(pts)
    for obj in scene.objects:
        if obj.source.placement is None or obj.kind == "rug" or obj.vertices[:, 2].min() > 1.0:
            continue
        centre, axes, half = _obb(obj)
        local = np.abs((pts - centre) @ axes.T) - half
        dist = np.linalg.norm(np.maximum(local, 0), axis=1)
        free &= ~(dist < clearance).reshape(free.shape)
    return free, xs, ys


@pytest.mark.parametrize("seed", range(6))
def test_a_walkway_joins_the_hallways_doors(seed):
    template = load_template("apartment", [f"seed={seed}"]).template
    scene = build_scene(template)
    free, xs, ys = _walk_free(scene, template, "hallway", 0.25)
    reach = np.zeros_like(free)
    doors = [d for d in scene.metadata["generator"]["floor_plan"]["doors"] if "hallway" in d["rooms"]]
    assert len(doors) == 5
    cells = []
    for d in doors:
        sign = 1.0 if d["rooms"][0] == "hallway" else -1.0
        p = np.array(d["centre"]) + sign * np.array(d["normal"]) * (T / 2 + 0.35)
        cells.append((int(np.argmin(np.abs(ys - p[1]))), int(np.argmin(np.abs(xs - p[0])))))
    reach[cells[0]] = True
    for _ in range(400):
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= free
        if (grown == reach).all():
            break
        reach = grown
    assert all(reach[c] for c in cells), f"a door of the hallway is cut off (seed {seed})"


def _front(obj):
    """The middle of a piece's front edge, from its mesh and yaw."""
    centre, axes, half = _obb(obj)
    return centre + axes[1] * half[1]


@pytest.mark.parametrize("name, seed", [("kitchen", s) for s in range(6)] + [("apartment", s) for s in range(4)])
def test_a_kitchen_has_a_run_with_a_work_triangle(name, seed):
    scene = build_scene(load_template(name, [f"seed={seed}"]).template)
    by_kind = {}
    for o in scene.objects:
        if o.source.placement is not None and o.name.startswith("kitchen/"):
            by_kind.setdefault(o.kind, []).append(o)
    for kind in ("refrigerator", "kitchen_sink", "stove", "counter", "range_hood"):
        assert kind in by_kind, f"no {kind} (seed {seed})"
    fridge, sink, stove = by_kind["refrigerator"][0], by_kind["kitchen_sink"][0], by_kind["stove"][0]
    legs = [np.linalg.norm(_front(a) - _front(b)) for a, b in ((fridge, sink), (sink, stove), (stove, fridge))]
    assert all(1.2 - 1e-6 <= leg <= 2.7 + 1e-6 for leg in legs), legs
    assert 4.0 - 1e-6 <= sum(legs) <= 7.9 + 1e-6
    # worktops level along the run; the hood over the stove; wall cabinets hung above the counters
    tops = {round(o.vertices[:, 2].max(), 6) for o in by_kind["counter"]}
    assert tops == {0.9}
    hood = by_kind["range_hood"][0]
    assert hood.vertices[:, 2].min() > stove.vertices[:, 2].max()
    assert np.linalg.norm(_obb(hood)[0] - _obb(stove)[0]) < 0.1 + 1e-6
    for cab in by_kind.get("wall_cabinet", []):
        assert cab.vertices[:, 2].min() >= 1.4


def test_rooms_read_as_what_they_are():
    apartment = build_scene(load_template("apartment").template)
    office = build_scene(load_template("office").template)
    kinds = {}
    for scene in (apartment, office):
        for o in scene.objects:
            if o.source.placement is not None:
                kinds.setdefault(o.name.split("/")[0], []).append(o)

    def of(room, kind):
        return [o for o in kinds[room] if o.kind == kind]

    # a bedroom: a bed with a nightstand against its side
    bed = of("bedroom", "bed")[0]
    stands = of("bedroom", "nightstand")
    assert stands and all(o.source.placement["anchor"] == bed.name for o in stands)
    # a bathroom: a bathtub or a shower, a toilet and a basin, each with its back to a wall
    assert of("bathroom", "bathtub") or of("bathroom", "shower")
    assert of("bathroom", "toilet") and of("bathroom", "washbasin")
    # a living room: a sofa with the coffee table in front of it
    sofa, table = of("living", "sofa")[0], of("living", "coffee_table")[0]
    assert (_obb(table)[0] - _obb(sofa)[0]) @ _obb(sofa)[1][1] > 0
    # an office: desks, each with a swivel chair in front of it facing it
    desks, chairs = of("open_office", "desk"), of("open_office", "office_chair")
    assert len(desks) >= 8 and len(chairs) >= len(desks) - 1
    for chair in chairs:
        desk = next(d for d in desks if d.name == chair.source.placement["anchor"])
        to_chair = _obb(chair)[0] - _obb(desk)[0]
        assert to_chair @ _obb(desk)[1][1] > 0 and _obb(chair)[1][1] @ _obb(desk)[1][1] < -0.99
    # a meeting room (a dining room): a table with chairs facing it
    table = of("meeting", "table")[0]
    seated = [c for c in of("meeting", "chair") if c.source.placement["anchor"] == table.name]
    assert len(seated) >= 2
    for chair in seated:
        assert (_obb(table)[0] - _obb(chair)[0]) @ _obb(chair)[1][1] > 0


def test_what_buildings_and_tours_build_on():
    """A storey's shell is the plan's, lifted and renamed; the door passages and the free floor a tour plans with."""
    from procedural.floor_plan import floor_plan_input, plan_geometry
    from procedural.furniture_placement import free_floor
    from procedural.room_shell import shell_parts
    from procedural.scene_builder import scene_layout

    template = _plan(**TWO_ROOMS)
    geometry, problems = plan_geometry(floor_plan_input(template.generator.floor_plan))
    assert problems == []
    ground, upper = shell_parts(geometry), shell_parts(geometry, z_offset=3.0, name_prefix="storey1/")
    assert [p.name for p in upper] == ["storey1/" + p.name for p in ground]
    for a, b in zip(ground, upper):
        np.testing.assert_allclose(b.mesh.vertices, a.mesh.vertices + [0.0, 0.0, 3.0])
    (door,) = geometry.door_passages()
    assert door.rooms == ("b", "a") and door.centre == (4.0, 1.5) and door.normal == (1.0, 0.0)
    layout = scene_layout(template)
    pieces = layout.furnishings["b"].placed
    free, xs, ys = free_floor(geometry.rooms["b"], [p.footprint for p in pieces], clearance=0.3)
    assert free.any()
    for x, y in zip(xs[free], ys[free]):  # at least 0.3 m from b's walls' faces and from every piece
        assert 4 + T / 2 + 0.3 - 1e-9 <= x <= 7 - T / 2 - 0.3 + 1e-9 and T / 2 + 0.3 - 1e-9 <= y <= 3 - T / 2 - 0.3 + 1e-9
        for p in pieces:
            if p.z0 < 1.0:
                local = np.array([x, y]) - np.array(p.center)
                a = math.radians(p.yaw)
                u, v = local @ [math.cos(a), math.sin(a)], local @ [-math.sin(a), math.cos(a)]
                assert abs(u) >= p.size[0] / 2 + 0.3 - 1e-9 or abs(v) >= p.size[1] / 2 + 0.3 - 1e-9


def test_inspect_lists_a_plans_layout():
    from scenes.scene_layout import format_layout, scene_layout

    scene = build_scene(load_template("kitchen").template)
    text = format_layout(scene_layout(scene))
    fridge = next(line for line in text.splitlines() if "kitchen/refrigerator" in line)
    assert "refrigerator" in fridge and "(counter_run edge " in fridge
    assert any("wall:kitchen:0" in line and "generator.floor_plan.rooms.0" in line for line in text.splitlines())
