"""The content-addressed store: every task unit's outputs under a key that hashes what it depends on.

Layout under the store root (default ``$GREYBOX_STORE`` or ``~/.cache/greybox/store``)::

    objects/<k[:2]>/<key>/<relpath...>   the unit's output files (e.g. passes/0001.exr)
    objects/<k[:2]>/<key>/record.json    written LAST: each output's sha256 and size, plus meta
    staging/<key>.<pid>.<n>/             outputs being written; renamed into objects/ when complete

A unit is done only when its record exists and every output's bytes still match it: a truncated
or corrupted output makes :meth:`TaskStore.load_record` return ``None`` (with the reason), so the
unit is recomputed. A job's output folder is a view of the store (hard links, or copies across
file systems): :meth:`TaskStore.link_into`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

from greybox import __version__ as GREYBOX_VERSION
from greybox.atomic_files import sha256_file, write_json_atomic

RECORD_NAME = "record.json"
RECORD_SCHEMA = 1
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
    """The store key of one unit: sha256 of the canonical JSON of the stage name, its inputs (the
    relevant part of the resolved template, stage settings, frame), the greybox version and the
    upstream units' keys."""
    payload = {"stage": stage, "greybox": GREYBOX_VERSION, "inputs": inputs, "upstream": list(upstream)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TaskStore:
    """A content-addressed folder of task outputs; safe to share between jobs and machines."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()

    # -- paths -------------------------------------------------------------------------------
    def unit_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def new_staging(self, key: str) -> Path:
        """A fresh, empty staging folder on the store's file system (renamed into place by commit)."""
        path = self.root / "staging" / f"{key}.{os.getpid()}.{next(_counter)}"
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
            if sha256_file(path) != info["sha256"]:
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
        """Move a complete staging folder into place and write its record after its outputs.

        When an intact unit of this key is already there (another job made it), the staging copy
        is dropped and the existing record returned. A broken one is replaced.
        """
        outputs = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging).as_posix()
            if rel == RECORD_NAME or path.name.startswith("."):
                continue
            outputs[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        record = {"schema": RECORD_SCHEMA, "key": key, "outputs": outputs, "meta": meta or {}}
        final = self.unit_dir(key)
        existing, _ = self.load_record(key)
        if existing is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return existing
        if final.exists():
            # Incomplete or broken: move it aside first so a reader never sees a mix.
            trash = self.root / "staging" / f"broken.{key}.{os.getpid()}.{next(_counter)}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, final)
        except OSError:
            # Someone else committed the same key between our check and the rename.
            existing, _ = self.load_record(key)
            if existing is not None:
                shutil.rmtree(staging, ignore_errors=True)
                return existing
            raise
        write_json_atomic(final / RECORD_NAME, record)
        return record

    def clean_staging(self, max_age_s: float = 24 * 3600) -> int:
        """Remove staging folders older than ``max_age_s`` (left by killed workers); return how many.

        Age, not pid, decides: on a farm the writer may be on another machine."""
        import time

        staging = self.root / "staging"
        if not staging.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - max_age_s
        for entry in staging.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def invalidate(self, key: str) -> None:
        """Drop a unit's record (its outputs stay until recomputed): used when a view check fails."""
        try:
            (self.unit_dir(key) / RECORD_NAME).unlink()
        except FileNotFoundError:
            pass

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
