"""Decoding a deflate stream again after lost bytes: where the decoder can find its step, and proof.

Deflate (RFC 1951) is a chain of blocks, each a header (BFINAL, BTYPE; for a dynamic block the
code lengths of its Huffman codes) and then symbols: literals, (length, distance) copies up to
32 KiB back, an end-of-block code. Lost bytes cost three things, and each is recovered here:

- **the step**: after the loss the decoder does not know at which bit a symbol starts. Inside the
  damaged block the codes are still known (its header lies before the loss), and Huffman codes
  synchronise themselves: decoding from each of the MAXSYM bit offsets after the loss (one of them
  is where the true parse resumes, since no symbol is longer) soon reaches a common bit X; every
  path passes X, so the true one does too, and from X on the symbols are exact (`converge`).
  Otherwise the next block header is searched for (`headers`: dynamic headers whose code-length
  code is complete, stored blocks whose LEN and NLEN agree) and accepted when decoding from it
  reaches the stream's end where the container says it ends.
- **the history**: copies reaching back into the lost output are unknown bytes, and copies of
  those too. zlib decodes from X four times with a window whose unknown bytes are filled
  differently (0x00, 0xFF, the low and high byte of their own index): a byte equal in the first two
  is known; otherwise the last two name the lost window byte it copies (`decode`). Once 32 KiB of
  output pass without an unknown, nothing later can reach one, and one decoder goes on alone.
- **the code tables for zlib**: zlib cannot start in the middle of a block, so the block's own
  header bits are put in front of the bits from X (`spliced`): the same codes, a new first symbol.

Bits are read as deflate writes them: least significant bit of each byte first.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from fragfix.formats.deflate.symbols import (DEXT, LEXT, ORDER, BadStream, FIXED_DIST, FIXED_LIT, dynamic_header,
                                             words)

WINDOW = 32768     # how far back a copy reaches
MAXSYM = 48        # most bits one symbol takes: 15 (length code) + 5 + 15 (distance code) + 13
WALK = 8 * 4096    # bits a path from an offset may take to meet the others
PIECE = 1 << 16    # input bytes per decode call
TRIAL = 1 << 16    # input bytes a candidate header must decode before it is decoded to the end


def shifted(buf, bit: int, stop: int | None = None) -> bytes:
    """buf's bits from absolute bit `bit` to byte `stop`, realigned so that bit `bit` is bit 0."""
    a = np.frombuffer(bytes(buf[bit >> 3:stop]), np.uint8).astype(np.uint16)
    k = bit & 7
    if k == 0 or not len(a):
        return a.astype(np.uint8).tobytes()
    out = (a >> k) | (np.r_[a[1:], 0].astype(np.uint16) << (8 - k))
    return (out & 0xFF).astype(np.uint8).tobytes()


def spliced(buf, head: int, head_end: int, at: int, stop: int) -> tuple[bytes, int]:
    """A stream of the header bits [head, head_end) followed by the bits from `at` to byte `stop`;
    and the number of header bits (the offset of `at` in the new stream)."""
    hb = head_end - head
    bits = np.unpackbits(np.frombuffer(shifted(buf, head, ((head_end + 7) >> 3) + 1), np.uint8),
                         bitorder="little")[:hb]
    pad = (-hb) % 8  # tail bits that complete the header's last byte
    tail = np.unpackbits(np.frombuffer(shifted(buf, at, ((at + pad) >> 3) + 2), np.uint8), bitorder="little")[:pad]
    first = np.packbits(np.r_[bits, tail].astype(np.uint8), bitorder="little").tobytes()
    return first + shifted(buf, at + pad, stop), hb


@dataclass
class Header:
    at: int            # absolute bit where the block starts
    end: int           # bit just after its header (stored: after LEN, NLEN)
    kind: int          # 0 stored, 1 fixed, 2 dynamic
    final: bool
    lit: list | None = None
    dist: list | None = None
    size: int = 0      # stored: LEN


def _kraft(lengths, complete_only: bool) -> bool:
    """A usable prefix code as zlib checks it: never over-subscribed; incomplete only where one code
    of length 1 is all there is (and never for the code-length code)."""
    used = [n for n in lengths if n]
    left = (1 << 15) - sum(1 << (15 - n) for n in used)
    return left == 0 or (left > 0 and not complete_only and (not used or max(used) == 1))


