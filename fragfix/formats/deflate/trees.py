"""What zlib's Huffman trees say about a candidate: a block's code lengths follow from its symbol counts.

zlib (and gzip, whose trees.c it inherits; Java's and Python's zip, libpng) builds each dynamic
block's codes from the block's own symbol counts, deterministically: a heap ordered by count, then
depth, then position, and a fixed rule for codes over 15 bits. Every dynamic block of 165 in real
gzip and zip files on the development machine has exactly the code lengths `zlib_lengths` gives
for its counts, and so do GNU gzip's and Info-ZIP's (25 of 25 each). A damaged literal in step
changes two counts (one symbol less, another more) and, in about 1 case in 7, the lengths no
longer follow: then only candidates that put that block's counts back can be the original, a few
hundred of thousands. Where the damaged stream's trees all follow, a candidate that would break
one is less likely than one that keeps them. `consistent` gives that view per candidate for
instep.solve's order, fixed before any checksum is looked at. Streams from other encoders (7-zip,
libdeflate, zopfli) break the rule in most blocks; where more than one block breaks it, it says
nothing.
"""
from __future__ import annotations

import time

import numpy as np

from fragfix.formats.deflate.symbols import DBASE, LBASE, Parse

L_CODES, D_CODES, MAX_BITS = 286, 30, 15


