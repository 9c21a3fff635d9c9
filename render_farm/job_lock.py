"""One job at a time per output folder: an exclusive ``flock`` on ``DIR/.greybox/lock``.

The lock file records the holder's pid and host, so a second job says who holds it. The kernel
drops the lock when the holder dies (kill -9 included), so a stale file never blocks a resume.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from greybox.errors import InputError

LOCK_NAME = "lock"


class JobLock:
    """Context manager holding the lock of ``job_dir``; raises InputError (exit 2) when held."""

    def __init__(self, job_dir: str | os.PathLike):
        self.path = Path(job_dir) / ".greybox" / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "JobLock":
        from greybox.confined_files import folder

        with folder(self.path.parent.parent, self.path.parent.name) as dir_fd:  # DIR/.greybox, not a link
            try:
                fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
            except OSError as err:
                from greybox.errors import write_error

                raise write_error(err, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(self.path)
            os.close(fd)
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise InputError(
                f"{self.path.parent.parent} is in use by another greybox job ({who}); wait for it to finish, "
                f"stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def read_holder(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def lock_is_held(job_dir: str | os.PathLike) -> dict | None:
    """The holder (pid, host) when a live job holds ``job_dir``'s lock, else None."""
    path = Path(job_dir) / ".greybox" / LOCK_NAME
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {"pid": None, "host": None}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
