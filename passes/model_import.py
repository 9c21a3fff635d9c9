"""Models from files into the scene, through Blender's own importers: ``[[imports]]``, asset furniture
and file cameras.

:func:`import_models` is the entry point (the scene stage calls it for templates with models).
For each model, in template order:

1. Check inputs: the file and everything it refers to resolve inside the template's folder or an
   ``--asset-root`` (through symbolic links), exist and are readable
   (:func:`passes.model_files.model_inputs`), and the running Blender can read the format
   (a .blend saved by 5.0 does not open in 4.2; 4.2's USD importer needs text layers, see below).
   Scripts and Python drivers are switched off (``use_scripts_auto_execute = False``) before any
   file is opened, whatever the preferences said.
2. Import into an empty Blender scene with the template's fps (glTF and FBX animation times
   become frames at that rate), with every importer option spelled out: glTF (``import_scene.gltf``,
   from a private copy whose nodes carry their index, so node paths come from the file),
   FBX (``import_scene.fbx``, no image search), USD (``wm.usd_import``; on 4.5 and 5.0 without
   merging transforms into meshes), OBJ (``wm.obj_import`` with the template's units and axis),
   .blend (``bpy.data.libraries.load``: the collection asked, else the file's scene).
3. Node paths: the file's own hierarchy (glTF node names, USD prim paths, FBX and .blend parent
   chains), matched to the objects the importer made (:func:`passes.model_files.map_blender_objects`).
4. Units and axes: ``auto`` keeps what the importer made of the file's own settings (and applies
   ``metersPerUnit`` where 4.2's USD importer does not); a given ``units`` or ``up_axis`` replaces
   what the file says. Then the template's ``position``, ``rotation`` and ``scale``.
5. Evaluate at the template's ``frame_start`` as Blender renders (render visibility, render
   modifier levels): modifiers applied, instances and linked duplicates realised, each mesh one
   object; select by the ``objects`` globs; classes: the ``greybox_class`` custom property, then the
   ``classes`` rules in order, then ``class``.
6. The file camera, when asked: its pose, focal length and shift on every frame of the template's
   range (``frame_start - 1`` .. ``frame_end + 1``), its sensor and sensor fit.

A problem is an :class:`greybox.errors.InputError` (exit 2) naming the template key, the file and
what the importer said; nothing is written by this module.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from greybox.errors import InputError
from passes.model_files import (
    FileNode, ModelFormatError, ModelRoots, fbx_model_tree, fbx_properties, gltf_json, map_blender_objects, model_inputs,
    node_paths, path_segment, read_fbx, split_renamed, usd_layer_kind, usda_prim_tree, usda_stage_metadata, usdc_tokens,
)
from procedural.model_meshes import MeasuredAsset, ModelMeshes, asset_rule_kind, measure_asset, scene_objects
from scenes.scene_data import CameraTrack, SceneObject
from scenes.semantic_palette import UnknownClassError, resolve_class
from scenes.template_schema import MAX_OBJECTS, UNIT_METRES, model_suffix

GEOMETRY_TYPES = ("MESH", "CURVE", "SURFACE", "FONT", "META")
CLASS_PROPERTY = "greybox_class"
_NODE_PROPERTY = "greybox_import_node"  # set on the private glTF copy's nodes
_MAX_LISTED = 12


@dataclass
class ImportedModels:
    """What :func:`import_models` read: the imported objects (instance id 0, in the order of
    (import name, node path)), the measured assets by furniture key path
    (``generator.room.furniture.N``, ``generator.floor_plan.rooms.R.furniture.N``), the file camera's track (or
    None) and the sha256 of every file read ({label: sha256}, labels as :meth:`ModelRoots.label`)."""

    objects: list[SceneObject] = field(default_factory=list)
    assets: dict[str, MeasuredAsset] = field(default_factory=dict)
    camera: CameraTrack | None = None
    files: dict[str, str] = field(default_factory=dict)


def needs_import(template) -> bool:
    """Whether ``template`` has models to read (``[[imports]]`` or asset furniture)."""
    from procedural.scene_builder import asset_pieces

    return bool(template.imports) or bool(asset_pieces(template))


def _error(key: str, value, message: str) -> InputError:
    shown = repr(value) if not isinstance(value, str) or len(value) <= 200 else repr(value[:197] + "...")
    line = f"{key} = {shown}: {message}"  # the whole line, as procedural.floor_plan.plan_problem's
    return InputError(line, [{"file": "", "key": key, "value": value, "message": line}])


def _listing(items, limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "") if items else "none"


# --------------------------------------------------------------------------------------------
# Blender set-up and the importers' messages
# --------------------------------------------------------------------------------------------


def disable_scripts(bpy) -> None:
    """No script or Python driver from a file runs in this process: auto-run off, whatever the
    preferences (or a caller) set. Called after every reset, before any file is opened."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def _reset(bpy, fps: int) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    disable_scripts(bpy)
    scene = bpy.context.scene
    scene.render.fps = int(fps)
    scene.render.fps_base = 1.0


