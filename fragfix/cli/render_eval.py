"""Rendering of `fragfix evaluate` results on the terminal: the rich table and coloured hex samples
(the pictures are `pictures.py`'s)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text


STYLE = {"damaged": "bold red", "unknown": "bold blue", "fixed": "bold green", "broken": "bold magenta",
         "still": "bold yellow"}


def short(model: str) -> str:
    return model if model.startswith("none") else Path(model).stem


def draw_table(result: dict, console: Console) -> None:
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    groups = list(dict.fromkeys(r.get("data", "") for r in rows))
    t = Table(title=f"error rate after repair (share of errors removed) — {result['settings']['fragments']:,} fragments",
              title_justify="left")
    if len(groups) > 1:
        t.add_column("data")
    t.add_column("noise")
    t.add_column("level", justify="right")
    for m in models:
        t.add_column(short(m), justify="right")
    cells: dict = {}
    for r in rows:
        cells.setdefault((r.get("data", ""), r["noise"], r["level"]), {})[r["model"]] = r
    for (data, noise, level), by_model in cells.items():
        best = min(v["ber_after"] for v in by_model.values())
        line = []
        for m in models:
            r = by_model.get(m)
            if r is None:
                line.append("")
                continue
            s = f"{r['ber_after']:.4%}" + ("" if m.startswith("none") else f" ({r['removed']:+.0%})")
            line.append(f"[bold green]{s}[/]" if r["ber_after"] == best and len(by_model) > 1 else s)
        t.add_row(*([data] if len(groups) > 1 else []), noise, f"{level:g}", *line)
    console.print(t)
    for m in models[1:]:
        for g in groups:
            mine = [r for r in rows if r["model"] == m and r.get("data", "") == g]
            bpb = [r["bits_per_byte"] for r in mine if r["bits_per_byte"] is not None]
            speed = sorted(r["mb_per_s"] for r in mine)[len(mine) // 2]
            extra = f", {sum(bpb) / len(bpb):.2f} bits/byte on clean bytes" if bpb else ""
            on = f" on {g}" if len(groups) > 1 else ""
            console.print(f"{short(m)}{on}: fixed {sum(r['fixed'] for r in mine):,} bytes, "
                          f"broke {sum(r['broken'] for r in mine):,}{extra}, median {speed:.2f} MB/s")
    for g, b in result.get("predictor", {}).items():
        if b["bits_per_byte"] is not None:
            z = "" if b["zstd_bits"] is None else f", zstd -19 {b['zstd_bits']:.2f}"
            console.print(f"the file's own predictor on {g}: {b['bits_per_byte']:.2f} bits/byte on its clean bytes "
                          f"(two-sided); xz -9e {b['xz_bits']:.2f}{z}")


def draw_formats(f: dict, console: Console) -> None:
    """The checksummed-files table: per format and damage, restored bit-exact and verified, content
    verified (other compressed bits), probable, and false verified claims (which must be 0)."""
    t = Table(title=f"checksummed files: {f['files']} per format from held-out text, {f['budget_s']:g} s search "
                    "budget each", title_justify="left")
    for col in ("format", "damage", "restored, verified", "content verified", "probable (right)", "false verified",
                "median s"):
        t.add_column(col, justify="left" if col in ("format", "damage") else "right")
    for r in f["rows"]:
        n = max(r["files"], 1)
        t.add_row(r["format"], r["damage"], f"{r['restored_verified']} ({r['restored_verified'] / n:.0%})",
                  str(r["content_verified"]), f"{r['probable']} ({r['probable_right']})",
                  f"[bold red]{r['false_verified']}[/]" if r["false_verified"] else "0", f"{r['median_s']:.2f}")
    console.print(t)


def classify(o: int, d: int, r: int) -> str | None:
    if d != o:
        return "fixed" if r == o else "still"
    return "broken" if r != o else None


MARKS = {"fixed": "F", "broken": "B", "still": "W"}
MARKS_LEGEND = ("marks under each repaired byte: F fixed, B broken (was clean, now wrong), W still wrong; "
                "lower case: the byte was given as unknown")


def sample_texts(sample: dict, width: int = 32, marks: bool = False) -> list[Text]:
    """Three hex lines per row of bytes: original, damaged (red; blue where given as unknown),
    repaired (green fixed, magenta broken, yellow still wrong; underlined where it was unknown),
    over the 64-byte window around the first damage. `marks` adds a line of letters under each
    repaired line (F, B, W) for plain text, where colour is lost."""
    o, d, r = sample["original"], sample["damaged"], sample["repaired"]
    unknown = set(sample.get("unknown", []))
    first = next(i for i in range(len(o)) if o[i] != d[i] or i in unknown)
    start = max(0, min(first - width // 2, len(o) - 2 * width)) // width * width
    out = [Text(f"{sample['noise']} {sample['level']:g} — fragment {sample['index']}", style="bold")]
    for row in range(start, min(start + 2 * width, len(o)), width):
        cols = range(row, min(row + width, len(o)))
        for label, seq in (("original", o), ("damaged ", d), ("repaired", r)):
            line = Text(f"{row:04x} {label} ")
            for i in cols:
                kind = classify(o[i], d[i], r[i])
                style = None
                if label == "damaged " and (d[i] != o[i] or i in unknown):
                    style = STYLE["unknown"] if i in unknown else STYLE["damaged"]
                elif label == "repaired" and kind in ("fixed", "broken", "still"):
                    style = STYLE[kind] + (" underline" if i in unknown else "")
                line.append(f"{seq[i]:02x} ", style=style)
            out.append(line)
        if marks:
            letters = [MARKS.get(classify(o[i], d[i], r[i]), " ") for i in cols]
            line = "".join((c.lower() if i in unknown else c) + "  " for c, i in zip(letters, cols)).rstrip()
            out.append(Text(" " * 14 + line if line else ""))
    return out


def draw_samples(samples: list[dict], console: Console) -> None:
    if not samples:
        return
    legend = Text("legend: ")
    for k, s in STYLE.items():
        legend.append({"still": "still wrong", "unknown": "given as unknown"}.get(k, k) + "  ", style=s)
    console.print(legend)
    for s in samples:
        for line in sample_texts(s):
            console.print(line, soft_wrap=True)
