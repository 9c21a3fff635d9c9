"""Load a template: find it (bundled name or path), parse TOML, apply ``--set`` overrides, validate.

Entry point: :func:`load_template`. Every problem becomes one line naming the key path, the value
and what is allowed; all of them are raised together as one :class:`greybox.errors.InputError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from greybox.errors import InputError
from scenes.template_schema import SCHEMA_VERSION, Template

BUNDLED_DIR = Path(__file__).with_name("bundled")


@dataclass(frozen=True)
class LoadedTemplate:
    """A validated template with where it came from and its canonical hash."""

    template: Template
    source: str  # path or bundled name as given
    resolved: dict  # the validated template as plain data (aliases, defaults filled in)
    overrides: tuple[str, ...]

    @property
    def template_hash(self) -> str:
        return canonical_hash(self.resolved)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def bundled_templates() -> list[tuple[str, str]]:
    """(name, one-line description) of every bundled template, sorted by name."""
    out = []
    for path in sorted(BUNDLED_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        out.append((path.stem, " ".join(str(data.get("description", "")).split())))
    return out


def find_template(name_or_path: str) -> Path:
    """A path to an existing file wins; otherwise a bundled template of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.toml"
    if bundled.is_file():
        return bundled
    names = ", ".join(n for n, _ in bundled_templates())
    raise InputError(
        f"template {name_or_path!r}: no such file and no bundled template of that name "
        f"(bundled: {names}; `greybox templates` lists them)"
    )


def _problem(source: str, key: str, value: Any, message: str) -> dict:
    return {"file": source, "key": key, "value": value, "message": message}


def format_problem(problem: dict) -> str:
    value = problem["value"]
    shown = "" if value is _MISSING else f" = {_short(value)}"
    return f"{problem['file']}: {problem['key'] or '(top level)'}{shown}: {problem['message']}"


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``key.path=VALUE`` -> (path parts, value). VALUE is a TOML value, or a string when it is not one."""
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected key.path=VALUE, e.g. --set style.controlnets.0.scale=0.8")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"--set {text!r}: the key path {key!r} is empty or has an empty part")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    return parts, value


def apply_override(data: dict, parts: list[str | int], value: Any, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(map(str, parts[: depth + 1]))
        if isinstance(part, int):
            if not isinstance(node, list) or not (0 <= part < len(node)):
                size = len(node) if isinstance(node, list) else 0
                raise InputError(f"--set {text!r}: {where}: no list item {part} (the list has {size})")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise InputError(f"--set {text!r}: {where}: the parent is not a table")
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not (0 <= last < len(node)):
            size = len(node) if isinstance(node, list) else 0
            raise InputError(f"--set {text!r}: no list item {last} at {'.'.join(map(str, parts))} (the list has {size})")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise InputError(f"--set {text!r}: the parent of {last!r} is not a table")
        node[last] = value


def _lookup(data: Any, loc: tuple) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


_UNION_TAGS = {
    "primitive": "'box', 'plane', 'cylinder'",
    "kind": "'static', 'orbit', 'dolly', 'walkthrough'",
}

_MESSAGES = {
    "extra_forbidden": "unknown key; remove it or check its spelling against the schema",
    "missing": "required key is missing",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number (no nan or inf)",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "string_pattern_mismatch": "may hold only letters, digits, '_', '-' (and '.' in object names)",
}

# Messages that quote the limit pydantic reports in the error's context.
_CONTEXT_MESSAGES = {
    "multiple_of": "must be a multiple of {multiple_of} (allowed: multiples of 8 from 8 to 8192)",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "too_short": "needs at least {min_length} item(s), got {actual_length}",
    "too_long": "takes at most {max_length} item(s), got {actual_length}",
    "literal_error": "must be one of {expected}",
}


def _validation_problems(err: ValidationError, data: dict, source: str) -> list[dict]:
    problems = []
    for item in err.errors(include_url=False):
        # Drop union/discriminator tags pydantic puts in the location.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p in {"box", "plane", "cylinder", "static", "orbit", "dolly", "walkthrough", "str", "int"}))
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = item.get("ctx") or {}
            tag_key = str(ctx.get("discriminator", "'kind'")).strip("'")
            loc = loc + (tag_key,)
            expected = ctx.get("expected_tags") or _UNION_TAGS.get(tag_key, "")
            message = (f"must be one of {expected}" if item["type"] == "union_tag_invalid"
                       else f"required key is missing (one of {expected})")
        elif item["type"] in _MESSAGES:
            message = _MESSAGES[item["type"]]
        elif item["type"] == "value_error":
            message = str(item["ctx"].get("error", item["msg"])) if "ctx" in item else item["msg"]
        elif item["type"] in _CONTEXT_MESSAGES:
            message = _CONTEXT_MESSAGES[item["type"]].format(**(item.get("ctx") or {}))
        else:
            message = item["msg"]
        value = _lookup(data, loc)
        if isinstance(value, float) and not math.isfinite(value):
            message = "must be a finite number (no nan or inf)"
        problems.append(_problem(source, ".".join(map(str, loc)), value, message))
    # One line per problem: a union can report the same key twice.
    unique, seen = [], set()
    for p in problems:
        k = (p["key"], p["message"])
        if k not in seen:
            seen.add(k)
            unique.append(p)
    return unique


def validate_data(data: dict, source: str) -> Template:
    """Validate a parsed template; raise InputError listing every problem."""
    version = data.get("schema_version", _MISSING)
    if version is not _MISSING and version != SCHEMA_VERSION:
        problem = _problem(source, "schema_version", version, f"unsupported; this greybox reads schema_version = {SCHEMA_VERSION}")
        raise InputError(format_problem(problem), [problem])
    try:
        return Template.model_validate(data)
    except ValidationError as err:
        problems = _validation_problems(err, data, source)
        raise InputError("\n".join(format_problem(p) for p in problems), problems) from None


def load_template(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> LoadedTemplate:
    """Find, parse, override and validate a template. Raises InputError (exit 2) on any problem."""
    # 1. Find and parse.
    path = find_template(name_or_path)
    source = str(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        problem = _problem(source, "", _MISSING, f"not valid TOML: {err}")
        raise InputError(format_problem(problem), [problem]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{source}: cannot read the template: {err}") from None
    # 2. Apply overrides, key paths exactly as in the file.
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value, text)
    # 3. Validate.
    template = validate_data(data, source)
    resolved = template.model_dump(mode="json", by_alias=True)
    return LoadedTemplate(template=template, source=source, resolved=resolved, overrides=tuple(overrides))
