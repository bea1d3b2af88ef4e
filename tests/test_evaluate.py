import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fragfix.cli.commands import app
from fragfix.rule.decide import RepairConfig
from fragfix.config import Runtime
from fragfix.evaluation.evaluate import EvalConfig, evaluate, load_fragments, noise_seed
from fragfix.training.noise import NoiseGenerator, NoiseSpec

from conftest import make_corpus

runner = CliRunner()
FIELDS = {"model", "data", "noise", "level", "ber_before", "ber_after", "removed", "fixed", "broken",
          "fragments_recovered", "bits_per_byte", "mb_per_s"}


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("heldout"), files=3, size=40000, seed=99)


def run(trained, heldout, **kw):
    cfg = EvalConfig(data=[str(heldout)], models=[str(trained)], kinds=["byte", "zero"], levels=[0.01, 0.05],
                     max_fragments=150, seed=0, repair=RepairConfig(), runtime=Runtime(precision="fp32"), **kw)
    return cfg, evaluate(cfg)


@pytest.fixture(scope="module")
def first(trained, heldout):
    """One default evaluation, shared by the tests that read it (each run is seconds)."""
    return run(trained, heldout)


def test_rows_baseline_and_repair(first):
    cfg, res = first
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 2  # kinds x levels x (baseline + model)
    assert all(set(r) == FIELDS for r in rows)
    [(name, clean)], _ = load_fragments(cfg)
    assert name == ".txt" and {r["data"] for r in rows} == {".txt"}  # a folder is scored per kind of file
    for r in rows:
        if r["model"].startswith("none"):
            noisy = NoiseGenerator(NoiseSpec(r["noise"], r["level"]), seed=noise_seed(0, r["noise"], r["level"]))(clean)
            assert r["ber_before"] == r["ber_after"] == int(noisy.mask.sum()) / noisy.mask.numel()
            assert r["removed"] == 0 and r["fixed"] == 0
    byte5 = next(r for r in rows if r["noise"] == "byte" and r["level"] == 0.05 and not r["model"].startswith("none"))
    assert byte5["removed"] > 0.3 and byte5["bits_per_byte"] is not None
    assert res["settings"]["fragments"] == len(clean) == 150


def test_same_seed_same_numbers(trained, heldout, first):
    strip = lambda res: [{k: v for k, v in r.items() if k != "mb_per_s"} for r in res["rows"]]
    assert strip(first[1]) == strip(run(trained, heldout)[1])


def test_evaluate_and_repair_agree(tmp_path, trained, first):
    """Repairing evaluate's damaged fragments with `fragfix repair` gives the error rate evaluate reported."""
    cfg, res = first
    [(_, clean)], _ = load_fragments(cfg)
    noisy = NoiseGenerator(NoiseSpec("byte", 0.05), seed=noise_seed(0, "byte", 0.05))(clean).fragments
    (tmp_path / "damaged.bin").write_bytes(bytes(noisy.reshape(-1).numpy()))
    r = runner.invoke(app, ["repair", str(tmp_path / "damaged.bin"), "-o", str(tmp_path / "fixed.bin"),
                            "-m", str(trained), "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    fixed = np.frombuffer((tmp_path / "fixed.bin").read_bytes(), np.uint8)
    ber = float((fixed != clean.reshape(-1).numpy()).mean())
    row = next(r for r in res["rows"] if r["noise"] == "byte" and r["level"] == 0.05 and not r["model"].startswith("none"))
    assert ber == pytest.approx(row["ber_after"], abs=1e-9)


def test_cli_compare_json_plot_and_samples(tmp_path, trained, heldout):
    args = ["evaluate", "-d", str(heldout), "-m", str(trained), "--compare", str(trained), "--noise", "byte",
            "--levels", "0.05", "--max-fragments", "40", "--samples", "2", "--samples-dir", str(tmp_path / "s"),
            "--plot", str(tmp_path / "p.png"), "--json-out", str(tmp_path / "e.json"), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["rows"]) == 3 and json.loads((tmp_path / "e.json").read_text())["settings"] == out["settings"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "s").glob("*.txt"))) >= 2 and list((tmp_path / "s").glob("*.png"))
    assert "original" in r.stderr and "repaired" in r.stderr
    r = runner.invoke(app, args)  # outputs exist now
    assert r.exit_code == 2 and "--force" in r.output


