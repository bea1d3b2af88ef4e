"""A damaged deflate stream decoded once: its output, where each input piece left the output, snapshots.

`trace` feeds zlib STEP input bytes at a time and records the output length after each piece, so
that output positions map back to input positions (the resolution of "where"), and keeps decoder
snapshots (with the running checksum) every few KB, so that a candidate edit decodes from a nearby
snapshot instead of from the start. It stops where inflate fails (`error`) or the stream ends.
`state_at(q)` is the decoder just before any input byte, `failing_byte()` the exact byte inflate
fails at: both decoded once and kept, as every candidate at one position shares them.
"""
from __future__ import annotations

import bisect
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
    buf: object = None                # the damaged bytes, `stop` where the stream must end by, `kind` its checksum
    stop: int = 0
    kind: str = "crc32"
    keys: list[int] = field(default_factory=list)  # the snapshots' piece indices, sorted
    _at: tuple | None = None          # (q, decoder, output length, checksum): state_at's last answer
    _fail: int | None = None

    def pos(self, k: int) -> int:
        return self.start + k * STEP

    def snapshot(self, q: int) -> tuple[int, object, int, int]:
        """The last snapshot at or before input byte q: (piece index, a copy of its decoder, output
        length, running checksum there)."""
        k = self.keys[bisect.bisect_right(self.keys, (q - self.start) // STEP) - 1]
        d, c = self.snaps[k]
        return k, d.copy(), self.outlen[k], c

    def state_at(self, q: int) -> tuple | None:
        """The decoder just before input byte q, decoded once from the nearest snapshot and kept for
        the next call at q: (decoder, output length, running checksum); None where the damaged stream
        fails or ends before q."""
        if self._at is None or self._at[0] != q:
            k, d, n, c = self.snapshot(q)
            pos = self.pos(k)
            try:
                o = d.decompress(bytes(self.buf[pos:q])) if q > pos else b""
            except zlib.error:
                return None
            if d.eof:
                return None
            self._at = (q, d, n + len(o), _sum(self.kind)(o, c))
        return self._at[1:]

    def failing_byte(self) -> int:
        """The input byte at which inflate fails (`error` is the piece): decoded a byte at a time."""
        if self._fail is None:
            self._fail = self.error + STEP - 1
            at = self.state_at(self.error)
            if at is not None:
                d = at[0].copy()
                for q in range(self.error, min(self.error + STEP, self.stop)):
                    try:
                        d.decompress(bytes(self.buf[q:q + 1]))
                    except zlib.error:
                        self._fail = q
                        break
        return self._fail


def _sum(kind: str):
    return zlib.crc32 if kind == "crc32" else zlib.adler32


def trace(buf, start: int, stop: int, kind: str) -> Trace:
    ck = _sum(kind)
    snap_every = max(16, (stop - start) // (STEP * 2000))  # at most ~2000 snapshots (32 KB each)
    d, run = zlib.decompressobj(-15), ck(b"")
    tr = Trace(start, b"", [0], {0: (d.copy(), run)}, buf=buf, stop=stop, kind=kind)
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
    tr.out, tr.sum, tr.keys = b"".join(parts), run, sorted(tr.snaps)
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
