"""Salvage of gzip, zlib and zip files past lost bytes: each stream's content, and what of it is exact.

Where verified repair (containers.py, zipfmt.py) finds no edit that every check passes, the bytes
may simply be gone: a zeroed sector, an overwritten block, a file cut short. Salvage decodes what
is left (deflate/recover.py) and returns, per member or entry, its content with every byte's
standing: exact (decoded from intact input; for a whole stream whose CRC matches, verified),
unsure (decoded from input nothing vouches for), one that copies a lost byte (`unknown`, to be
guessed by the caller's predictor), or lost.

Losses come from the caller (a ddrescue map of the input, runs of zeros) or, where none is given,
from where inflate fails; then nothing decoded from the stream is called exact (inflate sees damage
late or never, and nothing says it is the only damage). A gzip's members are found by walking them, and again after a loss by
their magic; a zip's entries by its central directory (or, where that is gone, by local headers).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from fragfix.formats.containers import MAGIC, gzip_body, looks_like_gzip, looks_like_zlib
from fragfix.formats.deflate.recover import Stream, salvage_stream
from fragfix.formats.zipdir import find_end, read_directory

CLUSTER = 1 << 16  # losses closer than this in the input are taken as one (one step to find after them)
LFH = b"PK\x03\x04"


@dataclass
class Salvaged:
    """One output: a member's or an entry's content, each byte exact, unknown or lost."""
    name: str
    data: bytearray
    status: str                    # verified | exact | salvaged | lost | unchecked
    lost: list = field(default_factory=list)        # [a, b) content ranges lost
    unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # positions that copy a lost byte
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))    # the lost byte each copies
    # (its position in `data`, or -1 - k for lost byte k of a window whose place is not known)
    unsure: list = field(default_factory=list)      # [a, b) decoded, but from input not known intact
    note: str = ""
    stream: dict = field(default_factory=dict)   # how the step was found, where the loss was taken to be
    crc: int | None = None                       # the stored CRC-32, to check a complete guess against
    guess_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # bytes a caller guessed,
    guess_p: np.ndarray = field(default_factory=lambda: np.zeros(0))              # and how sure it was


def detect(d: bytes) -> str | None:
    if looks_like_gzip(d):
        return "gzip"
    if d[:4] == LFH or find_end(d) is not None:
        return "zip"
    return "zlib" if looks_like_zlib(d) else None


def salvage(d: bytes, fmt: str, losses: list[tuple[int, int]]) -> list[Salvaged]:
    """The content of every member (gzip), the stream (zlib) or every entry (zip) of `d`, with
    `losses` ([a, b) input byte ranges known lost, sorted)."""
    return {"gzip": _gzip, "zlib": _zlib, "zip": _zip}[fmt](d, losses)


def _loss_in(losses, a: int, b: int) -> tuple[tuple[int, int] | None, tuple]:
    """The first cluster of losses that touches input [a, b), clipped to it; and the losses after it."""
    hit = [(max(x, a), min(y, b)) for x, y in losses if x < b and y > a]
    if not hit:
        return None, ()
    lo, hi = hit[0]
    for k, (x, y) in enumerate(hit[1:], start=1):
        if x - hi > CLUSTER:
            return (lo, hi), tuple(hit[k:])
        hi = y
    return (lo, hi), ()


def _salvaged(d: bytes, a: int, b: int, losses, total_at, ends_ok, cut_short) -> Stream:
    """salvage_stream over input [a, b) past the first cluster of `losses`; where the decoding after
    it runs into a later loss, the two and all between are taken as one loss and it runs again (the
    later loss decoded as data would give wrong bytes, and a wrong length to place the rest by)."""
    loss, others = _loss_in(losses, a, b)
    while True:
        s = salvage_stream(d, a, b, loss, total_at, ends_ok, cut_short, others)
        if s.reached is None or loss is None:
            return s
        loss = (loss[0], s.reached[1])
        others = tuple(x for x in others if x[0] >= loss[1])


def _from_stream(name: str, s: Stream, check=None, among: bool = False) -> Salvaged:
    """A stream's content as one output; `check(data)` (a CRC) makes a whole stream verified.
    `among`: the stream is one member among others, so the loss may hide a member boundary, and
    what is decoded after it may be the next member's (its trailer then gives the length): unsure."""
    data = bytearray(s.prefix) + bytearray(s.lost or 0) + bytearray(s.rest)
    info = {"how": s.how, "located": s.located, "loss": list(s.loss) if s.loss else None,
            "resumed_at_bit": s.step_bit, "lost_length_known": s.lost is not None}
    if s.how == "intact":
        ok = check(bytes(data)) if check else None
        status = "verified" if ok else "exact" if ok is None else "unchecked"
        note = "" if ok is not False else "decodes whole, but its checksum or size does not match: damaged somewhere"
        return Salvaged(name, data, status, note=note, stream=info)
    p, gap = len(s.prefix), s.lost or 0
    lost = [(p, p + gap)] if gap else []
    # where no map or zero run says where the damage is, inflate noticed it only later (often tens
    # of KB later, or never), and nothing says it is the only damage: no decoded byte is known to
    # come from intact input (a file cut short, and nothing else, decodes cleanly to its end)
    unsure = [(0, len(data))] if s.located == "inferred" and s.how != "truncated" and len(data) else []
    if s.how == "truncated" and s.unsure_from is not None and s.unsure_from < len(data):
        unsure = [(s.unsure_from, len(data))]
    if s.how in ("truncated", "lost to the end"):
        if s.how == "truncated":
            note = "cut short: everything up to the cut is here (what its last 4 KiB decoded to, unchecked)"
        else:
            note = "no point after the loss where decoding resumes: the rest is lost"
            if unsure:
                note += "; where the damage is is not known (no map, no zero run): what was decoded is unproven"
        return Salvaged(name, data, "salvaged" if p else "lost", lost, unsure=unsure, note=note, stream=info)
    note = "" if s.lost is not None else "the lost length is not known: what follows the loss is placed right after it"
    if among and len(s.rest):
        unsure = unsure + [(p + gap, len(data))]
        note = (note + "; " if note else "") + ("one member among others: the lost bytes may hold the end of "
                                                "this member and the start of another, so what follows is unproven")
    if s.unsure_from is not None:  # another loss further on, decoded as if it were data: nothing after it is proven
        unsure = unsure + [(p + gap + s.unsure_from, len(data))]
        note = (note + "; " if note else "") + "another loss further on was decoded through: unproven from there"
    if s.located == "inferred":
        note = (note + "; " if note else "") + "where the damage is is not known (no map, no zero run): unproven"
    return Salvaged(name, data, "salvaged", lost, s.unknown + p + gap, s.source, unsure, note=note, stream=info)


