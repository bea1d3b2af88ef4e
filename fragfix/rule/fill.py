"""Guesses for lost bytes that survive as copies: one value per lost byte, from every copy's context.

After a loss in a compressed stream, later copies that reach back into the lost bytes are unknown
too, but each is a copy of one lost byte (`group`), and every copy sits among known bytes of its
own. The per-file predictor (filemodel.py) gives P(b | context) at each copy; the copies of one
lost byte share one value, so their log-probabilities add (copies in different places are close to
independent evidence), and the best value wins. A lost byte copied ten times in ten contexts is
guessed far better than any one of them.

Copies of runs of lost bytes sit beside each other and are each other's context: in each round after
the first, the surest guesses so far are read as known (the rest stay unknown).

The probability given per guess is the normalised geometric mean over its copies (the product
would count near-duplicate contexts as independent and claim too much).
"""
from __future__ import annotations

import numpy as np

from fragfix.rule.context import fill_gaps
from fragfix.rule.filemodel import FileModel

SPAN = 1 << 19     # content positions one predictor covers (with MARGIN each side)
MARGIN = 1 << 16
SURE = 0.9         # guesses this sure are context for the next round
ROUNDS = 2         # rounds of guessing
MIN_KNOWN = 256    # known bytes a predictor needs
SPANS = 1          # spans after the first unknown byte whose copies are asked


def guess_copies(data: np.ndarray, known: np.ndarray, pos: np.ndarray, group: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For positions `pos` of `data` (uint8; `known` False there and wherever a byte is lost), each
    a copy of lost byte `group[i]`: (value, probability) per position, the same within a group."""
    if len(pos) == 0:
        return np.zeros(0, np.uint8), np.zeros(0)
    groups, inv = np.unique(group, return_inverse=True)
    # every lost byte is first copied soon after the loss (copies reach 32 KiB back); chains of
    # copies of copies can run on for MBs, and add little: the copies in the first SPANS are asked
    ask = pos < pos.min() + SPANS * SPAN
    value, prob = _round(data, known, pos[ask], inv[ask], len(groups))
    for _ in range(ROUNDS - 1):  # the sure guesses so far become context for the rest
        sure = prob[inv] >= SURE
        rest = ~sure & ask
        if not sure.any() or not rest.any():
            break
        data2, known2 = data.copy(), known.copy()
        data2[pos[sure]] = value[inv[sure]]
        known2[pos[sure]] = True
        v2, p2 = _round(data2, known2, pos[rest], inv[rest], len(groups))
        redo = np.unique(inv[rest])
        redo = redo[prob[redo] < SURE]  # groups with no sure copy take the later round's answer
        if not len(redo):
            break
        value[redo], prob[redo] = v2[redo], p2[redo]
    return value[inv], prob[inv]


def _round(data: np.ndarray, known: np.ndarray, pos: np.ndarray, inv: np.ndarray, n: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """One round: summed log-probabilities per group over its copies in `pos`."""
    logp = np.zeros((n, 256))
    copies = np.zeros(n)
    order = np.argsort(pos, kind="stable")
    sp, si = pos[order], inv[order]
    i = 0
    while i < len(sp):
        a = int(sp[i])
        j = int(np.searchsorted(sp, a + SPAN))
        lo, hi = max(0, a - MARGIN), min(len(data), a + SPAN + MARGIN)
        if known[lo:hi].sum() >= MIN_KNOWN:
            q = sp[i:j] - lo
            p = FileModel(data[lo:hi], known[lo:hi]).dense(q)
            _strings(data[lo:hi], known[lo:hi], q, p)
            np.add.at(logp, si[i:j], np.log(np.maximum(p, 1e-12)))
            np.add.at(copies, si[i:j], 1)
        i = j
    mean = logp / np.maximum(copies, 1)[:, None]
    mean -= mean.max(1, keepdims=True)
    post = np.exp(mean)
    post /= post.sum(1, keepdims=True)
    value = logp.argmax(1).astype(np.uint8)
    prob = np.where(copies > 0, post[np.arange(n), value], 0.0)
    return value, prob


def _strings(buf: np.ndarray, known: np.ndarray, q: np.ndarray, p: np.ndarray, top: int = 8) -> None:
    """Sharpen `p` (Q, 256) at runs of unknown bytes with the strings found between the same bytes
    elsewhere in the window (context.fill_gaps): a copied string of lost bytes often stands whole
    in the file's known text. Its share of those places becomes its weight."""
    tb = np.argpartition(-p, top, axis=1)[:, :top]
    tp = np.take_along_axis(p, tb, 1)
    rows, vals, conf = fill_gaps(buf, known, q, tb, tp)
    if len(rows):
        p[rows] *= (1 - conf)[:, None]
        p[rows, vals] += conf
