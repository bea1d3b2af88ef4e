"""The per-file predictor: what byte belongs at a position, learned from the data under repair.

A static model trained on other files cannot know this file's tables, columns, identifiers and
records; the file's own intact bytes can. Every position i gets a distribution P(b | context)
over the 256 values from counts over the same window, two-sided and leave-one-out (the byte at i
never votes for itself), as a context-mixing compressor would predict it but from both sides:

- experts: each is one kind of context — k bytes left and/or right (orders 1..6), the word the
  byte sits in (letters and digits each side), the byte in the same column of the lines above and
  below (tables, indentation), the bytes one record stride away (fixed-size records, found by
  autocorrelation), and order 0 (the window's byte histogram, smoothed so no value has P = 0).
  Expert j predicts p_j(b) = n_j(c, b) / n_j(c) over the other places with the same context c;
- a mixer: P(b) = sum_j w_j p_j(b), where w_j = softmax_j(theta[j, bucket(n_j(c))]) — how far an
  expert is trusted depends on how often its context was seen (never seen: weight 0). theta is
  fitted on the window's own intact bytes by maximum likelihood (log-loss), so the probabilities,
  tails included, are calibrated on this very file. (A linear mix, not logistic: it keeps
  P(observed) a cheap gather for every position, and it is what the decision needs: the odds of
  the observed byte against the others.)

Counts are exact: one sort per expert (Counts). The contexts themselves: experts.py. Numpy only,
with the experts built one per core; everything is vectorised over positions.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fragfix.rule.experts import EXPERTS, Window, _cores, context_keys

BUCKETS = np.array([0, 1, 2, 3, 5, 9, 17, 65], dtype=np.int64)  # n_j(c) >= edge: that bucket
SLOTS = len(BUCKETS) * 3  # mixing slots per expert: count bucket x values seen (1, 2, 3+); slot 0: never seen
MIX_SAMPLE = 8192   # intact positions the mixer is fitted on
MIX_STEPS = 40
DENSE_ROWS = 1024  # positions whose (row, value) pairs dense() lists at once (at most ~60 MB)
CACHE_ROWS = 8192  # rows of this window dense() keeps (16 MB)
# However sure the contexts are, a value the file uses keeps this share of its order-0 frequency:
# the mixer, fitted on a few thousand bytes, cannot rule novelty out ("FLT_MAX" beside "FLT_MIN").
NOVELTY = 1e-4
def _each(fn, items) -> list:
    """[fn(x) for x in items] on one thread per core (_cores: 1 in a pool's worker process)."""
    if _cores() == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=_cores()) as pool:
        return list(pool.map(fn, items))


def _adam(shape: tuple, slot: np.ndarray, p: np.ndarray, lr: float = 0.3, betas=(0.9, 0.999),
          eps: float = 1e-8) -> np.ndarray:
    """theta (J, SLOTS) minimising L = -mean_q log(sum_j w_jq p_jq), w = softmax_j(theta[j, slot_jq])
    over the experts whose context was seen (slot > 0), from theta = 0 by Adam (as torch.optim.Adam
    steps it). dL/dlogit_jq = -w_jq (p_jq - M_q) / (M_q Q), M = the mix; theta sums its slots'."""
    theta = np.zeros(shape)
    m, v = np.zeros(shape), np.zeros(shape)
    seen = slot > 0
    rows = np.broadcast_to(np.arange(shape[0])[:, None], slot.shape)
    at = np.where(seen, rows * shape[1] + slot, theta.size)  # theta's flat index; unseen: one slot past it
    flat = at[seen]  # of each seen (expert, position)
    where_seen = np.flatnonzero(seen)
    ext = np.full(theta.size + 1, -1e9)  # theta, flat, and the logit of an expert not seen
    q = slot.shape[1]
    for t in range(1, MIX_STEPS + 1):
        ext[:-1] = theta.ravel()
        w = ext[at]  # (J, Q) logits, the same numbers as where(seen, theta[rows, slot], -1e9): one gather
        w -= w.max(0, keepdims=True)
        np.exp(w, out=w)  # (in place from here on: the same operations, in the same order, fewer arrays)
        w /= w.sum(0, keepdims=True)
        mix = (w * p).sum(0)
        live = mix > 1e-12  # clamped below it: no gradient, as clamp_min gives none
        g_logit = p - mix
        g_logit *= w
        np.negative(g_logit, out=g_logit)
        g_logit /= np.maximum(mix, 1e-12)
        g_logit /= q
        if not live.all():
            g_logit[:, ~live] = 0.0
        grad = np.bincount(flat, weights=g_logit.ravel()[where_seen], minlength=theta.size).reshape(shape)
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad * grad
        denom = np.sqrt(v) / np.sqrt(1 - betas[1] ** t) + eps
        theta -= lr / (1 - betas[0] ** t) * m / denom
    return theta


