"""What a style's regions and reference images name in a scene, and which frames they touch.

``[[style.regions]]`` and ``[[style.reference_images]]`` name objects by their stable names as
``scene/layout.json`` lists them (shell-style globs, case-sensitive: ``fnmatch.fnmatchcase``) and
by class (ADE20K names or palette indices). Pure Python, so the driver's build check, the farm's
planner and the stylize stage share one reading:

- :func:`scene_objects`: ``(name, instance id, class id)`` of each object, from a
  :class:`scenes.scene_data.Scene` or from a parsed ``layout.json``;
- :func:`resolve_targets`: each region's and each reference image's :class:`Targets` (the
  instance ids its globs match and the class ids it names); a pixel belongs to a target when its
  instance pass holds one of those ids or its class pass one of those classes;
- :func:`target_problems`: the build check's findings, one per glob that matches no object of the
  scene and per class no object of the scene has (key path, value, message with the fix);
- :func:`touching`: given which instance and class ids a frame's passes show (the passes
  units record them), the regions and reference images that touch the frame: a region or a
  masked reference image touches the frames whose passes show one of its targets; a reference
  image without objects or classes touches every frame.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Iterable

from scenes.semantic_palette import resolve_class

DIRECTION_KEYS = ("regions", "reference_images", "ip_adapter")  # the style keys that direct parts of a frame


@dataclass(frozen=True)
class Targets:
    """The pixels a region or reference image covers: those whose instance id is in ``instance_ids``
    or whose class id is in ``class_ids``. ``whole_frame``: a reference image with no objects or
    classes (it covers every pixel)."""

    instance_ids: frozenset[int]
    class_ids: frozenset[int]
    whole_frame: bool = False

    def shown_in(self, instances: Iterable[int], classes: Iterable[int]) -> bool:
        """Whether a frame whose passes hold these instance and class ids shows any of these pixels."""
        return self.whole_frame or bool(self.instance_ids.intersection(instances)) or bool(self.class_ids.intersection(classes))


def scene_objects(source) -> list[tuple[str, int, int]]:
    """``(name, instance id, ADE20K class id)`` of each object of a Scene or a parsed layout.json."""
    if isinstance(source, dict):
        return [(o["name"], int(o["instance_id"]), int(o["class"]["id"])) for o in source.get("objects", [])]
    return [(o.name, int(o.instance_id), int(o.semantic_class_id)) for o in source.objects]


def _class_ids(classes) -> frozenset[int]:
    return frozenset(resolve_class(c).class_id for c in classes)


def _targets(objects, classes, table, whole_frame=False) -> Targets:
    ids = frozenset(i for name, i, _ in table if any(fnmatch.fnmatchcase(name, g) for g in objects))
    return Targets(ids, _class_ids(classes), whole_frame)


def resolve_targets(style, objects: list[tuple[str, int, int]]) -> tuple[list[Targets], list[Targets]]:
    """(one :class:`Targets` per ``style.regions`` entry, one per ``style.reference_images`` entry)."""
    regions = [_targets(r.objects, r.classes, objects) for r in style.regions]
    references = [_targets(r.objects, r.classes, objects, whole_frame=not r.masked) for r in style.reference_images]
    return regions, references


def target_problems(style, objects: list[tuple[str, int, int]]) -> list[tuple[str, object, str]]:
    """(key path, value, message) for every glob of ``style.regions`` / ``style.reference_images``
    that matches no object of the scene, and every class no object of the scene has."""
    names = sorted(name for name, _, _ in objects)
    present = {c for _, _, c in objects}
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    problems = []
    for table, entries in (("regions", style.regions), ("reference_images", style.reference_images)):
        for i, entry in enumerate(entries):
            for j, glob in enumerate(entry.objects):
                if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                    problems.append((f"style.{table}.{i}.objects.{j}", glob,
                                     f"matches no object of the scene (its objects: {shown or 'none'}); use a stable "
                                     "name as scene/layout.json lists it (`greybox inspect DIR` after a passes run), "
                                     "or a glob such as 'chair_*'"))
            for j, cls in enumerate(entry.classes):
                entry_class = resolve_class(cls)
                if entry_class.class_id not in present:
                    have = sorted({resolve_class(c - 1).name for c in present if c > 0})
                    problems.append((f"style.{table}.{i}.classes.{j}", cls,
                                     f"no object of the scene has class {entry_class.name!r} (its classes: "
                                     f"{', '.join(have) or 'none'}); name a class the scene has, or remove it"))
    return problems


def touching(region_targets: list[Targets], reference_targets: list[Targets], instances: Iterable[int],
             classes: Iterable[int]) -> dict[str, list[int]]:
    """``{"regions": [indices], "reference_images": [indices]}``: the entries that touch a frame
    whose passes show these instance and class ids (see the module docstring)."""
    instances, classes = set(instances), set(classes)
    return {
        "regions": [i for i, t in enumerate(region_targets) if t.shown_in(instances, classes)],
        "reference_images": [i for i, t in enumerate(reference_targets) if t.shown_in(instances, classes)],
    }
