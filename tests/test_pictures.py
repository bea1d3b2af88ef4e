"""Pictures (issue 16): rendered from small fixed inputs and checked for what can be checked without
eyes: PNG size, each legend colour present where expected, block counts equal to the report's totals,
the same bytes for the same inputs, refusal over existing files, a one-line error without matplotlib."""
import gzip
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fragfix.recovery.blockmap import KINDS, BlockMap, block_size
from fragfix.cli.commands import app
from fragfix.cli.pictures import BYTE_COLOURS, MAP_COLOURS, byte_status

from conftest import make_corpus, text_bytes

pytest.importorskip("matplotlib")
runner = CliRunner()


def png(path):
    import matplotlib.image as mpimg
    return (mpimg.imread(path)[..., :3] * 255).round().astype(np.int16)


def has_colour(img, hex_colour: str, tol: int = 6) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(img - rgb).max(-1) <= tol).any())


@pytest.fixture
def heldout(tmp_path):
    return make_corpus(tmp_path / "heldout", files=3, size=40000, seed=99)


def summary_of(r):
    return json.loads(r.stdout)


@pytest.fixture
def damaged(tmp_path):
    """A text file with flipped bits, and a mapfile marking 200 zeroed bytes unknown."""
    data = bytearray(text_bytes(20_000, 3))
    for i in range(300, 20_000, 997):
        data[i] ^= 0x04
    data[8000:8200] = bytes(200)
    p = tmp_path / "disk.txt"
    p.write_bytes(bytes(data))
    m = tmp_path / "disk.map"
    m.write_text(f"0x0 +\n0x0 0x1F40 +\n0x1F40 0xC8 -\n0x2008 {hex(len(data) - 0x2008)} +\n")
    return p, m


def test_block_size_is_a_power_of_two_that_fits():
    assert block_size(1) == 1 and block_size(4096) == 1 and block_size(4097) == 2
    assert block_size(1 << 30) == 1 << 18
    m = BlockMap(10_000)
    m.add("changed", np.array([0, 5, 9_999]))
    c = m.coarsen(7)
    assert c.n <= 7 and c.totals()["changed"] == 3 and c.block & (c.block - 1) == 0


def test_repair_map_counts_match_the_report_and_show_their_colours(tmp_path, damaged, trained):
    src, mapfile = damaged
    r = runner.invoke(app, ["repair", str(src), "-m", str(trained), "-o", str(tmp_path / "out"), "--mapfile",
                            str(mapfile), "--plot", str(tmp_path / "map.png"), "--json"])
    assert r.exit_code == 0, r.output
    s = summary_of(r)
    t, blocks = s["totals"], s["files"][0]["blocks"]
    assert blocks["totals"]["changed"] == t["suspected"]
    assert blocks["totals"]["filled"] == t["unknown_filled"]
    assert blocks["totals"]["left_unknown"] == t["unknown_bytes"] - t["unknown_filled"] == 200 - t["unknown_filled"]
    assert sum(sum(v) for v in blocks["counts"].values()) == t["changed"] + blocks["totals"]["left_unknown"]
    img = png(tmp_path / "map.png")
    assert img.shape[1] >= 800 and img.shape[0] >= 400
    for kind in KINDS:  # exactly the kinds that happened appear, in their colours
        assert has_colour(img, MAP_COLOURS[kind]) == (blocks["totals"][kind] > 0), kind
    assert has_colour(img, MAP_COLOURS["untouched"])
    assert "block map:" in r.stderr


def test_folder_map_has_a_strip_per_file_and_verified_gzip(tmp_path, trained):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_bytes(text_bytes(6000, 1))
    gz = bytearray(gzip.compress(text_bytes(30_000, 2), mtime=0))
    gz[200] ^= 0x10
    (folder / "b.gz").write_bytes(bytes(gz))
    r = runner.invoke(app, ["repair", "-r", str(folder), "-m", str(trained), "-o", str(tmp_path / "out"), "--plot",
                            str(tmp_path / "map.png"), "--json"])
    assert r.exit_code == 0, r.output
    files = summary_of(r)["files"]
    assert [f["blocks"]["size"] for f in files] == [6000, len(gz)]
    assert files[1]["blocks"]["totals"]["verified"] == 1
    assert has_colour(png(tmp_path / "map.png"), MAP_COLOURS["verified"])


def test_pictures_are_the_same_bytes_every_time_and_refused_over_existing(tmp_path, damaged, trained):
    src, _ = damaged
    outs = []
    for i in range(2):
        args = ["repair", str(src), "-m", str(trained), "-o", str(tmp_path / f"o{i}"), "--plot",
                str(tmp_path / f"m{i}.png")]
        assert runner.invoke(app, args).exit_code == 0
        outs.append((tmp_path / f"m{i}.png").read_bytes())
    assert outs[0] == outs[1]
    before = outs[0]
    r = runner.invoke(app, ["repair", str(src), "-m", str(trained), "-o", str(tmp_path / "o9"), "--plot",
                            str(tmp_path / "m0.png")])
    assert r.exit_code == 2 and "--force" in r.output and (tmp_path / "m0.png").read_bytes() == before
    assert not (tmp_path / "o9").exists()  # refused before any work


def test_without_matplotlib_a_plot_is_one_line_before_any_work(tmp_path, damaged, trained, monkeypatch):
    src, _ = damaged
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for args in (["repair", str(src), "-m", str(trained), "-o", str(tmp_path / "o"), "--plot", str(tmp_path / "p.png")],
                 ["evaluate", "-d", str(src), "-m", str(trained), "--plot", str(tmp_path / "e.png")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "pip install 'fragfix[plot]'" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.map", "disk.txt"]


def test_evaluate_figure_and_samples_mark_what_happened(tmp_path, trained, heldout):
    args = ["evaluate", "-d", str(heldout), "-m", str(trained), "--noise", "byte,zero", "--levels", "0.01,0.05",
            "--max-fragments", "60", "--samples-dir", str(tmp_path / "s"), "--plot", str(tmp_path / "e.png"),
            "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    img = png(tmp_path / "e.png")
    assert img.shape[1] > img.shape[0] > 400
    assert has_colour(img, "#bfbfbf") and has_colour(img, "#1f77b4")  # the damaged baseline, the model's line
    samples = summary_of(r)["samples"]
    assert {s["noise"] for s in samples} == {"byte", "zero"} and all(s["level"] == 0.05 for s in samples)
    for s in samples:
        stem = str(tmp_path / "s" / f"{s['noise']}_{s['level']:g}_{s['index']}")
        status = byte_status(s)
        pic = png(stem + ".png")
        pic = pic[:int(pic.shape[0] * 0.92)]  # the panels; the legend below shows every colour
        for kind in ("fixed", "broken", "still wrong"):
            assert has_colour(pic, BYTE_COLOURS[kind]) == (kind in status), (kind, stem)
        text = open(stem + ".txt").read()
        assert text.startswith("marks under each repaired byte")
        if s["unknown"]:
            assert s["noise"] == "zero" and any(c in text for c in "fw")


def test_byte_status():
    s = {"original": [1, 2, 3, 4], "damaged": [1, 9, 9, 4], "repaired": [7, 2, 8, 4]}
    assert byte_status(s) == ["broken", "fixed", "still wrong", "clean"]
