"""What ``[[style.brand_colors]]`` names in a scene: each entry's objects, checked before anything renders.

A ``target`` is an object's stable name as ``scene/layout.json`` lists it (shell-style globs,
case-sensitive, ``fnmatch.fnmatchcase``), or, when it matches no object's name, an ADE20K class
name: every object of that class. Each object takes at most one brand colour: two entries that
reach one object are refused. Pure Python (the driver's build check, the planner and the stylize
stage share one reading):

- :func:`brand_targets`: per entry, the instance ids of the objects it names;
- :func:`brand_problems`: the build check's findings (key path, value, message with the fix): a
  target that names no object of the scene, an object named twice;
- :func:`parse_hex`: ``"#1F4E79"`` -> (31, 78, 121);
- :func:`pooled_figures`: a target's figures from the per-frame sums the stylize stage records
  (:func:`stylize.brand_colours.frame_figure_sums`), so the manifest pools them over any frames.
"""

from __future__ import annotations

import fnmatch
import math


def parse_hex(color: str) -> tuple[int, int, int]:
    """``#RRGGBB`` (sRGB, validated by the schema) -> (R, G, B) 0..255."""
    text = color.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def _objects(source) -> list[tuple[str, int, int]]:
    """``(name, instance id, class id)`` of each object of a Scene or a parsed layout.json."""
    if isinstance(source, dict):
        return [(o["name"], int(o["instance_id"]), int(o["class"]["id"])) for o in source.get("objects", [])]
    return [(o.name, int(o.instance_id), int(o.semantic_class_id)) for o in source.objects]


def _class_id(name: str) -> int | None:
    from scenes.semantic_palette import UnknownClassError, resolve_class

    try:
        return resolve_class(name).class_id
    except (UnknownClassError, ValueError, KeyError):
        return None


def target_ids(target: str, objects: list[tuple[str, int, int]]) -> tuple[list[int], str]:
    """(instance ids, how: ``"name"`` or ``"class"`` or ``""`` when it names nothing) for one target."""
    by_name = [i for name, i, _ in objects if fnmatch.fnmatchcase(name, target)]
    if by_name:
        return sorted(by_name), "name"
    class_id = _class_id(target)
    if class_id is not None:
        by_class = [i for _, i, c in objects if c == class_id]
        if by_class:
            return sorted(by_class), "class"
    return [], ""


def brand_targets(style, source) -> list[list[int]]:
    """Per ``style.brand_colors`` entry, the instance ids it names (a Scene or a parsed layout.json)."""
    objects = _objects(source)
    return [target_ids(entry.target, objects)[0] for entry in style.brand_colors]


def brand_problems(style, source) -> list[tuple[str, object, str]]:
    """(key path, value, message) for every target that names no object, and every object two entries name."""
    objects = _objects(source)
    names = sorted(name for name, _, _ in objects)
    by_id = {i: name for name, i, _ in objects}
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    problems = []
    owner: dict[int, int] = {}
    for k, entry in enumerate(style.brand_colors):
        ids, _ = target_ids(entry.target, objects)
        if not ids:
            problems.append((f"style.brand_colors.{k}.target", entry.target,
                             f"names no object of the scene, by stable name (its objects: {shown or 'none'}) or by class; "
                             "use a stable name as scene/layout.json lists it (`greybox inspect DIR`), a glob such as "
                             "'chair_*', or a class name the scene has"))
            continue
        for i in ids:
            if i in owner:
                problems.append((f"style.brand_colors.{k}.target", entry.target,
                                 f"names object {by_id[i]!r}, which style.brand_colors.{owner[i]} already names; each object "
                                 "takes one brand colour: narrow one of the targets"))
                break
            owner[i] = k
    return problems


DELTA_E_LIMIT = 2.0  # the contract: mean CIEDE2000 over every frame
L_STD_RATIO_MIN = 0.8  # the contract: L* std inside the mask over the same render's without the brand colour


def contract_warning(entry: dict) -> str | None:
    """None when a target's manifest entry (its ``target``, ``color`` and :func:`pooled_figures`) holds
    the contract; otherwise a line naming the target, the colour and the figures that miss (sRGB
    cannot show a saturated colour at every lightness: the fit keeps what the difference allows)."""
    if not entry.get("pixels"):
        return None
    misses = []
    if entry["delta_e_mean"] > DELTA_E_LIMIT or entry["delta_e_worst_frame_mean"] > DELTA_E_LIMIT:
        misses.append(f"mean CIEDE2000 {entry['delta_e_mean']:.2f} (worst frame {entry['delta_e_worst_frame_mean']:.2f}) "
                      f"is over {DELTA_E_LIMIT}")
    ratio = entry.get("l_std_ratio")
    if ratio is not None and ratio < L_STD_RATIO_MIN:
        misses.append(f"L* std ratio {ratio:.2f} is under {L_STD_RATIO_MIN} (L* std {entry['l_std']:.1f} against "
                      f"{entry['l_std_before']:.1f} without it; mean CIEDE2000 {entry['delta_e_mean']:.2f})")
    if not misses:
        return None
    return f"brand colour {entry['color']} on {entry['target']!r} misses the contract: " + "; ".join(misses)


def pooled_figures(per_frame: list[dict]) -> dict:
    """A target's figures over frames from ``stylize.brand_colours.frame_figure_sums``: mean CIEDE2000 over all its
    pixels, the largest per-frame mean, the L* standard deviation (and before the correction, and
    their ratio) over all its pixels."""
    per_frame = [s for s in per_frame if s]
    if not per_frame:
        return {"pixels": 0}
    n = sum(s["pixels"] for s in per_frame)

    def std(key: str, key2: str) -> float:
        mean = sum(s[key] for s in per_frame) / n
        return math.sqrt(max(sum(s[key2] for s in per_frame) / n - mean * mean, 0.0))

    out = {"pixels": n, "frames": len(per_frame), "delta_e_mean": sum(s["delta_e"] for s in per_frame) / n,
           "delta_e_worst_frame_mean": max(s["delta_e_max_frame_mean"] for s in per_frame), "l_std": std("l", "l2")}
    if all("l_before" in s for s in per_frame):
        out["l_std_before"] = std("l_before", "l2_before")
        # a flat target (no texture to keep, L* spread under 0.05) has no ratio
        out["l_std_ratio"] = out["l_std"] / out["l_std_before"] if out["l_std_before"] > 0.05 else None
    return out
