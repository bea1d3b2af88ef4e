"""The decision from the noisy channel: which observed bytes are damage, and what they were.

The per-file predictor (`filemodel.py`) gives P(b | context) at every position; storage damage is
a channel from the true byte b to the observed o. With the damage rate eps the data shows:

    P(o | b) = 1 - eps                       where o == b (undamaged),
    P(o | b) = eps * sum_k pi_k * K_k(o | b)  where o != b (damaged), over the damage kinds k:
        substitution  K = 1/255 for every other value,
        bit flip      K = 1/8 for the 8 values one bit away (bit rot),
        erasure       K = 1 for o == 0 (zero-filled sectors, as ddrescue and failing drives leave).

The posterior of each value is P(b | o, context) ∝ P(b | context) · P(o | b); a byte changes to
the most likely other value only where the posterior that it is undamaged falls to 1 - `certainty`,
and is reported with that value's posterior as its confidence.

eps and the mix pi are not guessed: pi is fitted by EM on the file's most surprising bytes
(fit_kinds), and eps is the surprise beyond what the predictor expects of clean data (tail_rate):
a clean file's own novelty is what its predictor expects, so on a clean file eps has no evidence
and nothing changes; where damage is dense the prior opens by itself. This is the DUDE idea
(Weissman et al. 2005) with a learned, file-specific predictor in place of fixed context counts.
Numpy only.
"""
from __future__ import annotations

import numpy as np

KINDS = ("substitution", "bitflip", "erasure")
EM_STEPS = 12
EPS_MIN, EPS_MAX = 1e-7, 0.25  # eps stays inside these (a file that is more than 25% damage is noise)
PI0 = np.array([0.6, 0.3, 0.1])  # the kinds' mix before any evidence
_POP = np.array([bin(i).count("1") for i in range(256)])
ONE_BIT = (_POP[np.arange(256)[:, None] ^ np.arange(256)[None, :]] == 1)  # (256, 256) o, b one bit apart


