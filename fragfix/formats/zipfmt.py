"""zip archives: every entry's data checked against the central directory, both header copies kept in step.

The central directory (found from the end-of-central-directory record) is the map: each record
gives the entry's method, CRC-32, sizes, name and where its local header lies. The local header
repeats method, CRC, sizes and name (or leaves CRC and sizes to a data descriptor after the data);
where the copies disagree, the one that the entry's data verifies is written over the others. A
third witness is the layout: an entry's data ends where the next entry begins, so a damaged size,
extra length or header offset is found without any search (`_layouts`, `_moved`). Deflated data is
repaired by `containers.deflate_part`, stored data through the CRC syndrome; names by zipnames.py.
Zip64, encryption and multi-disk archives are reported as unsupported and left alone.
"""
from __future__ import annotations

import bisect
import dataclasses
import re
import struct
import zlib

from fragfix.formats import crc

from fragfix.formats.result import Part, apply, choose
from fragfix.formats.containers import deflate_part
from fragfix.formats.zipdir import LFH, M32, extra_ok, find_end, read_directory, record_metadata, set_field
from fragfix.formats.zipnames import diff_edits, name_part, names_said, unchecked_fields

def looks_like_zip(d: bytes) -> bool:
    """A zip starts with a local header: a file that only holds an end record somewhere near its end
    (a disk image, a self-extracting program) keeps the ordinary path."""
    return d[:4] == LFH


# (field, offset in the local header, offset in the central record, struct code)
FIELDS = (("method", 8, 10, "<H"), ("crc", 14, 16, "<I"), ("csize", 18, 20, "<I"), ("usize", 22, 24, "<I"))


def repair_zip(d: bytes, deadline, scorer, tick) -> list[Part]:
    at = find_end(d)
    if at is None:
        return [Part("central directory", "unsupported", note="no end-of-central-directory record found")]
    got = read_directory(d, at)
    if isinstance(got, str):
        return [Part("central directory", "unsupported", note=got)]
    recs, fixed = got
    names = [r["name"] for r in recs]
    bounds = sorted({r["local"] for r in recs} | {min(r["at"] for r in recs) if recs else at})
    taken, headers = {r["local"] for r in recs}, []  # headers: filled by the first entry that needs them
    searched: dict = {}  # one search per stretch of data, however many entries claim it (overlap bombs)
    for r in recs:  # where the next entry (or the central directory) begins: this entry's data ends before it
        r["next"] = bounds[min(bisect.bisect_right(bounds, r["local"]), len(bounds) - 1)]
        r["taken"], r["headers"], r["searched"] = taken, headers, searched
    conflicts: list = []  # entries whose two name copies differ: decided once every entry is known
    parts = [_entry(d, r, deadline, scorer, tick, names, conflicts) for r in recs]
    for part, r in zip(parts, recs):
        part.unchecked = record_metadata(d, r["at"], r["local"])
    if conflicts:
        said = names_said(apply(d, sorted(e for p in parts for e in p.edits)), recs, parts, deadline)
        for part, r, at, local, edits in conflicts:
            name_part(d, part, r, at, local, names, edits, said)
    if fixed:  # a wrong guess would have to find a record's signature exactly where it claims: 32 bits
        parts.insert(0, Part("central directory", "restored", checks=["structure"], compared=len(fixed),
                             edits=fixed, first_bad=fixed[0][0],
                             note="a record's signature or length restored: the next record starts where it says"))
    return parts


