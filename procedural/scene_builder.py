"""Template -> Scene: the procedural stage's entry point, pure numpy (Blender only sees the result).

:func:`build_scene` turns a validated :class:`scenes.template_schema.Template` into a
:class:`scenes.scene_data.Scene`: the floor plan's shell (``[generator.room]`` is a one-room
plan), the placed furniture, the explicit primitives, objects from other sources (imported
models), instance ids and the camera track. :func:`scene_problems` is its dry run: everything
that can fail (the plan, the openings, every piece's placement, names, the camera) without
building a mesh, every problem at once; ``greybox validate`` and the driver's build check run it.

Every random choice comes from ``object_rng(seed, stable name)``: a piece's size and placement
from its name, the details of its mesh from ``<name>#shape`` (so the dry run, which builds no
mesh, places it exactly where the build does); the same template gives the same bytes in any
process.

Each object records where it came from (:class:`scenes.scene_data.ObjectSource`) and its own frame
(``SceneObject.transform``): identity for the shell, the piece's footprint centre and yaw for
furniture (with the placement rule), the primitive's position and rotation for explicit objects.
An object source is a function that returns :class:`SceneObject` s with ``instance_id = 0``; the
builder numbers them all at the end, in a stable order. Models from files are read through Blender
by ``passes/model_import.py`` and come in as such objects (``imported``), as measured furniture
pieces (``assets``: a ``kind = "asset"`` piece is placed by the rules of its class's parametric
kind at the model's real bounds, in a single room and in a floor plan's rooms alike) and as a
file camera's track (``camera``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from greybox.errors import InputError
from procedural.building import (
    GROUND_CLASSES, Outline, Roof, building_outline, facade_mesh, facade_rings, ground_mesh, roof_for, storey_plans,
)
from procedural.camera_checks import camera_position_problems
from procedural.camera_paths import camera_track
from procedural.camera_tours import TourRoute, clearance_problems, plan_tour
from procedural.floor_plan import (
    OUTSIDE, PlanGeometry, floor_plan_input, plan_geometry, plan_problem, room_plan_input,
)
from procedural.furniture_library import DEFAULT_CLASS, HUNG_KINDS, build_furniture
from procedural.furniture_placement import Obstacle, PlacedPiece, RoomPlacer, obstacle_from_vertices
from procedural.planar_geometry import Footprint
from procedural.primitive_meshes import Mesh, box, cylinder, euler_xyz, pack_uvs, plane, rotation_z, transform
from procedural.room_furnishing import Furnishing, furnish_room
from procedural.room_shell import SLAB, shell_parts
from scenes.scene_data import ObjectSource, Scene, SceneObject, object_rng, object_seed_hex
from scenes.semantic_palette import resolve_class
from scenes.template_schema import MAX_NAME_LENGTH, BoxPrimitive, CylinderPrimitive, PlanePrimitive, Template, TourPath

MAX_INSTANCE_ID = 32767  # Blender's pass_index is a signed 16-bit short


def _round(values, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def _explicit_mesh(obj) -> Mesh:
    rotation = euler_xyz(obj.rotation)
    if isinstance(obj, BoxPrimitive):
        return box(obj.size, obj.position, rotation)
    if isinstance(obj, PlanePrimitive):
        return plane(obj.size, obj.position, rotation)
    if isinstance(obj, CylinderPrimitive):
        return cylinder(obj.radius, obj.height, obj.segments, obj.position, rotation)
    raise TypeError(f"unknown primitive {type(obj).__name__}")


def _frame(rotation: np.ndarray, translation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = np.asarray(translation, dtype=np.float64)
    return m


def _object(name: str, kind: str, class_id: int, mesh: Mesh, source: ObjectSource,
            transform_: np.ndarray | None = None) -> SceneObject:
    """A SceneObject from a procedural mesh (instance id assigned later)."""
    return SceneObject(
        name=name, kind=kind, semantic_class_id=int(class_id), instance_id=0,
        vertices=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        triangles=np.ascontiguousarray(mesh.triangles, dtype=np.int32),
        uvs=pack_uvs(mesh), source=source, transform=np.eye(4) if transform_ is None else transform_,
    )


def piece_world_transform(piece: PlacedPiece) -> np.ndarray:
    """4x4 object-to-world of a piece: its footprint centre on its bottom, yawed."""
    m = np.eye(4)
    m[:3, :3] = rotation_z(piece.yaw)
    m[:3, 3] = (piece.center[0], piece.center[1], piece.z0)
    return m


# --------------------------------------------------------------------------------------------
# The layout: the plan, what is in it, and every problem (no meshes)
# --------------------------------------------------------------------------------------------


@dataclass
class StoreyLayout:
    """One storey of a plan: its geometry in its own frame (floor at z = 0), lifted by ``z``."""

    index: int  # 0: the ground floor (a plan or a room generator has only this one)
    z: float  # world height of its floor
    prefix: str  # "" or "storey<N>/": in front of its objects' names
    geometry: PlanGeometry
    furnishings: dict[str, Furnishing] = field(default_factory=dict)  # per room, rooms in template order
    wall_height: float = 0.0  # its walls run from its floor up this far
    ceiling_top: float = 0.0  # the top of its ceiling slabs (storey frame)


@dataclass
class BuildingLayout:
    """The outside of a building: its outline, the facade's rings, the roof and the ground."""

    outline: Outline
    rings: tuple[list, list, list]  # the facade's inner face, centre line, outer face (polygons)
    roof: Roof
    ground_size: float
    ground_centre: tuple[float, float]
    ground_class: str
    storey_height: float


