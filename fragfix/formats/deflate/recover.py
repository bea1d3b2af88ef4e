"""One deflate stream salvaged past lost bytes: exact before them, exact again after, unknowns between.

`salvage_stream` works in four steps (resync.py holds the bit-level tools):

1. the **prefix**: zlib fed every byte before the loss decodes every symbol that lies wholly in
   them, exactly. Where no map or zero run says where the loss is, inflate's first failure stands
   in (less BACK bytes), and the caller calls nothing of such a stream exact: inflate sees damage
   late, often tens of KB after it begins, or never, and nothing says it is the only damage;
2. the **block** the loss fell in: the nearest header before it that decodes to exactly the
   prefix's last bytes, with no end code before the loss;
3. the **step** after the loss: inside that block by convergence, where the loss's end is known
   and the block's length shows it went on past the loss (`_block_goes_on`); else at a later block
   header that decodes to the stream's end where the container wants it;
4. the **length** of what was lost, from the container's stored size, which places everything
   after the loss at its true offset and lets the prefix's last bytes fill the window (fewer
   unknowns); without it, the rest follows the prefix and its offset is unknown.

A later known loss that the decoding after the step runs into is reported (`reached`): the caller
takes both as one loss and calls again (formats/salvage.py), so no loss is ever decoded as data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fragfix.formats.deflate import resync
from fragfix.formats.deflate.trace import STEP, trace

BACK = 1024           # bytes before inflate's first failure whose output is not called exact
SEARCH = 1 << 21      # bits searched at a time for a header
HEAD_REACH = 1 << 21  # bits before the loss searched for the damaged block's header (256 KiB)
AHEAD_REACH = 1 << 23  # bits after the loss searched for a later block header (1 MiB)
EXPANSION = 1032      # deflate's largest output per input byte (258 bytes from 2 bits)
CUT_TAIL = 4096       # input bytes before a cut whose output is unchecked (damage there looks like data)


@dataclass
class Stream:
    """A salvaged stream's content: `prefix` exact bytes, `lost` unknown ones (None: how many is not
    known), then `rest` decoded after the step was found, in which `unknown` positions (offsets in
    `rest`) copy lost bytes: `source[i]` is the offset in the content of the lost byte copied (where
    the lost length is unknown, -1 - k for byte k of the 32 KiB window before the step)."""
    prefix: bytes
    lost: int | None = 0
    rest: bytes = b""
    unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end: int | None = None       # byte after the stream in the input (None: it never ended)
    how: str = "intact"          # intact | in block | at block | truncated | lost to the end
    located: str = "given"       # given (a map, zeros) | inferred (inflate's failure)
    loss: tuple[int, int] | None = None  # the input bytes taken as lost
    step_bit: int | None = None  # where decoding resumed
    unsure_from: int | None = None  # offset in `rest` from which another known loss was decoded as data
    reached: tuple[int, int] | None = None  # that loss

    @property
    def size(self) -> int:
        return len(self.prefix) + (self.lost or 0) + len(self.rest)


def salvage_stream(buf, start: int, stop: int, loss: tuple[int, int] | None,
                   total_at: Callable[[int], int | None] | None = None,
                   ends_ok: Callable[[int], bool] | None = None,
                   cut_short: Callable[[int], bool] | None = None, others: tuple = ()) -> Stream:
    """Salvage the raw deflate stream at `start` (input up to `stop`) past `loss` ([a, b) input
    bytes known lost; None: find it). `total_at(end)` gives the stored content length for a stream
    ending at byte `end`; `ends_ok(end)` says whether the container accepts a stream ending there;
    `cut_short(n)`, whether a stream that decodes to the end of the data without ending, `n` bytes of
    output so far, was cut short (else damage decoded as data: garbage in step with nothing);
    `others`, the known losses after this one: from the first that the decoding after the step
    reaches, what is decoded (those lost bytes as if they were data, and all after) is not exact
    (`unsure_from`)."""
    ends_ok = ends_ok or (lambda e: True)
    cut = loss[0] if loss else stop
    tr = trace(buf, start, cut, "crc32")
    located = "given"
    if tr.end is not None and (loss is None or tr.end <= loss[0]) and ends_ok(tr.end):
        return Stream(tr.out, end=tr.end)  # ends before the loss: nothing of it was lost
    if tr.error is not None or tr.end is not None:  # not where the map says, or a false end: find it
        fail = tr.error if tr.error is not None else tr.end
        cut, located = max(start, fail - BACK), "inferred"
        loss = (cut, max(loss[1] if loss else 0, min(stop, fail + STEP)))
        if loss[1] > stop:
            loss = (cut, stop)
    elif loss is None and cut_short is not None and cut_short(len(tr.out)):  # cut short
        # random bytes over a file's end (its trailer among them) decode like data and look like a
        # cut: what the last CUT_TAIL bytes decoded to is not called exact
        k = max(0, stop - CUT_TAIL - start) // STEP
        return Stream(tr.out, None, how="truncated", located="inferred", loss=(stop, stop),
                      unsure_from=tr.outlen[min(k, len(tr.outlen) - 1)])
    elif loss is None:  # decoded to the end without ending where it must: damage somewhere before
        return Stream(tr.out, None, how="lost to the end", located="inferred", loss=(stop, stop))
    k = (cut - start) // STEP
    prefix = tr.out[:tr.outlen[min(k, len(tr.outlen) - 1)]] if located == "inferred" else tr.out
    if located == "inferred":
        cut = start + k * STEP
        loss = (cut, loss[1])
    s = Stream(prefix, None, how="lost to the end", located=located, loss=loss)
    found = _step(buf, start, stop, prefix, loss, located, ends_ok)
    if found is None:
        return s
    how, bit, stream, hb, d = found
    s.how, s.step_bit = how, bit
    # the stream's last bit lies in one of two input bytes: the container's end and size decide
    ends = [e for e in _ends(bit, hb, d.end) if ends_ok(e)] or _ends(bit, hb, d.end)
    span = (bit >> 3) - loss[0] + 64  # input bytes between the prefix and the step: what the lost bytes came from
    lengths = [_lost_length(total_at(e) if total_at else None, len(prefix), len(d.out), span) for e in ends]
    k = next((i for i, n in enumerate(lengths) if n is not None), 0)
    s.end, lost = ends[k], lengths[k]
    window, known = _blank(), np.zeros(resync.WINDOW, bool)
    if lost is not None:  # the window's known part: the prefix's last bytes
        held = np.frombuffer(prefix[-resync.WINDOW:], np.uint8)
        window = np.r_[held, np.zeros(min(lost, resync.WINDOW), np.uint8)][-resync.WINDOW:].tobytes()
        known = np.r_[np.ones(len(held), bool), np.zeros(min(lost, resync.WINDOW), bool)][-resync.WINDOW:]
    later = min((a for a, _ in others if a >= (bit + 7) >> 3), default=None)
    s.reached = next(((a, b) for a, b in others if a == later), None)
    mark = None if later is None else (8 * later - bit + hb) >> 3  # that loss's first byte in `stream`
    d = resync.decode(stream, window, known, mark=mark)
    # lost byte k of the window: at its offset in the content where the lost length is known, else -1 - k
    s.source = len(prefix) + lost - len(window) + d.source if lost is not None else -1 - d.source
    s.lost, s.rest, s.unknown = lost, d.out, d.unknown
    s.unsure_from = d.marked  # None: no later loss, or the stream ended before it
    if d.marked is None:
        s.reached = None
    return s


def _lost_length(total: int | None, before: int, after: int, span: int) -> int | None:
    """The bytes lost, from the stored content length (mod 2^32, as gzip's ISIZE); None where it
    is not known or not a length `span` input bytes could hold (the stored size is not to be trusted)."""
    if total is None or total < 0:
        return None
    lost = (total - before - after) % (1 << 32)
    return lost if lost <= EXPANSION * span else None


def _blank() -> bytes:
    return b"\0" * resync.WINDOW


def _ends(bit: int, hb: int, consumed: int) -> list[int]:
    """The input byte just after a stream decoded from bit `bit` (after `hb` spliced header bits) of
    which zlib consumed `consumed` bytes: its last bit lies in the last byte consumed."""
    lo = (bit - hb + 8 * consumed - 8) // 8 + 1
    hi = (bit - hb + 8 * consumed - 1) // 8 + 1
    return sorted({lo, hi})


def _trial(stream: bytes, ends_ok, bit: int, hb: int):
    """Decode a candidate's stream once, untracked (the window is filled in only once it is taken):
    a cheap first look, then to the end."""
    blank = _blank()
    none = np.zeros(resync.WINDOW, bool)
    if resync.decode(stream, blank, none, limit=resync.TRIAL, track=False).error:
        return None
    d = resync.decode(stream, blank, none, track=False)
    if d.error or d.end is None or not any(ends_ok(e) for e in _ends(bit, hb, d.end)):
        return None
    return d


def _step(buf, start: int, stop: int, prefix: bytes, loss, located: str, ends_ok):
    """Where decoding resumes after the loss: (how, bit, stream from there, spliced header bits,
    its decode with an unknown window), or None."""
    a, b = loss
    if located == "given":
        head, before = _block_of(buf, start, a, prefix) or (None, 0)
        if head is not None and head.kind in (1, 2):
            x = resync.converge(buf, head, 8 * b)
            if x is not None and _block_goes_on(buf, head, before, x, stop, ends_ok):
                stream, hb = resync.spliced(buf, head.at, head.end, x, stop)
                d = _trial(stream, ends_ok, x, hb)
                if d is not None:
                    return "in block", x, stream, hb, d
    for lo in range(8 * b, min(8 * stop, 8 * b + AHEAD_REACH), SEARCH):
        for c in resync.headers(buf, lo, min(lo + SEARCH, 8 * stop)):
            if resync.header_at(buf, c) is None:
                continue
            stream = resync.shifted(buf, c, stop)
            d = _trial(stream, ends_ok, c, 0)
            if d is not None:
                return "at block", c, stream, 0, d
    return None


def _block_goes_on(buf, head, before: int, x: int, stop: int, ends_ok) -> bool:
    """Whether the damaged block's codes are still the ones in force at `x`. Convergence proves the
    step only if the block did not end inside the loss: after its end, the next block's bits read
    with these codes also converge, and where the two blocks' codes are alike (neighbouring blocks
    of one file often are) they even fall back in step with it by the next block, so the stream
    still ends where it must, but the symbols between are wrong. What tells the two apart is the
    block's length: an encoder cuts blocks at a symbol count (zlib: 16,383), so the symbols read in
    this block before the loss (`before`) and after x, together, may not outnumber those of the next
    whole block; two blocks read as one do. A final block ends the stream where the container says."""
    try:
        after, how = resync.walk_from(buf, head, x, 8 * stop)
        if how != "end":
            return False
        end = after[-1]
        if head.final:
            return ends_ok((end + 7) >> 3)
        nxt = resync.header_at(buf, end)
        if nxt is None or nxt.kind != 2:  # what a garbage end code lands on: seldom a dynamic header
            return False
        whole = _symbols(buf, nxt, stop) if not nxt.final else None  # a last block is short: no measure
        if whole is None:
            whole = _previous_block(buf, head)
    except IndexError:
        return False
    return whole is not None and before + len(after) - 1 <= whole


def _symbols(buf, h, stop: int) -> int | None:
    """Symbols in the block of header h (to its end code); None where it does not end."""
    seen, how = resync.walk_from(buf, h, h.end, 8 * stop)
    return len(seen) - 1 if how == "end" else None


def _previous_block(buf, head) -> int | None:
    """Symbols in the block before `head`: the nearest header before it whose symbols end exactly
    where `head` starts."""
    for c in reversed(resync.headers(buf, max(0, head.at - HEAD_REACH), head.at)):
        h = resync.header_at(buf, c)
        if h is None or h.kind != 2 or h.final:
            continue
        seen, how = resync.walk_from(buf, h, h.end, head.at + 1)
        if how == "end" and seen[-1] == head.at:
            return len(seen) - 1
    return None


def _block_of(buf, start: int, a: int, prefix: bytes):
    """The header of the block the loss at byte `a` fell in: the nearest before it whose block
    decodes, with the bytes before it unknown, to exactly the prefix's last bytes; and how many
    symbols it holds before the loss. None where there is none."""
    tail = np.frombuffer(prefix, np.uint8)
    hi = 8 * a
    while hi > max(8 * start, 8 * a - HEAD_REACH):
        lo = max(8 * start, hi - SEARCH)
        for c in reversed(resync.headers(buf, lo, hi) + ([8 * start] if lo == 8 * start else [])):
            h = resync.header_at(buf, c)
            if h is None or h.end > 8 * a:  # a header read partly from lost bits proves nothing
                continue
            # its bits up to byte a, less the last byte's bits that would come from byte a
            d = resync.decode(resync.shifted(buf, c, a)[:(8 * a - c) >> 3], _blank(), np.zeros(resync.WINDOW, bool))
            if d.error or len(d.out) > len(tail) or (d.end is not None and d.end < a - (c >> 3)):
                continue
            if _ends_like(d, tail) and (len(d.out) > 0 or c == 8 * start):
                n = _inside(buf, h, a)
                if n is not None:
                    return h, n
        hi = lo
    return None


def _ends_like(d, tail: np.ndarray) -> bool:
    """Whether the known bytes of decode `d` are the prefix's last bytes, but for the few symbols
    (at most 7 bits' worth: 7 copies of 258 bytes) the prefix decoded from the bits it lacked."""
    got = np.frombuffer(d.out, np.uint8)
    n = len(got)
    ok = np.ones(n, bool)
    ok[d.unknown] = False
    for late in range(0, min(7 * 258, len(tail) - n) + 1):
        want = tail[len(tail) - late - n:len(tail) - late]
        if np.array_equal(got[ok][-64:], want[ok][-64:]) and np.array_equal(got[ok], want[ok]):
            return True
    return False


def _inside(buf, h, a: int) -> int | None:
    """How many symbols the block of header `h` holds before byte `a`, if it runs on past `a` (its
    symbols read to there without an end code: its codes are the ones in force where the loss
    begins); None otherwise."""
    if h.kind == 0:
        return 0 if (h.end >> 3) + h.size > a else None
    try:
        seen, how = resync.walk_from(buf, h, h.end, 8 * a)
    except IndexError:
        return None
    return len(seen) if how == "more" else None
