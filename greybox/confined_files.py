"""Write, link and delete files below a root folder without ever following a symbolic link out of it.

A job's output folder is the user's, but anything can be planted in it (``DIR/control -> /elsewhere``).
Every path here is relative to a ``root`` (the output folder, or a shot's folder inside it) and is
walked one folder at a time with ``O_NOFOLLOW`` from a descriptor of the root, creating missing
folders on the way; the final name is created, replaced (temporary name, then rename) or removed
relative to its folder's descriptor. A symbolic link (or a file) where a folder should be raises
:class:`UnsafePathError` (exit 2) naming it; a link where a file should be is replaced by the
rename, never written through. The root itself may be a link: the user chose it.

Write failures become errors for the user (:func:`greybox.errors.write_error`): no space left
(exit 1, with the size and what is free), a read-only or forbidden folder (exit 2). A temporary
file is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path, PurePosixPath

from greybox.errors import InputError, write_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The temporary names this module and greybox.atomic_files use: ".NAME.link-PID", ".NAME.tmp-PID-TID".
TEMPORARY_NAME = re.compile(r"^\..+\.(link|tmp)-\d+(-\d+)?$")


class UnsafePathError(InputError):
    """A symbolic link (or a file) where greybox needs a folder of its own inside the output folder."""


def _parts(rel: str | os.PathLike) -> list[str]:
    parts = [p for p in PurePosixPath(os.fspath(rel)).parts if p not in ("", ".")]
    if any(p == ".." or "/" in p for p in parts) or PurePosixPath(os.fspath(rel)).is_absolute():
        raise UnsafePathError(f"{rel}: not a path inside the output folder")
    return parts


def _refuse(root: Path, parts: list[str], what: str) -> UnsafePathError:
    path = Path(root, *parts)
    return UnsafePathError(
        f"{path} is {what}: greybox writes only inside {root} and never follows a link out of it; "
        "remove it (or choose another --out)"
    )


def _kind(dir_fd: int, name: str) -> str | None:
    """'link', 'dir', 'file' (anything else that is not a folder) or None when absent."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def open_folder(root: str | os.PathLike, rel: str | os.PathLike = "", *, create: bool = True) -> int:
    """A descriptor of ``root/rel`` reached without following a link below ``root``; missing folders
    are created when ``create``. The caller closes it."""
    root = Path(root)
    parts = _parts(rel)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise write_error(err, root) from None
    for i, part in enumerate(parts):
        try:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                kind = _kind_of(root, parts[: i + 1])
                raise _refuse(root, parts[: i + 1], "a symbolic link" if kind == "link" else "not a folder") from None
            if isinstance(err, FileNotFoundError):
                raise
            raise write_error(err, Path(root, *parts[: i + 1])) from None
        os.close(fd)
        fd = child
    return fd


def _kind_of(root: Path, parts: list[str]) -> str | None:
    try:
        st = os.lstat(Path(root, *parts))
    except OSError:
        return None
    return "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"