@dataclass
class SceneLayout:
    """What a template lays out, before any mesh is built."""

    template: Template
    geometry: PlanGeometry | None  # the ground floor's
    furnishings: dict[str, Furnishing] = field(default_factory=dict)  # the ground floor's, per room
    explicit_meshes: list[Mesh] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    storeys: list[StoreyLayout] = field(default_factory=list)
    building: BuildingLayout | None = None
    obstacles: list[Obstacle] = field(default_factory=list)  # explicit objects and imported models (world frame)
    tour: TourRoute | None = None  # a tour's route, once the camera is planned

    @property
    def generator(self) -> str:
        return self.template.generator.kind

    def obstacles_in(self, storey: StoreyLayout) -> list[tuple[str, Footprint]]:
        """The explicit and imported obstacles in a storey's frame (for tours)."""
        return [(o.label, Footprint(o.footprint.points, o.footprint.z0 - storey.z, o.footprint.z1 - storey.z))
                for o in self.obstacles]


def asset_pieces(template: Template) -> list[tuple[str, object]]:
    """(template key path, spec) of every ``kind = "asset"`` furniture piece, in template order:
    ``generator.room.furniture.N`` or ``generator.floor_plan.rooms.R.furniture.N``."""
    gen = template.generator
    if gen.kind == "room":
        return [(f"generator.room.furniture.{i}", f) for i, f in enumerate(gen.room.furniture) if f.kind == "asset"]
    if gen.kind == "floor_plan":
        return [(f"generator.floor_plan.rooms.{r}.furniture.{i}", f) for r, room in enumerate(gen.floor_plan.rooms)
                if room.furniture != "auto" for i, f in enumerate(room.furniture) if f.kind == "asset"]
    return []


def _check_assets(template: Template, assets) -> dict:
    assets = dict(assets or {})
    missing = [key for key, _ in asset_pieces(template) if key not in assets]
    if missing:
        raise ValueError(f"build_scene: the asset pieces {missing} need their measured models (passes.model_import)")
    return assets


