"""fragfix benchmark: two or three damaged copies of one gzip or zip file, merged (formats/merge.py).

    python benchmarks/bench_merge.py                # 20 trials per cell, files of this machine
    python benchmarks/bench_merge.py --trials 50 --seed 3

Archives are made from the Python standard library's own sources (a .tar.gz of 40-120 files, about
0.3-1 MB compressed; a zip of as many, each deflated apart), then each copy is damaged on its own:
- sectors: 1% of the file's 512-byte sectors (at least one) overwritten with random bytes, or zeroed
  as ddrescue leaves an unread sector;
- bytes: 1% of the bytes replaced at random (the same rate in every copy).
Each damaged first copy goes through `formats.repair` with the others as `others` (BUDGET seconds);
a trial counts as
restored when the output is the original bit for bit and the result says verified (content
verified), and as a false claim when it says so and the output differs. Sectors damaged in every
copy at once cannot be merged; the table says how many trials had one. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tarfile
import time
import zipfile
import gzip  # noqa: I001
from pathlib import Path


from fragfix import formats
from fragfix.training.sample import stdlib_root

BUDGET = 10.0  # seconds per file (the CLI's default is 30: a file merging cannot restore is searched alone)


def sources(rng: random.Random, n: int) -> list[Path]:
    files = sorted(p for p in stdlib_root().rglob("*.py") if 2_000 < p.stat().st_size < 200_000)
    return rng.sample(files, n)


def make(kind: str, rng: random.Random) -> bytes:
    if kind == "gzip":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for p in sources(rng, rng.randrange(40, 121)):
                t.add(p, arcname=p.name)
        return gzip.compress(buf.getvalue(), 6, mtime=0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, p in enumerate(sources(rng, rng.randrange(40, 121))):
            z.write(p, f"{i}/{p.name}")
    return buf.getvalue()


def damage(good: bytes, how: str, rng: random.Random) -> tuple[bytes, set[int]]:
    b = bytearray(good)
    hit = set()
    if how == "bytes":
        for i in rng.sample(range(len(b)), max(1, len(b) // 100)):
            b[i] = (b[i] + rng.randrange(1, 256)) % 256
        return bytes(b), set()
    n = len(b) // 512
    for s in rng.sample(range(n), max(1, n // 100)):
        b[s * 512:(s + 1) * 512] = bytes(512) if how == "zeroed" else rng.randbytes(512)
        hit.add(s)
    return bytes(b), hit


def run(trials: int, seed: int) -> list[dict]:
    rows = []
    for kind in ("gzip", "zip"):
        for how in ("zeroed", "random", "bytes"):
            for copies in (2, 3):
                if how != "bytes" and copies == 3:
                    continue
                rng = random.Random(seed)
                ok = false = overlap = 0
                secs = []
                for _ in range(trials):
                    good = make(kind, rng)
                    dmg = [damage(good, how, rng) for _ in range(copies)]
                    overlap += bool(set.intersection(*(h for _, h in dmg))) if how != "bytes" else 0
                    t0 = time.perf_counter()
                    r = formats.repair(dmg[0][0], kind, BUDGET, others=tuple(d for d, _ in dmg[1:]))
                    secs.append(time.perf_counter() - t0)
                    out = r.output(dmg[0][0])
                    claim = r.status == "restored" and r.content_verified
                    ok += claim and out == good
                    false += claim and out != good
                rows.append({"format": kind, "damage": how, "copies": copies, "trials": trials,
                             "restored_verified": ok, "false_claims": false, "sector_in_every_copy": overlap,
                             "median_s": statistics.median(secs), "max_s": max(secs)})
                print(f"{kind:5s} {how:7s} x{copies}: restored verified {ok}/{trials}, false claims {false}, "
                      f"a sector lost in every copy {overlap}, median {statistics.median(secs):.2f} s, "
                      f"max {max(secs):.2f} s", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rows = run(a.trials, a.seed)
    print("| format | damage (each copy) | copies | restored, verified | false claims | a sector lost in every copy | median s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['damage']} 1% | {r['copies']} | {r['restored_verified']} of {r['trials']} | "
              f"{r['false_claims']} | {r['sector_in_every_copy']} | {r['median_s']:.2f} |")


if __name__ == "__main__":
    main()
