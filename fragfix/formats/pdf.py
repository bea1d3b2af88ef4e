"""PDF: every FlateDecode stream is a zlib stream with its own Adler-32, checked and repaired as zlib.

A PDF carries no checksum of its own, but its page contents, fonts, images and (since PDF 1.5) its
object and cross-reference streams are mostly FlateDecode streams: each a zlib stream (RFC 1950)
ending in the Adler-32 of what it holds. Each is found between `stream` and `endstream` where its
dictionary names /FlateDecode as the first filter, ends where its direct /Length says (else just
before the end-of-line that precedes `endstream`), is checked by zlib, and where it fails goes
through the same search as a zlib file (containers.zlib_part). Repairs change bytes, never lengths, so every offset in the
cross-reference table stays valid. Everything outside the streams (objects, the xref table) is
covered by no check: a PDF is at most restored, never verified, and the report says so.
"""
from __future__ import annotations

import re
import time
import zlib

from fragfix.formats.containers import zlib_part
from fragfix.formats.result import Part

STREAM = re.compile(rb"stream(\r\n|\n)")
FLATE = re.compile(rb"/Filter\s*(\[\s*)?/FlateDecode\b")
LENGTH = re.compile(rb"/Length\s+(\d+)(?!\d)(?!\s+\d+\s+R)")  # a direct length (an indirect one, "12 0 R", is not read)
DICT_REACH = 4096  # how far before `stream` its dictionary is looked for


def looks_like(d: bytes) -> bool:
    return d[:5] == b"%PDF-"


def streams(d: bytes) -> list[tuple[int, int]]:
    """(start, stop) of every FlateDecode stream's data, in file order."""
    out, after = [], 0
    for m in STREAM.finditer(d):
        s = m.end()
        if m.start() < after or d[m.start() - 3:m.start()] == b"end":  # inside the last one, or `endstream`
            continue
        head = d[max(after, m.start() - DICT_REACH):m.start()]
        head = head[head.rfind(b"obj") + 1:] if b"obj" in head else head
        e = d.find(b"endstream", s)
        if e < 0:
            break
        after = e + 9
        if not FLATE.search(head):
            continue
        n = LENGTH.search(head)
        if n and s + int(n.group(1)) <= e:
            e = s + int(n.group(1))
        else:  # the end-of-line before `endstream` is not the stream's
            e -= 2 if d[e - 2:e] == b"\r\n" else 1 if d[e - 1:e] in (b"\r", b"\n") else 0
        if e - s >= 6:
            out.append((s, e))
    return out


def _passes(d: bytes, s: int, e: int) -> bool:
    """Whether d[s:e] is one whole zlib stream whose Adler-32 matches (output read 1 MB at a time)."""
    z = zlib.decompressobj()
    try:
        z.decompress(d[s:e], 1 << 20)
        while z.unconsumed_tail and not z.eof:
            z.decompress(z.unconsumed_tail, 1 << 20)
    except zlib.error:
        return False
    return z.eof and not z.unused_data and not z.unconsumed_tail


def repair(d: bytes, deadline, scorer, tick) -> list[Part]:
    parts, intact, covered = [], 0, 0
    for s, e in streams(d):
        covered += e - s
        if _passes(d, s, e):  # zlib's own check first (C speed): a PDF of 100,000 streams takes a second
            intact += 1
        elif time.perf_counter() > deadline:  # checked, not searched: 20,000 failing streams were 9 s past it
            parts.append(Part(f"stream at {s}", "damaged", checks=["inflate", "adler32"], first_bad=s,
                              note="its check fails; not searched: the format budget is spent"))
        else:
            parts.append(zlib_part(d, s, e, f"stream at {s}", deadline, scorer, tick))
    if intact:  # intact streams are one part: a PDF of 10,000 streams is not 10,000 rows
        parts.insert(0, Part(f"{intact:,} FlateDecode stream{'s' * (intact != 1)}", checks=["inflate", "adler32"]))
    parts.append(Part("objects outside the streams", "unchecked", checks=[],
                      note=f"{len(d) - covered:,} bytes no checksum covers (a PDF has none of its own)"))
    return parts
