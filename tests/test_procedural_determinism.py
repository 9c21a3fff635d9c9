"""Determinism of the procedural stage: no nondeterministic sources in generator code, the same
template gives the same geometry (in one process and across processes), one object's parameter
moves nothing else, and seed 0 is a seed."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

from procedural.scene_builder import build_scene
from scenes.template_loading import bundled_templates, load_template

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINTED_PACKAGES = ("procedural", "scenes")

BANNED_NP_RANDOM = {
    "seed", "rand", "randn", "randint", "random", "random_sample", "ranf", "sample", "uniform", "normal",
    "choice", "shuffle", "permutation", "integers", "bytes", "get_state", "set_state", "RandomState",
}
BANNED_TIME = {"time", "perf_counter", "monotonic", "time_ns", "perf_counter_ns", "monotonic_ns", "process_time"}
BANNED_DATETIME = {"now", "today", "utcnow"}


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of Name/Attribute nodes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def nondeterminism_problems(source: str, filename: str = "<string>") -> list[str]:
    """Every use of a nondeterministic source in ``source``: stdlib random, numpy's global RNG,
    an unseeded default_rng, the wall clock, uuid."""
    tree = ast.parse(source, filename)
    problems = []

    def report(node, what):
        problems.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in ("random", "uuid", "secrets"):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module.split(".")[0] in ("random", "uuid", "secrets"):
                report(node, f"from {module} import ...")
            elif module == "numpy.random" and names & (BANNED_NP_RANDOM | {"default_rng"}):
                report(node, f"from numpy.random import {', '.join(sorted(names))}")
            elif module == "time" and names & BANNED_TIME:
                report(node, f"from time import {', '.join(sorted(names & BANNED_TIME))}")
            elif module == "datetime" and names & {"datetime", "date"}:
                report(node, "from datetime import datetime/date (wall clock)")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            parts = dotted.split(".")
            if len(parts) >= 3 and parts[-3] in ("np", "numpy") and parts[-2] == "random" and parts[-1] in BANNED_NP_RANDOM:
                report(node, f"global numpy RNG: {dotted}")
            elif len(parts) == 2 and parts[0] == "time" and parts[1] in BANNED_TIME:
                report(node, f"wall clock: {dotted}")
            elif parts[-1] in BANNED_DATETIME and any(p in ("datetime", "date") for p in parts[:-1]):
                report(node, f"wall clock: {dotted}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            if name.split(".")[-1] == "default_rng" and not node.args and not node.keywords:
                report(node, f"{name}() without a seed")
    return problems


def _linted_files() -> list[pathlib.Path]:
    return sorted(p for pkg in LINTED_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_lint_bans_nondeterministic_sources_in_generator_code():
    files = _linted_files()
    assert any(p.name == "scene_builder.py" for p in files)
    problems = []
    for path in files:
        problems += nondeterminism_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert problems == [], "nondeterministic sources in generator code:\n" + "\n".join(problems)


@pytest.mark.parametrize("snippet", [
    "import random\n",
    "from random import choice\n",
    "import numpy as np\nx = np.random.rand(3)\n",
    "import numpy as np\nnp.random.seed(0)\n",
    "import numpy\nnumpy.random.shuffle(a)\n",
    "import numpy as np\nx = np.random.choice([1, 2])\n",
    "import numpy as np\nx = np.random.uniform(0, 1)\n",
    "import numpy as np\nrng = np.random.default_rng()\n",
    "from numpy.random import default_rng\nrng = default_rng()\n",
    "from numpy.random import randint\n",
    "import time\nt = time.time()\n",
    "import time\nt = time.perf_counter()\n",
    "import time\nt = time.monotonic()\n",
    "from time import perf_counter\n",
    "import datetime\nd = datetime.datetime.now()\n",
    "from datetime import datetime\nd = datetime.today()\n",
    "import uuid\nu = uuid.uuid4()\n",
    "from uuid import uuid4\n",
])
def test_lint_catches_planted_bad_snippet(snippet):
    assert nondeterminism_problems(snippet), f"the lint missed: {snippet!r}"


def test_lint_accepts_seeded_generators():
    good = (
        "import numpy as np\n"
        "from scenes.scene_data import object_rng\n"
        "rng = object_rng(0, 'sofa')\n"
        "x = rng.random(); y = rng.uniform(0, 1); z = rng.choice([1, 2]); rng.shuffle(a)\n"
        "g = np.random.default_rng(5)\n"
        "h = np.random.Generator(np.random.PCG64(7))\n"
    )
    assert nondeterminism_problems(good) == []


# --------------------------------------------------------------------------------------------
# Build twice
# --------------------------------------------------------------------------------------------

BUNDLED = [name for name, _ in bundled_templates()]


def _scene(name: str, overrides=()):
    return build_scene(load_template(name, list(overrides)).template)


@pytest.mark.parametrize("name", BUNDLED)
def test_build_twice_same_geometry_hash(name):
    a, b = _scene(name), _scene(name)
    assert a.geometry_hash() == b.geometry_hash()
    assert a.object_hashes() == b.object_hashes()
    assert json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)


_HASH_SCRIPT = (
    "import json, sys\n"
    "sys.path.insert(0, '.')\n"
    "from procedural.scene_builder import build_scene\n"
    "from scenes.template_loading import bundled_templates, load_template\n"
    "out = {n: build_scene(load_template(n).template).geometry_hash() for n, _ in bundled_templates()}\n"
    "print(json.dumps(out, sort_keys=True))\n"
)


def test_build_in_two_processes_same_geometry_hash():
    results = []
    for hash_seed in ("0", "12345"):  # also shows no dependence on str hash randomisation
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    in_process = {n: _scene(n).geometry_hash() for n in BUNDLED}
    assert results[0] == in_process


# --------------------------------------------------------------------------------------------
# One parameter moves one object
# --------------------------------------------------------------------------------------------


def _furniture_index(name: str, piece: str) -> int:
    furniture = load_template(name).template.generator.room.furniture
    return next(i for i, f in enumerate(furniture) if f.stable_name == piece)


@pytest.mark.parametrize("template, piece, override", [
    ("living_room", "rug", "size=[1.9, 1.3, 0.012]"),
    ("living_room", "painting", "size=[0.7, 0.03, 0.5]"),
    ("bedroom", "rug", "size=[1.7, 1.2, 0.01]"),
    ("bedroom", "plant", "size=[0.5, 0.5, 1.0]"),
])
def test_changing_one_object_leaves_every_other_object_unchanged(template, piece, override):
    index = _furniture_index(template, piece)
    before = _scene(template).object_hashes()
    after = _scene(template, [f"generator.room.furniture.{index}.{override}"]).object_hashes()
    assert before.keys() == after.keys()
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == [piece]


def test_seed_zero_works_and_differs_from_seed_one():
    zero = _scene("living_room", ["seed=0"])
    one = _scene("living_room", ["seed=1"])
    assert zero.seed == 0 and one.seed == 1
    assert zero.geometry_hash() != one.geometry_hash()
    assert zero.geometry_hash() == _scene("living_room", ["seed=0"]).geometry_hash()
    # the shell does not depend on the seed; the furniture does
    h0, h1 = zero.object_hashes(), one.object_hashes()
    assert h0["room.floor"] == h1["room.floor"]
    assert h0["sofa"] != h1["sofa"]
