"""The content-addressed store: every task unit's outputs under a key that hashes what it depends on.

Layout under the store root (default ``$GREYBOX_STORE`` or ``~/.cache/greybox/store``)::

    objects/<k[:2]>/<key>/<relpath...>   the unit's output files (e.g. passes/0001.exr)
    objects/<k[:2]>/<key>/record.json    each output's sha256 and size, plus meta
    staging/<label>+<host>+<pid>+<started>+<n>/   a unit being written, named after its owner
    repair.lock                          held while a broken unit is replaced

Commit protocol (any number of jobs, on any number of hosts sharing one file system):

1. A writer fills a private staging folder and writes the record into it *last*.
2. It renames the folder to ``objects/<k[:2]>/<key>`` in one ``rename``. A unit folder therefore
   appears complete, record included, or not at all: a unit is complete when its record is in
   place, and every folder under ``objects/`` was finished by its writer.
3. When the rename finds a unit already there, the writer lost a race (or the unit is broken): an
   intact unit there is the winner's, with the same key and so the same bytes, and is used; the
   loser's staging copy is dropped. Nobody moves an intact unit.
4. A broken unit (bytes that no longer match its record, a missing file, no record) is replaced
   under ``repair.lock`` (an exclusive ``flock``, released by the kernel when its holder dies),
   re-checked after the lock is taken: the broken folder is moved aside to staging in one rename,
   the new one renamed in, the old one deleted. Its writer is gone (it finished, step 2).

A unit is done only when its record exists and every output's bytes still match it: a truncated
or corrupted output makes :meth:`TaskStore.load_record` return ``None`` (with the reason), so the
unit is recomputed. A job's output folder is a view of the store (hard links, or copies across
file systems): :meth:`TaskStore.link_into`.

Staging folders carry their owner in their name (host, pid, the process's start time, so a
reused pid is not mistaken for the owner). :meth:`TaskStore.clean_staging` removes those whose
owner on this host is gone, and those of other hosts older than
:data:`OTHER_HOST_STAGING_MAX_AGE_S` (their owners cannot be asked).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import socket
import time
from pathlib import Path

from greybox import __version__ as GREYBOX_VERSION
from greybox.atomic_files import sha256_file, write_json_atomic
from render_farm.code_fingerprint import code_fingerprint

RECORD_NAME = "record.json"
RECORD_SCHEMA = 2
REPAIR_LOCK = "repair.lock"
# Staging folders of other hosts are removed past this age (seconds since their last change). A
# live unit is staged for at most one task: keep this above the longest task time limit you use.
OTHER_HOST_STAGING_MAX_AGE_S = 24 * 3600
_counter = itertools.count()


def default_store_root() -> Path:
    """``$GREYBOX_STORE`` or ``~/.cache/greybox/store`` (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get("GREYBOX_STORE")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "greybox" / "store"


def unit_key(stage: str, inputs: dict, upstream: list[str] | tuple[str, ...] = ()) -> str:
    """The store key of one unit: sha256 of the canonical JSON of

    - ``stage``: the stage that writes the unit;
    - ``code``: the stage's code fingerprint (:func:`render_farm.code_fingerprint.code_fingerprint`,
      a hash of the sources it runs, computed once per process), so changed code never reuses old
      units; and the greybox version;
    - ``inputs``: everything the unit reads that is not another unit (the relevant part of the
      resolved template, stage settings, the frame, the sequence it belongs to);
    - ``upstream``: the keys of every unit it reads (a frame's passes; in a sequence, the earlier
      frames it builds on). Order matters; keys are hashes of their own inputs, so a unit's key
      covers everything upstream of it transitively.

    ``render_farm.job_plan`` derives each stage's inputs and upstream keys.
    """
    payload = {"stage": stage, "greybox": GREYBOX_VERSION, "code": code_fingerprint(stage), "inputs": inputs,
               "upstream": list(upstream)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- owners of staging folders -------------------------------------------------------------------

def _process_started(pid: int) -> int | None:
    """The process's start time in whole seconds since the epoch; ``None`` when there is no such process."""
    import psutil

    try:
        return int(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # it exists (another user's): the start time cannot be read
        return -1


_OWNER: dict[int, str] = {}


def _owner_tag() -> str:
    """``<host>+<pid>+<started>`` of this process (its staging folders' names end with it and a counter)."""
    pid = os.getpid()  # per pid: a forked worker is another owner
    tag = _OWNER.get(pid)
    if tag is None:
        started = _process_started(pid)
        tag = _OWNER[pid] = f"{socket.gethostname()}+{pid}+{max(started or 0, 0)}"
    return tag


def staging_owner(name: str) -> tuple[str, int, int] | None:
    """(host, pid, started) from a staging folder's name; ``None`` for a name without an owner."""
    parts = name.split("+")
    if len(parts) < 5:
        return None
    host, pid, started = parts[-4], parts[-3], parts[-2]
    if not (pid.isdigit() and started.isdigit() and host):
        return None
    return host, int(pid), int(started)


def owner_alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` on this host is still the one that started at ``started``."""
    now = _process_started(pid)
    if now is None:
        return False
    return now == -1 or started == 0 or abs(now - started) <= 1


class TaskStore:
    """A content-addressed folder of task outputs; safe to share between jobs and machines."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()

    # -- paths -------------------------------------------------------------------------------
    def unit_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def new_staging(self, label: str) -> Path:
        """A fresh, empty staging folder on the store's file system, named ``label`` and its owner
        (this host, pid and process start time); commit renames it into place."""
        path = self.root / "staging" / f"{label}+{_owner_tag()}+{next(_counter)}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    # -- reading -----------------------------------------------------------------------------
    def read_record(self, key: str) -> dict | None:
        """The record as written, unverified; ``None`` when there is none (or it is unreadable)."""
        try:
            with open(self.unit_dir(key) / RECORD_NAME, "rb") as handle:
                record = json.loads(handle.read())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def verify(self, key: str, record: dict) -> str | None:
        """``None`` when every output's size and sha256 match the record, else the reason."""
        base = self.unit_dir(key)
        for relpath, info in record.get("outputs", {}).items():
            path = base / relpath
            try:
                size = path.stat().st_size
            except OSError:
                return f"{relpath} is missing"
            if size != info["size"]:
                return f"{relpath} has {size} bytes, its record says {info['size']}"
            try:
                digest = sha256_file(path)
            except OSError:  # moved aside as broken by a repair while we read it
                return f"{relpath} is missing"
            if digest != info["sha256"]:
                return f"{relpath} bytes do not match its record's sha256"
        return None

    def load_record(self, key: str, verify: bool = True) -> tuple[dict | None, str | None]:
        """(record, None) when the unit is done and intact; (None, reason) otherwise."""
        record = self.read_record(key)
        if record is None:
            return None, None
        if verify:
            reason = self.verify(key, record)
            if reason is not None:
                return None, reason
        return record, None

    # -- writing -----------------------------------------------------------------------------
    def commit(self, key: str, staging: Path, meta: dict | None = None) -> dict:
        """Put a complete staging folder in place as unit ``key``; return the unit's record.

        The record goes into the staging folder after the outputs, and the folder is renamed into
        place in one step (see the module docstring). When an intact unit of this key is already
        there (another job made it), that one is kept, the staging copy dropped, and its record
        returned. A broken one is replaced under the repair lock.
        """
        outputs = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging).as_posix()
            if rel == RECORD_NAME or path.name.startswith("."):
                continue
            outputs[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        record = {"schema": RECORD_SCHEMA, "key": key, "outputs": outputs, "meta": meta or {}}
        write_json_atomic(staging / RECORD_NAME, record)
        final = self.unit_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if _rename_dir(staging, final):
            return record
        existing, _ = self.load_record(key)
        if existing is not None:  # lost the race: the winner's unit has the same key, so the same bytes
            shutil.rmtree(staging, ignore_errors=True)
            return existing
        with self._repair_lock():
            existing, _ = self.load_record(key)  # someone may have repaired it while we waited
            if existing is not None:
                shutil.rmtree(staging, ignore_errors=True)
                return existing
            trash = None
            if final.exists():
                trash = self.new_staging(f"broken-{key}")
                os.replace(final, trash)
            placed = _rename_dir(staging, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        if placed:
            return record
        # A writer that found the folder gone (while we held the lock) renamed its unit in first.
        existing, reason = self.load_record(key)
        if existing is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"store unit {key} could not be committed: {final} is in the way ({reason or 'no record'})")
        shutil.rmtree(staging, ignore_errors=True)
        return existing

    @contextlib.contextmanager
    def _repair_lock(self):
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / REPAIR_LOCK, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def clean_staging(self, max_age_s: float = OTHER_HOST_STAGING_MAX_AGE_S) -> int:
        """Remove staging folders their owners left behind (killed workers); return how many.

        A folder of this host goes as soon as its owner process is gone (pid not running, or
        running a process that started at another time); one of another host (or without an owner
        in its name) once nothing in it changed for ``max_age_s`` seconds, since its owner cannot
        be asked from here."""
        staging = self.root / "staging"
        if not staging.is_dir():
            return 0
        removed = 0
        host = socket.gethostname()
        cutoff = time.time() - max_age_s
        for entry in staging.iterdir():
            owner = staging_owner(entry.name)
            try:
                if owner is not None and owner[0] == host:
                    stale = not owner_alive(owner[1], owner[2])
                else:
                    stale = entry.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stale:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                removed += 1
        return removed

    # -- views -------------------------------------------------------------------------------
    def link_into(self, key: str, record: dict, view: Path) -> None:
        """Make ``view/<relpath>`` the unit's output for each output: a hard link to the store file,
        or a copy when the view is on another file system. Files already linked are left alone;
        anything else at that path is replaced atomically (temporary name, then rename)."""
        # Confined to the view (no link planted in it is followed); a failed copy (no space left)
        # removes its temporary file and raises the user's error (greybox.errors.write_error).
        from greybox.confined_files import link_or_copy, same_file

        base = self.unit_dir(key)
        Path(view).mkdir(parents=True, exist_ok=True)
        for relpath in record["outputs"]:
            src = base / relpath
            if not same_file(src, view, relpath):
                link_or_copy(src, view, relpath)


def _rename_dir(src: Path, dst: Path) -> bool:
    """Rename folder ``src`` to ``dst`` when nothing (or an empty folder) is at ``dst``; False when a
    non-empty folder is there (POSIX ``rename`` refuses to replace one)."""
    try:
        os.rename(src, dst)
    except OSError as err:
        import errno

        if err.errno in (errno.ENOTEMPTY, errno.EEXIST) or dst.exists():
            return False
        raise
    return True