def _entry(d: bytes, r: dict, deadline, scorer, tick, names: list[bytes], conflicts: list) -> Part:
    name = r["name"].decode("utf-8", "replace")
    lo = r["local"]
    if r["method"] not in (0, 8) or r["flags"] & 1 or M32 in (r["csize"], r["usize"], lo):
        return Part(name, "unsupported", checks=[], note="zip64, encrypted or not deflate/stored: left alone")
    edits = []
    moved = _moved(d, r)
    if moved is not None:  # the central record's offset of the local header lost a bit or a byte
        edits += set_field(d, r["at"] + 42, "<I", moved)
        lo = r["local"] = moved
    if d[lo:lo + 4] != LFH:
        if lo + 30 > len(d) or sum(x != y for x, y in zip(d[lo:lo + 4], LFH)) > 1:
            return Part(name, "damaged", checks=[], first_bad=lo, note="the local header is missing")
        edits += [(lo + i, x ^ y) for i, (x, y) in enumerate(zip(d[lo:lo + 4], LFH)) if x != y]
    nlen = len(r["name"])
    xlen = struct.unpack_from("<H", d, lo + 28)[0]
    lflags = struct.unpack_from("<H", d, lo + 6)[0]
    if lflags ^ r["flags"] == 8:  # one copy says the sizes follow the data: a descriptor there says which
        r["flags"] |= 8
        if not _descriptor_holds(d, r, lo + 30 + nlen + xlen):
            r["flags"] &= ~8
        edits += set_field(d, lo + 6, "<H", r["flags"]) + set_field(d, r["at"] + 8, "<H", r["flags"])
    unproven = unchecked_fields(d, lo, r["at"], r["flags"])  # set from the central copy: probable at most
    edits += unproven
    if struct.unpack_from("<H", d, lo + 26)[0] != nlen:  # the data's CRC below proves the central copy
        edits += diff_edits(d, lo + 26, r["at"] + 28, 2)
    start = lo + 30 + nlen + xlen
    stop = start + r["csize"]
    if not _plain(d, r["method"], start, stop, r["crc"], r["usize"]):
        found = _layouts(d, r, lo, start)  # one wrong size, CRC or length in a header: no search
        if found:
            note, fix, tried = found
            part = Part(name, "restored", checks=["inflate", "crc32", "size"] if r["method"] else ["crc32", "size"],
                        compared=tried, note=note, edits=sorted(edits + fix), first_bad=fix[0][0])
            return _names_agree(d, part, r, lo, conflicts)
    if stop > len(d):
        return Part(name, "damaged", checks=[], first_bad=lo, note="the entry's data runs past the end of the file")
    key = (r["method"], start, stop, r["crc"], r["usize"])
    if key not in r["searched"]:
        part = r["searched"][key] = _data(d, r, start, stop, r["crc"], r["usize"], deadline, scorer, tick, name)
    else:  # the same check again proves nothing more: its chance of a wrong pass counts once
        first = r["searched"][key]
        part = dataclasses.replace(first, name=name, edits=list(first.edits), checks=list(first.checks), compared=0,
                                   note=first.note or f"the same data as {first.name}: checked once")
    if part.status == "damaged" and not r["flags"] & 8:  # perhaps the central copy is the damaged one
        local = {f: struct.unpack_from(c, d, lo + a)[0] for f, a, _, c in FIELDS}
        if local != {f: r[f] for f, *_ in FIELDS} and local["method"] in (0, 8) and \
                start + local["csize"] <= len(d):
            alt = _data(d, {**r, **local}, start, start + local["csize"], local["crc"], local["usize"], deadline,
                        scorer, tick, name)
            if alt.status != "damaged":
                for f, a, c, code in FIELDS:  # the central directory takes the verified local values
                    edits += diff_edits(d, r["at"] + c, lo + a, struct.calcsize(code))
                alt.edits = edits + alt.edits
                alt.status, alt.compared = "restored", alt.compared + 1
                alt.note = "central directory record restored from the local header"
                return _names_agree(d, alt, r, lo, conflicts)
    if part.status != "damaged":
        local_name = d[lo + 30:lo + 30 + nlen]
        if local_name != r["name"]:
            conflicts.append((part, r, lo + 30, local_name, edits))
            return part
        fixed = []
        if not r["flags"] & 8:
            for f, a, c, code in FIELDS:  # the local header takes the verified central values
                if f in ("csize", "usize") and struct.unpack_from(code, d, lo + a)[0] == M32:
                    continue  # zip64: the local sizes lie in its extra field
                fixed += diff_edits(d, lo + a, r["at"] + c, struct.calcsize(code))
        elif (desc := _descriptor(d, r)) and start + r["csize"] == r["next"] - desc:  # so does a data descriptor
            fixed += set_field(d, r["next"] - 12, "<III", r["crc"], r["csize"], r["usize"])
        edits += fixed
        if edits:
            part.edits = sorted(edits + part.edits)
            part.status = "restored"
            part.compared = max(part.compared, 1)
            part.first_bad = part.edits[0][0]
            part.note = part.note or "local header restored from the central directory"
            if unproven:  # a guess between two copies: half a chance, never verified
                part.bits, part.note = 1, "local header fields no check covers set from the central directory"
    return part


def _names_agree(d: bytes, part: Part, r: dict, lo: int, conflicts: list) -> Part:
    """A restored entry whose two name copies differ too: decided with the others (zipnames.py)."""
    local = d[lo + 30:lo + 30 + len(r["name"])]
    if local != r["name"]:
        conflicts.append((part, r, lo + 30, local, []))
    return part
DESC = b"PK\x07\x08"  # a data descriptor's optional signature


def _plain(d: bytes, method: int, start: int, stop: int, crc_: int, usize: int) -> bool:
    """Whether the data from `start` to `stop` checks out as it is: inflates to exactly `stop`,
    `usize` bytes whose CRC-32 is `crc_`."""
    if not 0 <= start <= stop <= len(d):
        return False
    if method == 0:
        return stop - start == usize and zlib.crc32(d[start:stop]) == crc_
    z = zlib.decompressobj(-15)
    try:
        out = z.decompress(d[start:stop], usize + 1)
    except zlib.error:
        return False
    return z.eof and not z.unused_data and not z.unconsumed_tail and len(out) == usize and zlib.crc32(out) == crc_


