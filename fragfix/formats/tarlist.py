"""The members of a tar archive in salvaged content, and whether each came through whole.

A tar (POSIX ustar, GNU, pax) is a chain of 512-byte headers, each followed by its member's data
rounded up to 512 bytes. A header carries its own checksum (the sum of its bytes with the checksum
field read as spaces), so a header is recognised anywhere, and the walk picks up again after a
loss at the next header that checks. A member is *whole* when its header and all its data are
exact; GNU long names ('L') and pax headers ('x', 'g') lend their name to the member after them.
"""
from __future__ import annotations

import numpy as np

BLOCK = 512
MAGIC_AT = 257


def _octal(field: bytes) -> int | None:
    t = field.split(b"\0", 1)[0].strip(b" \0")
    if field[:1] == b"\x80":  # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    try:
        return int(t, 8) if t else 0
    except ValueError:
        return None


def _header(d, p: int) -> dict | None:
    h = bytes(d[p:p + BLOCK])
    if len(h) < BLOCK or not any(h):
        return None
    stored = _octal(h[148:156])
    if stored is None or stored != sum(h[:148]) + 256 + sum(h[156:]):
        return None
    size = _octal(h[124:136])
    if size is None:
        return None
    name = h[:100].split(b"\0", 1)[0]
    if h[MAGIC_AT:MAGIC_AT + 5] == b"ustar" and h[345] != 0:
        name = h[345:500].split(b"\0", 1)[0] + b"/" + name
    return {"name": name, "size": size, "type": h[156:157]}


def looks_like_tar(d) -> bool:
    return _header(d, 0) is not None


def members(d, exact: np.ndarray) -> list[dict]:
    """Every member found in `d` (bytes), with `whole` from `exact` (bool per byte of d)."""
    bad = np.r_[0, np.cumsum(~exact)]  # bad[i]: bytes not exact among the first i
    out, p, long_name = [], 0, None
    n = len(d)
    while p + BLOCK <= n:
        h = _header(d, p)
        if h is None:
            if not any(bytes(d[p:p + BLOCK])) and exact[p:p + BLOCK].all():
                p += BLOCK  # end-of-archive blocks, or padding
                continue
            nxt = _next_header(d, p + 1)
            if nxt is None:
                break
            p = nxt
            continue
        end = min(n, p + BLOCK + h["size"])
        if h["type"] in (b"L", b"x", b"g"):
            body = bytes(d[p + BLOCK:end])
            if h["type"] == b"L":
                long_name = body.split(b"\0", 1)[0]
            elif h["type"] == b"x":
                for rec in body.split(b"\n"):
                    if b" path=" in rec:
                        long_name = rec.split(b" path=", 1)[1]
            p += BLOCK + -(-h["size"] // BLOCK) * BLOCK
            continue
        name = (long_name or h["name"]).decode("utf-8", "replace")
        long_name = None
        out.append({"name": name, "offset": p, "size": h["size"],
                    "whole": bool(end == p + BLOCK + h["size"] and bad[end] - bad[p] == 0)})
        p += BLOCK + -(-h["size"] // BLOCK) * BLOCK
    return out


def _next_header(d, p: int) -> int | None:
    """The next place from p where a header that checks starts (its ustar magic found first)."""
    while True:
        m = d.find(b"ustar", p + MAGIC_AT)
        if m < 0:
            return None
        if _header(d, m - MAGIC_AT) is not None:
            return m - MAGIC_AT
        p = m - MAGIC_AT + 1
