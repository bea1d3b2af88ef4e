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

Counts live in hashed tables (2**bits uint16 slots per expert, like a compressor's): a context and
a (context, byte) pair each hash to a slot. Collisions only add a little noise at large windows;
the table size follows the window. Numpy only; everything is vectorised over positions.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

BUCKETS = np.array([0, 1, 2, 3, 5, 9, 17, 65], dtype=np.int64)  # n_j(c) >= edge: that bucket
SLOTS = len(BUCKETS) * 3  # mixing slots per expert: count bucket x values seen (1, 2, 3+); slot 0: never seen
MIX_SAMPLE = 8192   # intact positions the mixer is fitted on
MIX_STEPS = 40
# However sure the contexts are, a value the file uses keeps this share of its order-0 frequency:
# the mixer, fitted on a few thousand bytes, cannot rule novelty out ("FLT_MAX" beside "FLT_MIN").
NOVELTY = 1e-4
WORD_MAX = 12       # letters/digits each side that make a word context
MAX_STRIDE = 512    # record strides looked for
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_BYTE_SALT = (np.random.default_rng(12345).integers(1, 2**63, 256, dtype=np.int64).astype(np.uint64)) | np.uint64(1)


def _cores() -> int:
    """CPU cores this process may use (its affinity: a container's or taskset's share), at most 8."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # no affinity on this platform
        return max(1, min(os.cpu_count() or 1, 8))


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix): every key bit reaches every slot bit."""
    x = x ^ (x >> np.uint64(31))
    x = x * _M1
    x = x ^ (x >> np.uint64(29))
    x = x * _M2
    return x ^ (x >> np.uint64(32))


@dataclass
class Window:
    """One window's bytes with the helpers every expert's keys are made from."""
    buf: np.ndarray    # (N,) uint8
    known: np.ndarray  # (N,) bool: unknown bytes and padding never count, never serve as context
    stride: int | None = None  # record length (None: found here)

    def __post_init__(self):
        n = len(self.buf)
        self.n = n
        self.bad = np.zeros(n + 1, dtype=np.int32)  # bad[i]: unknown bytes among the first i
        np.cumsum(~self.known, dtype=np.int32, out=self.bad[1:])
        b = self.buf.astype(np.uint64) + np.uint64(1)
        # polynomial prefix hash H[i] of buf[:i] (mod 2**64): H[i + 1] = H[i] * P + b[i], vectorised
        # as H[i] = P**(i-1) * cumsum(b[k] * P**-k); P is odd, so its inverse mod 2**64 exists
        p = np.uint64(0x100000001B3)
        p_inv = np.uint64(pow(0x100000001B3, -1, 1 << 64))
        with np.errstate(over="ignore"):
            self.pw = np.cumprod(np.r_[np.uint64(1), np.full(n, p, dtype=np.uint64)], dtype=np.uint64)
            inv = np.cumprod(np.r_[np.uint64(1), np.full(max(n - 1, 0), p_inv, dtype=np.uint64)], dtype=np.uint64)[:n]
            self.h = np.zeros(n + 1, dtype=np.uint64)
            if n:
                self.h[1:] = np.cumsum(b * inv, dtype=np.uint64) * self.pw[:n]
        word = np.zeros(256, dtype=bool)
        word[list(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")] = True
        self.word = word[self.buf] & self.known
        idx = np.arange(n)
        # last[i]: index of the last non-word byte before i (-1 at the start); nxt[i]: first after i
        stop = np.where(~self.word, idx, -1)
        self.last = np.r_[-1, np.maximum.accumulate(stop)[:-1]] if n else idx
        stop = np.where(~self.word, idx, n)
        self.nxt = np.r_[np.minimum.accumulate(stop[::-1])[::-1][1:], n] if n else idx
        lf = np.where(self.buf == 10, idx, -1)
        self.line = np.r_[-1, np.maximum.accumulate(lf)[:-1]] if n else idx  # last LF before i
        lf = np.where(self.buf == 10, idx, n)
        self.line_end = np.r_[np.minimum.accumulate(lf[::-1])[::-1][1:], n] if n else idx  # first LF after i
        if self.stride is None:
            self.stride = find_stride(self.buf, self.known)

    def seg(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Hash of buf[a:b] for arrays of bounds (0 <= a <= b <= N)."""
        with np.errstate(over="ignore"):
            return self.h[b] - self.h[a] * self.pw[b - a]

    def all_known(self, a: np.ndarray, b: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """buf[a:b] is all known (the position `skip`, inside it, not counted)."""
        bad = self.bad[b] - self.bad[a]
        if skip is not None:
            bad = bad - (~self.known[skip]).astype(np.int32)
        return bad == 0


def find_stride(buf: np.ndarray, known: np.ndarray, sample: int = 32768) -> int:
    """The record length of fixed-size records (0: none): the lag whose bytes repeat most often,
    where that rate clearly beats the lags next to it and the plain chance of equal bytes."""
    n = len(buf)
    if n < 4 * 16:
        return 0
    start = max(0, n // 2 - sample // 2)
    seg = buf[start:start + sample + MAX_STRIDE]
    ok = known[start:start + sample + MAX_STRIDE]
    m = len(seg) - MAX_STRIDE
    if m < 1024:
        return 0
    rates = np.zeros(MAX_STRIDE + 1)
    for lag in range(2, MAX_STRIDE + 1):
        rates[lag] = np.mean((seg[:m] == seg[lag:lag + m]) & ok[:m] & ok[lag:lag + m])
    lag = int(rates.argmax())
    base = np.median(rates[2:])
    # a multiple of a smaller lag that does as well is that lag's echo: take the smallest
    for d in range(2, lag):
        if lag % d == 0 and rates[d] >= 0.9 * rates[lag]:
            lag = d
            break
    return lag if rates[lag] > max(2.5 * base, 0.15) and lag >= 3 else 0


# Expert kinds: (name, left bytes, right bytes). Word, column and stride experts are special.
# (L1R1 and L4R4 were measured and dropped: the others hold what they knew, within 0.1% top-1)
SIDES = (("L1", 1, 0), ("R1", 0, 1), ("L2R2", 2, 2), ("L3R3", 3, 3), ("L6R6", 6, 6), ("L3", 3, 0), ("L6", 6, 0), ("R3", 0, 3), ("L2R1", 2, 1), ("L1R2", 1, 2))
LONG = (("L12", 12), ("L24", 24))  # long left contexts: repeated strings (a compressor's match model)
SPECIAL = ("word", "column", "stride")
EXPERTS = ("order0",) + tuple(s[0] for s in SIDES) + tuple(s[0] for s in LONG) + SPECIAL


def context_keys(w: Window, kind: str, q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(keys (Q,) uint64, valid (Q,) bool) of expert `kind` at positions q (None: every position).
    A context is valid when every byte it reads is known and inside the window (the position
    itself is never read)."""
    n = w.n
    if kind in _SIDE:  # the a bytes left and b right, packed exactly (a, b <= 6), then mixed
        a, b = _SIDE[kind]
        every = q is None
        q = np.arange(n) if every else q
        ok = (q - a >= 0) & (q + 1 + b <= n)
        qq = np.clip(q, 0, max(n - 1, 0))  # (out-of-range positions are not ok already)
        ok &= (w.bad[qq] - w.bad[np.maximum(qq - a, 0)] == 0) & \
              (w.bad[np.minimum(qq + 1 + b, n)] - w.bad[np.minimum(qq + 1, n)] == 0)
        left, right = np.zeros(len(q), np.uint64), np.zeros(len(q), np.uint64)
        buf = w.buf
        for d in range(1, max(a, b) + 1):
            if every:  # whole window: shifted slices, no gathers
                if d <= a and d < n:
                    left[d:] |= buf[:n - d].astype(np.uint64) << np.uint64(8 * (d - 1))
                if d <= b and d < n:
                    right[:n - d] |= buf[d:].astype(np.uint64) << np.uint64(8 * (d - 1))
            else:
                if d <= a:
                    left |= buf[np.clip(q - d, 0, n - 1)].astype(np.uint64) << np.uint64(8 * (d - 1))
                if d <= b:
                    right |= buf[np.clip(q + d, 0, n - 1)].astype(np.uint64) << np.uint64(8 * (d - 1))
        with np.errstate(over="ignore"):
            return _mix64(left * _M2 + (right ^ np.uint64((a * 16 + b + 1) << 56))), ok
    if kind in _LONG:  # the k bytes before q, hashed (polynomial hash of the window's prefix)
        k = _LONG[kind]
        if q is None:
            key = np.zeros(n, np.uint64)
            ok = np.zeros(n, bool)
            if n > k:
                with np.errstate(over="ignore"):
                    key[k:] = w.h[k:n] - w.h[:n - k] * w.pw[k]
                ok[k:] = w.bad[k:n] - w.bad[:n - k] == 0
        else:
            ok = q >= k
            qq = np.clip(q, k, n)
            key = w.seg(qq - k, qq)
            ok &= w.bad[qq] - w.bad[qq - k] == 0
        return _mix64(key ^ np.uint64(k << 56)), ok
    q = np.arange(n) if q is None else q
    if kind == "word":  # the letters and digits either side of q, up to WORD_MAX each
        lo = np.maximum(w.last[q] + 1, q - WORD_MAX)
        hi = np.minimum(w.nxt[q], q + 1 + WORD_MAX)
        ok = (q - lo + hi - q - 1) >= 2  # at least two word bytes around it
        ok &= w.all_known(lo, q) & w.all_known(q + 1, hi)
        la, lb = (q - lo).astype(np.uint64), (hi - q - 1).astype(np.uint64)
        key = _mix64(w.seg(lo, q) ^ (la << np.uint64(56))) ^ (w.seg(q + 1, hi) + (lb << np.uint64(48)))
        return key, ok
    if kind == "column":  # the bytes in the same column one line up and one line down, and the left byte
        start = w.line[q] + 1
        col = q - start
        up_start = np.where(w.line[q] >= 0, w.line[np.maximum(w.line[q], 0)] + 1, 0)
        up = up_start + col
        ok = (w.line[q] >= 0) & (up < np.maximum(w.line[q], 0)) & (q >= 1)
        dn = w.line_end[q] + 1 + col
        dn_ok = (w.line_end[q] < n) & (dn < w.line_end[np.minimum(w.line_end[q] + 1, n - 1)]) & (dn < n)
        up, dn = np.clip(up, 0, n - 1), np.clip(dn, 0, n - 1)
        ok &= w.known[up] & w.known[np.maximum(q - 1, 0)] & (col < 4096)
        b_up = w.buf[up].astype(np.uint64)
        b_dn = np.where(dn_ok & w.known[dn], w.buf[dn].astype(np.uint64) + np.uint64(1), np.uint64(0))
        left = w.buf[np.maximum(q - 1, 0)].astype(np.uint64)
        return _mix64((b_up << np.uint64(24)) | (b_dn << np.uint64(8)) | left | np.uint64(7 << 40)), ok
    if kind == "stride":  # fixed-size records: the bytes one record before and after, and the left byte
        s = w.stride
        if s == 0:
            return np.zeros(len(q), np.uint64), np.zeros(len(q), bool)
        ok = (q - s >= 0) & (q + s < n) & (q >= 1)
        a, b, c = np.clip(q - s, 0, n - 1), np.clip(q + s, 0, n - 1), np.maximum(q - 1, 0)
        ok &= w.known[a] & w.known[b] & w.known[c]
        key = (w.buf[a].astype(np.uint64) << np.uint64(16)) | (w.buf[b].astype(np.uint64) << np.uint64(8)) | w.buf[c]
        return _mix64(key | np.uint64(9 << 40)), ok
    raise ValueError(kind)


_SIDE = {name: (a, b) for name, a, b in SIDES}
_LONG = dict(LONG)


def slot_of(c: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mixing slot of a context seen c times (others than the position itself) with `values`
    distinct bytes after it: count bucket x (1, 2, 3+ values); 0 where never seen."""
    bucket = np.searchsorted(BUCKETS, c, side="right") - 1
    return np.where(c > 0, bucket * 3 + np.minimum(values, 3) - 1, 0).astype(np.int64)


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
        self.count = np.diff(np.r_[starts, len(pair)]).astype(np.float64)
        self.cum = np.r_[0.0, np.cumsum(self.count)]
        ctx = self.pair >> np.uint64(8)
        first = np.r_[True, ctx[1:] != ctx[:-1]] if len(ctx) else np.zeros(0, bool)
        cstart = np.flatnonzero(first)
        run = np.cumsum(first) - 1
        self.lo = cstart[run]                                    # each pair's context run [lo, hi)
        self.hi = np.r_[cstart[1:], len(ctx)][run] if len(ctx) else cstart
        self.n_ctx = self.cum[self.hi] - self.cum[self.lo]       # how often each pair's context was seen
        self.pid = np.full(n, -1, dtype=np.int32)                # pair held by each source position
        self.pid[at] = np.cumsum(new) - 1
        # what a source holding each pair sees, itself left out: its mixing slot and p(observed)
        c, c_obs = self.n_ctx - 1, self.count - 1
        self.slot_self = slot_of(c, (self.hi - self.lo) - (c_obs == 0))
        self.p_self = np.where(c > 0, c_obs / np.maximum(c, 1), 0.0)

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
        return np.where(hit, self.count[at], 0.0)

    def dense(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(Q, 256) counts of every byte after each context."""
        out = np.zeros((len(lo), 256))
        length = hi - lo
        rows = np.repeat(np.arange(len(lo)), length)
        idx = np.repeat(lo - np.r_[0, np.cumsum(length)[:-1]], length) + np.arange(length.sum())
        out[rows, (self.pair[idx] & np.uint64(255)).astype(np.int64)] = self.count[idx]
        return out


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
        with ThreadPoolExecutor(max_workers=_cores()) as pool:
            self.counts = list(pool.map(count, EXPERTS[1:]))  # per expert beyond order 0
        counts = np.bincount(buf[known], minlength=256).astype(np.float64)
        self.counts0, self.total0 = counts, counts.sum()
        self.order0 = (counts + 0.05) / (self.total0 + 0.05 * 256)  # never 0: every value stays possible
        self.theta = np.zeros((len(EXPERTS), SLOTS))
        self.fit_bits = float("nan")
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
                lo[s], hi[s], c_obs[s] = cnt.lo[pid[s]], cnt.hi[pid[s]], cnt.count[pid[s]] - 1
                look = np.flatnonzero(~s & ~w.known[q])  # unknown bytes: their context may still be known
            else:
                look = np.arange(len(q))
            if len(look) and len(cnt.pair):
                key, ok = context_keys(w, kind, q[look])
                look = look[ok]
                hk = cnt.trim(key[ok])
                lo[look], hi[look] = cnt.context(hk)
                c_obs[look] = np.where(w.known[q[look]], cnt.of(hk, obs[look], lo[look], hi[look]), 0.0)
            c = cnt.cum[hi] - cnt.cum[lo] - s
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
                p[j] = np.where(has, cnt.p_self[pid], 0.0)
        return slot, p

    def expert_probs(self, q: np.ndarray, b: np.ndarray | None, view=None) -> np.ndarray:
        """(J, Q, 256) p_j(b) for every value b = arange(256) broadcast to (Q, 256) at positions q,
        or (J, Q, 1) for the observed byte when b is None (0 where the context was never seen).
        (dense() adds the experts up without holding all of them.)"""
        slot, parts = view if view is not None else self._expert_view(q)
        obs = parts[1]
        shape = (len(q), 1) if b is None else b.shape
        out = np.zeros((len(EXPERTS),) + shape)
        out[0] = self.order0[obs[:, None] if b is None else b]
        for j in range(1, len(EXPERTS)):
            lo, hi, nc, s, c_obs = parts[j + 1]
            if b is None:
                c = c_obs[:, None]
            else:  # every value: (Q, 256)
                c = self.counts[j - 1].dense(lo, hi) - (s[:, None] & (b == obs[:, None]))
            out[j] = np.where(nc[:, None] > 0, np.clip(c, 0, None) / np.maximum(nc[:, None], 1), 0.0)
        return out

    def weights(self, slot: np.ndarray) -> np.ndarray:
        """(J, Q) mixing weights: softmax over the experts whose context was seen (slot 0: weight 0)."""
        e = np.exp(self.theta - self.theta.max())
        e[1:, 0] = 0.0
        w = np.take_along_axis(e, slot, axis=1)
        return w / w.sum(0, keepdims=True)

    def _fit(self, src: np.ndarray, seed: int) -> None:
        """theta by maximum likelihood of the observed bytes at a sample of intact positions."""
        if len(src) < 64:
            return
        rng = np.random.default_rng(seed)
        q = np.sort(rng.choice(src, size=min(MIX_SAMPLE, len(src)), replace=False))
        slot, p = self.source_view(q)  # (J, Q)
        bucket = torch.from_numpy(slot)
        pt = torch.from_numpy(p)
        theta = torch.zeros(self.theta.shape, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.3)
        rows = torch.arange(len(EXPERTS)).unsqueeze(1)
        seen = bucket > 0
        with torch.enable_grad():  # callers may run under no_grad (decide does)
            loss = self._descend(theta, opt, rows, bucket, seen, pt)
        self.theta = theta.detach().numpy()
        self.fit_bits = float(loss / np.log(2))

    @staticmethod
    def _descend(theta, opt, rows, bucket, seen, pt) -> float:
        for _ in range(MIX_STEPS):
            logit = theta[rows, bucket].masked_fill(~seen, -1e9)
            w = torch.softmax(logit, 0)
            loss = -torch.log((w * pt).sum(0).clamp_min(1e-12)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.item())

    def p_observed(self, q: np.ndarray) -> np.ndarray:
        """(Q,) P(observed byte | context) at known positions q (the screen: two gathers per
        expert, no (J, Q) arrays: the mix is summed as it goes)."""
        e = np.exp(self.theta - self.theta.max())
        e[1:, 0] = 0.0
        num, den = np.zeros(len(q)), np.zeros(len(q))

        def part(lo: int) -> None:
            qq = q[lo:lo + (1 << 16)]
            slot, p = self.source_view(qq)
            w = e[np.arange(len(EXPERTS))[:, None], slot]
            num[lo:lo + len(qq)] = (w * p).sum(0)
            den[lo:lo + len(qq)] = w.sum(0)
        with ThreadPoolExecutor(max_workers=_cores()) as pool:  # chunks apart: gathers release the GIL
            list(pool.map(part, range(0, len(q), 1 << 16)))
        return (1 - NOVELTY) * num / den + NOVELTY * self.order0_obs(q)

    def dense(self, q: np.ndarray, w: Window | None = None) -> np.ndarray:
        """(Q, 256) P(b | context) at positions q of the window (or of another Window `w`, whose
        bytes are looked up in this one's counts), every value (rows sum to 1)."""
        slot, parts = self._expert_view(q, w)
        wts = self.weights(slot)  # (J, Q)
        obs = parts[1].astype(np.int64)
        p0 = self.order0_at(q, w)
        mix = wts[0][:, None] * p0  # (Q, 256), the experts added one at a time
        for j in range(1, len(EXPERTS)):
            lo, hi, nc, s, _ = parts[j + 1]
            rows = np.flatnonzero(wts[j] > 0)
            if not len(rows):
                continue
            c = self.counts[j - 1].dense(lo[rows], hi[rows])
            c[np.arange(len(rows)), obs[rows]] -= s[rows]  # leave-one-out
            mix[rows] += (wts[j][rows] / nc[rows])[:, None] * np.clip(c, 0, None)
        return (1 - NOVELTY) * mix / mix.sum(1, keepdims=True) + NOVELTY * p0
