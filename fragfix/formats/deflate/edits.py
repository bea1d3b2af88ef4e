"""The in-step edits of a deflate stream, enumerated from its symbols (instep.py checks them all).

An edit is in step when every symbol it touches still reads as a symbol of the same bit length and
writes as many bytes: a literal's code that turns into another literal's code of the same length,
or a copy whose distance changes (its extra bits, or its code where the new code and its extra bits
take as many bits). Each comes as its bit or byte offset in the stream, what it changes (a literal's
output position, or a match's index) and the new value.
"""
from __future__ import annotations

import numpy as np

from fragfix.formats.deflate.symbols import DBASE, DEXT, Parse, _matches


def literal_flips(P: Parse, out: np.ndarray):
    """One flipped bit in a literal's code that gives another literal's code of the same length:
    (candidate's bit offset, output position, new byte)."""
    lb, lc, ll, lo, blk = (np.asarray(x, np.int64) for x in (P.lit_bit, P.lit_code, P.lit_len, P.lit_out, P.lit_block))
    bits, pos, new = [], [], []
    tabs = [np.asarray(t, np.int64) for t in P.tables]
    for t in range(15):
        sel = np.flatnonzero(t < ll)
        if not len(sel):
            continue
        code = lc[sel] ^ (1 << t)
        nv = np.full(len(sel), -1, np.int64)
        stored = blk[sel] < 0
        nv[stored] = code[stored]
        for b in np.unique(blk[sel][~stored]):
            m = blk[sel] == b
            e = tabs[b][code[m]]
            nv[m] = np.where(((e & 15) == ll[sel][m]) & ((e >> 4) < 256), e >> 4, -1)
        ok = nv >= 0
        bits.append(lb[sel][ok] + t)
        pos.append(lo[sel][ok])
        new.append(nv[ok])
    if not bits:
        e = np.zeros(0, np.int64)
        return e, e, e
    return np.concatenate(bits), np.concatenate(pos), np.concatenate(new)


def distance_flips(P: Parse):
    """One flipped bit in a distance's extra bits, or in its code where that gives another
    distance code of the same length and as many extra bits: (bit offset, match index, new distance)."""
    s, L, d = _matches(P)
    xb, xl = np.asarray(P.m_xbit, np.int64), np.asarray(P.m_xlen, np.int64)
    sym = np.searchsorted(DBASE, d, side="right") - 1
    base = np.asarray(DBASE, np.int64)[sym]
    bits, idx, nd = [], [], []
    for t in range(13):
        sel = np.flatnonzero(t < xl)
        d2 = base[sel] + ((d[sel] - base[sel]) ^ (1 << t))
        ok = d2 <= s[sel]
        bits.append(xb[sel][ok] + t)
        idx.append(sel[ok])
        nd.append(d2[ok])
    db, dc, dl, blk = (np.asarray(x, np.int64) for x in (P.m_dbit, P.m_dcode, P.m_dclen, P.m_block))
    dext = np.asarray(DEXT + [-1, -1], np.int64)
    dbase = np.asarray(DBASE + [0, 0], np.int64)
    for b in np.unique(blk):
        tab = np.asarray(P.dtables[b], np.int64)
        for t in range(15):
            sel = np.flatnonzero((blk == b) & (t < dl))
            e = tab[dc[sel] ^ (1 << t)]
            s2 = np.minimum(e >> 4, 31)
            d2 = dbase[s2] + d[sel] - base[sel]
            ok = (e > 0) & ((e & 15) == dl[sel]) & (dext[s2] == dext[sym[sel]]) & (d2 <= s[sel]) & (d2 >= 1)
            bits.append(db[sel][ok] + t)
            idx.append(sel[ok])
            nd.append(d2[ok])
    return np.concatenate(bits), np.concatenate(idx), np.concatenate(nd)


