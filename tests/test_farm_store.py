"""The content-addressed store: keys, records written after outputs, corruption detection, views."""

from __future__ import annotations

import os
import time
from pathlib import Path

from greybox.frame_files import frame_name
from greybox.frame_ranges import chunk_frames, format_frames, parse_frames
from render_farm.job_plan import passes_inputs, stylize_batches, stylize_inputs
from render_farm.task_store import RECORD_NAME, TaskStore, unit_key

import pytest
from greybox.errors import InputError


def _commit(store: TaskStore, key: str, files: dict[str, bytes]) -> dict:
    staging = store.new_staging(key)
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    return store.commit(key, staging, {"note": "x"})


def test_commit_then_load_and_link(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 1})
    record = _commit(store, key, {"passes/0001.exr": b"exr", "control/seg/0001.png": b"png"})
    assert set(record["outputs"]) == {"passes/0001.exr", "control/seg/0001.png"}
    assert record["outputs"]["passes/0001.exr"]["size"] == 3
    loaded, reason = store.load_record(key)
    assert loaded == record and reason is None
    view = tmp_path / "view"
    store.link_into(key, record, view)
    assert (view / "passes/0001.exr").read_bytes() == b"exr"
    assert os.stat(view / "passes/0001.exr").st_ino == os.stat(store.unit_dir(key) / "passes/0001.exr").st_ino
    assert not any((store.root / "staging").iterdir())


def test_truncated_or_corrupted_output_is_detected(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 2})
    _commit(store, key, {"passes/0002.exr": b"0123456789"})
    path = store.unit_dir(key) / "passes/0002.exr"
    path.write_bytes(b"01234")
    record, reason = store.load_record(key)
    assert record is None and "has 5 bytes, its record says 10" in reason
    path.write_bytes(b"0123456780")
    record, reason = store.load_record(key)
    assert record is None and "sha256" in reason
    # Recomputing replaces the broken unit.
    fresh = _commit(store, key, {"passes/0002.exr": b"0123456789"})
    assert store.load_record(key)[0] == fresh


