"""The CPU inference form of the trunk: the model's weights prepared once for oneDNN.

`autoencoder.trunk` runs every 1D convolution as a height-1 Conv2d in channels-last layout (no
activation copies between layouts, GELU on the dense view). Training passes the module's own
parameters, which autocast re-casts on every call; here they are cast to the compute dtype once,
and the detector and the 256-way head read the dense (B, 1, L, C) features directly: no per-call
re-casting of weights, no layout copies (the speed-up is in docs/performance.md). Categorical
head only. The results agree with `features` to 1e-5 in fp32 and to
bf16 rounding in bf16 (tested).

`cpu_trunk(model, bf16)` builds that form once per model and precision and rebuilds it
when the weights change (parameter versions), so training never sees stale weights.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fragfix.model.autoencoder import FragmentAutoencoder, encode_input, trunk
from fragfix.model.checkpoints import load_model
from fragfix.model.runtime import auto_batch, autocast, resolve_device, use_bf16

CL = torch.channels_last


def _w(conv, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in, k) Conv1d / ConvTranspose1d weight -> (out, in, 1, k) channels-last, and bias."""
    w = conv.weight.detach().to(dtype).unsqueeze(2).contiguous(memory_format=CL)
    return w, conv.bias.detach().to(dtype)


class CpuTrunk:
    """Prepared weights of one model in one dtype; `features` mirrors FragmentAutoencoder.features."""

    def __init__(self, model: FragmentAutoencoder, dtype: torch.dtype):
        cfg = model.config
        assert cfg.head == "categorical", "the sigmoid head keeps the plain path"
        self.dtype, self.k = dtype, cfg.kernel_size
        self.embed = model.embed.weight.detach().to(dtype)
        self.stem_groups = model.stem_dw.groups
        self.stem = _w(model.stem_dw, dtype)
        self.stem_pw = None if isinstance(model.stem_pw, torch.nn.Identity) else _w(model.stem_pw, dtype)
        self.enc = [_w(c, dtype) for c in model.enc]
        self.mid = [(_w(c, dtype), c.dilation[0]) for c in model.mid]
        self.dec = [_w(c, dtype) for c in model.dec]
        self.refiners = [_w(c, dtype) for c in model.refiners]
        self.det_w = model.detector.weight.detach().to(dtype).view(-1)  # (c0,)
        self.det_b = model.detector.bias.detach().to(dtype)              # (1,)
        self.head_w = model.logits.weight.detach().to(dtype).squeeze(-1).t().contiguous()  # (c0, 256)
        self.head_b = model.logits.bias.detach().to(dtype)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 512) tokens -> (B, 1, 512, c0) features, dense (positions, channels)."""
        h = F.embedding(x, self.embed).unsqueeze(1).permute(0, 3, 1, 2)  # (B, E, 1, L) channels-last
        h = trunk(h, self.stem, self.stem_pw, self.enc, self.mid, self.dec, self.refiners, self.k, self.stem_groups)
        return h.permute(0, 2, 3, 1)  # (B, 1, L, c0), contiguous

    def detect(self, h: torch.Tensor) -> torch.Tensor:
        """(B, 1, L, c0) features -> (B, L) damage logits, float32."""
        return (h.squeeze(1) @ self.det_w + self.det_b).float()

    def head_at(self, h: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The 256-way logits at (row, position) pairs: (K, 256) float32."""
        rows = h.squeeze(1)[index[0], index[1]]  # (K, c0)
        return torch.addmm(self.head_b, rows, self.head_w).float()


