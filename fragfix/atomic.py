"""The one atomic-write helper every fragfix output goes through.

Write to a temporary file in the target's folder, flush and fsync, then move it into place.
An exception or interrupt at any point removes the temporary file, so no partial output ever
appears under the target name, and an existing target is untouched until the final rename.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import InvalidInput, IOFailure


def check_output_path(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse outputs that would clobber data: existing files without force, folders, the inputs."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"output is a folder, expected a file path: {path}")
    if path.exists() and not path.is_file():  # a device, FIFO or socket: --force must never replace it
        raise InvalidInput(f"output exists and is not a regular file (refused even with --force): {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise IOFailure(f"output folder is not writable: {parent}")
    if path.exists() or path.is_symlink():
        for src in inputs:
            if same_file(src, path):
                raise InvalidInput(f"output is the input file itself: {path}")
        if not force:
            raise InvalidInput(f"output exists (use --force to overwrite): {path}")


def check_distinct(writes: list[Path], reads: list[tuple[Path, str]]) -> None:
    """Every path a command writes differs from every other path it writes and from every path it
    reads (given as (path, what it is)), compared as files: resolved through links, and by inode."""
    seen: list[Path] = []
    for w in writes:
        for other in seen:
            if _same(w, other):
                raise InvalidInput(f"two outputs name the same file: {w} and {other}")
        for r, what in reads:
            if _same(w, r):
                raise InvalidInput(f"output is the {what}: {w}")
        seen.append(w)


def _same(a: Path, b: Path) -> bool:
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):
        pass
    return same_file(a, b)


def same_file(a: Path, b: Path) -> bool:
    """True when two paths name the same file, through symlinks and hard links."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_write(path: Path, force: bool = False, mode=None) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` atomically, on any exception it vanishes.

    Without `force` the final step is a link (fails if the target appeared meanwhile), so a
    concurrent writer's file is never overwritten either.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".fragfix-tmp", dir=parent)
    except OSError as e:
        raise IOFailure(f"cannot create a file in {parent}: {e.strerror}") from e
    committed = False
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        m = mode() if callable(mode) else mode  # a callable: the mode is known only when the data is
        os.chmod(tmp, _default_mode() if m is None else m)  # mkstemp makes 0600
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InvalidInput(f"output exists (use --force to overwrite): {path}") from None
            os.unlink(tmp)
        committed = True
        _fsync_dir(parent)
    except OSError as e:
        raise IOFailure(f"writing {path} failed: {e.strerror or e}" + (" (disk full)" if e.errno == errno.ENOSPC else "")) from e
    finally:
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes, force: bool = False) -> None:
    with atomic_write(path, force=force) as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
