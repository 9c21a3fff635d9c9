"""Load a template: find it (bundled name or path), parse TOML, apply ``--set`` overrides, validate.

Entry point: :func:`load_template`. Every problem becomes one line naming the key path, the value
and what is allowed; all of them are raised together as one :class:`greybox.errors.InputError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from greybox.errors import InputError
from scenes.template_schema import SCHEMA_VERSION, Template, exr_channel_problems

BUNDLED_DIR = Path(__file__).with_name("bundled")
MAX_TEMPLATE_BYTES = 16 << 20  # a template file (32767 explicit objects take about 5 MB)
MAX_NESTING = 16  # levels of tables and lists (the schema uses 5)
MAX_STRING_LENGTH = 10_000  # characters in any string or key


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


def problem_as_json(problem: dict) -> dict:
    """A problem as strict JSON data: non-finite numbers become the strings "nan", "inf", "-inf",
    long strings are cut to 200 characters, a missing value is null."""

    def safe(value, depth=0):
        if value is _MISSING:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        if isinstance(value, str):
            return value if len(value) <= 200 else value[:197] + "..."
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        if depth >= MAX_NESTING:
            return "..."
        if isinstance(value, dict):
            return {str(safe(k, depth + 1)): safe(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [safe(v, depth + 1) for v in value]
        return repr(value)

    return {key: safe(value) for key, value in problem.items()}


def _key_path(parts) -> str:
    """Key path for messages, each part cut to 64 characters."""
    return ".".join(p if len(p := str(part)) <= 64 else p[:61] + "..." for part in parts)


def structure_problems(data: Any, source: str, prefix: tuple = ()) -> list[dict]:
    """Problems no schema check should meet: nesting deeper than :data:`MAX_NESTING`, strings or
    keys longer than :data:`MAX_STRING_LENGTH`. Iterative, so any depth is safe to walk."""
    problems: list[dict] = []
    stack: list[tuple[tuple, Any]] = [(prefix, data)]
    while stack and len(problems) < 20:
        loc, node = stack.pop()
        if isinstance(node, str) and len(node) > MAX_STRING_LENGTH:
            problems.append(_problem(source, _key_path(loc), node, f"is {len(node)} characters long; strings take at most {MAX_STRING_LENGTH}"))
        elif isinstance(node, (dict, list)):
            if len(loc) >= MAX_NESTING:
                problems.append(_problem(source, _key_path(loc), _MISSING,
                                         f"nested more than {MAX_NESTING} levels deep (tables and lists); templates nest at most {MAX_NESTING}"))
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str) and len(key) > MAX_STRING_LENGTH:
                    problems.append(_problem(source, _key_path(loc + (key,)), _MISSING,
                                             f"the key is {len(key)} characters long; keys take at most {MAX_STRING_LENGTH}"))
                    continue
                stack.append((loc + (key,), value))
    return problems


_TOML_TOKEN = re.compile(r'''"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|#[^\n]*|[\[\]{}\n]''', re.S)
_TOML_HEADER = re.compile(r"[ \t]*\[\[?[ \t]*([^\]\n]+?)[ \t]*\]")
_TOML_KEY = re.compile(r"[ \t]*([^=\[\]{}#\n]+?)[ \t]*=")
_TOML_BARE_KEY = re.compile(r"[ \t]*\[{0,2}[ \t]*([A-Za-z0-9_\-.]+)")


def _toml_key_at(text: str, stop: int | None = None, max_depth: int | None = None) -> str:
    """Best-effort dotted key path of the TOML statement at offset ``stop`` (or of the first value
    nested deeper than ``max_depth``), for problems the parser reports without a place."""
    table = key = ""
    depth, line_start = 0, 0
    for token in _TOML_TOKEN.finditer(text):
        if stop is not None and token.start() >= stop:
            break
        t = token.group()
        if depth == 0 and text[line_start:token.start()].strip() == "" and t == "[":
            header = _TOML_HEADER.match(text, line_start)
            if header:
                table, key = header.group(1), ""
        if t in "[{":
            if depth == 0:
                match = _TOML_KEY.match(text, line_start)
                if match:
                    key = match.group(1)
            depth += 1
            if max_depth is not None and depth > max_depth:
                break
        elif t in "]}":
            depth = max(0, depth - 1)
        elif t == "\n":
            line_start = token.end()
    else:
        if stop is None:
            return ""
    if stop is not None and (depth == 0 or not key):
        line = text.rfind("\n", 0, stop) + 1
        match = _TOML_KEY.match(text, line) or _TOML_BARE_KEY.match(text, line)
        key = match.group(1) if match else key
    parts = [p.strip().strip("\"'") for p in f"{table}.{key}".split(".") if p.strip()]
    return _key_path(parts)


def _parse_toml(text: str, source: str, what: str) -> dict:
    """``tomllib.loads`` with every failure as a problem (syntax, nesting too deep for the parser,
    an integer with more digits than Python converts), at the key path where it can be found."""
    key = ""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = f"not valid TOML: {err}"
        where = re.search(r"at line (\d+), column (\d+)", str(err))
        if "at end of document" in str(err):
            key = _toml_key_at(text, stop=len(text))
        elif where:
            line, column = int(where.group(1)), int(where.group(2))
            lines = text.splitlines(keepends=True)
            key = _toml_key_at(text, stop=sum(len(t) for t in lines[: line - 1]) + column - 1)
    except RecursionError:
        key = _toml_key_at(text, max_depth=MAX_NESTING)
        message = f"{what} nests tables or lists too deeply; templates nest at most {MAX_NESTING} levels"
    except ValueError as err:  # an integer of more than 4300 digits
        digits = re.search(r"\d{4300,}", text)
        key = _toml_key_at(text, stop=digits.start()) if digits else ""
        message = f"cannot be read: {str(err).split('; use sys.')[0]}"
    problem = _problem(source, key, _MISSING, message)
    raise InputError(format_problem(problem), [problem]) from None


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _override_error(text: str, key: str, message: str) -> InputError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    problem = _problem(f"--set {shown!r}", _key_path(key.split(".")) if key else "", _MISSING, message)
    return InputError(format_problem(problem), [problem])


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``key.path=VALUE`` -> (path parts, value). VALUE is a TOML value, or a string when it is not one.

    A part of ASCII digits is a list index (``style.controlnets.0.scale``); any other part is a key.
    """
    if "=" not in text:
        raise _override_error(text, text.strip(), "expected key.path=VALUE (no '=' given), e.g. --set style.controlnets.0.scale=0.8")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise _override_error(text, key, f"the key path {_short(key)} is empty or has an empty part")
    if len(key.split(".")) > MAX_NESTING:
        raise _override_error(text, key, f"the key path has more than {MAX_NESTING} parts; templates nest at most {MAX_NESTING} levels")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise _override_error(text, key, f"the value nests lists or tables too deeply; templates nest at most {MAX_NESTING} levels") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise _override_error(text, key, f"the value cannot be read: {str(err).split('; use sys.')[0]}") from None
    parts: list[str | int] = [int(p) if p.isascii() and p.isdigit() else p for p in key.split(".")]
    return parts, value


