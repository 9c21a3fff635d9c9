"""``DIR/scene/layout.json``: the scene's objects, readable, the record other features key on.

:func:`scene_layout` derives it from a :class:`scenes.scene_data.Scene` (so it always agrees with
``scene.npz``); :func:`read_layout` reads a shot's; :func:`format_layout` prints it for
``greybox inspect``. Region prompts name objects by ``name``, Cryptomatte mattes take ``name`` per
``instance_id``, imports are found by ``source.file`` and ``source.node_path``.

Schema (``schema = 1``; lengths in metres, world axes Blender's, Z up)::

    {
      "format": "greybox.layout", "schema": 1,
      "scene": {"name", "seed", "resolution": [w, h], "frame_start", "frame_end", "fps",
                "units": "metres", "up_axis": "Z", "bounds": {"min": [x, y, z], "max": [x, y, z]},
                "objects": N, "triangles": T},
      "camera": {"type", "sensor_fit", "sensor_width_mm", "sensor_height_mm", "clip_start", "clip_end",
                 "path": "orbit" | ... | "file", "track_frames": [first, last],     # poses: cameras.json, scene.npz
                 "file": "models/house.glb", "node_path": "/Cameras/ShotCam"},     # a file camera only
      "generator": {"kind": "room" | "floor_plan" | "none",
                    "room": {...resolved room: size, openings, walls},              # kind = "room"
                    "floor_plan": {"rooms", "walls", "openings", "doors": [{"name", "rooms", "centre",
                                   "normal", "width", "height"}]},                   # kind = "floor_plan"
                    "furniture": [...], "furniture_left_out": [...]},
      "files": {"models/house.glb": "<sha256>", ...},              # every model file read (imports only)
      "objects": [                                                  # in instance-id order
        {"name": "sofa",                                            # stable name (unique)
         "instance_id": 10,                                         # the instance.id pass value
         "kind": "sofa",                                            # what built it (furniture kind, primitive, part)
         "class": {"name": "sofa", "index": 23, "id": 24},          # ADE20K: 0-based palette index, 1-based class.id
         "source": {"kind": "generator" | "explicit" | "import",
                    "generator": "room", "template_key": "generator.room.furniture.0",
                    "file": "models/house.glb", "node_path": "/Building/Wall",   # only the keys that apply
                    "uvs": "file" | "packed"},                      # imported: the file's UVs or greybox's packer
         "transform": [[...], [...], [...], [...]],                 # 4x4 object-to-world, rows
         "location": [x, y, z],                                     # the transform's translation
         "bounds": {"min": [x, y, z], "max": [x, y, z]},            # axis-aligned, world, from the vertices
         "vertices": V, "triangles": T,
         "placement": {"rule": "against_wall", "wall": "west", "anchor": null, "tries": 1,
                       "pinned": {"wall": true, "position": false, "rotation": false, "size": false},
                       "size": [w, d, h], "size_drawn": true, "position": [x, y, z0], "yaw": 270.0,
                       "rng": {"key": "7/sofa", "seed": "<128-bit hex>"}}}   # generated furniture only
      ]
    }

Numbers are the exact float64 values of ``scene.npz`` (JSON's shortest round-trip form).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scenes.scene_data import LAYOUT_JSON, Scene
from scenes.semantic_palette import palette

LAYOUT_FORMAT = "greybox.layout"
LAYOUT_SCHEMA = 1


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _class_record(class_id: int) -> dict:
    entries = palette()
    if 1 <= class_id <= len(entries):
        entry = entries[class_id - 1]
        return {"name": entry.name, "index": entry.index, "id": class_id}
    return {"name": None, "index": None, "id": class_id}


def object_record(obj) -> dict:
    """One object's entry (see the module docstring)."""
    lo, hi = obj.bounds
    source = obj.source.to_json()
    placement = source.pop("placement", None)
    record = {
        "name": obj.name,
        "instance_id": int(obj.instance_id),
        "kind": obj.kind,
        "class": _class_record(int(obj.semantic_class_id)),
        "source": source,
        "transform": [_floats(row) for row in obj.transform],
        "location": _floats(obj.transform[:3, 3]),
        "bounds": {"min": _floats(lo), "max": _floats(hi)},
        "vertices": int(len(obj.vertices)),
        "triangles": int(len(obj.triangles)),
    }
    if placement is not None:
        record["placement"] = placement
    return record


