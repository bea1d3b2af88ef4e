"""Rendering of `fragfix evaluate` results: the rich table, coloured hex samples, the plot and
byte pictures (matplotlib is an optional extra: `pip install 'fragfix[plot]'`)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import InvalidInput

STYLE = {"damaged": "bold red", "fixed": "bold green", "broken": "bold magenta", "still": "bold yellow"}


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


def _classify(o: int, d: int, r: int) -> str | None:
    if d != o:
        return "fixed" if r == o else "still"
    return "broken" if r != o else None


def sample_texts(sample: dict, width: int = 32) -> list[Text]:
    """Three hex lines per row of bytes: original, damaged (red), repaired (green fixed,
    magenta broken, yellow still wrong), over the 64-byte window around the first damage."""
    o, d, r = sample["original"], sample["damaged"], sample["repaired"]
    first = next(i for i in range(len(o)) if o[i] != d[i])
    start = max(0, min(first - width // 2, len(o) - 2 * width)) // width * width
    out = [Text(f"{sample['noise']} {sample['level']:g} — fragment {sample['index']}", style="bold")]
    for row in range(start, min(start + 2 * width, len(o)), width):
        for label, seq in (("original", o), ("damaged ", d), ("repaired", r)):
            line = Text(f"{row:04x} {label} ")
            for i in range(row, min(row + width, len(o))):
                kind = _classify(o[i], d[i], r[i])
                style = None
                if label == "damaged " and d[i] != o[i]:
                    style = STYLE["damaged"]
                elif label == "repaired" and kind in ("fixed", "broken", "still"):
                    style = STYLE[kind]
                line.append(f"{seq[i]:02x} ", style=style)
            out.append(line)
    return out


def draw_samples(samples: list[dict], console: Console) -> None:
    if not samples:
        return
    legend = Text("legend: ")
    for k, s in STYLE.items():
        legend.append(k + "  ", style=s)
    console.print(legend)
    for s in samples:
        for line in sample_texts(s):
            console.print(line, soft_wrap=True)


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise InvalidInput("pictures need matplotlib: pip install 'fragfix[plot]'") from None


def save_samples(samples: list[dict], folder: Path, batch, pictures: bool = True) -> list[Path]:
    """Hex text for every sample, and a PNG (bytes as pixels) when matplotlib is installed, staged in
    `batch` (an atomic.Batch). The CLI checked the folder before the run (new, empty, or --force)."""
    from .atomic import atomic_write
    batch.mkdir(folder)
    written = []
    for s in samples:
        stem = f"{s['noise']}_{s['level']:g}_{s['index']}"
        text = "\n".join(t.plain for t in sample_texts(s)) + "\n"
        with atomic_write(folder / f"{stem}.txt", force=True, batch=batch) as f:
            f.write(text.encode())
        written.append(folder / f"{stem}.txt")
    try:
        plt = _plt() if pictures else None
    except InvalidInput:
        plt = None
    if plt is not None:
        import numpy as np
        for s in samples:
            stem = f"{s['noise']}_{s['level']:g}_{s['index']}"
            fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
            for ax, key in zip(axes, ("original", "damaged", "repaired")):
                ax.imshow(np.array(s[key], dtype=np.uint8).reshape(16, 32), cmap="gray", vmin=0, vmax=255)
                ax.set_title(key)
                ax.axis("off")
            fig.suptitle(f"{s['noise']} {s['level']:g}: fragment {s['index']} (16 x 32 bytes as pixels)")
            try:
                with atomic_write(folder / f"{stem}.png", force=True, batch=batch) as f:
                    fig.savefig(f, format="png", dpi=80)
            finally:
                plt.close(fig)
            written.append(folder / f"{stem}.png")
    return written


def save_plot(result: dict, path: Path, batch=None) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    rows = result["rows"]
    groups = list(dict.fromkeys(r.get("data", "") for r in rows))
    kinds = list(dict.fromkeys((g, r["noise"]) for g in groups for r in rows if r.get("data", "") == g))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for mi, m in enumerate(models):
        for ki, (g, kind) in enumerate(kinds):  # one colour per data and noise kind, one line style per model
            pts = sorted((r["level"], r["ber_after"]) for r in rows
                         if r["model"] == m and r["noise"] == kind and r.get("data", "") == g)
            style = ":" if m.startswith("none") else ["-", "--", "-.", (0, (5, 1))][(mi - 1) % 4]
            label = f"{short(m)} / {g + ' ' if len(groups) > 1 else ''}{kind}"
            ax.plot([p[0] for p in pts], [max(p[1], 1e-6) for p in pts], linestyle=style, marker="o",
                    color=f"C{ki % 10}", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise level")
    ax.set_ylabel("byte error rate after repair")
    ax.set_title("fragfix evaluate (dotted: do nothing)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    from .atomic import atomic_write
    try:
        with atomic_write(Path(path), force=True, batch=batch) as f:  # the CLI checked --force before the run
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