def cpu_trunk(model: FragmentAutoencoder, bf16: bool) -> CpuTrunk:
    """The model's prepared CPU form, cached on the model until any parameter changes."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    key = (dtype, tuple(p._version for p in model.parameters()), tuple(p.data_ptr() for p in model.parameters()))
    cache = model.__dict__.setdefault("_cpu_trunks", {})
    if cache.get(dtype, (None,))[0] != key:
        cache[dtype] = (key, CpuTrunk(model, dtype))
    return cache[dtype][1]


class Scorer:
    """The model as the repair rule sees it: one device, one precision and one batch size, settled
    here once. `decide` asks it for features, damage probabilities and the 256-way head at chosen
    positions (categorical head), or for the reconstruction (sigmoid head), and carries no device
    or precision flags itself. On the CPU it runs the prepared oneDNN form above; elsewhere the
    module under autocast."""

    def __init__(self, model: FragmentAutoencoder, precision: str = "fp32", batch: int = 0):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.bf16 = use_bf16(self.device, precision)
        self.batch = batch or auto_batch(self.device)
        self.head = model.config.head
        self.cpu = self.device.type == "cpu" and self.head == "categorical"

    def _autocast(self):
        return autocast(self.device, self.bf16 and self.device.type != "cpu")

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 512) tokens -> features for `detect` and `head_at` (layout is the scorer's business)."""
        if self.cpu:
            return cpu_trunk(self.model, self.bf16).features(x)  # (b, 1, 512, c0)
        with self._autocast():
            return self.model.features(x)  # (b, c0, 512)

    @torch.no_grad()
    def detect(self, h: torch.Tensor) -> torch.Tensor:
        """(b, 512) float32 probability that each observed byte is damaged."""
        if self.cpu:
            return torch.sigmoid(cpu_trunk(self.model, self.bf16).detect(h))
        with self._autocast():
            return torch.sigmoid(self.model.detect(h).float())

    @torch.no_grad()
    def head_at(self, h: torch.Tensor, at: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(K, 256) float32 probabilities at (row, position) pairs."""
        if self.cpu:
            return cpu_trunk(self.model, self.bf16).head_at(h, at).float().softmax(1)
        with self._autocast():
            return self.model.head_at(h, at).float().softmax(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid head: (b, 1, 512) in [0, 1] -> (b, 512) float32 in [0, 1], on the CPU."""
        with autocast(self.device, self.bf16):
            return self.model(x).float().squeeze(1).cpu()


def as_scorer(model) -> Scorer:
    """A Scorer as it is, or a bare model in fp32 (tests and in-memory use)."""
    return model if isinstance(model, Scorer) else Scorer(model)


def load_scorer(path, device: str = "auto", precision: str = "auto", batch: int = 0) -> tuple[Scorer, dict]:
    """The one way repair and evaluate load a model: device resolved, weights checked and loaded,
    precision and batch size settled; also the checkpoint's info (path, sha256 …)."""
    model, info = load_model(path, resolve_device(device))
    return Scorer(model, precision, batch), info


@torch.no_grad()
def _fragment_logp(model: FragmentAutoencoder, data: bytes, bf16: bool, rows: int, only=None):
    """(first fragment, (rows, 512, 256) log-probabilities in nats) for `data`'s 512-byte fragments
    in batches of `rows` (CPU, categorical head), each fragment seen as it is; `only`: the fragment
    indices wanted (others are skipped)."""
    n = len(data)
    k = -(-n // 512)
    buf = torch.zeros(k * 512, dtype=torch.uint8)
    buf[:n] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    pad = torch.arange(k * 512) >= n  # the last fragment's tail: shown to the model as unknown
    frags, unknown = buf.view(k, 512), pad.view(k, 512)
    tr = cpu_trunk(model, bf16)
    for i in range(0, k, rows):
        if only is not None and not only[i:i + rows].any():
            continue
        h = tr.features(encode_input(frags[i:i + rows], unknown[i:i + rows], "categorical")).squeeze(1)
        yield i, frags[i:i + rows], torch.log_softmax((h @ tr.head_w + tr.head_b).float(), -1)


@torch.no_grad()
def byte_surprise(model: FragmentAutoencoder, data: bytes, bf16: bool = False, rows: int = 64):
    """Bits of surprise, -log2 p(observed byte), for every byte of `data` from the model's view of
    the 512-byte fragment around it (CPU, categorical head): how implausible the model finds it.
    Returns a float64 numpy array of len(data)."""
    k = -(-len(data) // 512)
    out = torch.empty(k, 512)
    for i, frags, logp in _fragment_logp(model, data, bf16, rows):
        out[i:i + len(frags)] = -logp.gather(2, frags.long().unsqueeze(2)).squeeze(2) / 0.6931471805599453
    return out.view(-1)[:len(data)].numpy().astype(np.float64)


@torch.no_grad()
def byte_values(model: FragmentAutoencoder, data: bytes, pos, values, bf16: bool = False, rows: int = 64):
    """Bits of surprise the model gives `values` at positions `pos` of `data` (numpy int arrays of
    equal length), each judged in the fragment as it is: what a candidate byte would cost."""
    pos, values = np.asarray(pos, np.int64), np.asarray(values, np.int64)
    out = np.zeros(len(pos))
    frag = pos // 512
    only = np.zeros(-(-len(data) // 512) + 1, bool)
    only[frag] = True
    for i, frags, logp in _fragment_logp(model, data, bf16, rows, only):
        sel = np.flatnonzero((frag >= i) & (frag < i + len(frags)))
        lp = logp[torch.from_numpy(frag[sel] - i), torch.from_numpy(pos[sel] % 512), torch.from_numpy(values[sel])]
        out[sel] = -lp.numpy() / 0.6931471805599453
    return out


class ModelScorer:
    """The model's view of decoded bytes (CPU, categorical head): `self(data)` is its surprise at
    each byte; `values(data, pos, vals)` its surprise at other values there (candidate repairs)."""

    def __init__(self, scorer, limit: int):
        self.scorer, self.limit = scorer, limit

    def __call__(self, data: bytes) -> np.ndarray:
        if len(data) > self.limit:
            return np.zeros(len(data))
        return byte_surprise(self.scorer.model, data, self.scorer.bf16)

    def values(self, data: bytes, pos: np.ndarray, vals: np.ndarray) -> np.ndarray:
        if len(data) > self.limit:
            return np.zeros(len(pos))
        return byte_values(self.scorer.model, data, pos, vals, self.scorer.bf16)


def model_scorer(scorer, limit: int = 1 << 20) -> ModelScorer | None:
    """The model as the format search's scorer; None where it cannot run (not on the CPU)."""
    return ModelScorer(scorer, limit) if scorer.cpu else None
