"""fragfix benchmark, "never trained on": repair quality on kinds of file the model never saw.

    python benchmarks/bench_unseen.py                      # the bundled model, files on this machine
    python benchmarks/bench_unseen.py --model other.safetensors --dir ~/src --kb 256

Kinds are file extensions. A kind counts as never seen when no file of it was in the model's
training data (the recipe records its kinds; the bundled model also holds out whole kinds on
purpose, `sample.HOLD_OUT_GROUPS[0]`). Files come from the installation's held-out kinds, /usr/share
and any --dir; up to --kb KB per kind from several files, the kinds with the most files first.
Per kind, each damaged with the noise module (byte substitution 1% and 5%, bit flips 0.1% of bits)
and repaired with `fragfix repair`'s defaults (the learned rule): errors removed; the same with the
bundled model's gate (--rule model); clean bytes changed when the undamaged data goes through (per
100 KB); the per-file predictor's bits/byte on the clean data (two-sided and leave-one-out: each byte
predicted from the rest of the file) beside `xz -9e` and `zstd -19` of the same bytes; its top-1 at
the damaged bytes (byte 1%) beside the errors removed (the gap is the decision's loss); the bundled
model's own top-1 there; repair MB/s (median of the byte-1% repairs). Nothing is asserted: it measures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from fragfix.model.autoencoder import encode_input
from fragfix.model.bundled import resolve_model_path
from fragfix.model.checkpoints import load_model
from fragfix.rule.decide import RepairConfig, repair_bytes
from fragfix.model.inference import Scorer
from fragfix.training.noise import NoiseGenerator, NoiseSpec
from fragfix.training.sample import eligible, installation_sample, kind_name, python_sample

CASES = (("byte", 0.01), ("byte", 0.05), ("bitflip", 0.001))
PER_FILE = 48 << 10  # at most this much of one file, so a kind is several files


def trained_kinds(info: dict) -> set[str]:
    kinds = info.get("data", {}).get("kinds")
    if kinds:
        return set(kinds)
    # a model from before recipes recorded their kinds: the standard library's text and binaries
    return {kind_name(p) for p in python_sample(("text", "binary"))[0]}


def find(trained: set[str], roots: list[Path], kb: int, max_kinds: int, seed: int = 0) -> dict[str, bytes]:
    files: dict[str, list[Path]] = {}
    for p in installation_sample(0)["held_kinds"]:
        files.setdefault(kind_name(p), []).append(p)
    for root in roots:
        for dp, dn, names in os.walk(root):
            dn.sort()
            for name in sorted(names):
                p = Path(dp) / name
                k = kind_name(p)
                if k not in trained and k != "(none)" and eligible(p, 2048):
                    files.setdefault(k, []).append(p)
    out, count = {}, {}
    for k, paths in files.items():
        if k in trained:
            continue
        paths = sorted(set(paths))
        random.Random(seed).shuffle(paths)
        data, n = [], 0
        for p in paths:
            b = p.read_bytes()[:PER_FILE]
            data.append(b)
            n += len(b)
            if n >= kb << 10:
                break
        if n >= 16 << 10:
            out[k], count[k] = b"".join(data)[:kb << 10], len(paths)
    # the commonest kinds (most files) first: a kind is more than one big file
    return dict(sorted(out.items(), key=lambda kv: (-count[kv[0]], kv[0]))[:max_kinds])


def corrupt(data: bytes, kind: str, p: float, seed: int = 1) -> bytes:
    """`data` damaged by the noise module, fragment by fragment (a tail under 512 bytes as it was);
    bench.py uses it too."""
    n = len(data) // 512 * 512
    t = torch.frombuffer(bytearray(data[:n]), dtype=torch.uint8).view(-1, 512)
    return bytes(NoiseGenerator(NoiseSpec(kind, p), seed=seed)(t).fragments.reshape(-1).numpy()) + data[n:]


def removed(clean: bytes, bad: bytes, out: bytes) -> float:
    c, b, o = (np.frombuffer(x, np.uint8) for x in (clean, bad, out))
    before, after = int((c != b).sum()), int((c != o).sum())
    return 1 - after / before if before else 0.0


@torch.no_grad()
def top1(model, clean: bytes, bad: bytes) -> float:
    """The model's most likely byte equals the original at the damaged positions (share)."""
    n = len(clean) // 512 * 512
    c = torch.frombuffer(bytearray(clean[:n]), dtype=torch.uint8).view(-1, 512)
    b = torch.frombuffer(bytearray(bad[:n]), dtype=torch.uint8).view(-1, 512)
    hit, total = 0, 0
    for i in range(0, len(c), 64):
        guess = model(encode_input(b[i:i + 64], None, "categorical")).argmax(1)  # (rows, 512)
        wrong = b[i:i + 64] != c[i:i + 64]
        hit += int((guess[wrong] == c[i:i + 64][wrong].long()).sum())
        total += int(wrong.sum())
    return hit / max(total, 1)


