"""The one-way house: which package may import what, as an allow-list.

Data flows template -> scene -> passes -> frames, so each package may import only the packages
upstream of it:

- ``greybox`` (errors, atomic files, frame ranges and file names, pixel masks): nothing of ours;
- ``scenes`` (the template format and the scene data model every stage reads): ``greybox``;
- ``procedural`` (the builders): ``greybox``, ``scenes``;
- ``passes`` (the Blender view: the scene stage, the passes): ``greybox``, ``scenes``, ``procedural``;
- ``stylize``: ``greybox``, ``scenes``, ``passes`` (the pass files it reads), never ``procedural``:
  it reads the recorded scene and never builds one;
- ``render_farm`` (jobs, CLI): anything; nothing imports ``render_farm``.

Third-party: bpy (and Blender's ``mathutils``, ``bpy_extras``, ``addon_utils``) only in
``procedural/`` and ``passes/``; torch, diffusers and transformers only in ``stylize/``, and there
only inside functions; ray only in ``render_farm/``, inside functions (both are extras:
``greybox[diffusion]``, ``greybox[ray]``); nothing installed imports ``tests`` (test support lives
in ``tests/support``, outside the wheel); ``stylize/`` never imports bpy or cv2 (it must run on a
GPU machine with numpy 2 from the source tree), and importing any of its modules, or any of
``scenes/``, loads none of torch, diffusers, bpy or cv2.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("greybox", "scenes", "procedural", "passes", "stylize", "render_farm")
ALLOWED = {
    "greybox": {"greybox"},
    "scenes": {"greybox", "scenes"},
    "procedural": {"greybox", "scenes", "procedural"},
    "passes": {"greybox", "scenes", "procedural", "passes"},
    "stylize": {"greybox", "scenes", "passes", "stylize"},
    "render_farm": set(PACKAGES),
}
BLENDER_MODULES = ("bpy", "mathutils", "bpy_extras", "addon_utils")
HEAVY = ("bpy", "cv2", "torch", "diffusers", "transformers")


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module imported, whether the import is at module level) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, top_level: bool):
        for child in ast.iter_child_nodes(node):
            inside = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module.split(".")[0], top_level))
            visit(child, inside)

    visit(tree, True)
    return found


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package, path", list(sources()), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_imports_respect_the_stages(package, path):
    where = path.relative_to(ROOT)
    for module, top_level in imports(path):
        if module in PACKAGES:
            assert module in ALLOWED[package], (
                f"{where} imports {module}: {package}/ may import only {', '.join(sorted(ALLOWED[package]))}")
        if module in BLENDER_MODULES:
            assert package in ("procedural", "passes"), f"{where} imports {module}"
        if module in ("torch", "diffusers", "transformers"):
            assert package == "stylize", f"{where} imports {module}"
            assert not top_level, f"{where} imports {module} at module level (keep it lazy)"
        if module == "ray":
            assert package == "render_farm", f"{where} imports ray"
            assert not top_level, f"{where} imports ray at module level (keep it lazy)"
        assert module != "tests", f"{where} imports test support"
        if package == "stylize":
            assert module not in ("bpy", "cv2"), f"{where} imports {module}"


def test_the_allow_list_catches_a_planted_import(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from procedural.scene_builder import build_scene\n    import render_farm.cli\n")
    found = [m for m, _ in imports(planted)]
    assert found == ["procedural", "render_farm"]
    assert "procedural" not in ALLOWED["stylize"] and all("render_farm" not in ALLOWED[p] for p in PACKAGES[:-1])


@pytest.mark.parametrize("package", ["stylize", "scenes"])
def test_importing_the_package_loads_nothing_heavy(package):
    modules = sorted(p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n    importlib.import_module({package!r} + '.' + m)\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
