"""Fuzz ``greybox validate`` with template and ``--set`` mutants: exit codes, tracebacks, key paths, strict JSON.

Mutants start from the bundled templates and a tiny explicit-objects template. File mutants change
the parsed data (a leaf or a subtree replaced by a hostile value, a key deleted or added, a list
item duplicated, a number scaled) and are written back as TOML, or corrupt the TOML text itself
(cut short, a character inserted or deleted, a 5000-digit integer, 500 levels of brackets, bytes
that are not UTF-8, a table defined twice). ``--set`` mutants pick a real key path, sometimes
broken (an index out of range or not ASCII, an empty part, 40 parts), and a hostile raw value.

Each mutant runs through ``greybox validate`` twice in this process (text and ``--json``); a
template that validates is then planned (``resolve_shots``, ``build_graph`` for a render), built
(``build_scene``: room, furniture, camera track) and given a manifest, as a job would, so a
template that validates and crashes later is caught too. Everything random comes from one seeded
``numpy.random.Generator``.

    .venv/bin/python benchmarks/template_fuzz.py [--mutants 2000] [--seed 0] [--no-build] [--show 5]

Goal: 0 tracebacks, every problem with a key path (except where there is none to name: a --set
without '=', a file that cannot be read), strict JSON (no NaN), no mutant slower than a few seconds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import re
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TINY = """\
schema_version = 1
name = "tiny"
seed = 3
[generator]
kind = "none"
[[objects]]
name = "floor"
primitive = "plane"
position = [0.0, 0.0, 0.0]
size = [6.0, 6.0]
class = "floor"
[[objects]]
name = "box1"
primitive = "box"
position = [0.0, 0.0, 0.5]
size = [1.0, 1.0, 1.0]
class = "table"
[camera.path]
kind = "orbit"
center = [0.0, 0.0, 0.5]
radius = 4.0
height = 2.0
[render]
resolution = [64, 64]
frame_start = 1
frame_end = 4
"""


def _deep_list(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _deep_table(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE = [
    0, -1, 1, 7, 2**31, 2**53 + 1, 2**62, 2**63, 2**64, 10**30, -(10**30), int("9" * 300), -int("9" * 400),
    0.0, -0.0, 1e-320, 1e-9, 0.5, 1e30, -1e30, 1e308, float("nan"), float("inf"), float("-inf"),
    True, False, "", "x", "²", "٣", "../victim", "/etc/passwd", "a\x00b", "é" * 50, "x" * 20_000, "sofa", "wall",
    "screen", "stool", "nan", "orbit", "walkthrough", "box", "depth", "npr", "diffusion", "keyframes",
    [], [0], [1, 2], [1.0, 2.0, 3.0], [1, 2, 3, 4], [[0.0, 0.0, 1.0]] * 2, [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0]],
    ["depth", "depth"], [8192, 8192], [8, 8], [0.0] * 2000, {}, {"a": 1}, {"kind": "orbit"}, {"mode": "flow_warp"},
    _deep_list(40), _deep_table(40),
]
PLAUSIBLE_STRINGS = [
    "orbit", "static", "dolly", "walkthrough", "l_shape", "rectangle", "keyframes", "flow_warp", "per_frame", "fixed",
    "frame", "shot", "npr", "diffusion", "sofa", "lamp", "rug", "bed", "north", "south", "east", "west", "box", "plane",
    "cylinder", "wall", "floor", "ceiling", "painting", "DDIMScheduler", "none", "npr_draft", "room", "a", "",
]
RAW_VALUES = [
    "[", "]", "{", "}", "=", "'", '"', "[[[", "'unterminated", '"\\x"', "1e99999", "0x10", "0o17", "0b101", "1_000",
    "+inf", "-nan", "true", "yes", "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "{a=1, a=2}", "[1, 'a']",
    "[" * 500 + "]" * 500, "{a=" * 300 + "1" + "}" * 300, "9" * 5000, "-" + "9" * 310, "'" + "x" * 20_000 + "'",
    '"\\u0000"', '"\\ud800"', "[1,2,3]", "{kind='static', position=[0,0,1], look_at=[1,1,1]}", "  ", "",
]


def toml_key(key) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def to_toml(data: dict) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items())


def paths(data, prefix=()) -> list[tuple]:
    """Every key path of ``data`` (tables, lists and leaves)."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, prefix + (i,))
    return out


