"""Two or more damaged copies of one checksummed file, merged where they differ and proven by its checks.

A backup and its mirror, two reads of a failing disk, a download fetched twice: each copy is damaged
somewhere, seldom in the same place (lziprecover's --merge is the model). `differ.py` finds where they
differ and orders each area's versions; a gzip or zlib file is then merged front to back
(`stream.py`), a zip entry by entry (`entries.py`), a PNG chunk by chunk (`chunks.py`), a PDF by
trying the combinations of every area together. Every combination compared counts against the claim as the search's candidates do:
MAX_COMPARED of them keep a wrong pass under VERIFIED's chance. Random damage in every copy (1% of
bytes: thousands of areas) is past this; sectors and bursts are what it is for.

A candidate is checked fast by the format's own reader (zlib, zipfile), then once in full by
`formats.repair` with no time to search: only a content-verified result is taken.
"""
from __future__ import annotations

import io
import itertools
import time
import zipfile
import zlib
from typing import Callable

import numpy as np

from fragfix.formats.merge.differ import MAX_AREAS, MAX_TRIED, areas, combinations, majority, put
from fragfix.formats.merge.chunks import by_chunk
from fragfix.formats.merge.entries import by_entry
from fragfix.formats.merge.stream import Feed, streamed
from fragfix.formats.result import FormatResult, Part

__all__ = ["merge", "majority", "areas"]


def quick_check(fmt: str) -> Callable[[bytes], bool]:
    """A fast pass/fail by the format's own reader (a candidate that passes is checked in full)."""
    if fmt in ("gzip", "zlib"):
        return lambda b: _inflates(b, 31 if fmt == "gzip" else 15)
    return _zip_ok if fmt == "zip" else (lambda b: True)


def _inflates(b: bytes, wbits: int) -> bool:
    f = Feed(wbits)  # each gzip member's CRC-32 and ISIZE checked by zlib, zero padding after
    try:
        f.feed(b)
    except zlib.error:
        return False
    return f.ended


def _zip_ok(b: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(b)) as z:
            return z.testzip() is None
    except Exception:  # noqa: BLE001 (any failure to read is a failing candidate)
        return False


def merge(data: bytes, others: list[bytes], fmt: str, run: Callable[[bytes], FormatResult],
          deadline: float) -> FormatResult | None:
    """`data` merged with the other copies of it (same length): a restored FormatResult whose first part
    says what was merged, or None where the copies are the same, too different to try, or no
    combination passes before `deadline`. `run(candidate)` is the full check (no search)."""
    same = [o for o in others if len(o) == len(data)]
    if not same:
        return None
    copies = np.stack([np.frombuffer(x, np.uint8) for x in [data, *same]])
    if not (copies != copies[0]).any():
        return None
    base, open_ = majority(copies)  # three copies or more: most bytes have a majority; the rest are areas
    start = base.tobytes()
    found = areas(copies, open_)
    spent = [0]  # comparisons made inside a generator (by_entry)
    if not found:  # the majority settled every byte: one candidate
        choices, quick = iter([()]), quick_check(fmt)
    elif fmt in ("gzip", "zlib"):
        choices, quick = streamed(start, found, 31 if fmt == "gzip" else 15, deadline), (lambda b: True)
    elif fmt in ("zip", "png"):  # entry by entry, chunk by chunk; failing that, every area together
        choices = (by_entry if fmt == "zip" else by_chunk)(start, found, spent, deadline)
        quick = quick_check(fmt)
        if len(found) <= MAX_AREAS:
            choices = itertools.chain(choices, combinations([len(v) for _, _, v in found]))
    elif len(found) <= MAX_AREAS:
        choices, quick = combinations([len(v) for _, _, v in found]), quick_check(fmt)
    else:
        return None
    buf, tried = bytearray(start), 0
    for choice in choices:
        if tried + spent[0] >= MAX_TRIED or time.perf_counter() > deadline:
            return None
        for area, c in zip(found, choice):
            put(buf, 0, area, c)
        tried += 1
        cand = bytes(buf)
        if not quick(cand):
            continue
        full = run(cand)
        if full.status != "intact" or not full.content_verified:
            continue
        x = np.frombuffer(cand, np.uint8) ^ copies[0]
        at = np.flatnonzero(x)
        edits = list(zip(at.tolist(), x[at].tolist()))
        voted = int((base != copies[0]).sum())
        taken = sum(v[c] != data[a:b] for (a, b, v), c in zip(found, choice))
        compared = tried + spent[0]
        note = (f"{len(found)} areas where the copies differ with no majority "
                f"({sum(b - a for a, b, _ in found):,} bytes); {taken} taken from another copy"
                + (f", {voted:,} bytes from the majority of {len(copies)} copies" if voted else "")
                + f"; {compared:,} combination{'s' if compared != 1 else ''} compared")
        merged = Part("copies merged", "restored", checks=sorted({c for p in full.parts for c in p.checks}),
                      candidates=compared, compared=compared, edits=edits,
                      first_bad=edits[0][0] if edits else None, note=note)
        return FormatResult(fmt, [merged] + full.parts, unchecked=full.unchecked)
    return None
