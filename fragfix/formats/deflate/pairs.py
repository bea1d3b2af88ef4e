"""Two errors in one deflate stream: the second searched after each likely first.

A first error that is fixed lets the stream decode further, until the second; so the single
flipped bits that decoded furthest past the damaged stream's failure (to the end, best; to the end
with the right size, better still), or, for a stream that ran to a wrong end, that push its encoder
oddities furthest on (`judge_first`), are kept while single bits are searched (`keep_first`), and
each in turn is applied and one more flipped bit searched within PAIR_SPAN bytes of it, by the same
search (decoding, or the checksum algebra where the patched stream is back in step).
"""
from __future__ import annotations

import heapq
import time
import zlib

from fragfix.formats.deflate.locate import oddity_bound


FIRSTS, PAIR_SPAN = 16, 512  # the first edits tried, and how far from them the second may lie
NEAR_FAIL = 64     # input bytes before where inflate failed: a first of two errors that gets past it is likely here


class Firsts:
    """The FIRSTS single flipped bits that got furthest (ties: the first found), each a first of two
    errors to try; owned by this module, kept by a Search."""

    def __init__(self):
        self.heap: list = []  # (how far it got, -candidates tried before it, edits)

    def keep(self, reach: float, tried: int, edits) -> None:
        heapq.heappush(self.heap, (reach, -tried, list(edits)))
        if len(self.heap) > FIRSTS:
            heapq.heappop(self.heap)

    def best_first(self) -> list:
        return sorted(self.heap, reverse=True)


def keep_first(search, reach: float, edits) -> None:
    """Keep a single flipped bit that got as far as `reach`."""
    if len(edits) == 1 and not edits[0][1] & (edits[0][1] - 1):
        search.firsts.keep(reach, search.o.tried, edits)


def ended(search, edits, shaped: bool) -> None:
    """A single edit after which the stream decodes to an end but fails its checks. Past an inflate
    error to the end: a first, best when the size is right (a second error that kept the stream in
    step); in a stream that ended wrong and was located: judged by its oddities."""
    if search.tr.error is not None:
        keep_first(search, search.stop + 1 + shaped, edits)
    elif search.bound and len(edits) == 1 and not edits[0][1] & (edits[0][1] - 1) \
            and edits[0][0] in search.reach_at and time.perf_counter() < search.reach_until:
        judge_first(search, edits)


def failed_later(search, edits, first: int, pos: int, limit: int) -> None:
    """A single edit that got past where the damaged stream failed, to fail at `pos`: near that
    failure (where a first error shows) it goes before any that ran on to a wrong end from further
    back; the further it got, the better."""
    near = search.tr.error is not None and first >= search.tr.failing_byte() - NEAR_FAIL
    stop = search.stop
    keep_first(search, stop + 1 + 0.5 * (pos - limit) / (stop - limit + 1) if near else pos, edits)


def judge_first(search, edits) -> None:
    """A stream that ended wrong: a single flipped bit after which the first oddities lie further on
    than before (the output is right up to a second error) is kept as a first of two."""
    b = bytearray(search.buf[search.start:search.stop])
    b[edits[0][0] - search.start] ^= edits[0][1]
    try:
        out = zlib.decompressobj(-15).decompress(bytes(b))
    except zlib.error:
        return
    got = oddity_bound(b, 0, len(b), out, after=search.bound[1])  # strays before the damage: both have them
    if got is not None and got[1] > search.bound[1] + 16:  # ties: the fewer oddities left, the better
        keep_first(search, search.start + got[0] + 0.5 / (1 + got[2]), edits)


def two_bits(search, tick) -> bool:
    """A second error near the first: each of the FIRSTS single edits that decoded furthest past
    the failure (to the end, best) is applied in turn, and one more flipped bit is searched
    within PAIR_SPAN bytes of it."""
    firsts = search.firsts.best_first()
    for i, (_, _, base) in enumerate(firsts):
        now = time.perf_counter()
        if now > search.deadline:
            return False
        sub = search.narrowed(base, PAIR_SPAN, now + (search.deadline - now) / (len(firsts) - i))
        inner = sub.run(two_bits=False, tick=tick)
        search.o.tried += inner.tried
        search.o.compared += inner.compared
        if inner.edits:
            search.o.edits = sorted(base + inner.edits)
            return True
    return False
