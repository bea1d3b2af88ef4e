"""fragfix benchmark for salvage: real archives with whole sectors, blocks or tails lost.

    python benchmarks/bench_salvage.py                  # the figures of docs/performance.md
    python benchmarks/bench_salvage.py --sectors 10 --fuzz 100 --quick

Archives are made on the spot from this machine's Python standard library (real source files):
a .tar.gz of ~5 MB of source (~1.2 MB compressed; GNU tar format by Python's tarfile, `gzip -6`
by zlib), a zip of the same files. Damage, each seeded:
- one 512-byte sector of the .tar.gz zeroed and given by a mapfile: the decompressed bytes after
  the sector that come out exact, any exact byte that is wrong, tar members whole, members beyond
  the reach of the lost bytes unchanged, guessed bytes right;
- one 4 KiB block of the zip overwritten (zeros; random bytes with no map), and of a zip of large
  entries (a folder's files joined): entries not touching it verified; the touched entry's content
  after the lost bytes exact (or guessed right);
- the .tar.gz cut at 60%: the content up to the cut exact;
- a fuzz of damaged gzip and zip streams (zeroed runs with and without a map, two zeroed sectors
  with their map, random overwrites, cuts, flipped bits): exact bytes that differ from the original
  (must be 0);
- seconds for a ~10 MB .tar.gz (~40 MB of source) with a lost sector, with and without guessing.
Nothing is asserted: it measures and reports.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sysconfig
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fragfix.formats import salvage as fs
from fragfix.formats import tarlist
from fragfix.recovery.salvage import EXACT, GUESSED, SalvageConfig, losses_of, salvage_data

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def make_tar(content: int) -> bytes:
    """A tar of the standard library's source folders, in name order, until `content` bytes (the
    whole library again under another name where once is not enough)."""
    buf = io.BytesIO()
    folders = [p for p in sorted(STDLIB.iterdir()) if p.is_dir() and p.name not in ("site-packages", "__pycache__")]
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for again in range(4):
            for p in folders:
                if buf.tell() < content:
                    tar.add(p, arcname=f"copy{again}/{p.name}" if again else p.name, filter=_source)
    return buf.getvalue()


def _source(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Python source files (and their folders) only: no bytecode, no libraries."""
    return ti if "__pycache__" not in ti.name and (ti.isdir() or ti.name.endswith(".py")) else None


