"""Rich rendering for the CLI: progress bars, summaries and tables. All of it goes to stderr
(or a console the caller chooses); the library never draws anything itself."""
from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn, TransferSpeedColumn, DownloadColumn)
from rich.table import Table


def draw_training(events, console: Console) -> dict | None:
    """Consume `train()` events: a bar per epoch, a line per epoch, a final summary."""
    from fragfix.training.loop import Epoch, Finished, Started, Step
    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} frag/s"),
                        TimeRemainingColumn(), console=console, transient=True)
    task, task_epoch, summary, history = None, None, None, []
    with progress:
        for ev in events:
            if isinstance(ev, Started):
                verb = f"resuming after epoch {ev.start_epoch}" if ev.resumed else "training"
                console.print(f"{verb}: {ev.parameters:,} parameters on {ev.device}; "
                              f"train {ev.train['files']} files / {ev.train['fragments']:,} fragments, "
                              f"validation {ev.val['files']} files / {ev.val['fragments']:,} fragments")
                if ev.val.get("within_file"):
                    console.print(f"[yellow]one training file: validation is its last {ev.val['fragments']:,} "
                                  "fragments, a tail of the same file, not a held-out file (give several files for "
                                  "validation on files never trained on)")
                if ev.train.get("skipped"):
                    console.print(f"[yellow]skipped {ev.train['skipped']} files (empty, short or unreadable)")
                if ev.start_epoch >= ev.epochs:
                    console.print(f"already trained for {ev.start_epoch} epochs; nothing to do")
            elif isinstance(ev, Step):
                if task is None or task_epoch != ev.epoch:
                    if task is not None:
                        progress.remove_task(task)
                    task = progress.add_task("", total=ev.steps, epoch=ev.epoch, loss=ev.loss, rate=0.0)
                    task_epoch = ev.epoch
                progress.update(task, completed=ev.step, loss=ev.loss, rate=ev.fragments_per_s)
            elif isinstance(ev, Epoch):
                if task is not None:
                    progress.remove_task(task)
                    task = None
                star = "  [green]best[/]" if ev.improved else ""
                console.print(f"epoch {ev.epoch}: train loss {ev.train_loss:.4f}  val loss {ev.val_loss:.4f}  "
                              f"{ev.seconds:.1f} s  {ev.fragments_per_s:.0f} frag/s{star}")
                history.append({"epoch": ev.epoch, "train_loss": ev.train_loss, "val_loss": ev.val_loss,
                                "seconds": ev.seconds, "fragments_per_s": ev.fragments_per_s})
            elif isinstance(ev, Finished):
                if ev.stopped_early:
                    console.print("stopped early: validation loss stopped improving")
                console.print(escape(f"best checkpoint: {ev.best_path} (val loss {ev.best_val_loss:.4f})"))
                console.print(escape(f"last checkpoint: {ev.last_path}"))
                summary = {"best": ev.best_path, "last": ev.last_path, "best_val_loss": ev.best_val_loss,
                           "epochs": ev.epochs_run, "stopped_early": ev.stopped_early, "history": history}
    return summary


def draw_info(d: dict, console: Console) -> None:
    t = Table(show_header=False, box=None)
    m = d.get("model", {})
    data = d.get("data", {})
    rows = [("path", d["path"]), ("head", m.get("head")), ("channels", m.get("channels")),
            ("parameters", f"{d['parameters']:,}"), ("file size", f"{d['bytes']:,} bytes"),
            ("epoch", d.get("epoch")), ("val loss", d.get("val_loss")), ("train loss", d.get("train_loss")),
            ("trained on", _data_line(data)), ("created", d.get("created")),
            ("fragfix version", d.get("fragfix_version"))]
    if data.get("train") and data.get("description"):
        rows.append(("data", data["description"]))
    if data.get("held_out_kinds"):
        rows.append(("never trained on", " ".join(data["held_out_kinds"])))
    if data.get("top_kinds"):
        rows.append(("kinds (files)", ", ".join(f"{k} {n:,}" for k, n in data["top_kinds"].items())))
    if data.get("distributions"):
        rows.append(("distributions", " ".join(data["distributions"])))
    if d.get("train_seconds"):
        rows.append(("training time", f"{d['train_seconds'] / 60:.0f} min"))
    if d.get("recipe"):
        rows.append(("recipe", d["recipe"]))
    for k, v in rows:
        if v is not None:
            t.add_row(f"[bold]{k}", escape(str(v)))
    console.print(t)


def _data_line(data: dict) -> str | None:
    tr = data.get("train")
    if not tr:
        return data.get("description")
    va = data.get("val", {})
    return (f"{tr.get('files')} files, {tr.get('fragments'):,} fragments "
            f"(validation {va.get('files', 0)} files, {va.get('fragments', 0):,} fragments)")


