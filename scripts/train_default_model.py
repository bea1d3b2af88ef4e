"""Train the model bundled with fragfix, reproducibly, on the Python installation it runs in.

    python scripts/train_default_model.py                  # writes fragfix/model/weights/default.safetensors
    python scripts/train_default_model.py --resume         # continue an interrupted run (any session)

Data: the standard library and the files of fragfix's core dependencies (torch, numpy, rich, typer
and theirs, without extras): pinned wheels give the same files on every machine. At most 128 KB of
each file (`MAX_FILE_FRAGMENTS`), compressed files left out. Held out and never trained on: one
file in ten by a hash of its path (the validation set), and every file of one group of kinds
(`--hold-group`, rotating through `sample.HOLD_OUT_GROUPS`; the bundled model holds out group 0)
for measuring data of kinds never seen. Fixed seed, fixed recipe; `--threads` only changes speed.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from fragfix.model.autoencoder import ModelConfig
from fragfix.model.checkpoints import load_model, save_model
from fragfix.training.sample import HOLD_OUT_GROUPS, MAX_FILE_FRAGMENTS, installation_sample, kind_name
from fragfix.training.loop import Epoch, Finished, Started, Step, TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "python scripts/train_default_model.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--steps-per-epoch", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--channels", default="32,48,64,96")
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--hold-group", type=int, default=0, choices=range(len(HOLD_OUT_GROUPS)))
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all); the result is the same")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--out", default=str(ROOT / "fragfix" / "model" / "weights" / "default.safetensors"))
    ap.add_argument("--resume", action="store_true", help="continue the run in --work-dir")
    ap.add_argument("--force", action="store_true", help="replace the checkpoints in --work-dir")
    a = ap.parse_args()
    s = installation_sample(a.hold_group)
    cfg = TrainConfig(data=[str(p) for p in s["train"]], val_data=[str(p) for p in s["held"]],
                      out_dir=a.work_dir, epochs=a.epochs, steps_per_epoch=a.steps_per_epoch,
                      batch_size=a.batch_size, max_val_fragments=1024, seed=0, precision="auto",
                      resume=a.resume, force=a.force, threads=a.threads, device=a.device,
                      max_file_fragments=MAX_FILE_FRAGMENTS,
                      model=ModelConfig(channels=tuple(int(c) for c in a.channels.split(",")), refine=a.refine))
    t0 = time.time()
    for ev in train(cfg):
        if isinstance(ev, Step) and ev.step % 100 == 0:
            print(f"epoch {ev.epoch} step {ev.step}/{ev.steps} loss {ev.loss:.4f} {ev.fragments_per_s:.0f} frag/s",
                  file=sys.stderr, flush=True)
        elif isinstance(ev, (Started, Epoch, Finished)):
            print(ev, file=sys.stderr, flush=True)
    model, info = load_model(Path(a.work_dir) / "autoencoder_best.safetensors")
    info.pop("path", None)
    info.pop("created", None)
    info["recipe"] = RECIPE + " " + " ".join(x for x in sys.argv[1:] if x != "--resume")
    by_kind = Counter(kind_name(p) for p in s["train"])
    info["data"]["description"] = (
        f"Python {sys.version.split()[0]} standard library and {len(s['distributions'])} core distributions: "
        f"{len(s['train'])} train files, {len(s['held'])} held out (sha256(path) % 10 == 0), "
        f"kinds {s['group']} never trained on ({len(s['held_kinds'])} files)")
    info["data"]["distributions"] = [f"{n}=={v}" for n, v in s["distributions"]]
    info["data"]["held_out_kinds"] = list(HOLD_OUT_GROUPS[a.hold_group][1])
    info["data"]["top_kinds"] = dict(by_kind.most_common(12))
    info["data"]["kinds"] = s["kinds"]  # every kind trained on: what "never trained on" is measured against
    info["train_seconds"] = round(time.time() - t0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    save_model(Path(a.out), model, info)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
