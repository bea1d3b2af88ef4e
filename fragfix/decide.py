"""The repair decision: which bytes of a batch of fragments to change, and to what.

`decide()` is the one rule that both `fragfix repair` and `fragfix evaluate` use.

Categorical head: a cheap detector scores every position; the 256-way head runs only where the
detector fires or the byte is unknown (the head is the costliest layer per byte). With
p = softmax(logits) at a position whose observed byte is o, o becomes argmax p when
max p >= threshold and p[o] <= floor; unknown positions always take argmax p. Fragments that do
not look like text (under 85% printable bytes) use the much lower `binary_floor`: on executables
the model's probabilities are poorly calibrated, and a lower floor keeps clean binaries untouched.
Sigmoid head: there are no probabilities, so its honest equivalent is a deviation gate: o becomes
round(255 y) only when |y - o/255| >= threshold (as a fraction of the byte range); confidence is
reported as unknown (NaN / null).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .autoencoder import FragmentAutoencoder, encode_input
from .errors import InvalidInput
from .runtime import autocast


@dataclass
class RepairConfig:
    threshold: float = 0.5    # the best value's probability must reach this …
    floor: float = 5e-4       # … and the observed byte's must be at most this (text-like fragments)
    binary_floor: float = 1e-5  # the same for fragments that do not look like text
    detect: float = 0.05      # detector probability at which the 256-way head looks at a byte
    aggressive: bool = False  # take the model's best value everywhere
    max_entropy: float = 7.2  # fragments above this many bits/byte (random, compressed) are left alone
    zero_runs: int = 0        # treat runs of at least this many 0x00 bytes as unknown (0: off)
    batch_fragments: int = 0     # fragments per model call (0: chosen by device)
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        for name in ("threshold", "floor", "binary_floor", "detect"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0) or math.isnan(v):
                raise InvalidInput(f"{name} must be within [0, 1], got {v}")
        if self.zero_runs < 0:
            raise InvalidInput(f"zero-runs must be 0 (off) or a positive length, got {self.zero_runs}")
        if self.batch_fragments < 0:
            raise InvalidInput("batch size must be at least 1 (or 0: chosen by device)")
        if self.threshold == 0:
            self.aggressive = True  # threshold 0 means: always take the best value


class Decision(NamedTuple):
    fragments: torch.Tensor   # (B, 512) uint8, repaired
    changed: torch.Tensor     # (B, 512) bool, new != old
    confidence: torch.Tensor  # (B, 512) float32, probability of the new value (NaN: none)
    unknown: torch.Tensor     # (B, 512) bool, positions that were unknown on input


def byte_entropy(frags: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 512) uint8 -> (B,) entropy in bits/byte of each fragment's byte histogram, over its valid
    bytes, with the Miller-Madow correction so short tails of random data still read as random."""
    ones = torch.ones(frags.shape, dtype=torch.float32) if valid is None else valid.float()
    counts = torch.zeros(frags.shape[0], 256, dtype=torch.float32)
    counts.scatter_add_(1, frags.long(), ones)
    n = counts.sum(1, keepdim=True).clamp(min=1)
    p = counts / n
    h = -(p * torch.log2(p.clamp(min=1e-12))).sum(1)
    seen = (counts > 0).sum(1).float()
    return h + (seen - 1).clamp(min=0) / (2 * n.squeeze(1) * math.log(2))


@torch.no_grad()
def decide(model: FragmentAutoencoder, frags: torch.Tensor, unknown: torch.Tensor | None,
           cfg: RepairConfig, bf16: bool = False, lengths: torch.Tensor | None = None) -> Decision:
    """Repair a batch: (B, 512) uint8 bytes and (B, 512) bool unknown mask, on the CPU.
    `lengths` (B,) marks padded tails (a file's last partial fragment): the model sees them as
    unknown, and they count for nothing."""
    b, n = frags.shape
    unknown = torch.zeros((b, n), dtype=torch.bool) if unknown is None else unknown
    valid = None if lengths is None else torch.arange(n).unsqueeze(0) < lengths.unsqueeze(1)
    out = frags.clone()
    conf = torch.full((b, n), float("nan"))
    # incompressible fragments (random, compressed, encrypted) carry no structure to repair from
    real_unknown = unknown if valid is None else unknown & valid
    rows = (byte_entropy(frags, valid) <= cfg.max_entropy) | real_unknown.any(1) | torch.tensor(cfg.aggressive)
    sel = rows.nonzero().squeeze(1)
    if sel.numel():
        dev = next(model.parameters()).device
        m = sel.numel()
        # round the row count up to a multiple of 16 (repeating the first row): each distinct conv
        # shape costs a cached oneDNN primitive, and one per batch made memory grow with file size
        rows_in = torch.cat([sel, sel[:1].expand(-m % 16)])
        f, u = frags[rows_in], unknown[rows_in] if valid is None else (unknown | ~valid)[rows_in]
        fl = floors(f, None if valid is None else valid[rows_in], cfg)
        new, c = (_categorical if model.config.head == "categorical" else _sigmoid)(model, f, u, cfg, dev, bf16, fl)
        out[sel], conf[sel] = new[:m], c[:m]
        if valid is not None:  # padding is no data: whatever the model put there is dropped
            out = torch.where(valid, out, frags)
    return Decision(out, out != frags, conf, unknown)


