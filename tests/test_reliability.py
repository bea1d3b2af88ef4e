"""Issue 12, round two beyond data loss: no hang, no runaway memory, no traceback, and a run's
outputs committed together. Each case through the CLI, with the folder before and after."""
import json
import os
import resource
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
from fragfix.model.checkpoints import FORMAT
from fragfix.cli.commands import app
from fragfix.errors import IOFailure
from fragfix.training.fragments import FragmentDataset

from conftest import make_corpus, text_bytes
from test_outputs import refused, snapshot

runner = CliRunner()
SMALL = ModelConfig(channels=(8, 8, 16, 16), embed_dim=4, mid_layers=1)


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "in.txt"
    p.write_bytes(text_bytes(3000, 2))
    return p


def _checkpoint(path, config: dict | str, state=None):
    state = state or {k: v.contiguous() for k, v in FragmentAutoencoder(SMALL).state_dict().items()}
    meta = {"format": FORMAT, "format_version": "1", "info": "{}",
            "model_config": config if isinstance(config, str) else json.dumps(config)}
    path.write_bytes(st_save(state, metadata=meta))
    return path


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fragfix", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


# ---- 7: checkpoints that are not regular files never block or stream -----------------------------
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("command", ["repair", "info"])
def test_model_that_is_not_a_regular_file_is_refused_at_once(tmp_path, src, kind, command):
    model = tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(model)
    else:
        model = "/dev/zero"
    args = ["repair", src, "-o", tmp_path / "o", "-m", model] if command == "repair" else ["info", model]
    before = snapshot(tmp_path)
    r = _cli(*args, timeout=60)  # a subprocess: a regression hangs one test, not the suite
    assert r.returncode == 2 and "checkpoint is not a regular file" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


# ---- 8, 13: a checkpoint's config is checked before anything is built -----------------------------
@pytest.mark.parametrize("bad", [
    {"channels": [20000, 20000, 20000, 20000]},
    {"channels": [257, 8, 16, 16]},
    {"kernel_size": 33},
    {"channels": [8.0, 8, 16, 16]},
    {"channels": [8, 8, 16]},
    {"kernel_size": 1e9},
    {"embed_dim": True},
    {"refine": -1},
    {"mid_layers": "2"},
    {"channels": "8,8,16,16"},
])
def test_absurd_config_values_are_exit_2(tmp_path, bad):
    p = _checkpoint(tmp_path / "m.safetensors", {**SMALL.to_dict(), **bad})
    r = runner.invoke(app, ["info", str(p)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_deeply_nested_metadata_is_exit_2(tmp_path):
    p = _checkpoint(tmp_path / "m.safetensors", "[" * 100_000 + "]" * 100_000)
    r = runner.invoke(app, ["info", str(p)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_largest_allowed_config_costs_little_before_it_is_refused(tmp_path):
    """The largest model the config bounds allow (~25 MB of weights) is built to compare its shapes
    with the file's: a small file claiming it is refused without the memory it asks for."""
    big = {**SMALL.to_dict(), "channels": [256] * 4, "kernel_size": 31, "embed_dim": 64, "mid_layers": 8,
           "refine": 8}
    p = _checkpoint(tmp_path / "m.safetensors", big)
    start = _peak_mb()
    r = runner.invoke(app, ["info", str(p)])
    assert r.exit_code == 2 and ("do not match" in r.output or "has dtype" in r.output), r.output
    assert _peak_mb() - start < 100


SANE = st.integers(min_value=-3, max_value=40)
VALUE = st.one_of(SANE, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=8),
                  st.lists(st.one_of(SANE, st.integers(min_value=1, max_value=1 << 40), st.floats()), max_size=6),
                  st.dictionaries(st.text(max_size=4), SANE, max_size=2))
FIELDS = ["head", "channels", "kernel_size", "embed_dim", "mid_layers", "stem", "refine", "fragment_size", "extra"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=5))
def test_fuzzed_config_is_one_line_exit_2_in_bounded_memory(tmp_path, fuzz):
    """Any metadata: a model that fits its tensors loads (exit 0), anything else is one line and exit
    2, and no case allocates what its config asks for before the shapes are compared."""
    p = _checkpoint(tmp_path / "fuzz.safetensors", {**SMALL.to_dict(), **fuzz})
    start = _peak_mb()
    r = runner.invoke(app, ["info", str(p), "--json"])
    assert _peak_mb() - start < 200
    if r.exit_code != 0:
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output


# ---- 9: inputs are read to the size checked ------------------------------------------------------
def test_input_that_grows_while_read_fails_cleanly(tmp_path, src, untrained, monkeypatch):
    import fragfix.recovery.repair as rep
    real = rep.open_input

    def open_then_grow(path, size):
        f = real(path, size)
        with open(path, "ab") as g:
            g.write(b"x" * 100_000)
        return f
    monkeypatch.setattr(rep, "open_input", open_then_grow)
    r = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "grew while being read" in r.output, r.output
    assert not (tmp_path / "o").exists() and not [p for p in tmp_path.iterdir() if "fragfix-tmp" in p.name]


def test_input_swapped_for_a_fifo_fails_at_once(tmp_path, src, untrained, monkeypatch):
    import fragfix.recovery.repair as rep
    real = rep.check_input

    def check_then_swap(path):
        size = real(path)
        os.unlink(path)
        os.mkfifo(path)
        return size
    monkeypatch.setattr(rep, "check_input", check_then_swap)
    r = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "o"), "--no-formats"])
    assert r.exit_code == 1 and "changed before it could be read" in r.output, r.output


