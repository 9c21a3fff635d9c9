"""Template -> Scene: the procedural stage's entry point, pure numpy (Blender only sees the result).

:func:`build_scene` turns a validated :class:`scenes.template_schema.Template` into a
:class:`scenes.scene_data.Scene`: the room shell, the placed furniture, the explicit primitives,
instance ids and the camera track. Every random choice comes from ``object_rng(seed, stable name)``;
the same template gives the same bytes in any process.
"""

from __future__ import annotations

import hashlib

import numpy as np

from greybox.errors import InputError
from procedural.camera_paths import camera_track
from procedural.furniture_library import DEFAULT_CLASS
from procedural.primitive_meshes import Mesh, box, cylinder, euler_xyz, pack_uvs, plane
from procedural.room_layout import place_furniture, room_geometry, room_shell_parts
from scenes.scene_data import Scene, SceneObject
from scenes.semantic_palette import resolve_class
from scenes.template_schema import BoxPrimitive, CylinderPrimitive, PlanePrimitive, Template

MAX_INSTANCE_ID = 32767  # Blender's pass_index is a signed 16-bit short


def object_seed_hex(scene_seed: int, stable_name: str) -> str:
    """The 128-bit seed ``object_rng`` derives for (scene seed, stable name), as hex (for the metadata)."""
    digest = hashlib.sha256(f"{int(scene_seed)}/{stable_name}".encode()).digest()
    return int.from_bytes(digest[:16], "little").to_bytes(16, "big").hex()


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


def build_scene(template: Template) -> Scene:
    """Build the scene described by a validated template.

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
    parts: list[tuple[str, str, int, Mesh]] = []  # (stable name, kind, class id, world mesh), in id order
    metadata: dict = {"seed": template.seed, "generator": {"kind": template.generator.kind}, "objects": {}}

    # 2. Room shell
    if template.generator.kind == "room":
        room = template.generator.room
        geometry = room_geometry(room)
        for part in room_shell_parts(geometry):
            parts.append((part.name, part.kind, resolve_class(part.semantic_class).class_id, part.mesh))
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

        # 3. Furniture
        pieces = place_furniture(geometry, list(room.furniture), template.seed)
        furniture_meta = []
        for spec, piece in zip(room.furniture, pieces):
            cls = resolve_class(spec.semantic_class if spec.semantic_class is not None else DEFAULT_CLASS[piece.kind])
            parts.append((piece.name, piece.kind, cls.class_id, piece.world_mesh()))
            furniture_meta.append({
                "name": piece.name, "kind": piece.kind, "class": cls.name, "class_id": cls.class_id,
                "size": _round(piece.size), "size_drawn": spec.size is None,
                "position": _round((piece.center[0], piece.center[1], piece.z0)),
                "yaw": round(piece.yaw, 6), "wall": piece.wall, "anchor": piece.anchor,
                "rng": {"key": f"{template.seed}/{piece.name}", "seed": object_seed_hex(template.seed, piece.name)},
            })
        metadata["generator"]["furniture"] = furniture_meta

    # 4. Explicit objects
    for obj in template.objects:
        parts.append((obj.name, obj.primitive, obj.resolved_class.class_id, _explicit_mesh(obj)))

    # 5. Instance ids: 1.. in build order (room parts, furniture in template order, explicit objects)
    if len(parts) > MAX_INSTANCE_ID:
        raise InputError(f"the scene has {len(parts)} objects; at most {MAX_INSTANCE_ID} fit Blender's pass_index")
    seen: set[str] = set()
    objects = []
    for instance_id, (name, kind, class_id, mesh) in enumerate(parts, start=1):
        if name in seen:
            raise InputError(f"object name {name!r} is used twice; give each object a distinct name")
        seen.add(name)
        objects.append(SceneObject(
            name=name, kind=kind, semantic_class_id=int(class_id), instance_id=instance_id,
            vertices=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
            triangles=np.ascontiguousarray(mesh.triangles, dtype=np.int32),
            uvs=pack_uvs(mesh),
        ))
        metadata["objects"][name] = {"instance_id": instance_id, "kind": kind, "class_id": int(class_id)}

    # 6. Camera track
    track = camera_track(template.camera, template.render.frame_start, template.render.frame_end)
    metadata["camera"] = {"path": template.camera.path.kind, "frames": [int(track.frames[0]), int(track.frames[-1])]}

    return Scene(
        name=template.name, seed=template.seed, objects=tuple(objects), camera=track,
        width=template.render.width, height=template.render.height,
        frame_start=template.render.frame_start, frame_end=template.render.frame_end, fps=template.render.fps,
        metadata=metadata,
    )
