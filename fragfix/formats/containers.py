"""gzip (multi-member), zlib and zip (stored and deflate entries): parse, check, repair by search.

Every deflate stream goes through `deflate.Search` with the checks its container gives: gzip's
CRC-32 and ISIZE after the member, zlib's Adler-32 after the stream, zip's CRC-32 and both sizes
from the central directory (and the stream must end exactly where the entry's data ends). When a
stream decodes cleanly but a stored field disagrees in one byte only, the field itself is the
damaged part. Zip keeps a second copy of each entry's method, CRC, sizes and name in the central
directory: where the two copies disagree, the copy that the entry's data verifies is restored over
the other. Stored entries are checked by their CRC alone, located through the syndrome (crc.py).
"""
from __future__ import annotations

import math
import struct
import time
import zlib

from fragfix.formats.result import Part, apply
from fragfix.formats.deflate.search import Search
from fragfix.formats.deflate.stream import Stream
from fragfix.formats.deflate.trace import KEEP, inflated, trace

M = 0xFFFFFFFF
ALIKE_REACH = 8  # bytes either side of an accepted edit whose single bits may give the very same output


def _le32(b, at: int) -> int:
    return struct.unpack_from("<I", b, at)[0]


def _one_byte(x: int, at: int, big_endian: bool = False) -> list[tuple[int, int]] | None:
    """An xor confined to one byte of a 4-byte field at `at`, as an edit; None otherwise."""
    for i in range(4):
        if x and x & ~(0xFF << 8 * i) & M == 0:
            return [(at + (3 - i if big_endian else i), (x >> 8 * i) & 0xFF)]
    return None


def deflate_part(buf, start: int, stop: int, name: str, kind: str, verify, deadline, scorer, tick,
                 stored_at, fix_fields, expect_len=None, expect_end=None, size_at=None) -> tuple[Part, int | None]:
    """Check and, if need be, repair one deflate stream; returns the part and where the stream ends."""
    part = Part(name, checks=["inflate", kind] + (["size"] if size_at or expect_len is not None else []))
    s = Search(Stream(buf, start, stop, kind, verify, expect_len, expect_end, stored_at), scorer, deadline)
    tr = s.tr
    if expect_len is None and size_at is not None and tr.end is not None:
        s.expect_length(size_at(tr.end))
    if s.intact():
        return part, tr.end
    if tr.error is None and tr.end is not None and (expect_end is None or tr.end == expect_end):
        edits = fix_fields(tr.end, tr.outlen[-1], tr.sum)
        if edits:  # the data decodes cleanly and a stored field is one byte off: the field is the damage
            part.status, part.edits, part.compared, part.first_bad = "restored", edits, 1, edits[0][0]
            part.note = "a stored checksum or size field was damaged"
            return part, tr.end
    o = s.run(tick=tick)  # in step, the search reads the stored checksum through its Stream.stored_at
    part.candidates, part.compared = o.tried, o.compared
    if o.edits:
        o.edits = fewest_bits(buf, start, o.edits, max(deadline, time.perf_counter() + 0.5))
        part.status, part.edits, part.first_bad = "restored", o.edits, o.edits[0][0]
        return part, trace(apply(buf, o.edits), start, stop, kind).end
    part.status, part.first_bad = "damaged", o.first_bad
    where = f"inflate failed near offset {tr.error}" if tr.error is not None else (
        "the checksum fails" if o.case == "in-step" else "the stream ends in the wrong place")
    if o.case == "too large to search":
        where += f" (output over {KEEP >> 20} MB: checked, not searched)"
    part.note = f"{where}; no single-bit, single-byte or two-bit edit passed every check in the time budget"
    return part, None


def fewest_bits(buf, start: int, edits: list, until: float) -> list:
    """A verified edit of several bits may have a one-bit twin with the very same output (two
    encodings of one copy: a distance code and its extra bits). The output is what the checks
    proved; of the edits giving it, one flipped bit is the likelier damage (bit rot flips one).
    Single bits within ALIKE_REACH bytes of the edit are decoded; the first alike is taken."""
    if sum(bin(x).count("1") for _, x in edits) < 2:
        return edits
    got = inflated(buf, start, edits)
    if got is None:  # not a whole stream (never so for a verified edit): nothing to be alike
        return edits
    near = sorted({p for at, _ in edits
                   for p in range(max(at - ALIKE_REACH, start), min(at + ALIKE_REACH + 1, len(buf)))})
    for p in near:
        for bit in range(8):
            if time.perf_counter() > until:
                return edits
            if inflated(buf, start, [(p, 1 << bit)]) == got:  # (the edit itself has two bits or more)
                return [(p, 1 << bit)]
    return edits


