import json
import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fragfix.model.checkpoints import load_model
from fragfix.cli.commands import app
from fragfix.rule.decide import RepairConfig, decide, repair_bytes
from fragfix.files.mapfile import parse_mapfile
from fragfix.training.noise import NoiseGenerator, NoiseSpec
from fragfix.recovery.repair import zero_run_mask

from conftest import text_bytes

runner = CliRunner()


def corrupt(data: bytes, kind="byte", p=0.05, seed=1) -> bytes:
    n = len(data) // 512 * 512
    t = torch.frombuffer(bytearray(data[:n]), dtype=torch.uint8).view(-1, 512)
    noisy = NoiseGenerator(NoiseSpec(kind, p), seed=seed)(t).fragments
    return bytes(noisy.reshape(-1).numpy()) + data[n:]


def wrong(a: bytes, b: bytes) -> int:
    return int((np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8)).sum())


@pytest.mark.parametrize("size", [1, 511, 512, 513, 3 * 64 * 1024 + 77])
def test_length_preserved_and_unchanged_bytes_copied(tmp_path, untrained, size):
    """Any size, across several 64 KB windows (--window-mb 0.0625) and a 77-byte tail: the output
    has the input's length and the report lists exactly the bytes that differ."""
    data = random.Random(size).randbytes(size // 2) + text_bytes(size - size // 2, 3)
    src, dst, rep = tmp_path / "in.bin", tmp_path / "out.bin", tmp_path / "r.json"
    src.write_bytes(data)
    r = runner.invoke(app, ["repair", str(src), "-o", str(dst), "-m", str(untrained), "--aggressive",
                            "--report", str(rep), "--threshold", "0.5", "--window-mb", "0.0625"])
    assert r.exit_code == 0, r.output
    out = dst.read_bytes()
    assert len(out) == size
    report = json.loads(rep.read_text())
    assert report["aggressive"] is True and report["context_orders"] == [2, 3, 4] and report["one_bit_factor"] == 3.0
    # every threshold the decision used is in the report: the configs' and the learned rule's own
    assert report["damage_evidence"]["clear_p"] == 1e-3 and report["copy_search"]["anchor"] == 32
    assert report["text_share"] == 0.85 and report["rule_constants"]["channel"]["null_slack"] == 30.0
    changed = {c["offset"]: c for c in report["changes"]}
    assert report["totals"]["changed"] == len(changed) == wrong(data, out)
    for i in np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(out, np.uint8))[:1000]:
        assert changed[int(i)]["old"] == data[i] and changed[int(i)]["new"] == out[i]
    assert src.read_bytes() == data


def test_trained_model_repairs_and_leaves_clean_data_alone(tmp_path, trained):
    clean = text_bytes(64 * 1024, 12345)  # unseen text of the same kind
    damaged = corrupt(clean, "byte", 0.05)
    src, dst, rep = tmp_path / "damaged.txt", tmp_path / "repaired.txt", tmp_path / "r.json"
    src.write_bytes(damaged)
    r = runner.invoke(app, ["repair", str(src), "-o", str(dst), "-m", str(trained), "--report", str(rep), "--json"])
    assert r.exit_code == 0, r.output
    before, after = wrong(clean, damaged), wrong(clean, dst.read_bytes())
    assert after < 0.5 * before, (before, after)
    assert json.loads(r.stdout)["totals"]["changed"] == wrong(damaged, dst.read_bytes())
    model, _ = load_model(trained)
    untouched = repair_bytes(model, clean, RepairConfig())
    assert wrong(clean, untouched) <= 0.001 * len(clean)