@contextlib.contextmanager
def _captured_output():
    """File descriptors 1 and 2 into a temporary file for the duration; ``holder[0]`` is the text after."""
    import sys

    holder = [""]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield holder
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (AttributeError, ValueError):
                    pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            holder[0] = sink.read()[-200_000:].decode("utf-8", errors="replace")


def _importer_said(output: str, exception: Exception | None = None) -> str:
    """The lines of an importer's output (or exception) worth showing: errors first, cut short."""
    text = str(exception) if exception is not None else ""
    lines = [ln.strip() for ln in (text + "\n" + output).splitlines() if ln.strip()]
    pick = [ln for ln in lines if re.search(r"error|cannot|can't|could not|couldn't|unable|failed|invalid|not a|unsupported"
                                            r"|missing|corrupt|unexpected", ln, re.I)
            and not ln.startswith(("File \"", "Traceback"))]
    chosen = (pick or lines)[-3:]
    said = " | ".join(dict.fromkeys(chosen))
    return said[:600] if said else "no message"


def _run_importer(op, key: str, value, kwargs: dict) -> None:
    known = set(op.get_rna_type().properties.keys())
    options = {k: v for k, v in kwargs.items() if k in known}
    error = None
    result = None
    with _captured_output() as out:
        try:
            result = op(**options)
        except (RuntimeError, ImportError, ValueError, TypeError, OSError, KeyError, IndexError, AttributeError,
                AssertionError, UnicodeDecodeError, struct.error) as err:
            error = err
    if error is not None or not result or "FINISHED" not in result:
        raise _error(key, value, f"Blender's importer could not read it: {_importer_said(out[0], error)}")


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------

_YUP_TO_ZUP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _scale(factor) -> np.ndarray:
    m = np.eye(4)
    m[0, 0], m[1, 1], m[2, 2] = (factor, factor, factor) if np.isscalar(factor) else factor
    return m


def axis_correction(assumed_up: str, declared_up: str) -> np.ndarray:
    """The rotation that stands up a file the importer turned as if it were ``assumed_up`` when the
    template says it is ``declared_up`` (importers turn Y up into Z up by +90 degrees about X)."""
    if assumed_up == declared_up:
        return np.eye(4)
    return np.linalg.inv(_YUP_TO_ZUP) if declared_up == "Z" else _YUP_TO_ZUP.copy()


def placement_matrix(spec) -> np.ndarray:
    """The template's transform on top of the file's: translation @ XYZ rotation @ scale."""
    from procedural.primitive_meshes import euler_xyz

    m = np.eye(4)
    m[:3, :3] = euler_xyz(spec.rotation) @ np.diag(spec.scale_xyz)
    m[:3, 3] = spec.position
    return m


# --------------------------------------------------------------------------------------------
# One file in: the importer per format, node paths, the correction
# --------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """A file imported into Blender's scene: node path per object name, the units and axis
    correction to apply on top of the imported world matrices."""

    paths: dict[str, str]
    correction: np.ndarray


def _paths_from_parents(bpy, names: dict[str, str] | None = None, strip: bool = False) -> dict[str, str]:
    """Node paths of every object from Blender's parent chains; ``names`` gives known paths
    (mapped from the file), ``strip`` drops Blender's ``.001`` suffixes (USD names hold no dots)."""
    known = dict(names or {})
    out: dict[str, str] = {}

    def path_of(obj) -> str:
        if obj.name in out:
            return out[obj.name]
        if obj.name in known:
            out[obj.name] = known[obj.name]
            return out[obj.name]
        name = split_renamed(obj.name)[0] if strip else obj.name
        prefix = path_of(obj.parent) if obj.parent is not None else ""
        out[obj.name] = f"{prefix}/{path_segment(name)}"
        return out[obj.name]

    for obj in bpy.data.objects:
        path_of(obj)
    return out


def _mapped_paths(bpy, roots: list[FileNode], merged: bool = False) -> dict[str, str]:
    objects = [(o.name, o.parent.name if o.parent else None) for o in bpy.data.objects]
    mapped = map_blender_objects(objects, roots, merged_xforms=merged)
    paths = node_paths(roots)
    return _paths_from_parents(bpy, {name: paths[id(node)] for name, node in mapped.items()})


