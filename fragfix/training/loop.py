"""Training: `TrainConfig` and `train()`, a generator of progress events the CLI draws.

Each step: original fragments -> `NoiseGenerator` -> autoencoder -> loss against the original
(cross-entropy + a damage-detector term for the categorical head, MSE for the sigmoid head).
Validation runs each epoch on fixed seeded noise so epochs compare. Checkpoints: `…_best` when
validation improves, `…_last` plus its resume state every epoch, all written atomically.
Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel; rank 0 alone writes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from fragfix.model.autoencoder import FragmentAutoencoder, encode_input
from fragfix.config import DEFAULT_NOISE, ModelConfig, TrainConfig  # noqa: F401  (re-exported)
from fragfix.files.atomic import check_distinct
from fragfix.model.checkpoints import load_resume, save_model, save_resume
from fragfix.errors import CheckpointError, InvalidInput
from fragfix.training.fragments import FragmentDataset, list_files, split_files
from fragfix.files.jobs import check_apart
from fragfix.training.noise import NoiseGenerator, parse_noise
from fragfix.model.runtime import autocast, set_threads, use_bf16
from fragfix.training import distributed as dist_util



@dataclass
class Started:
    epochs: int
    start_epoch: int
    steps: int
    train: dict
    val: dict
    parameters: int
    device: str
    resumed: bool


@dataclass
class Step:
    epoch: int
    step: int
    steps: int
    loss: float
    fragments_per_s: float


@dataclass
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    improved: bool
    seconds: float
    fragments_per_s: float


@dataclass
class Finished:
    best_path: str
    last_path: str
    best_val_loss: float
    epochs_run: int
    stopped_early: bool


def loss_fn(model, clean: torch.Tensor, noise: NoiseGenerator, unknown_gen: torch.Generator,
            unknown_share: float, clean_share: float = 0.125) -> torch.Tensor:
    """Corrupt clean (B, 512) uint8 fragments and score the reconstruction against them."""
    noisy = noise(clean)
    core = model.module if hasattr(model, "module") else model
    dev = next(core.parameters()).device
    target = clean.to(dev, non_blocking=True)
    if core.config.head == "sigmoid":
        y = model(encode_input(noisy.fragments, None, "sigmoid").to(dev))  # (B, 1, 512)
        return F.mse_loss(y.float().squeeze(1), target.float() / 255)
    # a share of fragments shows its zeroed runs as UNKNOWN, as a mapfile would in repair
    as_unknown = torch.rand(clean.shape[0], 1, generator=unknown_gen) < unknown_share
    unknown = noisy.erased & as_unknown
    damaged = noisy.mask | unknown
    # the 256-way head is the costliest layer: score every damaged position and a sample of clean ones
    sampled = damaged | (torch.rand(clean.shape, generator=unknown_gen) < clean_share)
    at = sampled.nonzero(as_tuple=True)
    x = encode_input(noisy.fragments, unknown, "categorical").to(dev)
    logits, det = model(x, detector=True, at=tuple(t.to(dev) for t in at))  # (K, 256), (B, 512)
    ce = F.cross_entropy(logits.float(), target[at].long(), reduction="none")  # (K,)
    hurt = damaged[at].to(dev)
    # damaged positions are rare; weigh them apart so the model learns to repair, not only to copy
    ce_damaged = (ce * hurt).sum() / hurt.sum().clamp(min=1)
    ce_clean = (ce * ~hurt).sum() / (~hurt).sum().clamp(min=1)
    det_loss = F.binary_cross_entropy_with_logits(det.float(), noisy.mask.to(dev).float())
    return ce_clean + ce_damaged + det_loss


def train(cfg: TrainConfig) -> Iterator[Started | Step | Epoch | Finished]:
    """Train as the config says, yielding progress: Started, a Step per optimizer step (rank 0),
    an Epoch per epoch (checkpoints written), then Finished. The CLI draws them (render.py)."""
    ctx = dist_util.setup(cfg.device)
    set_threads(cfg.threads, ctx.world_size)
    torch.manual_seed(cfg.seed)
    created = not Path(cfg.out_dir).exists()  # a folder this run makes is this run's to take back
    train_set, val_set = _data(cfg, ctx.rank)
    try:
        yield from _run(cfg, ctx, train_set, val_set)
    finally:  # interrupted (or failed) before any checkpoint: no empty folder is left behind
        out = Path(cfg.out_dir)
        if created and ctx.rank == 0 and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _run(cfg: TrainConfig, ctx, train_set, val_set) -> Iterator[Started | Step | Epoch | Finished]:
    bf16 = use_bf16(ctx.device, cfg.precision)
    best_path, last_path, resume_path = cfg.paths()
    model, opt, state = _start(cfg, ctx.device, resume_path)
    wrapped = ctx.wrap(model)
    loader, sampler = dist_util.loader(train_set, cfg, ctx)
    steps = len(loader) if cfg.steps_per_epoch == 0 else min(cfg.steps_per_epoch, len(loader))
    yield Started(cfg.epochs, state["epoch"], steps, train_set.summary(), val_set.summary(),
                  model.num_parameters(), str(ctx.device), cfg.resume)
    tc = {k: v for k, v in cfg.to_dict().items() if k != "model"}
    for key in ("data", "val_data"):  # thousands of paths would bloat every checkpoint's header
        if tc[key] is not None and len(tc[key]) > 20:
            tc[key] = f"{len(tc[key])} paths"
    info_base = {"train_config": tc, "data": {"train": train_set.summary(), "val": val_set.summary()}}
    val_loader = dist_util.val_batches(val_set, cfg, ctx)
    stopped = False
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        train_loss, seen = yield from _epoch(cfg, ctx, model, wrapped, opt, loader, epoch, steps, bf16)
        val_loss = validate(model, val_loader, cfg, ctx.device, bf16, ctx) if len(val_set) else train_loss
        seconds = time.perf_counter() - t0
        improved = val_loss < state["best_val"]
        state.update(epoch=epoch, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state["best_val"] = val_loss
        if ctx.rank == 0:  # best when it improved, then the resume state, then last: an interrupt anywhere resumes
            info = {**info_base, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                    "best_val_loss": state["best_val"]}
            if improved:
                save_model(best_path, model, info)
            save_resume(resume_path, model, opt, state)
            save_model(last_path, model, info)
        yield Epoch(epoch, train_loss, val_loss, improved, seconds, seen / seconds)
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            stopped = True
            break
    ctx.close()
    yield Finished(str(best_path), str(last_path), state["best_val"], state["epoch"], stopped)


def _data(cfg: TrainConfig, rank: int):
    """(train set, validation set), after checking the checkpoint folder: checkpoints never land on
    training files, and existing ones need --resume or --force."""
    files = list_files(cfg.data)
    if not files:
        raise InvalidInput(f"no files found in {', '.join(cfg.data)}")
    val_files = list_files(cfg.val_data) if cfg.val_data is not None else []
    if cfg.val_data is not None:
        train_set, _ = split_files(files, 0.0, cfg.seed, partial="drop", cap=cfg.max_file_fragments)
        val_set = FragmentDataset(val_files, partial="drop", cap=cfg.max_file_fragments)
    else:
        train_set, val_set = split_files(files, cfg.val_fraction, cfg.seed, partial="drop", cap=cfg.max_file_fragments)
    paths = cfg.paths()
    check_distinct(list(paths), [(f, "training data") for f in files + val_files])
    # checkpoints among the training data would be trained on by the next run
    check_apart(Path(cfg.out_dir), [Path(d) for d in list(cfg.data) + list(cfg.val_data or []) if Path(d).is_dir()],
                "data folder")
    there = [p for p in paths if p.exists() or p.is_symlink()]
    if there and not cfg.resume and not cfg.force:
        raise InvalidInput(f"{cfg.out_dir} already holds checkpoints ({', '.join(p.name for p in there)}); "
                           "use --resume to continue them or --force to replace them")
    if rank == 0:
        try:
            Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidInput(f"cannot create checkpoint folder {cfg.out_dir}: {e.strerror}") from None
    return train_set, val_set


def _start(cfg: TrainConfig, device, resume_path: Path):
    """(model, optimizer, loop state): fresh, or from the resume file alone (weights, optimizer and
    loop state of one epoch, never mixed)."""
    state = {"epoch": 0, "best_val": float("inf"), "bad_epochs": 0}
    if cfg.resume:
        model, state, opt_state = load_resume(resume_path, device)
        model.train()
    else:
        model = FragmentAutoencoder(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.resume:
        try:
            opt.load_state_dict(opt_state)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"resume state does not fit its model ({e}): {resume_path}") from None
    return model, opt, state


def _epoch(cfg: TrainConfig, ctx, model, wrapped, opt, loader, epoch: int, steps: int, bf16: bool):
    """One epoch of steps, yielding a Step after each (rank 0); returns (mean loss, fragments seen)."""
    # per-epoch seeds: a resumed run draws the same noise and order as an uninterrupted one
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch * 1009 + ctx.rank)
    noise = NoiseGenerator(parse_noise(cfg.noise), seed=gen, mix="choice")
    ctx.loader_generator.manual_seed(cfg.seed * 7919 + epoch)
    model.train()
    t0, seen, total, i = time.perf_counter(), 0, 0.0, 0
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        set_lr(opt, cfg, (epoch - 1) * steps + i, cfg.epochs * steps)
        with autocast(ctx.device, bf16):
            loss = loss_fn(wrapped, batch, noise, gen, cfg.unknown_share, cfg.clean_share)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        seen += batch.shape[0] * ctx.world_size
        total += loss.item()
        if ctx.rank == 0:
            yield Step(epoch, i + 1, steps, loss.item(), seen / (time.perf_counter() - t0))
    return ctx.mean(total / max(1, min(steps, i + 1))), seen


def set_lr(opt, cfg: TrainConfig, step: int, total: int) -> None:
    """Short linear warm-up, then cosine decay to final_lr (a function of the step, so resume matches)."""
    warm = min(cfg.warmup, max(1, total // 20))
    if step < warm:
        f = (step + 1) / warm
    elif cfg.schedule == "cosine":
        f = cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    else:
        f = 1.0
    for g in opt.param_groups:
        g["lr"] = cfg.lr * f


@torch.no_grad()
def validate(model, batches, cfg: TrainConfig, device, bf16: bool, ctx) -> float:
    """Mean loss over the validation fragments under fixed noise (seeded the same every epoch)."""
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise = NoiseGenerator(parse_noise(cfg.noise), seed=gen, mix="choice")
    total, n = 0.0, 0
    for batch in batches:
        with autocast(device, bf16):
            total += loss_fn(model, batch, noise, gen, cfg.unknown_share, cfg.clean_share).item() * batch.shape[0]
        n += batch.shape[0]
    model.train()
    return ctx.mean(total / max(n, 1), weight=n)

