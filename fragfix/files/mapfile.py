"""GNU ddrescue mapfiles: parse them strictly, and write them.

Format (from the ddrescue manual): '#' starts a comment, to the end of its line (a whole line,
or after a block, as ddrescue tolerates; comments are free text in any encoding); the first other line is the status line `current_pos current_status [current_pass]`
(the pass is absent before ddrescue 1.20); every later line is a block `pos size status`.
Numbers are C integer literals (0x hex, leading-0 octal, decimal). Block statuses: '+' finished,
'?' non-tried, '*' non-trimmed, '/' non-scraped, '-' bad sector. Blocks are contiguous, ascending
and non-overlapping. Every block that is not '+' is "not known to be good".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fragfix import __version__
from fragfix.errors import InvalidInput, MapfileError

BLOCK_STATUS = set("?*/-+")
LINE_STATUS = set("?*/-FG+")
_INT = re.compile(r"^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")
MAX_MAPFILE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Block:
    pos: int
    size: int
    status: str

    @property
    def end(self) -> int:
        return self.pos + self.size


@dataclass
class Mapfile:
    current_pos: int
    current_status: str
    current_pass: int | None
    blocks: list[Block]

    @property
    def size(self) -> int:
        return self.blocks[-1].end if self.blocks else 0

    def bad_ranges(self) -> list[tuple[int, int]]:
        """Merged [start, end) ranges of every block that is not '+'."""
        out: list[tuple[int, int]] = []
        for b in self.blocks:
            if b.status == "+":
                continue
            if out and out[-1][1] == b.pos:
                out[-1] = (out[-1][0], b.end)
            else:
                out.append((b.pos, b.end))
        return out


def _int(tok: str, where: str) -> int:
    if not _INT.match(tok):
        raise MapfileError(f"{where}: {tok!r} is not a C integer literal")
    return int(tok, 0) if not (len(tok) > 1 and tok[0] == "0" and tok[1] not in "xX") else int(tok, 8)


def parse_mapfile(text: str, name: str = "mapfile") -> Mapfile:
    status_line = None
    blocks: list[Block] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()  # a comment: a whole line, or the end of one (free text)
        if not line:
            continue
        where = f"{name} line {no}"
        if not line.isascii():
            raise MapfileError(f"{where}: not ASCII text outside a comment: {line[:60]!r}")
        toks = line.split()
        if status_line is None:
            if len(toks) not in (2, 3) or toks[1] not in LINE_STATUS:
                raise MapfileError(f"{where}: expected a status line 'pos status [pass]', got {line[:60]!r}")
            status_line = (_int(toks[0], where), toks[1], _int(toks[2], where) if len(toks) == 3 else None)
            continue
        if len(toks) != 3:
            raise MapfileError(f"{where}: expected a block 'pos size status', got {line[:60]!r}")
        pos, size, st = _int(toks[0], where), _int(toks[1], where), toks[2]
        if st not in BLOCK_STATUS:
            raise MapfileError(f"{where}: unknown block status {st!r} (expected one of ? * / - +)")
        if size <= 0:
            raise MapfileError(f"{where}: block size must be positive")
        expected = blocks[-1].end if blocks else 0
        if pos != expected:
            what = "overlaps the previous block" if pos < expected else "leaves a gap after the previous block"
            if not blocks:
                what = "does not start at 0"
            raise MapfileError(f"{where}: block at {pos:#x} {what} (expected {expected:#x})")
        blocks.append(Block(pos, size, st))
    if status_line is None:
        raise MapfileError(f"{name}: no status line, not a ddrescue mapfile")
    if not blocks:
        raise MapfileError(f"{name}: no blocks after the status line")
    return Mapfile(*status_line, blocks)


def read_mapfile(path: Path, file_size: int | None = None) -> Mapfile:
    """Parse a mapfile from disk; with `file_size`, it must describe exactly that many bytes."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"mapfile not found: {path}" if not path.exists() else f"mapfile is not a file: {path}")
    try:
        if path.stat().st_size > MAX_MAPFILE:
            raise MapfileError(f"mapfile is implausibly large: {path}")
        # comments are free text (ddrescue writes the command line there: paths in any encoding);
        # every other character must be ASCII, which parse_mapfile checks line by line
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    except PermissionError:
        raise InvalidInput(f"mapfile is not readable (permission denied): {path}") from None
    m = parse_mapfile(text, path.name)
    if file_size is not None and m.size != file_size:
        raise MapfileError(f"mapfile {path.name} describes {m.size} bytes but the file has {file_size}")
    return m


def format_mapfile(ranges: list[tuple[int, int]], size: int, comment: str = "") -> str:
    """A ddrescue mapfile for `size` bytes: `ranges` marked '-', the rest '+'."""
    return format_blocks([(a, b, "-") for a, b in ranges], size, comment)


def format_blocks(blocks: list[tuple[int, int, str]], size: int, comment: str = "") -> str:
    """A ddrescue mapfile for `size` bytes: each [start, end) of `blocks` (sorted, apart) with its
    status character, the rest '+'."""
    lines = [f"# Mapfile. Created by fragfix {__version__}"]
    if comment:
        lines.append(f"# {comment}")
    lines += ["# current_pos  current_status  current_pass", "0x00000000     +               1",
              "#      pos        size  status"]
    pos = 0
    for start, end, status in blocks:
        if start > pos:
            lines.append(f"0x{pos:08X}  0x{start - pos:08X}  +")
        lines.append(f"0x{start:08X}  0x{end - start:08X}  {status}")
        pos = end
    if pos < size:
        lines.append(f"0x{pos:08X}  0x{size - pos:08X}  +")
    return "\n".join(lines) + "\n"