def scene_layout(scene: Scene) -> dict:
    """The layout record of ``scene`` (plain JSON data; see the module docstring)."""
    objects = sorted(scene.objects, key=lambda o: o.instance_id)
    if objects:
        lows, highs = zip(*(o.bounds for o in objects))
        bounds = {"min": _floats(np.min(lows, axis=0)), "max": _floats(np.max(highs, axis=0))}
    else:
        bounds = {"min": None, "max": None}
    camera_meta = scene.metadata.get("camera", {})
    camera = {**scene.camera.lens_json(),
              "path": camera_meta.get("path"),
              "track_frames": [int(scene.camera.frames[0]), int(scene.camera.frames[-1])]}
    if camera_meta.get("path") == "file":
        camera.update({"file": camera_meta.get("file"), "node_path": camera_meta.get("node_path")})
    return {
        "format": LAYOUT_FORMAT,
        "schema": LAYOUT_SCHEMA,
        "scene": {
            "name": scene.name, "seed": int(scene.seed), "resolution": [int(scene.width), int(scene.height)],
            "frame_start": int(scene.frame_start), "frame_end": int(scene.frame_end), "fps": int(scene.fps),
            "units": "metres", "up_axis": "Z", "bounds": bounds,
            "objects": len(objects), "triangles": int(sum(len(o.triangles) for o in objects)),
        },
        "camera": camera,
        "generator": scene.metadata.get("generator", {}),
        "files": dict(sorted((scene.metadata.get("files") or {}).items())),
        "objects": [object_record(o) for o in objects],
    }


def layout_bytes(scene: Scene) -> bytes:
    """``layout.json``'s bytes: canonical JSON (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(scene_layout(scene), indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def read_layout(view_dir: str | Path) -> dict | None:
    """The layout a shot's folder holds, or None when it has none. Raises InputError when unreadable."""
    from greybox.errors import InputError

    path = Path(view_dir) / LAYOUT_JSON
    if not path.is_file():
        return None
    try:
        layout = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(f"{path}: cannot read the layout ({str(err)[:200]})") from None
    if not isinstance(layout, dict) or layout.get("format") != LAYOUT_FORMAT:
        raise InputError(f"{path}: not a greybox layout (format {layout.get('format')!r})")
    return layout


def _vec(values, digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


def format_layout(layout: dict, max_objects: int | None = None) -> str:
    """Readable: the scene line, the camera line, then one line per object (id, name, class, source,
    location, bounds)."""
    s, cam = layout["scene"], layout["camera"]
    lines = [
        f"layout {s['name']}: {s['objects']} objects, {s['triangles']} triangles, "
        f"bounds {_vec(s['bounds']['min'])} .. {_vec(s['bounds']['max'])} m (Z up)",
        f"  camera: {cam['type']} {cam.get('path') or ''}, sensor {cam['sensor_width_mm']} x {cam['sensor_height_mm']} mm "
        f"({cam['sensor_fit'].lower()} fit), clip {cam['clip_start']}-{cam['clip_end']} m",
    ]
    objects = layout["objects"]
    shown = objects if max_objects is None else objects[:max_objects]
    name_width = max((len(o["name"]) for o in shown), default=4)
    class_width = max((len(str(o["class"]["name"])) for o in shown), default=5)
    lines.append(f"  {'id':>5}  {'name':<{name_width}}  {'class':<{class_width}}  {'ade20k':>6}  "
                 f"{'location (m)':<26}  {'size (m)':<23}  source")
    for o in shown:
        lo, hi = np.asarray(o["bounds"]["min"]), np.asarray(o["bounds"]["max"])
        src = o["source"]
        where = src["kind"]
        if src.get("template_key"):
            where += f" {src['template_key']}"
        if src.get("file"):
            where += f" {src['file']}" + (f":{src['node_path']}" if src.get("node_path") else "")
        placement = o.get("placement")
        if placement:
            rule = placement.get("rule")
            extra = placement.get("wall")  # a wall's name, or a floor plan's edge index
            extra = placement.get("anchor") if extra is None else (f"edge {extra}" if isinstance(extra, int) else extra)
            where += f" ({rule}{' ' + extra if extra else ''})"
        lines.append(f"  {o['instance_id']:>5}  {o['name']:<{name_width}}  {str(o['class']['name']):<{class_width}}  "
                     f"{o['class']['index'] if o['class']['index'] is not None else '-':>6}  "
                     f"{_vec(o['location']):<26}  {_vec(hi - lo):<23}  {where}")
    if len(shown) < len(objects):
        lines.append(f"  ... and {len(objects) - len(shown)} more (--json prints all)")
    return "\n".join(lines)
