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
