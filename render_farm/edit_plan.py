"""Edits: a change of the direction keys only, rendered from the folder's latest version.

The direction keys (:data:`EDIT_KEYS`: ``style.regions``, ``style.reference_images``,
``style.brand_colors``) say how parts of a frame look. Rendering again into the same folder with
only those changed is an *edit* of the latest version (its *base*): :func:`edit_changes` says
what changed and :func:`changed_entries` which entries, so only the objects they name are
regenerated.
"""

from __future__ import annotations

import json

from scenes.edit_targets import edit_targets, edit_targets_spec  # noqa: F401 - shared with the stylize task

EDIT_KEYS = ("regions", "reference_images", "brand_colors")


def direction_of(resolved: dict) -> dict:
    """The direction keys of a resolved template's style (absent ones as empty lists)."""
    style = resolved.get("style") or {}
    return {k: list(style.get(k) or []) for k in EDIT_KEYS}


def edit_changes(old_resolved: dict, new_resolved: dict) -> list[str]:
    """``key: old -> new`` lines for the direction keys ([] when they are the same)."""
    from render_farm.job_request import _diff

    out: list[str] = []
    _diff({"style": direction_of(old_resolved)}, {"style": direction_of(new_resolved)}, "", out)
    return out


def changed_entries(old_resolved: dict, new_resolved: dict) -> dict[str, list[dict]]:
    """Per direction key, the entries that differ between the two: removed, added or changed
    (both sides of a change), compared by position."""
    old, new = direction_of(old_resolved), direction_of(new_resolved)
    out: dict[str, list[dict]] = {}
    for key in EDIT_KEYS:
        a, b = old[key], new[key]
        entries = []
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else None
            y = b[i] if i < len(b) else None
            if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
                entries += [e for e in (x, y) if e is not None]
        if entries:
            out[key] = entries
    return out


def needs_regeneration(old_resolved: dict, new_resolved: dict) -> bool:
    """Whether the objects must be generated again: a region or reference image changed, or a
    brand colour was removed or changed (the base's pixels of its target are branded already, and
    the correction applies once, to unbranded colours). A brand colour added to a target that had
    none recolours the base's pixels of that target (the correction keeps their lightness)."""
    entries = changed_entries(old_resolved, new_resolved)
    if entries.get("regions") or entries.get("reference_images"):
        return True
    old = {json.dumps(e, sort_keys=True) for e in direction_of(old_resolved)["brand_colors"]}
    new = {json.dumps(e, sort_keys=True) for e in direction_of(new_resolved)["brand_colors"]}
    branded = {e["target"] for e in direction_of(old_resolved)["brand_colors"]}
    return bool(old - new) or any(json.loads(e)["target"] in branded for e in new - old)


def _without_edit_keys(resolved: dict) -> dict:
    out = {k: v for k, v in resolved.items() if k not in ("name", "description")}
    out["style"] = {k: v for k, v in (resolved.get("style") or {}).items() if k not in EDIT_KEYS}
    if isinstance(out.get("passes"), dict):
        out["passes"] = {k: v for k, v in out["passes"].items() if k != "save_blend"}
    return out


def plan_edits(job_dir, shots, command: str, models: dict[str, dict | None]) -> dict[str, dict]:
    """{shot name: its edit} for the shots whose template differs from the folder's latest version
    only in the direction keys (and whose models are the same); {} when there is no version.

    An edit: ``base_version``, ``base_manifest`` (sha256), ``base_dir`` (the base's files,
    ``DIR/versions/NNN/<shot folder>``), ``base_frames`` (frame -> sha256 of its PNG),
    ``base_keys`` (frame -> the base's store key of it), ``changes`` (lines), ``entries`` (the
    changed entries) and ``targets`` (:func:`edit_targets_spec`). Raises InputError when the
    frames differ from the base's (an edit keeps the base's frames)."""
    from pathlib import Path

    from greybox.errors import InputError
    from greybox.frame_files import frame_name, frame_png_path
    from greybox.frame_ranges import format_frames
    from render_farm.job_versions import latest_version, version_folder, version_manifest

    if command != "render":
        return {}
    job_dir = Path(job_dir)
    latest = latest_version(job_dir) if job_dir.is_dir() else None
    if latest is None:
        return {}
    out = {}
    for shot in shots:
        view = latest.get("shots", {}).get(shot.name)
        if view is None:
            continue
        manifest = version_manifest(job_dir, latest["version"], view)
        if manifest is None or not manifest.get("stylizer"):
            continue
        old = manifest["template"]["resolved"]
        changes = edit_changes(old, shot.resolved)
        if not changes or _without_edit_keys(old) != _without_edit_keys(shot.resolved):
            continue
        if (manifest.get("models") or None) != (models.get(shot.name) or None):
            continue
        base_frames = {}
        for f in shot.frames:
            digest = manifest.get("frames", {}).get(frame_name(f), {}).get(frame_png_path(f))
            if digest is not None:
                base_frames[str(f)] = digest
        frames = sorted(int(f) for f in base_frames)
        if frames != shot.frames:
            raise InputError(
                f"{shot.name}: {', '.join(changes[:3])}: an edit of version {latest['version']} renders its frames "
                f"({format_frames(frames) if frames else 'none'}), this command asks for {format_frames(shot.frames)}; "
                "give the base's frames (or no --frames), or render into another --out")
        entries = changed_entries(old, shot.resolved)
        out[shot.name] = {
            "base_version": latest["version"], "base_manifest": latest["manifests"].get(shot.name),
            "base_dir": str(job_dir / version_folder(latest["version"]) / view) if view else str(job_dir / version_folder(latest["version"])),
            "base_frames": base_frames, "base_keys": dict(latest.get("frame_keys", {}).get(shot.name, {})),
            "changes": changes, "entries": entries, "targets": edit_targets_spec(entries),
            "regenerate": needs_regeneration(old, shot.resolved),
        }
    return out


