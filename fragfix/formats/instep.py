"""In-step damage in a deflate stream: every candidate edit checked at once by checksum algebra.

When a damaged stream still inflates to the right length and ends in the right place, and only
its checksum fails, the damage changed what some symbol wrote, not the stream's structure: a
literal's code turned into another literal's code of the same length, or a distance's extra bits
changed which earlier bytes a match copies. Decoding each such candidate costs ~10 us; here none is
decoded. symbols.py gives the structure; every output byte is a copy of one earlier byte or a
literal, so a changed byte at p changes every byte that copies it, directly or through copies (its
*subtree*). CRC-32 is linear: the change of the whole output's CRC is the xor, over the changed
bytes, of (xor at p) times x^(8 * bytes after each subtree member) mod P, which `subtree` sums once
per position. Adler-32 is linear over the integers mod 65521 the same way (counts and weighted
position sums of each subtree). So the checksum every candidate would give is computed for all of
them in a few vector operations, and the search is only a matter of order.

Order decides what the result may be called: a wrong candidate passes a 32-bit check by chance
with probability 2^-32, so the first passing candidate at rank K is proof only while K / 2^32 is
small. Candidates are ordered by how much more plausible they make the output (the data's own
byte-pair counts and, when given, the model's view), fixed before any checksum is looked at.
"""
from __future__ import annotations

import zlib

import numpy as np

from .crc import POLY, TABLE
from .symbols import DBASE, DEXT, Parse

ADLER = 65521
T8 = np.array([TABLE[1 << b] for b in range(8)], np.uint32)


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


def _matches(P: Parse):
    s, L, d = (np.asarray(x, np.int64) for x in (P.m_out, P.m_len, P.m_dist))
    return s, L, d


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


def literal_flips(P: Parse, out: np.ndarray):
    """One flipped bit in a literal's code that gives another literal's code of the same length:
    (candidate's bit offset, output position, new byte)."""
    lb, lc, ll, lo, blk = (np.asarray(x, np.int64) for x in (P.lit_bit, P.lit_code, P.lit_len, P.lit_out, P.lit_block))
    bits, pos, new = [], [], []
    tabs = [np.asarray(t, np.int64) for t in P.tables]
    for t in range(15):
        sel = np.flatnonzero(t < ll)
        if not len(sel):
            continue
        code = lc[sel] ^ (1 << t)
        nv = np.full(len(sel), -1, np.int64)
        stored = blk[sel] < 0
        nv[stored] = code[stored]
        for b in np.unique(blk[sel][~stored]):
            m = blk[sel] == b
            e = tabs[b][code[m]]
            nv[m] = np.where(((e & 15) == ll[sel][m]) & ((e >> 4) < 256), e >> 4, -1)
        ok = nv >= 0
        bits.append(lb[sel][ok] + t)
        pos.append(lo[sel][ok])
        new.append(nv[ok])
    if not bits:
        e = np.zeros(0, np.int64)
        return e, e, e
    return np.concatenate(bits), np.concatenate(pos), np.concatenate(new)


def distance_flips(P: Parse):
    """One flipped bit in a distance's extra bits, or in its code where that gives another
    distance code of the same length and as many extra bits: (bit offset, match index, new distance)."""
    s, L, d = _matches(P)
    xb, xl = np.asarray(P.m_xbit, np.int64), np.asarray(P.m_xlen, np.int64)
    sym = np.searchsorted(DBASE, d, side="right") - 1
    base = np.asarray(DBASE, np.int64)[sym]
    bits, idx, nd = [], [], []
    for t in range(13):
        sel = np.flatnonzero(t < xl)
        d2 = base[sel] + ((d[sel] - base[sel]) ^ (1 << t))
        ok = d2 <= s[sel]
        bits.append(xb[sel][ok] + t)
        idx.append(sel[ok])
        nd.append(d2[ok])
    db, dc, dl, blk = (np.asarray(x, np.int64) for x in (P.m_dbit, P.m_dcode, P.m_dclen, P.m_block))
    dext = np.asarray(DEXT + [-1, -1], np.int64)
    dbase = np.asarray(DBASE + [0, 0], np.int64)
    for b in np.unique(blk):
        tab = np.asarray(P.dtables[b], np.int64)
        for t in range(15):
            sel = np.flatnonzero((blk == b) & (t < dl))
            e = tab[dc[sel] ^ (1 << t)]
            s2 = np.minimum(e >> 4, 31)
            d2 = dbase[s2] + d[sel] - base[sel]
            ok = (e > 0) & ((e & 15) == dl[sel]) & (dext[s2] == dext[sym[sel]]) & (d2 <= s[sel]) & (d2 >= 1)
            bits.append(db[sel][ok] + t)
            idx.append(sel[ok])
            nd.append(d2[ok])
    return np.concatenate(bits), np.concatenate(idx), np.concatenate(nd)