PRINTABLE = torch.zeros(256, dtype=torch.bool)
PRINTABLE[32:127] = True
PRINTABLE[[9, 10, 13]] = True


def floors(frags: torch.Tensor, valid: torch.Tensor | None, cfg: RepairConfig) -> torch.Tensor:
    """(B,) floor per fragment: `floor` where >= 85% of the valid bytes are printable text, else `binary_floor`."""
    printable = PRINTABLE[frags.long()]
    if valid is not None:
        share = (printable & valid).sum(1) / valid.sum(1).clamp(min=1)
    else:
        share = printable.float().mean(1)
    return torch.where(share >= 0.85, torch.tensor(cfg.floor), torch.tensor(cfg.binary_floor))


def _categorical(model, frags, unknown, cfg, dev, bf16, floor):
    x = encode_input(frags, unknown, "categorical").to(dev, non_blocking=True)
    with autocast(dev, bf16):
        h = model.features(x)  # (b, c0, 512)
        det = torch.sigmoid(model.detect(h).float())  # (b, 512)
    unk = unknown.to(dev)
    cand = unk | (det >= cfg.detect) if not cfg.aggressive else torch.ones_like(unk)
    idx = cand.nonzero(as_tuple=True)
    new = frags.clone()
    conf = torch.full(frags.shape, float("nan"))
    if idx[0].numel() == 0:
        return new, conf
    # pad K to a multiple of 512: every distinct matmul shape costs a cached oneDNN primitive, and
    # thousands of them (one per batch) grew peak memory with the file size
    k = idx[0].numel()
    pad = -k % 512
    at = idx if not pad else tuple(torch.cat([t, t.new_zeros(pad)]) for t in idx)
    with autocast(dev, bf16):
        logits = model.head_at(h, at)[:k]  # (K, 256)
    p = logits.float().softmax(1)
    best_p, best = p.max(1)
    obs = frags.to(dev)[idx].long()
    p_obs = p.gather(1, obs.unsqueeze(1)).squeeze(1)
    take = unk[idx] | (best != obs) & (cfg.aggressive | ((best_p >= cfg.threshold) & (p_obs <= floor.to(dev)[idx[0]])))
    ii = (idx[0][take].cpu(), idx[1][take].cpu())
    new[ii] = best[take].to(torch.uint8).cpu()
    conf[ii] = best_p[take].cpu()
    return new, conf


def _sigmoid(model, frags, unknown, cfg, dev, bf16, floor):
    x = encode_input(frags, unknown, "sigmoid").to(dev)
    with autocast(dev, bf16):
        y = model(x).float().squeeze(1).cpu()  # (b, 512) in [0, 1]
    rec = (y * 255).round().to(torch.uint8)
    dev_ = (y - frags.float() / 255).abs()
    take = unknown | (dev_ >= cfg.threshold) if not cfg.aggressive else torch.ones_like(unknown)
    return torch.where(take, rec, frags), torch.full(frags.shape, float("nan"))


def repair_bytes(model: FragmentAutoencoder, data: bytes, cfg: RepairConfig | None = None,
                 unknown: torch.Tensor | None = None, bf16: bool = False) -> bytes:
    """Repair a whole buffer in memory (any length, 0 included); the result has the same length."""
    cfg = cfg or RepairConfig()
    n = len(data)
    if n == 0:
        return b""
    k = -(-n // 512)
    buf = torch.zeros(k * 512, dtype=torch.uint8)
    buf[:n] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    unk = torch.zeros(k * 512, dtype=torch.bool)
    if unknown is not None:
        unk[:n] = unknown
    lengths = torch.full((k,), 512)
    lengths[-1] = n - (k - 1) * 512
    out = []
    step = cfg.batch_fragments or 512
    for i in range(0, k, step):
        j = i + step
        d = decide(model, buf[i * 512:j * 512].view(-1, 512), unk[i * 512:j * 512].view(-1, 512), cfg, bf16,
                   lengths[i:j])
        out.append(d.fragments.reshape(-1))
    return bytes(torch.cat(out)[:n].numpy())