def _load_gltf(bpy, path: Path, spec, key: str, scratch: Path) -> _Loaded:
    try:
        doc = gltf_json(path)
    except ModelFormatError as err:  # the importer's own words first
        _run_importer(bpy.ops.import_scene.gltf, key, spec.file, dict(filepath=str(path), import_pack_images=False))
        raise _error(key, spec.file, f"not a glTF 2.0 file greybox can read: {err}") from None
    nodes = doc.get("nodes") if isinstance(doc.get("nodes"), list) else []
    # a private copy whose nodes carry their index (the importer copies node extras onto objects)
    for i, node in enumerate(nodes):
        if isinstance(node, dict):
            extras = node.get("extras") if isinstance(node.get("extras"), dict) else {}
            node["extras"] = {**extras, _NODE_PROPERTY: i}
    for entries in (doc.get("buffers"), doc.get("images")):
        for entry in entries if isinstance(entries, list) else []:
            uri = entry.get("uri") if isinstance(entry, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                from passes.model_files import _gltf_uri_path

                entry["uri"] = quote(str(_gltf_uri_path(path, uri)))  # absolute: the copy lives elsewhere
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    data = path.read_bytes()
    if data[:4] == b"glTF":
        (json_len,) = struct.unpack_from("<I", data, 12)
        rest = data[20 + json_len:]
        text += b" " * (-len(text) % 4)
        blob = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + len(rest)) + struct.pack("<II", len(text), 0x4E4F534A) + text + rest
        copy = scratch / "model.glb"
    else:
        blob = text
        copy = scratch / "model.gltf"
    copy.write_bytes(blob)
    _run_importer(bpy.ops.import_scene.gltf, key, spec.file, dict(
        filepath=str(copy), import_pack_images=False, merge_vertices=False, import_shading="NORMALS",
        import_scene_as_collection=False, import_select_created_objects=False, import_scene_extras=True,
        import_unused_materials=False, import_webp_texture=False, loglevel=40,
    ))
    # node paths from the file's node tree (the scene Blender imported)
    scenes = doc.get("scenes") if isinstance(doc.get("scenes"), list) else []
    scene_index = doc.get("scene", 0) if isinstance(doc.get("scene", 0), int) else 0
    root_ids = scenes[scene_index].get("nodes", []) if 0 <= scene_index < len(scenes) and isinstance(scenes[scene_index], dict) else []
    file_nodes: dict[int, FileNode] = {}

    def build(i: int, depth: int = 0) -> FileNode:
        node = nodes[i] if 0 <= i < len(nodes) and isinstance(nodes[i], dict) else {}
        name = node.get("name") if isinstance(node.get("name"), str) and node.get("name") else f"node_{i}"
        file_nodes[i] = FileNode(name, "node", [build(c, depth + 1) for c in node.get("children", []) if isinstance(c, int)
                                                 and c not in file_nodes and depth < 1000])
        return file_nodes[i]

    roots = [build(i) for i in root_ids if isinstance(i, int)]
    by_id = node_paths(roots)
    known = {}
    for obj in bpy.data.objects:
        index = obj.get(_NODE_PROPERTY)
        if isinstance(index, int) and index in file_nodes:
            known[obj.name] = by_id[id(file_nodes[index])]
        if _NODE_PROPERTY in obj.keys():
            del obj[_NODE_PROPERTY]
    units = 1.0 if spec.units == "auto" else UNIT_METRES[spec.units]
    correction = _scale(units) @ axis_correction("Y", "Y" if spec.up_axis == "auto" else spec.up_axis)
    return _Loaded(_paths_from_parents(bpy, known), correction)


def _load_fbx(bpy, path: Path, spec, key: str, scratch: Path) -> _Loaded:
    try:
        fbx = read_fbx(path)
    except ModelFormatError as err:  # the importer's own words first
        _run_importer(bpy.ops.import_scene.fbx, key, spec.file, dict(filepath=str(path), use_image_search=False))
        raise _error(key, spec.file, f"not an FBX file greybox can read: {err}") from None
    manual = spec.up_axis != "auto"
    axes = {"Y": ("-Z", "Y"), "Z": ("Y", "Z")}.get(spec.up_axis, ("-Z", "Y"))
    _run_importer(bpy.ops.import_scene.fbx, key, spec.file, dict(
        filepath=str(path), use_manual_orientation=manual, axis_forward=axes[0], axis_up=axes[1], global_scale=1.0,
        bake_space_transform=False, use_custom_normals=False, use_image_search=False, use_anim=True, anim_offset=1.0,
        use_subsurf=False, use_custom_props=True, use_custom_props_enum_as_string=True, ignore_leaf_bones=False,
        automatic_bone_orientation=False, use_prepost_rot=True,
    ))
    correction = np.eye(4)
    if spec.units != "auto":
        # the importer scaled by the file's UnitScaleFactor (centimetres per unit); the template says otherwise
        factor = float(fbx_properties(fbx).get("UnitScaleFactor") or 1.0) / 100.0
        correction = _scale(UNIT_METRES[spec.units] / factor)
    return _Loaded(_mapped_paths(bpy, fbx_model_tree(fbx)), correction)


def _obj_tree(path: Path) -> list[FileNode]:
    roots = []
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.startswith(b"o ") or raw.startswith(b"o\t"):
                roots.append(FileNode(raw[2:].strip().decode("utf-8", errors="replace"), "object"))
    return roots


def _load_obj(bpy, path: Path, spec, key: str, scratch: Path) -> _Loaded:
    axes = {"Y": ("NEGATIVE_Z", "Y"), "Z": ("Y", "Z")}[spec.up_axis]
    before = len(bpy.data.objects)
    _run_importer(bpy.ops.wm.obj_import, key, spec.file, dict(
        filepath=str(path), global_scale=UNIT_METRES[spec.units], clamp_size=0.0, forward_axis=axes[0], up_axis=axes[1],
        use_split_objects=True, use_split_groups=False, import_vertex_groups=False, validate_meshes=True,
    ))
    if len(bpy.data.objects) == before:
        raise _error(key, spec.file, "Blender's OBJ importer found no objects in it (an empty or damaged OBJ file)")
    return _Loaded(_mapped_paths(bpy, _obj_tree(path)), np.eye(4))


