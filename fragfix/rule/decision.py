"""What a repair rule returns for a window of fragments: the new bytes, which changed, how sure each
change is, and the damage evidence. `decide()` (the model gate) and `decide_learned()` (the default
rule) both return it, so the streaming repair does not care which rule ran."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch


class Decision(NamedTuple):
    fragments: torch.Tensor   # (B, 512) uint8, repaired
    changed: torch.Tensor     # (B, 512) bool, new != old
    confidence: torch.Tensor  # (B, 512) float32, probability of the new value (NaN: none)
    clear: torch.Tensor       # (B,) int64, clear errors seen per fragment (damage.py): the damage evidence