def kind_terms(p: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """(Q, 3) sum over b != o of P(b) K_k(o | b) for each damage kind k, from (Q, 256) P and (Q,) o."""
    rows = np.arange(len(obs))
    p_o = p[rows, obs]
    sub = (1.0 - p_o) / 255.0
    bit = (p * ONE_BIT[obs]).sum(1) / 8.0
    era = np.where(obs == 0, 1.0 - p_o, 0.0)
    return np.stack([sub, bit, era], 1)


def fit_kinds(p_obs: np.ndarray, terms: np.ndarray, n: int, eps0: float = 1e-3) -> np.ndarray:
    """pi, the mix of damage kinds, by EM over surprising bytes of a file of n known bytes (the
    rest count as undamaged): (Q,) P(o), (Q, 3) kind terms. The
    rate fitted alongside only weighs the kinds against the clean explanation; the rate the decision
    uses comes from tail_rate, which a clean file's own novelty cannot inflate."""
    eps, pi = eps0, PI0.copy()
    for _ in range(EM_STEPS):
        dmg = eps * terms * pi[None, :]                  # (Q, 3) joint of damage by each kind
        r = dmg / np.maximum((1 - eps) * p_obs + dmg.sum(1), 1e-300)[:, None]  # responsibilities
        eps = float(np.clip(r.sum() / max(n, 1), EPS_MIN, EPS_MAX))
        mass = r.sum(0)
        if mass.sum() > 1e-9:
            pi = (mass + 0.5) / (mass.sum() + 1.5)      # a light prior keeps every kind possible
    return pi


# surprise levels at which damage is counted against the null, each with how many times over the null
# is taken there (the predictor's most extreme tail is its least calibrated: see NULL_SLACK)
TAILS = ((1e-3, 1.0), (1e-4, 1.0), (1e-5, 1.0), (1e-6, 1.0), (1e-7, 10.0))
Z = 3.0  # the damage rate is the excess's lower confidence bound: count - null - Z sqrt(count)
# Clean files show more extreme surprises than their predictor's tail mass says (1.5-12x on clean
# text, executables, bytecode and databases of the development machine, 15x for a table of counters
# at 1e-5; in 8 MB of clean Python source, 512 KB stretches up to 17x at 1e-6 and 150x at 1e-7): the
# null is taken NULL_SLACK times over (ten times that at 1e-7), so only surprise well beyond a clean
# file's counts as damage.
NULL_SLACK = 30.0
# ... and the excess must be at least this many bytes: in 8 MB of clean Python source one 512 KB
# stretch held 37 bytes below 1e-7 against 18 expected (twice the 30x null's bound, no damage)
MIN_EXCESS = 8.0


# Bit flips and erasures leave a second signature: the odd byte has a likely value that the damage kind
# turns into it (one bit away; 0x00 for erasures). Counting only such *explained* surprises drops most
# of a clean file's own novelty (new words, numbers, addresses) while keeping most damage, so it sees
# damage the whole tail cannot: 0.1% bit flips in highly predictable XML (0.4 bits/byte) hide in the
# whole tail (155 bytes below 1e-6 against a null of 122) and stand out here (151 against 20). A clean
# file's explained surprises are rarer but worse calibrated (up to 48x their tail mass, a man-page
# index at 1e-6, among 97 clean files of the development machine), so their null is taken 100 times.
EXPLAIN_ODDS = 1e3       # explained: damage at rate 1e-3 would be likelier than the byte as read
EXPLAINED_SLACK = 100.0
EXPLAINED_TAIL = 1e-5    # the levels the view counts at: above, clean novelty is common and each surprise costs
                         # a full distribution (same outputs as from 1e-4 on 97 clean and 69 damaged files)


def explained(p: np.ndarray, obs: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """(Q,) bool: damage of some likelier value explains the observed byte at odds EXPLAIN_ODDS,
    from (Q, 256) P and (Q,) o. With obs None, (Q, 256): the same for every value at each row."""
    if obs is None:
        sub = (1.0 - p) / 255.0
        sub *= pi[0]
        bit = p @ ONE_BIT.astype(p.dtype)
        bit /= 8.0
        bit *= pi[1]
        sub += bit
        sub[:, 0] += pi[2] * (1.0 - p[:, 0])  # erasure: only 0x00 (elsewhere its term is 0.0, an exact no-op)
        return sub > EXPLAIN_ODDS * p
    return kind_terms(p, obs) @ pi > EXPLAIN_ODDS * p[np.arange(len(obs)), obs]


# Damage lands anywhere: at every record offset alike. A file's own novelty has places: the hash or
# key bytes of each fixed-size record (a gdbm bucket's 24-byte elements, a table's id column), so its
# surprises crowd into some offsets modulo the record size. Counted per offset class modulo each
# stride, uniform damage fills every class about equally (Poisson around the median class); a class
# holding far more than that (beyond median + 3 sqrt(median) + 1) counts only up to it.
STRIDES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
PER_CLASS = 6  # a stride is read only where its classes would hold this many surprises each


def spread(pos: np.ndarray) -> int:
    """How many of the surprising bytes at `pos` (file offsets) are spread over every offset class
    modulo each stride: all of them for uniform damage (a class beyond the clip is a 1-in-700 event),
    the crowded classes clipped where the file's own structure puts them (the least over the strides)."""
    n = best = len(pos)
    for k in STRIDES:
        if n < k * PER_CLASS:
            break
        c = np.bincount(pos % k, minlength=k)
        med = float(np.median(c))
        best = min(best, int(np.minimum(c, med + 3.0 * np.sqrt(med) + 1.0).sum()))
    return best


def tail_rate(p_obs: np.ndarray, sample: np.ndarray, sample_obs: np.ndarray, pi: np.ndarray,
              z: float = Z, slack: float = NULL_SLACK, why: np.ndarray | None = None,
              pos: np.ndarray | None = None) -> tuple[float, float]:
    """The damage rate, robust to the file's own novelty: at each surprise level t, the bytes with
    P(o) < t, less what a calibrated predictor expects on clean data (the tail mass below t,
    averaged over a sample of positions), divided by the share of damaged bytes that would land
    below t (uniform substitution: the values with P < t; a bit flip: the neighbours one bit
    away with P < t; erasure: P(0) < t). A clean file's novel bytes are what its predictor
    expects; damage is what it does not. The same again over the explained bytes only (`why`, (N,)
    bool beside p_obs: see EXPLAINED_SLACK), and the stronger of the two stands. Returns (the lower
    confidence bound at the best level: the evidence that there is damage at all; the estimate
    itself at the best level: the rate to decide with). p_obs (N,) P(o) at every known byte, sample
    (S, 256) P at S sampled positions, sample_obs (S,); pos (N,) their offsets: only surprises spread
    over every record offset count (`spread`)."""
    n = len(p_obs)
    if n == 0 or len(sample) == 0:
        return EPS_MIN, EPS_MIN
    best, point = EPS_MIN, EPS_MIN
    rows = np.arange(len(sample))
    # (bytes counted, values counted at each sampled position, slack, levels)
    views = [(np.ones(n, bool), np.ones(sample.shape, bool), slack, TAILS)]
    if why is not None:
        views.append((why, explained(sample, None, pi), slack * EXPLAINED_SLACK / NULL_SLACK,
                      [tm for tm in TAILS if tm[0] <= EXPLAINED_TAIL]))
    bit_of_obs = ONE_BIT[sample_obs]  # (S, 256) the values one bit from each sampled byte
    for hit, mask, s, levels in views:
        for t, more in levels:
            low = (sample < t) & mask
            below = (p_obs < t) & hit
            count = float(below.sum() if pos is None else spread(pos[below]))
            null = s * (more if s > 1 else 1.0) * n * float((sample * low).sum(1).mean())
            f_sub = float(((low.sum(1) - low[rows, sample_obs]) / 255.0).mean())
            f_bit = float(((low & bit_of_obs).sum(1) / 8.0).mean())
            f_era = float(low[:, 0].mean())
            f = pi[0] * f_sub + pi[1] * f_bit + pi[2] * f_era
            if f <= 1e-6:
                continue
            excess = count - null - z * np.sqrt(count)
            if z > 0 and excess < MIN_EXCESS:  # a handful of odd bytes is no evidence of damage
                continue
            best = max(best, excess / (n * f))
            point = max(point, (count - null) / (n * f))
    return float(np.clip(best, EPS_MIN, EPS_MAX)), float(np.clip(point, EPS_MIN, EPS_MAX))


def reach(eps: np.ndarray, pi: np.ndarray, certainty: float) -> np.ndarray:
    """(G,) the largest P(o) at which a change could still be sure enough, per group: a change needs
    P(b) eps K(o | b) >= P(o) (1 - eps) c / (1 - c) for some b, and P(b) K(o | b) <= max K, where
    max K = pi_sub / 255 + pi_bit / 8 + pi_erasure (o = 0 the most permissive)."""
    k_max = pi[0] / 255.0 + pi[1] / 8.0 + pi[2]
    odds = certainty / max(1.0 - certainty, 1e-12)
    return eps * k_max / ((1 - eps) * max(odds, 1e-12))


def posterior(p: np.ndarray, obs: np.ndarray, eps: np.ndarray, pi: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At suspects: (best value b* (Q,), its posterior (Q,), the posterior that o is undamaged (Q,)).
    P(b | o) ∝ P(b) · eps · sum_k pi_k K_k(o | b) for b != o, and P(o) · (1 - eps) for b == o."""
    rows = np.arange(len(obs))
    k = pi[0] / 255.0 + pi[1] * ONE_BIT[obs] / 8.0 + pi[2] * (obs == 0)[:, None]  # (Q, 256) K(o | b)
    joint = p * eps[:, None] * k
    joint[rows, obs] = p[rows, obs] * (1 - eps)
    post = joint / np.maximum(joint.sum(1, keepdims=True), 1e-300)
    best = post.argmax(1)
    return best.astype(np.uint8), post[rows, best], post[rows, obs]
