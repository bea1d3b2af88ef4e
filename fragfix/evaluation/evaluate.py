"""Evaluation: corrupt held-out fragments at each noise kind x level, repair them with the very
same `decide()` that `fragfix repair` uses, and score the result against the originals.

Every model is compared with the do-nothing baseline (the damaged data itself). Deterministic:
fragments are taken evenly spaced, and each kind x level draws its noise from its own seed.
"""
from __future__ import annotations

import lzma
import math
import shutil
import subprocess
import time
import zlib
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fragfix.model.autoencoder import encode_input
from fragfix.config import EvalConfig, Runtime  # noqa: F401  (EvalConfig re-exported)
from fragfix.model.bundled import resolve_model_path
from fragfix.model.inference import as_scorer, load_scorer
from fragfix.rule.decide import decide, decide_windows
from fragfix.rule.filemodel import FileModel
from fragfix.rule.learned import rule_constants
from fragfix.training.sample import HOLD_OUT_GROUPS, installation_sample, kind_name, kind_of, python_sample, stdlib_root
from fragfix.errors import InvalidInput
from fragfix.training.fragments import FragmentDataset, list_files
from fragfix.training.noise import NoiseGenerator, NoiseSpec
from fragfix.rule.pool import stretch_pool


def evenly(ds: FragmentDataset, n: int) -> torch.Tensor:
    """n fragments spread evenly over a dataset (all of it when smaller): (n, 512) uint8."""
    if len(ds) == 0:
        return torch.zeros(0, 512, dtype=torch.uint8)
    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(np.int64))
    return torch.stack([ds[int(i)] for i in idx])


