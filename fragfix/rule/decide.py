"""The repair decision: which bytes of a window of fragments to change, and to what.

`decide()` is the one rule that both `fragfix repair` and `fragfix evaluate` use. It takes a
window of fragments (repair reads a few MB at a time), runs the model over it in mini-batches,
and decides every suspect byte with what the whole window says.

Categorical head: a cheap detector scores every position; the 256-way head runs only where the
detector fires or the byte is unknown (the head is the costliest layer per byte). Its
distribution is then sharpened by the window's own context counts (`context.py`): bytes that sit
between the same neighbours elsewhere vote for their value. With p that posterior and p_m the
model's own probabilities at a position whose observed byte is o, o becomes argmax p when
max p >= threshold, p[o] <= floor and p_m[o] <= model_floor; unknown positions always take
argmax p, and whole unknown runs take the string that fills the same gap elsewhere in the
window when there is one (`context.fill_gaps`). Where argmax p and o differ in a single bit, both floors are `one_bit_factor` times
higher: bit rot flips single bits, so such a correction is a priori likelier (the figures: docs/performance.md,
Performance).
The damage gate (`damage.py`) then scales both floors by the damage rate the window itself shows
(0 where it shows no more than clean data: nothing changes) and vetoes bytes that are the file's
own (repeated between the same neighbours, common beside a neighbour, or inside UTF-8 sequences).
Fragments that do not look like text (under 85% printable bytes) use a stricter pair,
`binary_threshold` and `binary_floor`: on executables the probabilities are poorly calibrated,
and a stricter gate keeps clean binaries untouched. `context_orders=()` leaves the model alone (p = p_m).
Sigmoid head: there are no probabilities, so its honest equivalent is a deviation gate: o becomes
round(255 y) only when |y - o/255| >= threshold (as a fraction of the byte range); confidence is
reported as unknown (NaN / null).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from fragfix.model.autoencoder import FragmentAutoencoder, encode_input
from fragfix.rule import damage
from fragfix.rule.context import fill_gaps, posterior
from fragfix.config import RepairConfig  # noqa: F401  (re-exported)
from fragfix.errors import InvalidInput
from fragfix.model.inference import Scorer, as_scorer
from fragfix.rule.decision import Decision, byte_entropy as entropy_np, cut
from fragfix.rule.learned import applies, decide_window


class Suspects(NamedTuple):
    """The model's view of every suspect position of a window, flat numpy arrays of equal length."""
    q: np.ndarray      # (S,) flat index into the window (row * 512 + column)
    top_b: np.ndarray  # (S, TOP) the model's likeliest bytes
    top_p: np.ndarray  # (S, TOP) their probabilities
    p_obs: np.ndarray  # (S,) the model's probability of the byte as read
    thr: np.ndarray    # (S,) the row's threshold (text or binary pair, row_gates)
    floor: np.ndarray  # (S,) the row's floor


