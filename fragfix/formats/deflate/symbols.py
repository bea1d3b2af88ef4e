"""A deflate stream read symbol by symbol: which bits made which output bytes.

zlib decodes fast but says nothing of structure. To know which edits of the compressed bits keep
a stream in step (a literal's code turned into another literal's code of the same length; a
distance's extra bits changed) and what each does to the output, `parse` reads the stream once in
Python (RFC 1951) and records, per literal, the bit where its code starts, the code (in stream
order), its length and the output position it wrote; per match, its output position, length,
distance and where its distance's extra bits lie; per block, its literal/length decoding table.
Stored blocks count as literals with 8-bit "codes" (every value is another literal).

Only streams that inflate cleanly are parsed (the in-step case); anything malformed raises
`BadStream`. Tables are 2^15-entry lists (sym << 4 | length), so one decode is one lookup.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAXBITS = 15
LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
         163, 195, 227, 258]
LEXT = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
         2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
DEXT = [0, 0, 0, 0] + [k for k in range(1, 14) for _ in (0, 1)]
ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]


class BadStream(ValueError):
    pass


def table(lengths: list[int]) -> list[int]:
    """Canonical Huffman decoding table: entry for every 15-bit peek (stream order) -> sym<<4|len;
    0 where no code matches (an incomplete code)."""
    t = [0] * (1 << MAXBITS)
    count = [0] * (MAXBITS + 1)
    for n in lengths:
        count[n] += 1
    count[0] = 0
    code, nxt = 0, [0] * (MAXBITS + 2)
    for b in range(1, MAXBITS + 1):
        code = (code + count[b - 1]) << 1
        nxt[b] = code
    for sym, n in enumerate(lengths):
        if n:
            c = nxt[n]
            nxt[n] += 1
            r = int(f"{c:0{n}b}"[::-1], 2)  # codes are sent most significant bit first
            t[r::1 << n] = [sym << 4 | n] * (1 << (MAXBITS - n))
    return t


FIXED_LIT = table([8] * 144 + [9] * 112 + [7] * 24 + [8] * 8)
FIXED_DIST = table([5] * 30)


@dataclass
class Parse:
    start: int                       # byte offset of the stream
    lit_bit: list = field(default_factory=list)    # absolute bit offset of each literal's code
    lit_code: list = field(default_factory=list)   # its bits in stream order
    lit_len: list = field(default_factory=list)    # its length in bits (8 for stored bytes)
    lit_out: list = field(default_factory=list)    # output position it wrote
    lit_block: list = field(default_factory=list)  # index into `tables` (-1: stored)
    m_out: list = field(default_factory=list)      # per match: output position, length, distance,
    m_len: list = field(default_factory=list)
    m_dist: list = field(default_factory=list)
    m_xbit: list = field(default_factory=list)     # bit offset of the distance's extra bits
    m_xlen: list = field(default_factory=list)     # how many there are
    m_dbit: list = field(default_factory=list)     # bit offset of the distance's code, the code, its length
    m_dcode: list = field(default_factory=list)
    m_dclen: list = field(default_factory=list)
    m_block: list = field(default_factory=list)
    tables: list = field(default_factory=list)     # literal/length table per block
    dtables: list = field(default_factory=list)    # distance table per block
    lengths: list = field(default_factory=list)    # per block: its (literal/length, distance) code lengths; None: fixed
    cache: dict = field(default_factory=dict)      # views derived from the symbols, computed once (trees.py)
    n: int = 0                                     # output length
    end_bit: int = 0                               # bit just after the final block


def words(buf, start: int, stop: int | None = None) -> list[int]:
    """For each byte i of buf[start:stop], the 64 bits from byte i on (bit k of word i: bit k after 8i)."""
    a = np.frombuffer(bytes(buf[start:stop]) + b"\0" * 8, np.uint8).astype(np.uint64)
    w = np.zeros(len(a) - 7, np.uint64)
    for k in range(8):
        w |= a[k:len(a) - 7 + k] << np.uint64(8 * k)
    return w.tolist()


def parse(buf, start: int, limit_out: int = 1 << 26) -> Parse:
    """Read the raw deflate stream at `start` of `buf`, recording every symbol."""
    try:
        return _parse(buf, start, limit_out)
    except (IndexError, ValueError) as e:  # read past the data; an over-subscribed code
        if isinstance(e, BadStream):
            raise
        raise BadStream(f"malformed stream: {e}") from None


def _parse(buf, start: int, limit_out: int) -> Parse:
    w = words(buf, start)
    nbits = 8 * (len(w))
    P = Parse(start)
    base = 8 * start
    pos, n = 0, 0

    def bits(k: int) -> int:
        return (w[pos >> 3] >> (pos & 7)) & ((1 << k) - 1)
    final = 0
    while not final:
        if pos + 3 > nbits:
            raise BadStream("stream ends inside a block header")
        final, kind = bits(1), (w[pos >> 3] >> ((pos & 7) + 1)) & 3
        pos += 3
        if kind == 0:
            pos = (pos + 7) & ~7
            size, nsize = bits(16), (w[pos >> 3] >> 16) & 0xFFFF
            if size ^ nsize != 0xFFFF or (pos >> 3) + 4 + size > len(w):
                raise BadStream("bad stored block")
            pos += 32
            for i in range(size):
                P.lit_bit.append(base + pos)
                P.lit_code.append(w[pos >> 3] & 0xFF)
                P.lit_len.append(8)
                P.lit_out.append(n + i)
                P.lit_block.append(-1)
                pos += 8
            n += size
            continue
        if kind == 1:
            lit, dist = FIXED_LIT, FIXED_DIST
            P.lengths.append(None)
        elif kind == 2:
            lit, dist, pos, lens = dynamic_header(w, pos)
            P.lengths.append(lens)
        else:
            raise BadStream("reserved block type")
        P.tables.append(lit)
        P.dtables.append(dist)
        blk = len(P.tables) - 1
        while True:
            if pos >= nbits:
                raise BadStream("stream ends inside a block")
            word = w[pos >> 3] >> (pos & 7)
            e = lit[word & 0x7FFF]
            if not e:
                raise BadStream("invalid code")
            sym, k = e >> 4, e & 15
            if sym < 256:
                P.lit_bit.append(base + pos)
                P.lit_code.append(word & ((1 << k) - 1))
                P.lit_len.append(k)
                P.lit_out.append(n)
                P.lit_block.append(blk)
                n += 1
                pos += k
                continue
            pos += k
            if sym == 256:
                break
            sym -= 257
            if sym >= 29:
                raise BadStream("invalid length symbol")
            x = LEXT[sym]
            length = LBASE[sym] + bits(x)
            pos += x
            word = w[pos >> 3] >> (pos & 7)
            e = dist[word & 0x7FFF]
            if not e or (e >> 4) >= 30:
                raise BadStream("invalid distance code")
            P.m_dbit.append(base + pos)
            P.m_dcode.append(word & ((1 << (e & 15)) - 1))
            P.m_dclen.append(e & 15)
            P.m_block.append(blk)
            pos += e & 15
            x = DEXT[e >> 4]
            d = DBASE[e >> 4] + bits(x)
            if d > n:
                raise BadStream("distance too far back")
            P.m_out.append(n)
            P.m_len.append(length)
            P.m_dist.append(d)
            P.m_xbit.append(base + pos)
            P.m_xlen.append(x)
            pos += x
            n += length
            if n > limit_out:
                raise BadStream("output too large to parse")
    P.n, P.end_bit = n, base + pos
    return P


def dynamic_header(w: list[int], pos: int) -> tuple[list[int], list[int], int, tuple[list[int], list[int]]]:
    def bits(k: int) -> int:
        return (w[pos >> 3] >> (pos & 7)) & ((1 << k) - 1)
    hlit, hdist, hclen = bits(5) + 257, ((w[pos >> 3] >> ((pos & 7) + 5)) & 31) + 1, \
        ((w[pos >> 3] >> ((pos & 7) + 10)) & 15) + 4
    pos += 14
    cl = [0] * 19
    for i in range(hclen):
        cl[ORDER[i]] = bits(3)
        pos += 3
    ct = table(cl)
    lengths: list[int] = []
    while len(lengths) < hlit + hdist:
        e = ct[bits(7)]
        if not e:
            raise BadStream("invalid code-length code")
        sym = e >> 4
        pos += e & 15
        if sym < 16:
            lengths.append(sym)
        elif sym == 16:
            if not lengths:
                raise BadStream("repeat with nothing before")
            lengths += [lengths[-1]] * (3 + bits(2))
            pos += 2
        elif sym == 17:
            lengths += [0] * (3 + bits(3))
            pos += 3
        else:
            lengths += [0] * (11 + bits(7))
            pos += 7
    if len(lengths) > hlit + hdist:
        raise BadStream("code lengths overrun")
    lit, dist = lengths[:hlit], lengths[hlit:]
    return table(lit), table(dist), pos, (lit, dist)


def _matches(P: "Parse"):
    s, L, d = (np.asarray(x, np.int64) for x in (P.m_out, P.m_len, P.m_dist))
    return s, L, d