def _usd_text(path: Path) -> str | None:
    """The root layer's text, for a USD text layer or a .usdz whose root layer is text; else None."""
    import zipfile

    data = path.read_bytes()
    kind = usd_layer_kind(data)
    if kind == "text":
        return data.decode("utf-8", errors="replace")
    if kind == "package":
        with zipfile.ZipFile(path) as package:
            names = [i.filename for i in package.infolist()]
            first = next((n for n in names if n.lower().endswith((".usda", ".usdc", ".usd"))), None)
            if first is not None:
                inner = package.read(first)
                return inner.decode("utf-8", errors="replace") if usd_layer_kind(inner) == "text" else None
    return None


def _load_usd(bpy, path: Path, spec, key: str, scratch: Path) -> _Loaded:
    from passes.blender_compat import running_blender_version, usd_import_applies_meters_per_unit

    try:
        text = _usd_text(path)
    except (ModelFormatError, OSError) as err:
        raise _error(key, spec.file, f"not a USD file greybox can read: {err}") from None
    except Exception as err:  # noqa: BLE001 - a damaged package: say so
        raise _error(key, spec.file, f"a damaged USD package ({type(err).__name__}: {err})") from None
    applies_units = usd_import_applies_meters_per_unit(bpy)
    merged = "merge_parent_xform" not in bpy.ops.wm.usd_import.get_rna_type().properties.keys()
    needs_text = (not applies_units and spec.units == "auto") or merged or spec.up_axis != "auto"
    if text is None and needs_text:
        why = ("Blender " + running_blender_version() + "'s USD importer ignores metersPerUnit and merges each mesh into "
               "its parent transform (losing the transform's name), so greybox reads the stage's units and prim tree "
               "from its text" if (merged or not applies_units) else
               "greybox reads the stage's declared upAxis (to replace it with up_axis) from text layers only")
        raise _error(key, spec.file, f"a binary USD layer: {why}; save the stage as .usda (usdcat file.usdc -o file.usda), "
                                     "or render with Blender 4.5 or 5.0" + ("" if merged else " and up_axis = \"auto\""))
    meta = usda_stage_metadata(text) if text is not None else {"metersPerUnit": 1.0, "upAxis": "Z"}
    _run_importer(bpy.ops.wm.usd_import, key, spec.file, dict(
        filepath=str(path), scale=1.0, set_frame_range=False, import_cameras=True, import_curves=True, import_lights=False,
        import_materials=True, import_meshes=True, import_volumes=False, import_shapes=True, import_skeletons=True,
        import_blendshapes=True, import_points=True, import_subdiv=False, import_subdivision=False,
        support_scene_instancing=True, import_visible_only=True, create_collection=False, read_mesh_uvs=True,
        read_mesh_colors=False, read_mesh_attributes=False, prim_path_mask="", import_guide=False, import_proxy=False,
        import_render=True, import_all_materials=False, import_usd_preview=False, import_textures_mode="IMPORT_NONE",
        attr_import_mode="ALL", property_import_mode="ALL", validate_meshes=False, create_world_material=False,
        import_defined_only=True, merge_parent_xform=False, apply_unit_conversion_scale=spec.units == "auto",
    ))
    if spec.units == "auto":
        units = 1.0 if applies_units else float(meta["metersPerUnit"])
    else:
        units = UNIT_METRES[spec.units]
    correction = _scale(units) @ axis_correction(meta["upAxis"], meta["upAxis"] if spec.up_axis == "auto" else spec.up_axis)
    if text is not None:
        paths = _mapped_paths(bpy, usda_prim_tree(text), merged=merged)
    else:
        paths = _paths_from_parents(bpy, strip=True)
        try:
            tokens = set(usdc_tokens(path.read_bytes()))
        except (ModelFormatError, struct.error, IndexError):
            tokens = set()
        if {"Blender", "generated", "root"} <= tokens:  # the root prim Blender's exporter wrote (and its importer skips)
            paths = {name: "/root" + p for name, p in paths.items()}
    return _Loaded(paths, correction)