def distance_bytes(P: Parse):
    """One wrong byte (two bits or more) inside a distance's extra bits: (byte offset, xor, match
    index, new distance). The later tier: it comes after every single flipped bit."""
    s, L, d = _matches(P)
    xb, xl = np.asarray(P.m_xbit, np.int64), np.asarray(P.m_xlen, np.int64)
    base = np.asarray(DBASE, np.int64)[np.searchsorted(DBASE, d, side="right") - 1]
    out = [[], [], [], []]
    for part in range(3):  # the extra bits in their first, second and third byte
        t0 = np.where(part == 0, 0, 8 * part - (xb & 7))
        t1 = np.minimum(8 * (part + 1) - (xb & 7), xl)
        w = t1 - t0
        for width in range(2, 9):
            sel = np.flatnonzero(w == width)
            if not len(sel):
                continue
            v = np.array([x for x in range(1 << width) if bin(x).count("1") >= 2], np.int64)
            e2 = (d[sel] - base[sel])[:, None] ^ (v[None, :] << t0[sel][:, None])
            d2 = base[sel][:, None] + e2
            ok = d2 <= s[sel][:, None]
            i, j = np.nonzero(ok)
            at = xb[sel][i] + t0[sel][i]
            out[0].append(at >> 3)
            out[1].append(v[j] << (at & 7))
            out[2].append(sel[i])
            out[3].append(d2[i, j])
    if not out[0]:
        e = np.zeros(0, np.int64)
        return e, e, e, e
    return tuple(np.concatenate(x) for x in out)


def distance_fields(P: Parse):
    """One wrong byte that touches a distance's code and keeps the copy in step: the code and its
    extra bits read again as another code and extra bits taking as many bits in all (a shorter code
    with one more extra bit, say). Single bits that keep the code's length are distance_flips'.
    Returns (byte offset, xor, match index, new distance), like distance_bytes."""
    s, _, d = _matches(P)
    db, dc, dl, xl, blk = (np.asarray(x, np.int64) for x in (P.m_dbit, P.m_dcode, P.m_dclen, P.m_xlen, P.m_block))
    dbase = np.asarray(DBASE + [0, 0], np.int64)
    dext = np.asarray(DEXT + [99, 99], np.int64)  # codes 30 and 31 never fit
    sym = np.searchsorted(DBASE, d, side="right") - 1
    w = dl + xl
    field = dc | (d - dbase[sym]) << dl  # the code's bits, then the extra bits, in stream order
    v = np.arange(1, 256, dtype=np.int64)
    ones = np.array([bin(x).count("1") for x in v.tolist()])
    out = [[], [], [], []]
    for k in range(3):  # the field's first, second and third byte (a code's 15 bits end by the third)
        q = (db >> 3) + k
        shift = 8 * q - db  # where the byte's bit 0 lies in the field (negative: before it)
        live = np.flatnonzero(8 * q < db + w)
        if not len(live):
            break
        sh = shift[live][:, None]
        m = np.where(sh >= 0, v[None, :] << np.maximum(sh, 0), v[None, :] >> np.maximum(-sh, 0))
        before = (sh < 0) & (v[None, :] & ((1 << np.maximum(-sh, 0)) - 1) != 0)  # a bit before the field
        fits = ~before & (m >> w[live][:, None] == 0) & (m & ((1 << dl[live][:, None]) - 1) != 0)
        i, j = np.nonzero(fits)
        if not len(i):
            continue
        a = live[i]
        f2 = field[a] ^ m[i, j]
        e = np.zeros(len(a), np.int64)
        for b in np.unique(blk[a]):
            sel = blk[a] == b
            e[sel] = np.asarray(P.dtables[b], np.int64)[f2[sel] & 0x7FFF]
        cl, s2 = e & 15, np.minimum(e >> 4, 31)
        nd = dbase[s2] + (f2 >> cl & ((1 << np.maximum(w[a] - cl, 0)) - 1))
        ok = (e > 0) & (cl + dext[s2] == w[a]) & (nd <= s[a]) & (nd >= 1) \
            & ~((ones[j] == 1) & (cl == dl[a]))  # a single bit keeping the code's length: a flip
        out[0].append(q[a][ok])
        out[1].append(v[j][ok])
        out[2].append(a[ok])
        out[3].append(nd[ok])
    if not out[0]:
        e = np.zeros(0, np.int64)
        return e, e, e, e
    return tuple(np.concatenate(x) for x in out)
