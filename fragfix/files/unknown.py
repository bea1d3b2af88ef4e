"""Which bytes of a file are unknown, and which a repair guessed: mapfile ranges, runs of zeros.

`UnknownMap` answers "which of these bytes are unknown" for any stretch of a file from a ddrescue
mapfile's bad ranges; `zero_run_mask` marks runs of zeros (for images whose mapfile is lost);
`Ranges` collects the byte ranges a repair changed or was unsure of, for `--map-out`.
"""
from __future__ import annotations

import bisect
from array import array

import numpy as np


def run_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the runs of True in a bool array (work in the number of True, which is small)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return idx, idx
    breaks = np.flatnonzero(np.diff(idx) != 1)
    return idx[np.r_[0, breaks + 1]], idx[np.r_[breaks, len(idx) - 1]] + 1


def runs(mask: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """The runs of True as [start, end) ranges, shifted by `offset`."""
    starts, ends = run_bounds(mask)
    return [(offset + int(a), offset + int(b)) for a, b in zip(starts, ends)]


def zero_run_mask(window: np.ndarray, n: int) -> np.ndarray:
    """True where a byte lies in a run of at least n zeros (within the window)."""
    z = (window == 0).astype(np.int32)
    if n <= 1:
        return z.astype(bool)
    if len(z) < n:
        return np.zeros(len(z), dtype=bool)
    c = np.concatenate([[0], np.cumsum(z)])
    full = (c[n:] - c[:-n]) == n  # full[j]: window[j:j+n] all zero
    cf = np.concatenate([[0], np.cumsum(full)])  # i is covered if some full[j], i-n+1 <= j <= i
    i = np.arange(len(z))
    return (cf[np.clip(i + 1, 0, len(full))] - cf[np.clip(i - n + 1, 0, len(full))]) > 0


class UnknownMap:
    """Which bytes of a file are unknown: mapfile bad ranges (sorted, merged)."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self.starts = [r[0] for r in ranges]

    def mask(self, start: int, end: int) -> np.ndarray:
        m = np.zeros(end - start, dtype=bool)
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.ranges) and self.ranges[i][0] < end:
            a, b = self.ranges[i]
            if b > start:
                m[max(a, start) - start:min(b, end) - start] = True
            i += 1
        return m


class Ranges:
    """Sorted [start, end) byte ranges, merged as they come, 16 bytes each (a list of lists took ~100)."""

    def __init__(self):
        self.starts, self.ends = array("q"), array("q")

    def add(self, offsets: np.ndarray) -> None:
        """Append sorted offsets, merging neighbours."""
        if len(offsets) == 0:
            return
        breaks = np.flatnonzero(np.diff(offsets) != 1)
        starts = np.concatenate([[offsets[0]], offsets[breaks + 1]])
        ends = np.concatenate([offsets[breaks], [offsets[-1]]]) + 1
        if self.ends and self.ends[-1] == starts[0]:
            self.ends[-1] = int(ends[0])
            starts, ends = starts[1:], ends[1:]
        self.starts.extend(starts.tolist())
        self.ends.extend(ends.tolist())
