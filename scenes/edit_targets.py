"""What an edit regenerates: the objects and classes its changed direction entries name.

Pure Python, shared by the farm's planner (:mod:`render_farm.edit_plan`) and the stylize task
that regenerates them (:mod:`stylize.object_edits`).
"""

from __future__ import annotations


def edit_targets_spec(entries: dict[str, list[dict]]) -> dict:
    """What the changed entries name: object globs, class names, or the whole frame (a reference
    image for the whole frame changed)."""
    objects, classes, whole = [], [], False
    for entry in entries.get("regions", []):
        objects += entry.get("objects", [])
        classes += entry.get("classes", [])
    for entry in entries.get("reference_images", []):
        if not entry.get("objects") and not entry.get("classes"):
            whole = True
        objects += entry.get("objects", [])
        classes += entry.get("classes", [])
    for entry in entries.get("brand_colors", []):
        objects.append(entry["target"])  # an object's stable name (globs allowed) or a class name
        classes.append(entry["target"])
    return {"objects": sorted(set(map(str, objects))), "classes": sorted(set(map(str, classes)), key=str), "whole_frame": whole}


def edit_targets(spec: dict, objects: list[tuple[str, int, int]]):
    """The :class:`scenes.style_regions.Targets` of :func:`edit_targets_spec` in a scene (a class
    name that is no class, as a brand colour's object name, names no class)."""
    import fnmatch

    from scenes.semantic_palette import resolve_class
    from scenes.style_regions import Targets

    ids = frozenset(i for name, i, _ in objects if any(fnmatch.fnmatchcase(name, g) for g in spec["objects"]))
    class_ids = set()
    for c in spec["classes"]:
        try:
            class_ids.add(resolve_class(c).class_id)
        except Exception:  # noqa: BLE001 - an object name given where a class may be
            continue
    return Targets(ids, frozenset(class_ids), bool(spec.get("whole_frame")))
