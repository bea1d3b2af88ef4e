"""Bad input, faults and interrupts: one clear line, a distinct exit code, nothing lost."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fragfix.model.checkpoints import load_model, load_resume
from fragfix.cli.commands import app
from fragfix.machine import available_cores

from conftest import make_corpus, text_bytes

runner = CliRunner()


@pytest.fixture
def model(untrained):
    return untrained


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "damaged.bin"
    p.write_bytes(text_bytes(5000, 1))
    os.utime(p, (1_500_000_000, 1_500_000_000))
    return p


def snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def one_line_error(r, code: int, text: str):
    assert r.exit_code == code, (r.exit_code, r.output)
    assert text in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output


def cases(tmp_path, src):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "exists.bin").write_bytes(b"old")
    os.symlink(src, tmp_path / "link.bin")
    os.link(src, tmp_path / "hard.bin")
    (tmp_path / "bad.map").write_text("0 +\n0 0x100 +\n0x80 0x100 -\n")
    (tmp_path / "short.map").write_text("0 +\n0 0x100 +\n")
    (tmp_path / "junk.map").write_text("hello world\n")
    return [
        ([str(tmp_path / "missing.bin"), "-o", str(tmp_path / "o")], 2, "no such file"),
        ([str(tmp_path / "folder"), "-o", str(tmp_path / "o")], 2, "is a folder"),
        ([str(src), "-o", str(tmp_path / "folder")], 2, "output is a folder"),
        ([str(src), "-o", str(tmp_path / "nodir" / "o")], 2, "output folder does not exist"),
        ([str(src), "-o", str(src)], 2, "is the input file itself"),
        ([str(src), "-o", str(tmp_path / "link.bin"), "--force"], 2, "is the input file itself"),
        ([str(src), "-o", str(tmp_path / "hard.bin"), "--force"], 2, "is the input file itself"),
        ([str(src), "-o", str(tmp_path / "exists.bin")], 2, "--force"),
        ([str(src)], 2, "an output is needed"),
        ([str(src), "-o", str(tmp_path / "o"), "--mapfile", str(tmp_path / "bad.map")], 2, "overlaps"),
        ([str(src), "-o", str(tmp_path / "o"), "--mapfile", str(tmp_path / "short.map")], 2, "describes 256 bytes"),
        ([str(src), "-o", str(tmp_path / "o"), "--mapfile", str(tmp_path / "junk.map")], 2, "status line"),
        ([str(src), "-o", str(tmp_path / "o"), "--mapfile", str(tmp_path / "folder")], 2, "mapfile is not a file"),
        ([str(src), "-o", str(tmp_path / "o"), "--threshold", "1.5"], 2, "threshold must be within [0, 1]"),
        ([str(src), "-o", str(tmp_path / "o"), "--floor", "-0.1"], 2, "floor must be within [0, 1]"),
        ([str(src), "-o", str(tmp_path / "o"), "--model-floor", "2"], 2, "model-floor must be within [0, 1]"),
        ([str(src), "-o", str(tmp_path / "o"), "--context", "3,9"], 2, "context orders must be within 1..4"),
        ([str(src), "-o", str(tmp_path / "o"), "--one-bit-factor", "0.5"], 2, "one-bit-factor must be from 1 to 1000"),
        ([str(src), "-o", str(tmp_path / "o"), "--context", "two"], 2, "--context must be comma-separated numbers"),
        ([str(src), "-o", str(tmp_path / "o"), "--context", ",,,"], 2, "--context must list at least one number"),
        ([str(src), "-o", str(tmp_path / "o"), "--one-bit-factor", "1e308"], 2, "one-bit-factor must be from 1"),
        ([str(src), "-o", str(tmp_path / "o"), "--context", "2.5"], 2, "--context must be whole numbers"),
        ([str(src), "-o", str(tmp_path / "o"), "--window-mb", "0"], 2, "--window-mb must be within"),
        ([str(src), "-o", str(tmp_path / "o"), "--passes", "0"], 2, "passes must be within 1..8"),
        ([str(src), "-o", str(tmp_path / "o"), "--clean-rate", "-1"], 2, "need 0 <= clean-rate < ref-rate <= 1"),
        ([str(src), "-o", str(tmp_path / "o"), "--ref-rate", "0.0001"], 2, "need 0 <= clean-rate < ref-rate <= 1"),
        ([str(src), "-o", str(tmp_path / "o"), "-b", "-1"], 2, "batch size"),
        ([str(src), "-o", str(tmp_path / "o"), "--zero-runs", "-3"], 2, "zero-runs"),
        ([str(src), "-o", str(tmp_path / "o"), "--precision", "fp8"], 2, "precision"),
        ([str(src), "-o", str(tmp_path / "o"), "--device", "quantum"], 2, "device"),
    ]


def test_every_bad_repair_input_is_one_line_and_writes_nothing(tmp_path, src, model):
    for args, code, text in cases(tmp_path, src):
        before = snapshot(tmp_path)
        r = runner.invoke(app, ["repair", "-m", str(model)] + args)
        one_line_error(r, code, text)
        assert snapshot(tmp_path) == before, args


def test_bad_checkpoints_in_repair(tmp_path, src):
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04\x95" + os.urandom(100))
    for path, text in ((tmp_path / "pickle.pt", "not a fragfix checkpoint"), (tmp_path / "nope", "not found"),
                       (tmp_path, "folder")):
        r = runner.invoke(app, ["repair", str(src), "-o", str(tmp_path / "o"), "-m", str(path)])
        one_line_error(r, 2, text)
        assert not (tmp_path / "o").exists()


def test_unreadable_input_and_read_only_output_folder(tmp_path, src, model, monkeypatch):
    # CI runs as root, which reads and writes everything: simulate the permission answers
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) in (src, tmp_path / "ro") else real(p, m, **k))
    one_line_error(runner.invoke(app, ["repair", "-m", str(model), str(src), "-o", str(tmp_path / "o")]),
                   2, "not readable")
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == tmp_path / "ro" else real(p, m, **k))
    (tmp_path / "ro").mkdir()
    one_line_error(runner.invoke(app, ["repair", "-m", str(model), str(src), "-o", str(tmp_path / "ro" / "o")]),
                   1, "not writable")


def test_debug_shows_the_traceback(tmp_path, model):
    r = runner.invoke(app, ["--debug", "repair", "-m", str(model), str(tmp_path / "missing"), "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and r.exception is not None and "no such file" in str(r.exception)


def test_write_error_mid_output_leaves_nothing_and_keeps_the_old_output(tmp_path, src, model, monkeypatch):
    import fragfix.recovery.repair as rep
    (tmp_path / "out.bin").write_bytes(b"previous result")
    before = snapshot(tmp_path)

    def failing_atomic(path, force=False, mode=None, batch=None):
        from contextlib import contextmanager
        from fragfix.files.atomic import atomic_write

        @contextmanager
        def cm():
            with atomic_write(path, force=force, mode=mode, batch=batch) as f:
                class W:
                    def write(self, b):
                        raise OSError(28, "No space left on device")

                    def __getattr__(self, k):
                        return getattr(f, k)
                yield W()
        return cm()

    monkeypatch.setattr(rep, "atomic_write", failing_atomic)
    r = runner.invoke(app, ["repair", "-m", str(model), str(src), "-o", str(tmp_path / "out.bin"), "--force"])
    one_line_error(r, 1, "No space left on device")
    assert snapshot(tmp_path) == before  # the old output, the input, and nothing else


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "fragfix", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_file_size_limit_is_a_clean_io_error(tmp_path, src, model):
    """A real write failure (RLIMIT_FSIZE, like a full disk): exit 1, temp file removed, input intact."""
    import resource
    big = tmp_path / "big.bin"
    big.write_bytes(text_bytes(600_000, 3))
    before = snapshot(tmp_path)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    p = _cli("repair", big, "-o", tmp_path / "out.bin", "-m", model, preexec_fn=limit)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert "writing" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_repair_leaves_no_partial_output(tmp_path, model, sig):
    big = tmp_path / "big.bin"
    big.write_bytes(text_bytes(4_000_000, 5) * 10)  # 40 MB: long enough to interrupt mid-write
    threads = ["--threads", "2"] if available_cores() >= 2 else []  # the pool's workers too, whatever OMP_NUM_THREADS says
    p = _cli("repair", big, "-o", tmp_path / "out.bin", "-m", model, "--report", tmp_path / "r.json", "-b", "64", *threads)
    deadline = time.time() + 60
    while time.time() < deadline and not [q for q in tmp_path.iterdir() if "fragfix-tmp" in q.name]:
        time.sleep(0.05)  # wait until output is being written
    time.sleep(0.3)
    kids = _children(p.pid)  # the stretch workers (pool.py), on a machine with two cores or more
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["big.bin"]
    deadline = time.time() + 10
    while time.time() < deadline and [k for k in kids if _alive(k)]:
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "worker processes outlived the interrupted run"


def _children(pid: int) -> list[int]:
    out = []
    for t in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (t / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_interrupted_training_keeps_the_last_checkpoint_and_resumes(tmp_path):
    data = make_corpus(tmp_path / "data", files=4, size=20000)
    ck = tmp_path / "ck"
    args = ["train", "-d", data, "-o", ck, "--epochs", "50", "-b", "8", "--channels", "16,16,32,32", "--threads", "1"]
    p = _cli(*args)
    deadline = time.time() + 120
    while time.time() < deadline and not (ck / "autoencoder_last.resume.safetensors").exists():
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert not [q for q in ck.iterdir() if "fragfix-tmp" in q.name]
    load_model(ck / "autoencoder_last.safetensors")  # still loadable
    _, state, _ = load_resume(ck / "autoencoder_last.resume.safetensors")
    done = state["epoch"]
    r = runner.invoke(app, [str(a) for a in args[:-4]] + ["--epochs", str(done + 1), "--resume", "--channels",
                                                          "16,16,32,32", "--threads", "1", "-b", "8"])
    assert r.exit_code == 0, r.output
    assert f"resuming after epoch {done}" in r.output
    assert load_model(ck / "autoencoder_last.safetensors")[1]["epoch"] == done + 1


def test_input_bytes_and_mtime_unchanged_by_every_command(tmp_path, src, model):
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    for args in (["repair", src, "-o", tmp_path / "o", "-m", model, "--report", tmp_path / "r.json"],
                 ["repair", src, "--dry-run", "-m", model, "--aggressive"],
                 ["evaluate", "-d", src, "-m", model, "--noise", "byte", "--levels", "0.1", "--max-fragments", "5"],
                 ["train", "-d", src, "-o", tmp_path / "ck", "--epochs", "1", "--channels", "8,8,16,16"]):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, (args, r.output)
        assert (src.read_bytes(), src.stat().st_mtime_ns) == before


def test_help_and_module_entry_point_do_not_import_torch():
    code = "import sys; from fragfix.cli.commands import app; import typer.testing as t; " \
           "r = t.CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    r = subprocess.run([sys.executable, "-m", "fragfix", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("fragfix ")


@pytest.mark.parametrize("when", ["moving outputs into place", "drawing the summary"])
def test_an_interrupt_after_the_outputs_are_in_place_is_a_success(tmp_path, src, model, monkeypatch, when):
    """Ctrl-C that lands once every output is complete and in place (held off while they move, or
    while the summary is drawn) exits 0 and says so: a script must not believe nothing was written."""
    import fragfix.files.atomic
    import fragfix.cli.render

    def interrupt(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # pending while held off, raised at once otherwise
        if when == "drawing the summary":
            time.sleep(1)
    if when == "moving outputs into place":
        real = fragfix.files.atomic._fsync_dir

        def fsync_dir(d):  # the run's final batch only (the report may commit on its own before)
            caller = sys._getframe(1).f_locals.get("self")
            if getattr(caller, "final", False):
                interrupt()
            real(d)
        monkeypatch.setattr(fragfix.files.atomic, "_fsync_dir", fsync_dir)
    else:
        monkeypatch.setattr(fragfix.cli.render, "draw_repair", interrupt)
    r = runner.invoke(app, ["repair", str(src), "-o", str(tmp_path / "out"), "-m", str(model),
                            "--report", str(tmp_path / "r.json")])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert r.exit_code == 0, r.output
    assert "interrupted after the run was complete; its 2 output(s) are in place" in r.output
    assert sorted(p.name for p in tmp_path.iterdir() if p != src) == ["out", "r.json"]
    assert len((tmp_path / "out").read_bytes()) == len(src.read_bytes())


def test_names_reach_the_terminal_escaped(tmp_path, monkeypatch):
    """A file name holding an escape sequence or a line break is shown escaped (as ls -b does) in
    the summary and in errors: it can neither drive the terminal nor forge a line."""
    from fragfix.cli.edge import shown
    odd = tmp_path / "in" / "o\x1b[2J.txt"
    odd.parent.mkdir()
    odd.write_bytes(text_bytes(3_000, 1))
    (tmp_path / "in" / "new\nline.txt").write_bytes(text_bytes(2_000, 2))
    monkeypatch.chdir(tmp_path)  # short names: the summary's lines stay whole at 80 columns
    r = runner.invoke(app, ["repair", "-r", "in", "-o", "out"])
    assert r.exit_code == 0, r.output
    assert "\x1b[2J" not in r.output and "o\\x1b[2J.txt:" in r.output
    assert "new\\nline.txt:" in r.output and "\nline.txt" not in r.output
    r = runner.invoke(app, ["repair", str(tmp_path / "nope\x1b[31m"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "\x1b[31m" not in r.output and "nope\\x1b[31m" in r.output
    assert shown("caf\u00e9 \u202eevil") == "caf\u00e9 \\u202eevil" and shown("a\udcffb") == "a\\xffb"


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "-o", "OUT"], "--dry-run writes only the report"),
    (["-o", "OUT", "--plot", "map.jpg"], "ending in .png"),
    (["-o", "OUT", "--reference", "OTHER"], "give the image's --mapfile"),
    (["-o", "OUT", "--reference", "SRC", "--reference-mapfile", "SRC"], "give the image's --mapfile")])
def test_options_that_would_be_ignored_are_errors(tmp_path, src, model, args, message):
    other = tmp_path / "other.bin"  # another plain file: nothing a reference could merge
    other.write_bytes(src.read_bytes()[::-1])
    before = snapshot(tmp_path)
    args = [str(tmp_path / "out") if a == "OUT" else str(src) if a == "SRC" else str(other) if a == "OTHER" else a
            for a in args]
    r = runner.invoke(app, ["repair", str(src), "-m", str(model), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert snapshot(tmp_path) == before


def test_evaluate_plot_must_be_png(tmp_path, src, model):
    r = runner.invoke(app, ["evaluate", "-d", str(src), "-m", str(model), "--plot", str(tmp_path / "e.svg")])
    assert r.exit_code == 2 and "ending in .png" in r.output


@pytest.mark.parametrize("args, message", [
    (["--levels", ",,"], "--levels must list at least one number"),
    (["--formats", "--format-files", "-1"], "--format-files must be at least 1"),
    (["--formats", "--format-budget", "-1"], "--format-budget within"),
    (["--samples", "-1"], "--samples must not be negative")])
def test_bad_evaluate_options_fail_before_any_work(tmp_path, src, model, args, message, monkeypatch):
    import fragfix.evaluation.evaluate
    monkeypatch.setattr(fragfix.evaluation.evaluate, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    r = runner.invoke(app, ["evaluate", "-d", str(src), "-m", str(model), *args])
    one_line_error(r, 2, message)
