"""Disk images from GNU ddrescue (issue 15): a mapfile is the truth about good bytes, whole sectors
come back from the data's own copies or a reference, and the work stays near the holes."""
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fragfix.cli.commands import app
from fragfix.files.mapfile import format_mapfile

from conftest import text_bytes

runner = CliRunner()
SECTOR = 512


def mapfile_for(path, size, holes):
    """A ddrescue mapfile: the sectors in `holes` (sector numbers) bad, the rest good."""
    path.write_text(format_mapfile(_merged(holes), size))
    return path


def _merged(holes):
    out = []
    for s in sorted(holes):
        if out and out[-1][1] == s * SECTOR:
            out[-1][1] += SECTOR
        else:
            out.append([s * SECTOR, (s + 1) * SECTOR])
    return [tuple(r) for r in out]


def image(tmp_path, truth: bytes, holes, rot=()):
    """The image as ddrescue leaves it: holes zeroed; `rot`: offsets with a flipped bit in good sectors."""
    img = bytearray(truth)
    for s in holes:
        img[s * SECTOR:(s + 1) * SECTOR] = bytes(SECTOR)
    for i in rot:
        img[i] ^= 0x08
    p = tmp_path / "disk.img"
    p.write_bytes(bytes(img))
    return p, mapfile_for(tmp_path / "disk.map", len(img), holes)


def repair(tmp_path, img, mapfile, model, *extra):
    r = runner.invoke(app, ["repair", str(img), "--mapfile", str(mapfile), "-o", str(tmp_path / "out"), "-m",
                            str(model), "--report", str(tmp_path / "r.json"), "--force", *extra])
    assert r.exit_code == 0, r.output
    return (tmp_path / "out").read_bytes(), json.loads((tmp_path / "r.json").read_text())


def test_good_bytes_are_never_changed_unless_asked(tmp_path, trained):
    truth = text_bytes(40_000, 1)
    rot = list(range(1_000, 30_000, 1_500))
    img, mapfile = image(tmp_path, truth, holes=[40, 41], rot=rot)
    data = img.read_bytes()
    out, rep = repair(tmp_path, img, mapfile, trained)
    bad = np.zeros(len(data), bool)
    bad[40 * SECTOR:42 * SECTOR] = True
    diff = np.frombuffer(out, np.uint8) != np.frombuffer(data, np.uint8)
    assert not (diff & ~bad).any() and rep["totals"]["suspected"] == 0 and rep["only_unknown"] is True
    # bit rot in '+' bytes: now fixed (sparse, so below the clean rate that opens the gate by default)
    out, rep = repair(tmp_path, img, mapfile, trained, "--correct-good", "--clean-rate", "0")
    assert rep["totals"]["suspected"] > 0 and rep["only_unknown"] is False
    assert sum(out[i] == truth[i] for i in rot) > len(rot) // 2


def test_a_sector_whose_content_is_elsewhere_is_restored_exactly(tmp_path, untrained):
    doc = text_bytes(30_000, 2)
    truth = doc + bytes(2_768) + doc  # a file and its backup copy, 4 KiB aligned
    second = (len(doc) + 2_768) // SECTOR
    img, mapfile = image(tmp_path, truth, holes=[second + 20, second + 21, 7])
    out, rep = repair(tmp_path, img, mapfile, untrained)
    assert out == truth  # both copies lost sectors; each restores the other
    runs = {c["start"]: c for c in rep["copies"]}
    assert runs[(second + 20) * SECTOR]["source"] == "image"
    assert runs[(second + 20) * SECTOR]["source_offset"] == 20 * SECTOR
    assert runs[(second + 20) * SECTOR]["end"] == (second + 22) * SECTOR
    assert rep["totals"]["copied"] == 3 * SECTOR
    assert rep["totals"]["fragments_touched"] == 3  # copies change fragments too (once said 0)
    assert {c["reason"] for c in rep["changes"]} == {"copy"}


def test_a_reference_fills_what_it_holds(tmp_path, untrained):
    truth = text_bytes(50_000, 3)
    img, mapfile = image(tmp_path, truth, holes=[30, 60])
    ref = bytearray(truth)
    ref[60 * SECTOR:61 * SECTOR] = bytes(SECTOR)  # the second read lost sector 60 too
    (tmp_path / "second-read.img").write_bytes(bytes(ref))
    out, rep = repair(tmp_path, img, mapfile, untrained, "--reference", str(tmp_path / "second-read.img"))
    assert out[30 * SECTOR:31 * SECTOR] == truth[30 * SECTOR:31 * SECTOR]
    assert [c["source"] for c in rep["copies"]] == [str(tmp_path / "second-read.img")]
    assert out[60 * SECTOR:61 * SECTOR] != truth[60 * SECTOR:61 * SECTOR]  # no copy anywhere: the model's guess