def _spec_problems(geometry: PlanGeometry, template: Template, assets: dict) -> list[dict]:
    """Furniture entries that name a wall or a position the room does not have."""
    problems = []
    style = geometry.input.generator
    for room in geometry.rooms.values():
        if room.furniture == "auto":
            continue
        for index, spec in enumerate(room.furniture):
            key = f"{room.furniture_key}.{index}"
            if spec.wall is not None:
                if style == "room" and not isinstance(spec.wall, str):
                    problems.append(plan_problem(f"{key}.wall", spec.wall, "the room generator names its walls: "
                                                 "'south', 'east', 'north' or 'west'"))
                elif style == "floor_plan" and isinstance(spec.wall, str):
                    problems.append(plan_problem(f"{key}.wall", spec.wall, f"a floor plan's room names a wall by its polygon "
                                                 f"edge index: 0 .. {len(room.walls) - 1} (edge i runs from vertex i to i + 1)"))
                elif style == "floor_plan" and spec.wall >= len(room.walls):
                    problems.append(plan_problem(f"{key}.wall", spec.wall, f"room {room.name!r} has edges 0 .. {len(room.walls) - 1}"))
            kind = assets[key].rule_kind if key in assets else spec.kind
            if kind in HUNG_KINDS and spec.position is not None:
                problems.append(plan_problem(f"{key}.position", list(spec.position),
                                             f"a {kind.replace('_', ' ')} hangs on a wall at a drawn place; remove the "
                                             f"position and pin {key}.wall instead"))
            name = geometry.input.naming.piece(room.name, spec.stable_name)
            if len(name) > MAX_NAME_LENGTH:
                problems.append(plan_problem(f"{key}.{'name' if spec.name else ('file' if spec.kind == 'asset' else 'kind')}", spec.stable_name,
                                             f"the piece's stable name {name!r} is {len(name)} characters long; Blender keeps "
                                             f"{MAX_NAME_LENGTH}: shorten the piece's or the room's name"))
    return problems


def _dedupe(problems: list[dict]) -> list[dict]:
    """Problems in order, each message once (every storey of a building repeats the plan's)."""
    seen, out = set(), []
    for p in problems:
        if p["message"] not in seen:
            seen.add(p["message"])
            out.append(p)
    return out


def _on_storey(message: str, index: int) -> str:
    """Say which storey a placement problem is on (after the key and value)."""
    head, sep, rest = message.partition(": ")
    return f"{head}: on storey {index} (storey{index}/): {rest}" if sep and index else message


def _furnish(template: Template, storey: StoreyLayout, obstacles: list[Obstacle], bad_rooms: set[str], assets: dict) -> list[dict]:
    """Place every room's furniture on one storey; the problems (pieces that do not fit)."""
    geometry = storey.geometry
    plan = geometry.input
    problems = []
    local = [Obstacle(o.label, Footprint(o.footprint.points, o.footprint.z0 - storey.z, o.footprint.z1 - storey.z))
             for o in obstacles]
    passages = geometry.door_passages()
    for room in sorted(geometry.rooms.values(), key=lambda r: r.index):
        if room.key in bad_rooms or room.furniture == [] or room.furniture is None:
            storey.furnishings[room.name] = Furnishing()
            continue
        doors = []
        inset = plan.thickness / 2 + 0.35
        for p in passages:
            if room.name not in p.rooms:
                continue
            sign = 1.0 if p.rooms[0] == room.name else -1.0
            doors.append((p.name, (p.centre[0] + sign * inset * p.normal[0], p.centre[1] + sign * inset * p.normal[1])))
        placer = RoomPlacer(room, plan.height, geometry.zones.get(room.name, []), local, doors)
        furnishing = furnish_room(placer, room, plan.naming, template.seed, assets)
        storey.furnishings[room.name] = furnishing
        for failure in furnishing.failures:
            req = failure.request
            value = list(req.position) if req.position is not None else ("auto" if room.furniture == "auto" else None)
            key = f"{req.key}.position" if req.position is not None else req.key
            message = failure.message()
            if room.furniture == "auto":
                message = f"{req.key} = 'auto': " + message.split(": ", 1)[1]
            problems.append({"file": "", "key": key, "value": value, "message": _on_storey(message, storey.index)})
    return problems


