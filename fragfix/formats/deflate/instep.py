"""In-step damage in a deflate stream: every candidate edit checked at once by checksum algebra.

When a damaged stream still inflates to the right length and ends in the right place, and only its
checksum fails, the damage changed what some symbol wrote: a literal's code turned into another of
the same length, or a distance's extra bits or its code (read again as a code and extra bits of the
same length in all) changed which earlier bytes a match copies (edits.py lists them). None is
decoded here. Every output byte is a literal or a copy of one, so a changed byte at p changes every
byte that copies it (its *subtree*). CRC-32 is linear: the change of the whole output's CRC is the
xor, over the changed bytes, of (xor at p) times x^(8 * bytes after each subtree member) mod P,
which `subtree` sums once per position; Adler-32 is linear mod 65521 the same way. So every
candidate's checksum comes from a few vector operations.

Order decides what the result may be called: the first passing candidate at rank K is proof only
while K / 2^32 is small. Candidates go first by what zlib's trees allow (trees.py), then by whether
a zlib-like encoder could have written them, then by how much more plausible they make the output
(plausible.py; the model's view when given): an order fixed before any checksum is looked at.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fragfix.formats.crc import POLY, TABLE
from fragfix.formats.deflate.plausible import context_gain, implicated, literal_oddities, match_oddities
from fragfix.formats.deflate.edits import distance_bytes, distance_fields, distance_flips, literal_flips
from fragfix.formats.deflate.symbols import BadStream, Parse, _matches, parse
from fragfix.formats.deflate.trace import inflated
from fragfix.formats.deflate.trees import consistent

ADLER = 65521
MAX_OUT = 1 << 20  # larger outputs are searched by decoding only
T8 = np.array([TABLE[1 << b] for b in range(8)], np.uint32)
# An element is one output byte one candidate changes (a distance candidate changes its whole match):
# each costs ~200 bytes and ~2 us to solve (a 60 KB stream's distance bytes: 7 million elements,
# 1.4 GB, 15 s). Candidates are solved CHUNK_ELEMENTS at a time (a 64 KB gzip of 300 KB of source:
# 2.6 million, ~4 s and 200 MB; 3 of 8 in-step flips went unrestored when that was not solved at
# all; in chunks of 1.5 million it took 380 MB); wrong bytes past MAX_ELEMENTS, or any tier past
# the time left, are not solved.
MAX_ELEMENTS = 1_500_000
CHUNK_ELEMENTS = 500_000
ELEMENT_S = 2.5e-6
MERGE_OUT, BYTE_PRIOR = 1 << 16, 24.0  # both tiers in one order up to 64 KB of output; a byte's prior (bits)
TREES_S, TREES_SHARE = 2.0, 0.25  # the most time (seconds, share of what is left) for asking zlib's trees


def powers(n: int) -> np.ndarray:
    """x^(8 (n-1-j)) mod P for j < n, in zlib's bit order (x^0 is bit 31)."""
    out = [0] * n
    c = 0x80000000
    tab = TABLE
    for j in range(n - 1, -1, -1):
        out[j] = c
        c = (c >> 8) ^ tab[c & 0xFF]
    return np.array(out, np.uint32)


def mulmod(a: np.ndarray, b: int) -> np.ndarray:
    """a * b mod P for every element of `a` (zlib's multmodp, vectorised over a)."""
    p = np.zeros(len(a), np.uint32)
    for i in range(32):
        p ^= ((a >> np.uint32(31 - i)) & np.uint32(1)) * np.uint32(b)
        b = (b >> 1) ^ POLY if b & 1 else b >> 1
    return p


