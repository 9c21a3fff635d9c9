"""A job folder's versions: the latest in the folder itself, every one kept whole under ``versions/``.

``DIR/frames/``, the video, the contact sheet and ``manifest.json`` (each shot's, in its folder)
are the latest version. Every finished render that changes a shot's manifest is a new version,
numbered from 1, and is kept whole in ``DIR/versions/NNN/``: ``job.json``, and for each shot
(under its folder) ``manifest.json`` and every file the manifest lists (frames, passes, control
images, scene files, cameras, video, contact sheet), as hard links to the same bytes (no copy:
the folder's files are themselves links into the store) and ``version.json`` (the history entry).
A version folder is built under a temporary name and renamed into place in one step, so it is
there whole or not at all; it is never overwritten or deleted by greybox. (Its files share their
inodes with the folder's and the store's: a file changed in place there changes here too; a run
that recomputes it puts the recorded bytes back, :func:`repair_version`, and ``--revert`` refuses a
version whose bytes no longer match its manifest.)

A version's entry (``version.json``): ``version``, ``kind`` (``render``: a render of new inputs
with no base, e.g. the first one or more frames; ``edit``: a change of direction keys only,
made from ``base``; ``force``: ``--force`` over other inputs, a new base; ``revert``: version
``reverted_to`` made the latest again), ``base`` (the version an edit was made from, and its
``base_manifests``: shot -> sha256 of the base's manifest), ``changed`` (what differs from the
version before, as ``key: old -> new`` lines), ``units`` (task kind -> ``{"ran", "reused"}``:
what ran for it), ``manifests`` (shot -> sha256 of its manifest) and ``frame_keys`` (shot ->
frame -> the store key of its stylised frame, so an edit reuses the frames it does not change
under their own keys).

A folder rendered before versions existed (a manifest, no ``versions/``) is adopted as version 1
the first time a run would replace it. :func:`revert` makes version N the latest again: every
file of N is checked against its manifest's sha256 before the first byte is written, then linked
back (temporary name, rename) and recorded as a new version of kind ``revert``; nothing is
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from greybox.confined_files import TEMPORARY_NAME, check_folders, folder, link_or_copy, remove, write_json
from greybox.errors import InputError

VERSIONS_DIR = "versions"
VERSION_FILE = "version.json"
JOB_FILE = "job.json"
MANIFEST = "manifest.json"
_NUMBER = re.compile(r"^\d{3,}$")
_MAX_JSON = 64 << 20


def version_folder(number: int) -> str:
    return f"{VERSIONS_DIR}/{number:03d}"


def _read_json_confined(job_dir: Path, rel: str):
    """Parsed JSON of ``job_dir/rel`` without following a link anywhere below ``job_dir``; None when absent."""
    parts = PurePosixPath(rel).parts
    try:
        with folder(job_dir, PurePosixPath(*parts[:-1]) if len(parts) > 1 else "", create=False) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(_MAX_JSON)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InputError(f"{job_dir / rel}: cannot read it ({err.strerror or err}); greybox reads its versions only inside "
                         "the job's folder and never through a link: remove what is in the way, or choose another --out") from None
    try:
        return json.loads(data)
    except ValueError as err:
        raise InputError(f"{job_dir / rel}: not valid JSON ({err}); it was changed outside greybox: restore it or "
                         "remove that version folder") from None


def read_versions(job_dir: str | os.PathLike) -> list[dict]:
    """Every version's entry, oldest first ([] when the folder has none)."""
    job_dir = Path(job_dir)
    check_folders(job_dir, [VERSIONS_DIR]) if job_dir.is_dir() else None
    path = job_dir / VERSIONS_DIR
    if not path.is_dir():
        return []
    out = []
    for name in sorted((n for n in os.listdir(path) if _NUMBER.match(n)), key=int):
        check_folders(job_dir, [f"{VERSIONS_DIR}/{name}"])
        entry = _read_json_confined(job_dir, f"{VERSIONS_DIR}/{name}/{VERSION_FILE}")
        if not isinstance(entry, dict) or entry.get("version") != int(name):
            raise InputError(f"{path / name / VERSION_FILE}: missing or not the entry of version {int(name)}; the version "
                             "folder was changed outside greybox: restore it, or move it out of versions/")
        out.append(entry)
    return out