def edit_keys(spec: dict, upstream: dict[str, dict[str, dict]], store=None, view: str = "") -> list[tuple[str, str]]:
    """The units of an edit's stylisation task once the passes are done: ``[(frame, key)]``.

    A frame whose passes show none of the edited objects is the base's frame: its key is the
    base's own (the unit is reused). A frame that shows them is keyed by the base frame's bytes
    (sha256), the edit's targets and changed entries, the new style (direction included), its
    passes and the scene; in ``flow_warp`` also by the frame before it (its key chains that
    frame's), in ``keyframes`` by the whole sequence (its frames, their passes and the base frames
    that show the objects: the objects' atlases read them all)."""
    from render_farm.job_plan import _scene_objects, _shows_from_exr
    from render_farm.task_store import unit_key
    from scenes.template_loading import canonical_hash

    edit = spec["edit"]
    objects = _scene_objects(upstream[spec["scene_task"]]["scene"], store, view)
    targets = edit_targets(edit["targets"], objects)
    frames = [int(f) for f in spec["frames"]]
    touched = {}
    for f in frames:
        record = upstream[spec["passes_tasks"][str(f)]][str(f)]
        shows = record.get("meta", {}).get("shows") or _shows_from_exr(record, f, store, view)
        touched[f] = targets.shown_in(shows["instances"], shows["classes"])
    mode = spec["mode"]
    passes = {f: spec["passes"][str(f)] for f in frames}
    sequence = None
    if mode == "keyframes":
        sequence = canonical_hash({"frames": frames, "passes": [passes[f] for f in frames],
                                   "base": [edit["base_frames"][str(f)] for f in frames if touched[f]]})
    keys: dict[int, str] = {}
    previous = None
    for f in frames:
        base_sha = edit["base_frames"][str(f)]
        if not touched[f]:
            keys[f] = edit["base_keys"].get(str(f)) or unit_key("stylize", {"kept": base_sha, "frame": f})
            previous = f
            continue
        inputs = {**spec["base"], "frame": f, "edit": {"base_frame": base_sha, "targets": edit["targets"],
                                                       "changed": edit["entries"], "mode": mode}}
        ups = [*spec["shared"], passes[f]]
        if mode == "flow_warp" and previous is not None:
            inputs["edit"]["previous"] = previous
            ups += [passes[previous], keys[previous]]
        if sequence is not None:
            inputs["edit"]["sequence"] = sequence
        keys[f] = unit_key("stylize", inputs, ups)
        previous = f
    return [(str(f), keys[f]) for f in frames]


def edit_manifest(edit: dict, stylize_records: dict, frames: list[int]) -> dict:
    """The manifest's ``edit``: the base (version, manifest sha256), what changed, the targets,
    the frames regenerated and the denoising steps the edit spent (the other frames are the base's)."""
    regenerated, steps = [], 0
    for f in frames:
        meta = (stylize_records.get(f) or {}).get("meta", {})
        made = meta.get("edit") or {}
        if made.get("regenerated") and made.get("base_sha256") == edit["base_frames"].get(str(f)):  # by this edit
            regenerated.append(f)
            steps += int(meta.get("denoising_steps", 0))
    return {"base_version": edit["base_version"], "base_manifest_sha256": edit["base_manifest"], "changes": edit["changes"],
            "targets": edit["targets"], "regenerated_frames": regenerated, "kept_frames": len(frames) - len(regenerated),
            "denoising_steps": steps}
