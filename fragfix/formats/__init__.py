"""Verified repair of checksummed formats: gzip, zlib, zip, PNG and PDF streams, proven by their own checks.

A byte model cannot predict compressed bits, but these formats carry their own proof: CRC-32 and
size of every gzip member and zip entry, a CRC-32 over every PNG chunk, Adler-32 at the end of
every zlib stream. Damage is located (the failing chunk, member or entry; where inflate fails or
the output stops looking right), candidate edits are tried nearest the evidence first (deflate/,
crc.py), and an edit is accepted only when every check passes. The chance that a wrong candidate
passes is about (candidates compared) / 2^(checksum bits); a repair's content is *verified* when that
chance is at most 1e-6, *probable* otherwise; the file is *verified* only when no byte of it lies
outside every check as well (result.py: gzip and zip headers hold metadata nothing covers). Without
such a candidate the file stays as it was and the result says which part is damaged and where its
first bad byte lies.

`detect(data)` names the format by content (not by file name); `repair(data, ...)` returns a
`FormatResult`. Nothing here knows files, the CLI or the model: the model comes in as a scorer.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from fragfix.formats import containers, merge, pdf, png, textmode, zipdir, zipfmt
from fragfix.formats.result import VERIFIED, FormatResult, Part, apply, choose  # noqa: F401  (the package's API)

FORMATS = ("gzip", "zlib", "zip", "png", "pdf")


def detect(data: bytes) -> str | None:
    """The checksummed format this data is, by content; None for anything else."""
    if png.looks_like(data) or data.startswith(textmode.SIG_CONVERTED):
        return "png"
    if pdf.looks_like(data):
        return "pdf"
    if containers.looks_like_gzip(data):
        return "gzip"
    if zipfmt.looks_like_zip(data):
        return "zip"
    if containers.looks_like_zlib(data):
        return "zlib"
    return None


def _runner(fmt: str):
    """The format's check-and-search (looked up at each call)."""
    return {"png": png.repair, "gzip": containers.repair_gzip, "zlib": containers.repair_zlib,
            "zip": zipfmt.repair_zip, "pdf": pdf.repair}[fmt]


def repair(data: bytes, fmt: str, budget_s: float = 30.0, scorer: Callable | None = None,
           tick: Callable[[int], None] | None = None, others: tuple[bytes, ...] = ()) -> FormatResult:
    """Check `data` as `fmt` and search for a verified repair of what fails, within `budget_s`.
    `others`: other damaged copies of the same file, merged with it first where they differ (merge.py)."""
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    run = _runner(fmt)
    if textmode.converted(data):  # first: a search over a converted file would spend the budget for nothing
        found = _text_mode(data, fmt, run, t0)
        if found is not None:
            found.seconds = time.perf_counter() - t0
            return found
    if others and not _checked(data, fmt, run, t0).content_verified:
        found = merge.merge(data, list(others), fmt, lambda b: _checked(b, fmt, run, t0), deadline)
        if found is not None:
            found.seconds = time.perf_counter() - t0
            return found
    result = _checked(data, fmt, run, deadline, scorer, tick)
    if result.status in ("restored", "probable"):
        # the proof is the output's own: the edits together must leave a file every check passes
        # (each part checked its edits alone; two parts that disagree about a byte would not)
        again = FormatResult(fmt, run(apply(data, result.edits), t0, None, None))  # no time to search
        if again.status != "intact":
            result.parts.append(Part("the repaired file", "damaged", checks=sorted({c for p in again.parts
                                                                                   for c in p.checks}),
                                     note="the repairs found, applied together, do not pass every check; "
                                          "none taken"))
    result.seconds = time.perf_counter() - t0
    return result


def check(data: bytes, fmt: str) -> FormatResult:
    """Every check of `data` as `fmt`, nothing searched (fast: what a file that needs no repair costs)."""
    return _checked(data, fmt, _runner(fmt), 0.0)


def _checked(data: bytes, fmt: str, run, deadline: float, scorer=None, tick=None) -> FormatResult:
    """The format's parts for `data`, searched until `deadline` (a past one: checked only), and the
    bytes a zip's end record keeps outside every check."""
    result = FormatResult(fmt, run(data, deadline, scorer, tick))
    if fmt == "zip" and (end := zipdir.find_end(data)) is not None:
        result.unchecked = zipdir.end_metadata(data, end)
    return result


def _text_mode(data: bytes, fmt: str, run, t0: float) -> FormatResult | None:
    """The file with the CR before every LF removed, when it fails its checks as it is and passes
    every one so (textmode.py); None otherwise. Checked, not searched (no time given to a search)."""
    if FormatResult(fmt, run(data, t0, None, None)).status == "intact":
        return None
    undone, at = textmode.undo(data)
    result = FormatResult(fmt, run(undone, t0, None, None))
    if result.status != "intact":
        return None
    checks = sorted({c for p in result.parts for c in p.checks})
    kept = np.delete(np.arange(len(data)), at)  # output offset -> input offset
    for p in result.parts:  # what the parts name is in the undone file: name it in the input
        p.unchecked = [(int(kept[o]) if o < len(kept) else o, n, f) for o, n, f in p.unchecked]
    result.unchecked = [(int(kept[o]) if o < len(kept) else o, n, f) for o, n, f in result.unchecked]
    result.parts.insert(0, Part("line ends", "restored", checks=checks, compared=1, first_bad=int(at[0]),
                                note=f"text-mode transfer: every LF had become CR LF; {len(at):,} CR bytes "
                                     "removed, every check passes"))
    result.removed = at.tolist()
    return result