def test_unit_without_record_is_not_done(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("stylize", {"frame": 3})
    _commit(store, key, {"frames/0003.png": b"img"})
    (store.unit_dir(key) / RECORD_NAME).unlink()
    assert store.load_record(key) == (None, None)


def test_keys_follow_what_a_stage_reads():
    resolved = {"name": "a", "description": "d", "seed": 1, "objects": [{"position": [0, 0, 0]}],
                "render": {"fps": 24}, "passes": {}, "style": {"prompt": "one"}}
    prompt = {**resolved, "style": {"prompt": "two"}}
    moved = {**resolved, "objects": [{"position": [1, 0, 0]}]}
    assert passes_inputs(resolved) == passes_inputs(prompt)
    assert passes_inputs(resolved) != passes_inputs(moved)
    assert stylize_inputs(resolved) != stylize_inputs(prompt)
    assert unit_key("passes", {"f": 1}) != unit_key("passes", {"f": 1}, ["upstream"])


def test_frame_selection_parsing():
    assert parse_frames("1-3,7,5-6", 1, 24) == [1, 2, 3, 5, 6, 7]
    assert parse_frames(None, 3, 5) == [3, 4, 5]
    for bad in ("0-3", "20-30", "3-1", "a", "1,,2"):
        with pytest.raises(InputError, match="--frames"):
            parse_frames(bad, 1, 24)
    assert format_frames([1, 2, 3, 7]) == "1-3,7"
    assert frame_name(7) == "0007" and frame_name(12345) == "12345"
    # Chunks keep fixed boundaries whichever frames are selected.
    assert chunk_frames([3, 4, 5, 9], 4, 1) == [[3, 4], [5], [9]]


def test_stylize_batches_per_frame_fixed_and_sequences_whole():
    assert stylize_batches("per_frame", [1, 2, 3, 4, 5], 2, 1) == [[1, 2], [3, 4], [5]]
    # Batch boundaries are counted from frame_start, whichever frames are selected.
    assert stylize_batches("per_frame", [2, 3, 4], 2, 1) == [[2], [3, 4]]
    # flow_warp and keyframes: the shot's frames form one sequence (each frame builds on earlier ones).
    assert stylize_batches("flow_warp", [1, 2, 3], 4, 1) == [[1, 2, 3]]
    assert stylize_batches("keyframes", list(range(1, 25)), 4, 1) == [list(range(1, 25))]
    with pytest.raises(InputError, match="consecutive"):
        stylize_batches("keyframes", [1, 2, 5], 4, 1)


# -- commit safety: any number of jobs on one store -------------------------------------------------

def _staged(store: TaskStore, key: str, files: dict[str, bytes]):
    staging = store.new_staging(key)
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    return staging


def _pause_after_placing(monkeypatch, store: TaskStore, key: str, thread_name: str, placed, resume):
    """In thread ``thread_name``, stop right after the rename that puts unit ``key``'s folder in
    place (whichever os call the store uses) until ``resume`` is set: the widest window a writer has."""
    import threading

    final = str(store.unit_dir(key))
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def hooked(src, dst, *args, _real=real, **kwargs):
            out = _real(src, dst, *args, **kwargs)
            if threading.current_thread().name == thread_name and os.fspath(dst) == final and not placed.is_set():
                placed.set()
                assert resume.wait(30), "the other committer never finished"
            return out

        monkeypatch.setattr(os, name, hooked)


def test_a_committer_never_moves_another_writers_fresh_unit(tmp_path, monkeypatch):
    """Issue 16's race, made deterministic: writer A has just put its unit in place when writer B,
    which computed the same unit at the same time, commits. B must use A's unit (same key, same
    bytes), not move it aside; A's commit and a reader's link of A's record must still work."""
    import threading

    store = TaskStore(tmp_path / "store")
    key = unit_key("stylize", {"frame": 1})
    files = {"frames/0001.png": b"the same bytes"}
    placed, resume = threading.Event(), threading.Event()
    _pause_after_placing(monkeypatch, store, key, "writer-a", placed, resume)
    results: dict[str, object] = {}

    def writer_a():
        try:
            results["a"] = store.commit(key, _staged(store, key, files), {"by": "a"})
        except Exception as err:  # noqa: BLE001 - reported below
            results["a"] = err

    thread = threading.Thread(target=writer_a, name="writer-a")
    thread.start()
    assert placed.wait(30)
    inode = os.stat(store.unit_dir(key) / "frames/0001.png").st_ino
    try:
        record_b = store.commit(key, _staged(store, key, files), {"by": "b"})
        view_b = tmp_path / "view_b"
        store.link_into(key, record_b, view_b)
    finally:
        resume.set()
        thread.join(30)
    assert not isinstance(results["a"], Exception), results["a"]
    assert record_b == results["a"] and record_b["meta"] == {"by": "a"}  # the winner's unit
    assert os.stat(store.unit_dir(key) / "frames/0001.png").st_ino == inode  # never moved
    store.link_into(key, results["a"], tmp_path / "view_a")
    assert (view_b / "frames/0001.png").read_bytes() == (tmp_path / "view_a" / "frames/0001.png").read_bytes() == files["frames/0001.png"]
    assert store.load_record(key)[0] == record_b
    assert not any((store.root / "staging").iterdir())


def test_a_broken_unit_is_replaced_once_and_the_replacement_is_never_moved(tmp_path, monkeypatch):
    import threading

    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 5})
    good = {"passes/0005.exr": b"0123456789"}
    _commit(store, key, good)
    (store.unit_dir(key) / "passes/0005.exr").write_bytes(b"012345678X")  # corrupted in place
    assert store.load_record(key)[0] is None
    placed, resume = threading.Event(), threading.Event()
    _pause_after_placing(monkeypatch, store, key, "repairer-a", placed, resume)
    results: dict[str, object] = {}
    thread = threading.Thread(target=lambda: results.update(a=store.commit(key, _staged(store, key, good), {"by": "a"})),
                              name="repairer-a")
    thread.start()
    assert placed.wait(30)  # A holds the repair lock and has just put its replacement in place
    inode = os.stat(store.unit_dir(key) / "passes/0005.exr").st_ino
    try:
        record_b = store.commit(key, _staged(store, key, good), {"by": "b"})
    finally:
        resume.set()
        thread.join(30)
    assert record_b == results["a"] and record_b["meta"] == {"by": "a"}
    assert os.stat(store.unit_dir(key) / "passes/0005.exr").st_ino == inode
    assert store.load_record(key)[0] == record_b
    assert not any((store.root / "staging").iterdir())  # the broken copy was moved aside and deleted


