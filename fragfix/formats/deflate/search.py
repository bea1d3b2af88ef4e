"""Find and undo a small error in a raw deflate stream, accepted only when the stream's checks pass.

A damaged deflate stream fails in one of three ways: inflate stops with an error soon after the
damage; it desynchronises and ends in the wrong place, or finds its step again (Huffman codes do)
and ends in the right place with the wrong size; or it stays in step and only the checksum fails
(a literal or a copy's distance changed). The stream is decoded once (trace.py); then:
  in step     -> every literal and distance bit flip at once by checksum algebra (instep.py), the
                 most plausible first; then candidates decoded, pieces whose output looks least
                 plausible first, each stopping once back in step with the damaged output for 32 KB
                 (the deflate window: the rest is the damaged stream's own, its checksum known);
  error       -> backwards from where inflate failed;
  wrong end   -> backwards from the first copies a zlib-like encoder would not have written
                 (locate.oddity_bound; else from where the output turns implausible), in turns
                 with the least plausible pieces; where the size is known, a candidate must be back
                 in step, short or long by exactly the size's error, SYNC pieces after its edit.
One flipped bit first, then one wrong byte, then two flipped bits (pairs.py; locate.plan). Every candidate at
a position shares one decoder made for that position, so a candidate costs one zlib call up to
where the damaged stream failed (most wrong ones fail there) and ~7 us in all. Candidates that pass
the structure (end, size) may wait their turn by plausibility; what is compared decides whether a
repair may be called verified (formats/__init__.py).
"""
from __future__ import annotations

import time
import zlib
from dataclasses import replace
from typing import Callable

import numpy as np

from fragfix.formats.deflate import instep, pairs, trees
from fragfix.formats.deflate.locate import context_counts, gain, oddity_bound, plan, ranked_positions
from fragfix.formats.deflate.stream import Outcome, Scorer, Stream
from fragfix.formats.deflate.trace import STEP, _sum, trace
from fragfix.formats.result import apply

