"""Repairs split over machines: --shard K/N and --files-from LIST (jobs.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from typer.testing import CliRunner

from fragfix.cli.commands import app
from fragfix.errors import InvalidInput
from fragfix.files.jobs import parse_shard, shard_of

from conftest import text_bytes

runner = CliRunner()


def tree(root: Path) -> Path:
    for i in range(12):
        sub = root / ("a" if i % 3 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(text_bytes(600 + 37 * i, i))
    return root


def repair(*args: str) -> dict:
    r = runner.invoke(app, ["repair", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_shards_split_a_folder_into_disjoint_parts_whose_totals_add_up(tmp_path):
    src = tree(tmp_path / "in")
    whole = repair("-r", str(src), "-o", str(tmp_path / "all"))
    parts = [repair("-r", str(src), "--shard", f"{k}/3", "-o", str(tmp_path / f"s{k}")) for k in (1, 2, 3)]
    outs = [Path(f["output"]).relative_to(tmp_path / f"s{k}") for k, p in zip((1, 2, 3), parts) for f in p["files"]]
    assert sorted(outs) == sorted(Path(f["output"]).relative_to(tmp_path / "all") for f in whole["files"])
    assert len(set(outs)) == len(outs) == 12 and all(p["files"] for p in parts)
    for key in ("size", "fragments", "changed"):
        assert sum(p["totals"][key] for p in parts) == whole["totals"][key]
    assert [p["shard"] for p in parts] == [{"k": k, "n": 3, "files": len(p["files"])} for k, p in zip((1, 2, 3), parts)]
    for rel in outs:  # each shard's output is the whole run's, byte for byte
        k = next(k for k in (1, 2, 3) if (tmp_path / f"s{k}" / rel).exists())
        assert (tmp_path / f"s{k}" / rel).read_bytes() == (tmp_path / "all" / rel).read_bytes()


def test_a_files_shard_depends_on_its_own_name_only():
    names = [Path(f"d/{i}.bin") for i in range(200)]
    assert [shard_of(p, 7) for p in names] == [shard_of(p, 7) for p in names]
    got = {shard_of(p, 7) for p in names}
    assert got == set(range(1, 8))  # every shard gets work from 200 names
    assert shard_of(Path("./d/1.bin"), 7) == shard_of(Path("d/1.bin"), 7)


def test_files_from_keeps_listed_paths_under_the_output_folder(tmp_path, monkeypatch):
    src = tree(tmp_path / "in")
    monkeypatch.chdir(src)
    (tmp_path / "list").write_bytes(b"a/f1.txt\r\n\nb/c/f0.txt\n")
    s = repair("--files-from", str(tmp_path / "list"), "-o", str(tmp_path / "out"))
    assert sorted(Path(f["output"]).relative_to(tmp_path / "out").as_posix() for f in s["files"]) == \
        ["a/f1.txt", "b/c/f0.txt"]
    r = runner.invoke(app, ["repair", "--files-from", "-", "-o", str(tmp_path / "out2"), "--json"],
                      input=f"{src / 'a' / 'f2.txt'}\n")
    assert r.exit_code == 0, r.output
    assert Path(json.loads(r.stdout)["files"][0]["output"]) == \
        tmp_path / "out2" / (src / "a" / "f2.txt").relative_to("/")  # absolute: its root dropped, as tar does


@pytest.mark.parametrize("content, message", [
    (b"", "lists no files"), (b"\n\r\n", "lists no files"), (b"a\0b\n", "NUL bytes"),
    (b"../in/a/f1.txt\n", "may not contain '..'"), (b"missing.txt\n", "missing.txt")])
def test_bad_lists_are_refused_with_one_line(tmp_path, monkeypatch, content, message):
    tree(tmp_path / "in")
    monkeypatch.chdir(tmp_path / "in")
    (tmp_path / "list").write_bytes(content)
    r = runner.invoke(app, ["repair", "--files-from", str(tmp_path / "list"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


@given(st.text(max_size=12))
def test_shard_text_is_k_of_n_or_a_clear_error(text):
    try:
        k, n = parse_shard(text)
    except InvalidInput as e:
        assert "--shard must be K/N" in str(e)
        return
    a, b = text.split("/")
    assert (int(a), int(b)) == (k, n) and 1 <= k <= n and (a + b).isascii()


def test_shard_examples():
    assert parse_shard("3/8") == (3, 8) and parse_shard("08/08") == (8, 8)
    for bad in ("0/3", "4/3", "3", "/3", "3/", "-1/3", "1/3/4", "a/b", "3/\u00b2"):
        with pytest.raises(InvalidInput):
            parse_shard(bad)


def test_one_file_given_twice_is_repaired_once(tmp_path):
    """A path and a link to it (or the same path twice) are one file: one output, the other named
    as skipped; the totals count its bytes once."""
    src = tmp_path / "doc.txt"
    src.write_bytes(text_bytes(5_000, 3))
    (tmp_path / "link.txt").symlink_to(src)
    os_link = tmp_path / "hard.txt"
    os_link.hardlink_to(src)
    s = repair(str(src), str(tmp_path / "link.txt"), str(os_link), str(src), "-o", str(tmp_path / "out"))
    assert [Path(f["output"]).name for f in s["files"]] == ["doc.txt"] and s["totals"]["size"] == 5_000
    assert sorted(Path(k["path"]).name for k in s["skipped"]) == ["doc.txt", "hard.txt", "link.txt"]
    assert {k["same_as"] for k in s["skipped"]} == {str(src)}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["doc.txt"]
