"""What makes one in-step candidate likelier than another: the data's own statistics, the model, and
the choices a zlib-like encoder makes.

`context_gain` scores the bytes a candidate changes against the output's own byte pairs, the byte
between the same two neighbours elsewhere, two neighbours each side (single bytes) and, when
given, the model. `literal_oddities` and `match_oddities` count what a zlib-like encoder would not
have written had the candidate been the original: a literal where a copy was in reach, a copy that
stops although the next byte matches too, a byte that would have let a copy go on, a copy from
further away than an equal one. Neither looks at a checksum: the order they give is fixed before
any candidate is compared.
"""
from __future__ import annotations

import numpy as np

from fragfix.formats.deflate.symbols import Parse, _matches


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


def _parents(P: Parse, n: int) -> np.ndarray:
    """For every output byte, the byte it copies (its own position for a literal)."""
    parent = np.arange(n, dtype=np.int64)
    s, L, d = _matches(P)
    if len(s):
        seg = np.repeat(np.arange(len(s)), L)
        at = s[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(L) - L, L)
        parent[at] = at - d[seg]
    return parent


def roots(P: Parse, n: int, parent: np.ndarray | None = None) -> np.ndarray:
    """For every output byte, the literal it is a copy of (its own position when it is one);
    `parent`: _parents(P, n) where the caller has it already."""
    parent = _parents(P, n) if parent is None else parent
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt


def _stops(s, L, d, o, idx, seg, pos, val) -> np.ndarray:
    """Per candidate: 1 where one of its new bytes lies where another copy stopped (its byte after,
    or the byte after its source) and takes the value that copy would have gone on with."""
    n = len(o)
    e = s + L
    m = np.flatnonzero((L < 258) & (e < n))
    at = np.r_[e[m], (e - d)[m]]  # the byte after each copy, and the byte after its source
    bad = np.r_[o[(e - d)[m]], o[e[m]]]  # the value there that would have let the copy go on
    owner = np.r_[m, m]
    keys = np.sort(at * 256 + bad)
    own = np.sort(owner << 40 | (at * 256 + bad))
    q = pos * 256 + val
    qo = idx[seg] << 40 | q
    hits = np.searchsorted(keys, q, "right") - np.searchsorted(keys, q) \
        - (np.searchsorted(own, qo, "right") - np.searchsorted(own, qo))
    starts = np.r_[0, np.flatnonzero(seg[1:] != seg[:-1]) + 1]
    return (np.add.reduceat(hits, starts) > 0).astype(np.int64) if len(seg) else np.zeros(0, np.int64)


def match_oddities(P: Parse, o: np.ndarray, idx, nd, seg, k, val, where: bool = False, new: bool = False):
    """The same for a match given a new distance: it would have gone on (the byte after it equals
    the byte after its new source), it writes a byte that would have let another copy go on, or
    the same bytes lay closer (zlib takes the nearest of the longest). `new`: the matches are
    candidates (new distances) rather than the stream's own; those are judged more closely."""
    n = len(o)
    if not len(idx):
        return (np.zeros(0, np.int64), np.zeros(0, np.int64)) if where else np.zeros(0, np.int64)
    s, L, d0 = _matches(P)
    ms, ml = s[idx], L[idx]
    after = ms + ml
    src = after - nd
    nxt_src = np.where(src < ms, o[np.minimum(src, n - 1)], 0)
    inner = src >= ms  # the byte after lies inside the copy itself: its new value repeats with period nd
    if inner.any():
        j = np.flatnonzero(inner)
        nxt_src[j] = o[ms[j] - nd[j] + (ml[j] % nd[j])]
    odd = ((ml < 258) & (after < n) & (o[np.minimum(after, n - 1)] == nxt_src)).astype(np.int64)
    if new:  # (in the stream as it is, the copy that would have gone on is the odd one, above)
        odd += _stops(s, L, d0, o, idx, seg, ms[seg] + k, val)
    # the encoder walks earlier places of the copy's first 3 bytes, nearest first, and keeps the
    # longest (the nearest of equals): one of the last CHAIN places (8 for the stream's own) that
    # gives a longer copy, or as long a copy nearer, is a choice zlib would have made instead
    starts = np.r_[0, np.flatnonzero(seg[1:] != seg[:-1]) + 1]
    first3 = val[starts] << 16 | val[starts + 1] << 8 | val[starts + 2]
    nxt = np.where(after < n, o[np.minimum(after, n - 1)], -1)
    found = np.zeros(len(ms), bool)
    alt = np.full(len(ms), -1, np.int64)  # where the better source lay
    recent = _recent(o)
    act, before = np.arange(len(ms)), ms - 2  # the candidates still walking, and where they are
    for _ in range(CHAIN if new else 8):
        p = recent(first3[act], before)
        live = (p >= 0) & (ms[act] - p <= 32768)
        act, p = act[live], p[live]
        if not len(act):
            break
        a, la, dc = ms[act], ml[act], ms[act] - p
        sub = np.r_[0, np.cumsum(la)[:-1]]  # where each one's elements start among theirs
        el = np.repeat(starts[act] - sub, la) + np.arange(la.sum())  # their elements
        same = np.logical_and.reduceat(o[np.clip(np.repeat(a - dc, la) + k[el] % np.repeat(dc, la), 0, n - 1)]
                                       == val[el], sub)
        tail = o[np.clip(a - dc + la % dc, 0, n - 1)] == nxt[act]  # the byte after: a longer copy
        better = same & (tail & (la < 258) | (dc < nd[act]))
        alt[act[better]] = p[better]
        found[act[better]] = True
        act, before = act[~better], p[~better]
    return (odd + found, alt) if where else odd + found