@pytest.mark.parametrize("args, msg", [
    (["--noise", "salt"], "unknown noise kind"),
    (["--levels", "0"], "within (0, 1]"),
    (["--levels", "1.5"], "within (0, 1]"),
    (["--levels", "x"], "--levels"),
    (["--max-fragments", "0"], "max fragments"),
    (["--threshold", "2"], "threshold"),
])
def test_bad_evaluate_options(trained, heldout, args, msg):
    r = runner.invoke(app, ["evaluate", "-d", str(heldout), "-m", str(trained)] + args)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_default_sample_is_scored_as_text_binary_and_unseen_kinds_apart():
    groups, described = load_fragments(EvalConfig(max_fragments=20))
    assert [name for name, _ in groups] == ["text", "binary", "unseen kinds"]
    assert [len(f) for _, f in groups] == [10, 10, 5] and "scored apart" in described and "never trained on" in described


def test_a_folder_is_scored_per_kind_of_file(tmp_path):
    folder = make_corpus(tmp_path / "mixed", files=3, size=4096)
    (folder / "doc0.txt").rename(folder / "notes.md")
    (folder / "tiny.csv").write_bytes(b"a,b\n")  # shorter than a fragment: no group of its own
    groups, described = load_fragments(EvalConfig(data=[str(folder)], max_fragments=40))
    assert [name for name, _ in groups] == [".md", ".txt"] and [len(f) for _, f in groups] == [8, 16]
    assert "per kind" in described


def test_table_has_a_data_column_and_a_summary_per_group():
    from rich.console import Console
    from fragfix.cli.render_eval import draw_table
    row = dict(noise="byte", level=0.01, ber_before=0.01, ber_after=0.005, removed=0.5, fixed=5, broken=1,
               fragments_recovered=0.5, bits_per_byte=1.0, mb_per_s=2.0)
    rows = [{**row, "model": m, "data": d} for d in ("text", "binary") for m in ("none (damaged)", "/m/default.st")]
    console = Console(record=True, width=120)
    draw_table({"rows": rows, "settings": {"fragments": 20}}, console)
    out = console.export_text()
    assert "data" in out and "text" in out and "binary" in out
    assert "default on text: fixed 5 bytes, broke 1" in out and "default on binary:" in out


def test_noise_has_the_train_grammar(trained, heldout):
    """KIND at every --levels level, KIND:LEVEL at that level only; ranges are train's."""
    r = runner.invoke(app, ["evaluate", "-d", str(heldout), "-m", str(trained), "--noise", "byte:0.02,zero",
                            "--levels", "0.01,0.05", "--max-fragments", "30", "--json"])
    assert r.exit_code == 0, r.output
    cells = [(row["noise"], row["level"]) for row in json.loads(r.stdout)["rows"] if row["model"].startswith("none")]
    assert cells == [("byte", 0.02), ("zero", 0.01), ("zero", 0.05)]
    r = runner.invoke(app, ["evaluate", "-d", str(heldout), "-m", str(trained), "--noise", "byte:0.01-0.1"])
    assert r.exit_code == 2 and "ranges are for train" in r.output


def test_formats_table_counts_restored_and_never_a_false_claim(trained, heldout):
    r = runner.invoke(app, ["evaluate", "-d", str(heldout), "-m", str(trained), "--noise", "byte", "--levels", "0.01",
                            "--max-fragments", "20", "--formats", "--format-files", "1", "--format-budget", "0.5",
                            "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["formats"]["rows"]
    assert [(x["format"], x["damage"]) for x in rows][:4] == [("gzip", k) for k in ("bit", "byte", "two-bits", "heavy")]
    assert len(rows) == 16 and all(x["false_verified"] == 0 for x in rows)
    assert next(x for x in rows if (x["format"], x["damage"]) == ("png", "bit"))["restored_verified"] == 1
    assert "checksummed files" in r.stderr
