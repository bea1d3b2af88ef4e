"""Rich rendering of `fragfix salvage`: what came out of each member or entry, exact, guessed, lost."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SHOWN = 20  # outputs listed one per row; past this, only the ones not whole


def draw_salvage(s: dict, console: Console) -> None:
    t = s["totals"]
    size = max(t["size"], 1)
    console.print(f"{s['format']}: {len(s['outputs']):,} {'entries' if s['format'] == 'zip' else 'streams'}, "
                  f"{t['size']:,} bytes of content in {s['seconds']:.1f} s: {t['exact']:,} exact "
                  f"({100 * t['exact'] / size:.2f}%), {t['unchecked']:,} unchecked, {t['guessed']:,} guessed "
                  f"({t['guessed_sure']:,} with probability ≥ 0.9), {t['lost']:,} lost")
    rows = s["outputs"] if len(s["outputs"]) <= SHOWN else [o for o in s["outputs"] if o["status"] != "verified"]
    if rows:
        table = Table(show_edge=False, pad_edge=False)
        nums = ("size", "exact", "unchecked", "guessed", "lost")
        for col in ("name", "status", *nums, "note"):
            table.add_column(col, justify="right" if col in nums else "left")
        for o in rows[:SHOWN]:
            how = o["stream"].get("how")
            note = o["note"] or (f"decoding resumed {how}" if how in ("in block", "at block") else "")
            table.add_row(escape(o["name"]), o["status"], *(f"{o[k]:,}" for k in nums), escape(note))
        console.print(table)
        if len(rows) > SHOWN:
            console.print(f"... and {len(rows) - SHOWN:,} more not verified (all in --report)")
    if "tar" in s:
        tar = s["tar"]
        console.print(f"tar: {tar['whole']:,} of {tar['members']:,} members whole")
        for name in tar["not_whole"][:5]:
            console.print(f"  not whole: {escape(name)}")
        if len(tar["not_whole"]) > 5:
            console.print(f"  ... and {len(tar['not_whole']) - 5:,} more")
    console.print(f"wrote {escape(s['output'])}")