def byte_progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def grid_progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _draw_damage(s: dict, console: Console) -> None:
    """What the data itself shows of damage, and why nothing changed where the gate stayed shut."""
    t = s["totals"]
    if not t["size"] or s.get("only_unknown") or "clear_errors" not in t:
        return
    rate = t["clear_errors"] / t["size"]
    if s.get("rule") == "learned":  # the channel's own words: bytes more likely damaged than not
        line = f"damage the data shows: {t['clear_errors']:,} bytes more likely damaged than not ({rate:.3%} of bytes)"
        if not t["clear_errors"] and not t["suspected"]:
            line += ("; no more than clean data shows, so nothing was corrected "
                     "(--clean-rate 0 corrects isolated errors too, at some risk)")
    else:
        line = f"damage the data shows: {t['clear_errors']:,} clear errors ({rate:.3%} of bytes)"
    if s.get("rule") != "learned" and s.get("damage_gate") and rate <= s.get("clean_rate", 0) and not t["suspected"]:
        line += ("; no more than clean data shows, so nothing was corrected "
                 "(--clean-rate 0 corrects isolated errors too, at some risk)")
    console.print(line)


def draw_repair(s: dict, console: Console) -> None:
    t = s["totals"]
    mb = t["size"] / 1e6
    from fragfix.rule.learned import applies
    how = ("by the learned rule (each file's own predictor)" if applies(s.get("rule", ""), s["model"]["head"])
           else f"with {s['model']['head']} model {escape(s['model']['path'])}")
    console.print(f"read {t['size']:,} bytes in {t['fragments']:,} fragments ({mb / max(s['seconds'], 1e-9):.2f} MB/s) {how}")
    console.print(f"changed {t['changed']:,} bytes in {t['fragments_touched']:,} fragments: "
                  f"{t['suspected']:,} suspected corruption, {t['unknown_filled']:,} unknown bytes filled "
                  f"(of {t['unknown_bytes']:,} marked unknown)")
    _draw_damage(s, console)
    if s.get("shard"):
        sh = s["shard"]
        console.print(f"shard {sh['k']}/{sh['n']}: {sh['files']:,} of the files (the other shards' runs repair the rest)")
    if t.get("copied"):
        runs = sum(len(f.get("copies", [])) for f in s["files"])
        console.print(f"{t['copied']:,} unknown bytes in {runs:,} runs filled from copies found elsewhere "
                      "(32 bytes matching on each side; sources in the report)")
    if t.get("format_files"):
        console.print(f"checksummed files: {t['format_files']:,} checked, {t['format_restored']:,} restored "
                      f"(content verified), {t['format_probable']:,} probable, {t['format_damaged']:,} still damaged")
        meta = [f["format"] for f in s["files"] if f.get("format") and f["format"]["unchecked_bytes"]]
        if meta:  # damage there would be invisible: say so rather than call the whole file verified
            fields = sorted({x for fm in meta for x in fm["unchecked_fields"]})
            console.print(escape(f"  {sum(fm['unchecked_bytes'] for fm in meta):,} bytes of metadata in "
                                 f"{len(meta):,} file{'s' * (len(meta) != 1)} lie outside every checksum "
                                 f"({', '.join(fields[:6])}{', …' * (len(fields) > 6)}): taken as read, "
                                 "not verified"))
    for f in s["files"]:
        fm = f.get("format")
        if fm and fm["status"] != "intact":
            bad = [p for p in fm["parts"] if p["status"] != "intact"]
            where = "; ".join(f"{p['name']}: {p['status']}" + (f" at offset {p['first_bad']}" if p["first_bad"]
                              is not None else "") + (f" ({p['note']})" if p["note"] else "") for p in bad[:3])
            console.print(escape(f"  {f['input']}: {fm['format']} {fm['status']} "
                                 f"({fm['candidates']:,} candidates, {fm['seconds']:.1f} s, chance of a wrong repair "
                                 f"passing {fm['false_pass']:.1e}; written {fm['written']}): {where}"))
            sv = fm.get("salvage")
            if sv and sv["content"] and sv["exact"]:
                console.print(escape(f"    `fragfix salvage {f['input']}` can recover {sv['exact']:,} of its "
                                     f"{sv['content']:,} content bytes exactly (more with a ddrescue --mapfile)"))
            elif sv and sv["content"]:  # the stream decodes on past the damage: nothing says where it is
                console.print(escape(f"    `fragfix salvage {f['input']}` decodes {sv['content']:,} content bytes but "
                                     "can call none exact, as nothing locates the damage (a ddrescue --mapfile "
                                     "would)"))
        elif len(s["files"]) > 1:
            console.print(f"  {escape(f['input'])}: {f['totals']['changed']:,} bytes changed")
    empty = sum(bool(f.get("empty")) for f in s["files"])
    if empty:
        console.print(f"{empty:,} empty file{'s' if empty > 1 else ''}: nothing to repair, written empty")
    outs = [f["output"] for f in s["files"] if f["output"]]
    if outs:
        console.print(f"wrote {escape(outs[0])}" if len(outs) == 1 else f"wrote {len(outs)} files")
    setid = [f["output"] for f in s["files"] if f.get("dropped_setid")]
    if setid:
        console.print(escape(f"setuid/setgid bits not carried to {len(setid)} changed output(s): {', '.join(setid[:3])}"))
    if s.get("report"):
        console.print(f"report: {escape(s['report'])}")
    if s.get("plot"):
        console.print(f"block map: {escape(s['plot'])}")
    if s.get("skipped"):
        whys = Counter(k["why"] for k in s["skipped"])
        console.print(escape(f"skipped {len(s['skipped'])} inputs ("
                             + ", ".join(f"{n} {why}" for why, n in whys.items()) + "): "
                             + ", ".join(k["path"] for k in s["skipped"][:3]) + (" …" if len(s["skipped"]) > 3 else "")),
                      style="yellow")