# ---- gzip ------------------------------------------------------------------------------------
def _gzip(d: bytes, losses) -> list[Salvaged]:
    out, pos, i = [], 0, 0
    while pos + 18 <= len(d):
        body = gzip_body(d, pos) if d[pos:pos + 3] == MAGIC else None
        if body is None:
            nxt = d.find(MAGIC, pos + 1)
            if nxt < 0 or not any(d[pos:nxt]):
                break  # the end (or zero padding after the last member)
            out.append(_skipped(pos, nxt))
            pos = nxt
            continue

        # a member with a loss ends before the next member header after the loss: its trailer
        # just before it (a step found beyond it would take later members for this one's content)
        loss, _ = _loss_in(losses, body, len(d))
        stop = _next_member(d, loss[1]) if loss else len(d)

        def total_at(e: int) -> int | None:
            return struct.unpack_from("<I", d, e + 4)[0] if e + 8 <= len(d) else None

        def ends_ok(e: int, stop=stop, loss=loss) -> bool:
            if loss and e + 8 > loss[0] and stop < len(d):  # past the loss: just before the next member
                return e + 8 == stop
            after = d[e + 8:e + 11]
            return e + 8 <= len(d) and (after in (b"", MAGIC) or not any(d[e + 8:]))
        def cut(n: int, body=body) -> bool:
            # a file cut short ends in compressed data; a damaged whole one ends in a trailer whose
            # ISIZE fits the content the rest of it would hold (a random 4 bytes seldom does)
            expect = n * (len(d) - 8 - body) / max(len(d) - body, 1)
            return not expect / 2 <= struct.unpack_from("<I", d, len(d) - 4)[0] <= 2 * expect + 4096
        s = _salvaged(d, body, stop, losses, total_at, ends_ok, cut)

        def check(data: bytes, e=s.end) -> bool:
            return e is not None and e + 8 <= len(d) and struct.unpack_from("<II", d, e) == (
                zlib.crc32(data), len(data) & 0xFFFFFFFF)
        item = _from_stream(f"member {i}", s, check, among=i > 0 or stop < len(d))
        if s.end is not None and s.end + 8 <= len(d):
            item.crc = struct.unpack_from("<I", d, s.end)[0]
        out.append(item)
        i += 1
        if s.end is not None:
            pos = s.end + 8
        else:  # lost to the end of this member: a later member may still be whole
            nxt = d.find(MAGIC, (s.loss[1] if s.loss else body) + 1)
            if nxt < 0:
                break
            if s.loss:
                out.append(_skipped(s.loss[0], nxt))
            pos = nxt
    return out