def header_at(buf, bit: int) -> Header | None:
    """The block header at absolute bit `bit`, if one that zlib would accept lies there."""
    a = bit >> 3
    w = words(buf, a, a + 400)
    pos = bit & 7
    if len(w) < 4:
        return None
    v = w[0] >> pos
    final, kind = bool(v & 1), (v >> 1) & 3
    if kind == 0:
        q = (pos + 3 + 7) >> 3
        if q + 4 > len(w):
            return None
        n, nn = w[q] & 0xFFFF, (w[q] >> 16) & 0xFFFF
        return Header(bit, 8 * (a + q + 4), 0, final, size=n) if n ^ nn == 0xFFFF else None
    if kind == 1:
        return Header(bit, bit + 3, 1, final, FIXED_LIT, FIXED_DIST)
    if kind == 3 or ((v >> 3) & 31) > 29 or ((v >> 8) & 31) > 29:
        return None
    cl = [0] * 19
    try:
        for i in range(((v >> 13) & 15) + 4):
            at = pos + 17 + 3 * i
            cl[ORDER[i]] = (w[at >> 3] >> (at & 7)) & 7
        if not _kraft(cl, True):
            return None
        lit, dist, end, (ll, dl) = dynamic_header(w, pos + 3)
    except (BadStream, IndexError, ValueError):  # the data ends inside it; an over-subscribed code
        return None
    if not ll[256] or not _kraft(ll, False) or not _kraft(dl, False):
        return None
    return Header(bit, 8 * a + end, 2, final, lit, dist)


def headers(buf, lo: int, hi: int) -> list[int]:
    """Bits in [lo, hi) where a dynamic or stored block header could start: a cheap vectorised filter
    (BTYPE; HLIT and HDIST in range; a complete code-length code; LEN = ~NLEN), ascending. Fixed
    blocks (any 3 bits 01x) are too common a pattern to search for."""
    a, nb = max(0, lo >> 3), max(0, ((hi + 7) >> 3) - max(0, lo >> 3))
    x = np.frombuffer(bytes(buf[a:a + nb + 24]) + bytes(24), np.uint8).astype(np.uint64)
    w = np.zeros(nb + 16, np.uint64)  # w[i]: the 64 bits from byte a + i on
    for k in range(8):
        w |= x[k:nb + 16 + k] << np.uint64(8 * k)
    found = []
    for k in range(8):  # header at bit 8 * (a + i) + k
        s = np.uint64(k)
        lo64 = (w[:nb] >> s) | ((w[8:nb + 8] << np.uint64(64 - k)) if k else 0)  # 64 bits from it
        hi64 = (w[4:nb + 4] >> s) | ((w[12:nb + 12] << np.uint64(64 - k)) if k else 0)  # from 32 bits on

        def f(v, off: int, n: int):
            return (v >> np.uint64(off)) & np.uint64((1 << n) - 1)
        i = np.flatnonzero((f(lo64, 1, 2) == 2) & (f(lo64, 3, 5) <= 29) & (f(lo64, 8, 5) <= 29))
        v, u = lo64[i], hi64[i]
        hclen = f(v, 13, 4).astype(np.int64) + 4
        kraft = np.zeros(len(i), np.int64)
        for j in range(19):
            off = 17 + 3 * j
            ln = (f(v, off, 3) if off + 3 <= 64 else f(u, off - 32, 3)).astype(np.int64)
            kraft += np.where((j < hclen) & (ln > 0), 128 >> ln, 0)
        dyn = i[kraft == 128]
        # stored: BTYPE 00, then LEN and NLEN from the next byte boundary
        q = (k + 3 + 7) >> 3
        st = np.flatnonzero((f(lo64, 1, 2) == 0) & ((f(w[q:nb + q], 0, 16) ^ f(w[q:nb + q], 16, 16)) == 0xFFFF))
        found.append(8 * (a + np.r_[dyn, st]) + k)
    out = np.sort(np.concatenate(found))
    return [int(c) for c in out if lo <= c < hi]


def walk(w: list[int], base: int, pos: int, h: Header, stop: int, meet: dict | None) -> tuple[list[int], str]:
    """Symbol starts from absolute bit `pos` with the block's codes, until `stop`, an end-of-block, an
    invalid code ('bad') or a start already in `meet` (the path joined another)."""
    lit, dist, seen = h.lit, h.dist, []
    while pos < stop:
        if meet is not None and pos in meet:
            return seen + [pos], "met"
        seen.append(pos)
        r = pos - base
        e = lit[(w[r >> 3] >> (r & 7)) & 0x7FFF]
        if not e:
            return seen, "bad"
        sym = e >> 4
        pos += e & 15
        if sym == 256:
            return seen + [pos], "end"
        if sym > 256:
            if sym > 285:
                return seen, "bad"
            pos += LEXT[sym - 257]
            r = pos - base
            e = dist[(w[r >> 3] >> (r & 7)) & 0x7FFF]
            if not e or (e >> 4) >= 30:
                return seen, "bad"
            pos += (e & 15) + DEXT[e >> 4]
    return seen, "more"


