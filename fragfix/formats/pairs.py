"""Two errors in one deflate stream: the second searched after each likely first.

A first error that is fixed lets the stream decode further, until the second; so the single
flipped bits that decoded furthest past the damaged stream's failure (to the end, best; to the end
with the right size, better still) are kept while single bits are searched (`Search._first`), and
each in turn is applied and one more flipped bit searched within PAIR_SPAN bytes of it, by the same
search (decoding, or the checksum algebra where the patched stream is back in step).
"""
from __future__ import annotations

import time

FIRSTS, PAIR_SPAN = 16, 512  # the first edits tried, and how far from them the second may lie


def two_bits(search, tick) -> bool:
    """A second error near the first: each of the FIRSTS single edits that decoded furthest past
    the failure (to the end, best) is applied in turn, and one more flipped bit is searched
    within PAIR_SPAN bytes of it."""
    firsts = sorted(search.firsts, reverse=True)
    for i, (_, _, base) in enumerate(firsts):
        now = time.perf_counter()
        if now > search.deadline:
            return False
        patched = bytearray(search.buf)
        for p, x in base:
            patched[p] ^= x
        share = (search.deadline - now) / (len(firsts) - i)
        # no model in the second search: it would read the whole output again for one small window
        sub = type(search)(patched, search.start, search.stop, search.kind, search.verify, search.expect_len,
                           None, now + share, search.expect_end)
        sub.stored_at = search.stored_at
        p0 = base[0][0]
        sub.window = (max(search.start, p0 - PAIR_SPAN), min(search.stop, p0 + PAIR_SPAN + 1))
        inner = sub.run(two_bits=False, tick=tick)
        search.o.tried += inner.tried
        search.o.compared += inner.compared
        if inner.edits:
            search.o.edits = sorted(base + inner.edits)
            return True
    return False