def _descriptor(d: bytes, r: dict) -> int:
    """Length of the data descriptor before the next entry (16 with its signature, 12 without; 0
    where the entry has none)."""
    if not r["flags"] & 8:
        return 0
    return 16 if d[r["next"] - 16:r["next"] - 12] == DESC else 12


def _descriptor_holds(d: bytes, r: dict, start: int) -> bool:
    """Whether a data descriptor with the central record's CRC and sizes follows the data."""
    n = _descriptor(d, r)
    return start + r["csize"] == r["next"] - n and \
        d[r["next"] - 12:r["next"]] == struct.pack("<III", r["crc"], r["csize"], r["usize"])


def _layouts(d: bytes, r: dict, lo: int, start: int) -> tuple[str, list, int] | None:
    """An entry whose data does not check out against its central record, with one header field
    wrong: the local header's sizes and CRC (or, where a data descriptor holds them, the
    descriptor's), or the compressed size the layout gives (the data ends where the next entry
    begins), or the data's start (the local extra length). The first that makes the data check out
    as it is: (note, edits that make every copy agree with it, candidates compared)."""
    nxt, nlen, desc = r["next"], len(r["name"]), _descriptor(d, r)
    if not lo < nxt <= len(d):
        return None
    vals = {f: r[f] for f, *_ in FIELDS}
    if desc and nxt - 12 >= lo:
        c, cs, us = struct.unpack_from("<III", d, nxt - 12)
        tries = [("sizes and CRC restored from the data descriptor", {**vals, "crc": c, "csize": cs, "usize": us}, start)]
    else:
        tries = [("central directory record restored from the local header",
                  {f: struct.unpack_from(code, d, lo + a)[0] for f, a, _, code in FIELDS}, start)]
    tries += [("compressed size restored: the data ends where the next entry begins",
               {**vals, "csize": nxt - desc - start}, start),
              ("local extra length restored: the data ends where the next entry begins", vals, nxt - desc - r["csize"])]
    tried = 0
    for note, v, st in tries:
        if v["method"] not in (0, 8) or (v == vals and st == start) or not lo + 30 + nlen <= st < lo + 30 + nlen + 65536:
            continue
        if st != start and not extra_ok(d[lo + 30 + nlen:st]):  # a local extra length must fit its fields
            continue
        tried += 1
        if _plain(d, v["method"], st, st + v["csize"], v["crc"], v["usize"]):
            fix = set_field(d, lo + 28, "<H", st - lo - 30 - nlen)
            for f, a, c, code in FIELDS:  # every copy takes the values the data proved
                fix += set_field(d, r["at"] + c, code, v[f])
                if not desc or f == "method":
                    fix += set_field(d, lo + a, code, v[f])
            if desc and nxt - 12 >= lo:
                fix += set_field(d, nxt - 12, "<III", v["crc"], v["csize"], v["usize"])
            return (note, sorted(fix), tried) if fix else None
    return None


def _moved(d: bytes, r: dict) -> int | None:
    """Where the entry's local header is, when the central record's offset for it lost a bit or a
    byte: a local header with the entry's name, at an offset one byte's change away (None if the
    offset is right, or no such header, or several)."""
    lo, name = r["local"], r["name"]
    if d[lo:lo + 4] == LFH and d[lo + 30:lo + 30 + len(name)] == name:
        return None
    if not r["headers"]:  # every local header signature in the file, found once per archive
        r["headers"].extend(m.start() for m in re.finditer(re.escape(LFH), d))
    hits = [m for m in r["headers"]  # not a header another record points to
            if d[m + 30:m + 30 + len(name)] == name and _one_byte(m ^ lo) and m not in r["taken"]]
    return hits[0] if len(hits) == 1 else None


def _one_byte(x: int) -> bool:
    """Whether x is nonzero with all its set bits inside one byte."""
    return x != 0 and any(not x & ~(0xFF << 8 * i) for i in range(4))


def _data(d, r, start, stop, crc_, usize, deadline, scorer, tick, name) -> Part:
    if r["method"] == 0:
        return stored_part(d, start, stop, crc_, name, usize)

    def verify(end, n, c):
        return c == crc_ if end == stop and n == usize else None

    part, _ = deflate_part(d, start, stop, name, "crc32", verify, deadline, scorer, tick, lambda e: crc_,
                           lambda e, n, c: None, expect_len=usize, expect_end=stop)
    return part


def stored_part(d: bytes, start: int, stop: int, stored: int, name: str, size: int | None = None) -> Part:
    """Data covered directly by a CRC-32: single-byte and two-bit errors located by the syndrome."""
    part = Part(name, checks=["crc32"] + (["size"] if size is not None else []))
    if size is not None and stop - start != size:
        part.status, part.first_bad, part.note = "damaged", start, "stored size disagrees with the data"
        return part
    cands, compared = crc.candidates(d[start:stop], stored, start)
    part.compared = compared
    return choose(part, start, cands)
