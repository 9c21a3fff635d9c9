"""Failures end cleanly: disk full under --out (exit 1, one line, no temporary file left, resume
completes), an unwritable --out (exit 2 naming the folder), and the same command plus --resume.

The default suite injects ENOSPC and EROFS at the OS calls; the real-mount variants (a small tmpfs,
a read-only mount) run where mounting is permitted (root with CAP_SYS_ADMIN) and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest

from render_farm.cli import main
from tests.support.tiny_templates import TINY

TEMPLATE = TINY.replace("frame_end = 4", "frame_end = 6")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """A clean render of the template, and the store it filled (later runs reuse its units)."""
    base = tmp_path_factory.mktemp("reference")
    template = base / "tiny.toml"
    template.write_text(TEMPLATE)
    args = ["render", str(template), "--store", str(base / "store"), "--chunk-size", "2"]
    assert main([*args, "--out", str(base / "out")]) == 0
    return {"template": template, "args": args, "store": base / "store", "files": _view_files(base / "out")}


def _view_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith(".greybox")
            and p.name not in ("job.json", "run_log.jsonl", "review.html",  # the review page holds this run's timings
                               "version.json")}  # a version's entry says what ran for it


def _temporary_files(out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in out.rglob(".*") if p.name != ".greybox"]


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A real tmpfs mounted at ``path`` (skip the test where mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"cannot run mount ({err})")
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.decode(errors='replace').strip()[:120]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _disk_full_then_resume(reference, out: Path, capsys, make_room) -> None:
    args = [*reference["args"], "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("greybox:")]
    assert len(err) == 1 and "no space left" in err[0] and str(out) in err[0], err
    assert "Traceback" not in "\n".join(err)
    assert _temporary_files(out) == []
    make_room()
    assert main([*args, "--resume"]) == 0
    assert _temporary_files(out) == []
    assert _view_files(out) == reference["files"]


def test_disk_full_under_out_injected(reference, tmp_path, capsys, monkeypatch):
    """The store is elsewhere (hard links fail with EXDEV, so files are copied) and the 4th copy runs
    out of space half-way: exit 1 naming the file, its partial copy removed; resume completes."""
    real_sendfile, copies = os.sendfile, []

    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def sendfile(out_fd, in_fd, offset, count):
        copies.append(count)
        if len(copies) == 4:
            os.write(out_fd, b"\0" * (count // 2))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "link", cross_device)
    monkeypatch.setattr(os, "sendfile", sendfile)
    _disk_full_then_resume(reference, tmp_path / "out", capsys, make_room=monkeypatch.undo)
    assert len(copies) >= 4


def test_disk_full_under_out_on_a_real_small_tmpfs(reference, tmp_path, capsys):
    with _tmpfs(tmp_path / "small", "size=512k") as mount:
        def grow():
            subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True, capture_output=True)

        _disk_full_then_resume(reference, mount / "out", capsys, make_room=grow)


def _refused_as_read_only(reference, out: Path, capsys, folder: Path) -> None:
    capsys.readouterr()
    assert main([*reference["args"], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "read-only file system" in err and "Traceback" not in err


def test_unwritable_out_injected(reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro" / "out"
    (tmp_path / "ro").mkdir()
    # The check before writing: access() says no and the file system is mounted read-only.
    real_access, real_statvfs = os.access, os.statvfs

    class ReadOnly:
        def __init__(self, st):
            self._st = st
            self.f_flag = st.f_flag | os.ST_RDONLY

        def __getattr__(self, name):
            return getattr(self._st, name)

    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(tmp_path / "ro")) else real_access(p, mode, **kw))
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly(real_statvfs(p)) if str(p).startswith(str(tmp_path / "ro")) else real_statvfs(p))
    _refused_as_read_only(reference, out, capsys, tmp_path / "ro")
    monkeypatch.undo()
    # The OS call itself: mkdir fails with EROFS although access() said yes (root passes chmod).
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    _refused_as_read_only(reference, out, capsys, out)
    assert not out.exists()


def test_unwritable_out_on_a_real_read_only_mount(reference, tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "size=1m") as mount:
        (mount / "existing").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        _refused_as_read_only(reference, mount / "out", capsys, mount)
        _refused_as_read_only(reference, mount / "existing", capsys, mount / "existing")


def test_the_same_command_plus_resume_is_accepted_when_inputs_match(reference, tmp_path, capsys):
    out = tmp_path / "out"
    args = [*reference["args"], "--out", str(out), "--frames", "1-2"]
    assert main(args) == 0
    # A temporary file a killed run left (its name is greybox's) goes; the user's own hidden file stays.
    (out / "passes" / ".0001.exr.link-99999").write_bytes(b"partial")
    (out / ".user-notes").write_text("mine")
    capsys.readouterr()
    assert main([*args, "--resume", "--json"]) == 0
    assert '"ran": 0' in capsys.readouterr().out
    assert _temporary_files(out) == [".user-notes"]
    assert main([*args, "--resume", "--set", "render.fps=10"]) == 2
    err = capsys.readouterr().err
    assert "render.fps: 12 -> 10" in err and "--resume --out" in err
    assert main([*args[:-2], "--frames", "1-4", "--resume"]) == 2
    assert "frames: 1-2 -> 1-4" in capsys.readouterr().err
    assert main(["passes", str(reference["template"]), "--out", str(out), "--store", str(reference["store"]), "--resume"]) == 2
    assert "holds a render job" in capsys.readouterr().err