def solve(P: Parse, out: bytes, kind: str, damaged_sum: int, stored: int, gain_of=None):
    """The in-step candidates (literal and distance bit flips) in order of plausibility gain, and
    the index in that order of each one whose output would pass the checksum.
    Returns (edits per candidate as (byte offset, xor), order, passing ranks)."""
    o = np.frombuffer(out, np.uint8).astype(np.int64)
    n = len(o)
    if n < 8:  # too little output to judge; nothing to search in
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    # every candidate as elements (output position, new byte) with a candidate id per element
    lbit, lpos, lnew = literal_flips(P, o)
    dbit, didx, dnew = distance_flips(P)
    s, L, _ = _matches(P)
    ds, dl = s[didx], L[didx]
    seg = np.repeat(np.arange(len(didx)), dl)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(dl) - dl, dl)
    dpos = ds[seg] + k
    dval = o[ds[seg] - dnew[seg] + k % dnew[seg]]
    cand_bits = np.concatenate([lbit, dbit])
    n_lit = len(lbit)
    cid = np.concatenate([np.arange(n_lit), n_lit + seg])
    pos = np.concatenate([lpos, dpos])
    new = np.concatenate([lnew, dval])
    kinds = np.concatenate([np.zeros(n_lit, bool), np.ones(len(dpos), bool)])
    old = o[pos]
    ncand = len(cand_bits)
    if ncand == 0:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.searchsorted(cid, np.arange(ncand))
    if kind == "crc32":
        full, own = subtree(P, powers(n), xor=True)
        w = np.where(kinds, own[pos], full[pos])
        delta = old ^ new
        contrib = np.zeros(len(pos), np.uint32)
        for b in range(8):
            contrib ^= mulmod(w, int(T8[b])) * ((delta >> b) & 1).astype(np.uint32)
        total = np.bitwise_xor.reduceat(contrib, starts)
        ok = (total ^ np.uint32(damaged_sum)) == np.uint32(stored)
    else:
        ones = np.ones(n, np.int64)
        cfull, cown = subtree(P, ones, xor=False)
        wfull, wown = subtree(P, np.arange(n, 0, -1, dtype=np.int64), xor=False)
        cnt = np.where(kinds, cown[pos], cfull[pos]) % ADLER
        wt = np.where(kinds, wown[pos], wfull[pos]) % ADLER
        delta = new - old
        da = np.add.reduceat(delta * cnt % ADLER, starts)
        db = np.add.reduceat(delta * wt % ADLER, starts)
        a0, b0 = damaged_sum & 0xFFFF, damaged_sum >> 16
        ok = (((a0 + da) % ADLER) == (stored & 0xFFFF)) & (((b0 + db) % ADLER) == (stored >> 16))
    gain = gain_of(pos, old, new, cid, ncand) if gain_of is not None else np.zeros(ncand)
    odd = np.concatenate([literal_oddities(P, o, lpos, lnew), match_oddities(P, o, didx, dnew, seg, k, dval)])
    order = np.lexsort((np.arange(ncand), -gain, odd))
    ranks = np.flatnonzero(ok[order])
    edits = [(int(b) >> 3, 1 << (int(b) & 7)) for b in cand_bits]
    return edits, order, ranks


def _recent(o: np.ndarray):
    """Where each 3-byte string last occurred before a position: a lookup over (string, position)
    keys sorted once. Returns last(key, before) -> start position or -1."""
    if len(o) < 3:
        return lambda key, before: np.full(len(key), -1, np.int64)
    k3 = o[:-2] << 16 | o[1:-1] << 8 | o[2:]
    keys = np.sort(k3 << 32 | np.arange(len(k3), dtype=np.int64))

    def last(key, before):
        i = np.searchsorted(keys, key << 32 | np.maximum(before, 0)) - 1
        hit = keys[np.maximum(i, 0)]
        return np.where((i >= 0) & (hit >> 32 == key), hit & 0xFFFFFFFF, -1)
    return last