def slot_of(c: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mixing slot of a context seen c times (others than the position itself) with `values`
    distinct bytes after it: count bucket x (1, 2, 3+ values); 0 where never seen."""
    bucket = _BUCKET_OF[np.clip(c, 0, BUCKETS[-1])]  # a table lookup: c >= the last edge is its bucket
    return np.where(c > 0, bucket * 3 + np.minimum(values, 3) - 1, 0).astype(np.int64)


_BUCKET_OF = (np.searchsorted(BUCKETS, np.arange(BUCKETS[-1] + 1), side="right") - 1).astype(np.int64)


class Counts:
    """Exact counts of one expert over the window. One sort: each source becomes the 64-bit word
    (context hash | byte | position), so the sorted words put a context's pairs together and
    say which pair each position holds. The hash keeps 56 - position bits (35 at 2 MB windows:
    two of a window's contexts share one about once in 30,000 windows of distinct contexts)."""

    def __init__(self, hk: np.ndarray, byte: np.ndarray, pos: np.ndarray, n: int):
        self.pos_bits = max(int(n - 1).bit_length(), 1)
        self.drop = np.uint64(64 - (56 - self.pos_bits))  # hash bits kept: the top 56 - pos_bits
        pb = np.uint64(self.pos_bits)
        word = ((hk >> self.drop) << np.uint64(8) | byte.astype(np.uint64)) << pb | pos.astype(np.uint64)
        word = np.sort(word)
        pair = word >> pb
        at = (word & np.uint64((1 << self.pos_bits) - 1)).astype(np.int64)
        new = np.r_[True, pair[1:] != pair[:-1]] if len(pair) else np.zeros(0, bool)
        starts = np.flatnonzero(new)
        self.pair = pair[starts]                                 # the distinct (context, byte) keys, sorted
        # narrow types: a window holds at most 2**31 bytes, and these live as long as the window
        self.count = np.diff(np.r_[starts, len(pair)]).astype(np.int32)
        self.cum = np.r_[0, np.cumsum(self.count)].astype(np.int32)
        ctx = self.pair >> np.uint64(8)
        first = np.r_[True, ctx[1:] != ctx[:-1]] if len(ctx) else np.zeros(0, bool)
        cstart = np.flatnonzero(first)
        run = np.cumsum(first) - 1
        lo = cstart[run].astype(np.int32)                       # each pair's context run [lo, hi) (not kept:
        hi = (np.r_[cstart[1:], len(ctx)][run] if len(ctx) else cstart).astype(np.int32)  # runs() finds it)
        n_ctx = self.cum[hi] - self.cum[lo]                     # how often each pair's context was seen
        self.pid = np.full(n, -1, dtype=np.int32)                # pair held by each source position
        self.pid[at] = np.cumsum(new, dtype=np.int32) - 1
        # what a source holding each pair sees, itself left out: its mixing slot and p(observed)
        c, c_obs = n_ctx - 1, self.count - 1
        self.slot_self = slot_of(c, (hi - lo) - (c_obs == 0)).astype(np.uint8)
        self.p_self = np.where(c > 0, c_obs / np.maximum(c, 1), 0.0).astype(np.float32)

    def runs(self, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): the run of pairs [lo, hi) that shares each given pair's context (a search: a
        few positions ask, so no per-pair array is kept for it)."""
        return self.context(self.pair[pid] >> np.uint64(8))

    def trim(self, hk: np.ndarray) -> np.ndarray:
        """Full 64-bit context hashes -> the bits kept here."""
        return hk >> self.drop

    def context(self, hk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) pair indices of each context's run (lo == hi: never seen), by search;
        hk: trimmed hashes (trim)."""
        base = hk << np.uint64(8)
        lo = np.searchsorted(self.pair, base)
        hi = np.searchsorted(self.pair, base | np.uint64(255), side="right")
        return lo, hi

    def of(self, hk: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Count of byte b (Q,) after each context (Q,), by search."""
        if not len(self.pair):
            return np.zeros(len(hk))
        key = (hk << np.uint64(8)) | b.astype(np.uint64)
        at = np.searchsorted(self.pair, key).clip(0, len(self.pair) - 1)
        hit = (at < hi) & (at >= lo)
        return np.where(hit, self.count[at], 0).astype(np.float64)


class FileModel:
    """The predictor of one window: exact counts per expert, and the mixer fitted on its intact bytes."""

    def __init__(self, buf: np.ndarray, known: np.ndarray, seed: int = 0):
        self.w = Window(buf, known)
        src = np.flatnonzero(known)

        def count(kind: str) -> Counts:
            key, ok = context_keys(self.w, kind, None)
            at = np.flatnonzero(ok & known)
            return Counts(key[at], self.w.buf[at], at, self.w.n)  # keys come mixed
        # the experts are independent and numpy's sorts and gathers release the GIL: one per core
        self.counts = _each(count, EXPERTS[1:])  # per expert beyond order 0
        counts = np.bincount(buf[known], minlength=256).astype(np.float64)
        self.counts0, self.total0 = counts, counts.sum()
        self.order0 = (counts + 0.05) / (self.total0 + 0.05 * 256)  # never 0: every value stays possible
        self.theta = np.zeros((len(EXPERTS), SLOTS))
        self._cached: dict[int, np.ndarray] = {}  # position -> its dense() row (this window's own)
        self._fit(src, seed)

    def _expert_view(self, q: np.ndarray, w: Window | None = None):
        """Per expert at q: its mixing slot (J, Q) — how often its context was seen (BUCKETS) and
        how many values followed it (1, 2, 3 or more: a deterministic context is trusted apart),
        0 where never seen — and per expert beyond order 0 (lo, hi, n(c), self, n(c, o)).
        Leave-one-out: a position whose own context and byte are known counted itself once in
        n(c) and n(c, o); it is taken back out of both, and of the values seen. The window's own
        sources read their pair directly; other positions (unknown bytes, another Window) search."""
        own = w is None
        w = w or self.w
        J = len(EXPERTS)
        slot = np.zeros((J, len(q)), dtype=np.int64)
        slot[0] = SLOTS - 1
        obs = w.buf[q]
        parts = [None, obs]
        for j, kind in enumerate(EXPERTS[1:], start=1):
            cnt = self.counts[j - 1]
            lo, hi = np.zeros(len(q), np.int64), np.zeros(len(q), np.int64)
            c_obs = np.zeros(len(q))
            s = np.zeros(len(q), bool)
            if own:
                pid = cnt.pid[q]
                s = pid >= 0                      # a source: its own pair, counted once
                lo[s], hi[s] = cnt.runs(pid[s])
                c_obs[s] = cnt.count[pid[s]] - 1
                look = np.flatnonzero(~s & ~w.known[q])  # unknown bytes: their context may still be known
            else:
                look = np.arange(len(q))
            if len(look) and len(cnt.pair):
                key, ok = context_keys(w, kind, q[look])
                look = look[ok]
                hk = cnt.trim(key[ok])
                lo[look], hi[look] = cnt.context(hk)
                c_obs[look] = np.where(w.known[q[look]], cnt.of(hk, obs[look], lo[look], hi[look]), 0.0)
            c = (cnt.cum[hi] - cnt.cum[lo]).astype(np.int64) - s
            slot[j] = slot_of(c, (hi - lo) - (s & (c_obs == 0)))
            parts.append((lo, hi, c.astype(np.float64), s, c_obs))
        return slot, parts

    def order0_at(self, q: np.ndarray, w: Window | None = None) -> np.ndarray:
        """(Q, 256) order-0 probabilities at q, leave-one-out: a known byte of this window does
        not vouch for itself (a value seen once, at a damaged byte, stays as rare as unseen)."""
        w = w or self.w
        own = (w.known[q] if w is self.w else np.zeros(len(q), bool)).astype(np.float64)
        c = np.broadcast_to(self.counts0, (len(q), 256)).copy()
        c[np.arange(len(q)), w.buf[q]] -= own
        return (c + 0.05) / (self.total0 - own + 0.05 * 256)[:, None]

    def order0_obs(self, q: np.ndarray) -> np.ndarray:
        """(Q,) leave-one-out order-0 probability of the observed byte at known positions q."""
        return (self.counts0[self.w.buf[q]] - 1 + 0.05) / (self.total0 - 1 + 0.05 * 256)

    def source_view(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At known positions q of the window: (slot (J, Q), p_j(observed) (J, Q)), read straight
        from each position's own pair (a known byte whose context is not known: slot 0)."""
        slot = np.zeros((len(EXPERTS), len(q)), dtype=np.int64)
        p = np.zeros((len(EXPERTS), len(q)))
        slot[0] = SLOTS - 1
        p[0] = self.order0_obs(q)
        for j, cnt in enumerate(self.counts, start=1):
            pid = cnt.pid[q]
            has = pid >= 0
            pid = np.where(has, pid, 0)
            if len(cnt.pair):
                slot[j] = np.where(has, cnt.slot_self[pid], 0)
                p[j] = np.where(has, cnt.p_self[pid], 0.0)  # float32 counts ratio: 7 digits suffice
        return slot, p

    def weights(self, slot: np.ndarray) -> np.ndarray:
        """(J, Q) mixing weights: softmax over the experts whose context was seen (slot 0: weight 0)."""
        e = np.exp(self.theta - self.theta.max())
        e[1:, 0] = 0.0
        w = np.take_along_axis(e, slot, axis=1)
        return w / w.sum(0, keepdims=True)

    def _fit(self, src: np.ndarray, seed: int) -> None:
        """theta by maximum likelihood of the observed bytes at a sample of intact positions:
        MIX_STEPS of Adam (lr 0.3) on the mean log-loss, its gradient written out (numpy only:
        the predictor runs in worker processes that never load torch)."""
        if len(src) < 64:
            return
        rng = np.random.default_rng(seed)
        q = np.sort(rng.choice(src, size=min(MIX_SAMPLE, len(src)), replace=False))
        slot, p = self.source_view(q)  # (J, Q)
        self.theta = _adam(self.theta.shape, slot, p)

    def p_observed(self, q: np.ndarray) -> np.ndarray:
        """(Q,) P(observed byte | context) at known positions q (the screen). Expert by expert, its
        weight and weighted p(observed) are made once per distinct (context, byte) pair, and every
        position reads its pair's two numbers (pid); the mix is summed as it goes."""
        e = np.exp(self.theta - self.theta.max())
        e[1:, 0] = 0.0
        e0 = e[0, SLOTS - 1]
        num, den = e0 * self.order0_obs(q), np.full(len(q), e0)
        for j, c in enumerate(self.counts, start=1):
            if not len(c.pair):
                continue
            we = np.r_[e[j, c.slot_self], 0.0]  # a zero slot at the end: pid -1 (no pair) reads it
            wp = np.r_[we[:-1] * c.p_self, 0.0]

            def part(lo: int) -> None:
                pid = c.pid[q[lo:lo + (1 << 16)]]
                den[lo:lo + len(pid)] += we[pid]
                num[lo:lo + len(pid)] += wp[pid]
            _each(part, range(0, len(q), 1 << 16))  # chunks apart: gathers release the GIL
        return (1 - NOVELTY) * num / den + NOVELTY * self.order0_obs(q)

    def dense(self, q: np.ndarray, w: Window | None = None) -> np.ndarray:
        """(Q, 256) P(b | context) at positions q of the window (or of another Window `w`, whose
        bytes are looked up in this one's counts), every value (rows sum to 1): rows(). A row of
        this window is made once: the damage kinds, the rate and the decision all look at the
        file's most surprising bytes (at 1% damage 8,600 distinct rows of 15,800 asked). The first
        CACHE_ROWS are kept; a row is the same bytes whichever rows it was made with."""
        if w is not None:
            return self.rows(q, w)
        cached = self._cached
        hit = np.fromiter((i in cached for i in q.tolist()), bool, len(q))
        if not hit.any():
            out = self.rows(q)
        else:
            out = np.empty((len(q), 256))
            out[hit] = np.stack([cached[i] for i in q[hit].tolist()])
            if not hit.all():
                out[~hit] = self.rows(q[~hit])
        room = CACHE_ROWS - len(cached)
        if room > 0 and not hit.all():
            miss = np.flatnonzero(~hit)[:room]
            keep = out[miss].copy()  # a copy: a view would hold all of `out`
            cached.update(zip(q[miss].tolist(), keep))
        return out

    def rows(self, q: np.ndarray, w: Window | None = None) -> np.ndarray:
        """dense() made from the counts: (Q, 256) at positions q (of `w`, if given). Each expert adds
        only the values its context was seen with (a handful per row): one weighted bincount over
        every expert's (row, value) pairs, not a (Q, 256) pass per expert. Rows go DENSE_ROWS at a
        time: a context with many values lists up to 256 pairs per row and expert."""
        if len(q) > DENSE_ROWS:  # rows are independent: the same numbers, a quarter of the memory
            return np.concatenate([self.rows(q[i:i + DENSE_ROWS], w) for i in range(0, len(q), DENSE_ROWS)])
        slot, parts = self._expert_view(q, w)
        wts = self.weights(slot)  # (J, Q)
        obs = parts[1].astype(np.int64)
        p0 = self.order0_at(q, w)
        flat, add = [], []
        for j in range(1, len(EXPERTS)):
            lo, hi, nc, s, _ = parts[j + 1]
            rows = np.flatnonzero(wts[j] > 0)
            if not len(rows):
                continue
            cnt = self.counts[j - 1]
            length = hi[rows] - lo[rows]
            k = np.repeat(lo[rows] - np.r_[0, np.cumsum(length)[:-1]], length) + np.arange(length.sum())
            scale = wts[j][rows] / nc[rows]
            flat.append(np.repeat(rows * 256, length) + (cnt.pair[k] & np.uint64(255)).astype(np.int64))
            add.append(np.repeat(scale, length) * cnt.count[k])
            own = s[rows]  # leave-one-out: a source's own pair counted itself once
            flat.append(rows[own] * 256 + obs[rows[own]])
            add.append(-scale[own])
        mix = wts[0][:, None] * p0
        if flat:
            mix += np.bincount(np.concatenate(flat), np.concatenate(add), minlength=mix.size).reshape(mix.shape)
        total = mix.sum(1, keepdims=True)
        mix *= 1 - NOVELTY  # in place, in the order (1 - N) * mix / total + N * p0 is written
        mix /= total
        p0 *= NOVELTY
        mix += p0
        return mix
