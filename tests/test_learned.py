"""The default rule: the per-file predictor (filemodel.py), the channel (channel.py), and the
decision and fills built on them (learned.py). Small, deterministic inputs; exact bytes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fragfix.rule import channel
from fragfix.config import RepairConfig
from fragfix.rule.decide import repair_bytes
from fragfix.rule.experts import EXPERTS
from fragfix.rule.filemodel import FileModel
from fragfix.rule.learned import decide_learned
from fragfix.rule.decision import cut

from conftest import text_bytes


def arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.uint8).copy()


def substitute(data: bytes, p: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = arr(data)
    hit = rng.random(len(a)) < p
    a[hit] = (a[hit].astype(np.int64) + rng.integers(1, 256, int(hit.sum()))) % 256  # always another value
    return a.tobytes()


def test_a_byte_never_vouches_for_itself():
    """Leave-one-out: a value that occurs once, at the byte asked about, is as unlikely as one never
    seen; the same value seen elsewhere in the same place is likely."""
    a = arr(b"abc" * 40 + b"aXc" + b"abc" * 40)
    fm = FileModel(a, np.ones(len(a), bool))
    odd = int(np.flatnonzero(a == ord("X"))[0])
    p = fm.p_observed(np.array([odd, odd + 1]))
    assert p[0] < 1e-4 < 0.5 < p[1]
    d = fm.dense(np.array([odd]))
    assert d.shape == (1, 256) and d.sum() == pytest.approx(1.0) and d.argmax() == ord("b")
    assert d[0, ord("b")] > 0.9


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=600), st.data())
def test_the_distribution_is_a_distribution_everywhere(data, draw):
    a = arr(data)
    known = np.array(draw.draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a))), bool)
    fm = FileModel(a, known)
    q = np.arange(len(a))
    d = fm.dense(q)
    assert np.all(d > 0) and np.allclose(d.sum(1), 1.0)
    kq = q[known]
    if len(kq):  # the screen's P(o) is the dense distribution's, at the observed byte
        assert np.allclose(fm.p_observed(kq), d[known, a[known]])


def test_the_damage_rate_is_the_excess_over_the_files_own_novelty():
    clean = text_bytes(65536, 3)
    fm = FileModel(arr(clean), np.ones(len(clean), bool))
    from fragfix.rule.learned import _kinds, _rate
    q = np.arange(len(clean))
    p_o = fm.p_observed(q)
    assert _rate(fm, q, p_o, _kinds(fm, q, p_o))[0] == channel.EPS_MIN  # clean: no evidence at all
    for p in (0.002, 0.01, 0.04):
        bad = arr(substitute(clean, p, 1))
        fm = FileModel(bad, np.ones(len(bad), bool))
        p_o = fm.p_observed(q)
        lcb, rate = _rate(fm, q, p_o, _kinds(fm, q, p_o))
        assert 0.5 * p < lcb <= rate < 1.2 * p


def test_bit_flips_stand_out_among_the_files_own_novelty():
    """A file whose own odd bytes fill the whole tail hides 60 bit flips in 200,000 bytes there; the
    flips are one bit from a likely value and the novelty is not, so the explained view finds them."""
    n, e = 200_000, ord("e")
    row = np.full(256, 1e-7)
    row[e] = 1.0 - 255e-7                      # every position expects 'e', any other value at 1e-7
    sample, sample_obs = np.tile(row, (2048, 1)), np.full(2048, e)
    p_obs = np.full(n, row[e])
    p_obs[:160] = 1e-7                         # 100 novel bytes of the file's own, then 60 bit flips
    obs = np.full(n, e)
    obs[:100] = ord("Q")
    obs[100:160] = e ^ (1 << np.arange(60) % 8)
    pi = np.array([0.0, 1.0, 0.0])
    dense = np.tile(row, (160, 1))
    why = np.zeros(n, bool)
    why[:160] = channel.explained(dense, obs[:160], pi)
    assert why[100:160].all() and not why[:100].any()
    assert channel.tail_rate(p_obs, sample, sample_obs, pi)[0] == channel.EPS_MIN  # the whole tail: no evidence
    lcb, rate = channel.tail_rate(p_obs, sample, sample_obs, pi, why=why)
    assert 5e-5 < lcb <= rate <= 60 / n


def test_surprises_crowded_at_record_offsets_are_the_files_own():
    """300 odd bytes in 200,000: spread over every offset they are damage; crowded into offsets 0-3
    of 24-byte records (a hash table's hash values, found in gdbm files that were being "repaired")
    they are the file's own, and no evidence. Each third of the odd bytes at the same offsets is no
    damage either; the even spread is counted whole."""
    n, e = 200_000, ord("e")
    row = np.full(256, 1e-7)
    row[e] = 1.0 - 255e-7
    sample, sample_obs = np.tile(row, (2048, 1)), np.full(2048, e)
    pi = np.array([1.0, 0.0, 0.0])
    pos = np.arange(n)
    rng = np.random.default_rng(0)
    even = np.sort(rng.choice(n, 300, replace=False))
    crowded = np.sort(rng.choice(n // 24, 300, replace=False) * 24 + rng.integers(0, 4, 300))
    assert channel.spread(even) > 250 and channel.spread(crowded) < 60
    for odd, evidence in ((even, True), (crowded, False)):
        p_obs = np.full(n, row[e])
        p_obs[odd] = 1e-7
        lcb, _ = channel.tail_rate(p_obs, sample, sample_obs, pi, pos=pos)
        assert (lcb > channel.EPS_MIN) == evidence, odd[:8]
        assert channel.tail_rate(p_obs, sample, sample_obs, pi)[0] > channel.EPS_MIN  # without offsets: both


def test_the_posterior_weighs_the_prior_odds_of_damage():
    p = np.full((1, 256), 1e-6)
    p[0, ord("e")] = 1 - 255e-6
    obs = np.array([ord("e") ^ 1])  # one bit from the likely value
    best, p_best, p_keep = channel.posterior(p, obs, np.array([1e-2]), np.array([0.0, 1.0, 0.0]))
    assert best[0] == ord("e") and p_keep[0] < 1e-3
    # the same byte where damage is a hundred thousand times rarer: kept
    best, p_best, p_keep = channel.posterior(p, obs, np.array([1e-7]), np.array([0.0, 1.0, 0.0]))
    assert p_keep[0] > 0.5


def test_a_damaged_text_is_repaired_and_a_clean_one_left_alone():
    clean = text_bytes(65536, 4)
    assert repair_bytes(None, clean, RepairConfig()) == clean
    bad = substitute(clean, 0.01, 2)
    out = repair_bytes(None, bad, RepairConfig())
    c, b, o = arr(clean), arr(bad), arr(out)
    assert (c != b).sum() > 500 and (c != o).sum() < 0.2 * (c != b).sum()
    assert ((o != b) & (c == b)).sum() <= 5  # hardly a clean byte touched


def test_a_clean_binary_is_left_alone():
    rng = np.random.default_rng(0)
    # a table of records: little-endian counters, flags and padding, as executables and databases hold
    rec = np.zeros((4000, 16), np.uint8)
    rec[:, 0:4] = np.arange(4000, dtype="<u4").view(np.uint8).reshape(-1, 4)
    rec[:, 4] = rng.choice([0, 1, 2, 4, 8, 0x40, 0x80], 4000)
    rec[:, 8:12] = rng.integers(0, 256, (4000, 4))
    data = rec.tobytes()
    assert repair_bytes(None, data, RepairConfig()) == data


def test_small_runs_of_unknown_bytes_are_filled_from_the_file():
    line = b"for item in records: total += item.value  # sum\n"
    clean = (line * 43)[:2048]
    frags = np.frombuffer(clean, dtype=np.uint8).reshape(4, 512).copy()
    unknown = np.zeros((4, 512), dtype=bool)
    for r, a, n in ((0, 100, 12), (2, 300, 5), (3, 480, 16)):
        frags[r, a:a + n] = 0
        unknown[r, a:a + n] = True
    d = decide_learned(frags, unknown, RepairConfig())
    assert bytes(d.fragments.reshape(-1)) == clean
    assert (d.confidence[unknown] > 0.9).all() and np.isnan(d.confidence[~unknown]).all()


def test_each_file_learns_on_its_own():
    """A file repairs to the same bytes alone or beside another (pieces of one window)."""
    a, b = substitute(text_bytes(20000, 1), 0.02, 3), substitute(bytes(range(256)) * 80, 0.02, 4)
    frags, unk, lengths, counts = cut([(a, None), (b, None)])
    pieces = np.repeat(np.arange(2), counts)
    both = decide_learned(frags, unk, RepairConfig(), lengths, pieces).fragments.reshape(-1)
    alone = repair_bytes(None, a, RepairConfig())
    assert bytes(both[:len(a)]) == alone and alone != a


def test_every_expert_is_named_once():
    assert len(set(EXPERTS)) == len(EXPERTS) and EXPERTS[0] == "order0"


def test_evaluate_reports_what_the_predictor_knows_beside_xz():
    from fragfix.evaluation.evaluate import predictor_bits
    clean = torch.frombuffer(bytearray(text_bytes(32768, 9)), dtype=torch.uint8).view(-1, 512)
    b = predictor_bits(clean)
    assert 0 < b["bits_per_byte"] < b["xz_bits"] < 8
    assert predictor_bits(clean[:0]) == {"bits_per_byte": None, "xz_bits": None, "zstd_bits": None}


def test_uniform_and_random_stretches_build_no_predictor(monkeypatch):
    """Erased flash (0xFF), padding and random data are copied as read without a predictor; a
    stretch with one odd byte among them still gets one."""
    built = []

    class Spy(FileModel):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)
    monkeypatch.setattr("fragfix.rule.learned.FileModel", Spy)
    rnd = np.random.default_rng(0).integers(0, 256, 64 * 512, dtype=np.uint8).tobytes()
    for data in (b"\xff" * 300_000, b"A" * 70_001, rnd, b"\x00" * 100_000):
        assert repair_bytes(None, data, RepairConfig()) == data
    assert built == []
    odd = bytearray(b"\xff" * 300_000)
    odd[150_000] = 0xFE
    repair_bytes(None, bytes(odd), RepairConfig())
    assert built


def test_worker_processes_give_the_same_bytes(tmp_path):
    """Stretches on the pool's workers (pool.py) repair to exactly what one process gives."""
    from fragfix.config import Runtime
    from fragfix.machine import available_cores
    from fragfix.model.bundled import resolve_model_path
    from fragfix.files.jobs import Job
    from fragfix.recovery.repair import repair_files
    if available_cores() < 2:
        pytest.skip("one core: no pool")
    src = tmp_path / "in.txt"
    src.write_bytes(substitute(text_bytes(1_300_000, 4), 0.01, 5))  # three stretches, the last one short
    outs = []
    for threads in (1, 2):
        dst = tmp_path / f"out{threads}"
        s = repair_files([Job(src, dst)], resolve_model_path(None), RepairConfig(), runtime=Runtime(threads=threads))
        outs.append((dst.read_bytes(), s["totals"]["changed"]))
    assert outs[0] == outs[1] and outs[0][1] > 1000


def test_evaluate_cells_decided_together_as_each_alone():
    """evaluate decides a group's cells in one call (pieces: each cell, and each window of a cell):
    the same bytes as decide_windows() on each cell alone, windows of odd sizes included."""
    from fragfix.rule.decide import decide_windows
    from fragfix.evaluation.evaluate import _decide_cells
    cfg = RepairConfig(window_fragments=3)
    cells, unknown = [], []
    for i, rows in enumerate((5, 1, 8)):
        data = substitute(text_bytes(rows * 512, 20 + i), 0.02, i)
        unk = torch.from_numpy(np.arange(rows * 512) % 97 == 0).view(rows, 512)
        f = torch.from_numpy(arr(data)).view(rows, 512)
        cells.append(f.masked_fill(unk, 0) if i != 0 else f)  # zeroed where unknown, as ddrescue leaves them
        unknown.append(None if i == 0 else unk)
    got = _decide_cells(None, cells, unknown, cfg)
    for f, u, g in zip(cells, unknown, got):
        assert torch.equal(g, decide_windows(None, f, u, cfg))
    assert all(not torch.equal(g, f) for g, f in zip(got[1:], cells[1:]))  # the unknown bytes were filled


def test_a_script_read_from_stdin_repairs_without_workers(tmp_path):
    """Spawned workers re-run the main module from its file; a script piped to python has none, so
    the stretches run in the process itself, with the same bytes and no error."""
    import subprocess
    import sys
    from fragfix.machine import available_cores
    if available_cores() < 2:
        pytest.skip("one core: no pool")
    src = tmp_path / "in.txt"
    src.write_bytes(substitute(text_bytes(600_000, 6), 0.01, 7))  # two stretches: a batch the pool would take
    code = ("from pathlib import Path; from fragfix.recovery.repair import repair_files; from fragfix.files.jobs import Job; "
            "from fragfix.config import RepairConfig, Runtime; from fragfix.model.bundled import resolve_model_path; "
            f"repair_files([Job(Path({str(src)!r}), Path({str(tmp_path / 'out')!r}))], resolve_model_path(None), "
            "RepairConfig(), runtime=Runtime(threads=2)); print('ok')")
    r = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def _race(tmp_path, patch: str):
    """A script that patches the interpreter (`patch`: lines run before it starts), opens a pool and
    runs two jobs: what it printed, and its stderr."""
    import subprocess
    import sys
    script = tmp_path / "race.py"
    script.write_text(patch + "from fragfix.rule import pool\n"
                      "if __name__ == '__main__':\n"
                      "    try:\n"
                      "        with pool.stretch_pool(2):\n"
                      "            pool.run(abs, [(-1,), (-2,)])\n"
                      "    except KeyboardInterrupt:\n"
                      "        print('interrupted')\n")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)