def _get(data, path):
    for p in path:
        data = data[p]
    return data


class Mutator:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.bases = [(name, tomllib.loads(text)) for name, text in self._base_texts()]

    @staticmethod
    def _base_texts():
        from scenes.template_loading import bundled_templates, find_template

        for name, _ in bundled_templates():
            yield name, find_template(name).read_text()
        yield "tiny", TINY

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def hostile(self):
        return json.loads(json.dumps(self.pick(HOSTILE))) if not isinstance(self.pick(HOSTILE), float) else self.pick(HOSTILE)

    def plausible(self, data: dict) -> str:
        """A value of the right kind at its edge: most of these validate, so what a job does with
        them afterwards (plan, build) is exercised too."""
        leaves = [p for p in paths(data) if not isinstance(_get(data, p), (dict, list))]
        path = self.pick(leaves)
        parent, last, value = _get(data, path[:-1]), path[-1], _get(data, path)
        if isinstance(value, bool):
            parent[last] = not value
        elif isinstance(value, int):
            parent[last] = self.pick([0, 1, value + 1, value * 2, value * 100, 9999, 10_000, 1_000_000, 2**62])
        elif isinstance(value, float):
            parent[last] = self.pick([0.0, 1e-6, -value, value * 2, value * 1000, 9999.0, -9999.0, 36000.0, 1e-3])
        else:
            parent[last] = self.pick(PLAUSIBLE_STRINGS)
        return f"edge value at {'.'.join(map(str, path))}"

    def mutate_data(self, data: dict) -> str:
        if self.rng.random() < 0.4:
            return self.plausible(data)
        path = self.pick(paths(data))
        parent, last = _get(data, path[:-1]), path[-1]
        op = int(self.rng.integers(7))
        if op <= 2:
            parent[last] = self.pick(HOSTILE)
            return f"replace {'.'.join(map(str, path))}"
        if op == 3:
            del parent[last]
            return f"delete {'.'.join(map(str, path))}"
        if op == 4 and isinstance(_get(data, path), dict):
            _get(data, path)["unknown_" + str(int(self.rng.integers(100)))] = 1
            return f"add a key in {'.'.join(map(str, path))}"
        if op == 5:
            for list_path in ("objects", ("generator", "room", "furniture"), ("style", "controlnets")):
                try:
                    items = _get(data, list_path if isinstance(list_path, tuple) else (list_path,))
                except (KeyError, TypeError):
                    continue
                if isinstance(items, list) and items:
                    items.append(json.loads(json.dumps(self.pick(items))))
                    return f"duplicate an item of {list_path}"
        value = _get(data, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = self.pick([-1, 1e6, 1e-6, 1e30, 1.5, 0])
            parent[last] = type(value)(value * factor) if isinstance(value, float) else int(value * factor)
            return f"scale {'.'.join(map(str, path))} by {factor}"
        parent[last] = self.pick(HOSTILE)
        return f"replace {'.'.join(map(str, path))}"

    def mutate_text(self, text: str) -> tuple[bytes, str]:
        op = int(self.rng.integers(7))
        at = int(self.rng.integers(len(text)))
        if op == 0:
            return text[:at].encode(), "cut short"
        if op == 1:
            return (text[:at] + self.pick(list("[]{}=\"',.#\n\\")) + text[at:]).encode(), "a character inserted"
        if op == 2:
            return (text[:at] + text[at + 1:]).encode(), "a character deleted"
        if op == 3:
            return re.sub(r"\b\d+\b", "9" * 5000, text, count=1).encode(), "a 5000-digit integer"
        if op == 4:
            line = text.rfind("\n", 0, at) + 1
            return (text[:line] + "deep = " + "[" * 500 + "]" * 500 + "\n" + text[line:]).encode(), "500 levels of brackets"
        if op == 5:
            return text[:at].encode() + b"\xff\xfe" + text[at:].encode(), "bytes that are not UTF-8"
        header = re.search(r"^\[[^\[\]\n]+\]$", text, re.M)
        return (text + "\n" + (header.group() if header else "[render]") + "\nx = 1\n").encode(), "a table defined twice"

    def file_mutant(self) -> tuple[str, bytes, str]:
        name, base = self.pick(self.bases)
        data = json.loads(json.dumps(base))
        if self.rng.random() < 0.35:
            text, what = self.mutate_text(to_toml(data) if self.rng.random() < 0.5 else self._base_text(name))
            return name, text, what
        whats = [self.mutate_data(data) for _ in range(int(self.rng.integers(1, 4)))]
        return name, to_toml(data).encode("utf-8", errors="surrogatepass"), "; ".join(whats)

    def _base_text(self, name: str) -> str:
        return dict(self._base_texts())[name]

    def set_mutant(self) -> tuple[str, list[str], str]:
        name, base = self.pick(self.bases)
        path = [str(p) for p in self.pick(paths(base))]
        r = self.rng.random()
        if r < 0.1 and any(p.isdigit() for p in path):
            i = next(i for i, p in enumerate(path) if p.isdigit())
            path[i] = self.pick(["99", "-1", "²", "٣", "1.5", "0x1"])
        elif r < 0.15:
            path.insert(int(self.rng.integers(len(path) + 1)), "")
        elif r < 0.2:
            path += ["a"] * 40
        elif r < 0.25:
            path[-1] = self.pick(["x" * 300, "é", "unknown", " ", "\t"])
        key = ".".join(path)
        r = self.rng.random()
        if r < 0.3:
            value = _get(base, tuple(int(p) if p.isdigit() else p for p in path)) if key in {".".join(map(str, q)) for q in paths(base)} else 1
            raw = toml_value(self.pick([0, 1, 10_000, 1e-6, -1.0, 9999.0, 2**62] if isinstance(value, (int, float)) and not isinstance(value, bool) else PLAUSIBLE_STRINGS))
        elif r < 0.7:
            raw = toml_value(self.pick(HOSTILE))
        else:
            raw = self.pick(RAW_VALUES)
        sets = [f"{key}={raw}"] if self.rng.random() > 0.05 else [key]
        if self.rng.random() < 0.2:
            name2, other = self.pick(self.bases)
            sets.append(".".join(map(str, self.pick(paths(other)))) + "=" + toml_value(self.pick(HOSTILE)))
        return name, sets, f"--set {' --set '.join(s[:60] for s in sets)}"


def run_validate(args: list[str]) -> tuple[int | None, str, str, str | None]:
    from render_farm.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", *args])
    except BaseException:  # noqa: BLE001 - what the fuzz looks for
        return None, out.getvalue(), err.getvalue(), traceback.format_exc(limit=8)
    return code, out.getvalue(), err.getvalue(), None


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


KEYLESS_EXPECTED = ("cannot read the template", "larger than", "no such file", "the key path '' is empty")


def build_later(path: str, sets: list[str], tmp: Path) -> str | None:
    """Plan, build and manifest a template that validated; a traceback text, or None."""
    from greybox.errors import GreyboxError
    from procedural.scene_builder import build_scene
    from render_farm.job_outputs import build_manifest
    from render_farm.job_plan import build_graph
    from render_farm.job_request import JobRequest, resolve_shots

    try:
        shots = resolve_shots(JobRequest(command="render", templates=[path], overrides=sets))
        build_graph(shots, command="render", job_dir=tmp / "out")
        for shot in shots:
            build_scene(shot.template)
            build_manifest(shot={"name": shot.name, "source": shot.source, "template_hash": shot.template_hash,
                                 "resolved": shot.resolved, "overrides": shot.overrides},
                           frames=shot.frames, records={}, shot_files={}, stylized=True, models=None)
    except GreyboxError:
        return None
    except BaseException:  # noqa: BLE001
        return traceback.format_exc(limit=8)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=2000, help="of each kind: file mutants and --set mutants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-build", action="store_true", help="skip planning and building the templates that validate")
    parser.add_argument("--show", type=int, default=5, help="print this many examples of each failure")
    args = parser.parse_args()

    import warnings

    warnings.simplefilter("ignore")
    mutator = Mutator(args.seed)
    stats = collections.Counter()
    exit_codes = collections.Counter()
    failures: dict[str, list[str]] = collections.defaultdict(list)
    keyless = collections.Counter()
    slowest = (0.0, "")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        (tmp / "tiny.toml").write_text(TINY)
        targets = {name: name for name, _ in mutator.bases} | {"tiny": str(tmp / "tiny.toml")}
        for i in range(2 * args.mutants):
            if i % 2 == 0:
                kind = "file"
                name, text, what = mutator.file_mutant()
                path = tmp / f"mutant_{i}.toml"
                path.write_bytes(text)
                target, sets = str(path), []
            else:
                kind = "set"
                name, sets, what = mutator.set_mutant()
                target = targets[name]
            argv = [target, *[a for s in sets for a in ("--set", s)]]
            t0 = time.perf_counter()
            code, out, err, tb = run_validate(argv)
            json_code, json_out, json_err, json_tb = run_validate([*argv, "--json"])
            stats[f"{kind} mutants"] += 1
            exit_codes[(kind, code)] += 1
            for trace in (tb, json_tb):
                if trace:
                    stats["tracebacks in validate"] += 1
                    failures["traceback in validate"].append(f"{kind} {name}: {what}\n{trace}")
            if "Traceback" in err + json_err:
                stats["'Traceback' printed"] += 1
                failures["'Traceback' printed"].append(f"{kind} {name}: {what}\n{err[-800:]}")
            if code not in (0, 2, None) or json_code != code:
                failures["exit code"].append(f"{kind} {name}: {what}: text {code}, json {json_code}")
            if json_tb is None:
                try:
                    problems = strict_json(json_out)
                except ValueError as bad:
                    stats["outputs not strict JSON"] += 1
                    failures["not strict JSON"].append(f"{kind} {name}: {what}: {bad}: {json_out[:300]}")
                    problems = []
                stats["problems"] += len(problems)
                if code == 2 and not problems:
                    failures["exit 2 without a problem"].append(f"{kind} {name}: {what}")
                for p in problems:
                    if not p.get("key"):
                        expected = any(x in p.get("message", "") for x in KEYLESS_EXPECTED)
                        keyless["without a key path (nothing to name)" if expected else "without a key path"] += 1
                        if expected:
                            failures["(expected) problem without a key path"].append(f"{kind} {name}: {what}: {p['message'][:160]}")
                        if not expected:
                            failures["problem without a key path"].append(f"{kind} {name}: {what}: {p['message'][:200]}")
            if code == 0 and not args.no_build:
                stats["validated, then planned and built"] += 1
                trace = build_later(target, sets, tmp)
                if trace:
                    stats["tracebacks after validation"] += 1
                    failures["traceback after validation"].append(f"{kind} {name}: {what}\n{trace}")
            seconds = time.perf_counter() - t0
            if seconds > slowest[0]:
                slowest = (seconds, f"{kind} {name}: {what}")
            if kind == "file":
                path.unlink()
    total = time.perf_counter() - started

    print(f"template fuzz: seed {args.seed}, {2 * args.mutants} mutants in {total:.0f} s")
    print("| measure | count |")
    print("| --- | --- |")
    for key in ("file mutants", "set mutants", "problems", "validated, then planned and built"):
        print(f"| {key} | {stats[key]} |")
    for (kind, code), n in sorted(exit_codes.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"| {kind} mutants exiting {code if code is not None else 'with an exception'} | {n} |")
    for key in ("tracebacks in validate", "'Traceback' printed", "tracebacks after validation", "outputs not strict JSON"):
        print(f"| {key} | {stats[key]} |")
    for key in ("without a key path", "without a key path (nothing to name)"):
        print(f"| problems {key} | {keyless[key]} |")
    print(f"| slowest mutant | {slowest[0]:.2f} s ({slowest[1][:80]}) |")
    for kind, items in failures.items():
        print(f"\n## {kind}: {len(items)}")
        for item in items[: args.show]:
            print("-", item.rstrip()[:1500])
    sys.exit(1 if any(failures.get(k) for k in ("traceback in validate", "traceback after validation", "not strict JSON",
                                                 "'Traceback' printed", "exit code")) else 0)


if __name__ == "__main__":
    main()
