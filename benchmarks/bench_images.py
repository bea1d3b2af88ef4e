"""Disk images from GNU ddrescue: fragfix repair with a mapfile, against the truth and gzip -6.

Builds an image of real files found on this machine (Python's standard library, documentation,
shared libraries), 4 KiB aligned as a filesystem would place them, with some files stored twice
(backup copies), zeroes whole 512-byte sectors and 4 KiB blocks and marks them '-' in a ddrescue
mapfile, repairs it, and prints:

- bytes changed in '+' regions (every one is harm);
- unknown bytes right: in sectors whose content exists elsewhere in the image, and in text-like
  sectors with no copy anywhere (the model alone: the figure the next model must raise);
- repair time against `gzip -6` on the same image (medians of interleaved runs), and peak memory
  (GNU time's maximum resident set of the repair process).

    python benchmarks/bench_images.py                  # 64 MB image, 0.5% bad sectors
    python benchmarks/bench_images.py --mb 256 --bad 0.0005
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from fragfix.files.mapfile import format_mapfile

SECTOR, BLOCK = 512, 4096


def real_files(limit: int) -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/share/doc"), Path("/usr/lib/x86_64-linux-gnu")]
    out, total = [], 0
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            try:
                if p.is_symlink() or not p.is_file() or not 256 <= p.stat().st_size <= 4 << 20:
                    continue
            except OSError:
                continue
            out.append(p)
            total += p.stat().st_size
            if total > limit * 3:
                return out
    return out


def build(folder: Path, mb: int, bad: float, seed: int) -> dict:
    """The image, its mapfile, the truth, and which sectors have a copy elsewhere."""
    rng = random.Random(seed)
    files = real_files(mb << 20)
    rng.shuffle(files)
    size = mb << 20
    img = bytearray(size)
    placed, pos = [], 0
    for p in files:
        data = p.read_bytes()
        copies = 2 if rng.random() < 0.1 else 1  # one file in ten has a backup copy in the image
        for _ in range(copies):
            if pos + len(data) > size:
                break
            img[pos:pos + len(data)] = data
            placed.append((pos, len(data), p, copies))
            pos = -(-(pos + len(data)) // BLOCK) * BLOCK
    truth = bytes(img)
    sectors = size // SECTOR
    n_bad = max(1, int(sectors * bad))
    holes = set()
    while len(holes) < n_bad:
        s = rng.randrange(sectors)
        span = BLOCK // SECTOR if rng.random() < 0.25 else 1  # a quarter of the holes are whole 4 KiB blocks
        s -= s % span
        holes.update(range(s, min(s + span, sectors)))
    holes = sorted(holes)
    for s in holes:
        img[s * SECTOR:(s + 1) * SECTOR] = bytes(SECTOR)
    ranges: list[list[int]] = []
    for s in holes:  # adjacent bad sectors make one '-' range
        if ranges and ranges[-1][1] == s * SECTOR:
            ranges[-1][1] += SECTOR
        else:
            ranges.append([s * SECTOR, (s + 1) * SECTOR])
    (folder / "img").write_bytes(bytes(img))
    (folder / "truth").write_bytes(truth)
    (folder / "img.map").write_text(format_mapfile([tuple(r) for r in ranges], size, "bench_images.py"))
    owner = np.zeros(sectors, dtype=np.int8)  # 2: in a file stored twice, 1: in a file once, 0: free space
    for start, n, _, copies in placed:
        owner[start // SECTOR:-(-(start + n) // SECTOR)] = copies
    return {"holes": holes, "owner": owner}


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = build(tmp, args.mb, args.bad, args.seed)
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(tmp / "rss"), sys.executable, "-m", "fragfix", "repair",
               str(tmp / "img"), "--mapfile", str(tmp / "img.map"), "-o", str(tmp / "out"), "--report",
               str(tmp / "r.json"), "--force", *args.extra]
        t_gzip, t_fix, rss = [], [], []
        for _ in range(args.runs):  # interleaved, medians: the machine is shared and noisy
            t0 = time.perf_counter()
            subprocess.run(["gzip", "-6", "-c", str(tmp / "img")], stdout=subprocess.DEVNULL, check=True)
            t_gzip.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
            t_fix.append(time.perf_counter() - t0)
            rss.append(int((tmp / "rss").read_text().split()[-1]) / 1024)  # the repair's own peak
        t_gzip, t_fix, rss = statistics.median(t_gzip), statistics.median(t_fix), max(rss)
        img = np.frombuffer((tmp / "img").read_bytes(), np.uint8)
        out = np.frombuffer((tmp / "out").read_bytes(), np.uint8)
        truth = np.frombuffer((tmp / "truth").read_bytes(), np.uint8)
        unknown = np.zeros(len(img), bool)
        for s in meta["holes"]:
            unknown[s * SECTOR:(s + 1) * SECTOR] = True
        report = json.loads((tmp / "r.json").read_text())
    sec = np.array(meta["holes"])
    right = (out == truth).reshape(-1, SECTOR)[sec]  # (holes, 512)
    wrong_before = (img != truth).reshape(-1, SECTOR)[sec]
    owner = meta["owner"][sec]
    text = np.array([(np.isin(truth[s * SECTOR:(s + 1) * SECTOR], np.r_[9, 10, 13, 32:127]).mean() >= 0.85)
                     for s in sec])

    def share(mask):
        m = mask[:, None] & wrong_before  # only bytes that were wrong (a zeroed zero is right already)
        return float(right[m].mean()) if m.any() else float("nan")
    return {
        "image_mb": args.mb, "bad_sectors": len(sec), "bad_share": args.bad,
        "plus_bytes_changed": int(((out != img) & ~unknown).sum()),
        "unknown_right_all": share(np.ones(len(sec), bool)),
        "unknown_right_with_copy": share(owner == 2), "sectors_with_copy": int((owner == 2).sum()),
        "sectors_with_copy_exact": int((right.all(1) & (owner == 2)).sum()),
        "unknown_right_text_no_copy": share((owner == 1) & text), "text_sectors_no_copy": int(((owner == 1) & text).sum()),
        "unknown_right_other_no_copy": share((owner == 1) & ~text),
        "copies_used": len(report.get("copies", [])),
        "copies_exact": sum(bool((out[c["start"]:c["end"]] == truth[c["start"]:c["end"]]).all())
                            for c in report.get("copies", [])),
        "repair_s": round(t_fix, 2), "gzip6_s": round(t_gzip, 2), "ratio_to_gzip6": round(t_fix / t_gzip, 2),
        "peak_rss_mb": round(rss),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--bad", type=float, default=0.005, help="share of sectors unreadable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each (medians)")
    ap.add_argument("extra", nargs="*", help="more options for fragfix repair (after --)")
    r = run(ap.parse_args())
    for k, v in r.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")


if __name__ == "__main__":
    main()
