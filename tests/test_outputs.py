"""No output may clobber an input, a device or another output (issue 12, the data-loss half):
each case through the CLI, with the folder's state before and after."""
import os
import stat

import pytest
from typer.testing import CliRunner

from fragfix.cli.commands import app

from conftest import make_corpus, text_bytes

runner = CliRunner()


def snapshot(folder):
    """Every entry below `folder`: (kind, bytes or None, mode)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), data, stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "in.txt"
    p.write_bytes(text_bytes(3000, 2))
    return p


def refused(args, folder, needle):
    before = snapshot(folder)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert snapshot(folder) == before
    return res


def test_train_refuses_to_replace_checkpoints_without_resume_or_force(tmp_path, untrained):
    data = make_corpus(tmp_path / "data", files=3, size=4096)
    args = ["train", "-d", str(data), "-o", str(tmp_path / "ck"), "--epochs", "1", "-b", "8",
            "--channels", "8,8,16,16", "--embed-dim", "4", "--steps-per-epoch", "2"]
    assert runner.invoke(app, args).exit_code == 0
    refused(args + ["--lr", "0.5"], tmp_path, "--resume")
    res = runner.invoke(app, args + ["--force"])
    assert res.exit_code == 0 and "--force: replacing" in res.output
    # a run that a check refuses says nothing about replacing (it replaces nothing): here the
    # checkpoint folder is also given as training data
    res = runner.invoke(app, args + ["-d", str(tmp_path / "ck"), "--force"])
    assert res.exit_code == 2 and "replacing" not in res.output and "output is the training data" in res.output


def test_force_never_replaces_a_fifo_or_device(tmp_path, src, untrained):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    refused(["repair", str(src), "-m", str(untrained), "-o", str(fifo), "--force"], tmp_path, "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("case", ["report=output", "map-out=output", "map-out=mapfile", "report=mapfile",
                                  "report=model", "output=model"])
def test_no_output_names_another_output_or_an_input(tmp_path, src, untrained, case):
    model = tmp_path / "m.safetensors"
    model.write_bytes(untrained.read_bytes())
    mapfile = tmp_path / "in.map"
    mapfile.write_text(f"0x0 +\n0x0 {hex(src.stat().st_size)} +\n")
    out = tmp_path / "o.out"
    paths = {"output": out, "report": tmp_path / "r.json", "map-out": tmp_path / "g.map", "mapfile": mapfile,
             "model": model}
    a, b = case.split("=")
    paths[a] = paths[b]
    args = ["repair", str(src), "-m", str(paths["model"]), "-o", str(paths["output"]), "--report",
            str(paths["report"]), "--map-out", str(paths["map-out"]), "--mapfile", str(paths["mapfile"]), "--force"]
    refused(args, tmp_path, "same file" if b in ("output",) or (a, b) == ("map-out", "output") else "output is the")


# What each command writes and reads: every write must differ from every other write and every read.
TABLE = {"evaluate": (["plot", "json-out", "samples-dir"], ["model", "compare", "data-dir"]),
         "repair": (["output", "report", "map-out"], ["input", "mapfile", "model"])}
PAIRS = [(cmd, w, o) for cmd, (writes, reads) in TABLE.items() for i, w in enumerate(writes)
         for o in writes[i + 1:] + reads]


@pytest.mark.parametrize("cmd,a,b", PAIRS)
def test_every_write_differs_from_every_other_path_of_the_command(tmp_path, src, untrained, cmd, a, b):
    model = tmp_path / "m.safetensors"
    model.write_bytes(untrained.read_bytes())
    (tmp_path / "other.safetensors").write_bytes(untrained.read_bytes())
    mapfile = tmp_path / "in.map"
    mapfile.write_text(f"0x0 +\n0x0 {hex(src.stat().st_size)} +\n")
    paths = {"output": tmp_path / "o.out", "report": tmp_path / "r.json", "map-out": tmp_path / "g.map",
             "mapfile": mapfile, "model": model, "input": src, "plot": tmp_path / "p.png",
             "json-out": tmp_path / "e.json", "samples-dir": tmp_path / "samples", "compare": tmp_path / "other.safetensors",
             "data-dir": src}
    paths[a] = paths[b]
    if cmd == "repair":
        args = ["repair", str(paths["input"]), "-o", str(paths["output"])]
        args += [x for k in ("report", "map-out", "mapfile", "model") for x in (f"--{k}", str(paths[k]))]
    else:
        args = ["evaluate"] + [x for k in ("plot", "json-out", "samples-dir", "model", "compare", "data-dir")
                               for x in (f"--{k}", str(paths[k]))]
    res = refused(args + ["--force"], tmp_path, "")
    why = "same file" if b in TABLE[cmd][0] else "not a folder" if a == "samples-dir" else "output is the"
    assert why in res.output


def test_a_link_to_another_output_is_the_same_file(tmp_path, src, untrained):
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "r.json")
    refused(["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "link"), "--report",
             str(tmp_path / "r.json"), "--force"], tmp_path, "same file")


@pytest.mark.parametrize("name", ["a[/b]", "disk[old].img", "[bold]x"])
def test_brackets_in_paths_are_shown_as_they_are(tmp_path, untrained, name):
    res = runner.invoke(app, ["repair", str(tmp_path / name), "-m", str(untrained), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and f"no such file: {tmp_path / name}" in res.output.replace("\n", "")


@pytest.mark.parametrize("args", [["repair", "{src}", "-o", "{tmp}/o", "--context", "[/]"],
                                  ["evaluate", "--levels", "[/x]"], ["evaluate", "--noise", "[/x]"],
                                  ["train", "-d", "{src}", "-o", "{tmp}/ck", "--noise", "[/x]"]])
def test_brackets_in_option_values_are_shown_as_they_are(tmp_path, src, untrained, args):
    args = [a.format(src=src, tmp=tmp_path) for a in args]
    res = refused(args + (["-m", str(untrained)] if args[0] == "repair" else []), tmp_path, "[/")
    assert "Traceback" not in res.output


def test_changed_setuid_file_loses_the_bit(tmp_path, untrained):
    p = tmp_path / "tool"
    p.write_bytes(text_bytes(4000, 3)[:1000] + bytes(64) + text_bytes(4000, 3)[1064:])
    os.chmod(p, 0o4755)
    res = runner.invoke(app, ["repair", str(p), "-m", str(untrained), "-o", str(tmp_path / "fixed"), "--zero-runs",
                              "16", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fixed").read_bytes() != p.read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "fixed").st_mode) == 0o755 and "setuid/setgid" in res.output
    res = runner.invoke(app, ["repair", str(p), "-m", str(untrained), "-o", str(tmp_path / "same"), "--threshold",
                              "1", "--floor", "0", "--model-floor", "0", "--binary-threshold", "1"])
    assert res.exit_code == 0 and (tmp_path / "same").read_bytes() == p.read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "same").st_mode) == 0o4755


def test_output_folders_inside_input_folders_are_refused(tmp_path, untrained):
    """A run whose outputs land in its own input tree would read them as inputs next time (repair
    its own outputs again, train on its checkpoints): refused before any work, nothing written."""
    data = make_corpus(tmp_path / "data", files=3, size=2048)
    refused(["repair", str(data), "-r", "-o", str(data / "restored"), "-m", str(untrained)], tmp_path,
            "must not contain one another")
    refused(["repair", str(data), "-r", "-o", str(data), "-m", str(untrained), "--force"], tmp_path,
            "must not contain one another")
    refused(["train", "--data-dir", str(data), "-o", str(data), "--epochs", "1"], tmp_path,
            "must not contain one another")
    refused(["train", "--data-dir", str(data), "-o", str(data / "ck"), "--epochs", "1"], tmp_path,
            "must not contain one another")
    refused(["repair", str(data), "-r", "-o", str(tmp_path), "-m", str(untrained)], tmp_path,
            "must not contain one another")  # the reverse: the output folder holds the input folder


def test_evaluate_never_writes_inside_its_data_folder(tmp_path, untrained):
    """--json-out, --plot and --samples-dir inside a data folder would replace data files (with
    --force) or be read as data next time: refused before the run, nothing written."""
    data = make_corpus(tmp_path / "data", files=3, size=4096)
    base = ["evaluate", "-d", str(data), "-m", str(untrained), "--max-fragments", "8", "--force"]
    refused(base + ["--json-out", str(data / "doc0.txt")], tmp_path, "inside the data folder")
    refused(base + ["--json-out", str(data / "new.json")], tmp_path, "inside the data folder")
    refused(base + ["--samples-dir", str(data / "samples")], tmp_path, "inside the data folder")
    refused(base + ["--samples-dir", str(tmp_path)], tmp_path, "inside the data folder")


def test_bad_seeds_and_sample_counts_are_refused_before_any_work(tmp_path, untrained):
    data = make_corpus(tmp_path / "data", files=2, size=2048)
    refused(["train", "--data-dir", str(data), "-o", str(tmp_path / "ck"), "--seed", "-5"], tmp_path, "--seed")
    refused(["evaluate", "-d", str(data), "-m", str(untrained), "--seed", "-1"], tmp_path, "--seed")
    refused(["evaluate", "-d", str(data), "-m", str(untrained), "--samples", "-1"], tmp_path, "--samples")