def apply_override(data: dict, parts: list[str | int], value: Any, text: str) -> None:
    key = ".".join(map(str, parts))
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = _key_path(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or not (0 <= part < len(node)):
                size = len(node) if isinstance(node, list) else 0
                raise _override_error(text, key, f"{where}: no list item {part} (the list has {size})")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise _override_error(text, key, f"{where}: the parent is not a table")
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not (0 <= last < len(node)):
            size = len(node) if isinstance(node, list) else 0
            raise _override_error(text, key, f"no list item {last} at {_key_path(parts)} (the list has {size})")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise _override_error(text, key, f"the parent of {_short(last)} is not a table")
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
    "float_parsing": "must be a number",
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
    "string_too_long": "takes at most {max_length} characters",
    "literal_error": "must be one of {expected}",
}


_TAG_PARTS = {"box", "plane", "cylinder", "static", "orbit", "dolly", "walkthrough", "str", "int"}


# the member tags of a plain union ("literal['auto']", "list[FurnitureSpec]", "constrained-int")
_UNION_MEMBER = re.compile(r"^(literal\[.*\]|list\[.*\]|dict\[.*\]|constrained-\w+|float|bool|[A-Z]\w*Spec)$")


def _clean_loc(loc: tuple) -> tuple:
    """Drop the union and discriminator tags pydantic puts in a location."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p in _TAG_PARTS or _UNION_MEMBER.match(p))))


def _is_union_member_error(loc: tuple) -> bool:
    return any(isinstance(p, str) and _UNION_MEMBER.match(p) for p in loc)


def _range_messages(err: ValidationError, data: dict) -> dict[tuple, str]:
    """Range messages for integers too large to be floats (a 300-digit focal length): validate
    again with the largest float of the same sign in their place and keep what the range check says."""
    huge = [_clean_loc(item["loc"]) for item in err.errors(include_url=False)
            if item["type"] in ("float_type", "float_parsing") and isinstance(item["input"], int) and not isinstance(item["input"], bool)]
    if not huge:
        return {}
    probe = copy.deepcopy(data)
    for loc in huge:
        parent = _lookup(probe, loc[:-1])
        try:
            parent[loc[-1]] = sys.float_info.max if _lookup(data, loc) > 0 else -sys.float_info.max
        except (KeyError, IndexError, TypeError):
            continue
    out = {}
    try:
        Template.model_validate(probe)
    except ValidationError as again:
        for item in again.errors(include_url=False):
            loc = _clean_loc(item["loc"])
            if loc in huge and item["type"] in _CONTEXT_MESSAGES:
                out[loc] = _CONTEXT_MESSAGES[item["type"]].format(**(item.get("ctx") or {}))
    return out


def _validation_problems(err: ValidationError, data: dict, source: str) -> list[dict]:
    problems, problem_items = [], []
    ranges = _range_messages(err, data)
    for item in err.errors(include_url=False):
        loc = _clean_loc(item["loc"])
        if item["type"] == "duplicate_name":
            for dup in item["ctx"]["duplicates"]:
                problems.append(_problem(source, dup["key"], dup["name"],
                                         f"object names must be unique (they seed each object's randomness): also used at "
                                         f"{', '.join(dup['others'])}; give each a distinct name"))
                problem_items.append(None)
            continue
        if loc in ranges:
            message = ranges[loc]
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
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
        problems.append(_problem(source, _key_path(loc), value, message))
        problem_items.append(item)
    # One line per problem: a union can report the same key twice; the members' messages of a
    # plain union (furniture = "auto" or a list) become one line, "...; or ...".
    # A member that failed deeper inside (a piece of the furniture list) is the one the user meant:
    # the other members' errors at the union's own key are left out.
    member_keys = [p["key"] for p, item in zip(problems, problem_items) if item is not None and _is_union_member_error(item["loc"])]
    unique, seen, by_key = [], set(), {}
    for p, item in zip(problems, problem_items):
        if item is not None and _is_union_member_error(item["loc"]) and any(k.startswith(p["key"] + ".") for k in member_keys):
            continue
        k = (p["key"], p["message"])
        if k in seen:
            continue
        seen.add(k)
        if item is not None and _is_union_member_error(item["loc"]) and p["key"] in by_key:
            first = by_key[p["key"]]
            first["message"] = f"{first['message']}; or {p['message']}"
            continue
        if item is not None and _is_union_member_error(item["loc"]):
            by_key[p["key"]] = p
        unique.append(p)
    return unique


def validate_data(data: dict, source: str) -> Template:
    """Validate a parsed template; raise InputError listing every problem."""
    if not isinstance(data, dict):
        problem = _problem(source, "", _MISSING, f"a template is a table of keys, got {type(data).__name__}")
        raise InputError(format_problem(problem), [problem])
    problems = structure_problems(data, source)
    if problems:
        raise InputError("\n".join(format_problem(p) for p in problems), problems)
    version = data.get("schema_version", _MISSING)
    if version is not _MISSING and (type(version) is not int or version != SCHEMA_VERSION):
        problem = _problem(source, "schema_version", version, f"unsupported; this greybox reads schema_version = {SCHEMA_VERSION} (an integer)")
        raise InputError(format_problem(problem), [problem])
    try:
        template = Template.model_validate(data)
    except ValidationError as err:
        problems = _validation_problems(err, data, source)
        raise InputError("\n".join(format_problem(p) for p in problems), problems) from None
    problems = [_problem(source, key, value, message) for key, value, message in exr_channel_problems(template)]
    if problems:
        raise InputError("\n".join(format_problem(p) for p in problems), problems)
    return template


def load_template(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> LoadedTemplate:
    """Find, parse, override and validate a template. Raises InputError (exit 2) on any problem."""
    # 1. Find and parse.
    path = find_template(name_or_path)
    source = str(name_or_path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_TEMPLATE_BYTES + 1)
        text = raw.decode("utf-8")
    except OSError as err:
        problem = _problem(source, "", _MISSING, f"cannot read the template: {err}")
        raise InputError(format_problem(problem), [problem]) from None
    except UnicodeDecodeError as err:
        key = _toml_key_at(raw[: err.start].decode("utf-8", errors="replace"), stop=len(raw[: err.start].decode("utf-8", errors="replace")))
        problem = _problem(source, key, _MISSING, f"not UTF-8 text: byte {raw[err.start]:#04x} at offset {err.start}; save the template as UTF-8")
        raise InputError(format_problem(problem), [problem]) from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        problem = _problem(source, "", _MISSING, f"the file is larger than {MAX_TEMPLATE_BYTES >> 20} MiB; templates are at most that")
        raise InputError(format_problem(problem), [problem])
    data = _parse_toml(text, source, "the file")
    problems = structure_problems(data, source)  # before anything walks the data recursively
    if problems:
        raise InputError("\n".join(format_problem(p) for p in problems), problems)
    # 2. Apply overrides, key paths exactly as in the file.
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        problems = structure_problems(value, f"--set {_short(text)}", tuple(parts))
        if problems:
            raise InputError("\n".join(format_problem(p) for p in problems), problems)
        apply_override(data, parts, value, text)
    # 3. Validate.
    template = validate_data(data, source)
    resolved = template.model_dump(mode="json", by_alias=True)
    return LoadedTemplate(template=template, source=source, resolved=resolved, overrides=tuple(overrides))
