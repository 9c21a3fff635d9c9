"""Store units and keys of a shot's look (``keyframes`` and the ``baked`` stylizer), and where a look comes from.

Tasks per shot (added by :func:`render_farm.job_plan.build_graph`):

- ``look`` (after the scene and every passes chunk): the look (:mod:`stylize.look_atlases`), units
  - ``generation``: ``look/generation.json`` and the generated pixels of every frame that ran the
    generator, keyed by what the generation reads: the style without ``brand_colors`` and
    ``look``, the seed, the render settings, the models, the shot's frames and all their passes,
    the scene, and the id of the look it starts from;
  - ``atlas:<name>``, one per object of the scene and one for the environment: that object's
    finished atlas, keyed by the generation, the object's geometry key
    (:func:`stylize.look_atlases.geometry_key`) and its brand colour;
  - ``look``: ``look/look.json``, keyed by every atlas's key and the generation: its key is the
    **look id**.
  A cached generation with a missing atlas (a new brand colour) is replayed, not regenerated.
- ``stylize`` (after the look): one unit per frame, gathered from the atlases; a frame's key names
  its passes, the scene, the key of every atlas it shows (the generation's record lists them) and,
  when the frame ran the generator, the generation: a change reruns only the frames that show it.
- ``textured`` (after the look): ``scene/textured.glb`` (and ``scene/textured.blend`` with
  ``passes.save_blend``), keyed by the scene, the look id and the Blender release.
- ``assemble``: keyed by the frames' keys.

These keys depend on the scene's objects and on what the generation recorded, so the scheduler
computes them when the task's dependencies are done (:attr:`render_farm.job_graph.Task.keys_from`);
they depend only on the request and the upstream units' contents, never on what else the store
holds. ``style.look.from`` is resolved before anything is written (:func:`resolve_look_sources`):
its look id goes into the generation's key and the manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from greybox.errors import InputError
from render_farm.task_store import unit_key

LOOK_FN = "render_farm.stage_tasks:build_look"
GATHER_FN = "render_farm.stage_tasks:gather_frames"
TEXTURED_FN = "render_farm.stage_tasks:textured_scene"
LOOK_KEYS_FN = "render_farm.look_plan:look_keys"
GATHER_KEYS_FN = "render_farm.look_plan:gather_keys"
TEXTURED_KEYS_FN = "render_farm.look_plan:textured_keys"
ASSEMBLE_KEYS_FN = "render_farm.look_plan:assemble_keys"
LOOK_ID = re.compile(r"^[0-9a-f]{64}$")
ATLAS_UNIT = "atlas:"


def makes_look(style) -> bool:
    """Whether a shot's frames come from a look: consistency ``keyframes`` or the ``baked`` stylizer."""
    return style.stylizer == "baked" or style.consistency.mode == "keyframes"


def generation_inputs(resolved: dict) -> dict:
    """What the generation reads of the template: the style without the brand colours (applied after)
    and the look source (keyed by its id), the seed and the render settings."""
    style = {k: v for k, v in resolved["style"].items() if k not in ("brand_colors", "look")}
    render = {k: v for k, v in resolved["render"].items() if k not in ("video_codec", "video_quality")}
    return {"style": style, "seed": resolved["seed"], "render": render}


# -- where a look comes from -----------------------------------------------------------------------

def resolve_look_sources(shots, store_root: Path) -> dict[str, dict | None]:
    """{shot name: its look source}: ``None``, ``{"kind": "previous", "shot": name}`` (the shot before it
    in this command: its look task comes first), or ``{"kind": "id" | "folder", "id", "record", "path"}``
    for a look in the store (a folder's look is found by the id its ``look/look.json`` records).
    Raises InputError (exit 2, before anything is written) naming ``style.look.from``, the value and the fix."""
    from render_farm.task_store import TaskStore

    store = TaskStore(store_root)
    out: dict[str, dict | None] = {}
    previous = None
    for shot in shots:
        style = shot.template.style
        value = style.look.from_.strip()
        where = f"{shot.name}: " if len(shots) > 1 else ""
        if value and not makes_look(style):
            raise InputError(f"{where}style.look.from = {value!r}: a look is what consistency mode 'keyframes' makes and "
                             f"starts from; this shot renders in {style.consistency.mode!r}: set style.consistency.mode = "
                             "'keyframes' (or --stylizer baked)")
        if not value:
            out[shot.name] = None
        elif value == "previous":
            if previous is None and style.stylizer == "baked":
                raise InputError(f"{where}style.look.from = 'previous': the baked stylizer renders from a look, and this is "
                                 "the first shot of the command; give a job folder or a look id")
            out[shot.name] = {"kind": "previous", "shot": previous.name} if previous is not None else None
        else:
            out[shot.name] = _stored_look(value, store, where)
        previous = shot if makes_look(style) else None
    return out


