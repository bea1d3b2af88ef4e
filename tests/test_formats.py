"""Verified repair of checksummed formats: files built here, damaged here, restored bit-exact."""
from __future__ import annotations

import gzip
import io
import json
import random
import struct
import zipfile
import zlib

import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from fragfix import formats
from fragfix.cli.commands import app
from fragfix.formats import crc

_rng = random.Random(5)
_WORDS = [bytes(_rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(_rng.randrange(2, 9))) for _ in range(400)]
TEXT = b"".join(b"def %s(%s, %s):\n    return %s.%s(%d)\n\n" % (*(_rng.choice(_WORDS) for _ in range(5)),
                                                                _rng.randrange(1000)) for _ in range(500))


def _png(raw: bytes, width: int = 32) -> bytes:
    rows = [raw[i:i + width * 3] for i in range(0, len(raw) // (width * 3) * width * 3, width * 3)]

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    z = zlib.compress(b"".join(b"\x00" + r for r in rows))
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    idat = b"".join(chunk(b"IDAT", z[i:i + 1024]) for i in range(0, len(z), 1024))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"Comment\x00fragfix") + idat + chunk(b"IEND", b"")


def _zip(data: bytes) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr(zipfile.ZipInfo("a.py"), data[:6000], compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("b.txt"), data[6000:], compress_type=zipfile.ZIP_STORED)
    return b.getvalue()


runner = CliRunner()

BUILD = {"gzip": lambda d: gzip.compress(d, mtime=0) + gzip.compress(d[:3000], mtime=0),  # two members
         "zlib": zlib.compress, "zip": _zip, "png": _png}


def _flip(data: bytes, pos: int, xor: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= xor
    return bytes(b)


@pytest.mark.parametrize("fmt", sorted(BUILD))
def test_detects_by_content_and_passes_intact_files(fmt):
    good = BUILD[fmt](TEXT)
    assert formats.detect(good) == fmt
    r = formats.repair(good, fmt)
    assert r.status == "intact" and r.content_verified and r.edits == []
    assert formats.detect(TEXT) is None and formats.detect(bytes(range(256)) * 4) is None


# (format, offset, xor) in the compressed data, not headers: one flipped bit or one wrong byte,
# in cases where inflate fails or the stream ends in the wrong place, found within a second
CASES = [("gzip", 497, 0x10), ("gzip", 497, 0x01), ("gzip", 894, 0x5A), ("zlib", 100, 0x01), ("zlib", 497, 0x5A),
         ("zip", 497, 0x10), ("zip", 1291, 0x01), ("png", 2060, 0x20), ("png", 3060, 0xC3)]


@pytest.mark.parametrize("fmt,pos,xor", CASES)
def test_single_errors_are_restored_bit_exact_and_verified(fmt, pos, xor):
    good = BUILD[fmt](TEXT)
    bad = _flip(good, pos, xor)
    r = formats.repair(bad, fmt, budget_s=60)
    assert r.status == "restored" and r.content_verified, r.to_dict()
    assert formats.apply(bad, r.edits) == good
    assert 0 < r.false_pass <= formats.VERIFIED
    d = r.to_dict()
    assert json.loads(json.dumps(d))["content_verified"] is True and d["candidates"] + d["compared"] >= 1
    assert d["verified"] is (fmt in ("png", "zlib"))  # gzip and zip headers hold bytes no check covers


def test_crc_alone_over_a_large_block_is_only_probable():
    """A 20 KB stored zip entry: 160,000 one-bit patterns were compared with one CRC-32, so a
    match is probable (chance of a wrong one ~4e-5), not verified, and not written by default."""
    good = _zip(TEXT)
    bad = _flip(good, len(good) - 5000, 0x01)
    r = formats.repair(bad, "zip")
    assert r.status == "probable" and not r.content_verified
    assert formats.apply(bad, r.edits) == good and 1e-6 < r.false_pass < 1e-3


def test_png_two_bit_errors_in_one_chunk_are_located_by_the_syndrome():
    good = _png(TEXT)
    bad = _flip(_flip(good, 1500, 0x04), 1700, 0x80)
    r = formats.repair(bad, "png")
    assert r.status == "restored" and formats.apply(bad, r.edits) == good


def test_a_png_of_many_chunks_reports_the_intact_ones_as_one_part_and_keeps_to_its_budget():
    good = _png(TEXT)
    text = b"".join(struct.pack(">I", 3) + b"tEXt" + b"k\x00%d" % (i % 10) + struct.pack(">I", zlib.crc32(b"tEXtk\x00%d" % (i % 10)))
                    for i in range(20_000))
    good = good[:33] + text + good[33:]                        # after IHDR: 20,000 small chunks
    bad = _flip(good, 33 + 15 * 10_000 + 9, 0x02)              # a bit in the 10,001st chunk's text
    r = formats.repair(bad, "png")
    assert r.content_verified and formats.apply(bad, r.edits) == good
    assert len(r.parts) == 2 and r.parts[0].name == "20,002 chunks besides image data"  # with IHDR, IEND
    spent = formats.repair(bad, "png", budget_s=-1.0)          # no time left: found, named, not searched
    assert spent.status == "damaged" and spent.edits == [] and "budget" in spent.parts[-1].note


def test_zip_entries_over_one_local_header_are_repaired_once_and_the_repair_is_written():
    """Two central records naming the same local header (as overlap zip bombs do) found the same
    edit; applied twice it undid itself and the damaged file was written as "verified"."""
    one = io.BytesIO()
    with zipfile.ZipFile(one, "w") as z:
        z.writestr(zipfile.ZipInfo("a.py"), TEXT[:6000], compress_type=zipfile.ZIP_DEFLATED)
    d = one.getvalue()
    cd_at = struct.unpack_from("<I", d, len(d) - 6)[0]
    eocd = bytearray(d[-22:])
    struct.pack_into("<HHI", eocd, 8, 2, 2, 2 * (len(d) - 22 - cd_at))
    good = d[:cd_at] + d[cd_at:-22] * 2 + bytes(eocd)
    bad = _flip(good, 100, 0x10)
    r = formats.repair(bad, "zip")
    assert r.content_verified and r.edits == [(100, 0x10)] and formats.apply(bad, r.edits) == good
    assert [p.compared > 0 for p in r.parts] == [True, False]  # one search, its chance counted once


@pytest.mark.parametrize("field", [8, 12, 13])
def test_a_damaged_end_record_count_or_size_is_restored_not_called_verified_as_is(field):
    """The end record's directory size and per-disk count were never compared with the records: one
    flipped bit there left a zip other readers reject, reported intact and verified (fuzz, 1 in 1,000)."""
    good = _zip(TEXT)
    bad = _flip(good, len(good) - 22 + field, 0x01)
    r = formats.repair(bad, "zip")
    out = formats.apply(bad, r.edits)
    assert r.content_verified and out == good
    assert zipfile.ZipFile(io.BytesIO(out)).read("b.txt") == TEXT[6000:]


def test_a_repair_whose_output_fails_its_checks_is_not_taken(monkeypatch):
    from fragfix.formats import png
    good = _png(TEXT)
    bad = _flip(good, 1500, 0x04)
    real = png.repair

    def wrong(d, deadline, scorer, tick):  # a search that names the right byte and the wrong bit
        parts = real(d, deadline, scorer, tick)
        for p in parts:
            p.edits = [(at, x ^ 0x80) for at, x in p.edits] if d == bad else p.edits
        return parts
    monkeypatch.setattr(png, "repair", wrong)
    r = formats.repair(bad, "png")
    assert r.status == "damaged" and not r.content_verified and "applied together" in r.parts[-1].note


def test_a_damaged_stored_checksum_field_is_the_repair():
    good = gzip.compress(TEXT, mtime=0)
    bad = _flip(good, len(good) - 6, 0x40)  # inside the trailer's CRC-32
    r = formats.repair(bad, "gzip")
    assert r.status == "restored" and formats.apply(bad, r.edits) == good
    assert "checksum or size field" in r.parts[0].note


def test_zip_local_header_restored_from_the_central_directory():
    good = _zip(TEXT)
    bad = _flip(good, 14, 0x01)  # the first entry's CRC-32 in its local header
    r = formats.repair(bad, "zip")
    assert r.status == "restored" and formats.apply(bad, r.edits) == good


def _zip_many(names: list[str]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for i, n in enumerate(names):
            z.writestr(zipfile.ZipInfo(n), TEXT[i * 500:(i + 1) * 500], compress_type=zipfile.ZIP_DEFLATED)
    return b.getvalue()


def test_zip_name_copies_that_differ_are_probable_where_the_archive_does_not_say_which():
    names = [f"org/example/widgets/Part{i}.class" for i in range(6)]
    good = _zip_many(names)
    cd = good.rfind(b"PK\x01\x02")  # the last central record
    at = good.index(b"widgets", cd)
    bad = _flip(good, at + 2, 0x04)  # 'd' -> '`' in the central copy of the last name
    r = formats.repair(bad, "zip")
    assert r.status == "probable" and not r.content_verified  # no checksum covers names
    assert formats.apply(bad, r.edits) == good
    # a word no other name holds: shorter surroundings still tell the copies apart ('lMo', 'rl' against ',Mo', 'r,')
    names = ["org/example/WorldMap.class", "org/example/TableModel.class", "org/example/UrlModelSource.class"]
    good = _zip_many(names)
    at = good.index(b"UrlModel", good.rfind(b"PK\x01\x02")) + 2
    r = formats.repair(_flip(good, at, 0x40), "zip")  # 'l' -> ','
    assert r.status == "probable" and formats.apply(_flip(good, at, 0x40), r.edits) == good
    lone = _zip_many(["a.txt"])
    at = lone.index(b"a.txt", lone.rfind(b"PK\x01\x02"))
    r = formats.repair(_flip(lone, at, 0x02), "zip")
    assert r.status == "damaged" and r.edits == [] and "name differs" in r.parts[0].note


def _class_file(name: bytes) -> bytes:
    """A minimal Java class file: constant pool #1 Utf8 name, #2 Class #1, #3 Utf8 Object, #4 Class #3."""
    pool = b"\x01" + struct.pack(">H", len(name)) + name + b"\x07\x00\x01" + b"\x01\x00\x10java/lang/Object\x07\x00\x03"
    return b"\xca\xfe\xba\xbe\x00\x00\x00\x34\x00\x05" + pool + b"\x00\x21\x00\x02\x00\x04" + b"\x00\x00" * 4


def _archive(entries: list[tuple[str, bytes]]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for n, body in entries:
            z.writestr(zipfile.ZipInfo(n), body, compress_type=zipfile.ZIP_DEFLATED if body else zipfile.ZIP_STORED)
    return b.getvalue()


@pytest.mark.parametrize("copy", ["local", "central"])
def test_zip_name_is_verified_where_the_archive_names_the_entry(copy):
    """A class names itself, a wheel's RECORD lists its paths, a folder holds entries: the copy the
    archive agrees with is restored and verified (the other copy names nothing), whichever copy broke."""
    good = _archive([("pkg/", b""), ("pkg/tools/Widget.class", _class_file(b"pkg/tools/Widget")),
                     ("pkg/helpers.py", TEXT[:400]),
                     ("pkg-1.0.dist-info/RECORD", b"pkg/tools/Widget.class,,\npkg/helpers.py,sha256=x,400\n")])
    cd = good.index(b"PK\x01\x02")
    for word, xor, how in ((b"tools/Widget.class", 0x20, "class name"), (b"helpers.py", 0x01, "listed in the archive"),
                           (b"pkg/", 0x02, "folder of other entries")):  # 'tOols', 'hdlpers', 'pig/'
        at = good.index(word) if copy == "local" else good.index(word, cd)
        bad = _flip(good, at + 1, xor)
        r = formats.repair(bad, "zip")
        assert r.status == "restored" and r.content_verified and formats.apply(bad, r.edits) == good, (word, r.to_dict())
        assert [p.checks[-1] for p in r.parts if p.edits] == [how]


@pytest.mark.parametrize("field,xor", [(0, 0x01), (29, 0x01), (31, 0x20), (33, 0x04)])  # signature, name,
def test_zip_central_record_structure_restored(field, xor):  # extra and comment lengths
    names = [f"org/example/widgets/Part{i}.class" for i in range(6)]
    good = _zip_many(names)
    first = good.index(b"PK\x01\x02")
    second = good.index(b"PK\x01\x02", first + 4)
    bad = _flip(good, second + field, xor)
    r = formats.repair(bad, "zip")
    assert r.status == "restored" and r.content_verified and formats.apply(bad, r.edits) == good
    assert r.parts[0].name == "central directory"


def test_heavy_damage_is_never_claimed():
    rng = random.Random(3)
    for fmt in ("gzip", "zlib", "zip"):
        good = BUILD[fmt](TEXT)
        bad = bytearray(good)
        for _ in range(40):
            bad[rng.randrange(40, len(bad) - 40)] = rng.randrange(256)
        r = formats.repair(bytes(bad), fmt, budget_s=2)
        assert r.status == "damaged" and not r.content_verified and r.edits == [] or formats.apply(bytes(bad), r.edits) == good
        bad_part = [p for p in r.parts if p.status != "intact"][0]
        assert bad_part.first_bad is not None or bad_part.status == "unsupported"


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_crc_syndrome_names_every_single_byte_error(msg, data):
    pos = data.draw(st.integers(0, len(msg) - 1))
    xor = data.draw(st.integers(1, 255))
    bad = _flip(msg, pos, xor)
    cands, compared = crc.candidates(bad, zlib.crc32(msg))
    single_bit = xor & (xor - 1) == 0
    assert [(pos, xor)] in cands and compared == (8 if single_bit else 255) * len(msg)


def test_cli_repairs_a_gzip_and_never_touches_the_input(tmp_path, untrained):
    good = BUILD["gzip"](TEXT)
    src = tmp_path / "logs.gz"
    src.write_bytes(_flip(good, 900, 0x02))
    before = src.read_bytes()
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out").read_bytes() == good and src.read_bytes() == before
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["format"]["status"] == "restored" and rep["format"]["content_verified"] is True
    assert rep["format"]["verified"] is False and "MTIME" in rep["format"]["unchecked_fields"]
    assert [c["reason"] for c in rep["changes"]] == ["verified"] and rep["totals"]["format_restored"] == 1
    assert rep["totals"]["fragments_touched"] == 1  # (was 0: "changed 1 bytes in 0 fragments")


def test_cli_leaves_unverifiable_damage_untouched_and_says_where(tmp_path, untrained):
    good = BUILD["zlib"](TEXT)
    bad = bytearray(good)
    for i in range(200, 260):
        bad[i] ^= 0xFF
    src = tmp_path / "blob"
    src.write_bytes(bytes(bad))
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "out"), "--format-budget", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out").read_bytes() == bytes(bad)
    f = json.loads(res.stdout)["files"][0]["format"]
    assert f["status"] == "damaged" and f["verified"] is False and f["written"] == "unchanged"


def test_cli_accept_probable_writes_a_probable_repair(tmp_path, untrained):
    good = _zip(TEXT)
    src = tmp_path / "a.zip"
    src.write_bytes(_flip(good, len(good) - 5000, 0x01))
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "plain")])
    assert res.exit_code == 0 and (tmp_path / "plain").read_bytes() == src.read_bytes()
    assert "probable" in res.output
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "taken"),
                              "--accept-probable", "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0 and (tmp_path / "taken").read_bytes() == good
    assert json.loads((tmp_path / "r.json").read_text())["changes"][0]["reason"] == "probable"