def literal_oddities(P: Parse, o: np.ndarray, pos: np.ndarray, new: np.ndarray) -> np.ndarray:
    """How many choices a zlib-like encoder would not have made had the byte at `pos` (a literal)
    been `new`: a literal where the next 3 bytes occurred within reach (and no match follows that
    could explain a lazy literal), or a byte that would have extended the match before it."""
    n = len(o)
    lit = np.zeros(n + 2, bool)
    lit[np.asarray(P.lit_out, np.int64)] = True
    end_d = np.zeros(n + 1, np.int64)
    s, L, d = _matches(P)
    short = L < 258
    end_d[(s + L)[short]] = d[short]
    last = _recent(o)
    ok = pos + 2 < n
    key = new << 16 | o[np.minimum(pos + 1, n - 1)] << 8 | o[np.minimum(pos + 2, n - 1)]
    p = last(key, pos - 1)
    dist = pos - p
    four = (p >= 0) & (pos + 3 < n) & (o[np.minimum(p + 3, n - 1)] == o[np.minimum(pos + 3, n - 1)])
    reach = (p >= 0) & ((dist <= 4096) | (four & (dist <= 32768)))  # zlib drops 3-byte matches beyond 4 KB
    odd = (ok & reach & lit[pos + 1]).astype(np.int64)
    # every match stops where its next byte differs from its source's next byte (unless 258 long):
    # a copy of this literal on one side of such a stop may not take the value on the other side
    e = s + L
    m = short & (e < n)
    e, src = e[m], (e - d)[m]
    root = roots(P, n)
    ra, rb = root[e], root[src]
    diff = ra != rb
    stops = np.unique(np.r_[ra[diff] * 256 + o[src[diff]], rb[diff] * 256 + o[e[diff]]])
    odd += np.isin(pos * 256 + new, stops)
    return odd


def roots(P: Parse, n: int) -> np.ndarray:
    """For every output byte, the literal it is a copy of (its own position when it is one)."""
    parent = np.arange(n, dtype=np.int64)
    s, L, d = _matches(P)
    if len(s):
        seg = np.repeat(np.arange(len(s)), L)
        at = s[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(L) - L, L)
        parent[at] = at - d[seg]
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt


def match_oddities(P: Parse, o: np.ndarray, idx, nd, seg, k, val) -> np.ndarray:
    """The same for a match given a new distance: it would have gone on (the byte after it equals
    the byte after its new source), or the same bytes lay closer (zlib takes the nearest of the
    longest)."""
    n = len(o)
    if not len(idx):
        return np.zeros(0, np.int64)
    s, L, _ = _matches(P)
    ms, ml = s[idx], L[idx]
    after = ms + ml
    src = after - nd
    nxt_src = np.where(src < ms, o[np.minimum(src, n - 1)], 0)
    inner = src >= ms  # the byte after lies inside the copy itself: its new value repeats with period nd
    if inner.any():
        j = np.flatnonzero(inner)
        nxt_src[j] = o[ms[j] - nd[j] + (ml[j] % nd[j])]
    odd = ((ml < 258) & (after < n) & (o[np.minimum(after, n - 1)] == nxt_src)).astype(np.int64)
    # the encoder walks earlier places of the copy's first 3 bytes, nearest first, and keeps the
    # longest (the nearest of equals): one of the last CHAIN places that gives a longer copy, or
    # as long a copy nearer, is a choice zlib would have made instead
    starts = np.r_[0, np.flatnonzero(seg[1:] != seg[:-1]) + 1]
    first3 = val[starts] << 16 | val[starts + 1] << 8 | val[starts + 2]
    nxt = np.where(after < n, o[np.minimum(after, n - 1)], -1)
    before = ms - 2
    found = np.zeros(len(ms), bool)
    recent = _recent(o)
    for _ in range(CHAIN):
        p = recent(first3, before)
        live = (p >= 0) & (ms - p <= 32768)
        if not live.any():
            break
        dc = np.where(live, ms - p, 1)
        src_el = ms[seg] - dc[seg] + k % dc[seg]
        same = np.logical_and.reduceat(o[np.clip(src_el, 0, n - 1)] == val, starts)
        tail = o[np.clip(ms - dc + ml % dc, 0, n - 1)] == nxt  # the byte after: a longer copy
        found |= live & same & (tail & (ml < 258) | (dc < nd))
        before = np.where(live, p, -1)
    return odd + found


CHAIN = 16


