"""The contexts a byte is predicted from: one window's bytes and the keys of every expert.

`Window` holds a window of bytes (N,) and which are known, with the running sums every key is
made from (unknown bytes before each position, a polynomial prefix hash, word, line and record
boundaries). `context_keys(w, kind, q)` gives each expert's 64-bit context key at positions q,
and whether that context is all known: k bytes left and/or right (packed exactly, then mixed),
12 or 24 bytes left (hashed: repeated strings), the word a byte sits in, the bytes in the same
column one line up and down, the bytes one record away. The byte at q itself is never read, so a
damaged byte never makes its own context (the predictor is two-sided and leave-one-out:
filemodel.py). Numpy only; every key is vectorised over positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fragfix.machine import default_cores

WORD_MAX = 12       # letters/digits each side that make a word context
MAX_STRIDE = 512    # record strides looked for
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


THREADS = 0  # threads one predictor builds with (0: _cores(); pool workers set 1)


def _cores() -> int:
    """CPU cores this process may use (machine.default_cores), at most 8."""
    if THREADS:
        return THREADS
    return min(default_cores(), 8)


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
        self.pw, inv = _powers(n)
        with np.errstate(over="ignore"):
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

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) uint64 each: the SIDE_MAX bytes before every position (byte i - d in bits 8(d - 1)
        up) and after it; each side expert masks the bytes it reads (made once per window)."""
        if getattr(self, "_packed", None) is None:
            n, buf = self.n, self.buf
            left, right = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
            for d in range(1, min(SIDE_MAX, n - 1) + 1):
                left[d:] |= buf[:n - d].astype(np.uint64) << np.uint64(8 * (d - 1))
                right[:n - d] |= buf[d:].astype(np.uint64) << np.uint64(8 * (d - 1))
            self._packed = (left, right)
        return self._packed

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


_POWERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**0 .. P**n, P**0 .. P**-(n-1)) mod 2**64 for the prefix hash, kept for the last two lengths
    (a fill's beam builds a Window of the same length at every step; read-only: shared)."""
    if n not in _POWERS:
        p = np.uint64(0x100000001B3)
        p_inv = np.uint64(pow(0x100000001B3, -1, 1 << 64))
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.r_[np.uint64(1), np.full(n, p, dtype=np.uint64)], dtype=np.uint64)
            inv = np.cumprod(np.r_[np.uint64(1), np.full(max(n - 1, 0), p_inv, dtype=np.uint64)], dtype=np.uint64)[:n]
        pw.flags.writeable = inv.flags.writeable = False
        if len(_POWERS) >= 2:
            _POWERS.pop(next(iter(_POWERS)))
        _POWERS[n] = (pw, inv)
    return _POWERS[n]


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
SIDES = (("L1", 1, 0), ("R1", 0, 1), ("L2R2", 2, 2), ("L3R3", 3, 3), ("L6R6", 6, 6), ("L3", 3, 0), ("L6", 6, 0),
         ("R3", 0, 3), ("L2R1", 2, 1), ("L1R2", 1, 2))
LONG = (("L12", 12), ("L24", 24))  # long left contexts: repeated strings (a compressor's match model)
SPECIAL = ("word", "column", "stride")
EXPERTS = ("order0",) + tuple(s[0] for s in SIDES) + tuple(s[0] for s in LONG) + SPECIAL


def context_keys(w: Window, kind: str, q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(keys (Q,) uint64, valid (Q,) bool) of expert `kind` at positions q (None: every position).
    A context is valid when every byte it reads is known and inside the window (the position
    itself is never read)."""
    n = w.n
    if kind in _SIDE and q is None:  # every position: masks of the window's packed neighbours
        a, b = _SIDE[kind]
        left, right = w.packed()
        ok = np.zeros(n, bool)
        ok[a:max(n - b, a)] = True
        if w.bad[n]:  # some bytes unknown: no context may read one
            idx = np.arange(n)
            ok &= (w.bad[idx] - w.bad[np.maximum(idx - a, 0)] == 0) & \
                  (w.bad[np.minimum(idx + 1 + b, n)] - w.bad[np.minimum(idx + 1, n)] == 0)
        with np.errstate(over="ignore"):
            return _mix64((left & _MASK[a]) * _M2 + ((right & _MASK[b]) ^ np.uint64((a * 16 + b + 1) << 56))), ok
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
SIDE_MAX = max(max(a, b) for _, a, b in SIDES)
_MASK = [np.uint64((1 << (8 * k)) - 1) for k in range(SIDE_MAX + 1)]
_LONG = dict(LONG)