def scene_layout(template: Template, imported: Sequence[SceneObject] = (), assets=None) -> SceneLayout:
    """Lay the template out (plan, storeys, openings, furniture, a building's outside) and collect
    every problem; builds no mesh. ``assets``: {template key path:
    :class:`procedural.model_meshes.MeasuredAsset`} of the ``kind = "asset"`` pieces
    (:func:`asset_pieces`; required when there are some)."""
    assets = _check_assets(template, assets)
    explicit_meshes = [_explicit_mesh(obj) for obj in template.objects]
    obstacles = [obstacle_from_vertices(f"objects.{i} {obj.name!r}", mesh.vertices)
                 for i, (obj, mesh) in enumerate(zip(template.objects, explicit_meshes))]
    obstacles += [obstacle_from_vertices(f"{o.name!r} ({o.source.file or 'imported'})", o.vertices) for o in imported]
    gen = template.generator
    if gen.kind == "none":
        return SceneLayout(template, None, explicit_meshes=explicit_meshes, obstacles=obstacles)
    problems: list[dict] = []
    if gen.kind == "room":
        plans = [room_plan_input(gen.room)]
    elif gen.kind == "floor_plan":
        plans = [floor_plan_input(gen.floor_plan)]
    else:
        plans, problems = storey_plans(gen, floor_plan_input(gen.floor_plan))
    spec = gen.building_spec if gen.kind == "building" else None
    storeys = []
    bad_rooms: set[str] = set()
    for k, plan in enumerate(plans):
        geometry, found = plan_geometry(plan)
        problems += found
        if spec is None:
            wall_height, ceiling_top = plan.height, plan.height + SLAB
        else:
            wall_height = ceiling_top = spec.storey_height - SLAB
        storey = StoreyLayout(k, k * (spec.storey_height if spec else 0.0), "" if k == 0 else f"storey{k}/", geometry,
                              wall_height=wall_height, ceiling_top=ceiling_top)
        if k == 0:
            spec_problems = _spec_problems(geometry, template, assets)
            problems += spec_problems
            bad_rooms = {p["key"].split(".furniture")[0] for p in spec_problems}
        storeys.append(storey)
    for storey in storeys:
        problems += _furnish(template, storey, obstacles, bad_rooms, assets)
    layout = SceneLayout(template, storeys[0].geometry, storeys[0].furnishings, explicit_meshes, _dedupe(problems),
                         storeys, obstacles=obstacles)
    if spec is not None and not layout.problems:
        layout.building, found = _building_layout(spec, storeys)
        layout.problems += found
    return layout


def _building_layout(spec, storeys: list[StoreyLayout]) -> tuple[BuildingLayout | None, list[dict]]:
    """The outside of a building whose storeys lay out without problems."""
    ground = storeys[0].geometry
    outline, problems = building_outline(ground)
    if outline is None:
        return None, problems
    rings = facade_rings(outline, ground.thickness)
    top = storeys[-1].z + storeys[-1].wall_height
    roof, problems = roof_for(spec.roof, rings[2], top, spec.roof_pitch, spec.roof_overhang)
    if roof is None:
        return None, problems
    eaves = roof.eaves
    xs, ys = [p[0] for p in eaves], [p[1] for p in eaves]
    centre = ((min(xs) + max(xs)) / 2.0, (min(ys) + max(ys)) / 2.0)
    needed = max(max(xs) - min(xs), max(ys) - min(ys))
    if spec.ground_size < needed + 1e-9:
        return None, [plan_problem("generator.building.ground_size", spec.ground_size,
                                   f"the ground is smaller than the building ({needed:.3g} m across with its eaves); "
                                   f"allowed ground_size > {needed:.3g}")]
    return BuildingLayout(outline, rings, roof, float(spec.ground_size), centre, GROUND_CLASSES[spec.ground],
                          float(spec.storey_height)), []


