"""The default repair rule: learn the window under repair, then decide by the noisy channel.

`decide_learned()` takes a window of fragments as `decide()` does and returns the same Decision:

1. the per-file predictor (`filemodel.FileModel`) learns the window's intact bytes;
2. the damage the file shows (`channel.py`): the kinds (substitution, bit flip, erasure) by EM on
   its most surprising bytes, the rate from its surprise beyond what the predictor expects of
   clean data. No evidence: nothing is a suspect, nothing changes;
3. the screen: P(observed | context) at every known byte, two gathers per expert. Where it is
   above what any value's posterior could beat at that rate (channel.reach), the byte is never
   looked at again, and the dense 256-way work runs only on the rest; there a byte changes only
   where the posterior that it is undamaged falls to 1 - `certainty`, to the likeliest other value;
4. unknown bytes take the predictor's best; runs of unknown bytes are filled left to right, each
   byte from the bytes already filled before it (`fill_runs`), its probability as confidence.

No neural model runs here: the predictor is the file's own. Rows whose byte entropy is above
`max_entropy` (compressed, encrypted, random) are left alone, as they hold no structure to repair
from.
"""
from __future__ import annotations

import numpy as np

from fragfix.rule import channel, filemodel, pool
from fragfix.rule.decision import Decision, byte_entropy
from fragfix.rule.experts import Window
from fragfix.rule.filemodel import FileModel
from fragfix.files.unknown import run_bounds

LEARN_ROWS = 1024    # fragments (512 KB) one predictor learns from: its counts take ~100-200 MB
DENSE_CHUNK = 4096  # suspects whose (Q, 256) distributions are held at once (8 MB float64)
MAX_FILL = 4096     # unknown runs longer than this keep the predictor's per-byte best (no context walk)
MARGIN = 64         # known bytes each side of a run that its fill may read as context
BEAM, BEAM_MAX = 8, 64  # runs of up to BEAM_MAX bytes keep this many candidate strings
RIGHT = 6           # known bytes after a run that score its candidate strings


def applies(rule: str, head: str) -> bool:
    """Whether the learned rule decides: the default rule, unless the checkpoint's head is the
    sigmoid's (it has no probabilities to learn beside, and repairs by its own deviation gate)."""
    return rule == "learned" and head != "sigmoid"


def decide_window(frags: np.ndarray, unknown: np.ndarray | None, cfg, lengths: np.ndarray | None = None,
                  pieces: np.ndarray | None = None) -> Decision:
    """The learned rule on a window: (B, 512) uint8 fragments, (B, 512) bool unknown, (B,) true
    lengths, (B,) piece of each row (runs of rows: one file each) -> Decision (numpy). Rows above
    `max_entropy` bits/byte (compressed, encrypted, random) hold no structure to repair from and
    are left alone unless they hold unknown bytes. With `cfg.passes` > 1 each pass starts from the
    last one's output (the damage evidence stays the first pass's: the data as it was read)."""
    b, n = frags.shape
    valid = None if lengths is None else np.arange(n)[None] < lengths[:, None]

    def once(f: np.ndarray) -> Decision:
        rows = byte_entropy(f, valid) <= cfg.max_entropy
        if unknown is not None:
            rows |= unknown.any(1)
        return decide_learned(f, unknown, cfg, lengths, pieces, rows | cfg.aggressive)
    d = once(frags)
    for _ in range(cfg.passes - 1):
        again = once(d.fragments)
        d = Decision(again.fragments, again.fragments != frags,
                     np.where(again.changed, again.confidence, d.confidence), d.clear)
    return d


