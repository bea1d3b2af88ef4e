"""Find and undo a small error in a raw deflate stream, accepted only when the stream's checks pass.

A damaged deflate stream fails in one of three ways (measured on gzipped source code, one flipped
bit each): inflate stops with an error soon after the damage (about a quarter; 99% within 3 KB),
it desynchronises and ends in the wrong place without an error, or it stays in step and only a few
output bytes are wrong (about half: a literal or a copy distance changed), so only the checksum
fails. `search` decodes the stream once in STEP-byte calls, keeping decoder snapshots, and then
tries candidate edits (one flipped bit, then one wrong byte, then a second flipped bit after the
first fix that moves the failure furthest), nearest the evidence first:
  error       -> backwards from where inflate failed;
  wrong end   -> backwards from where the output stops looking like the data before it;
  in step     -> pieces whose output looks least plausible first (the scorer: the data's own
                 context counts and, when given, the model).
Each candidate decodes from the nearest snapshot. An in-step candidate stops as soon as its output
is back in step with the damaged one with 32 KB (the deflate window) of agreement after its last
difference: no later copy can carry the difference on, so the rest of the output is the damaged
stream's own and the checksum of the whole follows from a running CRC without decoding to the end.
"""
from __future__ import annotations

import bisect
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

STEP = 64          # input bytes per decode call: the resolution of "where"
WINDOW = 32768     # deflate's window: differences further back can no longer be copied
KEEP = 256 << 20    # output kept in memory for the search; past this the stream is only checked
MAX_DRIFT = 1 << 17  # an in-step candidate still differing this far past its edit is out of step
BATCH = 256        # positions per batch of in-step candidates ranked together
EAGER, EAGER_BITS = 4, 8.0  # per batch, compare at once the 4 most plausible that remove >= 8 bits of surprise
# (end of stream, output length, checksum) -> None where the structure fails (end, size), else checksum ok
Verify = Callable[[int, int, int], "bool | None"]
Scorer = Callable[[bytes], np.ndarray]    # data -> how implausible each byte is (higher: less)


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


@dataclass
class Outcome:
    edits: list[tuple[int, int]] | None   # (absolute offset, xor) that made every check pass
    tried: int = 0       # candidates decoded
    compared: int = 0    # candidates that reached the checksum comparison
    case: str = ""       # error, wrong-end, in-step, intact
    first_bad: int | None = None  # best estimate of the damage's position


