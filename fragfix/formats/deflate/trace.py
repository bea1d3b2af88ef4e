"""A damaged deflate stream decoded once: its output, where each input piece left the output, snapshots.

`trace` feeds zlib STEP input bytes at a time and records the output length after each piece, so
that output positions map back to input positions (the resolution of "where"), and keeps decoder
snapshots (with the running checksum) every few KB, so that a candidate edit decodes from a nearby
snapshot instead of from the start. It stops where inflate fails (`error`) or the stream ends.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from fragfix.formats.result import apply

STEP = 64          # input bytes per decode call: the resolution of "where"
KEEP = 256 << 20   # output kept in memory for the search; past this the stream is only checked


@dataclass
class Trace:
    """The damaged stream decoded once: output, output length after each STEP, snapshots."""
    start: int
    out: bytes
    outlen: list[int]                 # output length after piece k (index 0: before any input)
    snaps: dict[int, tuple] = field(default_factory=dict)  # piece index -> (decoder, running checksum)
    end: int | None = None            # absolute position just after the stream, when it ended
    error: int | None = None          # absolute position of the piece where inflate failed
    sum: int = 0                      # checksum of the whole output
    kept: bool = True                 # False: the output grew past KEEP and `out` is empty
    syndrome: int | None = None       # CRC-32 of the output xor the stored one (in-step, CRC formats)
    stored: int | None = None         # the checksum stored after the stream (in-step)

    def pos(self, k: int) -> int:
        return self.start + k * STEP


def _sum(kind: str):
    return zlib.crc32 if kind == "crc32" else zlib.adler32


def trace(buf, start: int, stop: int, kind: str) -> Trace:
    ck = _sum(kind)
    snap_every = max(16, (stop - start) // (STEP * 2000))  # at most ~2000 snapshots (32 KB each)
    d, run = zlib.decompressobj(-15), ck(b"")
    tr = Trace(start, b"", [0], {0: (d.copy(), run)})
    parts, n, k, pos = [], 0, 0, start
    while pos < stop:
        chunk = bytes(buf[pos:min(pos + STEP, stop)])
        try:
            o = d.decompress(chunk)
        except zlib.error:
            tr.error = pos
            break
        if tr.kept:
            parts.append(o)
        n += len(o)
        run = ck(o, run)
        if n > KEEP and tr.kept:
            tr.kept, parts = False, []
        k += 1
        pos += len(chunk)
        tr.outlen.append(n)
        if d.eof:
            tr.end = pos - len(d.unused_data)
            break
        if k % snap_every == 0:
            tr.snaps[k] = (d.copy(), run)
    tr.out, tr.sum = b"".join(parts), run
    return tr


def inflated(buf, start: int, edits) -> tuple[int, bytes] | None:
    """(where the raw deflate stream at `start` ends, its whole output) with `edits` (offset, xor)
    applied; None where inflate fails or the stream does not end."""
    b = apply(buf, edits)
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(b[start:])
    except zlib.error:
        return None
    return (len(b) - len(d.unused_data), out) if d.eof else None