def load_fragments(cfg: EvalConfig) -> tuple[list[tuple[str, torch.Tensor]], str]:
    """[(data name, (n, 512) uint8 clean fragments)], and a description of where they came from.
    A folder is scored per kind of file in it (extension), each kind repaired in its own window."""
    if cfg.data:
        files = list_files(cfg.data)
        kinds: dict[str, list] = {}
        for p in files:
            kinds.setdefault(kind_name(p), []).append(p)
        big = sorted(kinds, key=lambda k: -sum(_size(p) for p in kinds[k]))
        if len(big) > MAX_KINDS:  # the largest kinds by bytes, the rest together
            kinds["other"] = [p for k in big[MAX_KINDS - 1:] for p in kinds.pop(k)]
        each = max(cfg.max_fragments // len(kinds), 32) if kinds else 0
        groups = [(k, evenly(FragmentDataset(v, partial="drop"), each)) for k, v in sorted(kinds.items())]
        groups = [(k, g) for k, g in groups if len(g)]
        if not groups:
            raise InvalidInput("no fragments of 512 bytes or more in the evaluation data")
        return groups, ", ".join(cfg.data) + " (scored per kind of file)"
    _, held = python_sample(("text", "binary"))
    unseen = installation_sample(0)["held_kinds"]
    groups = [(k, evenly(FragmentDataset([p for p in held if kind_of(p) == k], partial="drop"), cfg.max_fragments // 2))
              for k in ("text", "binary")]
    groups.append(("unseen kinds", evenly(FragmentDataset(unseen, partial="drop"), cfg.max_fragments // 4)))
    groups = [(k, g) for k, g in groups if len(g)]  # an installation without files of a group has no row for it
    return groups, (f"held-out files of {stdlib_root()} (text and binary, half each, scored apart) and files of "
                    f"kinds the bundled model never trained on ({HOLD_OUT_GROUPS[0][0]}: "
                    f"{' '.join(HOLD_OUT_GROUPS[0][1])}; a quarter more)")


MAX_KINDS = 8  # kinds of file scored apart in a folder


def _size(p) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def noise_seed(seed: int, kind: str, level: float) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{kind}:{level!r}".encode())) % (2 ** 63)


def score(clean: torch.Tensor, damaged: torch.Tensor, repaired: torch.Tensor) -> dict:
    wrong_before = damaged != clean
    wrong_after = repaired != clean
    b, a = int(wrong_before.sum()), int(wrong_after.sum())
    hit = wrong_before.any(1)
    return {"ber_before": b / clean.numel(), "ber_after": a / clean.numel(),
            "removed": (1 - a / b) if b else 0.0,
            "fixed": int((wrong_before & ~wrong_after).sum()), "broken": int((~wrong_before & wrong_after).sum()),
            "fragments_recovered": float((~wrong_after.any(1) & hit).sum() / hit.sum()) if hit.any() else 1.0}


@torch.no_grad()
def clean_bits_per_byte(model, noisy: torch.Tensor, unknown, clean: torch.Tensor, damaged: torch.Tensor) -> float | None:
    """The model's cross-entropy (bits/byte) on the bytes noise left clean, given the damaged input."""
    if model.config.head != "categorical":
        return None
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(clean), 256):
        x = encode_input(noisy[i:i + 256], None if unknown is None else unknown[i:i + 256], "categorical").to(dev)
        ce = F.cross_entropy(model(x).float(), clean[i:i + 256].long().to(dev), reduction="none").cpu()
        keep = ~damaged[i:i + 256]
        total += float(ce[keep].sum())
        n += int(keep.sum())
    return total / max(n, 1) / math.log(2)


BATCH_ROWS = 16384  # fragments (8 MB) of several cells decided in one call


def _decide_cells(scorer, frags: list[torch.Tensor], unknown: list, cfg) -> list[torch.Tensor]:
    """Each cell's fragments repaired as decide_windows() would repair them alone. Under the learned
    rule every cell (and every window of a cell) is a piece of its own, and each piece learns on its
    own, so cells go to decide() together, BATCH_ROWS at a time, and their stretches run side by side
    on the pool's workers; the model rule pools context counts over a window, so its cells go alone."""
    if cfg.rule != "learned" or (scorer is not None and as_scorer(scorer).head == "sigmoid"):
        return [decide_windows(scorer, f, u, cfg) for f, u in zip(frags, unknown)]
    out, batch = [], []

    def flush():
        if batch:
            f, u, pieces = (torch.cat(t) for t in zip(*batch))
            out.extend(decide(scorer, f, u, cfg, None, pieces).fragments.split([len(b[0]) for b in batch]))
            batch.clear()
    piece = rows = 0
    for f, u in zip(frags, unknown):
        u = torch.zeros(f.shape, dtype=torch.bool) if u is None else u
        ids = piece + torch.arange(len(f)) // cfg.window_fragments  # a window of the cell: a piece, as decide_windows cuts
        piece += -(-len(f) // cfg.window_fragments)
        if batch and rows + len(f) > BATCH_ROWS:
            flush()
            rows = 0
        batch.append((f, u, ids))
        rows += len(f)
    flush()
    return out


def evaluate(cfg: EvalConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the grid; returns {"settings", "rows", "samples"} (rows: one per data x model x kind x level;
    the default sample is scored as three groups, held-out text, held-out binaries and kinds never
    trained on, and a folder per kind of file, each group repaired in its own window)."""
    rt = cfg.runtime
    paths = [resolve_model_path(m) for m in (cfg.models or [None])]
    models = [(str(p), load_scorer(p, rt.device, rt.precision, rt.batch_fragments)[0]) for p in paths]
    groups, described = load_fragments(cfg)
    grid = [(name, clean, k, lv) for name, clean in groups for k, lv in cfg.cells]
    rows, samples = [], []
    with stretch_pool(rt.threads):  # the learned rule's stretches on worker processes (pool.py)
        for at in range(0, len(grid), len(cfg.cells)):  # one data group: all its cells decided together
            cells = grid[at:at + len(cfg.cells)]
            noisy = [NoiseGenerator(NoiseSpec(k, lv), seed=noise_seed(cfg.seed, k, lv))(clean)
                     for _, clean, k, lv in cells]
            unknown = [n.erased if (k == "zero" and cfg.zero_as_unknown) else None for n, (_, _, k, _) in zip(noisy, cells)]
            outs = {}  # model path -> (each cell's repaired fragments, seconds per cell)
            for path, scorer in models:
                t0 = time.perf_counter()
                repaired = _decide_cells(scorer, [n.fragments for n in noisy], unknown, cfg.repair)
                outs[path] = (repaired, (time.perf_counter() - t0) / len(cells))
            for j, (name, clean, kind, level) in enumerate(cells):
                frags, unk = noisy[j].fragments, unknown[j]
                damaged = frags != clean
                rows.append({"model": "none (damaged)", "data": name, "noise": kind, "level": level,
                             **score(clean, frags, frags), "bits_per_byte": None, "mb_per_s": None})
                for path, scorer in models:
                    out, secs = outs[path][0][j], outs[path][1]
                    rows.append({"model": path, "data": name, "noise": kind, "level": level,
                                 **score(clean, frags, out),
                                 "bits_per_byte": clean_bits_per_byte(scorer.model, frags, unk, clean, damaged),
                                 "mb_per_s": clean.numel() / secs / 1e6})
                    # samples: the first model's, spread over the noise kinds, each at its middle level
                    share = -(-cfg.samples // len(cfg.kinds))
                    mine = [lv for k, lv in cfg.cells if k == kind]
                    if path == models[0][0] and level == mine[len(mine) // 2] and len(samples) < cfg.samples:
                        samples += pick_samples(clean, frags, out, unk, kind, level,
                                                min(share, cfg.samples - len(samples)))
                if progress:
                    progress(at + j + 1, len(grid))
    predictor = {name: predictor_bits(clean) for name, clean in groups}
    settings = {"data": described, "models": [p for p, _ in models], "seed": cfg.seed,
                "fragments": sum(len(c) for _, c in groups), "groups": [name for name, _ in groups],
                "kinds": cfg.kinds, "levels": cfg.levels, **cfg.repair.gate(),
                **({"rule_constants": rule_constants()} if cfg.repair.rule == "learned" else {}),
                "zero_as_unknown": cfg.zero_as_unknown,
                "precision": "bf16" if models[0][1].bf16 else "fp32", "device": str(models[0][1].device)}
    return {"settings": settings, "rows": rows, "samples": samples, "predictor": predictor}


def predictor_bits(clean: torch.Tensor) -> dict:
    """What the per-file predictor knows of a group's clean bytes: its bits/byte (two-sided and
    leave-one-out: each byte from all the others, so below what any compressor can reach) beside
    `xz -9e` and `zstd -19` of the same bytes (zstd: None where its command is not installed)."""
    data = clean.reshape(-1).numpy()
    if len(data) == 0:
        return {"bits_per_byte": None, "xz_bits": None, "zstd_bits": None}
    fm = FileModel(data.copy(), np.ones(len(data), bool))
    out = {"bits_per_byte": float(-np.log2(fm.p_observed(np.arange(len(data)))).mean()),
           "xz_bits": len(lzma.compress(data.tobytes(), preset=9 | lzma.PRESET_EXTREME)) * 8 / len(data),
           "zstd_bits": None}
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-19", "-c", "-q"], input=data.tobytes(), capture_output=True)
        out["zstd_bits"] = len(z.stdout) * 8 / len(data) if z.returncode == 0 else None
    return out


def pick_samples(clean, damaged, repaired, unknown, kind, level, n) -> list[dict]:
    """Up to n damaged fragments of this grid cell, as byte lists for the hex view and pictures
    (`unknown`: the positions given to the repair as unknown)."""
    hit = ((damaged != clean).any(1)).nonzero().squeeze(1)[:n].tolist()
    return [{"noise": kind, "level": level, "index": i, "original": clean[i].tolist(),
             "damaged": damaged[i].tolist(), "repaired": repaired[i].tolist(),
             "unknown": [] if unknown is None else unknown[i].nonzero().squeeze(1).tolist()} for i in hit]