def gzip_of(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def make_zip(tar: bytes, by_folder: bool = False) -> tuple[bytes, dict[str, bytes]]:
    """The tar's files as zip entries; `by_folder`: one entry per top folder (its files joined)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.isfile():
                name = m.name.split("/")[0] + ".txt" if by_folder else m.name
                files[name] = files.get(name, b"") + t.extractfile(m).read()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue(), files


def run(d: bytes, fmt: str, losses, fill: bool = True):
    """As `fragfix salvage` runs: the map's losses (given here), and runs of 512 zeros."""
    found = sorted(set(losses) | set(losses_of(d, None, 512)))
    return salvage_data(d, fmt, found, SalvageConfig(fill=fill, zero_runs=512))


def content(outs) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(b"".join(bytes(it.data) for it, _ in outs), np.uint8)
    return data, np.concatenate([st for _, st in outs]) if outs else np.zeros(0, np.uint8)


def sectors(tar: bytes, gz: bytes, n: int, rng) -> dict:
    orig = np.frombuffer(tar, np.uint8)
    shares, wrong, guessed, right, whole, beyond, beyond_ok, secs = [], 0, 0, 0, [], 0, 0, []
    for _ in range(n):
        d = bytearray(gz)
        a = int(rng.integers(1, len(d) // 512 - 1)) * 512
        d[a:a + 512] = bytes(512)
        t = time.perf_counter()
        outs = run(bytes(d), "gzip", [(a, a + 512)])
        secs.append(time.perf_counter() - t)
        data, st = content(outs)
        if len(data) != len(orig):
            shares.append(0.0)
            continue
        wrong += int(((data != orig) & (st == EXACT)).sum())
        g = st == GUESSED
        guessed += int(g.sum())
        right += int((data[g] == orig[g]).sum())
        not_exact = np.flatnonzero(st != EXACT)
        first, last = int(not_exact[0]), int(not_exact[-1])
        after = st[first:]
        shares.append(float((after == EXACT).mean()))
        mem = tarlist.members(bytearray(data.tobytes()), st == EXACT)
        whole.append(sum(m["whole"] for m in mem) / max(len(mem), 1))
        for m in mem:
            if m["offset"] > last:  # beyond the reach of every lost byte
                beyond += 1
                beyond_ok += bytes(data[m["offset"]:m["offset"] + 512 + m["size"]]) == \
                    tar[m["offset"]:m["offset"] + 512 + m["size"]]
    return {"trials": n, "exact_after_median": statistics.median(shares), "exact_after_mean": statistics.mean(shares),
            "exact_after_min": min(shares), "exact_wrong": wrong, "guessed": guessed,
            "guessed_right": right / max(guessed, 1), "members_whole_mean": statistics.mean(whole),
            "members_beyond_reach": beyond, "members_beyond_unchanged": beyond_ok, "seconds_median": statistics.median(secs)}


def zip_block(z: bytes, files: dict, n: int, rng, random_fill: bool) -> dict:
    verified_ok, untouched, exact_share, right_share, wrong, ways = 0, 0, [], [], 0, {}
    for _ in range(n):
        d = bytearray(z)
        a = int(rng.integers(0, (len(d) * 3 // 4) // 4096)) * 4096
        d[a:a + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes() if random_fill else bytes(4096)
        outs = run(bytes(d), "zip", [] if random_fill else [(a, a + 4096)])
        recs = fs.entries(bytes(d))
        for (it, st), r in zip(outs, recs):
            want = files.get(it.name)
            if want is None:
                continue
            got = np.frombuffer(bytes(it.data), np.uint8)
            w = np.frombuffer(want, np.uint8)
            if len(got) == len(w):
                wrong += int(((got != w) & (st == EXACT)).sum())
            start, stop = r["local"], r["local"] + 30 + len(r["name"]) + r["csize"] + 64
            if stop <= a or start >= a + 4096:
                untouched += 1
                verified_ok += it.status == "verified" and bytes(it.data) == want
            else:
                how = it.stream.get("how")
                ways[how] = ways.get(how, 0) + 1
                data_start = r["local"] + 30 + len(r["name"])
                if data_start < a and len(got) == len(w) and (st != EXACT).any():
                    # its header (the codes) survived: what of the content after the damage is exact
                    # the content after the lost bytes themselves (it.lost: the loss's own output)
                    first = max([y for _, y in it.lost] + [int(np.flatnonzero(st != EXACT)[0])])
                    if a + 4096 < r["local"] + 30 + len(r["name"]) + r["csize"] and first < len(st):
                        exact_share.append(float((st[first:] == EXACT).mean()))
                        ok = (st[first:] == EXACT) | ((st[first:] == GUESSED) & (got[first:] == w[first:]))
                        right_share.append(float(ok.mean()))
    return {"trials": n, "untouched_entries": untouched, "untouched_verified": verified_ok,
            "touched": ways, "touched_with_data_after_the_block": len(exact_share),
            "their_exact_after_median": statistics.median(exact_share) if exact_share else None,
            "their_exact_after_mean": statistics.mean(exact_share) if exact_share else None,
            "their_exact_or_guessed_right_after_mean": statistics.mean(right_share) if right_share else None,
            "exact_wrong": wrong}


def cut(tar: bytes, gz: bytes) -> dict:
    d = gz[:int(len(gz) * 0.6)]
    outs = run(d, "gzip", [])
    data, st = content(outs)
    n = int((st == EXACT).sum())
    return {"exact": n, "exact_right": bytes(data[:n]) == tar[:n], "content": len(tar),
            "decodable": len(zlib.decompressobj(31).decompress(d)), "note": outs[0][0].note if outs else ""}


def fuzz(tar: bytes, gz: bytes, z: bytes, files: dict, n: int, rng) -> dict:
    wrong, exact, kinds = 0, 0, {}
    small = [gzip_of(tar[i:i + 300_000]) for i in range(0, len(tar), 300_000)][:6]
    for i in range(n):
        kind = ["sector+map", "zeros", "random", "cut", "bits", "two sectors+map"][i % 6]
        fmt = ["gzip", "zip"][int(rng.integers(0, 2))]
        src = small[int(rng.integers(0, len(small)))] if fmt == "gzip" else z
        d = bytearray(src)
        lo = 64 if fmt == "gzip" else 0
        a = int(rng.integers(lo, len(d) - 600))
        losses = []
        if kind in ("sector+map", "zeros"):
            a -= a % 512 if kind == "sector+map" else 0
            size = 512 if kind == "sector+map" else int(rng.integers(512, 8192))
            d[a:a + size] = bytes(min(size, len(d) - a))
            losses = [(a, min(len(d), a + size))] if kind == "sector+map" else []
        elif kind == "random":
            size = int(rng.integers(16, 4096))
            d[a:a + size] = rng.integers(0, 256, min(size, len(d) - a), dtype=np.uint8).tobytes()
        elif kind == "two sectors+map":
            for b in (a, int(rng.integers(lo, len(d) - 600))):
                b -= b % 512
                d[b:b + 512] = bytes(min(512, len(d) - b))
                losses.append((b, min(len(d), b + 512)))
            losses.sort()
        elif kind == "cut":
            d = d[:a]
        else:
            for p in rng.integers(lo, len(d), 3):
                d[int(p)] ^= 1 << int(rng.integers(0, 8))
        outs = run(bytes(d), fmt, losses, fill=False)
        if fmt == "gzip":
            plain = zlib.decompress(bytes(src), 31)
            data, st = content(outs)
            m = min(len(data), len(plain))
            bad = int(((data[:m] != np.frombuffer(plain[:m], np.uint8)) & (st[:m] == EXACT)).sum())
            exact += int((st == EXACT).sum())
        else:
            bad = 0
            for it, st in outs:
                want = files.get(it.name)
                if want is None:
                    continue
                got = np.frombuffer(bytes(it.data), np.uint8)
                w = np.frombuffer(want, np.uint8)
                m = min(len(got), len(w))
                bad += int(((got[:m] != w[:m]) & (st[:m] == EXACT)).sum()) + int((st[m:] == EXACT).sum()) * (len(got) > len(w))
                exact += int((st == EXACT).sum())
        wrong += bad
        kinds[kind] = kinds.get(kind, 0) + bad
    return {"streams": n, "exact_bytes": exact, "exact_wrong": wrong, "wrong_by_kind": kinds}


def timing(rng, quick: bool) -> dict:
    tar = make_tar(2_000_000 if quick else 40_000_000)
    gz = gzip_of(tar)
    d = bytearray(gz)
    a = len(d) // 2 // 512 * 512
    d[a:a + 512] = bytes(512)
    out = {"archive_bytes": len(gz), "content_bytes": len(tar)}
    for fill in (False, True):
        t = time.perf_counter()
        run(bytes(d), "gzip", [(a, a + 512)], fill)
        out["seconds_fill" if fill else "seconds_no_fill"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    zlib.decompress(gz, 31)
    out["seconds_gzip_d"] = round(time.perf_counter() - t, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sectors", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a small 10 MB stand-in for the timing")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    tar = make_tar(5_000_000)
    gz = gzip_of(tar)
    z, files = make_zip(tar)
    print(f"tar.gz: {len(gz):,} bytes ({len(tar):,} content); zip: {len(z):,} bytes, {len(files)} entries")
    print("sector lost (mapfile):", sectors(tar, gz, a.sectors, rng))
    print("zip 4 KiB zeroed (zero run):", zip_block(z, files, a.blocks, rng, False))
    zb, big = make_zip(tar, by_folder=True)
    print(f"zip of {len(big)} large entries (one per folder, {len(zb):,} bytes), 4 KiB zeroed:",
          zip_block(zb, big, a.blocks, rng, False))
    print("zip 4 KiB random (no map):", zip_block(z, files, a.blocks, rng, True))
    print("gzip cut at 60%:", cut(tar, gz))
    print("fuzz:", fuzz(tar, gz, z, files, a.fuzz, rng))
    print("time:", timing(rng, a.quick))


if __name__ == "__main__":
    main()
