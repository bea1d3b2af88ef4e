"""Where and how tensors run: device choice, CPU threads, and mixed precision.

Kept apart from the model so the same rules serve train, repair and evaluate.
"""
from __future__ import annotations

import contextlib
import os

import torch

from fragfix.config import check_count
from fragfix.machine import default_cores
from fragfix.errors import InvalidInput


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> a device that exists here, or a clear error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InvalidInput(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("device cuda was asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidInput(f"device {name} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InvalidInput("device mps was asked for, but MPS is not available here")
    elif dev.type != "cpu":
        raise InvalidInput(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device, precision: str) -> bool:
    """precision 'auto' takes bf16 where the hardware runs it fast (CUDA, CPUs with AVX-512 BF16/AMX)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise InvalidInput(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return precision == "bf16" or cpu_bf16_supported()
    return False


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def set_threads(threads: int | None, world_size: int = 1) -> None:
    """Default: the cores this process may use (default_cores), shared out among local processes (torchrun)."""
    threads = check_count(threads or 0, "--threads")
    if threads == 0:
        threads = max(1, default_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world_size))))
    torch.set_num_threads(threads)


def auto_batch(device: torch.device) -> int:
    """Fragments per model call: enough to keep a GPU busy, small enough for flat CPU memory."""
    return 4096 if device.type == "cuda" else 128  # small CPU batches stay in cache: faster than 512, and less memory
