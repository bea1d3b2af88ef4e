"""Where to look first: an order of input positions for the candidate search, from the evidence.

The decoded output of a damaged stream shows where it went wrong: a wrong literal is a byte that
its neighbours make unlikely, and a desynchronised stream turns into bytes unlike what came
before. `surprise` scores every output byte by the data's own context counts (leave-one-out:
how often the same neighbours, elsewhere in this output, surround this byte); a scorer from the
model adds its own view. Output positions map back to input through the trace's per-STEP output
lengths. When a single output byte is wrong and nothing copied it, the CRC syndrome names it
outright (crc.py), and that piece goes first.

A stream that decoded to an end but the wrong one is read symbol by symbol (symbols.py): the first
copies a zlib-like encoder would not have written (plausible.stream_oddities) lie just after the
damage (median 19 output bytes, 95% within 170, on real gzip and zip streams), so the search walks
back from there first; before them such a stream has none. `plan` says in what phases the
positions are searched (bits, bytes, pairs).
"""
from __future__ import annotations

import bisect

import numpy as np

from fragfix.formats import crc
from fragfix.formats.deflate.plausible import stream_oddities
from fragfix.formats.deflate.symbols import BadStream, parse
from fragfix.formats.deflate.trace import STEP, Trace

NEAR = 256         # located out of step: positions searched for bits, bytes and pairs before bits further off
JUMP = 10          # how many times likelier oddities must become for the damage to be located by them
DENSE, DENSE_SPAN = 3, 2048  # an oddity that 3 more follow within 2 KB of output: damage, not an encoder's quirk
MAX_PARSE = 1 << 22  # output bytes read symbol by symbol for the oddities (~0.7 s a MB)


def surprise(data: bytes) -> np.ndarray:
    """Bits of surprise per byte from leave-one-out counts of the byte between the same 1 and 2
    neighbours on each side elsewhere in `data`."""
    a = np.frombuffer(data, np.uint8).astype(np.int64)
    n = len(a)
    if n < 8:
        return np.zeros(n)
    p = np.pad(a, 2)
    total = np.zeros(n)
    for k in (1, 2):
        left = sum(p[2 - j:2 - j + n] << (8 * (j - 1)) for j in range(1, k + 1))
        right = sum(p[2 + j:2 + j + n] << (8 * (j - 1)) for j in range(1, k + 1))
        ctx = (left << (16 * k)) | right
        key = (ctx << 8) | a
        _, ci, cc = np.unique(ctx, return_inverse=True, return_counts=True)
        _, ki, kc = np.unique(key, return_inverse=True, return_counts=True)
        others, same = cc[ci] - 1, kc[ki] - 1
        total += -np.log2((same + 0.5) / (others + 1.0))
    return total


def _piece_of(tr: Trace, x: int) -> int:
    """The piece whose decoding produced output byte x."""
    return max(1, bisect.bisect_right(tr.outlen, x))


def ranked_positions(tr: Trace, start: int, stop: int, case: str, scorer, kind: str, bound: int | None = None) -> list[int]:
    end = min(stop, tr.error + STEP if tr.error is not None else stop)
    if case == "error":
        return list(range(end - 1, start - 1, -1))
    model = scorer(tr.out) if scorer is not None and len(tr.out) else None
    score = surprise(tr.out) + (model if model is not None else 0)
    if case == "wrong-end":
        # the change point: where the output turns less plausible than what came before (a stream
        # that never found its step again; the model alone finds it best: the output's own counts
        # vary more along a file), taken in turns with the least plausible pieces (one that found
        # it again with a wrong size: the damage shows only locally)
        cp = model if model is not None else score
        dev = np.cumsum(cp - cp.mean()) if len(cp) else np.zeros(1)
        k = _piece_of(tr, int(np.argmin(dev))) if len(cp) else 1
        p0 = min(end - 1, tr.pos(k) + 2 * STEP)
        change = list(range(p0, start - 1, -1)) + list(range(p0 + 1, end))
        out = _merge(change, _by_pieces(tr, start, end, score, []), 1, 1)
        if bound is not None:  # back from the first oddities, mostly; the rest in turns with the above
            return _merge(_ring(min(bound, end - 1), start, end, 8), out, 3, 1)
        return out
    # in step: pieces by their least plausible output byte; the syndrome's pick first
    first = []
    if kind == "crc32" and tr.syndrome is not None:
        for edit in crc.locate(tr.syndrome, len(tr.out), _SINGLE):
            first.append(_piece_of(tr, edit[0][0]) - 1)
    return _by_pieces(tr, start, end, score, first)


