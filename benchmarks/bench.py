"""fragfix benchmark: speed, memory and repair quality, printed as tables and written as JSON.

    python benchmarks/bench.py                      # the full run quoted in docs/performance.md
    python benchmarks/bench.py --quick              # a smaller, faster run

The "never trained on" table comes from bench_unseen.py (kinds of file the model never saw).
Inputs are built deterministically from the held-out part of the running Python's standard
library (never trained on), random bytes and gzip output. Speed figures are medians of
repeated runs; gzip -6 runs on the same file in the same run for reference. Nothing here is
asserted: it measures and reports.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import bench_unseen
from bench_unseen import corrupt
from fragfix.model.bundled import resolve_model_path
from fragfix.model.checkpoints import load_model
from fragfix.rule.decide import RepairConfig, repair_bytes
from fragfix.model.inference import Scorer
from fragfix.files.jobs import plan_jobs
from fragfix.files.mapfile import format_mapfile
from fragfix.training.noise import NoiseGenerator, NoiseSpec
from fragfix.recovery.repair import Ranges, repair_files
from fragfix.training.sample import kind_of, python_sample


def build(size: int, kind: str, held: list[Path]) -> bytes:
    if kind == "random":
        return np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    if kind == "gzip":
        return gzip.compress(build(size * 3, "text", held), 6, mtime=0)[:size]
    files = [p for p in held if kind_of(p) == kind]
    out, n = [], 0
    while n < size:
        for p in files:
            b = p.read_bytes()
            out.append(b)
            n += len(b)
            if n >= size:
                break
    return b"".join(out)[:size]


def median_time(fn, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "fragfix", *map(str, args)]


def speed(tmp: Path, model: Path, held, mb: int, runs: int) -> list[dict]:
    rows = []
    for kind in ("text", "binary", "random"):
        f = tmp / f"{kind}.bin"
        f.write_bytes(corrupt(build(mb << 20, kind, held), "byte", 0.01))
        jobs, _ = plan_jobs([f], None, False, True)
        cfg = RepairConfig()
        repair_files(jobs, model, cfg)  # warm-up
        t_fix = median_time(lambda: repair_files(jobs, model, cfg), runs)
        t_gz = median_time(lambda: subprocess.run(["gzip", "-6", "-c", str(f)], stdout=subprocess.DEVNULL, check=True), runs)
        size = f.stat().st_size / 1e6
        rows.append({"data": kind, "mb": round(size, 1), "repair_mb_s": size / t_fix, "gzip6_mb_s": size / t_gz,
                     "ratio": t_gz / t_fix})
    return rows


def many_small(tmp: Path, model: Path, held, n: int) -> dict:
    folder = tmp / "small"
    folder.mkdir()
    data = corrupt(build(n * 4096, "text", held), "byte", 0.01)
    for i in range(n):
        (folder / f"{i:05d}.txt").write_bytes(data[i * 4096:(i + 1) * 4096])
    jobs, _ = plan_jobs([folder], None, True, True)
    t = median_time(lambda: repair_files(jobs, model, RepairConfig()), 1)
    return {"files": n, "file_bytes": 4096, "repair_mb_s": n * 4096 / 1e6 / t}


def training_speed(held_train: list[Path], steps: int) -> dict:
    from fragfix.training.loop import Step, TrainConfig, train
    cfg = TrainConfig(data=[str(p) for p in held_train if kind_of(p) == "text"][:400], val_fraction=0.0,
                      out_dir=tempfile.mkdtemp(), epochs=1, steps_per_epoch=steps, batch_size=128, precision="auto")
    rates = [ev.fragments_per_s for ev in train(cfg) if isinstance(ev, Step)]
    return {"fragments_per_s": rates[-1], "batch_size": 128, "steps": steps, "precision": "bf16 where supported"}


def peak_rss(tmp: Path, model: Path, held, text_mb: int, random_mb: int) -> list[dict]:
    rows = []
    for kind, mb in (("text", text_mb // 4), ("text", text_mb), ("random", random_mb)):
        f = tmp / f"rss_{kind}_{mb}.bin"
        with open(f, "wb") as out:
            block = corrupt(build(16 << 20, kind, held), "byte", 0.01)
            for _ in range(max(1, mb // 16)):
                out.write(block)
        code = ("import resource, subprocess, sys; "
                f"r = subprocess.run({cli('repair', f, '--dry-run', '-m', model)!r}, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        t = time.perf_counter()
        kb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        rows.append({"data": kind, "mb": mb, "peak_rss_mb": kb / 1024, "seconds": time.perf_counter() - t})
        f.unlink()
    return rows


def help_time(runs: int) -> float:
    return median_time(lambda: subprocess.run(cli("--help"), capture_output=True, check=True), runs)


def quality(tmp: Path, model: Path, held, mb: int) -> list[dict]:
    """Black-box, as the issue asks: corrupt a file of held-out data with the noise module, run the
    repair pipeline on it (zeroed runs of 1-16 bytes marked bad in a ddrescue mapfile), compare."""
    rows = []
    for kind in ("text", "binary"):
        clean = build(mb << 20, kind, held)
        n = len(clean) // 512 * 512
        frags = torch.frombuffer(bytearray(clean[:n]), dtype=torch.uint8).view(-1, 512)
        c = np.frombuffer(clean, np.uint8)
        for noise, level in [(k, lv) for k in ("byte", "bitflip", "burst") for lv in (0.001, 0.01, 0.05, 0.1)] + \
                            [("zero", lv) for lv in (0.01, 0.05)]:
            gen = NoiseGenerator(NoiseSpec(noise, level), seed=1, zero_length=(1, 16))
            noisy = gen(frags)
            src, dst, mapf = tmp / f"q_{kind}.bin", tmp / f"q_{kind}.out", None
            src.write_bytes(bytes(noisy.fragments.reshape(-1).numpy()) + clean[n:])
            if noise == "zero":
                bad = Ranges()
                bad.add(np.flatnonzero(noisy.erased.reshape(-1).numpy()))
                ranges = list(zip(bad.starts, bad.ends))
                mapf = tmp / f"q_{kind}.map"
                mapf.write_text(format_mapfile(ranges, len(clean)))
            jobs, _ = plan_jobs([src], dst, False, False, mapf)
            repair_files(jobs, model, RepairConfig(), force=True)
            d, r = np.frombuffer(src.read_bytes(), np.uint8), np.frombuffer(dst.read_bytes(), np.uint8)
            before, after = int((d != c).sum()), int((r != c).sum())
            row = {"data": kind, "noise": noise, "level": level, "errors_before": before, "errors_after": after,
                   "removed": 1 - after / before if before else 0.0}
            if noise == "zero":
                unk = noisy.erased.reshape(-1).numpy()
                row["unknown_filled_right"] = float((r[:n][unk] == c[:n][unk]).mean())
            rows.append(row)
    return rows


def harm(model_path: Path, held, mb: int) -> list[dict]:
    model, _ = load_model(model_path)
    rows = []
    for kind in ("text", "binary", "random", "gzip"):
        clean = build(mb << 20, kind, held)
        out = repair_bytes(Scorer(model, "bf16"), clean, RepairConfig())
        changed = float((np.frombuffer(out, np.uint8) != np.frombuffer(clean, np.uint8)).mean())
        row = {"data": kind, "clean_changed": changed}
        if kind in ("random", "gzip"):
            dam = corrupt(clean, "byte", 0.01)
            rep = repair_bytes(Scorer(model, "bf16"), dam, RepairConfig())
            c = np.frombuffer(clean, np.uint8)
            row["damaged_errors_before"] = int((np.frombuffer(dam, np.uint8) != c).sum())
            row["damaged_errors_after"] = int((np.frombuffer(rep, np.uint8) != c).sum())
        rows.append(row)
    return rows


VARIANTS = {  # the gate/context settings compared in docs/performance.md (frontier table)
    "default (context 2,3,4, damage gate)": {},
    "previous release: --context 3,4 --no-damage-gate": {"context_orders": (3, 4), "damage_gate": False},
    "conservative: --floor 1e-4": {"floor": 1e-4},
    "model alone: --context off": {"context_orders": ()},
}


def frontier(tmp: Path, model: Path, held, mb: int) -> list[dict]:
    """Speed against errors removed and clean bytes changed, per variant, on the same text file."""
    clean = build(mb << 20, "text", held)
    src, dst = tmp / "frontier.bin", tmp / "frontier.out"
    rows = []
    for name, kw in VARIANTS.items():
        cfg = RepairConfig(**kw)
        row = {"variant": name}
        for noise, level in (("byte", 0.01), ("byte", 0.05), ("none", 0.0)):
            src.write_bytes(corrupt(clean, noise, level) if noise != "none" else clean)
            jobs, _ = plan_jobs([src], dst, False, False)
            t = time.perf_counter()
            repair_files(jobs, model, cfg, force=True)
            secs = time.perf_counter() - t
            c, d, r = (np.frombuffer(b, np.uint8) for b in (clean, src.read_bytes(), dst.read_bytes()))
            if noise == "none":
                row["clean_changed"] = float((r != c).mean())
            else:
                row[f"removed_{noise}_{level:g}"] = 1 - int((r != c).sum()) / int((d != c).sum())
                if level == 0.01:
                    row["repair_mb_s"] = len(clean) / 1e6 / secs
        rows.append(row)
    return rows


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/results.json")
    ap.add_argument("--only", default="", help="comma-separated steps to run (default: all), e.g. quality,harm")
    a = ap.parse_args()
    model = resolve_model_path(a.model)
    _, held = python_sample(("text", "binary"))
    train_files, _ = python_sample(("text",))
    q = a.quick
    res = {"machine": machine(), "model": str(model)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        steps = [("help", lambda: {"median_s": help_time(5)}),
                 ("repair_speed", lambda: speed(tmp, model, held, 2 if q else 8, 3)),
                 ("many_small_files", lambda: many_small(tmp, model, held, 200 if q else 1000)),
                 ("training", lambda: training_speed(train_files, 20 if q else 60)),
                 ("peak_rss", lambda: peak_rss(tmp, model, held, 16 if q else 64, 64 if q else 1024)),
                 ("harm", lambda: harm(model, held, 1 if q else 4)),
                 ("quality", lambda: quality(tmp, model, held, 1 if q else 2)),
                 ("frontier", lambda: frontier(tmp, model, held, 1 if q else 2)),
                 ("unseen", lambda: bench_unseen.run(model, [Path("/usr/share")], 64 if q else 128))]
        only = {x.strip() for x in a.only.split(",") if x.strip()}
        for name, fn in steps:
            if only and name not in only:
                continue
            t = time.perf_counter()
            res[name] = fn()
            print(f"{name} ({time.perf_counter() - t:.0f} s): {json.dumps(res[name], default=float)[:2000]}",
                  file=sys.stderr, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1, default=float))
    print_tables(res)


def print_tables(res: dict) -> None:
    m = res["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, python {m['python']}")
    if len(res) < 11:  # a partial run (--only): the raw figures
        print(json.dumps({k: v for k, v in res.items() if k not in ("machine", "model")}, indent=1, default=float))
        return
    print(f"fragfix --help: {res['help']['median_s'] * 1000:.0f} ms (median of 5)")
    print("\n| data (1% byte noise) | size MB | repair MB/s | gzip -6 MB/s | repair / gzip |\n|---|---|---|---|---|")
    for r in res["repair_speed"]:
        print(f"| {r['data']} | {r['mb']} | {r['repair_mb_s']:.2f} | {r['gzip6_mb_s']:.1f} | {r['ratio']:.2f} |")
    s = res["many_small_files"]
    print(f"\n{s['files']} files of {s['file_bytes']} bytes: {s['repair_mb_s']:.2f} MB/s")
    print(f"training: {res['training']['fragments_per_s']:.0f} fragments/s (batch 128)")
    print("\n| peak RSS: data | size MB | peak RSS MB | seconds |\n|---|---|---|---|")
    for r in res["peak_rss"]:
        print(f"| {r['data']} | {r['mb']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    print("\n| do no harm: clean data | bytes changed | damaged (1% byte) errors before -> after |\n|---|---|---|")
    for r in res["harm"]:
        extra = f"{r['damaged_errors_before']} -> {r['damaged_errors_after']}" if "damaged_errors_before" in r else ""
        print(f"| {r['data']} | {r['clean_changed']:.5%} | {extra} |")
    print("\n| data | noise | level | wrong bytes before | after | removed | unknown bytes filled right |\n"
          "|---|---|---|---|---|---|---|")
    for r in res["quality"]:
        filled = f"{r['unknown_filled_right']:.1%}" if "unknown_filled_right" in r else ""
        print(f"| {r['data']} | {r['noise']} | {r['level']:g} | {r['errors_before']} | {r['errors_after']} | "
              f"{r['removed']:+.1%} | {filled} |")
    print("\n| variant | removed, byte 1% | byte 5% | clean text changed | repair MB/s (1% byte) |\n|---|---|---|---|---|")
    for r in res["frontier"]:
        print(f"| {r['variant']} | {r['removed_byte_0.01']:.1%} | {r['removed_byte_0.05']:.1%} | "
              f"{r['clean_changed']:.4%} | {r['repair_mb_s']:.2f} |")
    print("\n" + bench_unseen.table(res["unseen"]))


if __name__ == "__main__":
    main()
