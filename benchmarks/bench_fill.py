"""fragfix benchmark: unknown bytes with no copy anywhere, filled from the file itself.

    python benchmarks/bench_fill.py            # the kinds bench_unseen.py uses, 128 KB each

Per kind (the same files as bench_unseen.py), whole 512-byte sectors (8 per kind) and 8-byte runs
(200 per kind) are marked unknown and zeroed, as ddrescue leaves them with a mapfile, and filled by
the default rule (the per-file predictor, learned.fill_runs); the share of their bytes that come
back right. Nothing is asserted: it measures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench_unseen import find, trained_kinds
from fragfix.model.bundled import resolve_model_path
from fragfix.model.checkpoints import load_model
from fragfix.config import RepairConfig
from fragfix.rule.decision import cut
from fragfix.rule.learned import decide_learned

CASES = ((512, 8), (8, 200))  # (run length, runs per kind)


def filled(clean: bytes, length: int, count: int, seed: int = 0) -> float:
    c = np.frombuffer(clean, np.uint8)
    rng = np.random.default_rng(seed)
    unk = np.zeros(len(c), bool)
    for s in rng.choice(len(c) // length - 2, count, replace=False) * length + length:
        unk[s:s + length] = True
    bad = np.where(unk, 0, c).astype(np.uint8)
    frags, u, lengths, _ = cut([(bad.tobytes(), unk)])
    out = decide_learned(frags, u, RepairConfig(), lengths).fragments.reshape(-1)[:len(c)]
    return float((out[unk] == c[unk]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/out/fill.json")
    a = ap.parse_args()
    _, info = load_model(resolve_model_path(None))
    rows = []
    for kind, clean in find(trained_kinds(info), [Path("/usr/share")], a.kb, 10).items():
        rows.append({"kind": kind, **{f"right_{n}x{k}": filled(clean, n, k) for n, k in CASES}})
        print(json.dumps(rows[-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print("| kind | 512-byte sectors right | 8-byte runs right |\n|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['right_512x8']:.0%} | {r['right_8x200']:.0%} |")
    print(f"| **mean** | {np.mean([r['right_512x8'] for r in rows]):.0%} | {np.mean([r['right_8x200'] for r in rows]):.0%} |")


if __name__ == "__main__":
    main()