def _names_and_ids(template: Template, layout: SceneLayout, imported: Sequence[SceneObject]) -> list[dict]:
    """Name clashes and the instance-id budget, from the names alone."""
    problems = []
    explicit = [o.name for o in template.objects]
    if template.generator.kind == "room":
        for i, name in enumerate(explicit):
            if name.startswith("room."):
                problems.append(plan_problem(f"objects.{i}.name", name, "names starting with 'room.' are the generated room's; rename it"))
    count = len(explicit) + len(imported)
    for storey in layout.storeys:
        g = storey.geometry
        count += len(g.rooms) * (2 if g.input.ceiling else 1) + len(g.wall_names()) + len(g.openings)
        count += sum(len(f.placed) for f in storey.furnishings.values())
    if layout.building is not None:
        count += len(layout.storeys) + 2  # the facades, the roof, the ground
    for storey in layout.storeys[1:]:
        g = storey.geometry
        names = g.wall_names() + [op.name for op in g.openings]
        names += [p.name for f in storey.furnishings.values() for p in f.placed]
        longest = max((storey.prefix + n if not n.startswith(storey.prefix) else n for n in names), key=len, default="")
        if len(longest) > MAX_NAME_LENGTH:
            problems.append(plan_problem("generator.building.storeys", len(layout.storeys),
                                         f"the stable name {longest!r} on storey {storey.index} is {len(longest)} characters "
                                         f"long; Blender keeps {MAX_NAME_LENGTH}: shorten the room names"))
            break
    if count > MAX_INSTANCE_ID:
        fix = ("select fewer imported objects with imports.N.objects = [...], or join meshes in the file" if imported
               else "remove objects or rooms")
        problems.append(plan_problem("objects", None, f"the scene has {count} objects ({len(imported)} from model files); "
                                     f"at most {MAX_INSTANCE_ID} fit Blender's pass_index: {fix}"))
    return problems


def scene_problems(template: Template, imported: Sequence[SceneObject] = (), assets=None, camera=None) -> list[dict]:
    """The dry run of :func:`build_scene` (the same arguments): every problem building this template
    would meet (the plan, the openings, every piece of furniture, names, the camera), each naming
    its key path, value and fix; empty when it builds. Builds no mesh."""
    layout = scene_layout(template, imported, assets)
    return layout.problems + _names_and_ids(template, layout, imported) + _camera_problems(template, layout, imported, camera)[1]


def _camera_problems(template: Template, layout: SceneLayout, imported: Sequence[SceneObject] = (), camera=None):
    """(the track or None, problems): the path (a tour planned through the layout), then where the
    camera is on every rendered frame (:mod:`procedural.camera_checks`; skipped while the layout
    itself has problems, which are reported first). ``camera``: a file camera's track, which wins
    (a studio's own camera is not second-guessed)."""
    import re

    if camera is not None:
        return camera, []
    if template.camera is None:
        raise ValueError("build_scene: the template's camera comes from a file (imports.N.camera); pass its track")
    path = template.camera.path
    render = template.render
    tour: TourRoute | None = None
    if isinstance(path, TourPath):
        if layout.problems:
            return None, []
        tour, problems = plan_tour(path, layout.storeys, layout.obstacles_in)
        if tour is None:
            return None, problems
        layout.tour = tour
    try:
        track = camera_track(template.camera, render.frame_start, render.frame_end, tour=tour)
    except InputError as err:
        if err.problems:
            return None, list(err.problems)
        match = re.match(r"([A-Za-z_]\w*(?:\.\w+)*)", str(err))
        return None, [{"file": "", "key": match.group(1) if match else "camera", "value": None, "message": str(err)}]
    if layout.problems:
        return track, []
    problems = []
    if tour is not None:
        frames = np.arange(render.frame_start, render.frame_end + 1)
        positions = np.stack([track.positions[track.index(int(f))] for f in frames])
        problems += clearance_problems(path, tour, layout.storeys, layout.obstacles_in, frames, positions)
    problems += camera_position_problems(template, layout, track, imported)
    return track, problems


