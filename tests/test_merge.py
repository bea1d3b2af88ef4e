"""Damaged copies of one checksummed file merged where they differ (formats/merge.py), through the CLI too."""
from __future__ import annotations

import gzip
import io
import json
import random
import zipfile

import numpy as np
from typer.testing import CliRunner

from fragfix import formats
from fragfix.cli.commands import app
from fragfix.formats import merge
from fragfix.formats.merge.differ import MAX_AREAS

from conftest import text_bytes

runner = CliRunner()


def _sectors(data: bytes, sectors: list[int], zero: bool = False, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    b = bytearray(data)
    for s in sectors:
        b[s * 512:(s + 1) * 512] = bytes(512) if zero else rng.randbytes(512)
    return bytes(b)


def _big_gzip() -> bytes:
    """~80 KB of deflate deep into its window: a wrong sector decodes on without an inflate error."""
    return gzip.compress(b"".join(text_bytes(20_000, s) + bytes(range(256)) * 8 for s in range(12)), 6, mtime=0)


def _zip(n: int = 12) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            z.writestr(zipfile.ZipInfo(f"d/f{i}.txt", (2020, 1, 1, 0, 0, 0)), text_bytes(9_000, 40 + i),
                       zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def test_two_copies_of_a_gzip_with_bad_sectors_merge_to_the_original():
    good = _big_gzip()
    n = len(good) // 512
    a = _sectors(good, [n // 5, n // 2], seed=1)
    b = _sectors(good, [n // 3, n // 2 + 1, n - 3], seed=2)  # one right beside a's: areas split at sectors
    assert formats.repair(a, "gzip", 2).status == "damaged"  # alone, no single-error search restores it
    r = formats.repair(a, "gzip", 20, others=(b,))
    assert r.status == "restored" and r.content_verified and r.output(a) == good
    assert r.parts[0].name == "copies merged" and "5 areas" in r.parts[0].note and r.parts[0].compared >= 1


def test_a_zip_sector_across_an_entry_boundary_is_merged_entry_by_entry():
    good = _zip()
    z = zipfile.ZipFile(io.BytesIO(good))
    second = z.infolist()[1].header_offset  # a sector holding one entry's end and the next one's header
    a = _sectors(good, [second // 512, 3], seed=3)
    b = _sectors(good, [second // 512 + 2, len(good) // 512 - 6], seed=4)
    r = formats.repair(a, "zip", 20, others=(b,))
    assert r.status == "restored" and r.output(a) == good


def test_zeroed_sectors_take_the_copy_that_read_them():
    """An unread sector (zeros, as ddrescue leaves it) loses to a copy that has bytes there: the first
    combination tried is the right one."""
    good = _big_gzip()
    a = _sectors(good, [10, 40], zero=True)
    b = _sectors(good, [25, 70], zero=True)
    r = formats.repair(a, "gzip", 20, others=(b,))
    assert r.status == "restored" and r.output(a) == good and "4 areas" in r.parts[0].note


def test_three_copies_vote_where_two_agree():
    good = _zip(4)
    rng = np.random.default_rng(5)
    copies = []
    for _ in range(3):
        c = np.frombuffer(good, np.uint8).copy()
        at = rng.choice(len(c), 30, replace=False)
        c[at] ^= rng.integers(1, 256, 30).astype(np.uint8)
        copies.append(c.tobytes())
    base, open_ = merge.majority(np.stack([np.frombuffer(c, np.uint8) for c in copies]))
    g = np.frombuffer(good, np.uint8)
    assert ((base == g) | open_).all() and open_.sum() <= 3  # a majority is right wherever there is one
    r = formats.repair(copies[0], "zip", 20, others=tuple(copies[1:]))
    assert r.status == "restored" and r.output(copies[0]) == good and "from the majority of 3" in r.parts[0].note


def test_three_copies_whose_majority_settles_every_byte():
    """Each copy damaged where the other two are not: no area is left, the majority is the one
    candidate (found by the fuzz: an empty list of areas once raised IndexError)."""
    good = _big_gzip()
    copies = [_sectors(good, [s], seed=s) for s in (10, 40, 70)]
    r = formats.repair(copies[0], "gzip", 10, others=tuple(copies[1:]))
    assert r.status == "restored" and r.output(copies[0]) == good and "0 areas" in r.parts[0].note


def test_a_sector_lost_in_both_copies_is_never_claimed():
    good = _big_gzip()
    a = _sectors(good, [30, 60], seed=6)
    b = _sectors(good, [30, 90], seed=7)  # sector 30 is wrong in both
    r = formats.repair(a, "gzip", 3, others=(b,))
    assert r.status != "restored" or r.output(a) == good
    assert r.output(a) != good


def test_copies_of_another_size_or_identical_change_nothing():
    good = _zip(3)
    a = _sectors(good, [2])
    assert merge.merge(a, [a + b"x"], "zip", None, 1e18) is None
    assert merge.merge(a, [a], "zip", None, 1e18) is None


def test_cli_merges_a_reference_copy_and_reports_each_byte(tmp_path):
    good = _big_gzip()
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    a.write_bytes(_sectors(good, [20], seed=8))
    b.write_bytes(_sectors(good, [50], seed=9))
    r = runner.invoke(app, ["repair", str(a), "--reference", str(b), "-o", str(tmp_path / "out.gz"),
                            "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.gz").read_bytes() == good and a.read_bytes() != good  # the input is never written
    rep = json.loads((tmp_path / "r.json").read_text())
    diff = np.flatnonzero(np.frombuffer(a.read_bytes(), np.uint8) != np.frombuffer(good, np.uint8))
    assert sorted(c["offset"] for c in rep["changes"]) == diff.tolist()
    assert {c["reason"] for c in rep["changes"]} == {"verified"}
    assert rep["format"]["parts"][0]["name"] == "copies merged"


def _png(w: int = 300, h: int = 200) -> bytes:
    import struct
    import zlib as z

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", z.crc32(kind + body))
    rng = random.Random(11)
    rows = b"".join(b"\0" + bytes((x * y + rng.randrange(8)) % 256 for x in range(w * 3)) for y in range(h))
    data = z.compress(rows, 9)
    idat = b"".join(chunk(b"IDAT", data[i:i + 4096]) for i in range(0, len(data), 4096))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + idat
            + chunk(b"IEND", b""))


def test_a_png_is_merged_chunk_by_chunk():
    """Bad sectors in many IDAT chunks of both copies, one over a chunk's header: each chunk is
    settled by its own CRC, however many areas the whole file has."""
    good = _png()
    n = len(good) // 512
    assert n > 60
    heads = [i - 4 for i in range(8, len(good)) if good.startswith(b"IDAT", i)]
    head = next(h for h in heads if h > 5000 and (h // 512) % 9 not in (3, 7))  # a chunk header, b's copy good
    a = _sectors(good, [head // 512] + list(range(3, n - 2, 9)), seed=12)
    b = _sectors(good, list(range(7, n - 2, 9)), seed=13)
    r = formats.repair(a, "png", 20, others=(b,))
    assert r.status == "restored" and r.output(a) == good
    assert int(r.parts[0].note.split(" areas")[0]) > MAX_AREAS  # too many to try together