def subtree(P: Parse, leaf: np.ndarray, xor: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per output position: `leaf` summed (xor, or + for integers) over the position and every byte
    that copies it, directly or through copies (`full`); and the same leaving out the copy made by
    the position's own match (`own`: what a new value computed for the whole match still carries)."""
    full = leaf.copy()
    s, L, d = _matches(P)
    for k in range(len(s) - 1, -1, -1):   # children lie after their parents: finish them first
        a, n, dd = int(s[k]), int(L[k]), int(d[k])
        b = n
        while b > 0:                      # overlapping copies come in blocks of d
            lo = max(0, b - dd)
            if xor:
                full[a + lo - dd:a + b - dd] ^= full[a + lo:a + b]
            else:
                full[a + lo - dd:a + b - dd] += full[a + lo:a + b]
            b = lo
    own = full.copy()
    over = np.flatnonzero(d < L)          # matches whose bytes copy bytes of the same match
    for k in over:
        a, n, dd = int(s[k]), int(L[k]), int(d[k])
        if xor:
            own[a:a + n - dd] ^= full[a + dd:a + n]
        else:
            own[a:a + n - dd] -= full[a + dd:a + n]
    return full, own


def solve(P: Parse, out: bytes, kind: str, damaged_sum: int, stored: int, gain_of=None, tier: int = 0,
          until: float = 0.0, keys: bool = False, deadline: float = math.inf):
    """The in-step candidates in order of plausibility gain, and the index in that order of each one
    whose output would pass the checksum. Tier 0: literal and distance bit flips; tier 1: one wrong
    byte in a distance's code or extra bits. `until`: when to stop asking zlib's trees (trees.py).
    Returns (edits as (byte offset, xor), order, passing ranks), and with `keys` the order's keys
    (gain, oddities, explains an oddity, zlib's trees allow it) to merge tiers by (`both_tiers`)."""
    o = np.frombuffer(out, np.uint8).astype(np.int64)
    n = len(o)
    empty = ([], np.zeros(0, np.int64), np.zeros(0, np.int64)) + ((None,) if keys else ())
    if n < 8:  # too little output to judge; nothing to search in
        return empty
    if tier == 0:
        lbit, lpos, lnew = literal_flips(P, o)
        lbyte, lxor = lbit >> 3, 1 << (lbit & 7)
        dbit, didx, dnew = distance_flips(P)
        dbyte, dxor = dbit >> 3, 1 << (dbit & 7)
    else:
        lbyte = lxor = lpos = lnew = np.zeros(0, np.int64)
        dbyte, dxor, didx, dnew = (np.concatenate(x) for x in zip(distance_bytes(P), distance_fields(P)))
    # every candidate as elements (output position, new byte) with a candidate id per element,
    # solved in chunks of whole candidates of about CHUNK_ELEMENTS elements (memory stays bounded
    # for outputs of any size; a 300 KB output of source has ~2.6M)
    s, L, _ = _matches(P)
    n_lit = len(lbyte)
    ncand = n_lit + len(didx)
    size = np.r_[np.ones(n_lit, np.int64), L[didx]]  # elements per candidate
    elements = int(size.sum())
    if ncand == 0 or time.perf_counter() + ELEMENT_S * elements > deadline:
        return empty  # nothing to try, or more than the budget allows: the decoded search goes on alone
    if tier == 1 and elements > MAX_ELEMENTS:
        return empty  # wrong bytes: 255 values a field, ranked after every bit; where they are this many, not tried
    cand_byte, cand_xor = np.concatenate([lbyte, dbyte]), np.concatenate([lxor, dxor])
    if kind == "crc32":
        full, own = subtree(P, powers(n), xor=True)
        weights = [(mulmod(own, int(T8[b])), mulmod(full, int(T8[b]))) for b in range(8)]
    else:
        cfull, cown = subtree(P, np.ones(n, np.int64), xor=False)
        wfull, wown = subtree(P, np.arange(n, 0, -1, dtype=np.int64), xor=False)
    ok, gain, odd = np.zeros(ncand, bool), np.zeros(ncand), np.zeros(ncand, np.int64)
    cuts = np.r_[0, np.searchsorted(np.cumsum(size), np.arange(CHUNK_ELEMENTS, elements, CHUNK_ELEMENTS), "right"), ncand]
    for c_lo, c_hi in zip(cuts[:-1], cuts[1:]):
        if c_hi <= c_lo:
            continue
        li = np.arange(c_lo, min(c_hi, n_lit))           # literal candidates here (one element each)
        dj = np.arange(max(c_lo, n_lit), c_hi) - n_lit   # distance candidates here
        ds, dl, dn = s[didx[dj]], L[didx[dj]], dnew[dj]
        seg = np.repeat(np.arange(len(dj)), dl)
        k = np.arange(len(seg)) - np.repeat(np.cumsum(dl) - dl, dl)
        dpos = ds[seg] + k
        dval = o[ds[seg] - dn[seg] + k % dn[seg]]
        cid = np.concatenate([np.arange(len(li)), len(li) + seg])
        pos = np.concatenate([lpos[li], dpos])
        new = np.concatenate([lnew[li], dval])
        kinds = np.concatenate([np.zeros(len(li), bool), np.ones(len(dpos), bool)])
        old = o[pos]
        m = c_hi - c_lo
        starts = np.searchsorted(cid, np.arange(m))
        if kind == "crc32":
            delta = old ^ new
            contrib = np.zeros(len(pos), np.uint32)
            for b in range(8):  # per output position once, then gathered for every candidate byte
                hit = ((delta >> b) & 1).astype(bool)
                wo, wf = weights[b]
                contrib[hit] ^= np.where(kinds[hit], wo[pos[hit]], wf[pos[hit]])
            total = np.bitwise_xor.reduceat(contrib, starts)
            ok[c_lo:c_hi] = (total ^ np.uint32(damaged_sum)) == np.uint32(stored)
        else:
            cnt = np.where(kinds, cown[pos], cfull[pos]) % ADLER
            wt = np.where(kinds, wown[pos], wfull[pos]) % ADLER
            delta = new - old
            da = np.add.reduceat(delta * cnt % ADLER, starts)
            db = np.add.reduceat(delta * wt % ADLER, starts)
            a0, b0 = damaged_sum & 0xFFFF, damaged_sum >> 16
            ok[c_lo:c_hi] = (((a0 + da) % ADLER) == (stored & 0xFFFF)) & (((b0 + db) % ADLER) == (stored >> 16))
        if gain_of is not None:
            gain[c_lo:c_hi] = gain_of(pos, old, new, cid, m)
        odd[c_lo:c_hi] = np.concatenate([literal_oddities(P, o, lpos[li], lnew[li]),
                                         match_oddities(P, o, didx[dj], dn, seg, k, dval, new=True)])
    # first, what could explain an oddity of the stream as it is (damage leaves some in ~1 of 4 cases)
    lit_fix, match_fix = implicated(P, o)
    fix = np.concatenate([lit_fix[lpos], match_fix[didx]])
    zlib_could = consistent(P, o, lpos, lnew, didx, dnew, until)  # the block's code lengths still follow
    order = np.lexsort((np.arange(ncand), -gain, odd, ~fix, ~zlib_could))
    if keys:
        return list(zip(cand_byte.tolist(), cand_xor.tolist())), order, np.flatnonzero(ok[order]), \
            (gain, odd, fix, zlib_could)
    ranks = np.flatnonzero(ok[order])
    return list(zip(cand_byte.tolist(), cand_xor.tolist())), order, ranks


def check(buf, start: int, edits, kind: str) -> tuple[int, int, int] | None:
    """Decode with `edits` applied: (end offset, output length, checksum), None when inflate fails."""
    got = inflated(buf, start, edits)
    if got is None:
        return None
    end, o = got
    return end, len(o), zlib.crc32(o) if kind == "crc32" else zlib.adler32(o)


@dataclass
class State:
    """What the algebra knows of an in-step stream, filled once by `algebra` (this module owns it; a
    Search keeps it): the stream read symbol by symbol, the plausibility gain of a changed output,
    and the candidates found: (edits, order, passing ranks, both tiers merged)."""
    parse: Parse | None = None
    gain: Callable | None = None
    found: tuple | None = None


def algebra(search, lo: int, hi: int | None) -> bool:
    """For a `deflate.Search` in step: every literal and distance bit flip checked at once by the
    algebra above, in order of plausibility; the first whose decoded stream passes is taken, and
    its rank is what was compared. Ranks lo..hi now (the most plausible go before the decoded
    search, the rest after it); none passing: all of them count as compared."""
    tr, o, st = search.tr, search.o, search.instep
    if st.found is None:
        # reading and solving cost ~10 us per output byte: not past MAX_OUT, nor past the budget
        if len(tr.out) > MAX_OUT or time.perf_counter() + 1e-5 * len(tr.out) > search.deadline:
            return False
        try:
            P = parse(search.buf, search.start, limit_out=MAX_OUT)
        except BadStream:
            return False
        if P.n != len(tr.out):
            return False
        values = getattr(search.scorer, "values", None)
        model = (lambda pos, vals: values(tr.out, pos, vals)) if values else None
        st.parse, st.gain = P, context_gain(tr.out, model)
        until = time.perf_counter() + min(TREES_S, TREES_SHARE * (search.deadline - time.perf_counter()))
        if search.window is None:
            st.found = both_tiers(P, tr.out, search.kind, tr.sum, tr.stored, st.gain, until, search.deadline)
        else:  # a second error's search: single bits only (each first tried adds all it compares)
            st.found = solve(P, tr.out, search.kind, tr.sum, tr.stored, st.gain, until=until,
                             deadline=search.deadline) + (False,)
        o.tried += len(st.found[0])
    edits, order, ranks, merged = st.found
    if search.window is not None:  # a second error's search: only candidates near the first
        lo_, hi_ = search.window
        near = np.array([lo_ <= e[0] < hi_ for e in edits] or [False])
        passing = np.zeros(len(edits), bool)
        passing[order[ranks]] = True
        order = order[near[order]]
        ranks = np.flatnonzero(passing[order])
    if _take(search, edits, order, ranks, lo, hi):
        return True
    if hi is None and search.window is None and not merged and time.perf_counter() < search.deadline:
        # last: one wrong byte in a distance's code or extra bits (found, but after every bit: probable)
        edits, order, ranks = solve(st.parse, tr.out, search.kind, tr.sum, tr.stored, st.gain, tier=1,
                                    until=time.perf_counter() + 0.1, deadline=search.deadline)
        o.tried += len(edits)
        return _take(search, edits, order, ranks, 0, None)
    return False


def both_tiers(P: Parse, out: bytes, kind: str, damaged_sum: int, stored: int, gain, until: float,
               deadline: float = math.inf):
    """Single bits and wrong bytes in a distance's code or extra bits in one order (outputs up to MERGE_OUT):
    a byte's gain counts BYTE_PRIOR bits less, and log2(how many more byte candidates) less again
    (one order for both finds far more wrong bytes early, for a few bits later: CHANGELOG). Returns
    (edits, order, passing ranks, merged)."""
    e0, o0, r0, k0 = solve(P, out, kind, damaged_sum, stored, gain, until=until, keys=True, deadline=deadline)
    if len(out) > MERGE_OUT or k0 is None:
        return e0, o0, r0, False
    e1, o1, r1, k1 = solve(P, out, kind, damaged_sum, stored, gain, tier=1, until=time.perf_counter() + 0.1,
                           keys=True, deadline=deadline)
    if k1 is None:
        return e0, o0, r0, False
    pen = BYTE_PRIOR + np.log2(len(e1) / max(len(e0), 1))
    g, odd, fix, could = (np.concatenate([a, b - pen if i == 0 else b]) for i, (a, b) in enumerate(zip(k0, k1)))
    order = np.lexsort((np.arange(len(g)), -g, odd, ~fix, ~could))
    ok = np.zeros(len(g), bool)
    ok[o0[r0]] = True
    ok[len(e0) + o1[r1]] = True
    return e0 + e1, order, np.flatnonzero(ok[order]), True


def _fewest_bits(search, e, got, edits, order, later) -> list:
    """Of later passing candidates with the very same output (two distances can copy the same
    bytes), the one that changes fewest bits."""
    bits = bin(e[0][1]).count("1")
    for r in later[:16]:
        alt = [edits[int(order[r])]]
        if bin(alt[0][1]).count("1") < bits and check(search.buf, search.start, alt, search.kind) == got:
            e, bits = alt, bin(alt[0][1]).count("1")
    return e


def _take(search, edits, order, ranks, lo: int, hi: int | None) -> bool:
    """Compare ranks lo..hi in order: the first passing candidate whose decoded stream passes too."""
    o = search.o
    hi = len(order) if hi is None else min(hi, len(order))
    for r in ranks[(ranks >= lo) & (ranks < hi)]:
        e = [edits[int(order[r])]]
        got = check(search.buf, search.start, e, search.kind)
        if got is not None and search.verify(*got):
            o.edits, o.first_bad, o.compared = _fewest_bits(search, e, got, edits, order, ranks[ranks > r]), \
                e[0][0], o.compared + int(r - lo) + 1
            return True
    o.compared += max(hi - lo, 0)
    return False