@contextlib.contextmanager
def folder(root: str | os.PathLike, rel: str | os.PathLike = "", *, create: bool = True):
    """``with folder(root, "passes") as fd:`` the descriptor of :func:`open_folder`, closed after."""
    fd = open_folder(root, rel, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(rel: str | os.PathLike) -> tuple[list[str], str]:
    parts = _parts(rel)
    if not parts:
        raise UnsafePathError(f"{rel}: a file name is needed")
    return parts[:-1], parts[-1]


def _temporary(name: str, kind: str) -> str:
    return f".{name}.{kind}-{os.getpid()}" + (f"-{threading.get_ident()}" if kind == "tmp" else "")


def _discard(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def check_folders(root: str | os.PathLike, folders: list[str], files: list[str] = ()) -> None:
    """Raise :class:`UnsafePathError` when one of ``folders`` (relative to ``root``, which must exist)
    is a link or a file, or one of ``files`` is a link or a folder; absent ones are fine.
    Writes nothing: run before the first byte of a job is written."""
    root = Path(root)
    for rel in folders:
        parts = _parts(rel)
        for i in range(1, len(parts) + 1):
            kind = _kind_of(root, parts[:i])
            if kind is None:
                break
            if kind != "dir":
                raise _refuse(root, parts[:i], "a symbolic link" if kind == "link" else "not a folder")
    for rel in files:
        kind = _kind_of(root, _parts(rel))
        if kind in ("link", "dir"):
            raise _refuse(root, _parts(rel), "a symbolic link" if kind == "link" else "a folder")


def write_bytes(root: str | os.PathLike, rel: str | os.PathLike, data: bytes, *, durable: bool = False) -> str:
    """Write ``root/rel`` through a temporary name and an atomic rename; return its sha256."""
    parents, name = _split(rel)
    with folder(root, PurePosixPath(*parents) if parents else "") as dir_fd:
        tmp = _temporary(name, "tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as err:
            _discard(tmp, dir_fd)
            raise write_error(err, Path(root, rel), len(data)) from None
    return hashlib.sha256(data).hexdigest()


def write_json(root: str | os.PathLike, rel: str | os.PathLike, payload, *, durable: bool = True) -> str:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline), as :func:`write_bytes`."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_bytes(root, rel, text.encode("utf-8"), durable=durable)


def _copy(src_fd: int, dst_fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst_fd, src_fd, offset, min(size - offset, 1 << 30))
        if sent == 0:
            break
        offset += sent


def link_or_copy(src: str | os.PathLike, root: str | os.PathLike, rel: str | os.PathLike) -> None:
    """Make ``root/rel`` the file ``src``: a hard link, or a copy when ``src`` is on another file
    system; through a temporary name and a rename, so a link planted at ``rel`` is replaced, not
    written through. A failed copy leaves no temporary file."""
    parents, name = _split(rel)
    with folder(root, PurePosixPath(*parents) if parents else "") as dir_fd:
        tmp = _temporary(name, "link")
        _discard(tmp, dir_fd)
        size = 0
        try:
            try:
                os.link(src, tmp, dst_dir_fd=dir_fd, follow_symlinks=False)
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
                with open(src, "rb") as source:
                    size = os.fstat(source.fileno()).st_size
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
                    try:
                        _copy(source.fileno(), fd, size)
                    finally:
                        os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as err:
            _discard(tmp, dir_fd)
            raise write_error(err, Path(root, rel), size or None) from None


def same_file(src: str | os.PathLike, root: str | os.PathLike, rel: str | os.PathLike) -> bool:
    """Whether ``root/rel`` (not followed if it is a link) is ``src`` itself (a hard link to it)."""
    parents, name = _split(rel)
    try:
        with folder(root, PurePosixPath(*parents) if parents else "", create=False) as dir_fd:
            d = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        s = os.stat(src)
    except (FileNotFoundError, UnsafePathError):
        return False
    return (s.st_ino, s.st_dev) == (d.st_ino, d.st_dev) and stat.S_ISREG(d.st_mode)


def open_append(root: str | os.PathLike, rel: str | os.PathLike) -> int:
    """A descriptor appending to ``root/rel`` (created when absent); a link there is refused."""
    parents, name = _split(rel)
    with folder(root, PurePosixPath(*parents) if parents else "") as dir_fd:
        try:
            return os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _refuse(Path(root), _parts(rel), "a symbolic link") from None
            raise write_error(err, Path(root, rel)) from None


def remove(root: str | os.PathLike, rel: str | os.PathLike) -> None:
    """Delete ``root/rel``: a file, a link (the link itself) or a whole folder, never following a
    link; absent is fine."""
    parents, name = _split(rel)
    try:
        dir_fd = open_folder(root, PurePosixPath(*parents) if parents else "", create=False)
    except FileNotFoundError:
        return
    try:
        kind = _kind(dir_fd, name)
        if kind == "dir":
            shutil.rmtree(name, dir_fd=dir_fd)
        elif kind is not None:
            os.unlink(name, dir_fd=dir_fd)
    except OSError as err:
        raise write_error(err, Path(root, rel)) from None
    finally:
        os.close(dir_fd)


def remove_temporary_files(root: str | os.PathLike, folders) -> int:
    """Delete the temporary files greybox leaves when a process dies mid-write (names matching
    :data:`TEMPORARY_NAME`) from each of ``folders`` (relative to ``root``; not their subfolders);
    return how many. Run under the job's lock (no other greybox writes there then)."""
    removed = 0
    for rel in folders:
        try:
            dir_fd = open_folder(root, rel, create=False)
        except (FileNotFoundError, UnsafePathError):
            continue
        try:
            for entry in os.scandir(dir_fd):
                if TEMPORARY_NAME.match(entry.name) and not entry.is_dir(follow_symlinks=False):
                    _discard(entry.name, dir_fd)
                    removed += 1
        finally:
            os.close(dir_fd)
    return removed
