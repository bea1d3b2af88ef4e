"""The autoencoder core: `ModelConfig` and `FragmentAutoencoder`, with its two heads.

One encoder/decoder over 512-byte fragments (3 strided Conv1d down 512 -> 256 -> 128 -> 64,
3 ConvTranspose1d back up, additive skip connections between levels), and two heads. `trunk`
runs those layers' weights as height-1 Conv2d in channels-last layout, the same convolutions
computed the way oneDNN runs them fastest (tested against the modules' own forward):

- ``sigmoid``: the original specification. (B, 1, 512) bytes scaled to [0, 1] in, (B, 1, 512) in
  [0, 1] out through a Sigmoid, trained with MSE. It has no probabilities, so no confidence.
- ``categorical``: bytes in as tokens (256 values + one UNKNOWN token for erased bytes) through
  an embedding, 256 logits per position out, trained with cross-entropy. A one-channel detector
  beside it scores how likely each observed byte is damaged, so repair can run the 256-way head
  only where needed (the head is the most expensive layer per byte).

The model's input: `encode_input` turns (k, 512) fragments (decision.cut packs them) into what
each head reads. This module knows nothing of files, checkpoints or the CLI.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fragfix.config import FRAGMENT_SIZE, HEADS, MAX_WIDTH, UNKNOWN, ModelConfig  # noqa: F401  (re-exported)


class FragmentAutoencoder(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        c0, c1, c2, c3 = cfg.channels
        k = cfg.kernel_size
        if cfg.head == "categorical":
            self.embed = nn.Embedding(UNKNOWN + 1, cfg.embed_dim)
            stem_in = cfg.embed_dim
        else:
            stem_in = 1
        # full resolution (B, E, 512) -> (B, c0, 512): a full conv sees byte-and-neighbour patterns
        # directly; the separable variant is cheaper per byte and measurably a little worse
        if cfg.stem == "full":
            self.stem_dw = nn.Conv1d(stem_in, c0, k, padding=k // 2)
            self.stem_pw = nn.Identity()
        else:
            self.stem_dw = nn.Conv1d(stem_in, stem_in, k, padding=k // 2, groups=stem_in)
            self.stem_pw = nn.Conv1d(stem_in, c0, 1)
        # encoder: 3 Conv1d with stride 2, (B, c0, 512) -> (B, c1, 256) -> (B, c2, 128) -> (B, c3, 64)
        self.enc = nn.ModuleList([
            nn.Conv1d(c0, c1, 4, stride=2, padding=1),
            nn.Conv1d(c1, c2, 4, stride=2, padding=1),
            nn.Conv1d(c2, c3, 4, stride=2, padding=1),
        ])
        # bottleneck: dilated convs see most of the fragment (receptive field grows 2x per layer)
        self.mid = nn.ModuleList([
            nn.Conv1d(c3, c3, 3, padding=2 ** i, dilation=2 ** i) for i in range(cfg.mid_layers)
        ])
        # decoder: 3 ConvTranspose1d with stride 2 back to 512, plus the skip from the same level
        self.dec = nn.ModuleList([
            nn.ConvTranspose1d(c3, c2, 4, stride=2, padding=1),
            nn.ConvTranspose1d(c2, c1, 4, stride=2, padding=1),
            nn.ConvTranspose1d(c1, c0, 4, stride=2, padding=1),
        ])
        self.refiners = nn.ModuleList([nn.Conv1d(c0, c0, 5, padding=2) for _ in range(cfg.refine)])
        if cfg.head == "categorical":
            self.logits = nn.Conv1d(c0, 256, 1)
            self.detector = nn.Conv1d(c0, 1, 1)
        else:
            self.out = nn.Conv1d(c0, 1, 1)

    # ---- trunk -------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input (B, 512) tokens (categorical) or (B, 1, 512) floats (sigmoid) -> (B, c0, 512)
        (channels-last strides: each position's c0 features are contiguous)."""
        if self.config.head == "categorical":
            h = self.embed(x).unsqueeze(1).permute(0, 3, 1, 2)  # (B, E, 1, 512) channels-last
        else:
            h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, 1, 1, 512)
        w = lambda conv: (conv.weight.unsqueeze(2), conv.bias)  # noqa: E731  (views: gradients flow)
        stem_pw = None if isinstance(self.stem_pw, nn.Identity) else w(self.stem_pw)
        h = trunk(h, w(self.stem_dw), stem_pw, [w(c) for c in self.enc], [(w(c), c.dilation[0]) for c in self.mid],
                  [w(c) for c in self.dec], [w(c) for c in self.refiners], self.config.kernel_size,
                  self.stem_dw.groups)
        return h.squeeze(2)

    def forward(self, x: torch.Tensor, detector: bool = False, at: tuple | None = None):
        """sigmoid: (B, 1, 512) or (1, 512) in [0, 1] -> same shape in [0, 1].
        categorical: (B, 512) or (512,) tokens -> (B, 256, 512) or (256, 512) logits,
        and with `detector=True` also (B, 512) damage logits; with `at=(rows, positions)` the
        logits only there, (K, 256) (training scores a sample of positions: the head is costly)."""
        unbatched = x.dim() == (2 if self.config.head == "sigmoid" else 1)
        if unbatched:
            x = x.unsqueeze(0)
        h = self.features(x)
        if self.config.head == "sigmoid":
            y = torch.sigmoid(self.out(h))
            return y.squeeze(0) if unbatched else y
        y = self.logits(h) if at is None else self.head_at(h, at)
        if detector:
            return y, self.detect(h)
        return y.squeeze(0) if unbatched else y

    def detect(self, h: torch.Tensor) -> torch.Tensor:
        """(B, c0, 512) features -> (B, 512) logits that the observed byte is damaged."""
        return self.detector(h).squeeze(1)

    def head_at(self, h: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The 256-way head only at chosen (batch, position) pairs: (K, 256) logits."""
        rows = h[index[0], :, index[1]]  # (K, c0)
        w = self.logits.weight.squeeze(-1)  # (256, c0)
        return torch.addmm(self.logits.bias, rows, w.t())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


Conv = tuple[torch.Tensor, torch.Tensor]  # (weight (out, in, 1, k), or (in, out, 1, k) transposed; bias)


def _gelu(h: torch.Tensor) -> torch.Tensor:
    # (B, C, 1, L) channels-last is (B, 1, L, C) in memory: GELU runs faster on that dense view
    return F.gelu(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def trunk(h: torch.Tensor, stem: Conv, stem_pw: Conv | None, enc: list[Conv], mid: list[tuple[Conv, int]],
          dec: list[Conv], refiners: list[Conv], kernel_size: int, stem_groups: int) -> torch.Tensor:
    """The encoder/decoder, (B, E, 1, 512) channels-last -> (B, c0, 1, 512) channels-last.

    Every 1D convolution runs as a height-1 Conv2d in channels-last layout: on CPUs oneDNN then
    neither copies activations between layouts nor (with weights cast once, see inference.py)
    re-casts weights. The weights come in as arguments so that training (the module's parameters)
    and CPU inference (prepared bf16 copies) run this one definition."""
    h = F.conv2d(h, *stem, padding=(0, kernel_size // 2), groups=stem_groups)
    if stem_pw is not None:
        h = F.conv2d(h, *stem_pw)
    h = _gelu(h)  # (B, c0, 1, 512)
    skips = [h]
    for w, b in enc:  # 512 -> 256 -> 128 -> 64 positions
        h = _gelu(F.conv2d(h, w, b, stride=(1, 2), padding=(0, 1)))
        skips.append(h)
    skips.pop()  # the bottleneck itself is not a skip
    for (w, b), d in mid:
        h = h + _gelu(F.conv2d(h, w, b, padding=(0, d), dilation=(1, d)))  # residual keeps exact positions
    for w, b in dec:  # 64 -> 128 -> 256 -> 512, plus the skip from the same level
        h = _gelu(F.conv_transpose2d(h, w, b, stride=(1, 2), padding=(0, 1))) + skips.pop()
    for w, b in refiners:
        h = h + _gelu(F.conv2d(h, w, b, padding=(0, 2)))
    return h


def encode_input(fragments: torch.Tensor, unknown: torch.Tensor | None, head: str) -> torch.Tensor:
    """uint8 (B, 512) bytes (+ bool unknown mask) -> the model's input for that head."""
    if head == "categorical":
        x = fragments.long()
        if unknown is not None:
            x = x.masked_fill(unknown, UNKNOWN)
        return x
    x = fragments.float().unsqueeze(1) / 255.0
    if unknown is not None:
        x = x.masked_fill(unknown.unsqueeze(1), 0.5)  # no token: mid-range is the least biased
    return x


__all__ = ["FRAGMENT_SIZE", "UNKNOWN", "HEADS", "ModelConfig", "FragmentAutoencoder", "trunk",
           "encode_input"]
