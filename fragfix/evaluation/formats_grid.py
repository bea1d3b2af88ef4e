"""The evaluation grid for checksummed files: damage them, repair them, count what came back.

Used by `fragfix evaluate --formats` (files made here from held-out text, so the figures are the
same on every machine) and by `benchmarks/bench_formats.py` (real files found on the machine).
Per format and damage kind: how many files came back bit-exact and *verified*, how many came back
with the verified content but other compressed bits (`content`), how many were only *probable*
(and whether those were right), and false verified claims (wrong content), which must be 0.
"""
from __future__ import annotations

import gzip
import io
import random
import statistics
import struct
import time
import zipfile
import zlib
from typing import Callable

from fragfix.training.sample import python_sample
from fragfix.formats import repair

from fragfix.formats.result import apply

KINDS = ("bit", "byte", "two-bits", "heavy")


def damage(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One flipped bit, one wrong byte, two flipped bits within 512 bytes, or 30 random bytes, at
    random positions past the first and before the last 16 bytes."""
    d = bytearray(data)
    p = rng.randrange(16, len(d) - 16)
    if kind == "bit":
        d[p] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        d[p] ^= rng.randrange(1, 256)
    elif kind == "two-bits":
        d[p] ^= 1 << rng.randrange(8)
        q = min(len(d) - 1, p + rng.randrange(1, 512))
        d[q] ^= 1 << rng.randrange(8)
    else:
        for _ in range(30):
            d[rng.randrange(16, len(d) - 16)] = rng.randrange(256)
    return bytes(d)


def png_of(raw: bytes, width: int = 128) -> bytes:
    """A greyscale PNG whose pixels are `raw` (zero-padded to whole rows)."""
    rows = -(-len(raw) // width)
    raw = raw.ljust(rows * width, b"\0")
    pixels = b"".join(b"\0" + raw[i * width:(i + 1) * width] for i in range(rows))  # filter 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, rows, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(pixels, 6)) + chunk(b"IEND", b"")


def zip_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def held_out_samples(n: int, seed: int) -> dict[str, list[bytes]]:
    """n files of each format made from held-out Python stdlib text (never trained on), 2-200 KB."""
    _, held = python_sample(("text",))
    rng = random.Random(seed)
    texts = [p for p in held if 8_000 <= p.stat().st_size <= 300_000]
    rng.shuffle(texts)
    texts = [p.read_bytes() for p in texts[:n]]
    return {"gzip": [gzip.compress(t, 6, mtime=0) for t in texts],
            "zlib": [zlib.compress(t, 6) for t in texts],
            "zip": [zip_of(f"file{i}.py", t) for i, t in enumerate(texts)],
            "png": [png_of(t[:60_000]) for t in texts]}


def content(fmt: str, data: bytes) -> bytes | None:
    """What a file decodes to (None if it does not): two deflate streams can decode to the same data
    (a Huffman table differing only in codes the data never uses), so checksums over the content
    prove the content, not every compressed bit."""
    try:
        if fmt == "gzip":
            return gzip.decompress(data)
        if fmt == "zlib":
            return zlib.decompress(data)
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                return b"".join(z.read(i) for i in z.infolist())
    except Exception:
        return None
    return data  # PNG: its CRCs cover the stored bytes themselves


def score_grid(samples: dict[str, list[bytes]], budget: float, seed: int,
               progress: Callable[[int, int], None] | None = None, scorer=None, kinds=KINDS) -> list[dict]:
    """One row per format x damage kind (the same seed, the same damage); `scorer`: the model's view,
    as `fragfix repair` gives it (inference.model_scorer)."""
    rows, cells = [], [(fmt, kind) for fmt in samples for kind in kinds]
    for step, (fmt, kind) in enumerate(cells):
        rng = random.Random(f"{seed}-{fmt}-{kind}")
        exact = content_only = probable = probable_right = false = 0
        secs = []
        for data in samples[fmt]:
            bad = damage(data, kind, rng)
            t = time.perf_counter()
            r = repair(bad, fmt, budget, scorer)
            secs.append(time.perf_counter() - t)
            out = apply(bad, r.edits)
            right = out == data
            same = right or content(fmt, out) == content(fmt, data)
            exact += r.status == "restored" and right
            content_only += r.status == "restored" and same and not right
            false += r.status == "restored" and not same
            probable += r.status == "probable"
            probable_right += r.status == "probable" and right
        rows.append({"format": fmt, "damage": kind, "files": len(samples[fmt]), "restored_verified": exact,
                     "content_verified": content_only,
                     "probable": probable, "probable_right": probable_right, "false_verified": false,
                     "median_s": round(statistics.median(secs), 2) if secs else None,
                     "max_s": round(max(secs), 2) if secs else None})
        if progress:
            progress(step + 1, len(cells))
    return rows
