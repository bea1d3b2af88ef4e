"""Salvage: deflate decoded again past lost bytes, every byte marked exact, unchecked, guessed or lost."""
from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fragfix.cli.commands import app
from fragfix.files.mapfile import format_mapfile, parse_mapfile
from fragfix.formats import salvage as fs
from fragfix.formats import tarlist
from fragfix.formats.deflate import recover, resync
from fragfix.recovery.salvage import EXACT, GUESSED, LOST, UNCHECKED, SalvageConfig, salvage_data
from fragfix.rule.fill import guess_copies
from conftest import text_bytes

runner = CliRunner()


def source_text(n: int, seed: int = 0) -> bytes:
    """Program-like text with the repetition real source has (identifiers reused, lines alike)."""
    rng = random.Random(seed)
    names = [f"{rng.choice(['get', 'set', 'read', 'parse', 'check'])}_{rng.choice(['file', 'block', 'byte', 'tree'])}"
             f"{i}" for i in range(300)]
    out, size = [], 0
    while size < n:
        a, b = rng.choice(names), rng.choice(names)
        line = rng.choice([f"def {a}(self, {b}):\n", f"    return self.{a}({b}) + {rng.randint(0, 99)}\n",
                           f"    if {b} is None:\n        raise ValueError('{a}')\n", f"# {a} calls {b}\n"])
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


@pytest.fixture(scope="module")
def tar_gz() -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(40):
            data = source_text(30_000 + 997 * i, seed=i)
            ti = tarfile.TarInfo(f"src/mod{i}.py")
            ti.size, ti.mtime = len(data), 0
            tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return raw, c.compress(raw) + c.flush()


def zero(d: bytes, a: int, n: int) -> bytes:
    b = bytearray(d)
    b[a:a + n] = bytes(n)
    return bytes(b)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 200))
def test_shifted_reads_the_same_bits(data, bit):
    bit = bit % (8 * len(data))
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    got = np.unpackbits(np.frombuffer(resync.shifted(data, bit), np.uint8), bitorder="little")
    assert np.array_equal(got[:len(bits) - bit], bits[bit:])


def test_headers_finds_the_block_that_starts_after_a_flush():
    one, two = text_bytes(20_000, 1), text_bytes(20_000, 2)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(one) + c.flush(zlib.Z_SYNC_FLUSH)  # ends with an empty stored block, byte-aligned
    stream = first + c.compress(two) + c.flush()
    found = resync.headers(stream, 0, 8 * len(stream))
    assert 8 * len(first) in found                       # the dynamic block of `two`
    assert 8 * (len(first) - 5) in found                 # the empty stored block (00 00 00 FF FF)
    h = resync.header_at(stream, 8 * len(first))
    assert h is not None and h.kind == 2
    assert zlib.decompressobj(-15, zdict=one[-32768:]).decompress(resync.shifted(stream, h.at)) == two


