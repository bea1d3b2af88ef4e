"""zlib's Huffman trees: code lengths follow from a block's counts, and in-step candidates are judged by them."""
from __future__ import annotations

import random
import time
import zlib

import numpy as np
import pytest

from fragfix.formats.deflate import instep, trees
from fragfix.formats.deflate.symbols import parse
from test_instep import LONG as _TEXT, _raw

TEXT = _TEXT * 2  # words from a seeded vocabulary (test_instep.py), long enough for several blocks at 4x


def _counts(P, o: np.ndarray, b: int):
    lit, dist = [0] * 286, [0] * 30
    for blk, at in zip(P.lit_block, P.lit_out):
        lit[o[at]] += blk == b
    for blk, n, d in zip(P.m_block, P.m_len, P.m_dist):
        if blk == b:
            lit[285 if n == 258 else 257 + max(i for i, v in enumerate(trees.LBASE) if v <= n)] += 1
            dist[max(i for i, v in enumerate(trees.DBASE) if v <= d)] += 1
    lit[256] += 1
    return lit, dist


@pytest.mark.parametrize("data", [TEXT, random.Random(1).randbytes(20000),
                                  b"ab" * 3000, b"a" * 100 + b"b"])
@pytest.mark.parametrize("level", [1, 4, 6, 9])
def test_zlib_lengths_are_the_code_lengths_zlib_writes(data, level):
    comp = _raw(data, level)
    P = parse(comp, 0)
    o = np.frombuffer(data, np.uint8)
    dynamic = [b for b, lens in enumerate(P.lengths) if lens is not None]
    for b in dynamic:
        lit, dist = _counts(P, o, b)
        stored_lit, stored_dist = P.lengths[b]
        assert trees.zlib_lengths(lit) == (stored_lit + [0] * 286)[:286]
        assert trees.zlib_lengths(dist) == (stored_dist + [0] * 30)[:30]


def test_codes_longer_than_15_bits_are_cut_to_a_complete_code_within_15():
    freq = [1 << i for i in range(20)] + [0] * 10  # a Fibonacci-like skew: the plain tree is 19 deep
    got = trees.zlib_lengths(freq)
    assert max(got) == 15 and sum(2.0 ** -n for n in got if n) == 1.0  # a complete code within 15 bits


def test_a_literal_that_breaks_its_block_is_among_the_few_that_mend_it():
    comp = _raw(TEXT, 6)
    clean = parse(comp, 0)
    o = np.frombuffer(TEXT, np.uint8).astype(np.int64)
    bits, pos, new = instep.literal_flips(clean, o)
    lit, _ = _counts(clean, o, 0)
    for k in range(len(bits)):  # damage: a literal turned into another of the same code length
        damaged = list(lit)
        damaged[o[pos[k]]] -= 1
        damaged[new[k]] += 1
        if clean.lit_block[clean.lit_out.index(pos[k])] or trees.zlib_lengths(damaged) == (clean.lengths[0][0] + [0] * 286)[:286]:
            continue
        b = bytearray(comp)
        b[bits[k] >> 3] ^= 1 << (bits[k] & 7)
        P = parse(bytes(b), 0)
        out = zlib.decompressobj(-15).decompress(bytes(b))
        d = np.frombuffer(out, np.uint8).astype(np.int64)
        lb, lp, ln = instep.literal_flips(P, d)
        db, di, dn = instep.distance_flips(P)
        ok = trees.consistent(P, d, lp, ln, di, dn, time.perf_counter() + 30)
        true = np.flatnonzero(lb == bits[k])
        assert len(true) == 1 and ok[true[0]]
        assert ok.sum() < 0.01 * len(ok)
        edits, order, ranks = instep.solve(P, out, "crc32", zlib.crc32(out), zlib.crc32(TEXT),
                                           until=time.perf_counter() + 30)
        assert int(np.flatnonzero(order == true[0])[0]) < ok.sum()
        # the same judgement for a candidate that was decoded: its changed output bytes mend the tree
        judge = trees.mender(P, d, time.perf_counter() + 30)
        assert judge is not None and judge(np.array([pos[k]]), np.array([o[pos[k]]])) == 1
        assert judge(np.array([pos[k]]), np.array([new[k]])) == 0 and judge(np.array([len(d)]), np.array([0])) == 0
        # the clean stream: putting the damage in breaks a tree that followed
        assert trees.mender(clean, o, time.perf_counter() + 30)(np.array([pos[k]]), np.array([new[k]])) == -1
        return
    pytest.fail("no damage broke a tree")


def test_a_stream_from_another_encoder_is_not_judged():
    rng = random.Random(2)
    data = bytes(rng.choice(b"abcdefghij \n") for _ in range(120_000))  # 16K symbols a block: several blocks
    comp = _raw(data, 6)
    P = parse(comp, 0)
    assert len(P.lengths) >= 2
    for b in (0, 1):  # two blocks whose lengths no zlib count gives: not zlib, so no view at all
        lit, dist = P.lengths[b]
        P.lengths[b] = (lit[::-1], dist)
    o = np.frombuffer(data, np.uint8).astype(np.int64)
    _, lp, ln = instep.literal_flips(P, o)
    _, di, dn = instep.distance_flips(P)
    assert trees.consistent(P, o, lp, ln, di, dn, time.perf_counter() + 30).all()
    assert trees.mender(P, o, time.perf_counter() + 30) is None
