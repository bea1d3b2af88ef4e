"""What a repair did where: per-block counts of each kind of byte, for `fragfix repair --plot` (and
what `fragfix salvage --plot` got back where: lost, unchecked, guessed, verified).

Like ddrescueview's view of a mapfile, a file is cut into at most `MAX_CELLS` equal blocks (a
power of two bytes each, so offsets read easily) and each block counts its bytes by what happened
to them. The counts add up exactly to the report's totals; drawing is `pictures.py`'s business.
"""
from __future__ import annotations

import numpy as np

# in the order a cell shows them: the first kind with any bytes in the block colours the cell,
# so the least reassuring thing that happened in a block is the one you see (as in ddrescueview)
KINDS = ("left_unknown", "checksum_fails", "unchecked", "filled", "changed", "probable", "copied", "verified")
MAX_CELLS = 4096


def block_size(size: int, cells: int = MAX_CELLS) -> int:
    """The smallest power of two that cuts `size` bytes into at most `cells` blocks."""
    need = -(-max(size, 1) // cells)
    return 1 << (need - 1).bit_length()


class BlockMap:
    """Counts per block of one file: bytes left unknown, filled, changed, verified … (see KINDS)."""

    def __init__(self, size: int, cells: int = MAX_CELLS):
        self.size = size
        self.block = block_size(size, cells)
        self.n = -(-size // self.block)
        self.counts = {k: np.zeros(self.n, dtype=np.int64) for k in KINDS}

    def add(self, kind: str, offsets: np.ndarray) -> None:
        """Count bytes at these file offsets as `kind`."""
        if len(offsets):
            self.counts[kind] += np.bincount(np.asarray(offsets) // self.block, minlength=self.n)[:self.n]

    def add_repair(self, pos: int, changed: np.ndarray, unknown: np.ndarray) -> None:
        """One streamed piece at offset `pos`: masks of changed and of unknown bytes."""
        self.add("changed", np.flatnonzero(changed & ~unknown) + pos)
        self.add("filled", np.flatnonzero(changed & unknown) + pos)
        self.add("left_unknown", np.flatnonzero(unknown & ~changed) + pos)

    def cells(self) -> np.ndarray:
        """(n,) int: for each block the index in KINDS of what colours it, or len(KINDS) (untouched)."""
        out = np.full(self.n, len(KINDS), dtype=np.int64)
        for i in reversed(range(len(KINDS))):  # earlier kinds overwrite later ones
            out[self.counts[KINDS[i]] > 0] = i
        return out

    def totals(self) -> dict:
        return {k: int(v.sum()) for k, v in self.counts.items()}

    def to_dict(self) -> dict:
        """JSON-able: block size, block count, totals, and the runs of blocks of each kind."""
        return {"size": self.size, "block": self.block, "blocks": self.n, "totals": self.totals(),
                "counts": {k: v.tolist() for k, v in self.counts.items() if v.any()}}

    @classmethod
    def from_dict(cls, d: dict) -> "BlockMap":
        m = cls(d["size"])
        m.block, m.n = d["block"], d["blocks"]
        m.counts = {k: np.asarray(d["counts"].get(k, [0] * m.n), dtype=np.int64) for k in KINDS}
        return m

    def coarsen(self, cells: int) -> "BlockMap":
        """The same counts in at most `cells` blocks (adjacent blocks merged; sums kept exactly)."""
        f = block_size(self.n, cells)  # a power of two: the merged block stays one too
        if f <= 1:
            return self
        m = BlockMap.__new__(BlockMap)
        m.size, m.block, m.n = self.size, self.block * f, -(-self.n // f)
        pad = m.n * f - self.n
        m.counts = {k: np.concatenate([v, np.zeros(pad, np.int64)]).reshape(m.n, f).sum(1)
                    for k, v in self.counts.items()}
        return m
