"""Single-process and torchrun (DistributedDataParallel) training plumbing, in one place.

`setup()` reads torchrun's environment: with WORLD_SIZE > 1 it joins the process group (gloo on
CPU, nccl on CUDA) and shards data with a `DistributedSampler`; otherwise everything is a
plain pass-through, so single-process training stays exactly as it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from fragfix.model.runtime import resolve_device


@dataclass
class Context:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    loader_generator: torch.Generator = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model):
        if not self.distributed:
            return model
        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float, weight: float = 1.0) -> float:
        """Average a per-rank figure over ranks (weighted), so every rank agrees on validation loss."""
        if not self.distributed:
            return value
        t = torch.tensor([value * weight, weight], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return (t[0] / t[1].clamp(min=1e-12)).item()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def setup(device_name: str) -> Context:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(resolve_device(device_name), loader_generator=torch.Generator())
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(device, rank, world, torch.Generator())


def loader(dataset, cfg, ctx: Context):
    """Training batches: shuffled each epoch from a seeded generator (or DistributedSampler)."""
    pin = ctx.device.type == "cuda"
    if ctx.distributed:
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=True)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                          pin_memory=pin, drop_last=True), sampler
    rs = RandomSampler(dataset, generator=ctx.loader_generator)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=rs, num_workers=cfg.workers,
                      pin_memory=pin, drop_last=len(dataset) > cfg.batch_size), None


def val_batches(dataset, cfg, ctx: Context) -> list[torch.Tensor]:
    """The fixed validation fragments, evenly spaced, sharded by rank; kept in memory (small)."""
    n = len(dataset)
    if n == 0:
        return []
    k = min(n, cfg.max_val_fragments)
    idx = [int(i * n / k) for i in range(k)][ctx.rank::ctx.world_size]
    dl = DataLoader(Subset(dataset, idx), batch_size=max(cfg.batch_size, 256), shuffle=False)
    return list(dl)
