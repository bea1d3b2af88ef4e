"""A zip merged entry by entry: each entry's areas checked against its own CRC-32, apart from the rest.

An entry's data begins after its local header, read with the versions of the areas over it that give
the header's signature and the directory's name; the combinations of the areas over its data are
inflated and checked against the directory's CRC-32 and size. Entries are independent, so a zip with
bad sectors in many entries costs the sum of their combinations, not the product. The areas outside
every entry's data (headers, the directory) then go through all their combinations together.
"""
from __future__ import annotations

import io
import time
import zipfile
import zlib

from fragfix.formats.merge.areas import MAX_AREAS, MAX_TRIED, combinations, put


def by_entry(data: bytes, found: list, spent: list[int], deadline: float):
    """A zip's areas solved entry by entry: the combinations of the areas over one entry's data are
    checked against that entry's own CRC-32 and size (from the central directory as `data` has it),
    apart from every other entry's; the areas outside all entries' data (headers, the directory)
    then go through `combinations`. Nothing where the directory cannot be read or an entry has no
    passing combination (the caller then tries every area together). `spent[0]` counts the
    entries' comparisons."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = [i for i in z.infolist() if i.compress_type in (0, 8)]
    except Exception:  # noqa: BLE001 (a directory that cannot be read: no entries to go by)
        return
    fixed: dict[int, int] = {}
    for info in infos:
        lo = _data_start(data, found, fixed, info)
        if lo is None:
            return
        hi = lo + info.compress_size
        # areas over this entry's data, one that reaches into the next entry's header too (a sector
        # across the boundary): each area's bytes come from one copy, so a choice made here holds there
        over = [j for j, (a, b, _) in enumerate(found) if a < hi and b > lo]
        inside = [j for j in over if j not in fixed]
        if not inside:
            continue
        buf = bytearray(data[lo:hi])
        for j in over:
            if j in fixed:
                put(buf, lo, found[j], fixed[j])
        for choice in combinations([len(found[j][2]) for j in inside]):
            if spent[0] >= MAX_TRIED or time.perf_counter() > deadline:
                return
            for j, c in zip(inside, choice):
                put(buf, lo, found[j], c)
            spent[0] += 1
            try:
                out = zlib.decompress(bytes(buf), -15) if info.compress_type == 8 else bytes(buf)
            except zlib.error:
                continue
            if len(out) == info.file_size and zlib.crc32(out) == info.CRC:
                fixed.update(zip(inside, choice))
                break
        else:
            return
    rest = [j for j in range(len(found)) if j not in fixed]
    if len(rest) > MAX_AREAS:
        return
    for choice in combinations([len(found[j][2]) for j in rest]):
        full = {**fixed, **dict(zip(rest, choice))}
        yield tuple(full[j] for j in range(len(found)))


def _data_start(data: bytes, found: list, fixed: dict[int, int], info: zipfile.ZipInfo) -> int | None:
    """Where an entry's data begins: after its local header, read with the versions of the areas over
    it that give the header's signature and the directory's name (those choices are fixed)."""
    h, name = info.header_offset, info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    end = h + 30 + len(name)  # the header and the name; the extra field's length is read from it
    over = [j for j, (a, b, _) in enumerate(found) if a < end and b > h]
    head = bytearray(data[h:end])
    for j in over:
        if j in fixed:
            put(head, h, found[j], fixed[j])
    free = [j for j in over if j not in fixed]
    if len(free) > 8:
        return None
    for choice in combinations([len(found[j][2]) for j in free]):
        for j, c in zip(free, choice):
            put(head, h, found[j], c)
        if head[:4] == b"PK\x03\x04" and head[30:] == name:
            fixed.update(zip(free, choice))
            return end + int.from_bytes(head[28:30], "little")
    return None
