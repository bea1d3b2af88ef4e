"""A gzip or zlib file merged front to back: one version per area chosen as the stream reaches it.

Every branch (one version chosen per area so far) is decoded on through the next area and the agreed
bytes after it. A branch is dropped where its stream fails there (an inflate error, a member trailer
that does not match, data after the end), and where the content it decodes to just after the area
shows far more byte triples the content has never shown than the best branch's does: deep in a
stream every distance is valid, and a wrong sector often decodes on without an inflate error (on
real .tar.gz files, past the next area nearly always), to bytes unlike the rest. (A run of zeros,
as ddrescue leaves an unread sector, is the exception: it inflates to a run of one symbol, nothing
new; it counts as novel as can be.) The least novel
branches over all areas so far go first; at most BEAM live on. Only branches that decode to the
end, every member's CRC-32 and size passing, are handed back to be compared.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

BEAM = 64            # branches decoded on at most
NOVEL_SPAN = 8192    # content bytes after an area that judge a version …
NOVEL_SLACK, NOVEL_MIN = 2.0, 32  # … dropped with more than 2x + 32 the best branch's never-seen triples


class Feed:
    """A gzip file (wbits 31: members one after another, zero padding at the end) or a zlib stream
    (wbits 15) decoded as it is fed; `feed` raises zlib.error where the structure fails."""

    def __init__(self, wbits: int):
        self.wbits, self.d, self.padding = wbits, zlib.decompressobj(wbits), False

    def copy(self) -> Feed:
        f = Feed.__new__(Feed)
        f.wbits, f.d, f.padding = self.wbits, self.d.copy(), self.padding
        return f

    def feed(self, chunk: bytes) -> bytes:
        """The content `chunk` decodes to (members one after another)."""
        if self.padding:
            if chunk.strip(b"\0"):
                raise zlib.error("data after the padding")
            return b""
        out = [self.d.decompress(chunk)]
        while self.d.eof and self.d.unused_data:  # a member ended: the next one, or padding
            rest = self.d.unused_data
            if not rest.strip(b"\0"):
                self.padding = True
                break
            if self.wbits != 31:
                raise zlib.error("data after the stream")
            self.d = zlib.decompressobj(31)
            out.append(self.d.decompress(rest))
        return b"".join(out)

    @property
    def ended(self) -> bool:
        return self.padding or self.d.eof


def triples(out: bytes) -> np.ndarray:
    """Every three consecutive bytes as one 24-bit code (a wrong byte makes three the content has
    seldom shown; pairs of letters are too common to tell)."""
    a = np.frombuffer(out, np.uint8).astype(np.int64)
    return (a[:-2] << 16) | (a[1:-1] << 8) | a[2:]


def streamed(data: bytes, found: list, wbits: int, deadline: float):
    """Choices of one version per area (tuples of indices) whose stream decodes to its end, found front
    to back (see above), the likeliest first."""
    start = Feed(wbits)
    try:
        seen = np.zeros(1 << 24, bool)
        seen[triples(start.feed(data[:found[0][0]]))] = True
    except zlib.error:
        return  # the bytes before the first area, the same in every copy, fail already
    branches = [(start, (), 0)]
    for i, (a, b, versions) in enumerate(found):
        after = data[b:found[i + 1][0] if i + 1 < len(found) else len(data)]  # the same in every copy
        alive = []
        for feed, choice, total in branches:
            for k, v in enumerate(versions):
                f = feed.copy()
                try:
                    out = f.feed(v + after)
                except zlib.error:
                    continue
                head = triples(out[:NOVEL_SPAN])
                n = int((~seen[head]).sum())
                if len(v) >= 32 and not v.strip(b"\0"):  # an unread sector: zeros inflate to a run of
                    n += NOVEL_SPAN                      # one symbol, nothing new, yet are no content
                alive.append((n, total + n, len(alive), f, choice + (k,), head))
            if time.perf_counter() > deadline:
                return
        if not alive:
            return
        best = min(t[0] for t in alive)
        # the branches whose content here is near the best's, the least novel over all areas first
        near = sorted((t for t in alive if t[0] <= NOVEL_SLACK * best + NOVEL_MIN), key=lambda t: t[1:3])
        branches = [(f, c, total) for _, total, _, f, c, _ in near[:BEAM]]
        seen[near[0][5]] = True  # the likeliest content so far is what the next area is judged against
    for f, choice, _ in branches:
        if f.ended:
            yield choice
