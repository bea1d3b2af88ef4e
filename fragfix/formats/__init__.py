"""Verified repair of checksummed formats: gzip, zlib, zip and PNG, proven by their own checks.

A byte model cannot predict compressed bits, but these formats carry their own proof: CRC-32 and
size of every gzip member and zip entry, a CRC-32 over every PNG chunk, Adler-32 at the end of
every zlib stream. Damage is located (the failing chunk, member or entry; where inflate fails or
the output stops looking right), candidate edits are tried nearest the evidence first (deflate.py,
crc.py), and an edit is accepted only when every check passes. The chance that a wrong candidate
passes is about (candidates compared) / 2^(checksum bits); a repair is *verified* when that chance
is at most 1e-6, *probable* otherwise. Without such a candidate the file stays as it was and the
result says which part is damaged and where its first bad byte lies.

`detect(data)` names the format by content (not by file name); `repair(data, ...)` returns a
`FormatResult`. Nothing here knows files, the CLI or the model: the model comes in as a scorer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Callable

VERIFIED = 1e-6  # the largest false-pass chance still called verified
FORMATS = ("gzip", "zlib", "zip", "png")


@dataclass
class Part:
    """One member, entry or chunk: what was checked, and what was found."""
    name: str
    status: str = "intact"           # intact | restored | damaged | unsupported | unchecked (no check covers it)
    checks: list[str] = field(default_factory=list)
    bits: int = 32                   # checksum bits a wrong candidate must match by chance
    candidates: int = 0
    compared: int = 0
    first_bad: int | None = None
    edits: list[tuple[int, int]] = field(default_factory=list)  # (offset, xor)
    note: str = ""

    @property
    def false_pass(self) -> float:
        return self.compared * 2.0 ** -self.bits if self.status == "restored" else 0.0


@dataclass
class FormatResult:
    format: str
    parts: list[Part] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def edits(self) -> list[tuple[int, int]]:
        """Every part's edits, each once: parts that share bytes (zip entries over one local header)
        find the same edit, and applying it twice would undo it."""
        return sorted({e for p in self.parts for e in p.edits})

    @property
    def false_pass(self) -> float:
        return sum(p.false_pass for p in self.parts)

    @property
    def status(self) -> str:
        s = {p.status for p in self.parts}
        if s & {"damaged", "unsupported"}:
            return "damaged"
        if "restored" in s:
            return "restored" if self.false_pass <= VERIFIED else "probable"
        return "intact"

    @property
    def verified(self) -> bool:
        """Every check passes on the output, any repair is all but certainly the original, and every
        byte is covered by a check (data after the last member is not)."""
        return self.status in ("intact", "restored") and all(p.status != "unchecked" for p in self.parts)

    def to_dict(self) -> dict:
        parts = []
        for p in self.parts:
            d = {f.name: getattr(p, f.name) for f in fields(p)}  # (asdict deep-copies every field: slow)
            d["checks"] = list(p.checks)
            d["edits"] = len(p.edits)
            d["false_pass"] = p.false_pass
            parts.append(d)
        return {"format": self.format, "status": self.status, "verified": self.verified,
                "checks": sorted({c for p in self.parts for c in p.checks}),
                "candidates": sum(p.candidates for p in self.parts),
                "compared": sum(p.compared for p in self.parts),
                "false_pass": self.false_pass, "seconds": round(self.seconds, 3), "parts": parts}


def choose(part: Part, pos: int, ok: list) -> Part:
    """A part whose check failed (part.compared > 0) is restored by its one passing candidate;
    none, or several, leave it damaged at `pos`."""
    if not part.compared:
        return part
    if len(ok) == 1:
        part.status, part.edits, part.first_bad = "restored", ok[0], ok[0][0][0]
    else:
        part.status, part.first_bad = "damaged", pos
        part.note = f"{len(ok)} candidate repairs pass every check; none taken" if ok else \
            "no single-byte or two-bit error explains the CRC"
    return part


def detect(data: bytes) -> str | None:
    """The checksummed format this data is, by content; None for anything else."""
    from . import containers, png, zipfmt
    if png.looks_like(data):
        return "png"
    if containers.looks_like_gzip(data):
        return "gzip"
    if zipfmt.looks_like_zip(data):
        return "zip"
    if containers.looks_like_zlib(data):
        return "zlib"
    return None


def repair(data: bytes, fmt: str, budget_s: float = 30.0, scorer: Callable | None = None,
           tick: Callable[[int], None] | None = None) -> FormatResult:
    """Check `data` as `fmt` and search for a verified repair of what fails, within `budget_s`."""
    from . import containers, png, zipfmt
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    run = {"png": png.repair, "gzip": containers.repair_gzip, "zlib": containers.repair_zlib,
           "zip": zipfmt.repair_zip}[fmt]
    result = FormatResult(fmt, run(data, deadline, scorer, tick))
    if result.status in ("restored", "probable"):
        # the proof is the output's own: the edits together must leave a file every check passes
        # (each part checked its edits alone; two parts that disagree about a byte would not)
        again = FormatResult(fmt, run(apply(data, result.edits), t0, None, None))  # no time to search
        if again.status != "intact":
            result.parts.append(Part("the repaired file", "damaged", checks=sorted({c for p in again.parts
                                                                                   for c in p.checks}),
                                     note="the repairs found, applied together, do not pass every check; "
                                          "none taken"))
    result.seconds = time.perf_counter() - t0
    return result


def apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for p, x in edits:
        out[p] ^= x
    return bytes(out)