def test_an_interrupt_while_the_pool_starts_is_an_interrupt(tmp_path):
    """SIGINT landing inside the executor's start (its manager thread made, not started) once turned
    into "internal error: cannot join thread before it is started" (found by test_safety's interrupt
    test, 1 run in ~50): the pool's shutdown must let the KeyboardInterrupt through."""
    p = _race(tmp_path, "import threading, concurrent.futures.process as cfp\n"
                        "start = threading.Thread.start\n"
                        "def boom(self):\n"
                        "    if isinstance(self, cfp._ExecutorManagerThread):\n"
                        "        raise KeyboardInterrupt\n"
                        "    return start(self)\n"
                        "threading.Thread.start = boom\n")
    assert p.stdout == "interrupted\n" and "Traceback" not in p.stderr, p.stderr


def test_an_interrupt_while_a_worker_is_spawned_leaves_no_worker_traceback(tmp_path):
    """SIGINT landing after a worker process is launched but before the parent wrote its start-up
    data: the child read a closed pipe and its bootstrap printed "EOFError: Ran out of input"
    (test_safety's interrupt test, under load). Interrupts wait until the workers have their data."""
    p = _race(tmp_path, "import signal, multiprocessing.util as mu\n"
                        "launch = mu.spawnv_passfds\n"
                        "def late(*a):\n"
                        "    pid = launch(*a)\n"
                        "    if 'spawn_main' in str(a):\n"  # a worker, not multiprocessing's resource tracker
                        "        signal.raise_signal(signal.SIGINT)\n"
                        "    return pid\n"
                        "mu.spawnv_passfds = late\n")
    assert p.stdout == "interrupted\n" and "Traceback" not in p.stderr, p.stderr


def test_stretch_workers_keep_one_blas_thread_each(monkeypatch):
    """numpy's BLAS starts a thread per core in every process unless told: workers start with one
    (two workers on two cores ran four spinning threads), and the parent's setting is put back."""
    import os
    from fragfix.rule import pool
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    with pool.stretch_pool(2) as n:
        assert n == 2
        got = pool.run(os.getenv, [("OPENBLAS_NUM_THREADS",), ("OMP_NUM_THREADS",)])
    assert got == ["1", "1"]
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7"
