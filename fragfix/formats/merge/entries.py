"""A zip merged entry by entry: each entry's areas checked against its own CRC-32, apart from the rest.

An entry's data begins after its local header, read with the versions of the areas over it that give
the header's signature and the directory's name; the combinations of the areas over its data are
inflated and checked against the directory's CRC-32 and size. Entries are independent, so a zip with
bad sectors in many entries costs the sum of their combinations, not the product. The areas outside
every entry's data (headers, the directory) then go through all their combinations together.
"""
from __future__ import annotations

import io
import zipfile
import zlib

from fragfix.formats.merge.differ import settle, the_rest


def by_entry(data: bytes, found: list, spent: list[int], deadline: float):
    """Choices of one version per area (tuples of indices), entry by entry (see above), from the
    central directory as `data` has it; nothing where it cannot be read or an entry has no passing
    combination. `spent[0]` counts the entries' comparisons."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = [i for i in z.infolist() if i.compress_type in (0, 8)]
    except Exception:  # noqa: BLE001 (a directory that cannot be read: no entries to go by)
        return
    fixed: dict[int, int] = {}
    for info in infos:
        name = info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        h = info.header_offset
        end = h + 30 + len(name)  # the local header and its name; the extra field's length is read
        head = settle(data, h, end, found, fixed, lambda b: b[:4] == b"PK\x03\x04" and b[30:] == name, max_free=8)
        if head is None:
            return
        lo = end + int.from_bytes(head[28:30], "little")
        # areas over this entry's data, one that reaches into the next entry's header too (a sector
        # across the boundary): each area's bytes come from one copy, so a choice made here holds there
        if settle(data, lo, lo + info.compress_size, found, fixed, lambda b, i=info: _passes(b, i),
                  spent, deadline) is None:
            return
    yield from the_rest(found, fixed)


def _passes(span: bytearray, info: zipfile.ZipInfo) -> bool:
    try:
        out = zlib.decompress(bytes(span), -15) if info.compress_type == 8 else bytes(span)
    except zlib.error:
        return False
    return len(out) == info.file_size and zlib.crc32(out) == info.CRC