COMMIT_MANY = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from render_farm.task_store import TaskStore
root, keys, seed, go = sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), Path(sys.argv[5])
store = TaskStore(root)
order = keys[seed * 5 % len(keys):] + keys[:seed * 5 % len(keys)]
if seed % 2:
    order.reverse()
view = Path(root).parent / f"view-{seed}"
errors = []
Path(f"{go}.ready{seed}").touch()
while not go.exists():
    time.sleep(0.005)
for key in order:
    rel, data = "out/" + key[:8], key.encode() * 100
    try:
        staging = store.new_staging(key)
        (staging / "out").mkdir()
        (staging / rel).write_bytes(data)
        record = store.commit(key, staging, {})
        store.link_into(key, record, view)
        if (view / rel).read_bytes() != data:
            errors.append(key[:8] + ": wrong bytes")
    except Exception as err:
        errors.append(f"{key[:8]}: {type(err).__name__}: {err}")
print(json.dumps(errors))
"""


def test_many_processes_commit_the_same_units_without_failure(tmp_path):
    """Processes committing the same units at once (each then linking and reading them), with some
    units broken beforehand: no failure, one intact unit per key, no staging folder left."""
    import json
    import subprocess
    import sys

    store = TaskStore(tmp_path / "store")
    keys = [unit_key("stylize", {"frame": i}) for i in range(24)]
    for key in keys[:4]:  # corrupted outputs
        _commit(store, key, {"out/" + key[:8]: b"stale"})
        (store.unit_dir(key) / ("out/" + key[:8])).write_bytes(b"stalX")
    for key in keys[4:6]:  # no record
        _commit(store, key, {"out/" + key[:8]: key.encode() * 100})
        (store.unit_dir(key) / RECORD_NAME).unlink()
    go = tmp_path / "go"
    root = str(Path(__file__).resolve().parents[1])
    procs = [subprocess.Popen([sys.executable, "-c", COMMIT_MANY, root, str(store.root), ",".join(keys), str(i), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.ready{i}").exists() for i in range(6)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert [e for out, _ in outputs for e in json.loads(out)] == []
    for key in keys:
        record, reason = store.load_record(key)
        assert record is not None, reason
    assert len(list((store.root / "objects").glob("*/*"))) == len(keys)
    assert not any((store.root / "staging").iterdir())


def test_a_unit_folder_appears_with_its_record(tmp_path, monkeypatch):
    """The record is written before the unit's folder is renamed into place, so no reader (or
    committer) ever finds a unit folder without its record while its writer is still at work."""
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 9})
    final = store.unit_dir(key)
    seen = []
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def hooked(src, dst, *args, _real=real, **kwargs):
            out = _real(src, dst, *args, **kwargs)
            if os.fspath(dst) == str(final):
                seen.append((final / RECORD_NAME).is_file())
            return out

        monkeypatch.setattr(os, name, hooked)
    _commit(store, key, {"passes/0009.exr": b"exr"})
    assert seen == [True]


# -- staging folders record their owner ---------------------------------------------------------------

def test_staging_folders_of_gone_owners_are_removed(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from render_farm.task_store import OTHER_HOST_STAGING_MAX_AGE_S, staging_owner

    store = TaskStore(tmp_path / "store")
    mine = store.new_staging("unit-mine")
    host, pid, started = staging_owner(mine.name)
    assert (host, pid) == (socket.gethostname(), os.getpid()) and started > 0
    # A process that made a staging folder and died (a killed worker).
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from render_farm.task_store import TaskStore\n"
            f"print(TaskStore({str(store.root)!r}).new_staging('unit-dead'))")
    dead = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    assert dead.is_dir() and staging_owner(dead.name)[1] != os.getpid()
    # This pid, but a process that started at another time (the pid was reused).
    reused = store.root / "staging" / f"unit-reused+{host}+{os.getpid()}+{started - 3600}+0"
    reused.mkdir()
    # Another host's: kept while recent, removed past the documented age; the same for names without an owner.
    other_new = store.root / "staging" / "unit-other+render-node-7+123+1700000000+0"
    other_old = store.root / "staging" / "unit-other-old+render-node-7+123+1700000000+1"
    legacy_old = store.root / "staging" / f"{'a' * 64}.123.0"
    for path in (other_new, other_old, legacy_old):
        path.mkdir()
    old = time.time() - OTHER_HOST_STAGING_MAX_AGE_S - 60
    for path in (other_old, legacy_old):
        os.utime(path, (old, old))
    assert store.clean_staging() == 4
    assert sorted(p.name for p in (store.root / "staging").iterdir()) == sorted([mine.name, other_new.name])


# -- code fingerprints ------------------------------------------------------------------------------

def _module_file(root: Path, name: str) -> Path | None:
    path = root / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _project_imports(root: Path, nodes) -> set[str]:
    """Every project module an import statement among ``nodes`` names (function-level ones too)."""
    import ast

    names = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                names.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                names.add(sub.module)
                names.update(f"{sub.module}.{a.name}" for a in sub.names)
    return {n for n in names if _module_file(root, n) is not None}


def _stage_closure(root: Path, fn_path: str) -> set[str]:
    """Project source files a task function can run: the imports of its module's top level, of the
    function and of the module's functions it calls, then every import of those modules, transitively."""
    import ast

    module, _, fn = fn_path.partition(":")
    tree = ast.parse(_module_file(root, module).read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    todo, seen_fns = [fn], set()
    while todo:
        name = todo.pop()
        if name in seen_fns:
            continue
        seen_fns.add(name)
        nodes.append(functions[name])
        todo.extend(n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions)
    stack, modules = list(_project_imports(root, nodes) - {module}), {module}  # only the task's part of its module
    while stack:
        name = stack.pop()
        if name in modules:
            continue
        modules.add(name)
        parts = name.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        stack.extend(_project_imports(root, [ast.parse(_module_file(root, name).read_text())]))
    return {_module_file(root, m).relative_to(root).as_posix() for m in modules}


def test_each_stage_fingerprint_covers_every_module_its_task_imports():
    from render_farm import job_plan
    from render_farm.code_fingerprint import PACKAGES_ROOT, STAGE_SOURCES, stage_source_files

    from render_farm import look_plan

    task_fns = {"scene": [job_plan.SCENE_FN], "glb": [job_plan.SCENE_FN], "cameras": [job_plan.SCENE_FN],
                "blend": [job_plan.SCENE_FN], "passes": [job_plan.PASSES_FN],
                "stylize": [job_plan.STYLIZE_FN, look_plan.GATHER_FN], "assemble": [job_plan.ASSEMBLE_FN],
                "look": [look_plan.LOOK_FN], "atlas": [look_plan.LOOK_FN], "textured": [look_plan.TEXTURED_FN]}
    assert set(task_fns) == set(STAGE_SOURCES)
    for stage, fns in task_fns.items():
        listed = {p.as_posix() for p in stage_source_files(stage)}
        for fn in fns:
            reached = _stage_closure(PACKAGES_ROOT, fn)
            assert reached - listed == set(), f"{stage}: add these to STAGE_SOURCES[{stage!r}]"
            assert "render_farm/stage_tasks.py" in reached
    # and the fingerprints are not all the same thing
    assert "stylize/npr_stylizer.py" not in {p.as_posix() for p in stage_source_files("passes")}
    assert "scenes/data/ade20k_palette.json" in {p.as_posix() for p in stage_source_files("passes")}


def test_a_changed_source_changes_the_keys_of_the_stages_that_run_it(tmp_path):
    import shutil

    from render_farm.code_fingerprint import PACKAGES_ROOT, STAGE_SOURCES, fingerprint_of

    root = tmp_path / "src"
    for package in ("greybox", "scenes", "procedural", "passes", "stylize", "render_farm"):
        shutil.copytree(PACKAGES_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: fingerprint_of(stage, root) for stage in STAGE_SOURCES}

    def touched(rel: str) -> set[str]:
        with open(root / rel, "a", encoding="utf-8") as handle:
            handle.write("\n# changed\n")
        after = {stage: fingerprint_of(stage, root) for stage in STAGE_SOURCES}
        changed = {s for s in STAGE_SOURCES if after[s] != before[s]}
        before.update(after)
        return changed

    scene = {"scene", "glb", "cameras", "blend"}  # the units the scene task writes
    look = {"look", "atlas", "textured"}  # a look's units, and the textures baked from it
    assert touched("stylize/npr_stylizer.py") == {"stylize"} | look
    assert touched("procedural/room_layout.py") == scene | {"textured"}  # later stages read the recorded scene
    assert touched("passes/pass_exr.py") == {"passes", "stylize", "assemble"} | look  # job_outputs names its channels
    assert touched("passes/line_art.py") == {"passes"}
    assert touched("render_farm/job_outputs.py") == {"assemble"}
    assert touched("scenes/data/ade20k_palette.json") == scene | {"passes", "stylize"} | look
    assert touched("render_farm/stage_tasks.py") == set(STAGE_SOURCES)
    assert touched("render_farm/job_runner.py") == set()  # the scheduler writes no unit


def test_sequence_frames_are_keyed_by_what_they_read():
    from render_farm.job_plan import stylize_unit_keys

    passes = {f: unit_key("passes", {"frame": f}) for f in range(1, 7)}
    base = {"style": {"prompt": "p"}}
    # per_frame: a frame is a frame, whichever others are rendered with it
    assert stylize_unit_keys("per_frame", [3, 4], base, passes)[3] == stylize_unit_keys("per_frame", [1, 2, 3, 4], base, passes)[3]
    # flow_warp: frame t reads the frames before it, not after
    short, long = stylize_unit_keys("flow_warp", [1, 2], base, passes), stylize_unit_keys("flow_warp", [1, 2, 3, 4], base, passes)
    late = stylize_unit_keys("flow_warp", [3, 4], base, passes)
    assert short == {f: long[f] for f in (1, 2)}
    assert late[3] != long[3] and late[4] != long[4]
    moved = {**passes, 2: unit_key("passes", {"frame": 2, "moved": True})}
    changed = stylize_unit_keys("flow_warp", [1, 2, 3, 4], base, moved)
    assert changed[1] == long[1] and all(changed[f] != long[f] for f in (2, 3, 4))
    # keyframes: every frame reads the whole sequence
    k_short, k_long = stylize_unit_keys("keyframes", [1, 2], base, passes), stylize_unit_keys("keyframes", [1, 2, 3, 4], base, passes)
    assert k_short[1] != k_long[1] and k_short[2] != k_long[2]
    k_changed = stylize_unit_keys("keyframes", [1, 2, 3, 4], base, {**passes, 4: moved[2]})
    assert all(k_changed[f] != k_long[f] for f in (1, 2, 3, 4))
    assert len({*long.values(), *k_long.values()}) == 8  # modes never share a unit
