"""Blender 4.2 LTS, 4.5 LTS and 5.0: the compatibility layer, the version in keys and manifests, and
byte-identical outputs across releases.

The cross-release tests run this checkout under another Blender's Python and compare bytes with
this one's; they need the other environments' Pythons in ``GREYBOX_OTHER_BLENDER_PYTHONS``
(``os.pathsep``-separated; ``.ci/run`` sets it) and are skipped without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import version as distribution_version
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from passes import blender_compat
from test_passes_analytic import cube_scene
from tests.support.tiny_templates import two_boxes_template

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().parent / "render_with_this_blender.py"

TINY = two_boxes_template(resolution=32, frame_end=2, extra='[style]\nstylizer = "npr"\n')


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def another_supported_version() -> str:
    """A supported Blender release that is not the installed one."""
    installed = distribution_version("bpy")
    return next(v for v in ("4.2.23", "4.5.15", "5.0.1") if v != installed)


# ------------------------------------------------------------------------------------------------
# Versions: what is supported, how it is spelled, where it comes from
# ------------------------------------------------------------------------------------------------

# Written out by hand from the issue: 4.2.x, 4.5.x and 5.0.x, nothing else.
RELEASES = [
    ("4.2.0", True), ("4.2.23", True), ("4.5.0", True), ("4.5.15", True), ("5.0.0", True), ("5.0.1", True),
    ("3.6.5", False), ("4.1.1", False), ("4.3.0", False), ("4.4.0", False), ("5.1.0", False), ("6.0.0", False),
]


@pytest.mark.parametrize("release, supported", RELEASES)
def test_the_dependency_range_and_the_runtime_check_admit_the_same_releases(release, supported):
    from packaging.specifiers import SpecifierSet

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bpy_requirement = [d for d in dependencies if d.replace(" ", "").startswith("bpy")]
    assert bpy_requirement == [blender_compat.BPY_REQUIREMENT]
    assert (release in SpecifierSet(blender_compat.BPY_REQUIREMENT[len("bpy"):])) is supported
    if supported:
        assert blender_compat.check_supported(release) == release
    else:
        with pytest.raises(blender_compat.UnsupportedBlenderError, match="4.2.x, 4.5.x, 5.0.x"):
            blender_compat.check_supported(release)


def test_version_spellings_and_exr_channel_names():
    assert blender_compat.parse_version("4.2.23 LTS") == (4, 2, 23)
    assert blender_compat.parse_version("5.0") == (5, 0, 0)
    assert blender_compat.format_version((4, 5, 15)) == "4.5.15"
    with pytest.raises(ValueError):
        blender_compat.parse_version("LTS")
    assert blender_compat.canonical_channel_name("ViewLayer.IndexOB.X") == "ViewLayer.Object Index.X"
    for unchanged in ("ViewLayer.Object Index.X", "ViewLayer.Depth.Z", "ViewLayer.Combined.R", "IndexOB"):
        assert blender_compat.canonical_channel_name(unchanged) == unchanged


def test_the_running_blender_is_the_installed_distribution():
    import bpy

    installed = distribution_version("bpy")
    assert blender_compat.installed_blender_version() == installed
    assert blender_compat.running_blender_version() == installed
    assert bpy.app.version_string.startswith(installed)


# ------------------------------------------------------------------------------------------------
# The Blender side on this release
# ------------------------------------------------------------------------------------------------


def test_the_camera_moves_on_this_blender():
    """On 4.5 the pre-slot keyframing call runs without error and leaves the camera still."""
    import bpy

    from passes.blender_render import PassRenderer

    scene = cube_scene(width=48, height=32)
    renderer = PassRenderer(scene, threads=2)
    first, second = renderer.render(1), renderer.render(2)
    renderer.close()
    camera = bpy.context.scene.camera
    anim = camera.animation_data
    if hasattr(anim, "action_slot"):  # 4.4 and later: keys live in the slot the camera is assigned
        assert anim.action_slot is not None
    for frame in (1, 2, 3):
        bpy.context.scene.frame_set(frame)
        expected = scene.camera.positions[scene.camera.index(frame)]  # the track, not Blender
        np.testing.assert_allclose(np.array(camera.matrix_world.translation), expected, atol=1e-5)
    step = np.linalg.norm(scene.camera.positions[scene.camera.index(2)] - scene.camera.positions[scene.camera.index(1)])
    assert step > 0.05
    assert not np.array_equal(first.depth, second.depth)
    assert np.abs(second.flow_backward[second.foreground]).max() > 0.1  # the vector pass sees the motion too


def test_an_unsupported_blender_is_refused_before_anything_is_written(tiny, tmp_path, monkeypatch, capsys):
    from passes import blender_entry
    from passes.blender_render import PassRenderer

    monkeypatch.setattr(blender_compat, "running_blender_version", lambda: "4.1.1")
    with pytest.raises(blender_compat.UnsupportedBlenderError):
        PassRenderer(cube_scene(width=16, height=16))
    out = tmp_path / "out"
    assert blender_entry.main(["blender_entry.py", "--", str(tiny), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Blender 4.1.1" in err and "4.2.x, 4.5.x, 5.0.x" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# The version in store keys and manifests
# ------------------------------------------------------------------------------------------------


def _graph(tiny: Path, monkeypatch, blender: str, command: str = "render"):
    from render_farm.job_plan import build_graph
    from render_farm.job_request import JobRequest, resolve_shots

    monkeypatch.setattr(blender_compat, "installed_blender_version", lambda: blender)
    shots = resolve_shots(JobRequest(command=command, templates=[str(tiny)]))
    return build_graph(shots, command=command, job_dir=tiny.parent / "job")


def test_passes_keys_name_the_blender_version(tiny, monkeypatch):
    installed, other = distribution_version("bpy"), another_supported_version()
    ours, theirs = _graph(tiny, monkeypatch, installed), _graph(tiny, monkeypatch, other)

    def units(graph, kind):
        return {u for t in graph.tasks.values() if t.kind == kind for u in t.units}

    assert units(ours, "passes").isdisjoint(units(theirs, "passes"))
    assert units(ours, "stylize").isdisjoint(units(theirs, "stylize"))  # they name the passes upstream
    # the scene stage: scene.npz, layout.json and cameras.json are numpy's; scene.glb is Blender's exporter's
    for name in ("scene", "cameras"):
        assert {u for u in units(ours, "scene") if u[0] == name} == {u for u in units(theirs, "scene") if u[0] == name}
    assert {u for u in units(ours, "scene") if u[0] == "glb"}.isdisjoint({u for u in units(theirs, "scene") if u[0] == "glb"})
    assert {t.params["blender"] for t in ours.tasks.values() if t.kind == "passes"} == {installed}


def test_a_worker_with_another_blender_commits_nothing(tiny, tmp_path, monkeypatch, capsys):
    """The driver keys the passes for another release than the workers run: the job fails naming
    both, and the store holds no passes unit."""
    from render_farm.cli import main

    other = another_supported_version()
    monkeypatch.setattr(blender_compat, "installed_blender_version", lambda: other)
    store, out = tmp_path / "store", tmp_path / "out"
    code = main(["passes", str(tiny), "--out", str(out), "--store", str(store), "--workers", "1", "--retries", "0"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"runs Blender {distribution_version('bpy')}" in err and f"keyed for Blender {other}" in err
    assert not list((store / "objects").rglob("*.exr")) and not (out / "passes").exists()


def test_a_unit_made_with_another_blender_is_not_committed(tmp_path):
    from render_farm.task_store import TaskStore
    from render_farm.task_worker import TaskContext

    ctx = TaskContext({"task_id": "passes/0001-0001", "units": [("1", "k" * 64)], "store": str(tmp_path / "store"),
                       "params": {"blender": "4.2.23"}})
    staging = ctx.staging("1")
    (staging / "passes").mkdir()
    (staging / "passes" / "0001.exr").write_bytes(b"exr")
    with pytest.raises(RuntimeError, match="keyed for Blender 4.2.23"):
        ctx.commit("1", staging, {"bpy": "5.0.1"})
    assert TaskStore(tmp_path / "store").read_record("k" * 64) is None
    assert ctx.commit("1", staging, {"bpy": "4.2.23"})["meta"]["bpy"] == "4.2.23"


def test_the_manifest_records_the_release_and_another_release_is_a_different_input(tiny, tmp_path, monkeypatch, capsys):
    from render_farm.cli import main

    out, store = tmp_path / "out", str(tmp_path / "store")
    assert main(["passes", str(tiny), "--out", str(out), "--store", store, "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["bpy"] == distribution_version("bpy")
    before = _files(out)
    capsys.readouterr()

    other = another_supported_version()
    monkeypatch.setattr(blender_compat, "installed_blender_version", lambda: other)
    assert main(["passes", str(tiny), "--out", str(out), "--store", store]) == 2
    assert f"blender: {distribution_version('bpy')} -> {other}" in capsys.readouterr().err
    assert main(["passes", "--resume", "--out", str(out), "--store", store]) == 2
    assert f"was rendered with Blender {distribution_version('bpy')}" in capsys.readouterr().err
    assert _files(out) == before  # nothing rewritten


def test_a_driver_without_bpy_exits_2_before_writing(tiny, tmp_path, monkeypatch, capsys):
    import importlib.metadata

    from render_farm.cli import main

    def no_bpy(name):
        if name == "bpy":
            raise importlib.metadata.PackageNotFoundError(name)
        return distribution_version(name)

    monkeypatch.delitem(sys.modules, "bpy", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", no_bpy)
    out = tmp_path / "out"
    assert main(["passes", str(tiny), "--out", str(out), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "bpy is not installed" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "store").exists()


# ------------------------------------------------------------------------------------------------
# .blend files: which release saved them
# ------------------------------------------------------------------------------------------------


def test_blend_headers_name_the_release_that_saved_them(tmp_path):
    import bpy

    running = tuple(bpy.app.version[:2])
    for compress in (False, True):
        path = tmp_path / f"saved_{compress}.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=compress, copy=True)
        assert blender_compat.blend_file_version(path) == running
        assert blender_compat.check_blend_readable(path) == running
    # Header layouts as 4.2 and 5.0 write them (checked against files those releases saved).
    (tmp_path / "v42.blend").write_bytes(b"BLENDER-v402REND" + bytes(32))
    (tmp_path / "v50.blend").write_bytes(b"BLENDER17-01v0500" + bytes(32))
    assert blender_compat.blend_file_version(tmp_path / "v42.blend") == (4, 2)
    assert blender_compat.blend_file_version(tmp_path / "v50.blend") == (5, 0)
    with pytest.raises(InputError, match="saved by Blender 5.0.*cannot open"):
        blender_compat.check_blend_readable(tmp_path / "v50.blend", running=(4, 2))
    assert blender_compat.check_blend_readable(tmp_path / "v50.blend", running=(4, 5)) == (5, 0)
    (tmp_path / "text.blend").write_text("not a blend")
    with pytest.raises(InputError, match="not a .blend file"):
        blender_compat.blend_file_version(tmp_path / "text.blend")


CENTIMETRE_USDA = textwrap.dedent("""\
    #usda 1.0
    (
        defaultPrim = "Root"
        metersPerUnit = 0.01
        upAxis = "Z"
    )
    def Xform "Root"
    {
        def Mesh "Triangle"
        {
            int[] faceVertexCounts = [3]
            int[] faceVertexIndices = [0, 1, 2]
            point3f[] points = [(0, 0, 0), (100, 0, 0), (0, 100, 0)]
        }
    }
    """)


def test_the_usd_importer_applies_meters_per_unit_where_greybox_says_it_does(tmp_path):
    """A triangle 100 units wide in a centimetre stage: 1 m where the importer converts units, 100 m on 4.2."""
    import bpy

    path = tmp_path / "centimetres.usda"
    path.write_text(CENTIMETRE_USDA)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.usd_import(filepath=str(path))
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    width = max((o.matrix_world @ v.co).x for o in meshes for v in o.data.vertices)
    applies = blender_compat.usd_import_applies_meters_per_unit(bpy)
    assert applies is (tuple(bpy.app.version[:2]) >= (4, 5))
    assert width == pytest.approx(1.0 if applies else 100.0, abs=1e-5)


# ------------------------------------------------------------------------------------------------
# Across releases: the same bytes
# ------------------------------------------------------------------------------------------------


def other_pythons() -> list[str]:
    listed = os.environ.get("GREYBOX_OTHER_BLENDER_PYTHONS", "")
    return [p for p in listed.split(os.pathsep) if p]


def _run(python: str, *args: str) -> str:
    """Run the helper under ``python``; return the Blender version it reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([python, str(HELPER), *args], capture_output=True, text=True, timeout=600, cwd=str(ROOT), env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("BLENDER ")][-1].split()[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_same_files(ours: Path, theirs: Path, expected_count: int, may_differ: tuple[str, ...] = ()) -> None:
    a, b = _files(ours), _files(theirs)
    assert sorted(a) == sorted(b) and len(a) == expected_count
    differing = [rel for rel in a if a[rel] != b[rel] and rel not in may_differ]
    assert not differing, f"files differ between releases: {differing}"


needs_other_blender = pytest.mark.skipif(
    not other_pythons(), reason="set GREYBOX_OTHER_BLENDER_PYTHONS to other bpy environments' Pythons (.ci/run does)")
OTHERS = other_pythons() or ["none"]
SMALL = ["--set", "render.resolution=[128, 96]"]


@pytest.fixture(scope="module")
def release_of():
    cache: dict[str, str] = {}

    def release(python: str) -> str:
        if python not in cache:
            cache[python] = subprocess.run(
                [python, "-c", "import importlib.metadata as m; print(m.version('bpy'))"],
                capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        return cache[python]

    return release


def _distinct(python: str, release_of) -> None:
    if release_of(python) == distribution_version("bpy"):
        pytest.skip(f"{python} runs the same Blender {release_of(python)} as this Python")


@needs_other_blender
@pytest.mark.parametrize("other", OTHERS)
def test_procedural_scenes_are_identical_across_releases(other, tmp_path, release_of):
    _distinct(other, release_of)
    templates = ("living_room", "bedroom")
    assert _run(sys.executable, "scene", str(tmp_path / "ours"), *templates) == distribution_version("bpy")
    assert _run(other, "scene", str(tmp_path / "theirs"), *templates) == release_of(other)
    _assert_same_files(tmp_path / "ours", tmp_path / "theirs", expected_count=2)


@needs_other_blender
@pytest.mark.parametrize("other", OTHERS)
def test_passes_from_one_scene_file_are_identical_across_releases(other, tmp_path, release_of):
    """One scene.npz (built here), rendered by this Blender and by the other one."""
    from procedural.scene_builder import build_scene
    from scenes.template_loading import load_template

    _distinct(other, release_of)
    template = load_template("bedroom", [SMALL[1]]).template
    scene_file = tmp_path / "scene.npz"
    build_scene(template).save_npz(scene_file)
    args = ("npz", str(scene_file), "bedroom")
    _run(sys.executable, *args, str(tmp_path / "ours"), "1,2", *SMALL)
    _run(other, *args, str(tmp_path / "theirs"), "1,2", *SMALL)
    controls = len(template.passes.control)
    _assert_same_files(tmp_path / "ours", tmp_path / "theirs", expected_count=2 * (1 + controls) + 1)
    exr = _files(tmp_path / "ours")
    assert exr["passes/0001.exr"] != exr["passes/0002.exr"]  # the camera moves on both releases


@needs_other_blender
@pytest.mark.parametrize("other", OTHERS)
def test_blender_entry_outputs_are_identical_across_releases(other, tmp_path, release_of):
    """``blender -b -P passes/blender_entry.py`` as each release's Python runs it."""
    _distinct(other, release_of)
    outputs = {}
    for side, python in (("ours", sys.executable), ("theirs", other)):
        out = tmp_path / side
        cmd = [python, str(ROOT / "passes" / "blender_entry.py"), "--", "living_room", "--out", str(out),
               "--frames", "1-2", *SMALL]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "(Blender " in proc.stdout
        outputs[side] = out
    # the passes, control images, cameras.json, scene.npz and layout.json are the same bytes; scene.glb is
    # each release's own glTF exporter (it names itself and its version in the file)
    _assert_same_files(outputs["ours"], outputs["theirs"], expected_count=2 * 5 + 1 + 3, may_differ=("scene/scene.glb",))


@needs_other_blender
@pytest.mark.parametrize("other", OTHERS)
def test_a_blend_saved_by_5_0_is_refused_by_4_2_and_opens_in_4_5(other, tmp_path, release_of):
    _distinct(other, release_of)
    pythons = {release_of(other)[:3]: other, distribution_version("bpy")[:3]: sys.executable}
    if "5.0" not in pythons or len(pythons) < 2:
        pytest.skip("needs 5.0 and an LTS release")
    _run(pythons["5.0"], "blend", str(tmp_path))
    reader = next(p for series, p in pythons.items() if series != "5.0")
    probe = textwrap.dedent(f"""\
        import bpy
        from greybox.errors import InputError
        from passes.blender_compat import blend_file_version, check_blend_readable
        path = {str(tmp_path / "saved.blend")!r}
        assert blend_file_version(path) == (5, 0)
        try:
            bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
            opened = "triangle" in bpy.data.objects
        except RuntimeError:
            opened = False
        try:
            check_blend_readable(path)
            refused = False
        except InputError as err:
            refused = True
            print("MESSAGE", err)
        print("RESULT", opened, refused)
        """)
    proc = subprocess.run([reader, "-c", probe], capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")][-1]
    reader_release = release_of(other) if reader == other else distribution_version("bpy")
    if reader_release.startswith("4.2."):
        assert result == "RESULT False True"  # 4.2 cannot open it, and greybox says so first
    else:
        assert result == "RESULT True False"  # 4.5 LTS reads 5.0's format
