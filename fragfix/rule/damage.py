"""How damaged is this stretch of data? The damage rate, estimated from the data itself.

A model trained on some kinds of data is confidently wrong on others: on a clean Go file it
"corrects" tab indentation; on a clean header it drops a digit it has not seen there before. The
discrete universal denoiser (DUDE: Weissman et al., IEEE Trans. Inf. Theory 2005) shows the way
out: decide with the channel's damage rate and with what the data itself says, not with the
model's belief alone. Two things the data shows, both from the window under repair:

- **its own habits.** A byte that sits between the same neighbours elsewhere in the window is the
  file's own (tabs after a newline, a digit after '#define X '); random damage seldom repeats the
  same byte in the same place. `own` marks a suspect as the file's own when at least `own` other
  places hold the same (left, byte, right) triple (and `own_share` of those with its neighbours), when
  the byte is this common after its left or before its right neighbour (`pair_share`), or when it is
  part of a well-formed multi-byte UTF-8 sequence (text in another script). Own bytes never change.
- **its damage rate.** `clear` marks suspects that nothing vouches for: the model finds them
  implausible (p <= `clear_p`), no other place holds the same triple, and the byte value is rare in
  the window (`rare`). Their local density (+- `span` fragments) estimates the damage rate: a clean
  file shows a few such oddities per 100 KB, damaged data about 0.8 per damaged byte (substitutions
  that land on a common byte are not clear). The gate uses its lower confidence bound (count minus
  `z` standard deviations): a few oddities bunched together in a clean file are not damage. `scale`
  turns the rate into the factor on the gate's floors: 0 at or below the clean background (nothing
  changes), 1 at the reference rate, at most `max_scale` where damage is dense. In Bayesian terms,
  the prior odds of damage enter the decision instead of staying fixed at whatever the training
  noise was.

Numpy only; `decide._gate` calls it with the window's suspects (flat positions q into `buf`).
"""
from __future__ import annotations

import numpy as np

from fragfix.config import FRAGMENT_SIZE as FRAGMENT, DamageEvidence  # thresholds: in the repair config, so reports record them


def support(buf: np.ndarray, known: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) how many other places in the window hold the observed byte between the same 1-byte
    neighbours, and (Q,) how many places have those neighbours at all (unknown bytes never count).
    Triples are 24-bit codes; only the suspects' distinct codes are counted (a binary search per
    position), pairs of neighbours in a 65,536-bin count."""
    a = buf.astype(np.int32)
    n = len(a)
    if n < 3 or not len(q):
        return np.zeros(len(q)), np.zeros(len(q))
    ok = known[:-2] & known[1:-1] & known[2:]          # source triples, centred on 1 .. n-2
    trip = (a[:-2] << 16) | (a[1:-1] << 8) | a[2:]
    qc = np.clip(q, 1, n - 2) - 1                       # index of each suspect's own triple
    inner = (q >= 1) & (q <= n - 2) & known[qc] & known[qc + 2]  # its neighbours must be known
    codes, inv = np.unique(trip[qc], return_inverse=True)
    src = trip[ok]
    at = np.minimum(np.searchsorted(codes, src), len(codes) - 1)
    c = np.bincount(at[codes[at] == src], minlength=len(codes))[inv]
    pair = np.bincount(((a[:-2] << 8) | a[2:])[ok], minlength=65536)[((a[qc] << 8) | a[qc + 2])]
    own = ok[qc]                                        # a suspect that is itself a valid source: not its own support
    return (np.where(inner, c - own, 0).astype(np.float64), np.where(inner, pair - own, 0).astype(np.float64))


def local_counts(rows: np.ndarray, known_rows: np.ndarray, span: int = DamageEvidence.span,
                 pieces: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(B,) clear errors and (B,) known bytes within +-span fragments of each fragment: `rows` are
    the fragments of the clear errors, `known_rows` (B,) the known bytes per fragment. `pieces` (B,)
    names the piece (file) each fragment belongs to: the window around a fragment never reaches
    into another file, so a clean file batched beside a damaged one stays shut, and a damaged one
    is not diluted."""
    b = len(known_rows)
    hits = np.concatenate([[0.0], np.cumsum(np.bincount(rows, minlength=b))])
    known = np.concatenate([[0.0], np.cumsum(known_rows, dtype=np.float64)])
    i = np.arange(b)
    lo, hi = np.maximum(i - span, 0), np.minimum(i + span + 1, b)
    if pieces is not None:  # clip the window to the fragment's own piece (pieces are runs of rows)
        first = np.r_[True, pieces[1:] != pieces[:-1]]
        start = np.maximum.accumulate(np.where(first, i, 0))
        last = np.r_[pieces[1:] != pieces[:-1], True]
        end = np.minimum.accumulate(np.where(last, i, b - 1)[::-1])[::-1] + 1
        lo, hi = np.maximum(lo, start), np.minimum(hi, end)
    return hits[hi] - hits[lo], np.maximum(known[hi] - known[lo], 1.0)