BITS = [1 << b for b in range(8)]
BYTES = [v for v in range(1, 256) if v & (v - 1)]  # whole wrong bytes: two bits or more


def plan(order: list[int], case: str, two_bits: bool, located: bool) -> list:
    """The search's phases in turn: (positions, xors, share of the time left that the phase may take
    (the rest of it comes last), hold) or "two-bits". One flipped bit is the likeliest damage (bit
    rot), then one wrong byte, then two bits; located out of step, all three near the damage before
    anything further off. Held candidates that pass the structure wait their turn by plausibility: in
    step, and whole wrong bytes in a stream that ended wrong (30 times as many, and most end), unless
    near where the oddities located the damage."""
    if case == "in-step":
        return [(order[:4096], BITS, 1.0, True), (order[:256], BYTES, 1.0, True), (order[4096:], BITS, 1.0, True)]
    if not two_bits:  # the second bit of a pair: single bits only (near where it was located, if it was)
        return [(order[:NEAR // 2] if located else order, BITS, 1.0, False)]
    hold = case == "wrong-end"
    if located:
        return [(order[:NEAR], BITS, 1.0, False), (order[:NEAR], BYTES, 1.0, False), "two-bits",
                (order[NEAR:], BITS, 1.0, False), (order[NEAR:], BYTES, 0.6, hold)]
    return [(order, BITS, 1.0, False), (order, BYTES, 0.6, hold), "two-bits"]


def oddity_bound(buf, start: int, stop: int, out: bytes, after: int | None = None):
    """The input byte just past the first copy a zlib-like encoder would not have written that
    begins a cluster (DENSE more within DENSE_SPAN output bytes; else one more within 2 KB; else the
    first): damage brings hundreds, while some encoders leave a stray few. None: no such copies,
    no jump in their rate (a fast encoder's), or the stream does not parse. With `after` (an
    output position): (input byte past the first copy at or after it, its output position, how
    many there are), (`stop`, len(out), 0) if none: how far, and how well, an edit cleans the stream."""
    if not 0 < len(out) <= MAX_PARSE:
        return None
    try:
        P = parse(bytes(buf[start:stop]), 0, limit_out=len(out))
    except BadStream:
        return None
    if P.n != len(out):
        return None
    odd = np.flatnonzero(stream_oddities(P, np.frombuffer(out, np.uint8).astype(np.int64)))
    at = np.asarray(P.m_out, np.int64)[odd]
    if after is not None:
        later = np.flatnonzero(at >= after)
        if not len(later):
            return stop, len(out), 0
        first = int(odd[later[0]])
        return start + ((P.m_xbit[first] + P.m_xlen[first]) >> 3) + 1, int(at[later[0]]), len(later)
    if not len(odd) or not _jumps(at, len(out)):
        return None
    j = 0
    for more, span in ((DENSE, DENSE_SPAN), (1, 2048)):
        hit = np.flatnonzero(at[more:] - at[:len(at) - more] <= span)
        if len(hit):
            j = int(hit[0])
            break
    first = int(odd[j])
    return start + ((P.m_xbit[first] + P.m_xlen[first]) >> 3) + 1, int(at[j])  # just past the copy's symbol


def _jumps(at: np.ndarray, n: int) -> bool:
    """Whether the oddities' rate jumps somewhere (at least JUMP-fold, by the best two-segment
    split): damage in a stream from a zlib-like encoder. A fast encoder (zlib levels 1-3 skip
    strings inside long copies) leaves them everywhere, and they locate nothing."""
    if n < 2:
        return False
    x = np.zeros(n)
    x[at] = 1.0
    c = np.cumsum(x)[:-1]
    k = np.arange(1, n)
    before, after = c / k, (c[-1] + x[-1] - c) / (n - k)
    stat = np.where(after > before, k * (n - k) / n * (after - before) ** 2, 0.0)
    j = int(np.argmax(stat))
    return bool(after[j] > JUMP * before[j] + 1e-4)


def _ring(p0: int, start: int, end: int, back: int) -> list[int]:
    """Positions around p0 in [start, end): `back` backwards for each one forwards."""
    out, b, f = [], p0, p0 + 1
    while b >= start or f < end:
        out += range(b, max(b - back, start - 1), -1)
        b -= back
        if f < end:
            out.append(f)
            f += 1
    return out


def _merge(a: list[int], b: list[int], na: int, nb: int) -> list[int]:
    """Two orders of the same positions taken in turns, na from a then nb from b, each once."""
    out, seen, ia, ib = [], set(), 0, 0
    while ia < len(a) or ib < len(b):
        for lst, i, k in ((a, ia, na), (b, ib, nb)):
            for p in lst[i:i + k]:
                if p not in seen:
                    seen.add(p)
                    out.append(p)
        ia, ib = ia + na, ib + nb
    return out


def _by_pieces(tr: Trace, start: int, end: int, score: np.ndarray, first: list[int]) -> list[int]:
    """Input positions by the least plausible output byte of the piece that decoded them (`first`:
    pieces to take before all others), each piece's positions backwards with the piece before it."""
    kmax = len(tr.outlen) - 1
    if kmax < 1:
        return list(range(end - 1, start - 1, -1))
    smooth = np.maximum.reduce([np.roll(score, s) for s in (-1, 0, 1)]) if len(score) > 2 else score
    bounds = np.asarray(tr.outlen)
    piece_score = np.full(kmax, -np.inf)
    nonempty = bounds[1:] > bounds[:-1]
    if len(smooth):
        red = np.maximum.reduceat(smooth, np.minimum(bounds[:-1], len(smooth) - 1))
        piece_score[nonempty] = red[nonempty]
    pieces = first + [int(i) for i in np.argsort(-piece_score, kind="stable")]
    out, seen = [], set()
    for i in pieces:  # piece i+1 produced the output; its code may have begun in the piece before
        for p in range(min(end, tr.pos(i + 1)) - 1, max(start, tr.pos(i - 1)) - 1, -1):
            if p not in seen:
                seen.add(p)
                out.append(p)
    out += [p for p in range(end - 1, start - 1, -1) if p not in seen]
    return out


_SINGLE = {crc.TABLE[v]: [(0, 0, v)] for v in range(1, 256)}


def context_counts(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted 5-gram keys (2 bytes, byte, 2 bytes) and their counts, and the same for the
    4-byte contexts around the middle byte: what `context_bits` looks up."""
    a = np.frombuffer(data, np.uint8).astype(np.int64)
    if len(a) < 5:
        e = np.zeros(0, np.int64)
        return e, e, e, e
    ctx, key = _grams(a)
    k5, c5 = np.unique(key, return_counts=True)
    k4, c4 = np.unique(ctx, return_counts=True)
    return k5, c5, k4, c4


def _grams(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ctx = (a[:-4] << 24) | (a[1:-3] << 16) | (a[3:-1] << 8) | a[4:]
    return ctx, (ctx << 8) | a[2:-2]


def context_bits(counts, data: bytes, own: bool = False) -> np.ndarray:
    """Bits of surprise of each of `data`'s middle bytes (5-gram keys) under `counts`; `own`:
    `data` is part of what was counted, so its own sightings are left out."""
    k5, c5, k4, c4 = counts
    a = np.frombuffer(data, np.uint8).astype(np.int64)
    if len(a) < 5 or len(k5) == 0:
        return np.zeros(max(len(a) - 4, 0))
    ctx, key = _grams(a)

    def look(keys, counts_, q):
        i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return np.where(keys[i] == q, counts_[i], 0)
    c5_, c4_ = look(k5, c5, key), look(k4, c4, ctx)
    if own:
        c5_, c4_ = np.maximum(c5_ - 1, 0), np.maximum(c4_ - 1, 0)
    return -np.log2((c5_ + 0.5) / (c4_ + 1.0))


def gain(counts, damaged: bytes, candidate: bytes) -> float:
    """How many bits of surprise a candidate's output removes where it differs from the damaged
    output (only the 5-grams that changed count: the rest are the same bytes on both sides)."""
    d, c = context_bits(counts, damaged, own=True), context_bits(counts, candidate)
    if len(damaged) != len(candidate):
        return float(d.sum() - c.sum())
    a = np.frombuffer(damaged, np.uint8)
    b = np.frombuffer(candidate, np.uint8)
    if len(a) < 5:
        return 0.0
    diff = a != b
    changed = np.convolve(diff, np.ones(5), "valid") > 0  # 5-grams that hold a changed byte
    return float(d[changed].sum() - c[changed].sum())
