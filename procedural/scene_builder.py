"""Template -> Scene: the procedural stage's entry point, pure numpy (Blender only sees the result).

:func:`build_scene` turns a validated :class:`scenes.template_schema.Template` into a
:class:`scenes.scene_data.Scene`: the room shell, the placed furniture, the explicit primitives,
objects from other sources (imported models), instance ids and the camera track. Every random
choice comes from ``object_rng(seed, stable name)``; the same template gives the same bytes in any
process.

Each object records where it came from (:class:`scenes.scene_data.ObjectSource`) and its own frame
(``SceneObject.transform``): identity for the room shell, the piece's footprint centre and yaw for
furniture (with the placement rule), the primitive's position and rotation for explicit objects.
An object source is a function that returns :class:`SceneObject` s with ``instance_id = 0``; the
builder numbers them all at the end, in a stable order.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from greybox.errors import InputError
from procedural.camera_paths import camera_track
from procedural.furniture_library import DEFAULT_CLASS
from procedural.primitive_meshes import Mesh, box, cylinder, euler_xyz, pack_uvs, plane
from procedural.room_layout import place_furniture, room_geometry, room_shell_parts
from scenes.scene_data import ObjectSource, Scene, SceneObject, object_seed_hex
from scenes.semantic_palette import resolve_class
from scenes.template_schema import BoxPrimitive, CylinderPrimitive, PlanePrimitive, Template

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
            transform: np.ndarray | None = None) -> SceneObject:
    """A SceneObject from a procedural mesh (instance id assigned later)."""
    return SceneObject(
        name=name, kind=kind, semantic_class_id=int(class_id), instance_id=0,
        vertices=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        triangles=np.ascontiguousarray(mesh.triangles, dtype=np.int32),
        uvs=pack_uvs(mesh), source=source, transform=np.eye(4) if transform is None else transform,
    )


def room_objects(template: Template, metadata: dict) -> list[SceneObject]:
    """The room generator's objects: the shell (floor, ceiling, walls, doors, windows), then the
    furniture in template order. Records the room's resolved parameters in ``metadata``."""
    room = template.generator.room
    geometry = room_geometry(room)
    objects = [
        _object(part.name, part.kind, resolve_class(part.semantic_class).class_id, part.mesh,
                ObjectSource("generator", generator="room", template_key="generator.room"))
        for part in room_shell_parts(geometry)
    ]
    metadata["generator"]["room"] = {
        "footprint": room.footprint,
        "width": room.width, "depth": room.depth, "height": room.height,
        "wall_thickness": room.wall_thickness,
        "l_cut": None if room.l_cut is None else list(room.l_cut),
        "ceiling": room.ceiling,
        "openings": [
            {"kind": op.kind, "index": op.index, "wall": op.wall, "offset": op.offset, "width": op.width,
             "height": op.height, "sill": op.sill}
            for op in geometry.openings
        ],
        "walls": {
            name: {"start": _round(w.start), "direction": _round(w.direction), "inward": _round(w.inward),
                   "length": round(w.length, 6)}
            for name, w in geometry.walls.items()
        },
    }

    pieces = place_furniture(geometry, list(room.furniture), template.seed)
    furniture_meta = []
    for spec, piece in zip(room.furniture, pieces):
        cls = resolve_class(spec.semantic_class if spec.semantic_class is not None else DEFAULT_CLASS[piece.kind])
        record = {
            "name": piece.name, "kind": piece.kind, "class": cls.name, "class_id": cls.class_id,
            "size": _round(piece.size), "size_drawn": spec.size is None,
            "position": _round((piece.center[0], piece.center[1], piece.z0)),
            "yaw": round(piece.yaw, 6), "wall": piece.wall, "anchor": piece.anchor,
            "rng": {"key": f"{template.seed}/{piece.name}", "seed": object_seed_hex(template.seed, piece.name)},
        }
        furniture_meta.append(record)
        placement = {
            **record, "rule": piece.rule, "tries": piece.tries,
            "pinned": {"wall": spec.wall is not None, "position": spec.position is not None,
                       "rotation": spec.rotation is not None, "size": spec.size is not None},
        }
        for key in ("name", "kind", "class", "class_id"):
            placement.pop(key)
        source = ObjectSource("generator", generator="room", template_key=f"generator.room.furniture.{piece.index}",
                              placement=placement)
        objects.append(_object(piece.name, piece.kind, cls.class_id, piece.world_mesh(), source, piece.world_transform()))
    metadata["generator"]["furniture"] = furniture_meta
    return objects