def test_folder_run_mixes_checksummed_and_plain_files(tmp_path, untrained):
    folder = tmp_path / "in"
    folder.mkdir()
    good = BUILD["png"](TEXT)
    (folder / "pic.dat").write_bytes(_flip(good, 2060, 0x20))  # recognised by content, not by name
    (folder / "notes.txt").write_bytes(TEXT[:5000])
    res = runner.invoke(app, ["repair", str(folder), "-r", "-m", str(untrained), "-o", str(tmp_path / "out"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "pic.dat").read_bytes() == good
    files = {f["input"].split("/")[-1]: f for f in json.loads(res.stdout)["files"]}
    assert files["pic.dat"]["format"]["status"] == "restored" and "format" not in files["notes.txt"]


def test_cli_no_formats_and_bad_budget(tmp_path, untrained):
    src = tmp_path / "a.png"
    src.write_bytes(_png(TEXT))
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "o"), "--no-formats", "--json"])
    assert res.exit_code == 0 and "format" not in json.loads(res.stdout)["files"][0]
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "o2"), "--format-budget", "0"])
    assert res.exit_code == 2 and "format-budget" in res.output and not (tmp_path / "o2").exists()


def test_a_long_search_reports_progress(tmp_path, untrained):
    """Heavy damage keeps the search going until its budget: it says how far it got, by file name,
    and when it is over; the file stays as it was."""
    import gzip as gz
    import random
    from fragfix.config import RepairConfig
    from fragfix.files.jobs import plan_jobs
    from fragfix.recovery.repair import repair_files
    rng = random.Random(1)
    data = bytearray(gz.compress(bytes(rng.choice(b"abcdefgh \n") for _ in range(60_000)), mtime=0))
    for i in range(200, 230):
        data[i] ^= 0x5A
    src = tmp_path / "a[1].gz"
    src.write_bytes(bytes(data))
    jobs, _ = plan_jobs([src], tmp_path / "out.gz", False, False)
    heard = []
    summary = repair_files(jobs, untrained, RepairConfig(format_budget=3), on_search=lambda name, n: heard.append((name, n)))
    assert heard and heard[-1] == (None, 0) and any(name == "a[1].gz" and n > 0 for name, n in heard)
    assert summary["files"][0]["format"]["status"] != "restored"
    assert (tmp_path / "out.gz").read_bytes() == bytes(data)


