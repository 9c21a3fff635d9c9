"""Errors that reach the user, each with the exit code the CLI returns for it.

Exit codes: 0 success, 1 the job ran and some work failed, 2 bad input (template, option, path),
3 model weights unavailable, 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_WORK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_WEIGHTS_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class GreyboxError(Exception):
    """Base class: an error whose message is for the user, printed without a traceback."""

    exit_code = EXIT_WORK_FAILED


class InputError(GreyboxError):
    """Bad input from the user: a template, an option or a path. Never retried.

    ``problems`` holds one line per problem, each naming the key path, the value and the fix.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.problems = problems or []


class WeightsUnavailableError(GreyboxError):
    """Model weights cannot be had (offline, missing folder, no safetensors)."""

    exit_code = EXIT_WEIGHTS_UNAVAILABLE


class JobFailedError(GreyboxError):
    """The job ran and some of its tasks failed past the retry budget."""

    exit_code = EXIT_WORK_FAILED


class OutputSpaceError(JobFailedError):
    """No space left where an output goes (exit 1: the job ran; free space and resume)."""


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def write_error(err: OSError, path, size: int | None = None) -> Exception:
    """The user's view of an OSError met writing ``path`` (one line, naming the path).

    No space left (ENOSPC, EDQUOT) -> :class:`OutputSpaceError` (exit 1) with the size written and
    what is free there; a read-only file system or a folder that refuses writes -> :class:`InputError`
    (exit 2). Anything else is returned unchanged (a real failure, with its traceback).
    """
    import errno
    import os
    from pathlib import Path

    path = Path(path)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = ""
        for probe in (path, *path.parents):
            try:
                st = os.statvfs(probe)
            except OSError:
                continue
            free = f"; {_megabytes(st.f_bavail * st.f_frsize)} free on that file system"
            break
        need = f" ({_megabytes(size)})" if size else ""
        return OutputSpaceError(
            f"no space left on device writing {path}{need}{free}: free space or choose another --out, "
            "then continue with the same command plus --resume"
        )
    if err.errno == errno.ELOOP:
        return InputError(f"{path} is a symbolic link: greybox never writes through a link inside its folders; remove it")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        return InputError(f"cannot write {path} ({reason}): choose a folder you can write (--out, --store)")
    return err