def local_rate(rows: np.ndarray, known_rows: np.ndarray, span: int = DamageEvidence.span,
               pieces: np.ndarray | None = None, z: float = 0.0) -> np.ndarray:
    """(B,) clear errors per known byte around each fragment (see local_counts); z > 0: the lower
    confidence bound hits - z * sqrt(hits) instead of the count (Poisson), so a handful of
    oddities bunched together in a clean file does not read as damage."""
    hits, known = local_counts(rows, known_rows, span, pieces)
    return np.maximum(hits - z * np.sqrt(hits), 0.0) / known


def scale(rate: np.ndarray, background: float, ref: float, top: float) -> np.ndarray:
    """(B,) the factor on the gate's floors: 0 up to the clean `background` rate, rising linearly to
    1 at `ref`, at most `top`."""
    if ref <= background:
        return np.where(rate > background, top, 0.0)
    return np.clip((rate - background) / (ref - background), 0.0, top)


def utf8_multibyte(buf: np.ndarray) -> np.ndarray:
    """(N,) bool: bytes inside a well-formed multi-byte UTF-8 sequence. Text in other scripts is the
    file's own; random damage almost never forms a lead byte followed by the right continuations."""
    n = len(buf)
    mark = np.zeros(n, dtype=bool)
    cont = (buf & 0xC0) == 0x80
    for lo, hi, length in ((0xC2, 0xDF, 2), (0xE0, 0xEF, 3), (0xF0, 0xF4, 4)):
        lead = np.flatnonzero((buf >= lo) & (buf <= hi))
        lead = lead[lead + length <= n]
        ok = np.ones(len(lead), dtype=bool)
        for j in range(1, length):
            ok &= cont[lead + j]
        for j in range(length):
            mark[lead[ok] + j] = True
    return mark


def one_sided(buf: np.ndarray, known: np.ndarray, q: np.ndarray,
              own_pairs: int = DamageEvidence.own_pairs) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) shares of the observed byte after its left neighbour and before its right one, over the
    window's known pairs (its own pair left out)."""
    a = buf.astype(np.int64)
    ok = known[:-1] & known[1:]
    pairs = np.bincount((a[:-1] * 256 + a[1:])[ok], minlength=65536).reshape(256, 256)
    after, before = pairs.sum(1), pairs.sum(0)  # how often each byte has a right / a left neighbour
    o = a[q]
    left, right = a[np.maximum(q - 1, 0)], a[np.minimum(q + 1, len(a) - 1)]
    c_l, c_r = pairs[left, o] - 1, pairs[o, right] - 1
    s_l = np.where(q > 0, c_l / np.maximum(after[left] - 1, 1), 0.0)
    s_r = np.where(q < len(a) - 1, c_r / np.maximum(before[right] - 1, 1), 0.0)
    return np.where(c_l >= own_pairs, s_l, 0.0), np.where(c_r >= own_pairs, s_r, 0.0)


def estimate(buf: np.ndarray, known: np.ndarray, q: np.ndarray, p_model_obs: np.ndarray,
             n_rows: int, pieces: np.ndarray | None = None, bound: bool = True,
             ev: DamageEvidence = DamageEvidence()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the suspects q: (own (Q,) bool: the file's own byte, clear (Q,) bool: a clear error,
    local damage rate per fragment (B,): its lower bound at `ev.z` where `bound`, else the count)."""
    sup, total = support(buf, known, q)
    s_l, s_r = one_sided(buf, known, q, ev.own_pairs)
    own = (sup >= ev.own) & (sup >= ev.own_share * total) | utf8_multibyte(buf)[q] | (np.maximum(s_l, s_r) >= ev.pair_share)
    counts = np.bincount(buf[known], minlength=256)
    rare = counts[buf[q]] <= ev.rare * max(int(known.sum()), 1)
    clear = known[q] & (p_model_obs <= ev.clear_p) & (sup < ev.own) & rare & ~own
    known_rows = known[:n_rows * FRAGMENT].reshape(n_rows, FRAGMENT).sum(1)
    rate = local_rate(q[clear] // FRAGMENT, known_rows, ev.span, pieces, ev.z if bound else 0.0)
    return own, clear, rate