def _next_member(d: bytes, p: int) -> int:
    """The first place from p where a gzip member header parses (len(d): none)."""
    while (p := d.find(MAGIC, p)) >= 0:
        if gzip_body(d, p) is not None:
            return p
        p += 1
    return len(d)


def _skipped(a: int, b: int) -> Salvaged:
    """A mark in the content where input [a, b) was passed over to the next member's header: a
    member whose start lay there is missing, and how much content it held is not known."""
    return Salvaged(f"input bytes {a}-{b}", bytearray(), "lost", note=(
        "passed over to the next member: any member that started here is missing from the content "
        "(its length is not known)"))


# ---- zlib ------------------------------------------------------------------------------------
def _zlib(d: bytes, losses) -> list[Salvaged]:
    end_at = len(d) - 4
    s = _salvaged(d, 2, len(d), losses, None, lambda e: e == end_at, None)
    item = _from_stream("stream", s, lambda data: s.end == end_at and struct.unpack_from(">I", d, end_at)[0]
                        == zlib.adler32(data))
    return [item]


# ---- zip -------------------------------------------------------------------------------------
def entries(d: bytes) -> list[dict]:
    """The entries by the central directory, else by the local headers."""
    at = find_end(d)
    recs = read_directory(d, at) if at is not None else "no end record"
    if not isinstance(recs, str):
        return recs[0]
    found, p = [], d.find(LFH)
    while p >= 0 and p + 30 <= len(d):
        flags, method, _, _, crc_, csize, usize, nlen = struct.unpack_from("<HHHHIIIH", d, p + 6)
        if not flags & 8:  # sizes in the header (a data descriptor's are after the data: not found here)
            found.append({"flags": flags, "method": method, "crc": crc_, "csize": csize, "usize": usize,
                          "name": d[p + 30:p + 30 + nlen], "local": p})
        p = d.find(LFH, p + 4)
    return found


def _data_start(d: bytes, r: dict, bounds: list[int]) -> int | None:
    """Where an entry's data starts: after its local header, or, where that is lost, csize bytes
    before the next record (less a data descriptor's 16 or 12 bytes)."""
    lo = r["local"]
    if d[lo:lo + 4] == LFH and lo + 30 <= len(d):
        nlen, xlen = struct.unpack_from("<HH", d, lo + 26)
        return lo + 30 + nlen + xlen
    nxt = next((b for b in bounds if b > lo), None)
    if nxt is None:
        return None
    for desc in ((16, 12) if r["flags"] & 8 else (0,)):
        a = nxt - desc - r["csize"]
        crc_at = nxt - desc + (4 if desc == 16 else 0)  # a descriptor's CRC, after its signature if it has one
        if a >= lo + 30 + len(r["name"]) and (not desc or struct.unpack_from("<I", d, crc_at)[0] == r["crc"]):
            return a
    return None


def _zip(d: bytes, losses) -> list[Salvaged]:
    out = []
    found = entries(d)
    bounds = sorted({r["local"] for r in found} | {r["at"] for r in found if "at" in r})
    for k, r in enumerate(found):
        name = r["name"].decode("utf-8" if r["flags"] & 0x800 else "cp437", "replace") or f"entry {k}"
        a = _data_start(d, r, bounds)
        if a is None:
            out.append(Salvaged(name, bytearray(), "lost", [(0, r["usize"])] if r["usize"] else [],
                                note="its local header is lost, and where its data starts with it"))
            continue
        b = min(len(d), a + r["csize"])
        if r["method"] == 0:
            data = bytearray(d[a:b])
            lost = [(x - a, y - a) for x, y in losses if x < b and y > a]
            lost = [(max(0, x), min(b - a, y)) for x, y in lost]
            if b - a < r["usize"]:
                lost.append((b - a, r["usize"]))
            ok = not lost and zlib.crc32(data) == r["crc"]
            out.append(Salvaged(name, data, "verified" if ok else "salvaged" if lost else "unchecked", lost,
                                crc=r["crc"], stream={"how": "stored"}))
            continue
        if r["method"] != 8:
            out.append(Salvaged(name, bytearray(), "lost", note=f"compression method {r['method']} is not deflate"))
            continue
        s = _salvaged(d, a, b, losses, lambda e: r["usize"], lambda e: e == a + r["csize"],
                      lambda n: b < a + r["csize"])  # cut short only where the file ends first
        item = _from_stream(name, s, lambda data: len(data) == r["usize"] and zlib.crc32(data) == r["crc"])
        item.crc = r["crc"]
        if s.how == "lost to the end" and len(item.data) < r["usize"]:  # the size is known: keep it
            item.lost.append((len(item.data), r["usize"]))
            item.data += bytes(r["usize"] - len(item.data))
        out.append(item)
    return out