def test_mapfile_regions_are_filled_and_reported(tmp_path, trained):
    clean = text_bytes(16 * 1024, 999)
    holes = [(1000, 1008), (5000, 5016), (9000, 9004)]
    damaged = bytearray(clean)
    for a, b in holes:
        damaged[a:b] = bytes(b - a)
    src, dst, rep, mo = tmp_path / "img", tmp_path / "fixed", tmp_path / "r.json", tmp_path / "out.map"
    src.write_bytes(bytes(damaged))
    lines, pos = ["0x0 + 1"], 0
    for a, b in holes:
        lines += [f"{pos:#x} {a - pos:#x} +", f"{a:#x} {b - a:#x} -"]
        pos = b
    lines.append(f"{pos:#x} {len(clean) - pos:#x} +")
    (tmp_path / "m.map").write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["repair", str(src), "-o", str(dst), "-m", str(trained), "--mapfile",
                            str(tmp_path / "m.map"), "--report", str(rep), "--map-out", str(mo)])
    assert r.exit_code == 0, r.output
    out = dst.read_bytes()
    report = json.loads(rep.read_text())
    assert report["totals"]["unknown_bytes"] == 28
    unknown_changes = [c for c in report["changes"] if c["reason"] == "unknown"]
    assert all(any(a <= c["offset"] < b for a, b in holes) for c in unknown_changes)
    right = sum(out[i] == clean[i] for a, b in holes for i in range(a, b))
    assert right >= 7, right  # the zeros were all wrong; a quarter of the holes now hold the true bytes
    guessed = parse_mapfile(mo.read_text()).bad_ranges()
    assert all(any(ga <= a and b <= gb for ga, gb in guessed) for a, b in holes)


def test_zero_run_mask_marks_only_runs_of_at_least_n():
    w = np.array([1, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0, 0], dtype=np.uint8)
    assert zero_run_mask(w, 3).tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
    assert zero_run_mask(w, 5).tolist() == [0] * 12


@pytest.mark.parametrize("where", [1020, 1024, 1019, 2045])
def test_zero_runs_option_marks_runs_spanning_chunk_boundaries(tmp_path, untrained, where):
    """--window-mb 0.0005 reads the file in 512-byte chunks: runs of 8+ zeros that cross, start at or
    end at a chunk boundary are marked whole (the chunks carry their neighbours' edges)."""
    data = bytearray(text_bytes(4096, 5))
    data[where:where + 10] = bytes(10)
    data[3000:3007] = bytes(7)  # too short: never unknown
    src, rep = tmp_path / "z.bin", tmp_path / "r.json"
    src.write_bytes(bytes(data))
    r = runner.invoke(app, ["repair", str(src), "--dry-run", "-m", str(untrained), "--zero-runs", "8",
                            "--window-mb", "0.0005", "--report", str(rep)])
    assert r.exit_code == 0, r.output
    assert json.loads(rep.read_text())["totals"]["unknown_bytes"] == 10


def test_same_input_same_output(tmp_path, trained):
    data = corrupt(text_bytes(20000, 4), "byte", 0.05)
    (tmp_path / "a").write_bytes(data)
    for out in ("o1", "o2"):
        assert runner.invoke(app, ["repair", str(tmp_path / "a"), "-o", str(tmp_path / out), "-m", str(trained)]).exit_code == 0
    assert (tmp_path / "o1").read_bytes() == (tmp_path / "o2").read_bytes()