class _Stream(io.RawIOBase):
    """A file that cannot seek: zipfile then writes each entry's CRC and sizes in a data descriptor."""
    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def _jar(entries: list[tuple[str, bytes]]) -> bytes:
    s = _Stream()
    with zipfile.ZipFile(s, "w") as z:
        for n, body in entries:
            with z.open(zipfile.ZipInfo(n, (2020, 1, 1, 0, 0, 0)), "w") as f:
                f.write(body)
    return bytes(s.buf)


@pytest.mark.parametrize("descriptor", [True, False])
@pytest.mark.parametrize("where,offset,xor", [("central", 20, 0x01), ("central", 22, 0x40), ("central", 16, 0x08),
                                              ("local", 29, 0x01), ("central", 42, 0x02), ("central", 8, 0x08)])
def test_zip_header_fields_are_restored_from_the_layout_and_the_other_copies(descriptor, where, offset, xor):
    """A compressed size, CRC, extra length, header offset or flag lost a bit: the other copies (local
    header, central record, data descriptor) and where the next entry begins say which value the
    data verifies, with no search; every copy ends up as it was."""
    entries = [(f"docs/part{i}.txt", TEXT[i * 700:(i + 1) * 700]) for i in range(3)]
    good = _jar(entries) if descriptor else _zip_many([n for n, _ in entries])
    flags = struct.unpack_from("<H", good, 6)[0]
    assert bool(flags & 8) == descriptor
    z = zipfile.ZipFile(io.BytesIO(good))
    info = z.infolist()[1]
    central = [m for m in range(len(good)) if good[m:m + 4] == b"PK\x01\x02"][1]  # the second entry's record
    base = central if where == "central" else info.header_offset
    bad = _flip(good, base + offset, xor)
    r = formats.repair(bad, "zip", 5)
    assert r.status == "restored" and r.content_verified, r.to_dict()
    assert formats.apply(bad, r.edits) == good


