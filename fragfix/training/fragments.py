"""Fragments of files: walking folders, `FragmentDataset`, and the file-level train/validation split.

A file is cut into 512-byte fragments; its last partial fragment is padded with zeros (and its
true length kept) or dropped. Files are memory-mapped lazily, so folders larger than memory work,
and only per-file counts are held in memory (no per-fragment index).
"""
from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from fragfix.model.autoencoder import FRAGMENT_SIZE
from fragfix.errors import InvalidInput, IOFailure
from fragfix.files.jobs import walk
from fragfix.files.reading import open_readonly



@dataclass(frozen=True)
class Span:
    """A run of fragments of one file: fragments [first, first + count)."""
    path: Path
    first: int
    count: int
    size: int  # the file's size in bytes


def list_files(paths: Iterable[Path | str], recursive: bool = True) -> list[Path]:
    """Regular files under the given files/folders, sorted for determinism. Bad paths raise InvalidInput."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InvalidInput(f"no such file or folder: {p}")
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                raise InvalidInput(f"folder is not readable: {p}")
            out.extend(walk(p, recursive)[0])
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInput(f"not a regular file or folder: {p}")
    return out


class FragmentDataset(torch.utils.data.Dataset):
    """Fragments of many files. Item i is a (512,) uint8 tensor; `length(i)` is its true length."""

    def __init__(self, files: Sequence[Path | str] | Sequence[Span], partial: str = "pad", cap: int = 0):
        """`cap` > 0: at most that many consecutive fragments of each file, from a place fixed by a
        hash of its path (big files would otherwise outweigh everything else;
        name and size pick it, so it is the same on every machine)."""
        if partial not in ("pad", "drop"):
            raise ValueError("partial must be 'pad' or 'drop'")
        self.partial, self.cap = partial, cap
        self.skipped: list[tuple[str, str]] = []  # (path, why) for files that gave no fragments
        self.spans: list[Span] = []
        for f in files:
            span = f if isinstance(f, Span) else self._whole(Path(f))
            if span is not None and span.count > 0:
                self.spans.append(span)
        self._ends = np.cumsum([s.count for s in self.spans]).tolist()
        self._fds: dict[int, int] = {}

    def _whole(self, path: Path) -> Span | None:
        try:
            size = path.stat().st_size
            if not os.access(path, os.R_OK):
                raise PermissionError
        except OSError:
            self.skipped.append((str(path), "unreadable"))
            return None
        n = size // FRAGMENT_SIZE + (1 if self.partial == "pad" and size % FRAGMENT_SIZE else 0)
        if n == 0:
            self.skipped.append((str(path), "empty" if size == 0 else "shorter than one fragment"))
            return None
        if 0 < self.cap < n:
            key = f"{path.name}:{size}".encode()  # the same place on every machine, wherever the file lives
            first = int(hashlib.sha256(key).hexdigest()[:8], 16) % (n - self.cap + 1)
            return Span(path, first, self.cap, size)
        return Span(path, 0, n, size)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._ends, i)
        start = self._ends[k - 1] if k else 0
        return k, self.spans[k].first + (i - start)

    def length(self, i: int) -> int:
        k, frag = self._locate(i)
        return min(FRAGMENT_SIZE, self.spans[k].size - frag * FRAGMENT_SIZE)

    def __getitem__(self, i: int) -> torch.Tensor:
        k, frag = self._locate(i)
        # pread, not a memory map: a training file truncated meanwhile killed training with SIGBUS
        fd = self._fds.get(k)
        if fd is None:
            if len(self._fds) > 64:  # bound open files on huge folders
                self.close()
            try:
                fd = self._fds[k] = open_readonly(self.spans[k].path)
            except OSError as e:
                raise IOFailure(f"training file became unreadable ({e.strerror}): {self.spans[k].path}") from None
        want = min(FRAGMENT_SIZE, self.spans[k].size - frag * FRAGMENT_SIZE)
        try:
            data = os.pread(fd, want, frag * FRAGMENT_SIZE)
        except OSError as e:
            raise IOFailure(f"training file became unreadable ({e.strerror}): {self.spans[k].path}") from None
        if len(data) != want:
            raise IOFailure(f"training file changed while training (now shorter): {self.spans[k].path}")
        chunk = np.zeros(FRAGMENT_SIZE, dtype=np.uint8)
        chunk[:want] = np.frombuffer(data, dtype=np.uint8)
        return torch.from_numpy(chunk)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):  # DataLoader workers open their own files
        d = self.__dict__.copy()
        d["_fds"] = {}
        return d

    def summary(self) -> dict:
        return {"files": len({s.path for s in self.spans}), "fragments": len(self),
                "bytes": sum(s.size for s in self.spans), "skipped": len(self.skipped),
                "within_file": getattr(self, "within_file", False)}


def split_files(files: Sequence[Path], val_fraction: float, seed: int,
                partial: str = "pad", cap: int = 0) -> tuple[FragmentDataset, FragmentDataset]:
    """Split by file, deterministically from the seed, so no file's fragments land on both sides.

    With a single usable file there is nothing to split by, so its last `val_fraction` of
    fragments (a contiguous tail, never interleaved) becomes the validation set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidInput(f"validation fraction must be in [0, 1), got {val_fraction}")
    whole = FragmentDataset(files, partial=partial, cap=cap)
    if len(whole) == 0:
        why = ", ".join(f"{p} ({r})" for p, r in whole.skipped[:3]) or "no files"
        raise InvalidInput(f"no usable fragments (files shorter than {FRAGMENT_SIZE} bytes give none with partial=drop): {why}")
    spans = whole.spans
    if val_fraction == 0:
        return whole, FragmentDataset([], partial)
    if len(spans) == 1:
        s = spans[0]
        n_val = max(1, int(round(s.count * val_fraction))) if s.count > 1 else 0
        train = FragmentDataset([Span(s.path, 0, s.count - n_val, s.size)], partial)
        val = FragmentDataset([Span(s.path, s.count - n_val, n_val, s.size)], partial)
        val.within_file = True  # said at the start of training: not a held-out file
    else:
        order = np.random.default_rng(seed).permutation(len(spans))
        n_val = min(len(spans) - 1, max(1, int(round(len(spans) * val_fraction))))
        val_ids = set(order[:n_val].tolist())
        train = FragmentDataset([s for i, s in enumerate(spans) if i not in val_ids], partial)
        val = FragmentDataset([s for i, s in enumerate(spans) if i in val_ids], partial)
    train.skipped = whole.skipped
    return train, val
