"""The window every repair rule decides on, and what it returns, in numpy (no torch needed).

`cut` packs pieces of files into (k, 512) fragments, each piece starting a fragment of its own;
`Decision` is a rule's answer for such a window: the new bytes, which changed, how sure each
change is, and the damage evidence. The learned rule works on these arrays directly; the model
rule (`decide()`) takes and returns the same fields as torch tensors (zero-copy views), so the
streaming repair does not care which rule ran.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from fragfix.config import FRAGMENT_SIZE


class Decision(NamedTuple):
    fragments: np.ndarray   # (B, 512) uint8, repaired
    changed: np.ndarray     # (B, 512) bool, new != old
    confidence: np.ndarray  # (B, 512) float32, probability of the new value (NaN: none)
    clear: np.ndarray       # (B,) int64, clear errors seen per fragment (damage.py): the damage evidence


def cut(pieces: Sequence[tuple[bytes, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Pieces of bytes (each with an optional bool unknown mask) packed into fragments, each piece
    starting a fragment of its own: (k, 512) uint8 bytes, (k, 512) bool unknown, (k,) int64 true
    lengths (a piece's last fragment is zero-padded), and how many fragments each piece took."""
    counts = [-(-len(data) // FRAGMENT_SIZE) for data, _ in pieces]
    k = sum(counts)
    frags = np.zeros((k, FRAGMENT_SIZE), dtype=np.uint8)
    unknown = np.zeros((k, FRAGMENT_SIZE), dtype=bool)
    lengths = np.full(k, FRAGMENT_SIZE, dtype=np.int64)
    row = 0
    for (data, unk), c in zip(pieces, counts):
        n = len(data)
        frags[row:row + c].reshape(-1)[:n] = np.frombuffer(data, dtype=np.uint8)
        if unk is not None:
            unknown[row:row + c].reshape(-1)[:n] = unk
        lengths[row + c - 1] = n - (c - 1) * FRAGMENT_SIZE
        row += c
    return frags, unknown, lengths, counts


def byte_entropy(frags: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, 512) uint8 -> (B,) float32 entropy in bits/byte of each fragment's byte histogram, over
    its valid bytes, with the Miller-Madow correction so short tails of random data still read as
    random. (Both rules leave fragments above `max_entropy` alone: random, compressed, encrypted.)
    A fragment of one value (erased flash, padding) has entropy 0 and is not counted at all: disk
    images are full of them."""
    if valid is not None and valid.all():
        valid = None  # (a window's rows are whole but for each file's last)
    if valid is None:
        mixed = frags.max(1) != frags.min(1)
    else:
        mixed = np.where(valid, frags, 0).max(1) != np.where(valid, frags, 255).min(1)
    h = np.zeros(len(frags), np.float32)
    rows = np.flatnonzero(mixed)
    if len(rows):
        h[rows] = _entropy(frags[rows], None if valid is None else valid[rows])
    return h


def _entropy(frags: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    b = len(frags)
    flat = (np.arange(b, dtype=np.int64)[:, None] * 256 + frags).ravel()
    # whole numbers, so float32 holds them exactly
    counts = np.bincount(flat if valid is None else flat[valid.ravel()], minlength=b * 256).reshape(b, 256)
    counts = counts.astype(np.float32)
    n = np.maximum(counts.sum(1, keepdims=True), np.float32(1))
    p = counts / n
    h = -(p * np.log2(np.maximum(p, np.float32(1e-12)))).sum(1)
    seen = (counts > 0).sum(1).astype(np.float32)
    return (h + np.maximum(seen - 1, 0) / (2 * n[:, 0] * np.float32(np.log(2)))).astype(np.float32)