def decide_learned(frags: np.ndarray, unknown: np.ndarray | None, cfg, lengths: np.ndarray | None = None,
                   pieces: np.ndarray | None = None, entropy_ok: np.ndarray | None = None) -> Decision:
    """(B, 512) uint8 fragments, (B, 512) bool unknown, (B,) true lengths, (B,) piece of each row
    (runs of rows: one file each), (B,) bool rows worth repairing (None: all) -> Decision.
    Each piece learns on its own: a file repairs to the same bytes alone or batched with others."""
    b, n = frags.shape
    unknown = np.zeros((b, n), dtype=bool) if unknown is None else unknown
    valid = np.ones((b, n), dtype=bool) if lengths is None else np.arange(n)[None] < lengths[:, None]
    rows_ok = np.ones(b, bool) if entropy_ok is None else entropy_ok
    piece = np.zeros(b, np.int64) if pieces is None else pieces
    bounds = np.flatnonzero(np.r_[True, piece[1:] != piece[:-1], True])
    # a long piece learns in stretches of LEARN_ROWS fragments: memory stays bounded whatever the window
    bounds = np.unique(np.concatenate([np.arange(lo, hi, LEARN_ROWS) for lo, hi in zip(bounds[:-1], bounds[1:])]
                                      + [bounds[-1:]]))
    new = frags.copy()
    conf = np.full((b, n), np.nan, dtype=np.float32)
    clear = np.zeros(b, dtype=np.int64)
    quiet = _quiet(frags, valid, piece)
    jobs, spans = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        unk, ok = unknown[lo:hi], valid[lo:hi]
        if not (rows_ok[lo:hi] & ~quiet[lo:hi]).any() and not unk.any():
            continue  # nothing here to repair from or to repair: the bytes stand as read, no predictor built
        jobs.append((frags[lo:hi].reshape(-1), (~unk & ok).reshape(-1), (unk & ok).reshape(-1),
                     np.repeat(rows_ok[lo:hi], n), cfg))
        spans.append((lo, hi))
    # stretches learn apart: on the pool's workers when one is open (pool.py), here otherwise
    for (lo, hi), (at, vals, c, k) in zip(spans, pool.run(stretch, jobs)):
        new[lo:hi].reshape(-1)[at] = vals
        conf[lo:hi].reshape(-1)[at] = c
        clear[lo:hi] = np.bincount(k // n, minlength=hi - lo)
    new = np.where(valid, new, frags)
    return Decision(new, new != frags, conf, clear)


def stretch(buf: np.ndarray, known: np.ndarray, open_: np.ndarray, worth: np.ndarray, cfg
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """learn_and_decide() as a pool job: only what changed travels back (positions, new values,
    their confidences; the positions more likely damaged than not)."""
    out, conf, clear = learn_and_decide(buf, known, open_, worth, cfg)
    at = np.flatnonzero((out != buf) | ~np.isnan(conf))
    return at, out[at], conf[at], clear


def _quiet(frags: np.ndarray, valid: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """(B,) rows of one byte value whose neighbours in the same piece hold only that value too
    (erased flash, padding, zero-filled space). A byte amid 1,500 of its own kind is what every
    context of it predicts, so such rows never change; a stretch of them and of random rows
    (entropy_ok false) needs no predictor at all."""
    f, v = frags, valid
    lo = np.where(v, f, 255).min(1)
    hi = np.where(v, f, 0).max(1)
    one = (lo == hi) & v.any(1)
    val = lo.astype(np.int64)
    inside = np.r_[False, piece[1:] == piece[:-1]]               # row i - 1 is of the same piece
    same = np.r_[False, one[1:] & one[:-1] & (val[1:] == val[:-1])] & inside
    # a neighbour beyond the piece's ends is no data: only the ones inside it must agree
    ok_prev = same | ~inside
    ok_next = np.r_[ok_prev[1:], True]
    return one & ok_prev & ok_next


def learn_and_decide(buf: np.ndarray, known: np.ndarray, open_: np.ndarray, worth: np.ndarray, cfg
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One piece: (N,) bytes, known bytes, bytes to fill, bytes worth repairing -> (new bytes (N,),
    confidence (N,) float32, NaN where unchanged; positions the channel finds more likely damaged
    than not: the damage evidence)."""
    out = buf.copy()
    conf = np.full(len(buf), np.nan, dtype=np.float32)
    clear = np.zeros(0, np.int64)
    fm = FileModel(buf, known)
    if not cfg.only_unknown:
        kq = np.flatnonzero(known & worth)
        p_o = fm.p_observed(kq)
        pi = _kinds(fm, kq, p_o)
        # --clean-rate 0 asks for isolated errors too: the damage rate without its safety margins
        careful = cfg.clean_rate > 0
        evidence, eps = _rate(fm, kq, p_o, pi, channel.Z if careful else 0.0, channel.NULL_SLACK if careful else 1.0)
        # the screen: where P(o) is above this, no value's posterior can beat o's (channel.reach)
        reach = channel.reach(np.array([eps]), pi, 0.0 if cfg.aggressive else cfg.certainty)[0]
        # no evidence of damage beyond the file's own novelty: nothing is a suspect, however odd
        sus = kq[p_o < min(reach, cfg.screen)] if evidence > channel.EPS_MIN or cfg.aggressive else kq[:0]
        parts = [channel.posterior(fm.dense(at), buf[at].astype(np.int64), np.full(len(at), eps), pi)
                 for at in (sus[i:i + DENSE_CHUNK] for i in range(0, len(sus), DENSE_CHUNK))]
        if parts:
            best, p_best, p_keep = (np.concatenate(t) for t in zip(*parts))
            clear = sus[p_keep < 0.5]
            # the risk of a change is the chance the byte was right all along: p_keep
            sure = (p_best > p_keep) if cfg.aggressive else (p_keep <= 1.0 - cfg.certainty)
            take = (best != buf[sus]) & sure
            out[sus[take]] = best[take]
            conf[sus[take]] = p_best[take]
    if open_.any():
        at, vals, c = fill_runs(fm, open_)
        out[at] = vals
        conf[at] = c
    return out, conf, clear


RATE_SAMPLE = 2048  # positions whose full distributions estimate the null tail mass
KIND_SAMPLE = 4096  # the most surprising bytes (P(o) < KIND_P) on which the kinds of damage are fitted
KIND_P = 1e-3


def _kinds(fm: FileModel, q: np.ndarray, p_o: np.ndarray) -> np.ndarray:
    """pi: the mix of damage kinds (channel.KINDS), fitted by EM on a sample of the bytes the file
    finds most surprising (where damage, if any, is)."""
    odd = q[p_o < KIND_P]
    if len(odd) == 0:
        return channel.PI0
    at = np.sort(np.random.default_rng(0).choice(odd, size=min(KIND_SAMPLE, len(odd)), replace=False))
    p = fm.dense(at)
    o = fm.w.buf[at].astype(np.int64)
    return channel.fit_kinds(p[np.arange(len(o)), o], channel.kind_terms(p, o), len(q))


def _rate(fm: FileModel, q: np.ndarray, p_o: np.ndarray, pi: np.ndarray, z: float = channel.Z,
          slack: float = channel.NULL_SLACK) -> tuple[float, float]:
    """One file's damage rate from the tails of its surprise (channel.tail_rate): its lower bound
    (is there damage at all?) and its estimate (the prior odds of damage in the decision)."""
    if len(q) == 0:
        return channel.EPS_MIN, channel.EPS_MIN
    at = np.sort(np.random.default_rng(0).choice(q, size=min(RATE_SAMPLE, len(q)), replace=False))
    # which of the surprising bytes a damage kind explains: full distributions at those only
    odd = np.flatnonzero(p_o < channel.EXPLAINED_TAIL)
    why = np.zeros(len(q), bool)
    for i in range(0, len(odd), DENSE_CHUNK):
        j = odd[i:i + DENSE_CHUNK]
        why[j] = channel.explained(fm.dense(q[j]), fm.w.buf[q[j]].astype(np.int64), pi)
    return channel.tail_rate(p_o, fm.dense(at), fm.w.buf[at].astype(np.int64), pi, z, slack, why, q)


def fill_runs(fm: FileModel, open_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unknown bytes, filled. Each run goes from its left end, one byte a step, so a byte's left-side
    contexts hold the bytes just filled before it (as a writer would go on). Runs of up to BEAM_MAX
    bytes keep the BEAM likeliest strings and choose among them with the bytes after the run too
    (how likely the known bytes on the right are, read after each string): both sides decide.
    Longer runs go greedily. Returns (positions, values, confidences: each byte's probability)."""
    starts, ends = run_bounds(open_)
    parts = []
    huge = (ends - starts) > MAX_FILL
    if huge.any():  # very long runs: every byte at once, from whatever context it has
        at = np.concatenate([np.arange(a, e) for a, e in zip(starts[huge], ends[huge])])
        p = np.concatenate([fm.dense(at[i:i + DENSE_CHUNK]) for i in range(0, len(at), DENSE_CHUNK)])
        parts.append((at, p.argmax(1).astype(np.uint8), p.max(1)))
    short = (ends - starts) <= BEAM_MAX
    for pick, width in ((short, BEAM), (~short & ~huge, 1)):
        if pick.any():
            parts.append(_walk(fm, starts[pick], ends[pick], width))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.float32)
    pos, vals, conf = (np.concatenate(t) for t in zip(*parts))
    return pos, vals, conf.astype(np.float32)


def _walk(fm: FileModel, s: np.ndarray, e: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beam search over runs [s, e): `width` copies of each run's neighbourhood (MARGIN bytes each
    side, contexts reach no further) laid one after another in a compact buffer, one unknown byte
    between them; each step extends every copy by one byte and keeps the `width` likeliest strings
    of each run; the right side scores them at the end."""
    n, r = len(fm.w.buf), len(s)
    lo, hi = np.maximum(s - MARGIN, 0), np.minimum(e + MARGIN, n)
    seg = np.repeat(hi - lo + 1, width)                      # (r * width,) copy c = run c // width
    base = np.r_[0, np.cumsum(seg)[:-1]]
    cbuf, cknown = np.zeros(int(seg.sum()), np.uint8), np.zeros(int(seg.sum()), bool)
    for c in range(r * width):
        a, b = lo[c // width], hi[c // width]
        cbuf[base[c]:base[c] + b - a], cknown[base[c]:base[c] + b - a] = fm.w.buf[a:b], fm.w.known[a:b]
    off = base + np.repeat(s - lo, width)                    # each copy's run start in the compact buffer
    length = np.repeat(e - s, width)
    logp = np.zeros(r * width)
    logp[np.arange(r * width) % width > 0] = -np.inf          # one string to start from, not `width` equal ones
    prob = np.zeros((r * width, int((e - s).max())))
    for t in range(int((e - s).max())):
        live = np.flatnonzero(t < length)
        p = fm.dense(off[live] + t, Window(cbuf, cknown, stride=0))  # (live, 256)
        score = np.full((r * width, 256), -np.inf)
        score[live] = logp[live, None] + np.log(p)
        runs = np.unique(live // width)
        flat = score.reshape(r, width * 256)[runs]
        top = np.argsort(-flat, axis=1, kind="stable")[:, :width]  # the width likeliest extensions
        parent, value = runs[:, None] * width + top // 256, top % 256
        child = runs[:, None] * width + np.arange(width)
        pp = np.full((r * width, 256), 0.0)
        pp[live] = p
        step = pp[parent, value]
        ok = np.isfinite(np.take_along_axis(flat, top, 1))
        src = [(cbuf[off[pc]:off[pc] + t].copy(), prob[pc, :t].copy()) for pc in parent.ravel()]
        for (old, pr), pc, ch, v, st, good in zip(src, parent.ravel(), child.ravel(), value.ravel(), step.ravel(),
                                                  ok.ravel()):
            cbuf[off[ch]:off[ch] + t], prob[ch, :t] = old, pr
            cbuf[off[ch] + t], cknown[off[ch] + t], prob[ch, t] = v, True, st
            logp[ch] = logp[pc] + np.log(max(st, 1e-300)) if good else -np.inf
    if width > 1:  # the right side decides: the known bytes just after the run, read after each string
        for k in range(RIGHT):
            at = off + length + k
            ok = np.isfinite(logp) & (at < len(cbuf)) & cknown[np.minimum(at, len(cbuf) - 1)]
            if ok.any():
                p = fm.dense(at[ok], Window(cbuf, cknown, stride=0))
                logp[ok] += np.log(p[np.arange(ok.sum()), cbuf[at[ok]]])
    best = np.argmax(logp.reshape(r, width), axis=1) + np.arange(r) * width
    pos = np.concatenate([np.arange(a, b) for a, b in zip(s, e)])
    vals = np.concatenate([cbuf[off[c]:off[c] + length[c]] for c in best])
    conf = np.concatenate([prob[c, :length[c]] for c in best])
    return pos, vals, conf


def rule_constants() -> dict:
    """The constants that shape the learned rule's decisions (this module's, the channel's, the
    predictor's), for reports: with the config's settings they say exactly how a repair decided.
    They define the algorithm, as a compressor's model parameters do, so they stay beside the
    code that explains each one; reports record them all the same."""
    return {"learn_rows": LEARN_ROWS, "max_fill": MAX_FILL, "fill_margin": MARGIN, "beam": BEAM, "beam_max": BEAM_MAX,
            "right": RIGHT, "rate_sample": RATE_SAMPLE, "kind_sample": KIND_SAMPLE, "kind_p": KIND_P,
            "channel": {"em_steps": channel.EM_STEPS, "eps_min": channel.EPS_MIN, "eps_max": channel.EPS_MAX,
                        "prior_kinds": channel.PI0.tolist(), "tails": [list(t) for t in channel.TAILS],
                        "z": channel.Z, "null_slack": channel.NULL_SLACK, "min_excess": channel.MIN_EXCESS,
                        "explain_odds": channel.EXPLAIN_ODDS, "explained_slack": channel.EXPLAINED_SLACK,
                        "explained_tail": channel.EXPLAINED_TAIL, "strides": list(channel.STRIDES),
                        "per_class": channel.PER_CLASS},
            "predictor": {"buckets": filemodel.BUCKETS.tolist(), "mix_sample": filemodel.MIX_SAMPLE,
                          "mix_steps": filemodel.MIX_STEPS, "novelty": filemodel.NOVELTY}}
