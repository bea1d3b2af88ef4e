"""The zip central directory: found from the end record, read record by record, and its own structure
repaired where the records prove it (a signature one byte off, one byte of a length that makes the
next record start exactly where it must, the end record's size and count from the records it spans).
zipfmt.py checks each entry's data against what it reads here."""
from __future__ import annotations

import struct

from fragfix.formats.result import xor_into

EOCD, CDH, LFH = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
M32 = 0xFFFFFFFF  # a size or offset that zip64 holds elsewhere


def find_end(d: bytes) -> int | None:
    at = d.rfind(EOCD, max(0, len(d) - 65557))
    return at if at >= 0 and at + 22 <= len(d) else None


def read_directory(d: bytes, at: int) -> tuple[list[dict], list[tuple[int, int]]] | str:
    """The central directory's records, and edits to its own structure: a signature one byte off, or
    one byte of a record's name, extra or comment length, found where the next record (or the end
    record, after the last) starts exactly where the corrected length says it does."""
    n, size, off = struct.unpack_from("<HII", d, at + 10)
    buf, out, edits, p = bytearray(d), [], [], off
    while len(out) < n:
        if p + 46 > len(buf) or buf[p:p + 4] != CDH:
            fix = None
            if p + 46 <= len(buf) and sum(x != y for x, y in zip(buf[p:p + 4], CDH)) == 1:
                fix = [(p + j, x ^ y) for j, (x, y) in enumerate(zip(buf[p:p + 4], CDH)) if x != y]
            elif out and (fix := _resync(buf, out[-1]["at"], at, last=False)) is not None:
                p = out.pop()["at"]  # the record before said the wrong length: read it again
            if fix is None:
                return f"central directory record {len(out)} at offset {p} is damaged"
            xor_into(buf, fix)
            edits += fix
            continue
        rec, p = _record(buf, p)
        out.append(rec)
    if out and p != at and buf[p:p + 4] not in (b"PK\x06\x06", b"PK\x05\x05"):  # zip64 end, signature
        fix = _resync(buf, out[-1]["at"], at, last=True)
        if fix:
            xor_into(buf, fix)
            edits += fix
            out[-1], p = _record(buf, out[-1]["at"])
    if edits and p != at and buf[p:p + 4] not in (b"PK\x06\x06", b"PK\x05\x05"):
        return f"central directory damaged near offset {edits[0][0]}"  # a repair must account for every record
    if p == at and off != M32:  # the records run exactly from the offset the end record gives to the end
        # record: its directory size and per-disk count follow from them (other readers trust them)
        n_disk = struct.unpack_from("<H", d, at + 8)[0]
        edits += set_field(d, at + 12, "<I", at - off) + (set_field(d, at + 8, "<H", n) if n_disk != n else [])
    return out, edits


def _record(b, p: int) -> tuple[dict, int]:
    flags, method, _, _, crc_, csize, usize, nlen, xlen, clen = struct.unpack_from("<HHHHIIIHHH", b, p + 8)
    local = struct.unpack_from("<I", b, p + 42)[0]
    return ({"at": p, "flags": flags, "method": method, "crc": crc_, "csize": csize, "usize": usize,
             "name": bytes(b[p + 46:p + 46 + nlen]), "local": local}, p + 46 + nlen + xlen + clen)


def _resync(b, prev: int, at: int, last: bool) -> list[tuple[int, int]] | None:
    """One byte of record `prev`'s name, extra or comment length that, corrected, puts the record's
    end exactly on the next record's signature (or the end record's, after the last). Any of the
    three would: the name length only where the local header holds that name, the extra length only
    where the extra fields then fill it exactly, the comment length otherwise."""
    lens = struct.unpack_from("<HHH", b, prev + 28)
    base = prev + 46
    targets = [at] if last else []
    q = base
    while not last and len(targets) < 64:
        q = b.find(CDH, q, base + 3 * 65536 + 4)
        if q < 0:
            break
        targets.append(q)
        q += 1
    local = struct.unpack_from("<I", b, prev + 42)[0]
    for q in targets:
        for j, v in enumerate(lens):
            v2 = q - base - (sum(lens) - v)
            x = v ^ v2
            if not (0 <= v2 < 65536 and x and (x & 0xFF == 0 or x >> 8 == 0)):
                continue
            if j == 0 and not (b[local + 26:local + 28] == struct.pack("<H", v2) and
                               b[local + 30:local + 30 + v2] == b[base:base + v2]):
                continue
            if j == 1 and not extra_ok(b[base + lens[0]:base + lens[0] + v2]):
                continue
            return [(prev + 28 + 2 * j + (x & 0xFF == 0), x & 0xFF or x >> 8)]
    return None


def record_metadata(d: bytes, at: int, lo: int) -> list[tuple[int, int, str]]:
    """The bytes of one entry that no check covers, held once (APPNOTE 4.3.7, 4.3.12): the central
    record's version made by, attributes, extra field and comment, and the local header's extra
    field. Fields both copies hold (version needed, flags, method, time, date, CRC, sizes, name)
    are each other's check; a disk number must be 0 in an archive whole in one file (the structure
    covers it while it is)."""
    nlen, xlen, clen, disk = struct.unpack_from("<HHHH", d, at + 28)
    out = [(at + 4, 2, "version made by"), (at + 36, 2, "internal attributes"), (at + 38, 4, "external attributes"),
           (at + 46 + nlen, xlen, "central extra field"), (at + 46 + nlen + xlen, clen, "file comment")]
    if disk:
        out.append((at + 34, 2, "disk number start"))
    if lo + 30 <= len(d):
        lx = struct.unpack_from("<H", d, lo + 28)[0]
        out.append((lo + 30 + struct.unpack_from("<H", d, lo + 26)[0], lx, "local extra field"))
    return [u for u in out if u[1]]


def end_metadata(d: bytes, at: int) -> list[tuple[int, int, str]]:
    """The end record's bytes no check covers: its comment (and disk numbers that are not 0)."""
    disks, clen = struct.unpack_from("<I", d, at + 4)[0], struct.unpack_from("<H", d, at + 20)[0]
    out = [(at + 22, min(clen, len(d) - at - 22), "archive comment")]
    return [u for u in out if u[1]] + ([(at + 4, 4, "end record disk numbers")] if disks else [])


def extra_ok(x: bytes) -> bool:
    """Whether `x` is a whole number of extra fields (id, size, data)."""
    i = 0
    while i + 4 <= len(x):
        i += 4 + struct.unpack_from("<H", x, i + 2)[0]
    return i == len(x)


def set_field(d: bytes, at: int, code: str, *values: int) -> list[tuple[int, int]]:
    """Edits that write `values` at `at`."""
    new = struct.pack(code, *values)
    return [(at + i, x ^ y) for i, (x, y) in enumerate(zip(d[at:at + len(new)], new)) if x != y]
