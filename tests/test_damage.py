"""The damage gate (damage.py): the data's own damage rate opens the gate, its own habits are kept."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from conftest import text_bytes
from fragfix.rule import damage
from fragfix.model.checkpoints import load_model
from fragfix.rule.decide import RepairConfig, damage_rate, repair_bytes


def substitute(data: bytes, p: float, seed: int) -> bytes:
    rng, out = random.Random(seed), bytearray(data)
    for i in range(len(out)):
        if rng.random() < p:
            out[i] = rng.randrange(256)
    return bytes(out)


def tabbed(text: bytes) -> bytes:
    """The same words, indented and separated by tabs: a style the test model never saw."""
    return b"".join(b"\t\t" + line.replace(b" ", b"\t") + b"\n" for line in text.split(b"\n"))[:len(text)]


def changed(a: bytes, b: bytes) -> int:
    return int((np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8)).sum())


def test_utf8_multibyte_marks_well_formed_sequences_only():
    buf = np.frombuffer("a שלום b".encode() + b" \xd7 x \x80\xa3 \xe3\x82\xa2", np.uint8)
    mark = damage.utf8_multibyte(buf)
    assert mark.tolist() == [False, False] + [True] * 8 + [False] * 10 + [True] * 3


def test_the_gate_is_shut_up_to_the_clean_rate_and_opens_linearly_to_its_cap():
    s = damage.scale(np.array([0.0, 5e-4, 1e-3, 1.5e-3, 3e-3, 1.0]), 5e-4, 1.5e-3, 3.0)
    assert s.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 2.5, 3.0])


def test_a_clean_file_in_an_indentation_style_never_trained_on_is_left_untouched(trained):
    model, _ = load_model(trained)
    data = tabbed(text_bytes(32768, 3))
    assert changed(data, repair_bytes(model, data)) == 0
    # the model alone "corrects" the tabs: this is the harm the damage gate prevents
    assert changed(data, repair_bytes(model, data, RepairConfig(rule="model", damage_gate=False))) > 0


def test_damage_in_that_file_is_repaired_and_its_tabs_are_kept(trained):
    model, _ = load_model(trained)
    clean = tabbed(text_bytes(32768, 3))
    bad = substitute(clean, 0.01, 1)
    out = repair_bytes(model, bad)
    c, b, o = (np.frombuffer(x, np.uint8) for x in (clean, bad, out))
    assert (c != o).sum() < 0.5 * (c != b).sum()
    kept = (c == 9) & (b == 9)
    assert (o[kept] == 9).all()


def test_the_estimated_damage_rate_tracks_the_injected_rate(trained):
    model, _ = load_model(trained)
    clean = text_bytes(32768, 3)
    rates = []
    for p in (0.0, 0.002, 0.01, 0.03, 0.08):
        frags = torch.frombuffer(bytearray(substitute(clean, p, 1)), dtype=torch.uint8).view(-1, 512)
        rates.append(float(np.median(damage_rate(model, frags))))
        # random substitutions that land on a byte common in the text are not clear errors: ~0.8x
        assert 0.5 * p <= rates[-1] <= 1.2 * p
    assert rates == sorted(rates) and rates[0] == 0.0


def test_repair_says_what_damage_the_data_shows_and_why_a_clean_file_is_left_alone(tmp_path, trained):
    import json

    from typer.testing import CliRunner

    from fragfix.cli.commands import app
    runner = CliRunner()
    clean = tmp_path / "clean.txt"
    clean.write_bytes(tabbed(text_bytes(16384, 5)))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(substitute(clean.read_bytes(), 0.02, 2))
    r = runner.invoke(app, ["repair", str(clean), "-o", str(tmp_path / "c.out"), "-m", str(trained)])
    assert r.exit_code == 0 and "no more than clean data shows, so nothing was corrected" in r.output.replace("\n", " ")
    assert (tmp_path / "c.out").read_bytes() == clean.read_bytes()
    r = runner.invoke(app, ["repair", str(bad), "-o", str(tmp_path / "b.out"), "-m", str(trained), "--json"])
    t = json.loads(r.stdout)["totals"]
    assert r.exit_code == 0 and 0.5 * 0.02 * 16384 < t["clear_errors"] < 1.2 * 0.02 * 16384 and t["suspected"] > 0


def test_the_local_rate_never_reaches_into_another_file():
    rows, known = np.array([0, 0, 5, 9]), np.full(10, 512)
    pooled = damage.local_rate(rows, known, 2)
    assert pooled[3] == pytest.approx(1 / (5 * 512))  # rows 1-5: the hit in row 5
    per_file = damage.local_rate(rows, known, 2, np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2]))
    assert per_file.tolist() == pytest.approx([2 / 1536] * 3 + [1 / 1536, 1 / 2048, 1 / 2048, 1 / 1536] + [1 / 1536] * 3)