def _load_blend(bpy, path: Path, spec, key: str, scratch: Path) -> _Loaded:
    from passes.blender_compat import check_blend_readable

    try:
        check_blend_readable(path)
    except InputError as err:
        raise _error(key, spec.file, str(err).split(": ", 1)[-1]) from None
    collection = getattr(spec, "collection", None)
    scene = bpy.context.scene
    error = None
    with _captured_output() as out:
        try:
            with bpy.data.libraries.load(str(path), link=False, relative=False) as (source, target):
                available = {"collections": list(source.collections), "scenes": list(source.scenes)}
                if collection is not None:
                    target.collections = [collection] if collection in source.collections else []
                elif len(source.scenes) == 1:
                    target.scenes = list(source.scenes)
        except (OSError, RuntimeError, ValueError) as err:
            error = err
    if error is not None:
        raise _error(key, spec.file, f"Blender could not read it: {_importer_said(out[0], error)}")
    units = 1.0
    if collection is not None:
        if not target.collections or target.collections[0] is None:
            raise _error(f"{key.rsplit('.', 1)[0]}.collection", collection,
                         f"{spec.file} has no collection of that name; it has {_listing(available['collections'])}")
        scene.collection.children.link(target.collections[0])
    else:
        if len(available["scenes"]) != 1:
            raise _error(key, spec.file, f"the .blend has {len(available['scenes'])} scenes ({_listing(available['scenes'])}); "
                                         "say which collection to append with collection = \"...\"")
        source_scene = target.scenes[0]
        for child in source_scene.collection.children:
            scene.collection.children.link(child)
        for obj in source_scene.collection.objects:
            scene.collection.objects.link(obj)
        _copy_exclusion(source_scene.view_layers[0].layer_collection, scene.view_layers[0].layer_collection)
        unit_settings = source_scene.unit_settings
        if unit_settings.system != "NONE":
            units = float(unit_settings.scale_length)
        bpy.data.scenes.remove(source_scene)
    if spec.units != "auto":
        units = UNIT_METRES[spec.units]
    correction = _scale(units) @ axis_correction("Z", "Z" if spec.up_axis == "auto" else spec.up_axis)
    return _Loaded(_paths_from_parents(bpy), correction)


def _copy_exclusion(source, target) -> None:
    """The source scene's excluded and hidden collections, excluded and hidden in ours."""
    by_name = {child.name: child for child in target.children}
    for child in source.children:
        mine = by_name.get(child.name)
        if mine is None:
            continue
        mine.exclude = child.exclude
        mine.hide_viewport = child.hide_viewport
        _copy_exclusion(child, mine)


_LOADERS = {".gltf": _load_gltf, ".glb": _load_gltf, ".fbx": _load_fbx, ".obj": _load_obj, ".usd": _load_usd,
            ".usda": _load_usd, ".usdc": _load_usd, ".usdz": _load_usd, ".blend": _load_blend}


def load_file(bpy, path: Path, spec, key: str, fps: int) -> _Loaded:
    """Import one checked model file into an empty Blender scene (see the module docstring)."""
    from passes.blender_compat import keep_exit_clean

    _reset(bpy, fps)
    suffix = model_suffix(spec.file)
    if suffix in (".gltf", ".glb"):
        keep_exit_clean()
    scratch = Path(tempfile.mkdtemp(prefix="greybox-import-"))
    cwd = os.getcwd()
    try:
        os.chdir(scratch)  # no importer finds a file by the working folder
        loaded = _LOADERS[suffix](bpy, path, spec, key, scratch)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    disable_scripts(bpy)
    if not len(bpy.data.objects):
        raise _error(key, spec.file, "Blender's importer found no objects in it")
    return loaded


# --------------------------------------------------------------------------------------------
# Evaluation: what Blender renders at frame_start, as joined arrays
# --------------------------------------------------------------------------------------------


def _render_visibility(bpy) -> None:
    """Objects, collections and modifiers as Blender renders them (the depsgraph evaluates the
    viewport's). Only what differs is set: every assignment tags the depsgraph, and a file of 25,000
    objects took 35 s to set them all."""
    for obj in bpy.data.objects:
        if obj.hide_viewport != obj.hide_render:
            obj.hide_viewport = obj.hide_render
        for mod in obj.modifiers:
            if mod.show_viewport != mod.show_render:
                mod.show_viewport = mod.show_render
            if hasattr(mod, "render_levels") and hasattr(mod, "levels") and mod.levels != mod.render_levels:
                mod.levels = mod.render_levels
    for coll in bpy.data.collections:
        if coll.hide_viewport != coll.hide_render:
            coll.hide_viewport = coll.hide_render


def _instance_suffix(persistent_id) -> str:
    ids = [int(i) for i in persistent_id if 0 <= int(i) < 0x7FFFFFFF]
    return "[" + ",".join(str(i) for i in ids) + "]" if ids else ""


@dataclass
class _Instance:
    path: str
    obj: object  # the original object whose class and materials count
    holder: object  # the instancer (or the object itself)
    matrix: np.ndarray
    mesh_key: str


def _geometry_instances(bpy, depsgraph, paths: dict[str, str]) -> list[_Instance]:
    """Every piece of geometry Blender evaluates, with its node path, in the depsgraph's order
    (the evaluated objects of instances live only while iterating: :func:`_instance_meshes` reads them)."""
    found = []
    for inst in depsgraph.object_instances:
        ev = inst.object
        if ev.type not in GEOMETRY_TYPES:
            continue
        original = ev.original
        matrix = np.array(inst.matrix_world, dtype=np.float64)
        if inst.is_instance:
            holder = inst.parent.original if inst.parent is not None else original
            base = paths.get(holder.name, f"/{path_segment(holder.name)}")
            path = f"{base}/{path_segment(split_renamed(original.name)[0])}{_instance_suffix(inst.persistent_id)}"
        else:
            holder = original
            path = paths.get(original.name, f"/{path_segment(original.name)}")
        data = getattr(ev, "data", None)
        found.append(_Instance(path, original, holder, matrix, f"{ev.name}|{data.name if data is not None else ''}"))
    return found