def context_gain(out: bytes, model=None):
    """A plausibility gain from the output's own statistics: bits of surprise removed where a
    candidate changes bytes, each changed byte judged between its neighbours (byte pairs, and the
    byte between the same left and right neighbour elsewhere, leave-one-out); `model(pos, values)`,
    when given, adds the model's surprise at those values."""
    o = np.frombuffer(out, np.uint8).astype(np.int64)
    n = len(o)
    pairs = np.bincount(o[:-1] * 256 + o[1:], minlength=65536).astype(np.float64)
    firsts = np.bincount(o[:-1], minlength=256).astype(np.float64)
    seconds = np.bincount(o[1:], minlength=256).astype(np.float64)
    tri = np.unique(o[:-2] << 16 | o[1:-1] << 8 | o[2:], return_counts=True)
    ctx = np.unique(o[:-2] << 8 | o[2:], return_counts=True)
    five = np.unique(o[:-4] << 32 | o[1:-3] << 24 | o[2:-2] << 16 | o[3:-1] << 8 | o[4:], return_counts=True)
    ctx4 = np.unique(o[:-4] << 24 | o[1:-3] << 16 | o[3:-1] << 8 | o[4:], return_counts=True)

    def look(table, q):
        keys, counts = table
        if not len(keys):
            return np.zeros(len(q))
        i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return np.where(keys[i] == q, counts[i], 0).astype(np.float64)

    def pair(a, b):  # -log2 p(b | a) - log2 p(a | b), leave-one-out (the pair counted once less)
        c = np.maximum(pairs[a * 256 + b] - 1, 0) + 0.5
        return -np.log2(c / (firsts[a] + 1.0)) - np.log2(c / (seconds[b] + 1.0))

    def between(a, x, b):  # -log2 p(x | a _ b), leave-one-out
        t = np.maximum(look(tri, a << 16 | x << 8 | b) - 1, 0) + 0.5
        return -np.log2(t / (np.maximum(look(ctx, a << 8 | b) - 1, 0) + 1.0))

    def wide(pos, x):  # -log2 p(x | two bytes each side), leave-one-out: for single changed bytes
        q = np.clip(pos[:, None] + np.array([-2, -1, 1, 2]), 0, n - 1)
        a, b, c, d = (o[q[:, i]] for i in range(4))
        t = np.maximum(look(five, a << 32 | b << 24 | x << 16 | c << 8 | d) - 1, 0) + 0.5
        return -np.log2(t / (np.maximum(look(ctx4, a << 24 | b << 16 | c << 8 | d) - 1, 0) + 1.0))

    def gain(pos, old, new, cid, ncand):
        left = np.where(pos > 0, o[np.maximum(pos - 1, 0)], 32)
        right = np.where(pos < n - 1, o[np.minimum(pos + 1, n - 1)], 32)
        # neighbours inside the same candidate take the candidate's new value
        same_prev = np.r_[False, (cid[1:] == cid[:-1]) & (pos[1:] == pos[:-1] + 1)]
        same_next = np.r_[same_prev[1:], False]
        lnew = np.where(same_prev, np.r_[0, new[:-1]], left)
        rnew = np.where(same_next, np.r_[new[1:], 0], right)
        before = pair(left, old) + np.where(same_next, 0.0, pair(old, right)) + between(left, old, right)
        after = pair(lnew, new) + np.where(same_next, 0.0, pair(new, rnew)) + between(lnew, new, rnew)
        one = ~(same_prev | same_next)
        before, after = before.copy(), after.copy()
        before[one] += wide(pos[one], old[one])
        after[one] += wide(pos[one], new[one])
        if model is not None:  # the model judges single bytes; a copied run it reads as self-consistent
            before[one] += model(pos[one], old[one])
            after[one] += model(pos[one], new[one])
        g = np.where(old == new, 0.0, before - after)
        return np.bincount(cid, weights=g, minlength=ncand)
    return gain


def check(buf, start: int, edits, kind: str) -> tuple[int, int, int] | None:
    """Decode with `edits` applied: (end offset, output length, checksum), None when inflate fails."""
    b = bytearray(buf)
    for p, x in edits:
        b[p] ^= x
    d = zlib.decompressobj(-15)
    try:
        o = d.decompress(bytes(b[start:]))
    except zlib.error:
        return None
    if not d.eof:
        return None
    ck = zlib.crc32(o) if kind == "crc32" else zlib.adler32(o)
    return len(b) - len(d.unused_data), len(o), ck
