"""fragfix benchmark: gzip and zip files made by encoders other than zlib, damaged and repaired.

    python benchmarks/bench_encoders.py                        # 10 files, one bit and one byte
    python benchmarks/bench_encoders.py --files 20 --kinds bit,byte,two-bits --budget 10

bench_formats.py takes real files found on the machine, and most of those were written by zlib
(Python, Java, libpng). Files people bring may come from GNU gzip, libdeflate (its high levels
parse near-optimally, so copies are not the ones a zlib-like encoder picks) or Info-ZIP `zip`. Here
the same seeded sample of real files (executables, documentation, Python source: 8-150 KB) is
compressed by each encoder found on this machine (`gzip`, libdeflate through ctypes, `zip`),
damaged as in bench_formats.py and repaired with the bundled model taking part. Encoders not
found are skipped and named. Nothing is asserted: it measures and reports.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from fragfix.evaluation.formats_grid import content, score_grid


def sources(n: int, seed: int) -> list[tuple[str, bytes]]:
    pats = ["/usr/bin/*", "/usr/share/doc/*/*", os.path.join(sysconfig.get_paths()["stdlib"], "*.py")]
    pool = []
    for pat in pats:
        for f in sorted(glob.glob(pat)):
            p = Path(f)
            try:
                if p.is_file() and not p.is_symlink() and 8000 <= p.stat().st_size <= 150_000:
                    d = p.read_bytes()
                    if d[:2] != b"\x1f\x8b" and d[:4] != b"PK\x03\x04":
                        pool.append((p.name, d))
            except OSError:
                continue
    return random.Random(seed).sample(pool, min(n, len(pool)))


def encoders() -> tuple[dict, list[str]]:
    found, missing = {}, []
    if shutil.which("gzip"):
        found["GNU gzip -6"] = ("gzip", lambda name, d: subprocess.run(["gzip", "-6", "-c", "-n"], input=d,
                                                                         capture_output=True, check=True).stdout)
    else:
        missing.append("GNU gzip")
    lib = ctypes.util.find_library("deflate")
    if lib:
        ld = ctypes.CDLL(lib)
        ld.libdeflate_alloc_compressor.restype = ctypes.c_void_p
        ld.libdeflate_alloc_compressor.argtypes = [ctypes.c_int]
        ld.libdeflate_free_compressor.argtypes = [ctypes.c_void_p]
        ld.libdeflate_gzip_compress.restype = ctypes.c_size_t
        ld.libdeflate_gzip_compress.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.c_char_p, ctypes.c_size_t]

        def libdeflate(level):
            def enc(name, d):
                c = ld.libdeflate_alloc_compressor(level)
                out = ctypes.create_string_buffer(len(d) + 1024)
                n = ld.libdeflate_gzip_compress(c, d, len(d), out, len(out))  # before out.raw is read
                ld.libdeflate_free_compressor(c)
                return out.raw[:n]
            return enc
        found["libdeflate 6"] = ("gzip", libdeflate(6))
        found["libdeflate 12"] = ("gzip", libdeflate(12))
    else:
        missing.append("libdeflate")
    if shutil.which("zip"):
        def infozip(name, d):
            with tempfile.TemporaryDirectory() as t:
                (Path(t) / name).write_bytes(d)
                subprocess.run(["zip", "-q", "-X", "-j", str(Path(t) / "o.zip"), str(Path(t) / name)], check=True)
                return (Path(t) / "o.zip").read_bytes()
        found["Info-ZIP zip"] = ("zip", infozip)
    else:
        missing.append("Info-ZIP zip")
    return found, missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10, help="files per encoder")
    ap.add_argument("--kinds", default="bit,byte", help="damage kinds: bit, byte, two-bits, heavy")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of search per file")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    from fragfix.model.bundled import resolve_model_path
    from fragfix.model.inference import load_scorer
    from fragfix.model.inference import model_scorer
    scorer = model_scorer(load_scorer(resolve_model_path(None), "cpu")[0])
    srcs = sources(a.files, a.seed)
    found, missing = encoders()
    print(f"{len(srcs)} source files; budget {a.budget} s per file; not found: {', '.join(missing) or 'none'}",
          file=sys.stderr)
    print("| encoder | damage | files | restored bit-exact, verified | content verified | probable (right) "
          "| false verified | median s | max s |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    for label, (fmt, enc) in found.items():
        files = [enc(name, d) for name, d in srcs]
        assert all(content(fmt, f) == d for f, (_, d) in zip(files, srcs)), f"{label}: not what was compressed"
        rows = score_grid({fmt: files}, a.budget, a.seed, scorer=scorer,
                          kinds=tuple(a.kinds.split(",")))
        for r in rows:
            n, exact = r["files"], r["restored_verified"]
            print(f"| {label} | {r['damage']} | {n} | {exact} ({100 * exact / max(n, 1):.0f}%) | {r['content_verified']} "
                  f"| {r['probable']} ({r['probable_right']} right) | {r['false_verified']} | {r['median_s']} "
                  f"| {r['max_s']} |", flush=True)


if __name__ == "__main__":
    main()
