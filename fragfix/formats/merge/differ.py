"""Where damaged copies of one file differ, and in what order to try their versions.

Where the copies agree a byte is taken as read (two copies damaged alike at one offset is the case
this cannot see); where more than half agree, their byte (`majority`). The rest are grouped into
*areas* (`areas`): bytes closer than GAP, never across a 512-byte sector boundary (one copy's bad
sector may sit right beside the other's), nor where another copy's damage begins. Each area holds
the versions the copies give, likeliest first: the one most copies agree on, one that is not all
zeros before one that is (an unread sector as ddrescue leaves it), then the input's own.
`combinations` tries them in order of how many areas leave their first version (none, then one,
then two ...).
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Callable

import numpy as np

GAP = 16             # differing bytes closer than this are one area …
SECTOR = 512         # … within one sector: disks lose whole sectors, and neighbours may be each copy's
MAX_COMPARED = 4096  # combinations within the verified bound (4096 x 2^-32 ~ 1e-6); past it, probable
MAX_TRIED = 4 * MAX_COMPARED  # combinations tried at most
MAX_AREAS = 64       # more areas than this: random damage in every copy, past what combinations can reach


def majority(copies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the byte most of the (C, N) copies hold where more than half agree (else the first
    copy's), and (N,) bool: where no byte has more than half (with two copies: wherever they differ)."""
    base = copies[0].copy()
    differ = (copies != copies[0]).any(0)
    at = np.flatnonzero(differ)
    cols = copies[:, at]
    votes = (cols[:, None, :] == cols[None, :, :]).sum(1)  # (C, K) copies agreeing with each copy
    lead = votes.argmax(0)
    won = votes[lead, np.arange(len(at))] * 2 > len(copies)
    base[at[won]] = cols[lead[won], np.arange(len(at))[won]]
    open_ = np.zeros(len(base), bool)
    open_[at[~won]] = True
    return base, open_


def areas(copies: np.ndarray, open_: np.ndarray | None = None) -> list[tuple[int, int, list[bytes]]]:
    """(start, end, versions) of every area where the (C, N) uint8 copies differ (where `open_`, if
    given); versions are the distinct contents there, likeliest first (most copies, not all zeros,
    the first copy's)."""
    diff = np.flatnonzero((copies != copies[0]).any(0) if open_ is None else open_)
    if not len(diff):
        return []
    # which copies agree at each byte (each copy labelled by the first copy equal to it): where that
    # changes, another copy's damage begins, and the versions must be chosen apart
    cols = copies[:, diff]
    label = np.stack([np.argmax(cols == cols[c], axis=0) for c in range(len(copies))])  # (C, K)
    changed = (label[:, 1:] != label[:, :-1]).any(0)
    if len(copies) > 2:  # every copy different here: which one is right may change from byte to byte
        alone = (label == np.arange(len(copies))[:, None]).all(0)
        changed |= alone[1:] | alone[:-1]
    cut = np.flatnonzero((np.diff(diff) >= GAP) | (diff[1:] // SECTOR != diff[:-1] // SECTOR) | changed) + 1
    out = []
    for run in np.split(diff, cut):
        a, b = int(run[0]), int(run[-1]) + 1
        seen: dict[bytes, list[int]] = {}
        for i, c in enumerate(copies[:, a:b]):
            seen.setdefault(c.tobytes(), []).append(i)
        order = sorted(seen, key=lambda v: (-len(seen[v]), not v.strip(b"\0"), seen[v][0]))
        out.append((a, b, order))
    return out


def put(buf: bytearray, lo: int, area: tuple[int, int, list[bytes]], c: int) -> None:
    """Write version `c` of `area` into `buf`, which holds the file's bytes from offset `lo` on
    (only the part of the area inside it)."""
    a, b, versions = area
    s, e = max(a, lo), min(b, lo + len(buf))
    if s < e:
        buf[s - lo:e - lo] = versions[c][s - a:e - a]


def settle(data: bytes, lo: int, hi: int, found: list, fixed: dict[int, int], ok: Callable[[bytearray], bool],
           spent: list[int] | None = None, deadline: float = math.inf, max_free: int = 1 << 30) -> bytearray | None:
    """The areas over data[lo:hi] not yet in `fixed` tried in combinations, the fixed ones in place,
    until `ok(span)` holds: their choices go into `fixed` and the span is returned. None where none
    does, past `max_free` such areas, MAX_TRIED comparisons or `deadline`. `spent[0]` counts the
    combinations checked (a part's own check against a candidate, as the search counts them)."""
    over = [j for j, (a, b, _) in enumerate(found) if a < hi and b > lo]
    free = [j for j in over if j not in fixed]
    if len(free) > max_free:
        return None
    span = bytearray(data[lo:hi])
    for j in over:
        if j in fixed:
            put(span, lo, found[j], fixed[j])
    for choice in combinations([len(found[j][2]) for j in free]):
        if spent is not None and (spent[0] >= MAX_TRIED or time.perf_counter() > deadline):
            return None
        for j, c in zip(free, choice):
            put(span, lo, found[j], c)
        if spent is not None and free:
            spent[0] += 1
        if ok(span):
            fixed.update(zip(free, choice))
            return span
    return None


def the_rest(found: list, fixed: dict[int, int]):
    """Full choices (tuples of indices): the `fixed` areas as settled, every combination of the others."""
    rest = [j for j in range(len(found)) if j not in fixed]
    if len(rest) > MAX_AREAS:
        return
    for choice in combinations([len(found[j][2]) for j in rest]):
        full = {**fixed, **dict(zip(rest, choice))}
        yield tuple(full[j] for j in range(len(found)))


def combinations(counts: list[int]) -> itertools.chain:
    """Every choice of one version per area (tuples of indices), those that leave fewer areas at
    their first version first."""
    k = len(counts)
    alts = [range(1, c) for c in counts]

    def with_changes(m: int):
        for which in itertools.combinations(range(k), m):
            for picks in itertools.product(*(alts[i] for i in which)):
                choice = [0] * k
                for i, p in zip(which, picks):
                    choice[i] = p
                yield tuple(choice)
    return itertools.chain.from_iterable(with_changes(m) for m in range(k + 1))
