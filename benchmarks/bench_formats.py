"""fragfix benchmark for checksummed formats: real gzip, zip and PNG files, damaged and repaired.

    python benchmarks/bench_formats.py                 # files found on this machine (see --dir)
    python benchmarks/bench_formats.py --files 12 --budget 10 --dir /some/folder

Files are found by content (not name) under the Python installation, /usr/share and any --dir,
2-200 KB, intact to begin with; a seeded sample of each format is damaged at a random position
(one flipped bit, one wrong byte, two flipped bits within 512 bytes, 30 random bytes) and
repaired with `fragfix.formats.repair` and the same budget as `fragfix repair --format-budget`.
zlib streams are made from held-out text of the standard library (standalone zlib files are rare).
Reported per format and damage: restored bit-exact and verified (what `fragfix repair` writes by
default), probable (found, but among too many candidates to be called verified; written with
--accept-probable) and whether those were right, false "verified" claims, and seconds per file.
Nothing is asserted: it measures and reports.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import sysconfig
import zlib
from pathlib import Path

from fragfix import formats
from fragfix.evaluation.formats_grid import score_grid

def find(roots: list[Path], limit: int, seed: int) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {"gzip": [], "zip": [], "png": []}
    for root in roots:
        for dp, _, names in os.walk(root):
            for name in names:
                p = Path(dp) / name
                try:
                    if not (p.is_file() and 2000 <= p.stat().st_size <= 200_000):
                        continue
                    head = p.read_bytes()
                except OSError:
                    continue
                fmt = formats.detect(head)
                if fmt in found:
                    found[fmt].append(p)
    rng = random.Random(seed)
    out = {}
    for fmt, paths in found.items():
        paths = sorted(set(paths))
        rng.shuffle(paths)
        keep = []
        for p in paths:
            data = p.read_bytes()
            if formats.repair(data, fmt, 5).status == "intact":
                keep.append(data)
            if len(keep) >= limit:
                break
        out[fmt] = keep
    return out


def zlib_samples(limit: int, seed: int) -> list[bytes]:
    from fragfix.training.sample import python_sample
    _, held = python_sample(("text",))
    rng = random.Random(seed)
    files = [p for p in held if p.suffix == ".py" and 6000 <= p.stat().st_size <= 600_000]
    rng.shuffle(files)
    return [zlib.compress(p.read_bytes(), 6) for p in files[:limit]]


def run(samples: dict[str, list[bytes]], budget: float, seed: int, scorer=None) -> list[dict]:
    rows = score_grid(samples, budget, seed, scorer=scorer)
    for r in rows:
        n, exact = r["files"], r["restored_verified"]
        print(f"| {r['format']} | {r['damage']} | {n} | {exact} ({100 * exact / max(n, 1):.0f}%) | {r['probable']} "
              f"({r['probable_right']} right) | {r['false_verified']} | {r['median_s']} | {r['max_s']} |", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", action="append", default=[], help="more folders to take files from (repeatable)")
    ap.add_argument("--files", type=int, default=12, help="files per format")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of search per file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-model", action="store_true", help="search without the bundled model's view")
    ap.add_argument("--out", default="benchmarks/out/formats.json")
    a = ap.parse_args()
    roots = [Path(sys.prefix), Path(sysconfig.get_paths()["purelib"]), Path("/usr/share")] + [Path(d) for d in a.dir]
    samples = find([r for r in roots if r.is_dir()], a.files, a.seed)
    samples["zlib"] = zlib_samples(a.files, a.seed)
    print(f"files per format: { {k: len(v) for k, v in samples.items()} }; budget {a.budget} s per file", flush=True)
    print("| format | damage | files | restored bit-exact, verified | probable (right) | false verified "
          "| median s | max s |\n|---|---|---|---|---|---|---|---|", flush=True)
    scorer = None
    if not a.no_model:  # the bundled model takes part, as in `fragfix repair`
        from fragfix.model.bundled import resolve_model_path
        from fragfix.model.inference import load_scorer
        from fragfix.model.inference import model_scorer
        scorer = model_scorer(load_scorer(resolve_model_path(None), "cpu")[0])
    rows = run(samples, a.budget, a.seed, scorer)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"budget_s": a.budget, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