def raise_problems(problems: list[dict]) -> None:
    if problems:
        raise InputError("\n".join(p["message"] for p in problems), problems)


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _piece_objects(layout: SceneLayout, metadata: dict, assets: dict) -> list[SceneObject]:
    template = layout.template
    seed = template.seed
    style = layout.geometry.input.generator  # "room" or "floor_plan" (a building's storeys are plans)
    objects, records, left_out = [], [], []
    specs = {}
    for room in layout.geometry.rooms.values():
        if room.furniture != "auto":
            for index, spec in enumerate(room.furniture):
                specs[f"{room.furniture_key}.{index}"] = spec
    for storey in layout.storeys:
        lift = storey.z
        for room_name, furnishing in storey.furnishings.items():
            left_out += [{**item, "room": room_name, **({"storey": storey.index} if layout.building else {})}
                         for item in furnishing.left_out]
            for piece in furnishing.placed:
                spec = specs.get(piece.key)
                asset = assets.get(piece.key)
                cls = resolve_class(spec.semantic_class if spec is not None and spec.semantic_class is not None
                                    else DEFAULT_CLASS[piece.kind])
                wall = None
                if piece.wall is not None:
                    wall = piece.wall.name if style == "room" else piece.wall.index
                record = {
                    "name": piece.name, "kind": "asset" if asset is not None else piece.kind, "class": cls.name,
                    "class_id": cls.class_id, "size": _round(piece.size),
                    "size_drawn": asset is None and (spec is None or spec.size is None),
                    "position": _round((piece.center[0], piece.center[1], piece.z0 + lift)),
                    "yaw": round(piece.yaw, 6), "wall": wall, "anchor": piece.anchor,
                    "rng": {"key": f"{seed}/{piece.name}", "seed": object_seed_hex(seed, piece.name)},
                }
                if style == "floor_plan":
                    record["room"] = room_name
                if layout.building is not None:
                    record["storey"] = storey.index
                records.append(record)
                placement = {
                    **record, "rule": piece.rule, "tries": piece.tries,
                    "pinned": {"wall": spec is not None and spec.wall is not None,
                               "position": spec is not None and spec.position is not None,
                               "rotation": spec is not None and spec.rotation is not None,
                               "size": spec is not None and spec.size is not None},
                    **({"auto": True} if spec is None else {}), **piece.details,
                }
                for key in ("name", "kind", "class", "class_id"):
                    placement.pop(key)
                frame = piece_world_transform(piece)
                frame[2, 3] += lift
                at = (piece.center[0], piece.center[1], piece.z0 + lift)
                if asset is None:
                    mesh = build_furniture(piece.kind, piece.size, object_rng(seed, f"{piece.name}#shape"))
                    world = transform(mesh, rotation_z(piece.yaw), at)
                    source = ObjectSource("generator", generator=layout.generator, template_key=piece.key, placement=placement)
                    objects.append(_object(piece.name, piece.kind, cls.class_id, world, source, frame))
                    continue
                # a model placed by the rules of its class's parametric kind, at its measured size
                record["file"] = spec.file
                placement.update({"measured": True, "rules_of": piece.kind, "file": spec.file})
                world = transform(asset.mesh, rotation_z(piece.yaw), at)
                uvs = asset.uvs if asset.uvs is not None else pack_uvs(world)
                source = ObjectSource("import", generator=layout.generator, template_key=piece.key, file=spec.file, node_path="/",
                                      placement=placement, uvs="file" if asset.uvs is not None else "packed")
                objects.append(SceneObject(
                    name=piece.name, kind="asset", semantic_class_id=int(cls.class_id), instance_id=0,
                    vertices=np.ascontiguousarray(world.vertices, dtype=np.float64),
                    triangles=np.ascontiguousarray(world.triangles, dtype=np.int32),
                    uvs=np.ascontiguousarray(uvs, dtype=np.float32), source=source, transform=frame,
                ))
    metadata["generator"]["furniture"] = records
    if style == "floor_plan":
        metadata["generator"]["furniture_left_out"] = left_out
    return objects


