"""What the data under repair says a byte should be: context counts from the window itself.

A 512-byte fragment is all the network sees, but damage is rare and files repeat themselves:
identifiers, keywords, markup, instruction sequences. For a suspect byte at j, every other place
in the window with the same k bytes on the left and k on the right votes for its own middle byte.
Those counts sharpen the model's distribution, PPM-style, one order after another:

    p_k(b) = (c_k(b) + weight * p_{k-1}(b)) / (n_k + weight),   p_0 = the model's probabilities

so a context seen often overrides the model and an unseen one leaves it alone (what that is worth
on held-out data: docs/performance.md).

Everything here is numpy over one window: `buf` (N,) uint8 bytes, `known` (N,) bool (False for
unknown bytes and padding, which never vote and never count as context), `q` (Q,) positions
asked about. Keys pack the 2k context bytes exactly into a uint64 (k <= 4); a hash table of the
query keys finds matching sources (slots shared by several keys fall back to a binary search).
The model's distribution comes in sparse, as its top-M bytes per query (exact elsewhere only
for the observed byte), so memory stays O(Q * M) whatever the window. `fill_gaps` does the same
for whole unknown runs: the strings found between the same bytes elsewhere.
"""
from __future__ import annotations

import numpy as np

from fragfix.files.unknown import run_bounds

SLICE = 1 << 18    # sources are scanned this many positions at a time (bounded temporaries)
TABLE_BITS = 20
CHUNK = 1 << 15    # queries combined at a time


def _hash(key: np.ndarray, bits: int = TABLE_BITS) -> np.ndarray:
    """uint64 keys -> `bits`-bit hash-table slots (Fibonacci hashing: the multiply mixes all key bytes up)."""
    return ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)).astype(np.int64)