def latest_version(job_dir) -> dict | None:
    versions = read_versions(job_dir)
    return versions[-1] if versions else None


def version_manifest(job_dir: Path, number: int, shot_folder: str) -> dict | None:
    rel = "/".join(p for p in (version_folder(number), shot_folder, MANIFEST) if p)
    return _read_json_confined(Path(job_dir), rel)


def manifest_files(manifest: dict) -> dict[str, str]:
    """relpath -> sha256 of every file a shot's manifest lists (its frames' and the whole shot's)."""
    files = {}
    for entry in manifest.get("frames", {}).values():
        files.update(entry)
    files.update(manifest.get("files", {}))
    return dict(sorted(files.items()))


def _sha256_confined(job_dir: Path, rel: str) -> str | None:
    parts = PurePosixPath(rel).parts
    try:
        with folder(job_dir, PurePosixPath(*parts[:-1]) if len(parts) > 1 else "", create=False) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as handle:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                return digest.hexdigest()
    except (OSError, InputError):
        return None


def snapshot_version(job_dir: str | os.PathLike, shot_folders: dict[str, str], entry: dict) -> int:
    """Keep the folder's current outputs whole as the next version (``entry`` completed with its
    number); return the number. ``shot_folders``: shot name -> its folder in DIR ('' = DIR)."""
    job_dir = Path(job_dir)
    versions = read_versions(job_dir)
    taken = [int(n) for n in os.listdir(job_dir / VERSIONS_DIR) if _NUMBER.match(n)] if (job_dir / VERSIONS_DIR).is_dir() else []
    number = max([0, *taken, *(v["version"] for v in versions)]) + 1
    entry = {**entry, "version": number}
    tmp = f"{VERSIONS_DIR}/.{number:03d}.tmp-{os.getpid()}"
    remove(job_dir, tmp)
    try:
        for shot, view in sorted(shot_folders.items()):
            manifest_rel = f"{view}/{MANIFEST}".lstrip("/")
            manifest = _read_json_confined(job_dir, manifest_rel)
            if manifest is None:
                raise InputError(f"{job_dir / manifest_rel} is missing: no finished render of shot {shot} to keep as a version")
            for rel in [MANIFEST, *manifest_files(manifest)]:
                src = job_dir / view / rel
                if os.path.islink(src) or not src.is_file():
                    continue  # a file the manifest lists but a later run replaced with a link, or removed: not kept
                link_or_copy(src, job_dir, f"{tmp}/{view}/{rel}".replace("//", "/"))
        if (job_dir / JOB_FILE).is_file() and not (job_dir / JOB_FILE).is_symlink():
            link_or_copy(job_dir / JOB_FILE, job_dir, f"{tmp}/{JOB_FILE}")
        write_json(job_dir, f"{tmp}/{VERSION_FILE}", entry)
        with folder(job_dir, VERSIONS_DIR) as dir_fd:
            os.rename(PurePosixPath(tmp).name, f"{number:03d}", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        remove(job_dir, tmp)
        raise
    return number


def remove_temporary_versions(job_dir: Path) -> None:
    """Version folders a killed run left half-built (``versions/.NNN.tmp-PID``); the lock is held."""
    path = job_dir / VERSIONS_DIR
    if path.is_dir() and not path.is_symlink():
        for name in os.listdir(path):
            if re.match(r"^\.\d{3,}\.tmp-\d+$", name) or TEMPORARY_NAME.match(name):
                remove(job_dir, f"{VERSIONS_DIR}/{name}")


def manifest_sha256(job_dir: Path, view: str) -> str | None:
    return _sha256_confined(job_dir, f"{view}/{MANIFEST}".lstrip("/"))


def _changed(old: dict | None, new: dict, limit: int = 20) -> list[str]:
    from render_farm.job_request import _diff

    out: list[str] = []
    if old is None:
        return out
    a = dict(old["template"]["resolved"])
    b = dict(new["template"]["resolved"])
    for d in (a, b):
        d.pop("name", None)
        d.pop("description", None)
    _diff(a, b, "", out, limit)
    fa, fb = sorted(old.get("frames", {})), sorted(new.get("frames", {}))
    if fa != fb:
        out.append(f"frames: {len(fa)} -> {len(fb)}")
    if old.get("models") != new.get("models"):
        out.append("models changed")
    return out


def record_version(job_dir: Path, shot_folders: dict[str, str], *, kind: str, units: dict, frame_keys: dict,
                   base: int | None = None) -> int | None:
    """After a finished render: a new version when a shot's manifest differs from the latest
    version's (else None: the folder already is that version)."""
    previous = latest_version(job_dir)
    manifests = {shot: manifest_sha256(job_dir, view) for shot, view in shot_folders.items()}
    if previous is not None and previous.get("manifests") == manifests:
        return None
    changed = []
    for shot, view in sorted(shot_folders.items()):
        new = _read_json_confined(job_dir, f"{view}/{MANIFEST}".lstrip("/"))
        old = version_manifest(job_dir, previous["version"], previous.get("shots", {}).get(shot, view)) if previous else None
        prefix = f"{shot}: " if len(shot_folders) > 1 else ""
        changed += [prefix + line for line in _changed(old, new)]
    if previous is None:
        kind, changed = "render", ["first render"]
    entry = {"kind": kind, "base": base if kind == "edit" else None, "changed": changed or ["nothing but its outputs"],
             "units": units, "manifests": manifests, "frame_keys": frame_keys, "shots": dict(shot_folders)}
    if kind == "edit" and previous is not None:
        entry["base_manifests"] = previous.get("manifests")
    return snapshot_version(job_dir, shot_folders, entry)


def repair_version(job_dir: Path, entry: dict) -> list[str]:
    """A run that made the latest version again (the same manifests): put back any of that version's
    files whose bytes no longer match its manifest (a file of the view changed in place, through the
    hard link they share) from the view's file, when that one holds the recorded bytes (the run
    recomputed it). Returns the paths repaired. A file still linked to the view's is left alone."""
    repaired = []
    for shot, view in sorted(entry.get("shots", {}).items()):
        base = "/".join(p for p in (version_folder(entry["version"]), view) if p)
        manifest = _read_json_confined(job_dir, f"{base}/{MANIFEST}")
        if manifest is None:
            continue
        for rel, digest in manifest_files(manifest).items():
            kept, current = job_dir / base / rel, job_dir / view / rel
            try:
                a, b = os.lstat(kept), os.lstat(current)
            except OSError:
                continue
            if (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) or not stat.S_ISREG(b.st_mode):
                continue
            if _sha256_confined(job_dir, f"{base}/{rel}") != digest and \
                    _sha256_confined(job_dir, f"{view}/{rel}".lstrip("/")) == digest:
                link_or_copy(current, job_dir, f"{base}/{rel}")
                repaired.append(f"{base}/{rel}")
    return repaired


def adopt_current(job_dir: Path, record: dict | None) -> int | None:
    """A folder rendered before versions existed: keep what it holds as version 1 (once)."""
    if record is None or "stylize" not in record.get("stages", []) or read_versions(job_dir):
        return None
    folders = {s["name"]: s.get("folder") or "" for s in record.get("shots", [])}
    if not all((job_dir / view / MANIFEST).is_file() for view in folders.values()):
        return None
    manifests = {shot: manifest_sha256(job_dir, view) for shot, view in folders.items()}
    return snapshot_version(job_dir, folders, {"kind": "render", "base": None, "changed": ["rendered before versions were kept"],
                                               "units": {}, "manifests": manifests, "frame_keys": {}, "shots": folders})


def check_revert(job_dir: Path, number: int) -> tuple[dict, dict[str, dict]]:
    """(version N's entry, shot -> its manifest) when every file of N is intact; else InputError."""
    versions = read_versions(job_dir)
    if not versions:
        raise InputError(f"--revert {number}: {job_dir} holds no versions (versions/ missing); render into it first")
    by_number = {v["version"]: v for v in versions}
    if number not in by_number:
        raise InputError(f"--revert {number}: no such version in {job_dir}; it has "
                         + ", ".join(str(v) for v in sorted(by_number)) + " (`greybox inspect DIR` lists them)")
    entry = by_number[number]
    manifests, broken = {}, []
    for shot, view in sorted(entry.get("shots", {}).items()):
        base = "/".join(p for p in (version_folder(number), view) if p)
        manifest = _read_json_confined(job_dir, f"{base}/{MANIFEST}")
        if manifest is None:
            raise InputError(f"--revert {number}: {job_dir / base / MANIFEST} is missing; that version was changed outside greybox")
        if _sha256_confined(job_dir, f"{base}/{MANIFEST}") != entry["manifests"].get(shot):
            broken.append(f"{base}/{MANIFEST}")
        for rel, digest in manifest_files(manifest).items():
            if _sha256_confined(job_dir, f"{base}/{rel}") != digest:
                broken.append(f"{base}/{rel}")
        manifests[shot] = manifest
    if broken:
        raise InputError(f"--revert {number}: {len(broken)} file(s) of version {number} are missing or changed, first "
                         f"{job_dir / broken[0]}; nothing was written (render that version's inputs again instead)")
    return entry, manifests


def revert(job_dir: str | os.PathLike, number: int) -> int:
    """Make version ``number`` the latest again without recomputing; return the new version's number.
    The caller holds the folder's lock; :func:`check_revert` passed."""
    job_dir = Path(job_dir)
    entry, manifests = check_revert(job_dir, number)
    source = version_folder(number)
    for shot, view in sorted(entry["shots"].items()):
        listed = manifest_files(manifests[shot])
        for rel in listed:
            link_or_copy(job_dir / source / view / rel, job_dir, f"{view}/{rel}".lstrip("/"))
        frames_dir = job_dir / view / "frames"
        if frames_dir.is_dir() and not frames_dir.is_symlink():  # frames of other versions stay in theirs
            for name in os.listdir(frames_dir):
                rel = f"frames/{name}"
                st = os.lstat(frames_dir / name)
                if rel not in listed and stat.S_ISREG(st.st_mode) and not name.startswith("."):
                    remove(job_dir, f"{view}/{rel}".lstrip("/"))
        link_or_copy(job_dir / source / view / MANIFEST, job_dir, f"{view}/{MANIFEST}".lstrip("/"))
    if (job_dir / source / JOB_FILE).is_file():
        link_or_copy(job_dir / source / JOB_FILE, job_dir, JOB_FILE)
    return snapshot_version(job_dir, entry["shots"], {
        "kind": "revert", "base": None, "reverted_to": number, "changed": [f"reverted to version {number}"],
        "units": {}, "manifests": entry["manifests"], "frame_keys": entry.get("frame_keys", {}), "shots": entry["shots"]})


def format_history(versions: list[dict]) -> str:
    """``greybox inspect``'s history: version, kind, what changed, units rerun."""
    if not versions:
        return ""
    lines = ["versions (latest last; each kept whole in versions/NNN):"]
    for v in versions:
        ran = {k: c.get("ran", 0) for k, c in (v.get("units") or {}).items()}
        reused = sum(c.get("reused", 0) for c in (v.get("units") or {}).values())
        head = f"  {v['version']:3d}  {v['kind']}"
        if v.get("base") is not None:
            head += f" of version {v['base']}"
        if v.get("reverted_to") is not None:
            head += f" to version {v['reverted_to']}"
        units = ", ".join(f"{k} {n}" for k, n in ran.items() if n) or "none"
        head += f"; units rerun: {units}" + (f" ({reused} reused)" if reused else "")
        lines.append(head)
        for line in v.get("changed", [])[:12]:
            lines.append(f"         {line}")
    return "\n".join(lines)


def run_revert(out: str | os.PathLike, number: int) -> dict:
    """``greybox render DIR --revert N``: checks (nothing written on failure), the folder's lock,
    the checks again under it, then :func:`revert`; returns the new version's entry."""
    from render_farm.job_lock import JobLock
    from render_farm.job_request import read_job_record

    job_dir = Path(out).expanduser().absolute()
    # 1. Check inputs
    if not job_dir.is_dir():
        raise InputError(f"--revert {number}: {job_dir} is not a job folder; give the --out folder of a render")
    if number < 1:
        raise InputError(f"--revert {number}: versions are numbered from 1 (`greybox inspect DIR` lists them)")
    read_job_record(job_dir)  # a planted link or a changed record is refused here
    check_revert(job_dir, number)
    # 2. Under the lock: check again, then link version N back
    with JobLock(job_dir):
        check_revert(job_dir, number)
        remove_temporary_versions(job_dir)
        revert(job_dir, number)
        return latest_version(job_dir)