def zlib_lengths(freq, max_length: int = MAX_BITS) -> list[int]:
    """zlib's build_tree and gen_bitlen (trees.c), step for step: the code length of each symbol."""
    elems = len(freq)
    size = 2 * elems + 1
    f = list(freq) + [0] * (elems + 1)          # node counts: leaves, then inner nodes
    dad, depth, ln = [0] * size, [0] * size, [0] * size
    heap = [0] * (size + 1)
    hl, hm, max_code = 0, size, -1
    for n in range(elems):
        if freq[n]:
            hl += 1
            heap[hl] = max_code = n
    while hl < 2:  # at least two codes: zlib forces symbols 0 and 1 (or 0) in with count 1
        node = max_code + 1 if max_code < 2 else 0
        max_code = max(max_code, node)
        hl += 1
        heap[hl], f[node], depth[node] = node, 1, 0

    def smaller(n: int, m: int) -> bool:
        return f[n] < f[m] or (f[n] == f[m] and depth[n] <= depth[m])

    def down(k: int) -> None:
        v, j = heap[k], k << 1
        while j <= hl:
            if j < hl and smaller(heap[j + 1], heap[j]):
                j += 1
            if smaller(v, heap[j]):
                break
            heap[k], k, j = heap[j], j, j << 1
        heap[k] = v
    for k in range(hl // 2, 0, -1):
        down(k)
    node = elems
    while hl >= 2:
        n = heap[1]
        heap[1], hl = heap[hl], hl - 1
        down(1)
        m = heap[1]
        heap[hm - 1], heap[hm - 2], hm = n, m, hm - 2
        f[node] = f[n] + f[m]
        depth[node] = max(depth[n], depth[m]) + 1
        dad[n] = dad[m] = node
        heap[1] = node
        node += 1
        down(1)
    hm -= 1
    heap[hm] = heap[1]
    count = [0] * (max_length + 1)
    overflow = 0
    for h in range(hm + 1, size):  # parents before children: a node's length is its parent's + 1
        n = heap[h]
        bits = ln[dad[n]] + 1
        if bits > max_length:
            bits, overflow = max_length, overflow + 1
        ln[n] = bits
        if n <= max_code:
            count[bits] += 1
    if overflow:  # zlib moves leaves down until the code fits, then hands lengths out again
        while overflow > 0:
            bits = max_length - 1
            while count[bits] == 0:
                bits -= 1
            count[bits] -= 1
            count[bits + 1] += 2
            count[max_length] -= 1
            overflow -= 2
        h = size
        for bits in range(max_length, 0, -1):
            n = count[bits]
            while n:
                h -= 1
                if heap[h] <= max_code:
                    ln[heap[h]] = bits
                    n -= 1
    return [ln[n] if f[n] else 0 for n in range(elems)]


def _follows(counts, stored: list[int]) -> bool:
    got = zlib_lengths(counts)
    width = max(len(got), len(stored))
    return got + [0] * (width - len(got)) == stored + [0] * (width - len(stored))


def _state(P: Parse, o: np.ndarray) -> dict:
    """Per block: literal/length and distance counts, whether each tree follows from them, the
    dynamic blocks, and those broken (all of them: several means another encoder). Computed once
    per parse: both tiers of the algebra and the decoded search's judge ask about the same stream."""
    if "trees" in P.cache:
        return P.cache["trees"]
    nb = len(P.lengths)
    lit_blk, lit_out = np.asarray(P.lit_block, np.int64), np.asarray(P.lit_out, np.int64)
    mb = np.asarray(P.m_block, np.int64)
    lens = np.asarray(P.m_len, np.int64)
    lcode = np.where(lens == 258, 285, 257 + np.searchsorted(LBASE, lens, side="right") - 1)
    dcode = np.searchsorted(DBASE, np.asarray(P.m_dist, np.int64), side="right") - 1
    lit, dist = np.zeros((nb, L_CODES), np.int64), np.zeros((nb, D_CODES), np.int64)
    keep = lit_blk >= 0  # stored blocks have no tree
    np.add.at(lit, (lit_blk[keep], o[lit_out[keep]]), 1)
    np.add.at(lit, (mb, lcode), 1)
    np.add.at(dist, (mb, dcode), 1)
    lit[:, 256] += 1  # every block ends with one end-of-block symbol
    dyn = [b for b in range(nb) if P.lengths[b] is not None]
    ok_l = {b: _follows(lit[b].tolist(), P.lengths[b][0]) for b in dyn}
    ok_d = {b: _follows(dist[b].tolist(), P.lengths[b][1]) for b in dyn}
    P.cache["trees"] = {"lit": lit, "dist": dist, "dyn": dyn, "ok_l": ok_l, "ok_d": ok_d, "dcode": dcode,
                        "lit_blk": lit_blk, "lit_out": lit_out, "mb": mb,
                        "bad": [b for b in dyn if not (ok_l[b] and ok_d[b])]}
    return P.cache["trees"]


def mender(P: Parse, o: np.ndarray, until: float):
    """For candidates that were decoded rather than solved (a wrong byte across two literals, codes
    that found their step again): a function (output positions, new values) -> +1 where changing
    those literals mends the one broken literal tree, -1 where it breaks a tree that followed, 0
    where it says nothing (time (`until`) ran out, another encoder, not literals). None where no
    tree can say anything."""
    st = _state(P, o) if len(P.lengths) else None
    if st is None or len(st["bad"]) > 1 or (st["bad"] and not st["ok_d"][st["bad"][0]]):
        return None
    bad = st["bad"][0] if st["bad"] else None
    owner = np.full(len(o) + 1, -1, np.int64)  # the dynamic block of each literal's output byte
    dyn = np.zeros(len(P.lengths) + 1, bool)
    dyn[st["dyn"]] = True
    lit = st["lit_blk"] >= 0
    owner[st["lit_out"][lit]] = np.where(dyn[st["lit_blk"][lit]], st["lit_blk"][lit], -1)
    seen: dict = {}

    def judge(pos: np.ndarray, new: np.ndarray) -> int:
        blk = owner[np.minimum(pos, len(o))]
        keep = blk >= 0
        if not keep.any() or (bad is not None and (blk[keep] != bad).any()):
            return 0
        key = tuple(zip(blk[keep].tolist(), o[pos[keep]].tolist(), new[keep].tolist()))
        if key not in seen:
            if time.perf_counter() > until:
                return 0
            verdict = 1
            for b in np.unique(blk[keep]).tolist():
                counts = st["lit"][b].copy()
                sel = keep & (blk == b)
                np.subtract.at(counts, o[pos[sel]], 1)
                np.add.at(counts, new[sel], 1)
                if (counts < 0).any() or not _follows(counts.tolist(), P.lengths[b][0]):
                    verdict = -1
            seen[key] = (verdict > 0) if bad is not None else -(verdict < 0)  # mends; breaks
        return seen[key]
    return judge


def consistent(P: Parse, o: np.ndarray, lpos, lnew, didx, dnew, until: float) -> np.ndarray:
    """Per candidate (literal changes at output positions `lpos` to `lnew`, then matches `didx`
    given distances `dnew`): False where zlib could not have written the stream it makes (a block's
    code lengths would not follow from its counts); True where it could, or where time (`until`)
    ran out before it was known, or where the damaged stream says nothing."""
    nl, nd = len(lpos), len(didx)
    out = np.ones(nl + nd, bool)
    if not len(P.lengths) or nl + nd == 0:
        return out
    st = _state(P, o)
    lit, dist, dyn, ok_l, ok_d, bad = (st[k] for k in ("lit", "dist", "dyn", "ok_l", "ok_d", "bad"))
    if len(bad) > 1:  # one error breaks one block at most: another encoder
        return out
    lit_blk, lit_out, mb, dcode = st["lit_blk"], st["lit_out"], st["mb"], st["dcode"]
    blk = np.concatenate([lit_blk[np.searchsorted(lit_out, lpos)], mb[didx]])
    old = np.concatenate([o[lpos], dcode[didx]])
    new = np.concatenate([lnew, np.searchsorted(DBASE, dnew, side="right") - 1])
    tree = np.r_[np.zeros(nl, np.int64), np.ones(nd, np.int64)]
    if bad:  # only a candidate in the broken block that mends it can be the original
        out[blk != bad[0]] = False
    out[(old == new) & np.isin(blk, bad)] = False  # a distance's extra bits change no count
    ask = np.flatnonzero(out & (old != new) & (blk >= 0) & np.isin(blk, dyn))
    if not len(ask):
        return out
    keys, inv, many = np.unique(np.c_[blk[ask], tree[ask], old[ask], new[ask]], axis=0,
                                return_inverse=True, return_counts=True)
    verdict = np.ones(len(keys), bool)
    for i in np.argsort(-many, kind="stable"):  # the keys most candidates share first
        if time.perf_counter() > until:
            break
        b, t, x, y = (int(v) for v in keys[i])
        counts = (lit if t == 0 else dist)[b].copy()
        counts[x] -= 1
        counts[y] += 1
        other = ok_d[b] if t == 0 else ok_l[b]  # the block's other tree must follow too
        verdict[i] = other and counts[x] >= 0 and _follows(counts.tolist(), P.lengths[b][t])
    out[ask] = verdict[inv.ravel()]
    return out