def compressed_bits(data: bytes) -> dict:
    """bits/byte of `xz -9e` and `zstd -19` on the same bytes (None where zstd is not installed)."""
    import lzma
    import shutil
    import subprocess
    out = {"xz_bits": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) * 8 / len(data), "zstd_bits": None}
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-19", "-c", "-q"], input=data, capture_output=True, check=True).stdout
        out["zstd_bits"] = len(z) * 8 / len(data)
    return out


def predictor(clean: bytes, bad: bytes) -> dict:
    """The per-file predictor: bits/byte on the clean data, top-1 at the damaged bytes of `bad`."""
    from fragfix.rule.filemodel import FileModel
    c, b = np.frombuffer(clean, np.uint8).copy(), np.frombuffer(bad, np.uint8).copy()
    fm = FileModel(c, np.ones(len(c), bool))
    bits = float(-np.log2(fm.p_observed(np.arange(len(c)))).mean())
    fm = FileModel(b, np.ones(len(b), bool))
    wrong = np.flatnonzero(c != b)
    right = sum(int((fm.dense(wrong[i:i + 4096]).argmax(1) == c[wrong[i:i + 4096]]).sum())
                for i in range(0, len(wrong), 4096))
    return {"predictor_bits": bits, "top1_learned_byte_0.01": right / max(len(wrong), 1)}


def run(model_path: Path, roots: list[Path], kb: int = 128, max_kinds: int = 10) -> list[dict]:
    import time
    model, info = load_model(model_path)
    scorer = Scorer(model, "bf16")
    rows = []
    for kind, clean in find(trained_kinds(info), roots, kb, max_kinds).items():
        row = {"kind": kind, "bytes": len(clean)}
        out = repair_bytes(scorer, clean, RepairConfig())
        row["clean_changed_per_100kb"] = float((np.frombuffer(out, np.uint8) != np.frombuffer(clean, np.uint8)).sum()
                                               * 100_000 / len(clean))
        for noise, level in CASES:
            bad = corrupt(clean, noise, level)
            t = time.perf_counter()
            row[f"removed_{noise}_{level:g}"] = removed(clean, bad, repair_bytes(scorer, bad, RepairConfig()))
            if (noise, level) == ("byte", 0.01):
                row["mb_per_s"] = len(bad) / 1e6 / (time.perf_counter() - t)
                row["removed_model_rule_byte_0.01"] = removed(
                    clean, bad, repair_bytes(scorer, bad, RepairConfig(rule="model")))
                row["top1_at_damage_byte_0.01"] = top1(model, clean, bad)
                row.update(predictor(clean, bad))
        row.update(compressed_bits(clean))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


COLUMNS = (("removed, byte 1%", "removed_byte_0.01", "{:.0%}"), ("byte 5%", "removed_byte_0.05", "{:.0%}"),
           ("bit flips 0.1%", "removed_bitflip_0.001", "{:.0%}"),
           ("predictor top-1 at damage", "top1_learned_byte_0.01", "{:.0%}"),
           ("model rule, byte 1%", "removed_model_rule_byte_0.01", "{:.0%}"),
           ("model top-1", "top1_at_damage_byte_0.01", "{:.0%}"),
           ("predictor bits/byte", "predictor_bits", "{:.2f}"), ("xz -9e", "xz_bits", "{:.2f}"),
           ("zstd -19", "zstd_bits", "{:.2f}"), ("clean bytes changed /100 KB", "clean_changed_per_100kb", "{:.1f}"),
           ("MB/s", "mb_per_s", "{:.2f}"))


def table(rows: list[dict]) -> str:
    fmt = lambda f, v: "n/a" if v is None else f.format(v)  # noqa: E731
    lines = ["| kind never trained on | KB | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['bytes'] >> 10} | " + " | ".join(fmt(f, r.get(k)) for _, k, f in COLUMNS) + " |")
    if rows:
        mean = {k: (float(np.mean([r[k] for r in rows])) if all(r.get(k) is not None for r in rows) else None)
                for _, k, _ in COLUMNS}
        lines.append("| **mean** | | " + " | ".join(fmt(f, mean[k]) for _, k, f in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--dir", action="append", default=[], help="more folders to take files from (repeatable)")
    ap.add_argument("--kb", type=int, default=128, help="KB per kind")
    ap.add_argument("--kinds", type=int, default=10, help="at most this many kinds")
    ap.add_argument("--out", default="benchmarks/out/unseen.json")
    a = ap.parse_args()
    roots = [r for r in [Path("/usr/share")] + [Path(d) for d in a.dir] if r.is_dir()]
    rows = run(resolve_model_path(a.model), roots, a.kb, a.kinds)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