def test_a_name_damaged_into_another_entrys_name_is_never_verified():
    names = [f"dir/file{i}.txt" for i in range(4)]
    good = _zip_many(names)
    central = [m for m in range(len(good)) if good[m:m + 4] == b"PK\x01\x02"][1]
    bad = _flip(good, central + 46 + 8, 0x01)  # the central copy of 'file1' now reads 'file0'
    r = formats.repair(bad, "zip", 5)
    assert not r.content_verified
    assert r.status == "damaged" or formats.apply(bad, r.edits) == good


def test_zip64_local_sizes_are_not_mistaken_for_damage():
    """numpy's .npz (force_zip64) keeps 0xFFFFFFFF in the local sizes and the real ones in its extra
    field: the archive is intact and nothing is written."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("arr.npy", "w", force_zip64=True) as f:
            f.write(TEXT[:3000])
    r = formats.repair(b.getvalue(), "zip", 5)
    assert r.status == "intact" and r.edits == []


def test_an_empty_entry_whose_crc_is_damaged_is_not_intact():
    """A folder or empty file has CRC 0: a stored CRC that is not 0 in both copies is damage, not a
    pass with nothing to search (it was called intact, and the damaged value copied over the other)."""
    good = _archive([("pkg/", b""), ("pkg/a.txt", TEXT[:500])])
    bad = bytearray(good)
    for at in (14, good.index(b"PK\x01\x02") + 16):  # the folder's CRC in its local header and central record
        bad[at] ^= 0x10
    r = formats.repair(bytes(bad), "zip", 5)
    assert r.status == "damaged" and not r.content_verified and r.edits == []


def test_random_damage_to_zip_headers_never_gives_a_false_verified_name_or_content():
    """Many random byte and bit errors over small archives, headers included: whatever is called
    verified reads back with the original names and data."""
    archives = [_jar([(f"a/p{i}.txt", TEXT[i * 300:(i + 1) * 300]) for i in range(4)]),
                _zip_many([f"d/f{i}.txt" for i in range(4)])]

    def listing(x):
        try:
            with zipfile.ZipFile(io.BytesIO(x)) as z:
                return [(i.filename, z.read(i)) for i in z.infolist()]
        except Exception as e:
            return repr(e)
    rng = random.Random(7)
    for t in range(60):
        good = archives[t % 2]
        bad = bytearray(good)
        for _ in range(rng.choice([1, 2, 3, 8])):
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        r = formats.repair(bytes(bad), "zip", 0.3)
        if r.content_verified and r.status != "intact":
            assert listing(formats.apply(bytes(bad), r.edits)) == listing(good), t


def test_a_member_whose_magic_took_a_bit_flip_is_repaired_not_called_trailing_data():
    """Issue 27, item 5: a second gzip member with 0x1f -> 0x1b read as 'data after member 0', and the
    file as intact and verified though 22 KB of it were covered by no check."""
    import gzip as gz
    from fragfix import formats
    first, second = gz.compress(b"first member " * 400, mtime=0), gz.compress(b"second member " * 900, mtime=0)
    data = bytearray(first + second)
    data[len(first)] ^= 0x04  # 0x1f -> 0x1b
    r = formats.repair(bytes(data), "gzip", 10.0)
    assert r.status == "restored" and r.content_verified
    assert formats.apply(bytes(data), r.edits) == first + second
    # data after the last member that no check covers: never verified
    r = formats.repair(first + b"some trailing bytes that are not a member", "gzip", 10.0)
    assert r.status == "intact" and not r.content_verified


def test_zip_header_flags_that_disagree_are_never_verified():
    """Issue 27, item 6: a flipped UTF-8 flag (bit 11) in a local header, disagreeing with the central
    directory, read as intact and verified. No checksum covers the flags: at most a probable repair."""
    import io
    import zipfile
    from fragfix import formats
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes.txt", b"some text to keep " * 300)
    data = bytearray(buf.getvalue())
    assert data[:4] == b"PK\x03\x04"
    data[7] ^= 0x08  # local header flags, high byte: bit 11
    r = formats.repair(bytes(data), "zip", 10.0)
    assert not r.content_verified and r.status == "probable"
    assert formats.apply(bytes(data), r.edits) == buf.getvalue()


def _log_archives() -> tuple[bytes, bytes]:
    data = b"".join(b"line %d of the log says %s\n" % (i, b"ok" if i % 3 else b"fail") for i in range(200))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/log.txt", data)
        z.writestr("b.txt", data[:300])
        z.comment = b"backup"
    return gzip.compress(data, mtime=1700000000) + gzip.compress(data[:500], mtime=1700000000), b.getvalue()


def test_verified_means_no_byte_outside_every_check():
    """A bit flipped in a field no checksum covers (gzip's MTIME, a zip's attributes or comment) is
    invisible: such files are *content* verified, never verified, and the report names the bytes.
    Every header and trailer bit of two members, and every central-directory and local-header bit of
    a zip: no output called verified differs from the original."""
    gz, zz = _log_archives()
    second = gz.index(b"\x1f\x8b\x08", 10)
    cd = struct.unpack_from("<I", zz, len(zz) - 6 - 6)[0]
    cases = [(gz, "gzip", p) for p in [*range(12), *range(second - 8, second + 12), *range(len(gz) - 8, len(gz))]]
    cases += [(zz, "zip", p) for p in [*range(39), *range(cd, len(zz))]]
    for good, fmt, p in cases:
        bad = _flip(good, p, 1)
        r = formats.repair(bad, fmt, budget_s=0.3)
        assert not r.verified or formats.apply(bad, r.edits) == good, (fmt, p, r.to_dict())
    r = formats.repair(_flip(gz, 6, 0x10), "gzip")  # MTIME
    d = r.to_dict()
    assert r.status == "intact" and r.content_verified and not r.verified
    assert [4, 4, "MTIME"] in d["parts"][0]["unchecked"] and d["unchecked_bytes"] == 14
    d = formats.repair(zz, "zip").to_dict()
    assert d["content_verified"] and not d["verified"] and [len(zz) - 6, 6, "archive comment"] in d["unchecked"]
    assert {"external attributes", "version made by"} <= set(d["unchecked_fields"])


def test_a_gzip_header_crc_covers_the_header():
    """With FHCRC every header byte is checked: intact is verified; a flipped MTIME bit is damage."""
    text = b"abc" * 50
    head = b"\x1f\x8b\x08\x02" + struct.pack("<I", 1700000000) + b"\x00\x03"
    body = zlib.compressobj(6, zlib.DEFLATED, -15)
    good = head + struct.pack("<H", zlib.crc32(head) & 0xFFFF) + body.compress(text) + body.flush() + \
        struct.pack("<II", zlib.crc32(text), len(text))
    assert gzip.decompress(good) == text
    r = formats.repair(good, "gzip")
    assert r.status == "intact" and r.verified and r.metadata == []
    r = formats.repair(_flip(good, 5, 0x04), "gzip")
    assert r.status == "damaged" and not r.content_verified and r.edits == []
    assert "CRC-16" in r.parts[0].note and r.parts[0].first_bad == 0


def test_data_after_a_png_is_no_part_of_a_verified_png():
    good = BUILD["png"](TEXT)
    r = formats.repair(good + b"appended", "png")
    assert r.status == "intact" and not r.content_verified and r.parts[-1].status == "unchecked"
    assert formats.repair(good, "png").verified


@pytest.mark.parametrize("fmt", sorted(BUILD))
def test_text_mode_transfer_is_undone_and_verified(fmt):
    """Every LF written as CR LF (FTP's ASCII mode): the CR before each LF removed, proven by every
    check of the file; the unconverted file is no candidate for it."""
    good = BUILD[fmt](TEXT)
    assert good.count(b"\n") > 3
    conv = good.replace(b"\n", b"\r\n")
    assert formats.detect(conv) == fmt
    r = formats.repair(conv, fmt, budget_s=5)
    assert r.status == "restored" and r.content_verified and r.output(conv) == good
    assert r.parts[0].name == "line ends" and len(r.removed) == good.count(b"\n") == r.to_dict()["removed"]
    assert all(conv[p:p + 2] == b"\r\n" for p in r.removed)
    bad = bytearray(conv)  # converted and damaged besides: the undo alone passes no check, nothing is claimed
    bad[len(bad) // 2] ^= 0x40
    r = formats.repair(bytes(bad), fmt, budget_s=1)
    assert r.removed == [] and r.status != "restored"
    assert formats.repair(good, fmt).removed == []


def test_cli_undoes_a_text_mode_transfer_and_reports_each_removed_byte(tmp_path, untrained):
    good = BUILD["gzip"](TEXT)
    src = tmp_path / "logs.gz"
    src.write_bytes(good.replace(b"\n", b"\r\n"))
    before = src.read_bytes()
    res = runner.invoke(app, ["repair", str(src), "-m", str(untrained), "-o", str(tmp_path / "out.gz"),
                              "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out.gz").read_bytes() == good and src.read_bytes() == before
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [(c["offset"], c["old"], c["new"], c["reason"]) for c in rep["changes"]] == \
        [(p, 13, None, "removed") for p in range(len(before) - 1) if before[p:p + 2] == b"\r\n"]
    assert rep["totals"]["changed"] == good.count(b"\n") and "CR bytes removed" in res.output


def _pdf(contents: list[bytes]) -> bytes:
    """A small PDF whose objects hold FlateDecode streams: the first with a direct /Length, the
    others with an indirect one ("N 0 R", the length in an object after the stream)."""
    out, offsets = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), []
    for i, c in enumerate(contents):
        z = zlib.compress(c, 6)
        offsets.append(len(out))
        length = b"%d" % len(z) if i == 0 else b"%d 0 R" % (100 + i)
        out += b"%d 0 obj\n<< /Filter /FlateDecode /Length %s >>\nstream\n" % (i + 1, length) + z + b"\nendstream\nendobj\n"
        if i:
            out += b"%d 0 obj\n%d\nendobj\n" % (100 + i, len(z))
    out += b"xref\n0 %d\n" % (len(offsets) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return bytes(out + b"trailer\n<< /Size %d >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, len(out)))


def test_pdf_flate_streams_are_found_checked_and_restored_at_the_same_length():
    from fragfix.formats import pdf
    good = _pdf([TEXT[:4000], TEXT[4000:9000], b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET\n" * 40])
    assert formats.detect(good) == "pdf"
    found = pdf.streams(good)
    assert len(found) == 3 and all(zlib.decompress(good[s:e]) for s, e in found)
    assert [zlib.decompress(good[s:e]) for s, e in found][1] == TEXT[4000:9000]  # "11 0 R" is no length of 1
    r = formats.repair(good, "pdf")
    assert r.status == "intact" and not r.content_verified and r.parts[-1].status == "unchecked"
    s, e = found[1]
    for pos, xor in ((s + (e - s) // 2, 0x08), (s + 40, 0x5A)):
        bad = _flip(good, pos, xor)
        r = formats.repair(bad, "pdf", budget_s=20)
        assert r.status in ("restored", "probable") and r.parts[1].name == f"stream at {s}", r.to_dict()
        assert len(r.output(bad)) == len(good) and formats.apply(bad, r.edits) == good
    bad = _flip(good, 30, 0x01)  # outside every stream: no check sees it, nothing is claimed
    assert formats.repair(bad, "pdf").status == "intact" and formats.repair(bad, "pdf").edits == []


def test_adler32_counts_for_less_on_short_streams():
    """Adler-32's sums do not wrap over short data: a restored short zlib stream's chance of a wrong
    pass is counted with fewer bits than 32 (so fewer candidates may be compared before it is only
    probable); over 100 KB it is a full 32-bit check."""
    from fragfix.formats.containers import adler_bits
    assert 27 < adler_bits(100) < 28 and 29 < adler_bits(1000) < 30 and adler_bits(100_000) == 32
    good = zlib.compress(TEXT[:600], 9)
    bad = _flip(good, len(good) // 2, 0x10)
    r = formats.repair(bad, "zlib", budget_s=20)
    assert r.status in ("restored", "probable") and r.parts[0].bits == adler_bits(600)
    assert r.false_pass == pytest.approx(r.parts[0].compared * 2.0 ** -adler_bits(600))


def test_pdf_streams_past_the_budget_are_checked_not_searched():
    z = bytearray(zlib.compress(b"BT (hi there) Tj ET\n" * 3))
    z[6] ^= 0x20
    good = zlib.compress(b"BT (fine) Tj ET\n")
    body = b"".join(b"%d 0 obj\n<< /Filter /FlateDecode /Length %d >>\nstream\n" % (i, len(c)) + c +
                    b"\nendstream\nendobj\n" for i, c in enumerate([bytes(z)] * 300 + [good] * 5))
    r = formats.repair(b"%PDF-1.4\n" + body + b"%%EOF\n", "pdf", budget_s=-1)
    assert r.parts[0].name == "5 FlateDecode streams" and r.status == "damaged" and len(r.parts) == 302
    assert all("not searched" in p.note and p.compared == 0 for p in r.parts[1:-1])