def _instance_meshes(depsgraph, wanted: set[int]) -> dict[int, dict | None]:
    """{index in :func:`_geometry_instances`' order: mesh arrays} for the ``wanted`` pieces, read while
    iterating (one read per evaluated mesh: instances of one object share it)."""
    cache: dict[str, dict | None] = {}
    out: dict[int, dict | None] = {}
    index = -1
    for inst in depsgraph.object_instances:
        ev = inst.object
        if ev.type not in GEOMETRY_TYPES:
            continue
        index += 1
        if index not in wanted:
            continue
        data = getattr(ev, "data", None)
        key = f"{ev.name}|{data.name if data is not None else ''}|{inst.is_instance}"
        if key not in cache:
            cache[key] = _mesh_arrays(ev)
        out[index] = cache[key]
    return out


def _mesh_arrays(ev) -> dict | None:
    """Triangles of an evaluated object: local vertices, corner indices, polygons, UVs; None when it has none."""
    mesh = ev.to_mesh()
    try:
        if mesh is None or len(mesh.polygons) == 0:
            return None
        mesh.calc_loop_triangles()
        n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
        if n_t == 0:
            return None
        co = np.empty(n_v * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        tri = np.empty(n_t * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", tri)
        loops = np.empty(n_t * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        poly = np.empty(n_t, dtype=np.int32)
        mesh.loop_triangles.foreach_get("polygon_index", poly)
        layer = next((uv for uv in mesh.uv_layers if uv.active_render), None) or mesh.uv_layers.active
        if layer is not None:
            loop_uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            layer.data.foreach_get("uv", loop_uv)
            uvs = loop_uv.reshape(-1, 2)[loops].reshape(n_t, 3, 2)
        else:
            uvs = np.full((n_t, 3, 2), np.nan, dtype=np.float32)
        materials = sorted({m.name for m in mesh.materials if m is not None})
        return {"co": co.reshape(-1, 3).astype(np.float64), "tri": tri.reshape(-1, 3), "poly": poly.astype(np.int64),
                "uvs": uvs, "materials": materials}
    finally:
        ev.to_mesh_clear()


def _collections_of(bpy) -> dict[str, set[str]]:
    """{object name: names of the collections holding it}, in one pass (``Object.users_collection``
    walks every collection for each object: 300 s for a file of 25,000 objects)."""
    out: dict[str, set[str]] = {}
    for coll in bpy.data.collections:
        for obj in coll.objects:
            out.setdefault(obj.name, set()).add(coll.name)
    return out


def _glob_match(patterns, text: str) -> bool:
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


def _class_of(bpy, inst: _Instance, arrays: dict, spec, key: str, collections_of: dict | None = None) -> int | None:
    """The class id of one object: the ``greybox_class`` of the object or its nearest parent (then of
    its instancer and the instancer's parents), the rules, the default."""
    chain = []
    for start in (inst.obj, inst.holder):
        node = start
        while node is not None and len(chain) < 10_000:
            chain.append(node)
            node = node.parent
    for holder in chain:
        value = holder.get(CLASS_PROPERTY) if hasattr(holder, "get") else None
        if value is not None:
            if hasattr(value, "to_dict") or hasattr(value, "to_list"):
                value = str(value)
            try:
                return resolve_class(value if isinstance(value, (str, int)) else str(value)).class_id
            except (UnknownClassError, ValueError, TypeError) as err:
                raise _error(key, spec.file, f"the object {inst.path} has {CLASS_PROPERTY} = {value!r}: {err}") from None
    collections = (collections_of.get(inst.obj.name, set()) | collections_of.get(inst.holder.name, set())) if collections_of else set()
    for rule in getattr(spec, "classes", ()):
        if rule.kind == "object" and fnmatch.fnmatchcase(inst.path, rule.pattern):
            return resolve_class(rule.semantic_class).class_id
        if rule.kind == "material" and any(fnmatch.fnmatchcase(m, rule.pattern) or fnmatch.fnmatchcase(split_renamed(m)[0], rule.pattern)
                                           for m in arrays["materials"]):
            return resolve_class(rule.semantic_class).class_id
        if rule.kind == "collection" and any(fnmatch.fnmatchcase(c, rule.pattern) for c in collections):
            return resolve_class(rule.semantic_class).class_id
    if getattr(spec, "semantic_class", None) is not None:
        return resolve_class(spec.semantic_class).class_id
    return None


def extract_meshes(bpy, loaded: _Loaded, spec, key: str, name_prefix: str, frame: int, *, placement: np.ndarray,
                   globs=None, classify: bool = True, budget: int = MAX_OBJECTS) -> ModelMeshes:
    """Every piece of geometry Blender evaluates at ``frame`` (selected by ``globs``), in world space
    (``placement`` @ correction @ Blender's matrix), ordered by node path."""
    bscene = bpy.context.scene
    _render_visibility(bpy)
    bscene.frame_set(int(frame))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    instances = list(enumerate(_geometry_instances(bpy, depsgraph, loaded.paths)))
    if globs is not None:
        for pattern in globs:
            if not any(fnmatch.fnmatchcase(i.path, pattern) for _, i in instances):
                raise _error(f"{key.rsplit('.', 1)[0]}.objects", list(globs),
                             f"the glob {pattern!r} matches no object of {spec.file}; its objects are "
                             f"{_listing(sorted(i.path for _, i in instances))}")
        instances = [(n, i) for n, i in instances if _glob_match(globs, i.path)]
    seen: dict[str, int] = {}
    for _, inst in instances:  # two pieces with one path (an instancer's repeats): number them
        seen[inst.path] = seen.get(inst.path, 0) + 1
        if seen[inst.path] > 1:
            inst.path = f"{inst.path}#{seen[inst.path]}"
    if len(instances) > budget:
        raise _error(key, spec.file, f"it holds {len(instances)} mesh objects (as Blender evaluates it: instances and "
                                     f"linked duplicates each count); the instance-id pass holds at most {budget} objects "
                                     "in a scene: select fewer with objects = [\"/Building/*\", ...], or join meshes in the file")
    top = placement @ loaded.correction
    meshes = _instance_meshes(depsgraph, {n for n, _ in instances})
    collections_of = _collections_of(bpy) if any(r.kind == "collection" for r in getattr(spec, "classes", ())) else None
    records = []
    unclassified = []
    for n, inst in instances:
        arrays = meshes.get(n)
        if arrays is None:
            continue
        class_id = _class_of(bpy, inst, arrays, spec, key, collections_of) if classify else 0
        if class_id is None:
            unclassified.append(inst.path)
            continue
        records.append((inst.path, class_id, top @ inst.matrix, arrays))
    if unclassified:
        raise _error(key.rsplit(".", 1)[0], spec.name if hasattr(spec, "name") else spec.file,
                     f"{len(unclassified)} object(s) of {spec.file} get no class: {_listing(sorted(unclassified), 5)}; give the "
                     "import a default class = \"...\", a classes rule, or the objects a greybox_class custom property")
    records.sort(key=lambda r: r[0])
    return _joined(records, name_prefix)


def _joined(records, name_prefix: str) -> ModelMeshes:
    vertices, triangles, polygons, uvs, transforms = [], [], [], [], []
    v_counts, t_counts = [], []
    for path, _, matrix, arrays in records:
        world = arrays["co"] @ matrix[:3, :3].T + matrix[:3, 3]
        tri = arrays["tri"]
        uv = arrays["uvs"]
        if np.linalg.det(matrix[:3, :3]) < 0:  # a mirroring transform: keep the winding outward
            tri = tri[:, [0, 2, 1]]
            uv = uv[:, [0, 2, 1]]
        vertices.append(world)
        triangles.append(tri)
        polygons.append(arrays["poly"])
        uvs.append(uv)
        transforms.append(matrix)
        v_counts.append(len(world))
        t_counts.append(len(tri))
    cat = (lambda parts, shape, dtype: np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros((0,) + shape, dtype))
    return ModelMeshes(
        names=[f"{name_prefix}{r[0]}" for r in records], node_paths=[r[0] for r in records], class_ids=[r[1] for r in records],
        vertex_counts=np.array(v_counts, dtype=np.int64), triangle_counts=np.array(t_counts, dtype=np.int64),
        vertices=cat(vertices, (3,), np.float64), triangles=cat(triangles, (3,), np.int32), polygons=cat(polygons, (), np.int64),
        uvs=cat(uvs, (3, 2), np.float32), transforms=np.array(transforms).reshape(-1, 4, 4),
    )


# --------------------------------------------------------------------------------------------
# The file camera
# --------------------------------------------------------------------------------------------


def _camera_objects(bpy, paths: dict[str, str]) -> list[tuple[str, object]]:
    return sorted(((paths.get(o.name, "/" + o.name), o) for o in bpy.data.objects if o.type == "CAMERA"), key=lambda c: c[0])


def extract_camera(bpy, loaded: _Loaded, spec, key: str, template, placement: np.ndarray) -> CameraTrack:
    """The file camera ``spec.camera`` (a node path or glob: the camera's, or a node holding exactly
    one camera) on every frame of the template's range (and one frame either side)."""
    cameras = _camera_objects(bpy, loaded.paths)
    pattern = spec.camera
    direct = [(p, o) for p, o in cameras if fnmatch.fnmatchcase(p, pattern)]
    if not direct:
        direct = [(p, o) for p, o in cameras if any(fnmatch.fnmatchcase(p[:i], pattern) for i in range(1, len(p)) if p[i] == "/")]
    ckey = f"{key.rsplit('.', 1)[0]}.camera"
    if len(direct) != 1:
        found = _listing(p for p, _ in cameras)
        what = "no camera" if not direct else f"{len(direct)} cameras ({_listing(p for p, _ in direct)})"
        raise _error(ckey, pattern, f"matches {what} in {spec.file}; its cameras are {found}")
    path, cam = direct[0]
    top = placement @ loaded.correction
    scale = abs(np.linalg.det(top[:3, :3])) ** (1.0 / 3.0)
    render = template.render
    frames = np.arange(render.frame_start - 1, render.frame_end + 2, dtype=np.int64)
    positions, rotations, focal, shifts, ortho = [], [], [], [], []
    lens_kind = None
    sensors = set()
    bscene = bpy.context.scene
    for frame in frames:
        bscene.frame_set(int(frame))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        ev = cam.evaluated_get(depsgraph)
        data = ev.data
        m = top @ np.array(ev.matrix_world, dtype=np.float64)
        r = m[:3, :3]
        norms = np.linalg.norm(r, axis=0)
        if np.any(norms < 1e-12) or np.linalg.det(r) <= 0:
            raise _error(ckey, pattern, f"the camera {path} is mirrored or collapsed at frame {int(frame)} (its transform "
                                        "has a negative or zero scale); greybox needs a proper rotation")
        u, _, vt = np.linalg.svd(r / norms)
        positions.append(m[:3, 3])
        rotations.append(u @ vt)
        focal.append(float(data.lens))
        shifts.append((float(data.shift_x), float(data.shift_y)))
        ortho.append(float(data.ortho_scale) * scale)
        lens_kind = data.type
        sensors.add((round(float(data.sensor_width), 9), round(float(data.sensor_height), 9), data.sensor_fit))
    if lens_kind == "PANO":
        raise _error(ckey, pattern, f"the camera {path} is panoramic; greybox renders perspective cameras (and records "
                                    "orthographic ones)")
    if len(sensors) > 1:
        raise _error(ckey, pattern, f"the camera {path}'s sensor size or fit is animated; greybox takes one sensor per shot")
    sensor_w, sensor_h, fit = sensors.pop()
    bscene.frame_set(int(render.frame_start))
    return CameraTrack(
        frames=frames, positions=np.array(positions), rotations=np.array(rotations), focal_lengths_mm=np.array(focal),
        sensor_width_mm=sensor_w, sensor_height_mm=sensor_h, sensor_fit=fit,
        clip_start=float(cam.data.clip_start) * scale, clip_end=float(cam.data.clip_end) * scale,
        shifts=np.array(shifts), type="orthographic" if lens_kind == "ORTHO" else "perspective",
        ortho_scales=np.array(ortho) if lens_kind == "ORTHO" else None,
    )


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


class _AssetSpec:
    """An asset piece seen as an import of one whole file (its own frame, no template transform)."""

    def __init__(self, piece, index: str):
        self.file = piece.file
        self.units = piece.units
        self.up_axis = piece.up_axis
        self.collection = None
        self.classes = ()
        self.semantic_class = piece.semantic_class
        self.name = piece.stable_name
        self.index = index  # its template key path
        self.wall_pinned = piece.wall is not None


def import_models(template, roots: ModelRoots) -> ImportedModels:
    """Read every model of ``template`` (see the module docstring). Needs bpy; replaces Blender's data."""
    import bpy

    from passes.blender_compat import check_running_blender

    check_running_blender()
    disable_scripts(bpy)
    out = ImportedModels()
    fps = template.render.fps
    frame = template.render.frame_start

    # 1. Check inputs: every file, before Blender opens any
    checked = []
    for i, spec in enumerate(template.imports):
        inputs = model_inputs(spec.file, roots, f"imports.{i}.file")
        checked.append(("import", i, spec, inputs))
    from procedural.scene_builder import asset_pieces

    for piece_key, piece in asset_pieces(template):
        inputs = model_inputs(piece.file, roots, f"{piece_key}.file")
        checked.append(("asset", piece_key, _AssetSpec(piece, piece_key), inputs))
    for _, _, _, inputs in checked:
        out.files.update(inputs.files)

    # 2. Import each, evaluate, classify
    budget = MAX_OBJECTS
    for what, i, spec, inputs in checked:
        key = f"imports.{i}.file" if what == "import" else f"{i}.file"
        loaded = load_file(bpy, inputs.path, spec, key, fps)
        if what == "import":
            placement = placement_matrix(spec)
            meshes = extract_meshes(bpy, loaded, spec, key, spec.name, frame, placement=placement, globs=spec.objects,
                                    budget=budget)
            if len(meshes) == 0 and spec.camera is None:
                raise _error(key, spec.file, "holds no geometry Blender can render (no mesh, curve, surface or text object)")
            objects = scene_objects(meshes, kind="import", import_name=spec.name, template_key=f"imports.{i}", file=spec.file)
            budget -= len(objects)
            out.objects.extend(objects)
            if spec.camera is not None:
                out.camera = extract_camera(bpy, loaded, spec, key, template, placement)
        else:
            meshes = extract_meshes(bpy, loaded, spec, key, spec.name, frame, placement=np.eye(4), classify=False)
            class_id = resolve_class(spec.semantic_class).class_id
            try:
                out.assets[i] = measure_asset(meshes, rule_kind=asset_rule_kind(class_id, spec.wall_pinned), file=spec.file)
            except ValueError as err:
                raise _error(key, spec.file, f"cannot be placed as furniture: {err}") from None
    bpy.ops.wm.read_factory_settings(use_empty=True)
    disable_scripts(bpy)
    out.objects.sort(key=lambda o: (o.name.split("/", 1)[0], o.source.node_path))  # ids: (import name, node path)
    return out