class Search:
    def __init__(self, buf, start: int, stop: int, kind: str, verify: Verify, expect_len: int | None,
                 scorer: Scorer | None, deadline: float, expect_end: int | None = None):
        self.buf, self.start, self.stop, self.kind = buf, start, stop, kind
        self.expect_end = expect_end
        self.verify, self.expect_len, self.scorer, self.deadline = verify, expect_len, scorer, deadline
        self.ck = _sum(kind)
        self.tr = trace(buf, start, stop, kind)
        self.snap_keys = sorted(self.tr.snaps)
        self.o = Outcome(None)
        self.best_reach: tuple[int, list] = (-1, [])  # the failed candidate that decoded furthest
        self.held: list | None = None  # in-step candidates waiting to be compared
        self.counts = None
        self.seen: set = set()  # (end, length, checksum) of every output compared
        self.current: list = []  # the candidate being tested

    # ---- one candidate -------------------------------------------------------------------------
    def _chunk(self, pos: int, size: int, edits) -> bytes:
        chunk = self.buf[pos:min(pos + size, self.stop)]
        hit = [(p - pos, x) for p, x in edits if pos <= p < pos + len(chunk)]
        if hit:
            chunk = bytearray(chunk)
            for i, x in hit:
                chunk[i] ^= x
        return bytes(chunk)

    def test(self, edits: list[tuple[int, int]], in_step: bool) -> bool:
        """Decode with `edits` applied from the snapshot before them; True when every check passes."""
        self.o.tried += 1
        self.current = edits
        tr, first, last = self.tr, min(p for p, _ in edits), max(p for p, _ in edits)
        g = self.snap_keys[bisect.bisect_right(self.snap_keys, (first - self.start) // STEP) - 1]
        d, c = tr.snaps[g]
        d, n, k, pos = d.copy(), tr.outlen[g], g, tr.pos(g)
        first_diff = last_diff = -1
        base, outs = n, []
        try:
            while pos < self.stop:
                size = STEP if pos <= last + STEP else 32 * STEP  # big calls once past the edits
                chunk = self._chunk(pos, size, edits)
                o = d.decompress(chunk)
                pos, k, c = pos + len(chunk), k + len(chunk) // STEP, self.ck(o, c)
                end = pos - len(d.unused_data) if d.eof else None
                if not in_step:
                    n += len(o)
                    if end is not None:
                        return self._final(end, n, c)
                    if self.expect_len is not None and n > self.expect_len:
                        return False
                    continue
                outs.append(o)
                seg = tr.out[n:n + len(o)]
                if seg != o:
                    if len(seg) != len(o) and end is None:
                        return False
                    m = min(len(seg), len(o))
                    diff = np.flatnonzero(np.frombuffer(seg[:m], np.uint8) != np.frombuffer(o[:m], np.uint8))
                    if len(seg) != len(o):
                        diff = np.append(diff, m)
                    first_diff = n + int(diff[0]) if first_diff < 0 else first_diff
                    last_diff = n + int(diff[-1])
                n += len(o)
                if end is not None:  # the candidate's stream ended before it was back in step
                    if first_diff < 0 or (self.expect_len is not None and n != self.expect_len):
                        return False
                    return self._hold(first_diff, last_diff, base, outs, lambda e=end, t=n, cc=c: self._final(e, t, cc))
                if pos > last + STEP and tr.pos(k) == pos and k < len(tr.outlen) and tr.outlen[k] == n:
                    if first_diff < 0:
                        return False  # the edit changed nothing in the output
                    if n - last_diff > WINDOW:  # back in step: the rest is the damaged stream's own
                        return self._hold(first_diff, last_diff, base, outs, lambda nn=n, cc=c: self.compare(nn, cc))
                if first_diff >= 0 and n - first_diff > MAX_DRIFT:
                    return False
        except zlib.error:
            if pos > self.best_reach[0]:
                self.best_reach = (pos, list(edits))
            return False
        return False

    def _hold(self, a: int, b: int, base: int, outs: list[bytes], check) -> bool:
        if self.held is None:
            return check()
        from .locate import gain
        lo, hi = max(base, a - 2), min(b, a + 64) + 3
        cand = b"".join(outs)[lo - base:hi - base]
        self.held.append((gain(self.counts, self.tr.out[lo:hi], cand), check, self.current))
        return False

    def _final(self, end: int, n: int, c: int) -> bool:
        """The container's checks: None when the structure already fails (end, size), else
        whether the checksum matches; only the latter counts as a comparison."""
        r = self.verify(end, n, c)
        if r is not None and (end, n, c) not in self.seen:  # candidates with the same output are one hypothesis
            self.seen.add((end, n, c))
            self.o.compared += 1
        return bool(r)

    def compare(self, n: int, c: int) -> bool:
        """The whole output's checksum for an in-step candidate whose output from `n` on is the
        damaged stream's own (`c`: its checksum up to `n`)."""
        return self._final(self.tr.end, len(self.tr.out), self.ck(memoryview(self.tr.out)[n:], c))

    # ---- the search ---------------------------------------------------------------------------
    def intact(self) -> bool:
        tr = self.tr
        return tr.error is None and tr.end is not None and bool(self.verify(tr.end, tr.outlen[-1], tr.sum))

    def in_step(self) -> bool:
        tr = self.tr
        return (tr.error is None and tr.end is not None
                and (self.expect_len is None or tr.outlen[-1] == self.expect_len)
                and (self.expect_end is None or tr.end == self.expect_end))

    def run(self, two_bits: bool = True, tick: Callable[[int], None] | None = None) -> Outcome:
        from .locate import ranked_positions
        tr, o = self.tr, self.o
        if self.intact():
            o.case, o.edits = "intact", []
            return o
        in_step = self.in_step()
        if not tr.kept:  # too large to search: checked only
            o.case = "too large to search"
            return o
        o.case = "error" if tr.error is not None else "in-step" if in_step else "wrong-end"
        order = ranked_positions(tr, self.start, self.stop, o.case, self.scorer, self.kind)
        o.first_bad = order[0] if order else None
        bits = [1 << b for b in range(8)]
        others = [v for v in range(1, 256) if v & (v - 1)]
        if in_step:
            phases = [(order[:4096], bits), (order[:256], others), (order[4096:], bits)]
        else:  # one flipped bit is the likeliest damage (bit rot): every bit near the evidence first
            phases = [(order[:8192], bits), "two-bits", (order[:1024], others), (order[8192:], bits)]
        if in_step:  # candidates back in step are compared in batches, most plausible first
            from .locate import context_counts
            self.counts, self.held = context_counts(tr.out), []
        deferred: list = []
        for phase in phases:
            if phase == "two-bits":
                if two_bits and self._two_bits(tick):
                    return o
                continue
            positions, xors = phase
            for j, p in enumerate(positions):
                for x in xors:
                    if self.test([(p, x)], in_step):
                        o.edits, o.first_bad = [(p, x)], p
                        return o
                late = time.perf_counter() > self.deadline
                if in_step and (late or (j + 1) % BATCH == 0 or j + 1 == len(positions)):
                    # each batch compares only its few most plausible; the rest wait for the phase's end
                    self.held.sort(key=lambda h: -h[0])
                    for n_, (gain, check, edits) in enumerate(self.held):
                        if n_ >= EAGER or gain < EAGER_BITS:
                            deferred.append((gain, check, edits))
                        elif check():
                            o.edits, o.first_bad = edits, edits[0][0]
                            return o
                    self.held = []
                if late:
                    break
                if tick and o.tried % 2048 < len(xors):
                    tick(o.tried)
            if time.perf_counter() > self.deadline:
                break
        # last, every candidate that waited, most plausible first (comparing is cheap: no decoding)
        for gain, check, edits in sorted(deferred, key=lambda h: -h[0]):
            if check():
                o.edits, o.first_bad = edits, edits[0][0]
                return o
        return o

    def _two_bits(self, tick) -> bool:
        """A second error after the first: fix the candidate that decoded furthest, search again."""
        reach, base = self.best_reach
        if reach <= (self.tr.error or 0) + 2 * STEP or time.perf_counter() > self.deadline:
            return False
        patched = bytearray(self.buf)
        for p, x in base:
            patched[p] ^= x
        sub = Search(patched, self.start, self.stop, self.kind, self.verify, self.expect_len, self.scorer,
                     self.deadline, self.expect_end)
        inner = sub.run(two_bits=False, tick=tick)
        self.o.tried += inner.tried
        self.o.compared += inner.compared
        if inner.edits:
            self.o.edits = sorted(base + inner.edits)
            return True
        return False
