"""Pictures (the `plot` extra, matplotlib): the repair block map, the evaluate figure, sample fragments.

Every picture goes through the atomic writer (staged in the run's `atomic.Batch`), carries no
timestamp or software tag, and so is the same bytes for the same inputs. Without matplotlib,
`require()` is a one-line error the CLI raises before any work.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fragfix.files.atomic import atomic_write
from fragfix.recovery.blockmap import KINDS, BlockMap
from fragfix.errors import InvalidInput
from fragfix.cli.render_eval import classify, short

# the repair map: colours in the spirit of ddrescueview (red: still bad, green: proven good)
MAP_COLOURS = {"left_unknown": "#d62728", "checksum_fails": "#7b2d8e", "unchecked": "#8c564b", "filled": "#1f77b4",
               "changed": "#ff7f0e", "probable": "#bcbd22", "copied": "#17becf", "verified": "#2ca02c", "untouched": "#e4e4e4"}
MAP_LABELS = {"left_unknown": "unknown, left as read", "checksum_fails": "checksum still fails",
              "unchecked": "decoded, not proven (damage not located)", "filled": "unknown bytes guessed", "changed": "changed (suspected damage)",
              "probable": "probable (checksums pass, not proven)", "copied": "unknown bytes filled from a copy", "verified": "verified by checksum",
              "untouched": "untouched"}
# a sample's bytes: what the repair did to each
BYTE_COLOURS = {"fixed": "#2ca02c", "broken": "#d61fd6", "still wrong": "#ffd000", "clean": "#ffffff"}
UNKNOWN_EDGE = "#1f5fd6"
DAMAGED_EDGE = "#e8202a"
COLUMNS = 64


def require():
    """matplotlib, headless; or a one-line error saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise InvalidInput("pictures need matplotlib: pip install 'fragfix[plot]'") from None


def _save(fig, path: Path, batch, dpi: int) -> None:
    plt = require()
    try:
        with atomic_write(Path(path), force=True, batch=batch) as f:  # the CLI checked --force before the run
            fig.savefig(f, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)