def test_many_inputs_go_to_a_folder_and_dry_run_writes_only_the_report(tmp_path, untrained):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(text_bytes(2000, 1))
    (src / "sub" / "b.bin").write_bytes(text_bytes(700, 2))
    r = runner.invoke(app, ["repair", str(src), "-r", "-o", str(tmp_path / "out"), "-m", str(untrained),
                            "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "a.bin").stat().st_size == 2000
    assert (tmp_path / "out" / "sub" / "b.bin").stat().st_size == 700
    rep = json.loads((tmp_path / "r.json").read_text())
    assert len(rep["files"]) == 2 and rep["totals"]["size"] == 2700
    r = runner.invoke(app, ["repair", str(src / "a.bin"), "--dry-run", "-m", str(untrained),
                            "--report", str(tmp_path / "d.json")])
    assert r.exit_code == 0 and (tmp_path / "d.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "in", "out", "r.json"]


def test_output_keeps_mode_and_mtime(tmp_path, untrained):
    src = tmp_path / "in.bin"
    src.write_bytes(text_bytes(3000, 1))
    src.chmod(0o640)
    os.utime(src, (1_600_000_000, 1_600_000_000))
    assert runner.invoke(app, ["repair", str(src), "-o", str(tmp_path / "o"), "-m", str(untrained)]).exit_code == 0
    st = (tmp_path / "o").stat()
    assert st.st_mode & 0o777 == 0o640 and int(st.st_mtime) == 1_600_000_000


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.booleans())
def test_any_bytes_keep_their_length(untrained, data, aggressive):
    """Any length (tails shorter than a fragment included); without --aggressive, and without the
    context counts, the gate keeps every byte of an untrained model's near-uniform guesses."""
    model, _ = load_model(untrained)
    out = repair_bytes(model, data, RepairConfig(aggressive=aggressive, context_orders=()))
    assert len(out) == len(data)
    if not aggressive:
        assert out == data


def test_random_bytes_are_left_alone(trained):
    model, _ = load_model(trained)
    data = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    assert wrong(data, repair_bytes(model, data)) == 0


def test_small_files_batched_together_match_one_by_one(tmp_path, trained):
    """The model's part never mixes files; context counts and the damage rate are pooled across the
    window on purpose, so the one-by-one comparison runs without them."""
    src = tmp_path / "many"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        size = int(rng.integers(1, 2500))
        (src / f"f{i:02d}.txt").write_bytes(corrupt(text_bytes(size, i), "byte", 0.05) if size >= 512 else text_bytes(size, i))
    (src / "empty.txt").write_bytes(b"")
    r = runner.invoke(app, ["repair", str(src), "-r", "-o", str(tmp_path / "out"), "-m", str(trained),
                            "--precision", "fp32", "--context", "off", "--no-damage-gate", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["skipped"] == [] and len(summary["files"]) == 13
    assert [f["input"] for f in summary["files"] if f.get("empty")] == [str(src / "empty.txt")]
    for f in sorted(src.glob("f*.txt")):
        one = tmp_path / f"one_{f.name}"
        assert runner.invoke(app, ["repair", str(f), "-o", str(one), "-m", str(trained), "--precision", "fp32",
                                   "--context", "off", "--no-damage-gate"]).exit_code == 0
        assert (tmp_path / "out" / f.name).read_bytes() == one.read_bytes(), f.name


def test_padding_of_a_short_tail_is_never_reported_as_a_change(untrained):
    model, _ = load_model(untrained)
    frags = torch.full((1, 512), ord("a"), dtype=torch.uint8)
    d = decide(model, frags, None, RepairConfig(aggressive=True), lengths=torch.tensor([100]))
    assert not d.changed[0, 100:].any()


def test_the_default_rule_never_loads_the_model_for_plain_files(tmp_path):
    """The learned rule is numpy: a repair of a plain file never imports torch (its start and ~200
    MB), nor of an intact gzip; a damaged one loads the model for its candidates' ranking."""
    import gzip
    import subprocess
    import sys
    src = tmp_path / "notes.txt"
    src.write_bytes(text_bytes(20_000, 3))
    gz = bytearray(gzip.compress(text_bytes(20_000, 4), mtime=0))
    (tmp_path / "intact.gz").write_bytes(gz)
    gz[len(gz) // 2] ^= 0x08
    (tmp_path / "notes.gz").write_bytes(gz)
    code = ("import sys, runpy\n"
            "sys.argv = ['fragfix', 'repair', sys.argv[1], '-o', sys.argv[2], '--json'] + sys.argv[3:]\n"
            "try:\n    runpy.run_module('fragfix', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    seen = []
    for name, more in (("notes.txt", []), ("notes.txt", ["--device", "cpu", "-f"]), ("intact.gz", []), ("notes.gz", [])):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / name), str(tmp_path / f"out-{name}")] + more,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        seen.append(r.stderr.strip().splitlines()[-1])
        assert json.loads(r.stdout)["model"]["sha256"]  # the report names the model all the same
    assert seen == ["False", "False", "False", "True"]
    assert (tmp_path / "out-notes.txt").read_bytes() == src.read_bytes()