@pytest.mark.parametrize("agree", [1, 3])
def test_copies_that_disagree_are_not_used(tmp_path, untrained, agree):
    """One copy against one that differs inside the lost sector: no clear majority, no copy. Three
    against one: the three win."""
    doc = text_bytes(20_000, 4)
    other = bytearray(doc)
    other[10 * SECTOR + 100] ^= 0x01  # a second copy that differs inside the lost sector
    truth = doc + bytes(480) + bytes(other) + (bytes(480) + doc) * agree
    img, mapfile = image(tmp_path, truth, holes=[10])
    out, rep = repair(tmp_path, img, mapfile, untrained)
    if agree == 1:
        assert rep.get("copies", []) == [] and rep["totals"]["copied"] == 0
        assert out[10 * SECTOR:11 * SECTOR] != other[10 * SECTOR:11 * SECTOR]
    else:
        assert [(c["places"], c["agreeing_places"]) for c in rep["copies"]] == [(4, 3)]
        assert out == truth


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_copy_must_match_on_both_sides(tmp_path, untrained, side):
    """An older version of the file shares the bytes on one side of the lost sector only: it is not a
    copy of what the sector held, and is not used."""
    doc = bytearray(text_bytes(20_000, 4))
    # the search looks a run up by the most varied 8 bytes around it: put them on the shared side, so
    # that a place is found and only the other side's check can turn it down
    sharp, dull = b"QWERTYUIOPASDFGHJKLZXCVBNM012345", b"abcdef" * 5 + b"ab"  # 8 distinct in 8, 6 in 8
    doc[10 * SECTOR - 32:10 * SECTOR] = sharp if side == "left" else dull
    doc[11 * SECTOR:11 * SECTOR + 32] = dull if side == "left" else sharp
    doc = bytes(doc)
    old = bytearray(text_bytes(20_000, 9))  # another text, sharing one side of sector 10 with doc
    if side == "left":
        old[:10 * SECTOR] = doc[:10 * SECTOR]
    else:
        old[11 * SECTOR:] = doc[11 * SECTOR:]
    old[10 * SECTOR:11 * SECTOR] = doc[10 * SECTOR:11 * SECTOR]  # even the sector's own bytes agree
    truth = doc + bytes(480) + bytes(old)
    img, mapfile = image(tmp_path, truth, holes=[10])
    out, rep = repair(tmp_path, img, mapfile, untrained)
    assert rep.get("copies", []) == [] and rep["totals"]["copied"] == 0


def test_the_shortcut_around_holes_changes_nothing(tmp_path, trained, monkeypatch):
    """Windows without unknown bytes skip the model; the same image through decide() window by window
    gives the same bytes."""
    import fragfix.recovery.repair as rep
    truth = text_bytes(700_000, 5)  # three windows of 256 KB: holes in the first and last, none between
    img, mapfile = image(tmp_path, truth, holes=[100, 1_200])
    args = ("--window-mb", "0.25", "--no-formats")
    fast, _ = repair(tmp_path, img, mapfile, trained, *args)
    real = rep._decide
    monkeypatch.setattr(rep, "_decide_sparse", lambda scorer, frags, unknown, cfg, lengths, pieces=None:
                        real(scorer, frags, unknown, cfg, lengths, pieces))
    full, _ = repair(tmp_path, img, mapfile, trained, *args)
    assert fast == full


