"""What a format check finds: one Part per member, entry or chunk, the FormatResult over a file, and
what its claims mean. *Content verified*: every member's, entry's or chunk's data and every field a
checksum or a second copy covers pass their checks, and a wrong repair's chance is <= VERIFIED.
*Verified*: that, and no byte of the file is outside every check. Formats keep metadata that nothing
covers (gzip's MTIME, XFL, OS and names without FHCRC; a zip's attributes, extras and comments, held
once): damage there is invisible, so such a file is content verified at most, and `unchecked` names
those bytes (offset, length, field)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

VERIFIED = 1e-6  # the largest false-pass chance still called verified


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
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # metadata no check covers

    @property
    def false_pass(self) -> float:
        return self.compared * 2.0 ** -self.bits if self.status == "restored" else 0.0


@dataclass
class FormatResult:
    format: str
    parts: list[Part] = field(default_factory=list)
    seconds: float = 0.0
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # the file's own (a zip's end record)
    removed: list[int] = field(default_factory=list)  # bytes a repair takes out (textmode.py: inserted CRs)

    @property
    def edits(self) -> list[tuple[int, int]]:
        """Every part's edits, each once: parts that share bytes (zip entries over one local header)
        find the same edit, and applying it twice would undo it."""
        return sorted({e for p in self.parts for e in p.edits})

    @property
    def false_pass(self) -> float:
        return sum(p.false_pass for p in self.parts)

    def output(self, data: bytes) -> bytes:
        """The repaired file: `data` with the edits applied and the removed bytes taken out."""
        out = apply(data, self.edits)
        return _without(out, self.removed) if self.removed else out

    @property
    def status(self) -> str:
        s = {p.status for p in self.parts}
        if s & {"damaged", "unsupported"}:
            return "damaged"
        if "restored" in s:
            return "restored" if self.false_pass <= VERIFIED else "probable"
        return "intact"

    @property
    def content_verified(self) -> bool:
        """Every check passes on the output, any repair is all but certainly the original, and every
        member's, entry's or chunk's bytes are covered by a check (data after the last member is not)."""
        return self.status in ("intact", "restored") and all(p.status != "unchecked" for p in self.parts)

    @property
    def metadata(self) -> list[tuple[int, int, str]]:
        """Every byte range no check covers: (offset, length, field), in file order."""
        return sorted(self.unchecked + [u for p in self.parts for u in p.unchecked])

    @property
    def verified(self) -> bool:
        """Content verified, and not one byte of the file outside every check."""
        return self.content_verified and not any(n for _, n, _ in self.metadata)

    def to_dict(self) -> dict:
        parts = []
        for p in self.parts:
            d = {f.name: getattr(p, f.name) for f in fields(p)}  # (asdict deep-copies every field: slow)
            d["checks"] = list(p.checks)
            d["edits"] = len(p.edits)
            d["false_pass"] = p.false_pass
            d["unchecked"] = [list(u) for u in p.unchecked]
            parts.append(d)
        meta = self.metadata
        return {"format": self.format, "status": self.status, "verified": self.verified,
                "content_verified": self.content_verified,
                "unchecked_bytes": sum(n for _, n, _ in meta),
                "unchecked_fields": sorted({f for _, n, f in meta if n}),
                "unchecked": [list(u) for u in self.unchecked], "removed": len(self.removed),
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


def xor_into(buf: bytearray, edits: list[tuple[int, int]]) -> None:
    """Apply edits (offset, xor) to `buf` in place: the one way every format writes a repair."""
    for p, x in edits:
        buf[p] ^= x


def apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """`data` with edits (offset, xor) applied; `data` itself is not changed."""
    out = bytearray(data)
    xor_into(out, edits)
    return bytes(out)


def _without(data: bytes, at: list[int]) -> bytes:
    """`data` less the bytes at offsets `at`."""
    keep = np.ones(len(data), bool)
    keep[np.asarray(at, np.int64)] = False
    return np.frombuffer(data, np.uint8)[keep].tobytes()
