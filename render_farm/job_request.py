"""What a job was asked to do: templates (and sweeps of ``--set`` values) resolved into shots.

A :class:`JobRequest` is the command line's inputs; :func:`resolve_shots` validates every template
(raising :class:`InputError` before anything is written) and names each shot's subfolder.
``DIR/job.json`` records the request and each shot's resolved template, so ``--resume`` continues
with exactly those inputs and a rerun with different inputs is refused with what differs.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from greybox.errors import InputError
from greybox.frame_ranges import parse_frames

JOB_FILE = "job.json"
JOB_SCHEMA = 1
COMMANDS = ("passes", "render")
# A shot's folder inside DIR as resolve_shots names it ('' = DIR itself): one name, never '.', '..' or hidden.
SHOT_FOLDER_PATTERN = r"^([A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199})?$"


@dataclass
class JobRequest:
    """The inputs of a job (what is recorded in ``job.json``; executor choices are not inputs)."""

    command: str
    templates: list[str]
    overrides: list[str] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    frames: str | None = None
    stylizer: str | None = None
    model: str | None = None
    controlnets: dict[str, str] = field(default_factory=dict)
    consistency: str | None = None
    save_blend: bool = False
    asset_roots: list[str] = field(default_factory=list)  # --asset-root folders (absolute) models may come from
    chunk_size: int = 8
    threads: int = 2
    task_timeout_s: float | None = None
    retries: int = 3
    max_failed_tasks: int = 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "JobRequest":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Shot:
    """One template variant of the job, written to ``job_dir/<folder>`` (``folder`` '' = the job's folder)."""

    name: str
    folder: str
    source: str
    template: object  # scenes.template_schema.Template
    resolved: dict
    template_hash: str
    overrides: list[str]
    frames: list[int]
    template_dir: str = ""  # the template's folder (absolute): its model paths are relative to it

    def view(self, job_dir: Path) -> Path:
        return Path(job_dir) / self.folder if self.folder else Path(job_dir)

    def to_json(self) -> dict:
        return {"name": self.name, "folder": self.folder, "source": self.source, "resolved": self.resolved,
                "template_hash": self.template_hash, "overrides": self.overrides, "frames": self.frames,
                "template_dir": self.template_dir}


def toml_value(value) -> str:
    """A plain value as a TOML literal (for building ``--set`` overrides from a sweep)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise InputError(f"cannot use {value!r} in a sweep; use strings, numbers, booleans, lists or tables")


def parse_sweep(text: str) -> tuple[str, list]:
    """``key.path=[v1, v2, ...]`` -> (key path, values)."""
    from scenes.template_loading import parse_override

    if "=" not in text:
        raise InputError(f"--sweep {text!r}: expected key.path=[VALUE, VALUE, ...], e.g. --sweep 'style.prompt=[\"a\", \"b\"]'")
    parts, values = parse_override(text)
    if not isinstance(values, list) or not values:
        raise InputError(f"--sweep {text!r}: the value must be a non-empty TOML list, e.g. [\"a\", \"b\"] or [1, 2]")
    return ".".join(map(str, parts)), values


def _slug(value, limit: int = 32) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_.-")
    return (text[:limit].rstrip("_.-")) or "x"


def _apply_options(loaded, request: JobRequest):
    """Fold --stylizer, --consistency and --save-blend into the template, validated like any override."""
    from scenes.template_loading import LoadedTemplate, validate_data

    resolved = json.loads(json.dumps(loaded.resolved))
    extra = []
    if request.stylizer is not None:
        resolved["style"]["stylizer"] = request.stylizer
        extra.append(f"--stylizer {request.stylizer}")
    if request.consistency is not None:
        resolved["style"]["consistency"]["mode"] = request.consistency
        extra.append(f"--consistency {request.consistency}")
    if request.save_blend and not resolved["passes"].get("save_blend"):
        resolved["passes"]["save_blend"] = True
        extra.append("--save-blend")
    if not extra:
        return loaded
    template = validate_data(resolved, loaded.source)
    return LoadedTemplate(template=template, source=loaded.source, resolved=template.model_dump(mode="json", by_alias=True),
                          overrides=tuple(loaded.overrides) + tuple(extra))


def resolve_shots(request: JobRequest) -> list[Shot]:
    """Validate every template and sweep variant; name each shot's folder. Raises InputError."""
    # 1. Check inputs
    from scenes.template_loading import canonical_hash, load_template

    if request.command not in COMMANDS:
        raise InputError(f"unknown command {request.command!r}")
    if not request.templates:
        raise InputError("give at least one TEMPLATE (a .toml path or a bundled name; `greybox templates` lists them)")
    if request.chunk_size < 1:
        raise InputError(f"--chunk-size {request.chunk_size}: must be at least 1")
    sweeps = [parse_sweep(s) for s in request.sweeps]
    variants: list[list[tuple[str, object]]] = [[]]
    for key, values in sweeps:
        variants = [v + [(key, value)] for v in variants for value in values]

    # 2. Load each template x variant (all problems of one template raised together)
    loaded_all = []
    problems, messages = [], []
    for source in request.templates:
        for variant in variants:
            overrides = list(request.overrides) + [f"{k}={toml_value(v)}" for k, v in variant]
            try:
                loaded = _apply_options(load_template(source, overrides), request)
            except InputError as err:
                messages.append(str(err))
                problems.extend(err.problems)
                continue
            loaded_all.append((source, variant, loaded))
    if messages:
        raise InputError("\n".join(dict.fromkeys(messages)), problems)

    # 3. Name the shots: one shot writes into the job's folder, several into subfolders
    shots: list[Shot] = []
    several = len(loaded_all) > 1
    used: set[str] = set()
    for source, variant, loaded in loaded_all:
        template = loaded.template
        name = template.name
        if variant:
            name += "-" + "-".join(f"{_slug(k.split('.')[-1])}-{_slug(v)}" for k, v in variant)
        if len(name) > 120:  # a folder name (file systems take 255 bytes)
            name = f"{name[:103].rstrip('_.-')}-{canonical_hash(name)[:16]}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        frames = parse_frames(request.frames, template.render.frame_start, template.render.frame_end)
        from passes.scene_stage import template_folder

        shots.append(Shot(name=name, folder=name if several else "", source=str(source), template=template,
                          resolved=loaded.resolved, template_hash=loaded.template_hash,
                          overrides=list(loaded.overrides), frames=frames, template_dir=str(template_folder(str(source)))))
    return shots


def shots_from_record(record: dict) -> list[Shot]:
    """The shots a ``job.json`` recorded (for ``--resume``), re-validated from their resolved data."""
    from scenes.template_loading import canonical_hash, validate_data

    shots = []
    for i, s in enumerate(record["shots"]):
        template = validate_data(s["resolved"], f"{JOB_FILE}: shots.{i}.resolved")
        first, last = template.render.frame_start, template.render.frame_end
        outside = [f for f in s["frames"] if not first <= f <= last]
        if outside or len(set(s["frames"])) != len(s["frames"]):
            raise InputError(f"{JOB_FILE}: shots.{i}.frames: "
                             + (f"frame {outside[0]} is outside the template's range {first}-{last}" if outside else "frames repeat")
                             + f"; the job record was changed outside greybox: remove {JOB_FILE} to start over, or choose another --out")
        folder = s.get("template_dir") or ""
        if not folder:
            from passes.scene_stage import template_folder

            folder = str(template_folder(s["source"]))
        shots.append(Shot(name=s["name"], folder=s["folder"], source=s["source"], template=template,
                          resolved=s["resolved"], template_hash=canonical_hash(s["resolved"]),
                          overrides=list(s["overrides"]), frames=sorted(int(f) for f in s["frames"]), template_dir=folder))
    return shots


class _RecordedRequest(BaseModel):
    """``job.json``'s ``request``: what :class:`JobRequest` records (checked before it is trusted)."""

    model_config = ConfigDict(strict=True, extra="allow")
    command: Literal["passes", "render"]
    templates: Annotated[list[str], Field(min_length=1)]
    overrides: list[str] = []
    sweeps: list[str] = []
    frames: str | None = None
    stylizer: Literal["diffusion", "npr", "baked"] | None = None
    model: str | None = None
    controlnets: dict[str, str] = {}
    consistency: Literal["per_frame", "flow_warp", "keyframes"] | None = None
    asset_roots: list[str] = []
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 8
    threads: Annotated[int, Field(ge=1, le=4096)] = 2
    task_timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    retries: Annotated[int, Field(ge=0, le=1000)] = 3
    max_failed_tasks: Annotated[int, Field(ge=1)] = 1


class _RecordedShot(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}$")]
    folder: Annotated[str, Field(pattern=SHOT_FOLDER_PATTERN)]
    source: str
    resolved: dict
    template_hash: str = ""
    overrides: list[str] = []
    frames: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    template_dir: str = ""


class _JobRecord(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    schema_: Literal[1] = Field(alias="schema")
    request: _RecordedRequest
    stages: list[Literal["passes", "stylize"]] = []
    shots: Annotated[list[_RecordedShot], Field(min_length=1)]
    blender: Annotated[str, Field(max_length=64)] | None = None


def _record_fix(path: Path) -> str:
    return f"remove {path} to start over in that folder (the outputs stay in the store), or choose another --out"


def check_job_record(record, path: Path) -> dict:
    """``record`` (parsed ``job.json``) when every field is what greybox writes; else InputError
    naming the field. Shot folders must be one name inside the job's folder, so a record edited to
    point elsewhere (``../victim``, an absolute path) never leads a write or a delete out of it."""
    try:
        checked = _JobRecord.model_validate(record)
    except ValidationError as err:
        lines = []
        for item in err.errors(include_url=False)[:10]:
            key = ".".join(str(p) for p in item["loc"]) or "(top level)"
            value = item.get("input")
            shown = json.dumps(value)[:80] if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
            hint = ("a shot's folder is one name inside the job's folder, as greybox records it"
                    if item["loc"][-1:] == ("folder",) else item["msg"])
            lines.append(f"{path}: {key} = {shown}: {hint}")
        raise InputError("\n".join(lines) + f"\nthe job record was changed outside greybox: {_record_fix(path)}") from None
    folders = [s.folder for s in checked.shots]
    names = [s.name for s in checked.shots]
    if len(set(folders)) != len(folders) or len(set(names)) != len(names) or (len(folders) > 1 and "" in folders):
        raise InputError(f"{path}: shots: names and folders must be distinct (one shot may use the job's folder itself); "
                         f"the job record was changed outside greybox: {_record_fix(path)}")
    return record


def read_job_record(job_dir: Path) -> dict | None:
    """``DIR/job.json`` checked by :func:`check_job_record`; None when there is none."""
    path = Path(job_dir) / JOB_FILE
    if path.is_symlink():
        raise InputError(f"{path} is a symbolic link: greybox reads and writes its job record only inside the job's "
                         "folder and never follows a link out of it; remove it (or choose another --out)")
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            raw = handle.read(256 << 20)
        record = json.loads(raw)
    except (OSError, ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)[:200]
        raise InputError(f"{path}: cannot read the job record ({reason}); {_record_fix(path)}") from None
    return check_job_record(record, path)


def job_record(request: JobRequest, shots: list[Shot], stages: list[str], blender: str | None = None) -> dict:
    """``job.json``: the request, its stages and shots, and the Blender release that renders the passes."""
    record = {"schema": JOB_SCHEMA, "request": request.to_json(), "stages": stages, "shots": [s.to_json() for s in shots]}
    if blender is not None:
        record["blender"] = blender
    return record


def _diff(old, new, path: str, out: list[str], limit: int = 20) -> None:
    if len(out) >= limit:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub} added ({json.dumps(new[key])[:60]})")
            elif key not in new:
                out.append(f"{sub} removed")
            else:
                _diff(old[key], new[key], sub, out, limit)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff(a, b, f"{path}.{i}", out, limit)
    elif old != new:
        out.append(f"{path}: {json.dumps(old)[:60]} -> {json.dumps(new)[:60]}")


def resume_differences(record: dict, request: JobRequest, shots: list[Shot], stages: list[str]) -> list[str]:
    """What differs between a folder's recorded job and the same command given again with
    ``--resume`` ([] when it may continue): the shots, their resolved templates, models, frames."""
    from greybox.frame_ranges import format_frames

    out = input_differences(record, request, shots, stages)
    if out and out[0].startswith("shots differ"):
        return out
    recorded = {s["name"]: s for s in record.get("shots", [])}
    from render_farm.edit_plan import edit_changes

    for shot in shots:  # the direction keys too: an edit is a new request, not the recorded one continued
        prefix = f"{shot.name}: " if len(shots) > 1 else ""
        if "stylize" in set(record.get("stages", [])) & set(stages):
            out.extend(prefix + d for d in edit_changes(recorded[shot.name]["resolved"], shot.resolved))
        was = sorted(recorded[shot.name]["frames"])
        if was != shot.frames:
            prefix = f"{shot.name}: " if len(shots) > 1 else ""
            out.append(f"{prefix}frames: {format_frames(was)} -> {format_frames(shot.frames)}")
    return out


def input_differences(record: dict, request: JobRequest, shots: list[Shot], stages: list[str],
                      blender: str | None = None) -> list[str]:
    """What differs between the inputs a folder's job recorded and this request ([] when compatible).

    Only what both produced is compared: a folder that holds passes only accepts a render whose
    non-style inputs match (style keys are then new, not different). ``blender``: this job's release."""
    common = set(record.get("stages", [])) & set(stages)
    old_shots = {s["name"]: s for s in record.get("shots", [])}
    new_shots = {s.name: s for s in shots}
    out: list[str] = []
    if blender is not None and record.get("blender") not in (None, blender):
        out.append(f"blender: {record['blender']} -> {blender} (the release that renders the passes)")
    if set(old_shots) != set(new_shots):
        gone = sorted(set(old_shots) - set(new_shots))
        added = sorted(set(new_shots) - set(old_shots))
        out.append("shots differ" + (f"; it has {', '.join(gone)}" if gone else "") + (f"; this job has {', '.join(added)}" if added else ""))
        return out
    for name, shot in new_shots.items():
        old = dict(old_shots[name]["resolved"])
        new = dict(shot.resolved)
        if "stylize" not in common:
            old.pop("style", None)
            new.pop("style", None)
        else:  # a change of direction keys is an edit of the folder's latest version (render_farm.job_versions)
            from render_farm.edit_plan import EDIT_KEYS

            for resolved in (old, new):
                if isinstance(resolved.get("style"), dict):
                    resolved["style"] = {k: v for k, v in resolved["style"].items() if k not in EDIT_KEYS}
        for key in ("name", "description"):
            old.pop(key, None)
            new.pop(key, None)
        for resolved in (old, new):  # asking for scene.blend adds a file and changes nothing else
            if isinstance(resolved.get("passes"), dict):
                resolved["passes"] = {k: v for k, v in resolved["passes"].items() if k != "save_blend"}
        diffs: list[str] = []
        _diff(old, new, "", diffs)
        if "stylize" in common:
            old_req = record.get("request", {})
            if (old_req.get("model"), old_req.get("controlnets") or {}) != (request.model, request.controlnets or {}):
                diffs.append(f"models: --model/--controlnet {old_req.get('model')!r} {old_req.get('controlnets')} -> "
                             f"{request.model!r} {request.controlnets}")
        if diffs:
            prefix = f"{name}: " if len(new_shots) > 1 else ""
            out.extend(prefix + d for d in diffs)
    return out
