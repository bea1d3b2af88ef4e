"""What a container tells the deflate search about one stream, and what the search tells back.

A container (gzip member, zlib stream, zip entry, PNG's IDAT, a PDF stream) knows where its deflate
stream lies and how to check an output: its checksum, the size it stored, where the stream must
end. The search (search.py) knows nothing of containers; it gets a `Stream` and returns an `Outcome`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# (end of stream, output length, checksum) -> None where the structure fails (end, size), else checksum ok
Verify = Callable[[int, int, int], "bool | None"]
Scorer = Callable[[bytes], np.ndarray]    # data -> how implausible each byte is (higher: less)


@dataclass
class Outcome:
    edits: list[tuple[int, int]] | None   # (absolute offset, xor) that made every check pass
    tried: int = 0       # candidates decoded
    compared: int = 0    # candidates that reached the checksum comparison
    case: str = ""       # error, wrong-end, in-step, intact
    first_bad: int | None = None  # best estimate of the damage's position


@dataclass(frozen=True)
class Stream:
    """One deflate stream as its container gives it: the bytes, where the stream lies, and how the
    container checks an output: its checksum kind, `verify`, the output size and end offset it
    expects (None: not known), and the checksum stored after a stream that ends at a given offset."""
    buf: bytes | bytearray | memoryview
    start: int
    stop: int
    kind: str
    verify: Verify
    expect_len: int | None = None
    expect_end: int | None = None
    stored_at: Callable[[int], int] | None = None