# ---- 4: outputs are committed together, or none --------------------------------------------------
def test_failure_after_the_output_is_complete_leaves_nothing(tmp_path, src, untrained, monkeypatch):
    import fragfix.recovery.repair as rep

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rep, "format_mapfile", full_disk)
    before = snapshot(tmp_path)
    r = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "o"),
                            "--map-out", str(tmp_path / "o.map"), "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 1 and "No space left" in r.output, r.output
    assert snapshot(tmp_path) == before


def test_a_failing_second_file_leaves_no_first_output_and_no_new_folder(tmp_path, untrained, monkeypatch):
    import fragfix.recovery.repair as rep
    from fragfix.errors import IOFailure
    data = make_corpus(tmp_path / "data", files=2, size=3000)
    real = rep.open_input

    def second_fails(path, size):
        if path.name == "doc1.txt":
            raise IOFailure(f"reading {path} failed: Input/output error")
        return real(path, size)
    monkeypatch.setattr(rep, "open_input", second_fails)
    before = snapshot(tmp_path)
    r = runner.invoke(app, ["repair", "-r", str(data), "-m", str(untrained), "-o", str(tmp_path / "new"),
                            "--no-formats"])
    assert r.exit_code == 1 and "Input/output error" in r.output, r.output
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()


# ---- 5: evaluate checks every output before the run ----------------------------------------------
def test_evaluate_samples_dir_is_checked_before_the_run(tmp_path):
    full = tmp_path / "samples"
    full.mkdir()
    (full / "byte_0.01_3.txt").write_text("mine")
    refused(["evaluate", "--samples-dir", str(full)], tmp_path, "not empty (use --force")
    (tmp_path / "plain").write_text("x")
    refused(["evaluate", "--samples-dir", str(tmp_path / "plain"), "--force"], tmp_path, "not a folder")