def _stored_look(value: str, store, where: str) -> dict:
    from stylize.look_atlases import LOOK_JSON

    if LOOK_ID.match(value):
        kind, look_id, path = "id", value, None
    else:
        path = Path(value).expanduser().absolute()
        if not path.is_dir():
            raise InputError(f"{where}style.look.from = {value!r}: neither a look id (64 hex digits, `greybox inspect DIR` "
                             "shows it) nor a job folder; give one of them")
        look_json = path / LOOK_JSON
        if not look_json.is_file():
            shots = sorted(p.parent.parent.name for p in path.glob(f"*/{LOOK_JSON}"))
            hint = (f"; its shots with a look: {', '.join(shots)} (give one of those folders)" if shots
                    else "; render it with consistency mode 'keyframes' first")
            raise InputError(f"{where}style.look.from = {value!r}: {look_json} is missing{hint}")
        try:
            look_id = json.loads(look_json.read_text(encoding="utf-8"))["id"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{where}style.look.from = {value!r}: cannot read {look_json} ({err})") from None
        kind = "folder"
    record, reason = store.load_record(look_id)
    if record is None or LOOK_JSON not in record.get("outputs", {}):
        raise InputError(f"{where}style.look.from = {value!r}: look {look_id} is not in the store {store.root}"
                         + (f" ({reason})" if reason else "") + "; render its shot into this store (--store), or "
                         "give the store it was rendered into")
    return {"kind": kind, "id": look_id, "path": str(path) if path else None, "record": record.get("meta", {}).get("look")}


# -- keys computed when the dependencies are done --------------------------------------------------

_SURFACES: dict[str, list[dict]] = {}


def _surfaces(scene_key: str, store, view: str) -> tuple[list[dict], object]:
    from scenes.scene_data import SCENE_NPZ, Scene
    from stylize.look_atlases import scene_surfaces

    if scene_key not in _SURFACES:
        root = store.unit_dir(scene_key) if store is not None else Path(view)
        scene = Scene.load_npz(root / SCENE_NPZ)
        _SURFACES.clear()
        _SURFACES[scene_key] = (scene_surfaces(scene), scene)
    return _SURFACES[scene_key]


def object_brands(brand_entries: list[dict], surfaces: list[dict], source_brands: dict[str, str]) -> dict[str, str]:
    """{object name: the brand colour it takes}: the style's entries (``{"target", "color"}``, resolved
    on the scene's objects), then for the others what the source look gave them."""
    from scenes.brand_targets import target_ids

    objects = [(s["name"], s["instance_id"], s["class_id"]) for s in surfaces if s["instance_id"] > 0]
    name_of = {i: n for n, i, _ in objects}
    out: dict[str, str] = {}
    for entry in brand_entries:
        for i in target_ids(entry["target"], objects)[0]:
            out.setdefault(name_of[i], entry["color"].upper())
    for name, color in sorted(source_brands.items()):
        if color and name in name_of.values():
            out.setdefault(name, color)
    return out


def _source(spec: dict, upstream: dict) -> tuple[str | None, dict[str, str]]:
    """(the source look's id, its objects' brand colours)."""
    source = spec.get("source")
    if not source:
        return None, {}
    if source.get("task"):
        record = upstream[source["task"]]["look"]
        look = record.get("meta", {}).get("look") or {}
        return record["key"], {n: a.get("brand") for n, a in look.get("atlases", {}).items()}
    look = source.get("record") or {}
    return source["id"], {n: a.get("brand") for n, a in look.get("atlases", {}).items()}


def look_keys(spec: dict, upstream: dict, store=None, view: str = "") -> list[tuple[str, str]]:
    """The look task's units (module docstring): ``generation``, ``atlas:<name>`` per surface, ``look``."""
    scene_key = upstream[spec["scene_task"]]["scene"]["key"]
    surfaces, _ = _surfaces(scene_key, store, view)
    source_id, source_brands = _source(spec, upstream)
    frames = [int(f) for f in spec["frames"]]
    generation = unit_key("look", {"part": "generation", "inputs": spec["generation"], "frames": frames,
                                   "source": source_id}, [scene_key, *(spec["passes"][str(f)] for f in frames)])
    brands = object_brands(spec["brands"], surfaces, source_brands)
    units = [("generation", generation)]
    atlas_keys = {}
    for s in surfaces:
        atlas_keys[s["name"]] = unit_key("atlas", {"object": s["name"], "geometry": s["geometry"],
                                                   "brand": brands.get(s["name"])}, [generation])
        units.append((ATLAS_UNIT + s["name"], atlas_keys[s["name"]]))
    units.append(("look", unit_key("look", {"part": "look", "atlases": atlas_keys}, [generation])))
    return units


def gather_keys(spec: dict, upstream: dict, store=None, view: str = "") -> list[tuple[str, str]]:
    """A look's frames: per frame, keyed by its passes, the scene, the atlases it shows and (when it
    ran the generator) the generation."""
    from greybox.frame_files import frame_name

    records = upstream[spec["look_task"]]
    generation = records["generation"]
    meta = generation.get("meta", {})
    shows, generated = meta.get("shows", {}), set(meta.get("generated_frames", []))
    units = []
    for f in (int(x) for x in spec["frames"]):
        atlases = [records[ATLAS_UNIT + name]["key"] for name in shows.get(frame_name(f), [])]
        upstream_keys = [spec["scene"], spec["passes"][str(f)], *atlases] + ([generation["key"]] if f in generated else [])
        units.append((str(f), unit_key("stylize", {**spec["base"], "frame": f, "from_look": True}, upstream_keys)))
    return units


def textured_keys(spec: dict, upstream: dict, store=None, view: str = "") -> list[tuple[str, str]]:
    look = upstream[spec["look_task"]]["look"]["key"]
    return [("textured", unit_key("textured", spec["inputs"], [spec["scene"], look]))]


def assemble_keys(spec: dict, upstream: dict, store=None, view: str = "") -> list[tuple[str, str]]:
    stylized = {int(unit): record["key"] for task in spec["stylize_tasks"] for unit, record in upstream[task].items()}
    keys = [stylized[f] for f in spec["frames"]] + [spec["passes"][str(f)] for f in spec["frames"]]
    return [("assembly", unit_key("assemble", spec["inputs"], keys))]