def walk_from(buf, h: Header, pos: int, stop: int, meet: dict | None = None) -> tuple[list[int], str]:
    """`walk` from absolute bit `pos` to bit `stop` of `buf` with the codes of header `h`."""
    base = pos & ~7
    return walk(words(buf, base >> 3, (stop >> 3) + 16), base, pos, h, stop, meet)


def converge(buf, h: Header, lost_end: int) -> int | None:
    """The first bit after the loss (which ends at bit `lost_end`) that every parse from the MAXSYM
    offsets after it passes, inside the block of header `h`; None where they do not meet in WALK
    bits, or the block ends first. The true parse resumes at one of those offsets: it passes X."""
    if h.kind == 0 or h.lit is None:
        return None
    base = lost_end & ~7
    w = words(buf, base >> 3, ((lost_end + WALK + MAXSYM) >> 3) + 16)
    stop = min(lost_end + WALK, 8 * len(buf))
    try:
        first, first_how = walk(w, base, lost_end, h, stop, None)
        if first_how == "bad":
            return None  # every path that meets it would fail with it: no common step to prove
        on = {p: i for i, p in enumerate(first)}
        meet = 0
        for off in range(1, MAXSYM):
            path, how = walk(w, base, lost_end + off, h, stop, on)
            if how == "met":
                meet = max(meet, on[path[-1]])
            elif how != "bad":  # a path that fails is not the true one; one that never meets: no proof
                return None
    except IndexError:  # the data ends within the walk
        return None
    # after an end-of-block comes another header, not a symbol: a meeting there proves nothing here
    return first[meet] if meet < len(first) - (first_how == "end") else None


@dataclass
class Decoded:
    """Output of a stream decoded from a resynchronised point, with unknown bytes tracked."""
    out: bytes                     # the output (unknown bytes as 0x00)
    unknown: np.ndarray            # output positions that copy lost bytes
    source: np.ndarray             # for each, the index in the window it copies (0..len(window)-1)
    end: int | None = None         # bytes of the given stream consumed when it ended (None: no end)
    error: bool = False
    marked: int | None = None      # output length at `mark` (decode's argument)


def decode(stream: bytes, window: bytes, known: np.ndarray, limit: int | None = None,
           mark: int | None = None, track: bool = True) -> Decoded:
    """Decode raw deflate `stream` after `window` (the 32 KiB before it; `known` False where a window
    byte was lost), tracking every output byte that copies a lost one. Stops at the stream's end, a
    zlib error or, with `limit`, after that many input bytes. With `mark`, `marked` is the output
    length once the input before stream byte `mark` is decoded (the symbols wholly before it).
    `track=False`: one decoder, no unknowns (whether it decodes, where it ends, how much it gives)."""
    idx = np.arange(len(window))
    win = np.frombuffer(window, np.uint8)
    fills = [np.where(known, win, f).astype(np.uint8).tobytes()
             for f in ((0, 255, idx & 0xFF, idx >> 8) if track else (0,))]
    decs = [zlib.decompressobj(-15, zdict=f) if len(window) else zlib.decompressobj(-15) for f in fills]
    parts, unk, src = [], [], []
    lost = np.flatnonzero(~known)
    # output position of the last lost byte seen (window bytes sit just before output 0)
    n, last_unknown, pos = 0, int(lost[-1]) - len(window) if len(lost) else -WINDOW - 1, 0
    stop = len(stream) if limit is None else min(len(stream), limit)
    marked = None
    while pos < stop:
        piece = stream[pos:min(pos + PIECE, stop, mark if mark is not None and pos < mark else stop)]
        try:
            outs = [d.decompress(piece) for d in decs]
        except zlib.error:
            return Decoded(b"".join(parts), _cat(unk), _cat(src), None, True, marked)
        a = np.frombuffer(outs[0], np.uint8)
        if len(decs) > 1:
            diff = np.flatnonzero(a != np.frombuffer(outs[1], np.uint8))
            if len(diff):
                unk.append(diff + n)
                src.append(np.frombuffer(outs[2], np.uint8)[diff].astype(np.int64)
                           | np.frombuffer(outs[3], np.uint8)[diff].astype(np.int64) << 8)
                last_unknown = n + int(diff[-1])
            if n + len(a) - last_unknown > WINDOW:
                decs = decs[:1]  # nothing from here on can reach a lost byte
        parts.append(outs[0])
        n += len(a)
        pos += len(piece)
        if pos == mark:
            marked = n
        if decs[0].eof:
            return Decoded(b"".join(parts), _cat(unk), _cat(src), pos - len(decs[0].unused_data), marked=marked)
    return Decoded(b"".join(parts), _cat(unk), _cat(src), marked=marked)


def _cat(xs: list) -> np.ndarray:
    return np.concatenate(xs) if xs else np.zeros(0, np.int64)