CHAIN = 32  # a candidate's copy: earlier places of its first 3 bytes looked at (the stream's own: 8,
# as zlib's hash collisions and shortened walks leave some nearer places unvisited: 5x the clean oddities at 32)
INNER = 0.25  # what a pair inside a candidate's copied run counts, against one at its edges


def implicated(P: Parse, o: np.ndarray, most: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """What could explain the stream's own oddities (a stream in step from a zlib-like encoder has
    none; a damaged literal or distance can leave a few): per output position, whether its literal
    (its root) lies in an odd copy, its source, the better source, or the byte after; per match,
    whether it is odd or any of those bytes come from it (directly or through copies: a wrong
    distance writes wrong bytes that later copies repeat, and those copies turn odd). All False
    when there are more than `most` (an encoder with quirks)."""
    n = len(o)
    s, L, d = _matches(P)
    flags, alt = _oddities(P, o, where=True)
    odd = np.flatnonzero(flags)
    lit = np.zeros(n, bool)
    if not len(odd) or len(odd) > most:
        return lit, np.zeros(len(s), bool)
    mark = np.zeros(n + 1, np.int64)
    for a in (s[odd], (s - d)[odd], alt[odd][alt[odd] >= 0]):
        ln = L[odd][:len(a)] if len(a) == len(odd) else L[odd][alt[odd] >= 0]
        np.add.at(mark, np.minimum(a, n), 1)
        np.add.at(mark, np.minimum(a + ln + 1, n), -1)
    marked = np.flatnonzero(np.cumsum(mark)[:n] > 0)
    parent = _parents(P, n)
    lit[roots(P, n, parent)[marked]] = True
    # a copy those bytes come from (directly or through copies) could explain it too: its distance
    upstream = np.zeros(n, bool)
    at = marked
    for _ in range(64):
        upstream[at] = True
        at = parent[at]
        at = at[~upstream[at]]
        if not len(at):
            break
    inside = np.r_[0, np.cumsum(upstream)]
    return lit, (flags > 0) | (inside[s + L] > inside[s])


def _oddities(P: Parse, o: np.ndarray, where: bool = False):
    s, L, d = _matches(P)
    idx = np.arange(len(s))
    seg = np.repeat(idx, L)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(L) - L, L)
    return match_oddities(P, o, idx, d, seg, k, o[s[seg] + k], where)


def stream_oddities(P: Parse, o: np.ndarray) -> np.ndarray:
    """Per match of the stream as it decodes now: 1 where a zlib-like encoder would not have written
    it (see match_oddities). A zlib-made stream has next to none (2e-5 per output byte, measured);
    the symbols a desynchronised decoder reads after damage are random, and many of them are."""
    return _oddities(P, o)


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
        ch = np.flatnonzero(old != new)  # only changed bytes count: judge those alone
        one = ~(same_prev | same_next)[ch]
        left, right, lnew, rnew, sn = left[ch], right[ch], lnew[ch], rnew[ch], same_next[ch]
        p_, o_, n_ = pos[ch], old[ch], new[ch]
        # a copied run is real data inside, right or wrong: mostly where it meets its neighbours can
        # it be judged (in text its inner pairs favour common runs, spaces, over the true words), so
        # inner pairs count INNER (more true fixes ranked early on text, none lost on executables: CHANGELOG)
        sp = same_prev[ch]
        edge = ~(sp & sn)
        before = np.where(sp, INNER, 1.0) * pair(left, o_) + np.where(sn, 0.0, pair(o_, right)) \
            + np.where(edge, 1.0, INNER) * between(left, o_, right)
        after = np.where(sp, INNER, 1.0) * pair(lnew, n_) + np.where(sn, 0.0, pair(n_, rnew)) \
            + np.where(edge, 1.0, INNER) * between(lnew, n_, rnew)
        before[one] += wide(p_[one], o_[one])
        after[one] += wide(p_[one], n_[one])
        if model is not None:  # the model judges single bytes; a copied run it reads as self-consistent
            before[one] += model(p_[one], o_[one])
            after[one] += model(p_[one], n_[one])
        return np.bincount(cid[ch], weights=before - after, minlength=ncand)
    return gain