def _grid(m: BlockMap) -> np.ndarray:
    """(rows, COLUMNS) colour indices, -1 past the file's end."""
    cells = m.cells()
    rows = -(-len(cells) // COLUMNS)
    out = np.full(rows * COLUMNS, -1)
    out[:len(cells)] = cells
    return out.reshape(rows, COLUMNS)


def _cmap():
    from matplotlib.colors import ListedColormap
    return ListedColormap(["white"] + [MAP_COLOURS[k] for k in (*KINDS, "untouched")])


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024


def repair_map(summary: dict, path: Path, batch=None, max_files: int = 24, title: str | None = None,
               plain: str = MAP_LABELS["untouched"]) -> None:
    """One block map per repaired file, stacked on one page (a strip each when there are several);
    `title` and `plain` (what a cell where nothing happened means) replace repair's own: salvage
    draws its outputs with them."""
    plt = require()
    from matplotlib.patches import Patch
    files = [f for f in summary["files"] if "blocks" in f][:max_files]
    more = sum("blocks" in f for f in summary["files"]) - len(files)
    cells = 4096 if len(files) == 1 else 8 * COLUMNS
    maps = [BlockMap.from_dict(f["blocks"]).coarsen(cells) for f in files]
    heights = [max(_grid(m).shape[0], 1) for m in maps]
    fig = plt.figure(figsize=(9, 1.6 + sum(0.12 * h + 0.35 for h in heights)), layout="constrained")
    axes = fig.subplots(len(maps), 1, squeeze=False, height_ratios=[h + 3 for h in heights])[:, 0]
    for ax, f, m in zip(axes, files, maps):
        ax.pcolormesh(_grid(m) + 1, cmap=_cmap(), vmin=0, vmax=len(KINDS) + 1, edgecolors="white", linewidth=0.3)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_xticks([])
        rows = _grid(m).shape[0]
        ticks = sorted({0, *range(0, rows, max(1, rows // 4))})
        ax.set_yticks([t + 0.5 for t in ticks], [_human(t * COLUMNS * m.block) for t in ticks], fontsize=7)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(f"{Path(f['input']).name} — {_human(m.size)}, one cell = {_human(m.block)}",
                     fontsize=9, loc="left")
    t = summary["totals"]
    counts = {k: sum(BlockMap.from_dict(f["blocks"]).totals()[k] for f in files) for k in KINDS}
    handles = [Patch(color=MAP_COLOURS[k], label=f"{MAP_LABELS[k]}: {counts[k]:,} bytes") for k in KINDS if counts[k]]
    handles.append(Patch(facecolor=MAP_COLOURS["untouched"], label=plain))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    note = f" (and {more} more files, not drawn)" if more else ""
    head = title or f"fragfix repair: {t['changed']:,} of {t['size']:,} bytes changed"
    fig.suptitle(f"{head}{note}; each cell shows the least reassuring thing that happened in it, rows "
                 "labelled by offset", fontsize=9)
    _save(fig, path, batch, dpi=100)


def evaluate_figure(result: dict, path: Path, batch=None) -> None:
    """Top: one panel per noise kind, error rate after repair against noise level (log-log), the
    damaged baseline grey, a colour per model, a line style per data group. Bottom: the share of
    errors removed as a labelled heatmap (kind x level), one per model and data group."""
    plt = require()
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.lines import Line2D
    rows = result["rows"]
    kinds = list(dict.fromkeys(r["noise"] for r in rows))
    levels = sorted({r["level"] for r in rows})
    groups = list(dict.fromkeys(r.get("data", "") for r in rows))
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if not m.startswith("none")]
    styles = ["-", "--", ":", "-."]
    fig = plt.figure(figsize=(3.2 * max(len(kinds), 2) + 2.2, 7.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1])
    axes = top.subplots(1, len(kinds), sharex=True, sharey=True, squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        for gi, g in enumerate(groups):
            def line(model, **kw):
                pts = sorted((r["level"], r["ber_after"]) for r in rows
                             if r["model"] == model and r["noise"] == kind and r.get("data", "") == g)
                pts = [p for p in pts if p[1] > 0]  # no error at all has no place on a log axis
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=styles[gi % 4], **kw)
            line(next(r["model"] for r in rows if r["model"].startswith("none")), color="0.75", lw=5, zorder=1)
            for mi, m in enumerate(models):
                line(m, color=f"C{mi % 10}", marker="o", ms=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(kind)
        ax.set_xlabel("noise level")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("byte error rate")
    handles = [Line2D([], [], color="0.75", lw=5, label="damaged, no repair")]
    handles += [Line2D([], [], color=f"C{i % 10}", marker="o", label=short(m)) for i, m in enumerate(models)]
    if len(groups) > 1:
        handles += [Line2D([], [], color="black", linestyle=styles[i % 4], label=f"data: {g}") for i, g in enumerate(groups)]
    top.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    top.suptitle("error rate after repair (lower is better)", fontsize=10)
    pairs = [(m, g) for m in models for g in groups]
    hm = bottom.subplots(1, max(len(pairs), 1), squeeze=False)[0]
    norm = TwoSlopeNorm(vmin=-100, vcenter=0, vmax=100)
    for ax, (m, g) in zip(hm, pairs):
        grid = np.full((len(kinds), len(levels)), np.nan)
        label = {}
        for r in rows:
            if r["model"] == m and r.get("data", "") == g:
                at = kinds.index(r["noise"]), levels.index(r["level"])
                if r["ber_before"] > 0:
                    grid[at] = 100 * r["removed"]
                    label[at] = f"{round(grid[at]):.0f}%"
                else:  # nothing to remove: say so, and whether the repair broke clean bytes
                    grid[at] = -50 if r["broken"] else 0
                    label[at] = "no damage" + (f"\n{r['broken']} broken" if r["broken"] else "")
        ax.imshow(np.clip(grid, -100, 100), cmap="RdYlGn", norm=norm, aspect="auto")
        for at, text in label.items():
            ax.text(at[1], at[0], text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(levels)), [f"{lv:g}" for lv in levels])
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xlabel("noise level")
        ax.set_title(f"{short(m)}" + (f" on {g}" if g else ""), fontsize=9)
    bottom.suptitle("errors removed (%; below 0: more bytes broken than fixed)", fontsize=10)
    _save(fig, path, batch, dpi=90)


def byte_status(sample: dict) -> list[str]:
    """Per byte of a sample: fixed, broken, still wrong, or clean (damaged nowhere, changed nowhere)."""
    names = {None: "clean", "still": "still wrong"}
    return [names.get(k, k) for k in map(classify, sample["original"], sample["damaged"], sample["repaired"])]


def sample_picture(sample: dict, path: Path, batch=None) -> None:
    """A fragment as 16 x 32 cells: original, damaged and repaired bytes as grey levels, and what
    the repair did to each byte in colour; bytes given as unknown are outlined in blue."""
    plt = require()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle
    status = byte_status(sample)
    order = list(BYTE_COLOURS)
    codes = np.array([order.index(s) for s in status]).reshape(16, 32)
    unknown = set(sample.get("unknown", []))
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.6), layout="constrained")
    panels = [("original", sample["original"]), ("damaged", sample["damaged"]), ("repaired", sample["repaired"])]
    damaged = [i for i, (o, d) in enumerate(zip(sample["original"], sample["damaged"])) if o != d]
    # where things are, on the grey pictures too: damage in red (blue where it was given as unknown),
    # and on the repaired bytes what the repair did; the colour panel outlines the unknown bytes
    outlines = {1: [(i, UNKNOWN_EDGE if i in unknown else DAMAGED_EDGE) for i in damaged],
                2: [(i, BYTE_COLOURS[k]) for i, k in enumerate(status) if k != "clean"],
                3: [(i, UNKNOWN_EDGE) for i in sorted(unknown)]}
    for ax, (title, seq) in zip(axes.flat, panels):
        ax.imshow(np.array(seq, dtype=np.uint8).reshape(16, 32), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
    axes.flat[3].imshow(codes, cmap=ListedColormap([BYTE_COLOURS[k] for k in order]), vmin=0, vmax=len(order) - 1)
    axes.flat[3].set_title("what the repair did")
    for n, ax in enumerate(axes.flat):
        for i, colour in outlines.get(n, []):
            ax.add_patch(Rectangle((i % 32 - 0.45, i // 32 - 0.45), 0.9, 0.9, fill=False, edgecolor=colour, lw=2))
    for ax in axes.flat:
        ax.set_xticks(np.arange(-0.5, 32, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, 16, 1), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.3)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    n = {k: status.count(k) for k in order}
    handles = [Patch(facecolor=BYTE_COLOURS[k], edgecolor="0.5", label=f"{k}: {n[k]}") for k in order[:3]]
    handles.append(Patch(facecolor="white", edgecolor=UNKNOWN_EDGE, label=f"given as unknown: {len(unknown)}"))
    handles.append(Patch(facecolor="white", edgecolor=DAMAGED_EDGE, label=f"damaged: {len(damaged)}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=5, frameon=False)
    fig.suptitle(f"{sample['noise']} {sample['level']:g}: fragment {sample['index']} (512 bytes, 32 per row)")
    _save(fig, path, batch, dpi=80)


def save_samples(samples: list[dict], folder: Path, batch, pictures: bool = True) -> list[Path]:
    """Hex text for every sample, and its picture when matplotlib is installed, staged in `batch`.
    The CLI checked the folder before the run (new, empty, or --force)."""
    from fragfix.cli.render_eval import sample_texts, MARKS_LEGEND
    batch.mkdir(folder)
    written = []
    try:
        plt = require() if pictures else None
    except InvalidInput:
        plt = None
    for s in samples:
        stem = f"{s['noise']}_{s['level']:g}_{s['index']}"
        text = MARKS_LEGEND + "\n" + "\n".join(t.plain for t in sample_texts(s, marks=True)) + "\n"
        with atomic_write(folder / f"{stem}.txt", force=True, batch=batch) as f:
            f.write(text.encode())
        written.append(folder / f"{stem}.txt")
        if plt is not None:
            sample_picture(s, folder / f"{stem}.png", batch)
            written.append(folder / f"{stem}.png")
    return written