# ---- gzip ------------------------------------------------------------------------------------
def looks_like_gzip(d: bytes) -> bool:
    return len(d) >= 18 and d[:3] == b"\x1f\x8b\x08"


def gzip_body(d: bytes, pos: int) -> int | None:
    """Where a member's deflate data starts, or None for a header that does not parse."""
    if d[pos:pos + 3] != b"\x1f\x8b\x08" or d[pos + 3] & 0xE0 or pos + 10 > len(d):
        return None
    flg, p = d[pos + 3], pos + 10
    try:
        if flg & 4:
            p += 2 + struct.unpack_from("<H", d, p)[0]
        for bit in (8, 16):
            if flg & bit:
                p = d.index(0, p) + 1
    except (ValueError, struct.error):
        return None
    if flg & 2:
        p += 2
    return p if p < len(d) else None


MAGIC = b"\x1f\x8b\x08"  # ID1, ID2 and CM (deflate) of every member header (RFC 1952, 2.3.1)


def gzip_metadata(d: bytes, pos: int, body: int) -> list[tuple[int, int, str]] | None:
    """The member header's bytes that no check covers: (offset, length, field). Without FHCRC that is
    MTIME, XFL, OS, the FTEXT bit of FLG and the extra field, name and comment (their lengths and
    terminators are structure: damage there breaks the parse). With FHCRC (the low 16 bits of the
    header's CRC-32, RFC 1952 2.3.1) nothing is unchecked when it matches; None when it fails."""
    flg = d[pos + 3]
    if flg & 2:
        return [] if zlib.crc32(d[pos:body - 2]) & 0xFFFF == struct.unpack_from("<H", d, body - 2)[0] else None
    out, p = [(pos + 3, 1, "FLG.FTEXT"), (pos + 4, 4, "MTIME"), (pos + 8, 1, "XFL"), (pos + 9, 1, "OS")], pos + 10
    if flg & 4:
        n = struct.unpack_from("<H", d, p)[0]
        out.append((p + 2, n, "FEXTRA"))
        p += 2 + n
    for bit, name in ((8, "FNAME"), (16, "FCOMMENT")):
        if flg & bit:
            end = d.index(0, p)
            out.append((p, end - p, name))
            p = end + 1
    return [u for u in out if u[1]]


