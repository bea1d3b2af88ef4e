"""The noise module: seeded corruption of 512-byte fragments, as storage damages data.

Kinds (each with a rate p):
- ``bitflip``  each bit flips with probability p (bit rot);
- ``byte``     each byte becomes a uniformly random *different* byte with probability p;
- ``burst``    contiguous runs of random bytes covering about a fraction p of each fragment;
- ``zero``     contiguous runs set to 0x00 covering about p (unreadable sectors, as ddrescue leaves them);
- ``gaussian`` additive Gaussian noise of std p on bytes scaled to [0, 1], clamped and rounded.

`NoiseGenerator` never mutates its input and returns the corrupted bytes, the exact mask of changed
positions, and the mask of erased positions (the zero runs, including bytes that were already 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from fragfix.config import NOISE_KINDS as KINDS, noise_items, noise_level  # noqa: E402


@dataclass(frozen=True)
class NoiseSpec:
    """One kind of noise at a level, or at a level drawn per fragment log-uniformly in [level, max_level]."""
    kind: str
    level: float
    max_level: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r} (choose from {', '.join(KINDS)})")
        hi = self.level if self.max_level is None else self.max_level
        if not (0.0 <= self.level <= hi <= 1.0) or math.isnan(self.level):
            raise ValueError(f"noise level must be within [0, 1], got {self.level}" +
                             ("" if self.max_level is None else f"..{self.max_level}"))


class Noisy(NamedTuple):
    fragments: torch.Tensor  # (B, L) uint8, corrupted copy
    mask: torch.Tensor       # (B, L) bool, True where the byte differs from the input
    erased: torch.Tensor     # (B, L) bool, True inside zeroed runs (what a mapfile would mark bad)


class NoiseGenerator:
    """Corrupt uint8 fragments. `mix="all"` applies every spec in turn; `mix="choice"` picks one per fragment."""

    def __init__(self, specs: Sequence[NoiseSpec] | NoiseSpec, seed: int | torch.Generator = 0,
                 mix: str = "all", burst_length: tuple[int, int] = (4, 64),
                 zero_length: tuple[int, int] = (1, 64)):
        self.specs = [specs] if isinstance(specs, NoiseSpec) else list(specs)
        if not self.specs:
            raise ValueError("at least one noise spec is needed")
        if mix not in ("all", "choice"):
            raise ValueError("mix must be 'all' or 'choice'")
        for lo, hi in (burst_length, zero_length):
            if not 1 <= lo <= hi:
                raise ValueError("run lengths must satisfy 1 <= min <= max")
        self.mix, self.burst_length, self.zero_length = mix, burst_length, zero_length
        self.gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))

    def __call__(self, fragments: torch.Tensor) -> Noisy:
        if fragments.dtype != torch.uint8 or fragments.dim() != 2:
            raise ValueError("fragments must be a (B, L) uint8 tensor")
        x = fragments.clone()
        erased = torch.zeros(x.shape, dtype=torch.bool)
        choice = (torch.randint(len(self.specs), (x.shape[0],), generator=self.gen)
                  if self.mix == "choice" else None)
        for i, spec in enumerate(self.specs):
            rows = None if choice is None else (choice == i)
            levels = self._levels(spec, x.shape[0])
            if rows is not None:
                levels = torch.where(rows, levels, torch.zeros_like(levels))
            x, e = _apply(spec.kind, x, levels.unsqueeze(1), self.gen, self.burst_length, self.zero_length)
            erased |= e
        return Noisy(x, x != fragments, erased)

    def _levels(self, spec: NoiseSpec, n: int) -> torch.Tensor:
        if spec.max_level is None or spec.max_level == spec.level:
            return torch.full((n,), float(spec.level))
        lo = math.log(max(spec.level, 1e-6))
        hi = math.log(max(spec.max_level, 1e-6))
        return (lo + (hi - lo) * torch.rand(n, generator=self.gen)).exp()


def _apply(kind, x, p, gen, burst_length, zero_length):
    """Apply one kind with per-fragment rates p (B, 1). Returns (new bytes, erased mask)."""
    b, n = x.shape
    none = torch.zeros((b, n), dtype=torch.bool)
    if kind == "bitflip":
        bits = torch.rand((b, n, 8), generator=gen) < p.unsqueeze(2)
        flips = (bits.to(torch.uint8) << torch.arange(8, dtype=torch.uint8)).sum(2, dtype=torch.uint8)
        return x ^ flips, none
    if kind == "byte":
        hit = torch.rand((b, n), generator=gen) < p
        other = ((x.long() + torch.randint(1, 256, (b, n), generator=gen)) % 256).to(torch.uint8)
        return torch.where(hit, other, x), none
    if kind == "gaussian":
        y = x.float() / 255 + torch.randn((b, n), generator=gen) * p
        return (y.clamp(0, 1) * 255).round().to(torch.uint8), none
    lo, hi = burst_length if kind == "burst" else zero_length
    covered = _runs(b, n, p, lo, hi, gen)
    if kind == "burst":
        junk = torch.randint(0, 256, (b, n), generator=gen, dtype=torch.uint8)
        return torch.where(covered, junk, x), none
    return x.masked_fill(covered, 0), covered


def _runs(b, n, p, lo, hi, gen):
    """(B, n) mask of random runs with lengths in [lo, hi] covering about a fraction p.

    Runs start independently with probability q per position; positions are then covered with
    probability 1 - exp(-q * mean_length), so q = -ln(1 - p) / mean_length hits p on average.
    """
    mean = (lo + hi) / 2
    q = -torch.log1p(-p.clamp(max=0.999999)) / mean  # (B, 1)
    starts = torch.rand((b, n), generator=gen) < q
    lengths = torch.randint(lo, hi + 1, (b, n), generator=gen)
    pos = torch.arange(n).expand(b, n)
    ends = torch.where(starts, pos + lengths, torch.zeros_like(pos))
    reach = ends.cummax(dim=1).values  # the furthest end of any run started at or before i
    return (reach > pos) & (p > 0)


def parse_noise(text: str, levels: str | None = None) -> list[NoiseSpec]:
    """'byte,bitflip' and '0.01,0.05' -> specs for every kind x level; 'byte:0.01-0.1' gives a range
    (the grammar: config.noise_items)."""
    lv = None if levels is None else [noise_level(t) for t in levels.split(",") if t.strip()]
    return [NoiseSpec(kind, lo, hi) for kind, lo, hi in noise_items(text, lv)]
