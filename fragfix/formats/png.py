"""PNG: every chunk's CRC-32, and the image data's zlib stream (Adler-32, size from IHDR) on top.

A chunk whose CRC fails is repaired through the syndrome (crc.py): the single byte (bit flips
included) or the two flipped bits that explain it, or the stored CRC itself when the syndrome
is one byte of it. Image data (IDAT) must also inflate as one zlib stream across all IDAT chunks,
with its Adler-32 and the size IHDR implies: a repair there must pass a CRC-32 and an Adler-32,
so it is verified even where several single-byte edits explain the CRC alone. A chunk length
that points nowhere is repaired by the one-bit or one-byte change that makes its CRC pass and the
next chunk begin.
"""
from __future__ import annotations

import itertools
import struct
import time
import zlib

from fragfix.formats import crc

from fragfix.formats.result import Part, apply, choose
from fragfix.formats.containers import _one_byte

SIG = b"\x89PNG\r\n\x1a\n"


def looks_like(d: bytes) -> bool:
    return len(d) >= 33 and (d[:8] == SIG or (sum(a != b for a, b in zip(d[:8], SIG)) == 1 and d[12:16] == b"IHDR"))


def _be32(d, at: int) -> int:
    return struct.unpack_from(">I", d, at)[0]


def _starts_chunk(d: bytes, q: int) -> bool:
    return q == len(d) or (q + 12 <= len(d) and d[q + 4:q + 8].isalpha())


def _chunk_ok(d: bytes, pos: int, length: int) -> bool:
    end = pos + 8 + length
    return end + 4 <= len(d) and zlib.crc32(d[pos + 4:end]) == _be32(d, end) and _starts_chunk(d, end + 4)


def _fix_length(d: bytes, pos: int) -> list[tuple[int, int]] | None:
    length = _be32(d, pos)
    found = []
    for i in range(4):
        for v in range(1, 256):
            cand = length ^ (v << 8 * (3 - i))
            if pos + 12 + cand <= len(d) and _chunk_ok(d, pos, cand):
                found.append([(pos + i, v)])
    return found[0] if len(found) == 1 else None


def repair(d: bytes, deadline, scorer, tick) -> list[Part]:
    parts = []
    if d[:8] != SIG:  # a constant: one differing byte is certainly the damage
        parts.append(Part("signature", "restored", checks=["signature"], bits=64, compared=1, first_bad=0,
                          edits=[(i, a ^ b) for i, (a, b) in enumerate(zip(d[:8], SIG)) if a != b]))
    chunks, pos = [], 8
    while pos + 12 <= len(d):
        length = _be32(d, pos)
        end = pos + 12 + length
        last = length == 0 and d[pos + 4:pos + 8] == b"IEND" and end <= len(d)  # whatever follows it
        if end > len(d) or not (last or _starts_chunk(d, end) or _chunk_ok(d, pos, length)):
            fix = _fix_length(d, pos)
            if fix is None:
                parts.append(Part(f"chunk at {pos}", "damaged", checks=["structure"], first_bad=pos,
                                  note="its length points nowhere and no one-byte change fixes it"))
                return parts
            parts.append(Part(f"length of chunk at {pos}", "restored", checks=["crc32", "structure"],
                              compared=1020, first_bad=fix[0][0], edits=fix))
            length = _be32(d, pos) ^ (fix[0][1] << 8 * (3 - (fix[0][0] - pos)))
        chunks.append((pos, length))
        pos += 12 + length
        if d[pos - 8 - length:pos - 4 - length] == b"IEND":
            break
    if pos < len(d) and any(d[pos:]):  # after IEND (or a last chunk cut short): no check covers it
        parts.append(Part("data after the last chunk", "unchecked", checks=[], first_bad=pos,
                          note=f"{len(d) - pos} bytes not in any chunk"))
    idat = [c for c in chunks if d[c[0] + 4:c[0] + 8] == b"IDAT"]
    intact = 0  # chunks whose CRC passes are one part: a file of 500,000 chunks is not 500,000 rows
    for p, n in chunks:
        if d[p + 4:p + 8] == b"IDAT":
            continue
        if zlib.crc32(d[p + 4:p + 8 + n]) == _be32(d, p + 8 + n):
            intact += 1
            continue
        typ = d[p + 4:p + 8].decode("latin-1")
        if time.perf_counter() > deadline:
            parts.append(Part(f"{typ} chunk at {p}", "damaged", checks=["crc32"], first_bad=p,
                              note="its CRC fails; not searched: the format budget is spent"))
            continue
        cands, compared = _candidates(d, p, n)
        parts.append(choose(Part(f"{typ} chunk at {p}", checks=["crc32"], compared=compared), p, cands))
    if intact:
        parts.insert(0, Part(f"{intact:,} chunk{'s' * (intact != 1)} besides image data", checks=["crc32"]))
    if idat:
        parts += _image_data(d, idat, chunks)
    return parts


def _candidates(d: bytes, p: int, n: int) -> tuple[list, int]:
    """Edits that explain chunk p's failed CRC: in its type and data (the syndrome), or in the
    stored CRC itself when the syndrome is one byte of it; and how many patterns were compared."""
    cands, compared = crc.candidates(d[p + 4:p + 8 + n], _be32(d, p + 8 + n), p + 4)
    field = _one_byte(zlib.crc32(d[p + 4:p + 8 + n]) ^ _be32(d, p + 8 + n), p + 8 + n, big_endian=True)
    return cands + ([field] if field else []), compared


def _raw_size(d: bytes, chunks) -> int | None:
    """Bytes the image data inflates to, from IHDR (non-interlaced images)."""
    p, n = chunks[0]
    if d[p + 4:p + 8] != b"IHDR" or n != 13:
        return None
    w, h, depth, color, _, _, interlace = struct.unpack_from(">IIBBBBB", d, p + 8)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if channels is None or interlace:
        return None
    return h * (1 + (w * channels * depth + 7) // 8)


def _image_data(d: bytes, idat, chunks) -> list[Part]:
    """Damaged IDAT chunks: every combination of their CRC candidates (capped) against the zlib stream."""
    size = _raw_size(d, chunks)
    options, info = [], []
    for p, n in idat:
        cands, compared = _candidates(d, p, n)
        info.append((p, n, compared))
        options.append([[]] if not compared else cands)

    def inflates(edits) -> bool:
        buf = apply(d, edits)
        z = zlib.decompressobj()
        try:
            out = z.decompress(b"".join(bytes(buf[p + 8:p + 8 + n]) for p, n in idat))
        except zlib.error:
            return False
        return z.eof and (size is None or len(out) == size)

    combos = list(itertools.islice(itertools.product(*options), 4096))
    passing = [sum(c, []) for c in combos if inflates(sum(c, []))]
    checks = ["crc32", "adler32", "inflate"] + (["size"] if size is not None else [])
    parts = []
    for p, n, compared in info:
        if not compared:
            continue
        mine = {tuple(e for e in c if p + 4 <= e[0] < p + 12 + n) for c in passing}
        ok = [list(m) for m in mine if m] if len(passing) == 1 else []
        part = choose(Part(f"IDAT chunk at {p}", checks=checks, bits=64, compared=compared), p, ok)
        if len(passing) > 1:
            part.note = f"{len(passing)} combinations of candidate repairs pass every check; none taken"
        elif not passing:
            part.status, part.first_bad = "damaged", p
            part.note = "no single-byte or two-bit error explains the CRC and the zlib stream"
        parts.append(part)
    return parts

