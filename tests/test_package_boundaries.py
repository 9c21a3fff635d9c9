"""The one-way house: which package may import what.

- bpy only in ``procedural/`` and ``passes/``;
- torch, diffusers and transformers only in ``stylize/``, and there only inside functions; ray only
  in ``render_farm/``, inside functions (both are extras: ``greybox[diffusion]``, ``greybox[ray]``);
- nothing installed imports ``tests`` (test support lives in ``tests/support``, outside the wheel);
- ``stylize/`` never imports bpy or cv2 (it must run on a GPU machine with numpy 2 from the source
  tree), and importing any of its modules loads none of torch, diffusers, bpy or cv2.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("greybox", "scenes", "procedural", "passes", "stylize", "render_farm")


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
    for module, top_level in imports(path):
        if module == "bpy":
            assert package in ("procedural", "passes"), f"{path.relative_to(ROOT)} imports bpy"
        if module in ("torch", "diffusers", "transformers"):
            assert package == "stylize", f"{path.relative_to(ROOT)} imports {module}"
            assert not top_level, f"{path.relative_to(ROOT)} imports {module} at module level (keep it lazy)"
        if module == "ray":
            assert package == "render_farm", f"{path.relative_to(ROOT)} imports ray"
            assert not top_level, f"{path.relative_to(ROOT)} imports ray at module level (keep it lazy)"
        assert module != "tests", f"{path.relative_to(ROOT)} imports test support"
        if package == "stylize":
            assert module not in ("bpy", "cv2"), f"{path.relative_to(ROOT)} imports {module}"


def test_importing_stylize_loads_nothing_heavy():
    modules = sorted(p.stem for p in (ROOT / "stylize").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n    importlib.import_module('stylize.' + m)\n"
        "print('LOADED', sorted(m for m in ('bpy', 'cv2', 'torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