def explicit_objects(template: Template) -> list[SceneObject]:
    """The template's ``[[objects]]`` primitives, in template order, each in its own frame."""
    return [
        _object(obj.name, obj.primitive, obj.resolved_class.class_id, _explicit_mesh(obj),
                ObjectSource("explicit", template_key=f"objects.{i}"), _frame(euler_xyz(obj.rotation), obj.position))
        for i, obj in enumerate(template.objects)
    ]


def assign_instance_ids(objects: Sequence[SceneObject]) -> tuple[SceneObject, ...]:
    """Number ``objects`` 1.. in the order given; refuse repeated names and more than the id pass holds."""
    if len(objects) > MAX_INSTANCE_ID:
        raise InputError(f"the scene has {len(objects)} objects; at most {MAX_INSTANCE_ID} fit Blender's pass_index")
    seen: set[str] = set()
    out = []
    for instance_id, obj in enumerate(objects, start=1):
        if obj.name in seen:
            raise InputError(f"object name {obj.name!r} is used twice; give each object a distinct name")
        seen.add(obj.name)
        out.append(dataclasses.replace(obj, instance_id=instance_id))
    return tuple(out)


def build_scene(template: Template, imported: Sequence[SceneObject] = ()) -> Scene:
    """Build the scene described by a validated template.

    ``imported``: objects from other sources (models read through Blender by ``passes/``), with
    ``instance_id = 0``; they are numbered after the template's own, in the order given.

    Instance ids, 1.. in this order: the room shell, the furniture (template order), the explicit
    objects (template order), the imported objects.

    Raises InputError (naming the key path, the value and the fix) when the template is valid on
    its own but cannot be built: an opening that does not fit its wall, a piece that cannot be
    placed, a camera whose view is undefined, a name clash.
    """
    # 1. Check inputs
    if not isinstance(template, Template):
        raise TypeError(f"build_scene needs a validated Template, got {type(template).__name__}")
    explicit_names = [o.name for o in template.objects]
    if template.generator.kind == "room":
        for i, name in enumerate(explicit_names):
            if name.startswith("room."):
                raise InputError(
                    f"objects.{i}.name = {name!r}: names starting with 'room.' are the generated room's; rename it"
                )
    metadata: dict = {"seed": template.seed, "generator": {"kind": template.generator.kind}, "objects": {}}

    # 2. The room shell and its furniture
    objects: list[SceneObject] = []
    if template.generator.kind == "room":
        objects += room_objects(template, metadata)

    # 3. Explicit objects, then objects from other sources
    objects += explicit_objects(template)
    objects += list(imported)

    # 4. Instance ids: 1.. in that order
    numbered = assign_instance_ids(objects)
    for obj in numbered:
        metadata["objects"][obj.name] = {"instance_id": obj.instance_id, "kind": obj.kind, "class_id": obj.semantic_class_id}

    # 5. Camera track
    track = camera_track(template.camera, template.render.frame_start, template.render.frame_end)
    metadata["camera"] = {"path": template.camera.path.kind, "frames": [int(track.frames[0]), int(track.frames[-1])]}

    return Scene(
        name=template.name, seed=template.seed, objects=numbered, camera=track,
        width=template.render.width, height=template.render.height,
        frame_start=template.render.frame_start, frame_end=template.render.frame_end, fps=template.render.fps,
        metadata=metadata,
    )
