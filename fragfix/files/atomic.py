"""The one atomic-write helper every fragfix output goes through.

Write to a temporary file in the target's folder, flush and fsync, then move it into place.
An exception or interrupt at any point removes the temporary file, so no partial output ever
appears under the target name, and an existing target is untouched until the final rename.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from fragfix.errors import InvalidInput, IOFailure


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


def check_output_folder(folder: Path, force: bool) -> None:
    """A folder a command fills with files of names known only after the run: it must be new (its
    parent existing) or empty, or --force lets those files replace any of the same names."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"not a folder: {folder}")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise IOFailure(f"folder is not writable: {folder}")
        if any(folder.iterdir()) and not force:
            raise InvalidInput(f"folder is not empty (use --force to write into it): {folder}")
    elif not (folder.parent if str(folder.parent) else Path(".")).is_dir():
        raise InvalidInput(f"folder's parent does not exist: {folder.parent}")


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


COMPLETED: list[list[str]] = []  # the outputs of each final batch committed in this process


class Batch:
    """The outputs of one run, committed together: each is written and fsynced to a temporary file
    beside its target; only when all are complete (the `with` block ends cleanly) are they moved
    into place, and on any error or interrupt none is: the temporary files and the folders the
    run made vanish. A run never leaves some of its outputs behind and not others."""

    def __init__(self, final: bool = False):
        self.staged: list[tuple[str, Path, bool]] = []  # (temporary file, target, force)
        self.made_dirs: list[Path] = []
        self.final = final  # the run's last act: once it is committed, the run has succeeded

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False

    def mkdir(self, folder: Path) -> None:
        """Make a folder (and missing parents), remembered so that a failed run removes it again."""
        missing = [p for p in [Path(folder), *Path(folder).parents] if not p.exists()]
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.made_dirs += reversed(missing)

    @contextlib.contextmanager
    def stage(self, path: Path, force: bool = False, mode=None) -> Iterator[BinaryIO]:
        path = Path(path)
        parent = path.parent if str(path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".fragfix-tmp", dir=parent)
        except OSError as e:
            raise IOFailure(f"cannot create a file in {parent}: {e.strerror}") from e
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            m = mode() if callable(mode) else mode  # a callable: the mode is known only when the data is
            os.chmod(tmp, _default_mode() if m is None else m)  # mkstemp makes 0600
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise _failure(path, e) from e
            raise
        self.staged.append((tmp, path, force))

    def commit(self) -> None:
        """Move every staged file into place, signals held off meanwhile. New names first (a link:
        fails if the name appeared meanwhile, and those made so far are taken back), then
        replacements (--force), which cannot be taken back and so come last."""
        with _held_signals():
            self._move_into_place()

    def _move_into_place(self) -> None:
        linked: list[Path] = []
        target = None
        try:
            for tmp, target, force in sorted(self.staged, key=lambda s: s[2]):
                if force:
                    os.replace(tmp, target)
                    continue
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise InvalidInput(f"output exists (use --force to overwrite): {target}") from None
                linked.append(target)
        except BaseException as e:
            for made in linked:
                with contextlib.suppress(OSError):
                    os.unlink(made)
            self.discard()
            if isinstance(e, OSError):
                raise _failure(target, e) from e
            raise
        for tmp, _, force in self.staged:  # the temporary names go before an interrupt can stop the run
            if not force:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for folder in {(p.parent if str(p.parent) else Path(".")) for _, p, _ in self.staged}:
            _fsync_dir(folder)
        if self.final:  # an interrupt from now on finds the run complete (cli_edge: exit 0)
            COMPLETED.append([str(p) for _, p, _ in self.staged])
        self.staged = []

    def discard(self) -> None:
        for tmp, _, _ in self.staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.staged = []
        for folder in reversed(self.made_dirs):  # deepest first; a folder holding anything else stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.made_dirs = []


@contextlib.contextmanager
def atomic_write(path: Path, force: bool = False, mode=None, batch: Batch | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` atomically, on any exception it vanishes.
    With `batch`, it is only staged: the batch moves it into place with the run's other outputs.

    Without `force` the final step is a link (fails if the target appeared meanwhile), so a
    concurrent writer's file is never overwritten either.
    """
    if batch is not None:
        with batch.stage(path, force, mode) as f:
            yield f
        return
    with Batch() as own, own.stage(path, force, mode) as f:
        yield f


@contextlib.contextmanager
def _held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside are noted, not acted on, and delivered to the handlers
    they would have reached once the block is done. Python runs signal handlers in the main thread
    whatever thread the kernel picked, so the handlers are swapped (blocking the signal in the main
    thread alone would not keep another thread, a progress bar's, from taking it)."""
    held: list[int] = []
    try:
        old = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
               for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing to swap (signals reach the main thread only)
        yield
        return
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if held:
            handler = old[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                if held[0] == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(held[0])


def _failure(path: Path, e: OSError) -> IOFailure:
    return IOFailure(f"writing {path} failed: {e.strerror or e}" + (" (disk full)" if e.errno == errno.ENOSPC else ""))


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


SETID = stat.S_ISUID | stat.S_ISGID


def kept_mode(st: os.stat_result, changed: bool) -> int:
    """The input's permission bits for its repaired copy: altered bytes never keep a set-uid or
    set-gid bit (a repaired executable is not the one an administrator marked)."""
    mode = stat.S_IMODE(st.st_mode)
    return mode & ~SETID if changed else mode


def keep_times(f: BinaryIO, st: os.stat_result) -> None:
    """Give the output open as `f` the input's access and modification times (after its last write)."""
    f.flush()
    os.utime(f.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))


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