def byte_entropy(frags: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """decision.byte_entropy on tensors: (B, 512) uint8 -> (B,) bits/byte (the one definition)."""
    return torch.from_numpy(entropy_np(frags.numpy(), None if valid is None else valid.numpy()))


@torch.no_grad()
def decide(scorer: Scorer | FragmentAutoencoder, frags: torch.Tensor, unknown: torch.Tensor | None,
           cfg: RepairConfig, lengths: torch.Tensor | None = None, pieces: torch.Tensor | None = None) -> Decision:
    """Repair a window: (B, 512) uint8 bytes and (B, 512) bool unknown mask, on the CPU; the model
    runs in mini-batches, the context counts pool the whole window. `lengths` (B,) marks padded
    tails (a file's last partial fragment): the model sees them as unknown, and they count for nothing.
    `pieces` (B,) says which file each row belongs to (runs of rows): the damage rate stays per file.
    With `cfg.passes` > 1 each pass starts from the last one's output: repaired neighbours and
    cleaner counts let it fix more where damage is dense."""
    scorer = None if scorer is None else as_scorer(scorer)
    if applies(cfg.rule, "categorical" if scorer is None else scorer.head):  # the model is not asked
        d = decide_window(frags.numpy(), None if unknown is None else unknown.numpy(), cfg,
                          None if lengths is None else lengths.numpy(), None if pieces is None else pieces.numpy())
        return Decision(*(torch.from_numpy(x) for x in d))
    if scorer is None:
        raise InvalidInput("the model rule needs a model")
    d = _decide_once(scorer, frags, unknown, cfg, lengths, pieces)
    for _ in range(cfg.passes - 1):  # the damage evidence is the first pass's: the data as it was read
        again = _decide_once(scorer, d.fragments, unknown, cfg, lengths, pieces)
        conf = torch.where(again.changed, again.confidence, d.confidence)
        d = Decision(again.fragments, again.fragments != frags, conf, d.clear)
    return d


def _decide_once(scorer: Scorer, frags, unknown, cfg, lengths, pieces=None) -> Decision:
    b, n = frags.shape
    unknown = torch.zeros((b, n), dtype=torch.bool) if unknown is None else unknown
    valid = None if lengths is None else torch.arange(n).unsqueeze(0) < lengths.unsqueeze(1)
    hidden = unknown if valid is None else unknown | ~valid  # what the model is told it cannot see
    out = frags.clone()
    conf = torch.full((b, n), float("nan"))
    clear = torch.zeros(b, dtype=torch.int64)
    suspects = _score(scorer, frags, unknown, hidden, valid, cfg, out)
    if suspects is not None:
        at, best, p_best, clear_at = _gate(frags, hidden, cfg, None if pieces is None else pieces.numpy(), suspects)
        out.view(-1)[at] = torch.from_numpy(best)
        conf.view(-1)[at] = torch.from_numpy(p_best)
        clear = torch.from_numpy(np.bincount(clear_at // n, minlength=b))
    if valid is not None:  # padding is no data: whatever the model put there is dropped
        out = torch.where(valid, out, frags)
    return Decision(out, out != frags, conf, clear)


def _score(scorer: Scorer, frags, unknown, hidden, valid, cfg, out) -> Suspects | None:
    """The model over the window in mini-batches of rows: its view of every suspect position
    (Suspects); None when nothing is suspect. (The sigmoid head has no
    suspects: its rows are decided here and written into `out`.)"""
    b, n = frags.shape
    batch = scorer.batch
    found = []
    for i in range(0, b, batch):  # per mini-batch of rows: every per-row temporary stays small
        f, hid, v = frags[i:i + batch], hidden[i:i + batch], None if valid is None else valid[i:i + batch]
        # incompressible fragments (random, compressed, encrypted) carry no structure to repair from
        real_unknown = unknown[i:i + batch] if v is None else unknown[i:i + batch] & v
        if cfg.only_unknown:  # the known bytes are trusted (a mapfile's '+'): rows without a gap need no model
            s = real_unknown.any(1).nonzero().squeeze(1)
        else:
            s = ((byte_entropy(f, v) <= cfg.max_entropy) | real_unknown.any(1) | cfg.aggressive).nonzero().squeeze(1)
        if s.numel() == 0:
            continue
        # round the row count up to a multiple of 16 (repeating the first row): each distinct conv
        # shape costs a cached oneDNN primitive, and one per batch made memory grow with file size
        rows_in = torch.cat([s, s[:1].expand(-s.numel() % 16)])
        if scorer.head == "sigmoid":
            out[i + s] = _sigmoid(scorer, f[rows_in], hid[rows_in], cfg)[:s.numel()]
            continue
        r, pos, top_b, top_p, p_obs = _suspects(scorer, f[rows_in], hid[rows_in], cfg,
                                                None if v is None else v[rows_in])
        keep = r < s.numel()  # the rows, not the repeats that padded them
        rr = s[r[keep]]
        thr, floor = row_gates(f, v, cfg)
        found.append(((i + rr) * n + pos[keep], top_b[keep], top_p[keep], p_obs[keep], thr[rr], floor[rr]))
    if not found or not sum(len(f[0]) for f in found):
        return None
    return Suspects(*(torch.cat(t).numpy() for t in zip(*found)))


def _gate(frags, hidden, cfg, pieces, s: Suspects) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """The window-wide decision at the suspects: the model's distribution sharpened by the window's
    context counts (unknown runs filled from the same gap elsewhere), then the gate. Returns the
    flat positions to change, their new bytes (uint8) and confidences (float32), and the flat
    positions of the clear errors (the damage evidence, whether or not the gate was on)."""
    buf, known = frags.reshape(-1).numpy(), ~hidden.reshape(-1).numpy()
    q, top_b, top_p, p_obs = s.q, s.top_b, s.top_p, s.p_obs
    if cfg.context_orders:
        best, p_best, p_o = posterior(buf, known, q, top_b, top_p, p_obs, cfg.context_orders, cfg.context_weight)
        if (~known[q]).any():  # whole unknown runs: strings that fill the same gap elsewhere
            at, fill, c = fill_gaps(buf, known, q, top_b, top_p)
            best[at], p_best[at] = fill, c
    else:
        best, p_best, p_o = top_b[:, 0], top_p[:, 0], p_obs
    obs = buf[q]
    one_bit = np.isin(best.astype(np.uint8) ^ obs, ONE_BIT)
    boost = np.where(one_bit, cfg.one_bit_factor, 1.0)
    # --clean-rate 0 asks for isolated errors too: then any clear error counts, no confidence bound
    own, clear, rate = damage.estimate(buf, known, q, p_obs, frags.shape[0], pieces, bool(cfg.clean_rate), cfg.evidence)
    if cfg.damage_gate:  # the data's own damage rate scales the floors; its own habits are kept
        boost = boost * damage.scale(rate, cfg.clean_rate, cfg.ref_rate, cfg.max_scale)[q // frags.shape[1]]
        boost[own] = 0.0
    gate = (p_best >= s.thr) & (p_o <= s.floor * boost) & (p_obs <= cfg.model_floor * boost) & (boost > 0)
    take = ~known[q] | (best != obs) & (cfg.aggressive | gate)
    return torch.from_numpy(q[take]), best[take].astype(np.uint8), p_best[take].astype(np.float32), q[clear]


@torch.no_grad()
def damage_rate(scorer: Scorer | FragmentAutoencoder, frags: torch.Tensor, cfg: RepairConfig | None = None) -> np.ndarray:
    """(B,) the damage rate the data shows around each fragment of a window (damage.py): clear
    errors per byte (the gate opens on its lower confidence bound)."""
    scorer, cfg = as_scorer(scorer), cfg or RepairConfig()
    none = torch.zeros(frags.shape, dtype=torch.bool)
    suspects = _score(scorer, frags, none, none, None, cfg, frags.clone())
    if suspects is None:
        return np.zeros(frags.shape[0])
    return damage.estimate(frags.reshape(-1).numpy(), np.ones(frags.numel(), bool), suspects.q, suspects.p_obs,
                           frags.shape[0], bound=False, ev=cfg.evidence)[2]


PRINTABLE = torch.zeros(256, dtype=torch.bool)
PRINTABLE[32:127] = True
PRINTABLE[[9, 10, 13]] = True


def row_gates(frags: torch.Tensor, valid: torch.Tensor | None, cfg: RepairConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) threshold and (B,) floor per fragment: the text pair where >= 85% of the valid bytes are
    printable, else the binary pair."""
    printable = PRINTABLE[frags.long()]
    if valid is not None:
        share = (printable & valid).sum(1) / valid.sum(1).clamp(min=1)
    else:
        share = printable.float().mean(1)
    text = share >= cfg.text_share
    return (torch.where(text, cfg.threshold, cfg.binary_threshold).double(),
            torch.where(text, cfg.floor, cfg.binary_floor).double())


ONE_BIT = np.array([1 << i for i in range(8)], dtype=np.uint8)
TOP = 8  # the model's most likely bytes kept per suspect position (the rest share what is left)
HEAD_CHUNK = 2048  # suspect positions per 256-way head call ((2048, 256) float32: 2 MB)


def _suspects(scorer: Scorer, frags, unknown, cfg, valid=None):
    """One model call over (b, 512) fragments: the positions worth a look (unknown, or the detector
    fires; never padding, where `valid` is False) as (rows, positions), the model's TOP bytes and
    probabilities there (K, TOP), and its probability of the observed byte (K,)."""
    dev = scorer.device
    x = encode_input(frags, unknown, "categorical").to(dev, non_blocking=True)
    h = scorer.features(x)
    det = scorer.detect(h)  # (b, 512)
    unk = unknown.to(dev)
    cand = unk | (det >= cfg.detect) if not cfg.aggressive else torch.ones_like(unk)
    if cfg.only_unknown:
        cand = unk
    if valid is not None:
        cand &= valid.to(dev)
    idx = cand.nonzero(as_tuple=True)
    obs = frags.to(dev)[idx].long()
    parts = []
    for lo in range(0, idx[0].numel(), HEAD_CHUNK):  # (HEAD_CHUNK, 256) probabilities at a time: bounded memory
        at = tuple(t[lo:lo + HEAD_CHUNK] for t in idx)
        k = at[0].numel()
        # pad to a multiple of 512: every distinct matmul shape costs a cached oneDNN primitive
        padded = tuple(torch.cat([t, t.new_zeros(-k % 512)]) for t in at)
        p = scorer.head_at(h, padded)[:k]  # (k, 256)
        p_obs = p.gather(1, obs[lo:lo + k].unsqueeze(1)).squeeze(1)
        if not cfg.aggressive:  # the gate needs p_obs <= model_floor * boost: drop the rest before the costly part
            keep = unk[at] | (p_obs <= cfg.model_floor * _widest_boost(cfg))
            at, p, p_obs = (at[0][keep], at[1][keep]), p[keep], p_obs[keep]
        top_p, top_b = p.topk(TOP, 1)
        parts.append((at[0].cpu(), at[1].cpu(), top_b.to(torch.uint8).cpu(), top_p.cpu(), p_obs.cpu()))
    if not parts:
        return (torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0, TOP, dtype=torch.uint8),
                                                          torch.zeros(0, TOP), torch.zeros(0))
    return tuple(torch.cat(t) for t in zip(*parts))


def _widest_boost(cfg: RepairConfig) -> float:
    """The most `_gate` can multiply the floors by: the one-bit factor, and where the damage gate is
    on, the most it opens them where damage is dense."""
    return cfg.one_bit_factor * (cfg.max_scale if cfg.damage_gate else 1.0)


def _sigmoid(scorer: Scorer, frags, unknown, cfg):
    y = scorer.reconstruct(encode_input(frags, unknown, "sigmoid").to(scorer.device))  # (b, 512) in [0, 1]
    rec = (y * 255).round().to(torch.uint8)
    dev_ = (y - frags.float() / 255).abs()
    take = unknown | (dev_ >= cfg.threshold) if not cfg.aggressive else torch.ones_like(unknown)
    return torch.where(take, rec, frags)


def decide_windows(scorer: Scorer | FragmentAutoencoder, frags: torch.Tensor, unknown: torch.Tensor | None,
                   cfg: RepairConfig, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """decide() over any number of fragments, window by window (`cfg.window_fragments` pooled for
    the context counts each): (k, 512) uint8 repaired fragments."""
    step = cfg.window_fragments
    scorer = None if scorer is None else as_scorer(scorer)
    return torch.cat([decide(scorer, frags[i:i + step], None if unknown is None else unknown[i:i + step], cfg,
                             None if lengths is None else lengths[i:i + step]).fragments
                      for i in range(0, len(frags), step)])


def repair_bytes(scorer: Scorer | FragmentAutoencoder, data: bytes, cfg: RepairConfig | None = None,
                 unknown: torch.Tensor | None = None) -> bytes:
    """Repair a whole buffer in memory (any length, 0 included); the result has the same length."""
    if len(data) == 0:
        return b""
    frags, unk, lengths = (torch.from_numpy(a) for a in cut([(data, None if unknown is None else unknown.numpy())])[:3])
    out = decide_windows(scorer, frags, unk, cfg or RepairConfig(), lengths)
    return bytes(out.reshape(-1)[:len(data)].numpy())
