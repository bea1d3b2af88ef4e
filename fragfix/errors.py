"""The one error type fragfix raises, and the exit codes it maps to.

The library raises `FragfixError` (or a subclass) for every problem a user can cause or meet;
only the CLI turns one into a one-line message and an exit code (fastapi-cli style).
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    IO = 1            # environment or I/O failure: disk full, permission denied, write error
    INVALID = 2       # invalid input or usage: bad path, bad checkpoint, bad mapfile, bad option
    INTERRUPTED = 130  # SIGINT / SIGTERM


class FragfixError(Exception):
    """A problem with a clear one-line message. `exit_code` says how the CLI should exit."""

    exit_code: ExitCode = ExitCode.INVALID

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidInput(FragfixError):
    """Bad paths, empty files, nonsense option values."""


class CheckpointError(InvalidInput):
    """A file that is not a loadable fragfix checkpoint (truncated, foreign, wrong shapes)."""


class MapfileError(InvalidInput):
    """A ddrescue mapfile that is malformed or does not fit the file it describes."""


class IOFailure(FragfixError):
    """Reading or writing failed for reasons outside the input's content (disk full, permissions)."""

    exit_code = ExitCode.IO
