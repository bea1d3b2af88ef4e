"""Whole unknown runs filled from the data's own copies, anywhere in the image or in references.

Disks repeat themselves: backups of files, older versions, journal and swap pages. For every
unknown run (up to `max_run` bytes) whose `anchor` bytes on each side are known and varied enough to
mean something, look for the same left anchor anywhere in the image (and in every `--reference`),
with the same right anchor exactly the run's length further on: the bytes between are a copy of
what the run held, verified on both sides. When the places found disagree, the most common
content wins only with a clear majority; otherwise the run is left to the model. A copy of all
zeros is no evidence (another image's unread sector looks just like that) and is not used.

The search is one streaming pass per file: 8-byte keys at every offset, read as eight zero-copy
uint64 views (one per alignment), hashed into a bit table of the anchors' keys; the few hits are
checked byte for byte. Memory is one chunk and the table, whatever the size of the image. The
thresholds are `config.CopyConfig` (RepairConfig.copy_search), recorded in every report.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fragfix.config import CopyConfig
from fragfix.files.jobs import open_input, read_upto
from fragfix.files.unknown import UnknownMap, runs

TABLE_BITS = 22
MULT = np.uint64(0x9E3779B97F4A7C15)
CHUNK = 4 << 20


@dataclass
class Copy:
    """Unknown bytes [start, end) of the input, filled from `source` at `offset` (both anchors matched)."""
    start: int
    end: int
    source: str
    offset: int
    agree: int      # places found with this content
    places: int     # places found in all
    anchors: tuple[int, int]  # bytes matched before and after the run ((0, 0): same place in another
                              # read of the disk, good per its mapfile)
    padded: bool = False  # one side was a file's padding (zeros): weaker evidence
    confidence: float = 1.0  # CopyConfig.padded_confidence where padded

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "source": self.source, "source_offset": self.offset,
                "anchor_bytes": list(self.anchors), "padding_side": self.padded, "confidence": self.confidence,
                "agreeing_places": self.agree, "places": self.places}


@dataclass
class Probe:
    """How one run is looked for: the bytes before it (`anchor`) and those that must follow it
    (`right`), looked up by the most varied 8 bytes of either (spaces or zeros would hit everywhere)."""
    run: int
    anchor: bytes
    content_at: int     # content start minus anchor start (the anchor's length)
    right: bytes
    length: int         # the run's length
    key_at: int = 0     # the key's offset from the anchor's start (past the run when it is in `right`)

    def __post_init__(self):
        both = [(len(set(self.anchor[k:k + 8])), k) for k in range(len(self.anchor) - 7)]
        both += [(len(set(self.right[k:k + 8])), self.content_at + self.length + k) for k in range(len(self.right) - 7)]
        self.key_at = max(both)[1]

    @property
    def key(self) -> int:
        whole = self.anchor + bytes(self.length) + self.right
        return int.from_bytes(whole[self.key_at:self.key_at + 8], "little")


def _varied(b: bytes, cc: CopyConfig) -> bool:
    return len(set(b)) >= cc.min_distinct


def same_place(image_size: int, unknown, references: list[tuple[Path, object]]
               ) -> tuple[list[Copy], dict[int, bytes]]:
    """Another read of the same disk (a reference of the image's size with its own mapfile): its good
    bytes fill the image's unknown ones at the same offsets, as ddrescue does with a second drive."""
    copies, fills = [], {}
    left = list(unknown.ranges)
    for path, mapfile in references:
        if mapfile is None or path.stat().st_size != image_size:
            continue
        bad = UnknownMap(mapfile.bad_ranges())
        still = []
        with open_input(path, image_size) as f:
            for a, b in left:
                good = ~bad.mask(a, b)
                for s, e in runs(good, a):
                    f.seek(s)
                    fills[s] = read_upto(f, e - s, path)
                    copies.append(Copy(s, e, str(path), s, 1, 1, (0, 0)))
                still += runs(~good, a)  # what this reference lacks too stays for the next
        left = still
    return copies, fills


def find_copies(image: Path, size: int, unknown, references: list[Path] = (), cc: CopyConfig = CopyConfig()
                ) -> tuple[list[Copy], dict[int, bytes]]:
    """The copies that fill unknown runs of `image` (`unknown`: an unknown.UnknownMap), and their bytes
    by run start. Runs with no copy, or copies that disagree, are left out (the model fills them).
    Only two-sided matches count: measured on an image of real files, a match on 64 bytes of one
    side alone was the wrong content in most of the places it found (other versions of a file,
    shared headers), while two-sided matches were right but for near-copies."""
    runs, probes = [], []
    with open_input(image, size) as f:
        for a, b in unknown.ranges:
            if b - a > cc.max_run:
                continue

            def side(lo: int, hi: int) -> bytes:  # known bytes [lo, hi) of the image, or b""
                if lo < 0 or hi > size or unknown.mask(lo, hi).any():
                    return b""
                f.seek(lo)
                return read_upto(f, hi - lo, image)
            # `anchor` bytes each side, grown (up to `max_anchor`) until they are varied enough to
            # mean something: beside padding or a run of spaces the anchor reaches past it
            left = right = b""
            for n in range(cc.anchor, cc.max_anchor + 1, cc.anchor):
                left = left if _varied(left, cc) else side(a - n, a)
                right = right if _varied(right, cc) else side(b, b + n)
            # a file's edge: padding on one side (its copy has the same), 64 of its own bytes on the
            # other. Weaker evidence (measured: 2 of 9 such copies were partly wrong, against 2 of 31
            # two-sided ones), so such copies are reported with a lower confidence.
            k = cc.anchor
            pad = bytes(k)
            if side(b, b + k) == pad and _varied(side(a - 2 * k, a), cc):
                left, right = side(a - 2 * k, a), pad
            elif side(a - k, a) == pad and _varied(side(b, b + 2 * k), cc):
                left, right = pad, side(b, b + 2 * k)
            lv, rv = _varied(left, cc), _varied(right, cc)
            if (lv or left == pad) and (rv or right == pad) and (lv or rv):
                probes.append(Probe(len(runs), left, len(left), right, b - a))
                runs.append((a, b))
    if not runs:
        return [], {}
    keys = np.array([p.key for p in probes], dtype=np.uint64)
    table = np.zeros(1 << TABLE_BITS, dtype=bool)
    table[(keys * MULT) >> np.uint64(64 - TABLE_BITS)] = True
    by_key: dict[int, list[Probe]] = {}
    for p in probes:
        by_key.setdefault(p.key, []).append(p)
    reach = 2 * cc.max_anchor + max(b - a for a, b in runs)  # bytes a match needs from its start
    hits: list[list[tuple[str, Path, int]]] = [[] for _ in runs]  # (source, path, content offset)
    for name, path in [("image", image), *((str(r), r) for r in references)]:
        _scan(path, name, by_key, table, reach, runs, hits, cc.max_hits)
    copies, fills = [], {}
    sides = {p.run: (len(p.anchor), len(p.right)) for p in probes}
    padded = {p.run: not (_varied(p.anchor, cc) and _varied(p.right, cc)) for p in probes}
    for r, (a, b) in enumerate(runs):
        places = _contents(hits[r], a, b, image, unknown, cc.max_anchor)
        if not places:
            continue
        counts = Counter(content for _, _, content in places)
        (best, n), *rest = counts.most_common(2) + [(None, 0)]
        if rest[0][0] is not None and rest[0][1] * 2 >= n:
            continue  # the copies disagree: no clear majority
        src, off, _ = next(p for p in places if p[2] == best)
        copies.append(Copy(a, b, src, off, n, len(places), sides[r], padded[r],
                           cc.padded_confidence if padded[r] else 1.0))
        fills[a] = best
    return copies, fills


def _scan(path: Path, name: str, by_key, table, reach: int, runs, hits, max_hits: int) -> None:
    """One pass over a file: every place where a probe's anchor sits (and, two-sided, its right
    anchor follows the run's length later). Records where the content would start."""
    size = path.stat().st_size
    with open_input(path, size) as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            buf = read_upto(f, CHUNK + reach, path)
            n = min(CHUNK, len(buf))  # anchors start in [pos, pos + n); the rest is lookahead
            for o in range(8):
                count = (len(buf) - o) // 8
                if count <= 0:
                    continue
                v = np.frombuffer(buf, dtype="<u8", count=count, offset=o)
                for i in np.flatnonzero(table[(v * MULT) >> np.uint64(64 - TABLE_BITS)]).tolist():
                    for p in by_key.get(int(v[i]), ()):
                        j = o + 8 * i - p.key_at  # where the anchor would start
                        if not 0 <= j < n or len(hits[p.run]) >= max_hits or buf[j:j + p.content_at] != p.anchor:
                            continue
                        end = j + p.content_at + runs[p.run][1] - runs[p.run][0]
                        if buf[end:end + len(p.right)] == p.right:
                            hits[p.run].append((name, path, pos + j + p.content_at))
            pos += CHUNK


def _contents(hits, a: int, b: int, image: Path, unknown, max_anchor: int) -> list[tuple[str, int, bytes]]:
    """The bytes at each place found: not the run itself, not (partly) unknown in the image, and not
    all zeros (what an unread sector holds in another image too: no evidence of content)."""
    out = []
    for name, path, at in hits:
        if name == "image" and (at == a or unknown.mask(max(at - max_anchor, 0), at + (b - a) + max_anchor).any()):
            continue
        with open(path, "rb") as f:
            f.seek(at)
            content = f.read(b - a)
        if len(content) == b - a and content.strip(b"\0"):
            out.append((name, at, content))
    return out


class Fills:
    """The copies found for one file, applied to its pieces as they stream past (runs may cross
    piece boundaries): the bytes go in before the model sees the piece, and stop being unknown."""

    def __init__(self, copies: list[Copy], fills: dict[int, bytes]):
        self.copies = sorted(copies, key=lambda c: c.start)
        self.fills = fills

    def apply(self, pos: int, data: bytes, unk: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray | None]:
        """(bytes with the copies in, unknown mask without them, mask of copied bytes or None)."""
        end = pos + len(data)
        hit = [c for c in self.copies if c.start < end and c.end > pos]
        if not hit:
            return data, unk, None
        buf = bytearray(data)
        copied = np.zeros(len(data), dtype=bool)
        for c in hit:
            lo, hi = max(c.start, pos), min(c.end, end)
            buf[lo - pos:hi - pos] = self.fills[c.start][lo - c.start:hi - c.start]
            copied[lo - pos:hi - pos] = True
        return bytes(buf), unk & ~copied, copied

    def confidence(self, pos: int, n: int) -> np.ndarray:
        """(n,) the confidence of each byte of the piece at `pos` that came from a copy (1 elsewhere)."""
        out = np.ones(n, dtype=np.float32)
        for c in self.copies:
            if c.start < pos + n and c.end > pos:
                out[max(c.start, pos) - pos:min(c.end, pos + n) - pos] = c.confidence
        return out


def fills_for(src: Path, size: int, unknown: UnknownMap, references: tuple, cc: CopyConfig = CopyConfig()) -> Fills:
    """What copies fill of a file's unknown bytes: second reads of the disk (a reference of its size
    with a mapfile) first, at the same offsets; then copies found by their neighbours anywhere in
    the file and the references, for what is still unknown."""
    direct, fills = same_place(size, unknown, [(p, m) for p, m in references])
    rest = unknown
    if direct:
        filled = UnknownMap([(c.start, c.end) for c in direct])
        rest = UnknownMap([r for a, b in unknown.ranges for r in runs(~filled.mask(a, b), a)])
    found, more = find_copies(src, size, rest, [p for p, _ in references], cc) if rest.ranges else ([], {})
    return Fills(direct + found, {**fills, **more})
