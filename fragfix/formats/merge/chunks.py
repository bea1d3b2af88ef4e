"""A PNG merged chunk by chunk: each chunk's areas checked against its own CRC-32, apart from the rest.

A chunk is its length, type, data and a CRC-32 over type and data. Walking from the signature, each
chunk's length and type are read with the versions of the areas over them that give a four-letter
type and a chunk that fits in the file; the combinations of the areas over the whole chunk (its
stored CRC included) are then checked against that CRC. Chunks are independent, so bad sectors in
many IDAT chunks cost the sum of their combinations, not the product; the image data's zlib stream
across them is checked once at the end by the full check.
"""
from __future__ import annotations

import zlib

from fragfix.formats.merge.differ import settle, the_rest

FREE_MAX = 8  # areas over one chunk's header tried together at most


def by_chunk(data: bytes, found: list, spent: list[int], deadline: float):
    """Choices of one version per area (tuples of indices), chunk by chunk (see above); nothing where
    a chunk's header or CRC has no passing combination. `spent[0]` counts the chunks' comparisons."""
    fixed: dict[int, int] = {}
    pos, n = 8, len(data)
    while pos + 12 <= n:
        head = settle(data, pos, pos + 8, found, fixed, lambda b, p=pos: b[4:8].isalpha()
                      and p + 12 + int.from_bytes(b[:4], "big") <= n, max_free=FREE_MAX)
        if head is None:
            return
        end = pos + 12 + int.from_bytes(head[:4], "big")
        chunk = settle(data, pos, end, found, fixed, lambda b: zlib.crc32(b[4:-4]) == int.from_bytes(b[-4:], "big"),
                       spent, deadline)
        if chunk is None:
            return
        if chunk[4:8] == b"IEND":
            break
        pos = end
    yield from the_rest(found, fixed)