# ---- 10, 13, 15: option values and edge cases ----------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["repair", "{src}", "-o", "{tmp}/o", "--threads", "1000000"], "--threads must be from 0"),
    (["repair", "{src}", "-o", "{tmp}/o", "--threads", "-1"], "--threads must be from 0"),
    (["evaluate", "--threads", "100000"], "--threads must be from 0"),
    (["train", "-d", "{src}", "-o", "{tmp}/ck", "--workers", "100000"], "--workers must be from 0"),
    (["train", "-d", "{src}", "-o", "{tmp}/ck", "--threads", "100000"], "--threads must be from 0"),
    (["train", "-d", "{src}", "-o", "{tmp}/ck", "--refine", "-1"], "refine must be"),
    (["repair", "{src}", "-o", "{tmp}/o", "--context", "nan"], "--context must be whole numbers"),
    (["repair", "{src}", "-o", "{tmp}/o", "--context", "inf"], "--context must be whole numbers"),
    (["repair", "{src}", "-o", "{tmp}/" + "x" * 300], "File name too long"),
    (["repair", "{tmp}/" + "x" * 300, "-o", "{tmp}/o"], "File name too long"),
    (["repair", "{src}", "--dry-run", "--map-out", "{tmp}/g.map"], "--dry-run writes only the report"),
    (["train", "-d", "{tmp}", "-o", "{tmp}"], "output is the training data"),
])
def test_bad_values_are_one_line_exit_2_and_write_nothing(tmp_path, src, untrained, args, needle):
    (tmp_path / "autoencoder_best.safetensors").write_bytes(untrained.read_bytes())  # train -o {tmp}: a clash
    args = [a.format(src=src, tmp=tmp_path) for a in args]
    if args[0] == "repair":
        args += ["-m", str(untrained)]
    refused(args, tmp_path, needle)


def test_recursive_single_file_into_a_new_folder_and_links_listed(tmp_path, untrained):
    data = make_corpus(tmp_path / "data", files=1, size=3000)
    (data / "link.txt").symlink_to(data / "doc0.txt")
    (data / "empty.txt").write_bytes(b"")
    r = runner.invoke(app, ["repair", "-r", str(data), "-m", str(untrained), "-o", str(tmp_path / "new"), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["doc0.txt", "empty.txt"]
    assert (tmp_path / "new" / "empty.txt").read_bytes() == b""  # the restored folder is a copy, empty files too
    summary = json.loads(r.stdout[r.stdout.index("{"):r.stdout.rindex("}") + 1])
    assert [(os.path.basename(s["path"]), s["why"]) for s in summary["skipped"]] == [("link.txt", "symbolic link")]
    assert "1 empty file" in r.stderr


# ---- 11: sparse zero runs skip the model, same bytes out -----------------------------------------
def test_zero_runs_skip_the_model_with_identical_output(tmp_path, trained, monkeypatch):
    import fragfix.recovery.repair as rep
    p = tmp_path / "sparse.img"
    body = bytearray(text_bytes(3000, 4))
    body[700] ^= 0x20
    p.write_bytes(bytes(64 * 512) + bytes(body) + bytes(40 * 512) + bytes(body) + bytes(100))
    rows = []
    real = rep._decide

    def counting(model, frags, *a, **k):
        rows.append(frags.shape[0])
        return real(model, frags, *a, **k)
    monkeypatch.setattr(rep, "_decide", counting)
    assert runner.invoke(app, ["repair", str(p), "-m", str(trained), "-o", str(tmp_path / "a")]).exit_code == 0
    assert sum(rows) < 40  # of 118 fragments, only those at or next to data
    monkeypatch.setattr(rep, "_decide_sparse", lambda scorer, frags, unknown, cfg, lengths, pieces=None:
                        real(scorer, frags, unknown, cfg, lengths, pieces))
    assert runner.invoke(app, ["repair", str(p), "-m", str(trained), "-o", str(tmp_path / "b")]).exit_code == 0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert len((tmp_path / "a").read_bytes()) == p.stat().st_size


# ---- 14: training data truncated meanwhile ------------------------------------------------------
def test_training_file_truncated_meanwhile_is_a_clean_error(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(text_bytes(8192, 1))
    ds = FragmentDataset([f])
    assert ds[3].shape == (512,)
    os.truncate(f, 1000)
    with pytest.raises(IOFailure, match="changed while training"):
        ds[10]


def test_two_sigterms_close_together_exit_130_cleanly(tmp_path, untrained):
    big = tmp_path / "big.bin"
    big.write_bytes(text_bytes(8_000_000, 5))
    p = subprocess.Popen([sys.executable, "-m", "fragfix", "repair", str(big), "-o", str(tmp_path / "out"), "-m",
                          str(untrained), "-b", "64", "--window-mb", "0.25"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not [q for q in tmp_path.iterdir() if "fragfix-tmp" in q.name]:
        time.sleep(0.05)  # wait until the output is being written
    p.terminate()
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["big.bin"]

