"""CRC-32 algebra: where in a message a small error lies, from the syndrome alone.

CRC-32 is linear over GF(2): for two messages of equal length, crc32(a) ^ crc32(b) depends only on
a ^ b. So the syndrome S = crc32(received) ^ stored names the error pattern up to the CRC's power of
separation: every single-byte error (bit flips included) in messages shorter than 2^32 bits, and
two-bit errors whose bits lie close together. `locate` walks the syndrome backwards one zero byte
at a time (the zero-byte step is invertible because the table's top bytes are all distinct) and
compares it, at every distance from the end, with a dictionary of the short error patterns' own
CRCs: one pass over the message finds every pattern that explains S, O(length) instead of
O(length^2) candidate CRCs.
"""
from __future__ import annotations

import zlib

POLY = 0xEDB88320  # reflected CRC-32 (zlib, gzip, zip, PNG)


def _table() -> list[int]:
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()
TOP = {c >> 24: i for i, c in enumerate(TABLE)}  # top byte -> index: the zero-byte step's inverse
assert len(TOP) == 256


def step(s: int) -> int:
    """The linear CRC state after one more zero byte."""
    return TABLE[s & 0xFF] ^ (s >> 8)


def unstep(s: int) -> int:
    """The inverse of `step`."""
    i = TOP[s >> 24]
    return (((s ^ TABLE[i]) << 8) | i) & 0xFFFFFFFF


def syndrome(message: bytes, stored: int) -> int:
    return zlib.crc32(message) ^ stored


def patterns(max_span: int, two_bits: bool) -> dict[int, list[tuple[int, int, int]]]:
    """Error patterns ending at a message's last byte, by their linear CRC:
    single bytes (xor 1..255 at the last byte) and, with `two_bits`, two flipped bits up to
    `max_span` bytes apart: value -> [(distance of the first bit's byte from the last, xor there,
    xor at the last byte)]."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for v in range(1, 256):
        out.setdefault(TABLE[v], []).append((0, 0, v))
    if two_bits:
        for a in range(8):
            s = TABLE[1 << a]
            for k in range(1, max_span):
                s = step(s)  # bit a of the byte k before the last, pushed through k zero bytes
                for b in range(8):
                    out.setdefault(s ^ TABLE[1 << b], []).append((k, 1 << a, 1 << b))
    return out


def locate(s: int, length: int, table: dict) -> list[list[tuple[int, int]]]:
    """Every pattern from `table` that explains syndrome `s` in a message of `length` bytes,
    as lists of (offset, xor) byte edits."""
    found = []
    for d in range(length):
        hit = table.get(s)
        if hit:
            last = length - 1 - d
            for k, va, vb in hit:
                if k <= last:
                    found.append(([(last - k, va)] if va else []) + [(last, vb)])
        s = unstep(s)
    return found


def tried(length: int, two_bits: bool, max_span: int) -> int:
    """How many error patterns a `locate` over `length` bytes compared against the CRC."""
    return 255 * length + (64 * min(max_span, length) * length if two_bits else 0)


SINGLE = {TABLE[v]: [(0, 0, v)] for v in range(1, 256)}
_TWO: dict = {}


def candidates(message: bytes, stored: int, offset: int = 0, span: int = 512) -> tuple[list, int]:
    """Edits (absolute offsets: `offset` + position) that explain a failed CRC, from the smallest
    family that has any: one flipped bit, then one wrong byte, then two flipped bits up to `span`
    bytes apart (messages up to 64 KB). Returns (candidates, patterns compared); ([], 0) when the
    CRC passes. The count is what a false match is measured against: ~compared / 2^32."""
    s = syndrome(message, stored)
    if s == 0:
        return [], 0
    n = len(message)
    found = [f for f in locate(s, n, SINGLE_BIT)]
    compared = 8 * n
    if not found:
        found = locate(s, n, SINGLE)
        compared = tried(n, False, span)
    if not found and n <= 1 << 16:
        if span not in _TWO:
            _TWO[span] = patterns(span, True)
        found = locate(s, n, _TWO[span])
        compared = tried(n, True, span)
    # at least 1: the check failed even where nothing could be tried (an empty message, a CRC that is not 0)
    return [[(offset + o, x) for o, x in f] for f in found], max(compared, 1)


SINGLE_BIT = {TABLE[1 << b]: [(0, 0, 1 << b)] for b in range(8)}