WINDOW = 32768     # deflate's window: differences further back can no longer be copied
MAX_DRIFT = 1 << 17  # an in-step candidate still differing this far past its edit is out of step
BATCH = 256        # positions per batch of in-step candidates ranked together
ALGEBRA_FIRST = 4096  # in step: this many of the algebra's most plausible candidates go before the decoded search
WINDOW_GAIN = 64   # out of step: output bytes from the first difference that judge a candidate
FINE = 8           # input bytes per call just past where the damaged stream failed: how far a candidate got
SYNC = 4           # out of step, size known: pieces after an edit by which the true candidate is back in step
ODDITY_COST = 1e-6  # seconds per output byte to read a stream's symbols and find its encoder oddities
REACH = 96         # located out of step: the first positions whose single bits are judged as a first of two errors
EAGER, EAGER_BITS = 4, 8.0  # per batch, compare at once the 4 most plausible that remove >= 8 bits of surprise
MEND_BITS, MEND_SHARE = 1000.0, 0.2  # in step, decoded: one that mends the broken Huffman tree goes first,
# one that breaks a tree that followed last (asking the trees: at most a fifth of the time left)
class Search:
    """The state of one stream's search, owned here: pairs.py and instep.py read it, and write only
    into the records they own (`firsts`, `instep`)."""

    def __init__(self, stream: Stream, scorer: Scorer | None, deadline: float,
                 window: tuple[int, int] | None = None):
        self.stream = stream
        self.buf, self.start, self.stop, self.kind = stream.buf, stream.start, stream.stop, stream.kind
        self.verify, self.expect_len, self.expect_end = stream.verify, stream.expect_len, stream.expect_end
        self.scorer, self.deadline = scorer, deadline
        self.window = window  # a second error's search: the input positions its candidates may lie at
        self.ck = _sum(self.kind)
        self.tr = trace(self.buf, self.start, self.stop, self.kind)
        self.o = Outcome(None)
        self.firsts = pairs.Firsts()  # single edits that got past the failure: firsts of two errors
        self.instep = instep.State()  # in step: the stream read symbol by symbol and the algebra's candidates
        self.held: list | None = None  # in-step candidates waiting to be compared
        self.counts = None
        self.seen: set = set()  # (end, length, checksum) of every output compared
        self.current: list = []  # the candidate being tested
        self.bound: tuple | None = None  # out of step: where the first oddities lie, (input, output)
        self.reach_at: set = set()
        self.reach_until = 0.0  # out of step, located: single bits are judged as a first of two errors until then
        self.mend = None  # in step, one block's tree broken: (positions, values) -> whether they mend it (trees.py)

    def expect_length(self, n: int | None) -> None:
        """The output size the container stores for this stream, once its end is known (zip's
        data descriptor follows the stream)."""
        self.stream = replace(self.stream, expect_len=n)
        self.expect_len = n

    def narrowed(self, edits, span: int, deadline: float) -> Search:
        """A second error's search: this stream with `edits` applied, its candidates within `span`
        bytes of the first edit, and no model (it would read the whole output again for one
        small window)."""
        p0 = edits[0][0]
        window = (max(self.start, p0 - span), min(self.stop, p0 + span + 1))
        return Search(replace(self.stream, buf=apply(self.buf, edits)), None, deadline, window)

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
        if not in_step:
            at = tr.state_at(first)
            if at is not None:
                return self._test_from(edits, first, last, *at)
        k, d, n, c = tr.snapshot(first)
        pos = tr.pos(k)
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
            return False
        return False

    def _test_from(self, edits, first: int, last: int, d0, n: int, c: int) -> bool:
        """An out-of-step candidate decoded from the decoder at its first edit: one call up to
        where the damaged stream failed (most wrong candidates fail inside it), then on to the end."""
        tr, d, pos = self.tr, d0.copy(), first
        # up to the byte where the damaged stream failed, then FINE bytes a call: a first of two errors
        # gets past it, if only to fail at the second a few bytes on
        limit = max(last + 1, tr.failing_byte() + 1 if tr.error is not None else first + STEP)
        # a stream that ended with the wrong size after resynchronising: the true candidate is back
        # in step with it within SYNC pieces, its output shorter or longer by exactly the size's error
        sync = None
        if tr.error is None and tr.end is not None and self.expect_len is not None:
            k = -(-(last + 1 - self.start) // STEP) + SYNC
            if k < len(tr.outlen) and tr.pos(k) < tr.end:
                sync, limit = k, tr.pos(k)
        base, outs = n, []
        try:
            while pos < self.stop:
                size = limit - pos if pos < limit else FINE if pos < limit + 16 * STEP else 32 * STEP
                chunk = self._chunk(pos, size, edits)
                o = d.decompress(chunk)
                pos, n, c = pos + len(chunk), n + len(o), self.ck(o, c)
                if self.held is not None:  # only a held candidate is judged by its output
                    outs.append(o)
                if d.eof:
                    end = pos - len(d.unused_data)
                    shaped = self.verify(end, n, c) is not None  # the structure (end, size) passes
                    if self.held is None or not shaped:
                        ok = self._final(end, n, c)
                        if not ok:  # to an end, but not the right one: a first of two errors?
                            pairs.ended(self, edits, shaped)
                        return ok
                    return self._hold_shifted(base, b"".join(outs), lambda e=end, t=n, cc=c: self._final(e, t, cc))
                if sync is not None and pos == limit and n - tr.outlen[sync] != self.expect_len - tr.outlen[-1]:
                    return False
                if self.expect_len is not None and n > self.expect_len:
                    return False
        except zlib.error:
            if pos >= limit:  # past where the damaged stream failed: a first of two errors?
                pairs.failed_later(self, edits, first, pos, limit)
        return False

    def _hold(self, a: int, b: int, base: int, outs: list[bytes], check) -> bool:
        if self.held is None:
            return check()
        lo, hi = max(base, a - 2), min(b, a + 64) + 3
        whole = b"".join(outs)
        cand = whole[lo - base:hi - base]
        g = gain(self.counts, self.tr.out[lo:hi], cand)
        seg = self.tr.out[a:b + 1]
        if self.mend is not None and len(whole) >= b + 1 - base and len(seg) == b + 1 - a:  # what zlib's trees say
            new = np.frombuffer(whole[a - base:b + 1 - base], np.uint8)  # (trees.mender); same length only
            pos = a + np.flatnonzero(new != np.frombuffer(seg, np.uint8))
            g += MEND_BITS * self.mend(pos, new[pos - a].astype(np.int64))
        self.held.append((g, check, self.current))
        return False

    def _hold_shifted(self, base: int, tail: bytes, check) -> bool:
        """Hold an out-of-step candidate that passes the structural checks until its turn (as `_hold`),
        judged where its output (from output position `base` on) first differs from the damaged one:
        WINDOW_GAIN bytes from there on each side."""
        dmg = memoryview(self.tr.out)[base:]
        m = min(len(dmg), len(tail))
        diff = np.flatnonzero(np.frombuffer(dmg[:m], np.uint8) != np.frombuffer(tail[:m], np.uint8))
        f = int(diff[0]) if len(diff) else m
        lo, hi = max(0, f - 2), f + WINDOW_GAIN + 2
        self.held.append((gain(self.counts, bytes(dmg[lo:hi]), tail[lo:hi]), check, self.current))
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
        tr, o = self.tr, self.o
        if self.intact():
            o.case, o.edits = "intact", []
            return o
        in_step = self.in_step()
        if not tr.kept:  # too large to search: checked only
            o.case = "too large to search"
            return o
        o.case = "error" if tr.error is not None else "in-step" if in_step else "wrong-end"
        if in_step and tr.stored is None and self.stream.stored_at is not None:
            tr.stored = self.stream.stored_at(tr.end)
            tr.syndrome = tr.sum ^ tr.stored if self.kind == "crc32" else None
        if in_step and tr.stored is not None and instep.algebra(self, 0, ALGEBRA_FIRST):
            return o
        if in_step and self.instep.parse is not None:
            until = time.perf_counter() + MEND_SHARE * max(self.deadline - time.perf_counter(), 0)
            self.mend = trees.mender(self.instep.parse, np.frombuffer(tr.out, np.uint8).astype(np.int64), until)
        if in_step and self.window is not None:  # a second error in step: the algebra's, or none
            instep.algebra(self, ALGEBRA_FIRST, None)
            return o
        # a stream that decoded to a wrong end: the first copies a zlib-like encoder would not have
        # written lie just past the damage (locate.py); when they do, the damage is found within the
        # first few dozen positions, so its candidates are compared as they come, not held
        # (~0.7 us an output byte: not where that would take over half the time left)
        affordable = time.perf_counter() + 2 * ODDITY_COST * len(tr.out) < self.deadline
        found = oddity_bound(self.buf, self.start, self.stop, tr.out) if o.case == "wrong-end" and affordable else None
        bound, self.bound = (found[0], found) if found else (None, None)
        order = ranked_positions(tr, self.start, self.stop, o.case, self.scorer, self.kind, bound)
        if self.window is not None:
            order = [p for p in order if self.window[0] <= p < self.window[1]]
        o.first_bad = order[0] if order else None
        if bound is not None and two_bits and o.case == "wrong-end":  # single bits judged as a first of two
            self.reach_at = set(order[:REACH]) if len(tr.out) <= 1 << 20 else set()
            self.reach_until = time.perf_counter() + 0.3 * max(self.deadline - time.perf_counter(), 0)
        phases = plan(order, o.case, two_bits, bound is not None)
        # candidates that pass the structure: compared in batches, most plausible first
        self.counts = context_counts(tr.out)
        deferred: list = []
        for phase in phases:
            if phase == "two-bits":
                if two_bits and pairs.two_bits(self, tick):
                    return o
                continue
            positions, xors, share, hold = phase
            self.held = [] if hold else None
            until = time.perf_counter() + share * max(self.deadline - time.perf_counter(), 0)
            for j, p in enumerate(positions):
                for x in xors:
                    if self.test([(p, x)], in_step):
                        o.edits, o.first_bad = [(p, x)], p
                        return o
                now = time.perf_counter()
                late = now > self.deadline
                pause = not late and now > until and share < 1  # the phase's share is spent: the rest comes last
                if self.held is not None and (late or pause or (j + 1) % BATCH == 0 or j + 1 == len(positions)):
                    # each batch compares only its few most plausible; the rest wait for the phase's end
                    self.held.sort(key=lambda h: -h[0])
                    for n_, (g, check, edits) in enumerate(self.held):
                        if n_ >= EAGER or g < EAGER_BITS:
                            deferred.append((g, check, edits))
                        elif check():
                            o.edits, o.first_bad = edits, edits[0][0]
                            return o
                    self.held = []
                if pause:
                    phases.append((positions[j + 1:], xors, 1.0, hold))
                    break
                if late:
                    break
                if tick and o.tried % 2048 < len(xors):
                    tick(o.tried)
            if time.perf_counter() > self.deadline:
                break
        # last, every candidate that waited, most plausible first (comparing is cheap: no decoding)
        for _, check, edits in sorted(deferred, key=lambda h: -h[0]):
            if check():
                o.edits, o.first_bad = edits, edits[0][0]
                return o
        if self.instep.found is not None:  # the algebra's less plausible candidates come last
            instep.algebra(self, ALGEBRA_FIRST, None)
        return o