def test_a_large_sparse_image_runs_in_flat_memory(tmp_path, untrained):
    """Peak memory of the repair itself, in a child process, for 8 MB and 40 MB sparse images with a
    few bad sectors: the same within 20 MB (memory that grew with the image would add 32)."""
    code = ("import resource, sys; from pathlib import Path; from fragfix.files.jobs import plan_jobs; "
            "from fragfix.recovery.repair import repair_files; from fragfix.config import RepairConfig; "
            "d = Path(sys.argv[1]); jobs, _ = plan_jobs([d / 'img'], d / 'out', False, False, d / 'img.map'); "
            "repair_files(jobs, Path(sys.argv[2]), RepairConfig()); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = []
    for mb in (8, 40):
        d = tmp_path / f"m{mb}"
        d.mkdir()
        with open(d / "img", "wb") as f:
            f.truncate(mb << 20)
            f.seek(3 << 20)
            f.write(text_bytes(20_000, 6))
        mapfile_for(d / "img.map", mb << 20, [(3 << 20) // SECTOR + 10, (mb << 20) // SECTOR - 5])
        r = subprocess.run([sys.executable, "-c", code, str(d), str(untrained)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        peaks.append(int(r.stdout.split()[-1]) / 1024)
        assert (d / "out").stat().st_size == mb << 20
        (d / "out").unlink()
    assert peaks[1] - peaks[0] < 20, peaks


@pytest.mark.parametrize("holes", [[0], [1], [20, 21, 22], [23]])
def test_holes_at_the_edges_and_long_runs(tmp_path, untrained, holes):
    """Holes at the first and last sector and a long run: every unknown byte is filled (reported as
    a guess, never left as the zeros read), every good byte is kept, the length is exact."""
    truth = text_bytes(24 * SECTOR, 7)
    img, mapfile = image(tmp_path, truth, holes=holes)
    out, rep = repair(tmp_path, img, mapfile, untrained)
    unknown = np.zeros(len(truth), bool)
    for h in holes:
        unknown[h * SECTOR:(h + 1) * SECTOR] = True
    assert len(out) == len(truth) and rep["totals"]["unknown_bytes"] == int(unknown.sum())
    a, b = np.frombuffer(out, np.uint8), np.frombuffer(img.read_bytes(), np.uint8)
    assert (a[~unknown] == b[~unknown]).all()
    guessed = {c["offset"] for c in rep["changes"] if c["reason"] == "unknown"}
    assert guessed == set(np.flatnonzero(unknown & (a != 0)).tolist()) and len(guessed) > 0.5 * unknown.sum()


def test_a_file_start_after_padding_is_found_with_less_confidence(tmp_path, untrained):
    """A lost first sector of a file: padding (zeros) before it, the file's own bytes after. Its
    copy sits after padding too; the match is used, and reported with confidence 0.8, not 1."""
    doc = text_bytes(6_000, 8)
    truth = text_bytes(3_000, 9) + bytes(1_096) + doc + bytes(2_192) + doc + bytes(2_192)
    second = (3_000 + 1_096 + 6_000 + 2_192) // SECTOR
    img, mapfile = image(tmp_path, truth, holes=[second])
    out, rep = repair(tmp_path, img, mapfile, untrained)
    assert out == truth
    assert rep["copies"][0]["padding_side"] is True and rep["copies"][0]["confidence"] == 0.8
    assert {c["confidence"] for c in rep["changes"]} == {0.8}


def test_a_second_read_with_its_mapfile_fills_what_it_read(tmp_path, untrained):
    """A reference of the image's size with its own mapfile: its good bytes fill the image's unknown
    ones in place, even a 100 KB gap no anchor could span; what both reads lost stays the model's."""
    truth = text_bytes(400_000, 10)
    holes = list(range(100, 300))  # 100 KB unreadable in the first read
    img, mapfile = image(tmp_path, truth, holes=holes)
    ref = bytearray(truth)
    ref[250 * SECTOR:251 * SECTOR] = bytes(SECTOR)  # the second read lost one of those sectors too
    (tmp_path / "read2.img").write_bytes(bytes(ref))
    mapfile_for(tmp_path / "read2.map", len(ref), [250])
    out, rep = repair(tmp_path, img, mapfile, untrained, "--reference", str(tmp_path / "read2.img"),
                      "--reference-mapfile", str(tmp_path / "read2.map"))
    good = [s for s in holes if s != 250]
    assert all(out[s * SECTOR:(s + 1) * SECTOR] == truth[s * SECTOR:(s + 1) * SECTOR] for s in good)
    assert [(c["start"], c["end"]) for c in rep["copies"]] == [(100 * SECTOR, 250 * SECTOR),
                                                               (251 * SECTOR, 300 * SECTOR)]
    assert rep["totals"]["copied"] == len(good) * SECTOR
    r = runner.invoke(app, ["repair", str(img), "--mapfile", str(mapfile), "-o", str(tmp_path / "x"), "-m",
                            str(untrained), "--reference-mapfile", str(tmp_path / "read2.map")])
    assert r.exit_code == 2 and "give the reference first" in r.output


def test_the_input_itself_is_no_reference(tmp_path, untrained):
    """--reference naming the input (or a link to it) would 'fill' unknown bytes with the stale bytes at
    the same offset, with confidence 1: refused, exit 2, nothing written."""
    img, mapfile = image(tmp_path, text_bytes(20_000, 2), holes=[5])
    (tmp_path / "link.img").symlink_to(img)
    for ref in (img, tmp_path / "link.img"):
        r = runner.invoke(app, ["repair", str(img), "--mapfile", str(mapfile), "-o", str(tmp_path / "out"), "-m",
                                str(untrained), "--reference", str(ref)])
        assert r.exit_code == 2 and "is the input itself" in r.output and not (tmp_path / "out").exists()