class KeyTable:
    """Where each of a few sorted unique uint64 keys sits, found for millions of candidate keys at once:
    a hash table of slot -> key index (slots shared by several keys fall back to a binary search)."""

    def __init__(self, ukeys: np.ndarray, bits: int = TABLE_BITS):
        self.ukeys, self.bits = ukeys, bits
        slots, first, shared = np.unique(_hash(ukeys, bits), return_index=True, return_counts=True)
        self.table = np.full(1 << bits, -1, dtype=np.int64)
        self.table[slots] = np.where(shared == 1, first, -2)

    def find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(where, index): the positions in `key` that hold one of the keys, and which one."""
        pos = self.table[_hash(key, self.bits)]
        where = np.flatnonzero(pos != -1)
        key, pos = key[where], pos[where]
        clash = pos == -2
        if clash.any():
            pos[clash] = np.searchsorted(self.ukeys, key[clash]).clip(0, len(self.ukeys) - 1)
        same = self.ukeys[pos] == key
        return where[same], pos[same]


def _key(at, k: int, size: int) -> np.ndarray:
    """uint64 keys of the k bytes left and right of `size` positions; at(d) gives the bytes at offset d."""
    key = np.zeros(size, dtype=np.uint64)
    for d in range(1, k + 1):
        key <<= np.uint64(16)
        key |= at(-d).astype(np.uint64) << np.uint64(8)
        key |= at(d).astype(np.uint64)
    return key


def _scan(buf: np.ndarray, k: int, sources: np.ndarray | None):
    """(positions, keys) of the sources, SLICE at a time: every position, or the given ones."""
    n = len(buf)
    if sources is None:
        for lo in range(k, n - k, SLICE):
            hi = min(lo + SLICE, n - k)
            yield np.arange(lo, hi), _key(lambda d: buf[lo + d:hi + d], k, hi - lo)
    else:
        s = sources[(sources >= k) & (sources < n - k)]
        for lo in range(0, len(s), SLICE):
            j = s[lo:lo + SLICE]
            yield j, _key(lambda d: buf[j + d], k, len(j))


def _bad_prefix(known: np.ndarray) -> np.ndarray:
    """bad[i]: how many of the first i bytes are not known; int32, as windows stay far below 2**31."""
    bad = np.zeros(len(known) + 1, dtype=np.int32)
    np.cumsum(~known, dtype=np.int32, out=bad[1:])
    return bad


class OrderCounts:
    """Counts of middle bytes for the distinct contexts of order k among the queries."""

    def __init__(self, buf: np.ndarray, known: np.ndarray, q: np.ndarray, k: int,
                 bad: np.ndarray | None = None, sources: np.ndarray | None = None):
        """`sources`: positions worth scanning (the hits of a lower order: a source that matches a
        query's k bytes each side also matches its fewer), or None for the whole window."""
        n = len(buf)
        bad = _bad_prefix(known) if bad is None else bad
        inside = (q >= k) & (q < n - k)
        qi = np.where(inside, q, k)  # placeholder position for queries at the edges
        # a query's context must be all known (its own middle may be anything)
        ok = inside & (bad[qi + k + 1] - bad[qi - k] - (~known[qi]) == 0)
        qkey = np.zeros(len(q), dtype=np.uint64)
        if ok.any():
            qkey[ok] = _key(lambda d: buf[q[ok] + d], k, int(ok.sum()))
        self.ukeys, qidx = np.unique(qkey[ok], return_inverse=True)
        pairs, hits = [], []
        if len(self.ukeys):
            table = KeyTable(self.ukeys)
            for j, key in _scan(buf, k, sources):
                where, pos = table.find(key)
                j = j[where]
                hit = bad[j + k + 1] - bad[j - k] == 0  # the middle and its context are known
                pairs.append(pos[hit] * 256 + buf[j[hit]])
                hits.append(j[hit].astype(np.int32))
        self.hits = np.concatenate(hits) if hits else np.zeros(0, np.int32)
        if pairs and sum(map(len, pairs)):
            self.pair, self.count = np.unique(np.concatenate(pairs), return_counts=True)
        else:
            self.pair, self.count = np.zeros(0, np.int64), np.zeros(0, np.int64)
        u = self.pair // 256
        self.total = np.bincount(u, weights=self.count, minlength=len(self.ukeys))
        # the most frequent middle byte of each context: a candidate the model may not rank high
        self.top = np.zeros(len(self.ukeys), dtype=np.int64)
        if len(self.pair):
            order = np.lexsort((self.count, u))  # by context, then count ascending: last per context wins
            last = np.r_[u[order][1:] != u[order][:-1], True]
            self.top[u[order][last]] = self.pair[order][last] % 256
        # a query that is itself a valid source counted its own byte once: take it back out
        self.self_src = np.zeros(len(q), dtype=bool)
        qs = q[ok]
        self.self_src[ok] = bad[qs + k + 1] - bad[qs - k] == 0
        self.qu = np.full(len(q), -1, dtype=np.int64)
        self.qu[ok] = qidx

    def lookup(self, rows: slice, b: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For queries q[rows]: counts c(b) (R, C) of candidate bytes b (R, C) and totals n (R, 1), self excluded."""
        c = np.zeros(b.shape, dtype=np.float64)
        n = np.zeros((len(b), 1), dtype=np.float64)
        qu, self_src = self.qu[rows], self.self_src[rows]
        has = qu >= 0
        if not has.any() or not len(self.pair):
            return c, n
        key = qu[has, None] * 256 + b[has]
        at = np.searchsorted(self.pair, key).clip(0, len(self.pair) - 1)
        c[has] = np.where(self.pair[at] == key, self.count[at], 0)
        n[has, 0] = self.total[qu[has]]
        c -= self_src[:, None] & (b == obs[:, None])
        n -= self_src[:, None]
        return c, n

    def best(self) -> np.ndarray:
        """(Q,) each query's most frequent context byte (0 where it has no context)."""
        if not len(self.top):
            return np.zeros(len(self.qu), dtype=np.int64)
        return np.where(self.qu >= 0, self.top[self.qu.clip(0)], 0)


def posterior(buf: np.ndarray, known: np.ndarray, q: np.ndarray, top_b: np.ndarray, top_p: np.ndarray,
              p_obs: np.ndarray, orders: tuple[int, ...], weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sharpen the model's sparse distribution at queries q with the window's context counts.

    top_b, top_p: (Q, M) the model's M most likely bytes and their probabilities; p_obs (Q,) its
    probability of the observed byte. Returns (best byte (Q,), its posterior (Q,), posterior of the
    observed byte (Q,)). Bytes outside the model's top M get an equal share of its remaining mass.
    """
    bad, counts, sources = _bad_prefix(known), [], None
    for k in sorted(orders):  # low to high: PPM's order, and each order scans only the last one's hits
        counts.append(OrderCounts(buf, known, q, k, bad, sources))
        sources = counts[-1].hits
    tops = [oc.best() for oc in counts]
    best, p_best, p_obs_post = np.zeros(len(q), np.uint8), np.zeros(len(q)), np.zeros(len(q))
    for lo in range(0, len(q), CHUNK):  # (R, M + 1 + orders) candidates at a time: bounded memory
        r = slice(lo, lo + CHUNK)
        tb, tp, obs = top_b[r].astype(np.int64), top_p[r], buf[q[r]].astype(np.int64)
        cand = np.concatenate([tb, obs[:, None]] + [t[r, None] for t in tops], axis=1)
        rest = np.clip(1.0 - tp.sum(1, keepdims=True), 0, None) / max(256 - tb.shape[1], 1)
        p = np.broadcast_to(rest, cand.shape).copy()
        for m in range(tb.shape[1]):  # exact model probabilities where known
            p = np.where(cand == tb[:, m:m + 1], tp[:, m:m + 1], p)
        p = np.where(cand == obs[:, None], p_obs[r, None], p)
        for oc in counts:
            c, n = oc.lookup(r, cand, obs)
            p = (c + weight * p) / (n + weight)
        i = p.argmax(1)
        rows = np.arange(len(cand))
        best[r], p_best[r], p_obs_post[r] = cand[rows, i], p[rows, i], p[:, tb.shape[1]]
    return best, p_best, p_obs_post


GAP_ORDERS = (4, 3, 2)  # context lengths for whole unknown runs, longest (most specific) first
MAX_GAP = 64            # longer unknown runs are left to the per-byte rule
MAX_SOURCES = 256       # candidate strings looked at per run
GAP_MODEL_WEIGHT = 0.5  # score = log(count) + this * (model log-probability of the string)


def _side_keys(buf: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """left[j]: the k bytes before j packed in a uint64; right[j]: the k bytes from j on (0 at the edges)."""
    n, b = len(buf), buf.astype(np.uint64)
    left, right = np.zeros(n + 1, np.uint64), np.zeros(n + 1, np.uint64)
    for d in range(1, k + 1):
        left[k:n + 1] = (left[k:n + 1] << np.uint64(8)) | b[k - d:n + 1 - d]
        right[:n - k + 1] = (right[:n - k + 1] << np.uint64(8)) | b[d - 1:n - k + d]
    return left, right


def fill_gaps(buf: np.ndarray, known: np.ndarray, q: np.ndarray, top_b: np.ndarray, top_p: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole unknown runs, filled from the window: where else do the same k bytes sit left and right
    of a known gap of the same length? Each distinct string found there is scored by how often it
    occurs and how likely the model finds it; the best wins. Returns (rows of q, bytes, confidence).
    Longer contexts first: a run filled at k = 4 is not looked at again with 3."""
    n = len(buf)
    starts, ends = run_bounds(~known)
    lengths = ends - starts
    if not (lengths <= MAX_GAP).any():  # sector-sized runs and longer: left to the per-byte rule
        return np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0)
    done = np.zeros(len(starts), dtype=bool)
    bad = _bad_prefix(known)
    rows, vals, confs = [], [], []
    for k in GAP_ORDERS:
        # runs of at most MAX_GAP bytes, not filled yet, with k known bytes on each side
        ok = ~done & (lengths <= MAX_GAP) & (starts >= k) & (ends + k <= n)
        ok[ok] = (bad[starts[ok]] - bad[starts[ok] - k] == 0) & (bad[ends[ok] + k] - bad[ends[ok]] == 0)
        if not ok.any():
            continue
        left, right = _side_keys(buf, k)
        for L in np.unique(lengths[ok]).tolist():
            r = np.flatnonzero(ok & (lengths == L))
            # key of a gap starting at j: its k bytes on the left, then the k after its L bytes
            run_keys = (left[starts[r]] << np.uint64(8 * k)) | right[starts[r] + L]
            ukeys, sources = _gap_sources(run_keys, left, right, bad, k, L, n)
            for run, srcs in zip(r.tolist(), (sources[u] for u in np.searchsorted(ukeys, run_keys).tolist())):
                a = int(starts[run])
                qrows = np.searchsorted(q, np.arange(a, a + L)).clip(0, len(q) - 1)
                if len(srcs) == 0 or not np.array_equal(q[qrows], np.arange(a, a + L)):
                    continue  # no source, or the model did not score every byte of this run (not expected)
                string, conf = _best_string(buf, srcs[:MAX_SOURCES], L, top_b[qrows], top_p[qrows])
                rows.append(qrows)
                vals.append(string)
                confs.append(np.full(L, conf))
                done[run] = True
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0)
    return np.concatenate(rows), np.concatenate(vals), np.concatenate(confs)


def _gap_sources(run_keys: np.ndarray, left: np.ndarray, right: np.ndarray, bad: np.ndarray, k: int, L: int,
                 n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The search: every start j in the window whose k bytes on the left and k after j + L match a
    run's key, with all of j - k .. j + L + k known. Returns (distinct keys, sorted; for each, its
    source starts in window order)."""
    ukeys = np.unique(run_keys)
    table = KeyTable(ukeys, int(np.clip(np.ceil(np.log2(len(ukeys) * 8)), 10, TABLE_BITS)))
    hit_u, hit_j = [], []
    for lo in range(k, n - L - k + 1, SLICE):
        hi = min(lo + SLICE, n - L - k + 1)
        where, pos = table.find((left[lo:hi] << np.uint64(8 * k)) | right[lo + L:hi + L])
        j = where + lo
        hit = bad[j + L + k] - bad[j - k] == 0  # the source is all known
        hit_u.append(pos[hit])
        hit_j.append(j[hit])
    hu, hj = np.concatenate(hit_u), np.concatenate(hit_j)
    order = np.argsort(hu, kind="stable")
    hu, hj = hu[order], hj[order]
    bounds = np.searchsorted(hu, np.arange(len(ukeys) + 1))
    return ukeys, [hj[bounds[u]:bounds[u + 1]] for u in range(len(ukeys))]


def _best_string(buf: np.ndarray, src: np.ndarray, L: int, tb: np.ndarray, tp: np.ndarray) -> tuple[np.ndarray, float]:
    """The scoring: of the distinct L-byte strings at the sources, the one with the best
    log(count) + GAP_MODEL_WEIGHT * log p_model(string), and its share of the sources."""
    found = np.ascontiguousarray(buf[src[:, None] + np.arange(L)])  # (sources, L)
    _, first, counts = np.unique(found.view(np.dtype((np.void, L))).ravel(), return_index=True, return_counts=True)
    strings = found[first]  # (S, L) distinct strings
    rest = np.clip(1 - tp.sum(1), 1e-12, None) / max(256 - tb.shape[1], 1)  # (L,) per byte outside the top
    p = np.where(strings[:, :, None] == tb[None], tp[None], 0).sum(2)  # (S, L): 0 outside the top
    score = np.log(counts) + GAP_MODEL_WEIGHT * np.log(np.where(p > 0, p, rest[None])).sum(1)
    best = int(score.argmax())
    return strings[best], counts[best] / counts.sum()
