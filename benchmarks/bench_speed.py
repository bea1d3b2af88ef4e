"""Repair speed and memory as a user meets them: `fragfix repair` end to end, beside `gzip -6`.

    python benchmarks/bench_speed.py            # 8 MB per kind, medians of 3 (the figures in docs/performance.md)
    python benchmarks/bench_speed.py --mb 2 --runs 1

For each kind of data (clean text, executables, a SQLite database, erased flash 0xFF, zeros, one
repeated byte, random; text and executables with 0.1% and 1% of bytes replaced) it times the CLI
(process start, torch and the model included) and the library's own seconds (the report's
`seconds`), and `gzip -6` on the same file in the same run; the ratio is gzip's time over
fragfix's. Peak memory is polled from /proc every 20 ms: the main process, and the whole tree
(the main process and its stretch workers, pool.py). Two repairs started at once on the same
machine show what sharing the cores costs each. Nothing is asserted: it measures and prints.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_unseen import corrupt  # noqa: E402  (the noise module, seeded)


def text(size: int) -> bytes:
    out, n = [], 0
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        out.append(p.read_bytes())
        n += len(out[-1])
        if n >= size:
            break
    return b"".join(out)[:size]


def executables(size: int) -> bytes:
    out, n = [], 0
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"):
        for p in sorted(Path(d).glob("*")):
            try:
                if p.is_file() and not p.is_symlink() and p.open("rb").read(4) == b"\x7fELF":
                    out.append(p.read_bytes())
                    n += len(out[-1])
            except OSError:
                continue
            if n >= size:
                return b"".join(out)[:size]
    return b"".join(out)[:size]


def database(size: int, tmp: Path) -> bytes:
    path = tmp / "db.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table t (id integer primary key, name text, qty integer, price real, note text)")
    i = 0
    while path.stat().st_size < size:
        con.executemany("insert into t values (?, ?, ?, ?, ?)",
                        [(i + k, f"item-{(i + k) * 7919 % 100003:06d}", (i + k) % 97, ((i + k) % 1000) / 8,
                          "ok" if (i + k) % 5 else "check stock") for k in range(5000)])
        con.commit()
        i += 5000
    con.close()
    return path.read_bytes()[:size]


def kinds(size: int, tmp: Path) -> dict[str, bytes]:
    t, x = text(size), executables(size)
    return {"text": t, "executable": x, "sqlite": database(size, tmp), "0xFF": b"\xff" * size,
            "zeros": bytes(size), "one byte (A)": b"A" * size, "random": os.urandom(size),
            "text 0.1% bytes": corrupt(t, "byte", 0.001), "text 1% bytes": corrupt(t, "byte", 0.01),
            "executable 0.1% bytes": corrupt(x, "byte", 0.001), "executable 1% bytes": corrupt(x, "byte", 0.01)}


def tree_rss(pid: int) -> tuple[int, int]:
    """(main process RSS, sum over it and its children) in bytes, from /proc."""
    def rss(p: int) -> int:
        try:
            return int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0
    kids = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(c) for c in (t / "children").read_text().split()]
    except OSError:
        pass
    main = rss(pid)
    return main, main + sum(rss(k) for k in kids)


def run_cli(src: Path, dst: Path) -> dict:
    cmd = [sys.executable, "-m", "fragfix", "repair", str(src), "-o", str(dst), "--force", "--json"] + ["-r"] * src.is_dir()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = [0, 0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            m, s = tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], m), max(peak[1], s)
            time.sleep(0.02)
    th = threading.Thread(target=poll)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t
    s = json.loads(out)
    return {"wall": wall, "lib": s["seconds"], "changed": s["totals"]["changed"],
            "rss_main": peak[0] / 2**20, "rss_tree": peak[1] / 2**20}


def gzip_time(src: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["gzip", "-6", "-c", str(src)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/out/speed.json")
    a = ap.parse_args()
    size = int(a.mb * 2**20)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, data in kinds(size, tmp).items():
            f = tmp / "in.bin"
            f.write_bytes(data)
            runs = [run_cli(f, tmp / "out.bin") for _ in range(a.runs)]
            gz = statistics.median(gzip_time(f) for _ in range(a.runs))
            wall = statistics.median(r["wall"] for r in runs)
            lib = statistics.median(r["lib"] for r in runs)
            mb = len(data) / 1e6
            rows.append({"data": name, "mb": round(mb, 1), "cli_mb_s": mb / wall, "lib_mb_s": mb / lib,
                         "gzip6_mb_s": mb / gz, "ratio_cli": gz / wall, "ratio_lib": gz / lib,
                         "changed": runs[0]["changed"], "rss_main_mb": max(r["rss_main"] for r in runs),
                         "rss_tree_mb": max(r["rss_tree"] for r in runs)})
            r = rows[-1]
            print(f"{name:22s} {r['mb']:5.1f} MB  cli {r['cli_mb_s']:6.2f} MB/s  library {r['lib_mb_s']:6.2f} MB/s  "
                  f"gzip -6 {r['gzip6_mb_s']:6.1f} MB/s  ratio {r['ratio_cli']:.3f} / {r['ratio_lib']:.3f}  "
                  f"changed {r['changed']:,}  peak RSS {r['rss_main_mb']:.0f} MB main, {r['rss_tree_mb']:.0f} MB "
                  "with workers", flush=True)
        # small files: one of 4 KB (the process start is the run), and a folder of 250 of them in one run
        small = tmp / "small"
        small.mkdir()
        t = text(250 * 4096)
        for i in range(250):
            (small / f"f{i:03d}.txt").write_bytes(t[i * 4096:(i + 1) * 4096])
        one = [run_cli(small / "f000.txt", tmp / "one.txt") for _ in range(a.runs)]
        many = [run_cli(small, tmp / "many") for _ in range(a.runs)]
        files = {"one_4k_s": statistics.median(r["wall"] for r in one), "one_4k_rss_mb": max(r["rss_main"] for r in one),
                 "folder_250x4k_s": statistics.median(r["wall"] for r in many)}
        print(f"one 4 KB file: {files['one_4k_s']:.2f} s, peak RSS {files['one_4k_rss_mb']:.0f} MB; "
              f"a folder of 250 x 4 KB in one run: {files['folder_250x4k_s']:.2f} s")
        # two repairs at once, on the same machine: each one's time against its time alone
        f = tmp / "in.bin"
        f.write_bytes(corrupt(text(size), "byte", 0.01))
        alone = statistics.median(run_cli(f, tmp / "a.bin")["wall"] for _ in range(a.runs))
        both = []
        for _ in range(a.runs):
            res = [None, None]
            ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, run_cli(f, tmp / f"c{i}.bin"))) for i in (0, 1)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            both.append(max(r["wall"] for r in res))
        conc = {"alone_s": alone, "together_s": statistics.median(both), "slowdown": statistics.median(both) / alone}
        print(f"two repairs at once (text, 1% bytes): {conc['together_s']:.1f} s each against {alone:.1f} s alone "
              f"({conc['slowdown']:.2f}x)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"rows": rows, "small_files": files, "concurrent": conc, "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
