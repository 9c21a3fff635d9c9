"""greybox writes and deletes only inside --out, the store and its own scratch files: a tampered
job.json or a planted symbolic link is refused (exit 2, naming it), never followed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from greybox.confined_files import UnsafePathError, link_or_copy, remove, write_bytes
from render_farm.cli import main
from render_farm.task_store import TaskStore, unit_key
from tests.support.tiny_templates import TINY


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """A finished passes job (frames 1-2) to copy and tamper with."""
    base = tmp_path_factory.mktemp("finished")
    template = base / "tiny.toml"
    template.write_text(TINY)
    args = ["passes", str(template), "--out", str(base / "out"), "--store", str(base / "store"), "--frames", "1-2"]
    assert main(args) == 0
    return {"base": base, "template": template, "args": args}


@pytest.fixture
def job(finished, tmp_path) -> dict:
    out = tmp_path / "out"
    shutil.copytree(finished["base"] / "out", out, symlinks=True)
    victim = tmp_path / "victim"
    for entry in ("passes", "frames", "control"):
        (victim / entry).mkdir(parents=True)
        (victim / entry / "keep.txt").write_text("the user's")
    (victim / "manifest.json").write_text("{}")
    store = str(finished["base"] / "store")
    return {"out": out, "victim": victim, "store": store, "template": str(finished["template"])}


def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _run(job, *extra, resume_only=False) -> int:
    if resume_only:
        return main(["passes", "--resume", "--out", str(job["out"]), "--store", job["store"], *extra])
    return main(["passes", job["template"], "--out", str(job["out"]), "--store", job["store"], "--frames", "1-2", *extra])


@pytest.mark.parametrize("folder", ["../victim", "ABSOLUTE", "..", ".", ".greybox", "a/b", "victim\x00"])
def test_a_record_pointing_elsewhere_is_refused_naming_the_field(job, capsys, folder):
    folder = str(job["victim"]) if folder == "ABSOLUTE" else folder
    record_path = job["out"] / "job.json"
    record = json.loads(record_path.read_text())
    record["shots"][0]["folder"] = folder
    record_path.write_text(json.dumps(record))
    before = _tree(job["victim"])
    for extra, resume_only in (((), True), (("--force", "--set", "render.fps=10"), False), ((), False)):
        capsys.readouterr()
        assert _run(job, *extra, resume_only=resume_only) == 2
        err = capsys.readouterr().err
        assert "shots.0.folder" in err and "Traceback" not in err and "job.json" in err
    assert _tree(job["victim"]) == before
    assert main(["inspect", str(job["out"])]) == 2


@pytest.mark.parametrize("field, value", [
    ("request.chunk_size", -3), ("request.threads", "2"), ("shots.0.frames", [1, 10**9]), ("shots.0.name", "../x"),
    ("shots", []), ("schema", 2), ("shots.0.resolved.render.frame_end", 10**30),
])
def test_other_tampered_fields_are_refused(job, capsys, field, value):
    record_path = job["out"] / "job.json"
    record = json.loads(record_path.read_text())
    node, *path = [record, *field.split(".")]
    for part in path[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[path[-1]] = value
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert _run(job, resume_only=True) == 2
    err = capsys.readouterr().err
    assert field.split(".")[-1] in err and "Traceback" not in err


def test_an_unreadable_record_is_refused(job, capsys):
    (job["out"] / "job.json").write_text("[" * 100_000)
    assert _run(job, resume_only=True) == 2
    assert "cannot read the job record" in capsys.readouterr().err


@pytest.mark.parametrize("planted", ["control", "passes", "frames", "control/seg", ".greybox", ".greybox/logs",
                                     "run_log.jsonl", "job.json", ".greybox/lock", "manifest.json"])
def test_a_planted_symlink_is_refused_before_anything_is_written(job, capsys, planted):
    out, victim = job["out"], job["victim"]
    target = victim / Path(planted).name
    if not target.exists():
        target.mkdir() if "." not in Path(planted).name or planted == ".greybox" else target.write_text("victim's file")
    link = out / planted
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    os.symlink(target, link)
    before, job_before = _tree(victim), (out / "run_log.jsonl").read_bytes() if planted != "run_log.jsonl" else b""
    capsys.readouterr()
    assert _run(job, "--frames", "1-3") == 2 if planted != "job.json" else _run(job) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and planted in err and "Traceback" not in err
    assert _tree(victim) == before
    if planted != "run_log.jsonl":
        assert (out / "run_log.jsonl").read_bytes() == job_before  # nothing written in the job either


def test_force_deletes_only_inside_the_job(job, capsys):
    """--force over different inputs clears the old views: a planted link inside passes/ is removed
    itself, never what it points at."""
    out, victim = job["out"], job["victim"]
    os.symlink(victim / "passes" / "keep.txt", out / "passes" / "0009.exr")
    os.symlink(victim / "frames", out / "passes" / "more")
    before = _tree(victim)
    assert _run(job, "--force", "--set", "render.fps=10", "--frames", "1") == 0
    assert _tree(victim) == before
    assert not (out / "passes" / "0009.exr").is_symlink() and sorted(p.name for p in (out / "passes").iterdir()) == ["0001.exr"]


def test_a_link_planted_during_a_run_is_not_followed(tmp_path):
    """The write-time guard: linking a store unit into a view whose control/ became a link."""
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 1})
    staging = store.new_staging(key)
    (staging / "control" / "seg").mkdir(parents=True)
    (staging / "control" / "seg" / "0001.png").write_bytes(b"png")
    record = store.commit(key, staging)
    view, elsewhere = tmp_path / "view", tmp_path / "elsewhere"
    view.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, view / "control")
    with pytest.raises(UnsafePathError, match="control is a symbolic link"):
        store.link_into(key, record, view)
    assert list(elsewhere.iterdir()) == []
    # A link where a file goes is replaced, not written through.
    os.unlink(view / "control")
    (view / "control" / "seg").mkdir(parents=True)
    os.symlink(elsewhere / "target.png", view / "control" / "seg" / "0001.png")
    store.link_into(key, record, view)
    assert not (view / "control" / "seg" / "0001.png").is_symlink() and not (elsewhere / "target.png").exists()
    with pytest.raises(UnsafePathError):
        write_bytes(view, "../outside.txt", b"x")
    with pytest.raises(UnsafePathError):
        link_or_copy(store.unit_dir(key) / "control/seg/0001.png", view, "/etc/x")
    remove(view, "control")
    assert not (view / "control").exists() and list(elsewhere.iterdir()) == []