def test_a_lost_sector_resumes_inside_its_block_with_every_known_byte_exact(tar_gz):
    raw, gz = tar_gz
    a = (len(gz) // 2) // 512 * 512
    items = fs.salvage(zero(gz, a, 512), "gzip", [(a, a + 512)])
    assert len(items) == 1
    it = items[0]
    assert it.stream["how"] == "in block" and it.stream["lost_length_known"]
    data = np.frombuffer(bytes(it.data), np.uint8)
    orig = np.frombuffer(raw, np.uint8)
    assert len(data) == len(orig)  # the lost length came from ISIZE: everything after sits in place
    known = np.ones(len(data), bool)
    for x, y in it.lost:
        known[x:y] = False
    known[it.unknown] = False
    assert np.array_equal(data[known], orig[known])
    (p, q), = it.lost
    assert p > 0 and (it.source >= p).all() and (it.source < q).all()  # copies come from the lost bytes
    assert known[q:].mean() > 0.5  # most of what follows is exact (copies of copies of lost bytes are not)


def test_salvage_cli_writes_content_map_and_report_and_lists_whole_members(tar_gz, tmp_path):
    raw, gz = tar_gz
    a = (len(gz) // 3) // 512 * 512
    src = tmp_path / "backup.tar.gz"
    src.write_bytes(zero(gz, a, 512))
    m = tmp_path / "backup.map"
    m.write_text(format_mapfile([(a, a + 512)], len(gz)))
    r = runner.invoke(app, ["salvage", str(src), "--mapfile", str(m), "--zero-runs", "0", "--no-fill",
                            "--report", str(tmp_path / "r.json"), "--map-out", str(tmp_path / "c.map"), "--json"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "backup.tar"  # the default name
    summary = json.loads(r.stdout)
    assert summary["output"] == str(out) and out.stat().st_size == len(raw)
    content = out.read_bytes()
    report = json.loads((tmp_path / "r.json").read_text())
    ranges = report["outputs"][0]["ranges"]
    assert ranges[0][2] == "exact" and ranges[-1][1] == len(raw)
    for x, y, label in ranges:
        if label == "exact":
            assert content[x:y] == raw[x:y]
    back = parse_mapfile((tmp_path / "c.map").read_text())
    assert back.size == len(raw) and {b.status for b in back.blocks} <= {"+", "-"}
    tar = summary["tar"]
    assert 0 < tar["whole"] < tar["members"] == 40
    whole = {m["name"] for m in tarlist.members(bytearray(raw), np.ones(len(raw), bool))} - set(tar["not_whole"])
    with tarfile.open(fileobj=io.BytesIO(content)) as t:  # every member called whole extracts unchanged
        with tarfile.open(fileobj=io.BytesIO(raw)) as want:
            for name in whole:
                assert t.extractfile(name).read() == want.extractfile(name).read()


def test_guessing_fills_copies_of_lost_bytes_mostly_right():
    raw = source_text(150_000, seed=7)
    gz = _gzip(raw)
    a = (len(gz) // 2) // 512 * 512
    (it, state), = salvage_data(zero(gz, a, 512), "gzip", [(a, a + 512)], SalvageConfig(fill=True))
    g = state == GUESSED
    assert g.sum() > 100
    assert (np.frombuffer(bytes(it.data), np.uint8)[g] == np.frombuffer(raw, np.uint8)[g]).mean() > 0.6
    assert (state[:a] == EXACT).all() and (state == LOST).any()


def test_guess_copies_agrees_across_copies():
    text = bytearray(b"value = compute(value)\n" * 200)
    data = np.frombuffer(bytes(text), np.uint8).copy()
    pos = np.array([23 * k + 8 for k in range(5, 200, 7)])  # the 'c' of compute in many lines
    known = np.ones(len(data), bool)
    known[pos] = False
    data[pos] = 0
    value, prob = guess_copies(data, known, pos, np.zeros(len(pos), np.int64))
    assert (value == ord("c")).all() and (prob > 0.5).all()


def test_a_file_cut_short_gives_everything_up_to_the_cut_exact(tar_gz):
    raw, gz = tar_gz
    (it, state), = salvage_data(gz[:len(gz) * 6 // 10], "gzip", [], SalvageConfig(fill=False))
    n = len(it.data)
    assert it.stream["how"] == "truncated" and n > len(raw) // 2
    assert bytes(it.data) == raw[:n]
    # the output of the last 4 KiB before the cut is unchecked (damage over a file's end looks like a cut)
    exact = int((state == EXACT).sum())
    assert (state[:exact] == EXACT).all() and (state[exact:] == UNCHECKED).all() and exact > n * 0.8


@pytest.mark.parametrize("seed", range(6))
def test_damage_nothing_locates_is_never_called_exact(tar_gz, seed):
    """Random bytes over a stretch, or a few flipped bits, with no map: inflate notices late or
    never, so whatever it decodes is unchecked, never exact (a planted 'exact' fails this)."""
    raw, gz = tar_gz
    rng = random.Random(seed)
    d = bytearray(gz)  # (a file both cut short and damaged where nothing says is a clean cut to salvage)
    a = rng.randrange(100, len(d) - 5000)
    if seed < 3:
        d[a:a + 3000] = bytes(rng.randrange(256) for _ in range(3000))
    else:
        for p in rng.sample(range(100, len(d) - 8), 3):
            d[p] ^= 1 << rng.randrange(8)
    for it, state in salvage_data(bytes(d), "gzip", [], SalvageConfig(fill=False)):
        data = np.frombuffer(bytes(it.data), np.uint8)
        n = min(len(data), len(raw))
        exact = state[:n] == EXACT
        assert np.array_equal(data[:n][exact], np.frombuffer(raw, np.uint8)[:n][exact])
        assert not exact.any()
        assert (state[:n] == UNCHECKED).any() or it.stream.get("how") == "lost to the end"


def make_zip(n: int = 12) -> tuple[bytes, dict[str, bytes]]:
    files = {f"dir/f{i}.py": source_text(8_000 + 500 * i, seed=100 + i) for i in range(n)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("../../escape.txt", b"outside")  # a hostile name stays inside the folder
    return buf.getvalue(), files


def test_zip_entries_untouched_by_a_zeroed_block_are_verified_and_written_in_a_folder(tmp_path):
    z, files = make_zip()
    a = len(z) // 2 // 4096 * 4096
    src = tmp_path / "a.zip"
    src.write_bytes(zero(z, a, 4096))
    r = runner.invoke(app, ["salvage", str(src), "-o", str(tmp_path / "out"), "--no-fill", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    statuses = {o["name"]: o["status"] for o in s["outputs"]}
    assert list(statuses.values()).count("verified") >= len(files) - 3
    for name, status in statuses.items():
        if status == "verified" and name in files:
            assert (tmp_path / "out" / name).read_bytes() == files[name]
    assert (tmp_path / "out" / "escape.txt").read_bytes() == b"outside"
    assert not (tmp_path / "escape.txt").exists()


def test_salvage_refuses_what_it_cannot_read_in_one_line(tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_bytes(b"just text, not an archive\n" * 10)
    r = runner.invoke(app, ["salvage", str(plain)])
    assert r.exit_code == 2 and "not a gzip, zlib or zip file" in r.output and "Traceback" not in r.output
    gz = tmp_path / "x.gz"
    gz.write_bytes(_gzip(b"hello" * 100))
    (tmp_path / "x").write_bytes(b"already here")
    r = runner.invoke(app, ["salvage", str(gz)])
    assert r.exit_code == 2 and "output exists" in r.output
    assert (tmp_path / "x").read_bytes() == b"already here"
    r = runner.invoke(app, ["salvage", str(gz), "-o", str(tmp_path / "y"), "--zero-runs", "-1"])
    assert r.exit_code == 2 and "--zero-runs" in r.output


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def test_an_intact_gzip_salvages_verified(tmp_path):
    data = text_bytes(50_000, 3)
    (it, state), = salvage_data(_gzip(data), "gzip", [], SalvageConfig())
    assert it.status == "verified" and bytes(it.data) == data and (state == EXACT).all()


def test_two_members_the_second_whole_after_the_first_lost_its_header():
    one, two = text_bytes(200_000, 4), text_bytes(40_000, 5)
    first = _gzip(one)
    d = zero(first, 20, 512) + _gzip(two)  # the first block's code lengths are lost with those bytes
    (a, sa), (b, sb) = salvage_data(d, "gzip", [(20, 532)], SalvageConfig(fill=False))
    assert b.status == "verified" and bytes(b.data) == two and (sb == EXACT).all()
    assert a.stream["how"] in ("at block", "lost to the end")  # never resumed with codes read from lost bits
    got, want = np.frombuffer(bytes(a.data), np.uint8), np.frombuffer(one, np.uint8)
    assert len(got) == len(want)
    assert np.array_equal(got[sa == EXACT], want[sa == EXACT])


def test_a_stream_s_last_bit_lies_in_one_of_two_bytes():
    assert recover._ends(0, 0, 10) == [10]       # decoding began on a byte boundary: one end
    assert recover._ends(3, 0, 10) == [10, 11]   # three bits in: the last byte may be the next one


def test_salvage_never_writes_where_it_reads(tmp_path):
    z, _ = make_zip(3)
    folder = tmp_path / "in"
    folder.mkdir()
    src = folder / "a.zip"
    src.write_bytes(z)
    r = runner.invoke(app, ["salvage", str(src), "-o", str(folder), "--force"])
    assert r.exit_code == 2 and "holds the input" in r.output
    gz = tmp_path / "b.gz"
    gz.write_bytes(_gzip(text_bytes(5000, 1)))
    for bad in (["-o", str(gz), "--force"], ["-o", str(tmp_path / "o"), "--report", str(gz), "--force"]):
        r = runner.invoke(app, ["salvage", str(gz), *bad])
        assert r.exit_code == 2, r.output
    m = tmp_path / "b.map"
    m.write_text(format_mapfile([(0, 10)], 99))  # describes another size
    r = runner.invoke(app, ["salvage", str(gz), "-o", str(tmp_path / "o"), "--mapfile", str(m)])
    assert r.exit_code == 2 and "describes 99 bytes" in r.output
    assert gz.read_bytes() == _gzip(text_bytes(5000, 1)) and not (tmp_path / "o").exists()


def test_salvage_plot_draws_the_content_map(tar_gz, tmp_path):
    pytest.importorskip("matplotlib")
    raw, gz = tar_gz
    a = (len(gz) // 2) // 512 * 512
    src = tmp_path / "t.tgz"
    src.write_bytes(zero(gz, a, 512))
    r = runner.invoke(app, ["salvage", str(src), "--no-fill", "--plot", str(tmp_path / "m.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.tar").stat().st_size == len(raw)
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["salvage", str(src), "-o", str(tmp_path / "u"), "--plot", str(tmp_path / "m.jpg")])
    assert r.exit_code == 2 and ".png" in r.output


def test_an_entry_whose_local_header_is_lost_is_found_by_the_layout():
    z, files = make_zip(4)
    recs = fs.entries(z)
    r = recs[1]
    d = zero(z, r["local"], 30)  # the local header only: its data starts csize bytes before the next
    items = fs.salvage(d, "zip", [(r["local"], r["local"] + 30)])
    got = {it.name: it for it in items}
    name = r["name"].decode()
    assert got[name].status == "verified" and bytes(got[name].data) == files[name]


def test_a_second_loss_further_on_is_never_decoded_as_data(tar_gz):
    """Two sectors lost far apart in one stream: the decoding after the first would run through the
    second (zeros decode as symbols, and Huffman codes find their step again) and give wrong bytes
    and a wrong length to place the rest by; both are taken as one loss instead."""
    raw, gz = tar_gz
    a, b = (len(gz) // 4) // 512 * 512, (len(gz) // 2) // 512 * 512
    d = zero(zero(gz, a, 512), b, 512)
    (it, state), = salvage_data(d, "gzip", [(a, a + 512), (b, b + 512)], SalvageConfig(fill=False))
    data = np.frombuffer(bytes(it.data), np.uint8)
    assert len(data) == len(raw)
    exact = state == EXACT
    assert np.array_equal(data[exact], np.frombuffer(raw, np.uint8)[exact]) and exact.mean() > 0.3


def test_the_report_gives_each_guessed_range_its_lowest_probability(tmp_path):
    raw = source_text(150_000, seed=7)
    gz = _gzip(raw)
    a = (len(gz) // 2) // 512 * 512
    src = tmp_path / "s.gz"
    src.write_bytes(zero(gz, a, 512))
    r = runner.invoke(app, ["salvage", str(src), "--mapfile", str(_map(tmp_path, a, len(gz))), "--report",
                            str(tmp_path / "r.json"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "r.json").read_text())["outputs"][0]
    guessed = [g for g in out["ranges"] if g[2] == "guessed"]
    assert guessed and all(len(g) == 4 and 0 < g[3] <= 1 for g in guessed)
    content = (tmp_path / "s").read_bytes()
    sure = [g for g in guessed if g[3] >= 0.9]
    right = sum(content[g[0]:g[1]] == raw[g[0]:g[1]] for g in sure)
    assert sure and right / len(sure) > 0.8  # a guess called sure is mostly right
    assert 0 < json.loads(r.stdout)["totals"]["guessed_sure"] <= out["guessed"]


def _map(folder: Path, a: int, size: int) -> Path:
    m = folder / "s.map"
    m.write_text(format_mapfile([(a, a + 512)], size))
    return m


def test_a_loss_among_many_small_members_never_gives_another_member_s_bytes_as_exact():
    """Members of ~180 bytes: a lost sector holds member boundaries, and a step found after it may
    be in the next member (its trailer then ends the stream where a member must end). Only the
    content before the loss is exact there; every other member is verified whole."""
    originals = [text_bytes(300, 100 + i) for i in range(400)]
    d = bytearray(b"".join(_gzip(o) for o in originals))
    a = len(d) // 2 // 512 * 512
    d[a:a + 512] = bytes(512)
    items = salvage_data(bytes(d), "gzip", [(a, a + 512)], SalvageConfig(fill=False))
    verified = [it for it, _ in items if it.status == "verified"]
    assert len(verified) >= 400 - 5 and all(bytes(it.data) in set(originals) for it in verified)
    for it, st in items:
        if it.status != "verified":
            e = int((st == EXACT).sum())
            assert (st[:e] == EXACT).all()  # exact only as a prefix: before the loss
            assert any(o.startswith(bytes(it.data[:e])) for o in originals)


def test_repair_says_what_salvage_would_recover(tmp_path):
    """A gzip verified repair cannot restore: with a zeroed sector salvage can place the loss and
    says how much comes back exactly; with random bytes nothing locates it, and it says so."""
    import gzip
    body = source_text(200_000, 3)
    gz = gzip.compress(body, mtime=0)
    lines = {}
    for kind, sector in (("zeroed", bytes(512)), ("random", bytes(random.Random(1).randrange(256) for _ in range(512)))):
        src = tmp_path / f"{kind}.gz"
        src.write_bytes(gz[:12_000] + sector + gz[12_512:])
        r = CliRunner().invoke(app, ["repair", str(src), "-o", str(tmp_path / f"{kind}.out"), "--format-budget", "1"])
        assert r.exit_code == 0, r.output
        lines[kind] = " ".join(r.output.split())
    assert "content bytes exactly" in lines["zeroed"] and "can recover 0 " not in lines["zeroed"]
    assert "can call none exact, as nothing locates the damage" in lines["random"]