def repair_gzip(d: bytes, deadline, scorer, tick) -> list[Part]:
    parts, pos, i = [], 0, 0
    while pos < len(d):
        header_edits = []
        if d[pos:pos + 2] != b"\x1f\x8b":
            flips = sum(bin(a ^ b).count("1") for a, b in zip(d[pos:pos + 3], MAGIC))
            if len(d) - pos >= 18 and flips <= 2 and i > 0:
                # what follows a member and is a bit or two from a member header is a member whose
                # magic took damage, not trailing data: read it with the magic restored; its own CRC
                # then says whether that was right
                header_edits = [(pos + k, d[pos + k] ^ m) for k, m in enumerate(MAGIC) if d[pos + k] != m]
                d = d[:pos] + MAGIC + d[pos + 3:]
            else:
                if any(d[pos:]):  # not covered by any checksum: the file cannot be verified whole
                    parts.append(Part(f"data after member {i - 1}", "unchecked", checks=[],
                                      note=f"{len(d) - pos} bytes not in any member"))
                break
        body = gzip_body(d, pos)
        if body is None:
            parts.append(Part(f"member {i}", "unsupported", first_bad=pos, note="the member header does not parse"))
            break

        def verify(end, n, c):
            if end + 8 > len(d) or _le32(d, end + 4) != n & M:
                return None
            return _le32(d, end) == c

        def fix_fields(end, n, c):
            if end + 8 > len(d):
                return None
            xc, xn = _le32(d, end) ^ c, _le32(d, end + 4) ^ (n & M)
            return _one_byte(xc, end) if not xn else _one_byte(xn, end + 4) if not xc else None

        part, end = deflate_part(d, body, len(d), f"member {i}", "crc32", verify, deadline, scorer, tick,
                                 lambda e: _le32(d, e) if e + 4 <= len(d) else 0, fix_fields,
                                 size_at=lambda e: _le32(d, e + 4) if e + 8 <= len(d) else None)
        meta = gzip_metadata(d, pos, body)
        if meta is None:  # the header's own CRC-16 fails: its damage is seen, not placed
            part.checks.append("header crc16")
            if part.status in ("intact", "restored"):  # (a content repair is not written under a failing header)
                part.status, part.first_bad, part.edits = "damaged", pos, []
            part.note = (part.note + "; " if part.note else "") + "the member header's CRC-16 (FHCRC) fails"
        else:
            part.unchecked = meta
        if header_edits:  # the restored magic is part of this member's repair, proven by its CRC or not at all
            if part.status in ("intact", "restored"):
                part.status, part.compared = "restored", max(part.compared, 1)
                part.edits = header_edits + part.edits
                part.first_bad = header_edits[0][0]
                part.note = (part.note + "; " if part.note else "") + "member header magic restored"
            else:
                part.note = (part.note + "; " if part.note else "") + "member header magic damaged too"
        parts.append(part)
        if end is None:
            break
        pos, i = end + 8, i + 1
    return parts


# ---- zlib ------------------------------------------------------------------------------------
def looks_like_zlib(d: bytes) -> bool:
    if len(d) < 8 or d[0] & 0x0F != 8 or d[0] >> 4 > 7 or d[1] & 0x20 or (d[0] * 256 + d[1]) % 31:
        return False
    try:  # two bytes are no proof (text can start "x^"): the stream must start decoding too
        zlib.decompressobj().decompress(d[:64])
        return True
    except zlib.error:
        return False


def repair_zlib(d: bytes, deadline, scorer, tick) -> list[Part]:
    return [zlib_part(d, 0, len(d), "stream", deadline, scorer, tick)]


def zlib_part(d: bytes, start: int, stop: int, name: str, deadline, scorer, tick) -> Part:
    """The zlib stream from `start` to `stop` (a zlib file, a PDF stream): header, deflate data, and
    the Adler-32 in its last 4 bytes, where the deflate data must end."""
    end_at = stop - 4

    def verify(end, n, c):
        return struct.unpack_from(">I", d, end)[0] == c if end == end_at else None

    def fix_fields(end, n, c):
        return _one_byte(struct.unpack_from(">I", d, end)[0] ^ c, end, big_endian=True) if end == end_at else None

    part, _ = deflate_part(d, start + 2, stop, name, "adler32", verify, deadline, scorer, tick,
                           lambda e: struct.unpack_from(">I", d, e)[0] if e + 4 <= len(d) else 0, fix_fields,
                           expect_end=end_at)
    if part.status == "restored":
        try:
            n = len(zlib.decompress(apply(d, part.edits)[start:stop]))
        except zlib.error:
            n = 0
        part.bits = adler_bits(n)
    return part


def adler_bits(n: int) -> float:
    """What Adler-32 over n bytes is worth in checksum bits. Its two sums only wrap (mod 65521) once
    the data is long: over a few hundred bytes they spread over far fewer than 2^16 values each, so a
    wrong output matches by chance more often than 2^-32 (RFC 3309 found it weak on short messages).
    Each sum's spread for random bytes (sd 73.9 per byte; the second sum weighs byte i by n - i),
    as the entropy of a Gaussian of that spread, capped at 16 bits: 100 bytes ~27.6, 1 KB ~29.2,
    30 KB and more 32."""
    sd_a = 73.9 * math.sqrt(n)
    sd_b = 73.9 * math.sqrt(n * (n + 1) * (2 * n + 1) / 6)
    return sum(min(16.0, math.log2(max(sd, 1.0) * 4.1327)) for sd in (sd_a, sd_b))  # sqrt(2 pi e) = 4.1327