def _shell_objects(layout: SceneLayout, metadata: dict) -> list[SceneObject]:
    geometry = layout.geometry
    plan = geometry.input
    style = plan.generator
    objects = []
    keys = {r.name: r.key for r in geometry.rooms.values()}
    for storey in layout.storeys:
        opening_keys = {op.name: op.key for op in storey.geometry.openings}
        parts = shell_parts(storey.geometry, z_offset=storey.z, name_prefix=storey.prefix,
                            wall_height=storey.wall_height, ceiling_top=storey.ceiling_top)
        for part in parts:
            name = part.name.removeprefix(storey.prefix)
            if style == "room":
                key = "generator.room"
            elif part.kind in ("door", "window"):
                key = opening_keys[name]
            else:
                key = keys[part.rooms[0]]
            objects.append(_object(part.name, part.kind, resolve_class(part.semantic_class).class_id, part.mesh,
                                   ObjectSource("generator", generator=layout.generator, template_key=key)))
    if style == "room":
        room = layout.template.generator.room
        the_room = next(iter(geometry.rooms.values()))
        metadata["generator"]["room"] = {
            "footprint": room.footprint,
            "width": room.width, "depth": room.depth, "height": room.height,
            "wall_thickness": room.wall_thickness,
            "l_cut": None if room.l_cut is None else list(room.l_cut),
            "ceiling": room.ceiling,
            "openings": [
                {"kind": kind, "index": i, "wall": o.wall, "offset": o.offset, "width": o.width, "height": o.height,
                 "sill": o.sill, **({"glass": o.glass} if kind == "window" else {})}
                for kind, specs in (("door", room.doors), ("window", room.windows)) for i, o in enumerate(specs)
            ],
            "walls": {
                w.name: {"start": _round(w.start), "direction": _round(w.direction), "inward": _round(w.inward),
                         "length": round(w.length, 6)}
                for w in the_room.walls
            },
        }
    else:
        metadata["generator"]["floor_plan"] = geometry.to_json()
    return objects


def _building_objects(layout: SceneLayout, metadata: dict) -> list[SceneObject]:
    """The facades (one per storey), the roof and the ground."""
    building = layout.building
    source = ObjectSource("generator", generator="building", template_key="generator.building")
    objects = []
    for storey in layout.storeys:
        mesh = facade_mesh(building.outline, storey.geometry, storey.z, building.storey_height)
        objects.append(_object(f"{storey.prefix}facade", "facade", resolve_class("building").class_id, mesh, source))
    roof = building.roof
    objects.append(_object("roof", "roof", resolve_class("building").class_id, roof.mesh(), source))
    ground = ground_mesh(building.ground_centre, building.ground_size)
    objects.append(_object("ground", "ground", resolve_class(building.ground_class).class_id, ground, source))
    spec = layout.template.generator.building_spec
    metadata["generator"]["building"] = {
        "storeys": [
            {"index": s.index, "prefix": s.prefix, "floor_z": _round([s.z])[0], "wall_top_z": _round([s.z + s.wall_height])[0],
             "windows": sum(1 for op in s.geometry.openings if op.kind == "window"),
             "entrances": [op.name for op in s.geometry.openings if op.kind == "door" and op.rooms[1] == OUTSIDE]}
            for s in layout.storeys
        ],
        "storey_height": spec.storey_height,
        "outline": [_round(p) for p in building.outline.polygon],
        "facade_outline": [_round(p) for p in building.rings[2]],
        "roof": {"kind": roof.kind, "base_z": round(roof.base, 6), "top_z": round(roof.top, 6),
                 "pitch": roof.pitch_deg if roof.kind != "flat" else None, "overhang": roof.overhang,
                 "eaves": [_round(p) for p in roof.eaves]},
        "ground": {"class": building.ground_class, "z": -SLAB, "size": building.ground_size,
                   "centre": _round(building.ground_centre)},
        "facade_windows": spec.facade_windows is not None,
    }
    return objects


def explicit_objects(template: Template, meshes: Sequence[Mesh] | None = None) -> list[SceneObject]:
    """The template's ``[[objects]]`` primitives, in template order, each in its own frame."""
    meshes = meshes if meshes is not None else [_explicit_mesh(obj) for obj in template.objects]
    return [
        _object(obj.name, obj.primitive, obj.resolved_class.class_id, mesh,
                ObjectSource("explicit", template_key=f"objects.{i}"), _frame(euler_xyz(obj.rotation), obj.position))
        for i, (obj, mesh) in enumerate(zip(template.objects, meshes))
    ]


def assign_instance_ids(objects: Sequence[SceneObject]) -> tuple[SceneObject, ...]:
    """Number ``objects`` 1.. in the order given; refuse repeated names and more than the id pass holds."""
    if len(objects) > MAX_INSTANCE_ID:
        imported = sum(1 for o in objects if o.source.kind == "import")
        raise InputError(
            f"the scene has {len(objects)} objects ({imported} from model files); the instance-id pass holds at most "
            f"{MAX_INSTANCE_ID}: select fewer imported objects with imports.N.objects = [...], or join meshes in the file"
        )
    seen: set[str] = set()
    out = []
    for instance_id, obj in enumerate(objects, start=1):
        if obj.name in seen:
            raise InputError(f"object name {obj.name!r} is used twice; give each object a distinct name")
        seen.add(obj.name)
        out.append(dataclasses.replace(obj, instance_id=instance_id))
    return tuple(out)


def build_scene(template: Template, imported: Sequence[SceneObject] = (), assets=None, camera=None) -> Scene:
    """Build the scene described by a validated template.

    ``imported``: objects from other sources (models read through Blender by ``passes/``), with
    ``instance_id = 0``; the furniture keeps clear of them; they are numbered after the
    template's own, in the order given. ``assets``: {template key path:
    :class:`procedural.model_meshes.MeasuredAsset`} for the ``kind = "asset"`` pieces
    (:func:`asset_pieces`; required when there are some). ``camera``: the file camera's
    :class:`CameraTrack` when an import gives the camera (``imports.N.camera``).

    Instance ids, 1.. in this order: the shell (floors, ceilings, walls, doors, windows; a
    building's storeys from the ground up), the furniture (storeys from the ground up, rooms in
    template order, each room's pieces in placement order: a template list in its order), a
    building's facades (storeys from the ground up), roof and ground, the explicit objects
    (template order), the imported objects.

    Raises one InputError listing every problem (each naming the key path, the value and the fix)
    when the template is valid on its own but cannot be built: the plan's rooms, openings that do
    not fit their walls, pieces that cannot be placed, a camera whose view is undefined or that is
    inside geometry (or outside every room of an interior scene), a name clash.
    """
    # 1. Check inputs
    if not isinstance(template, Template):
        raise TypeError(f"build_scene needs a validated Template, got {type(template).__name__}")
    assets = _check_assets(template, assets)
    layout = scene_layout(template, imported, assets)
    track, camera_problems = _camera_problems(template, layout, imported, camera)
    raise_problems(layout.problems + _names_and_ids(template, layout, imported) + camera_problems)
    metadata: dict = {"seed": template.seed, "generator": {"kind": template.generator.kind}, "objects": {}}

    # 2. The shell and its furniture
    objects: list[SceneObject] = []
    if layout.geometry is not None:
        objects += _shell_objects(layout, metadata)
        objects += _piece_objects(layout, metadata, assets)
    if layout.building is not None:
        objects += _building_objects(layout, metadata)

    # 3. Explicit objects, then objects from other sources
    objects += explicit_objects(template, layout.explicit_meshes)
    objects += list(imported)

    # 4. Instance ids: 1.. in that order
    numbered = assign_instance_ids(objects)
    for obj in numbered:
        metadata["objects"][obj.name] = {"instance_id": obj.instance_id, "kind": obj.kind, "class_id": obj.semantic_class_id}

    # 5. Camera track: the template's path, or the file camera's
    if camera is not None:
        index = next(i for i, spec in enumerate(template.imports) if spec.camera is not None)
        spec = template.imports[index]
        metadata["camera"] = {"path": "file", "file": spec.file, "node_path": spec.camera, "template_key": f"imports.{index}.camera",
                              "frames": [int(track.frames[0]), int(track.frames[-1])]}
    else:
        metadata["camera"] = {"path": template.camera.path.kind, "frames": [int(track.frames[0]), int(track.frames[-1])]}
    if layout.tour is not None:
        metadata["camera"]["tour"] = {"doors": list(layout.tour.doors), "length": round(layout.tour.length, 6),
                                      "storey": layout.tour.storey, "route": [_round(p) for p in layout.tour.points]}

    return Scene(
        name=template.name, seed=template.seed, objects=numbered, camera=track,
        width=template.render.width, height=template.render.height,
        frame_start=template.render.frame_start, frame_end=template.render.frame_end, fps=template.render.fps,
        metadata=metadata,
    )


__all__ = ["build_scene", "scene_problems", "asset_pieces", "scene_layout", "explicit_objects", "assign_instance_ids", "OUTSIDE"]
