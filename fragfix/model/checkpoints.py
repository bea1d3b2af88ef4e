"""Checkpoints: safetensors weights with the model config and training facts in the metadata.

Like whisper's checkpoints, a file carries both the config and the state dict and rebuilds its
own model with `ModelConfig(**meta)`. Nothing here unpickles: the header is read and checked
(size, format, config, every tensor's name, dtype and shape) before a byte of weights is loaded.
The resume file beside `…_last` holds optimizer state and RNG state, also as safetensors.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fragfix import __version__
from fragfix.files.atomic import atomic_write_bytes
from fragfix.model.autoencoder import FragmentAutoencoder, ModelConfig
from fragfix.errors import CheckpointError, InvalidInput
from fragfix.model.header import FORMAT, FORMAT_VERSION, meta_json, parse_safetensors, read_checked, read_header

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "U8": torch.uint8, "I32": torch.int32, "F64": torch.float64, "BOOL": torch.bool}


def save_model(path: Path, model: FragmentAutoencoder, info: dict[str, Any]) -> None:
    """Write weights + config + `info` (epoch, losses, data summary …) atomically."""
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
            "model_config": json.dumps(model.config.to_dict()),
            "info": json.dumps({"fragfix_version": __version__,
                                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                **info})}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta), force=True)


def _build(config_json: dict, header: dict, path: Path, prefix: str = "") -> FragmentAutoencoder:
    """The model a checkpoint's config describes, checked to have exactly the header's tensors
    (names, dtypes, shapes) before any weight is read. The config's bounds (config.ModelConfig) cap
    what a hostile file can make us build at ~25 MB. (Not on the meta device: an Embedding built
    there imports torch._dynamo, a second and 70 MB on every run.)"""
    try:
        config = ModelConfig(**config_json)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint has an incompatible model config ({e}): {path}") from None
    model = FragmentAutoencoder(config)
    expected = {prefix + k: v for k, v in model.state_dict().items()}
    mine = {k for k in header if k.startswith(prefix)}
    if mine != set(expected):
        missing = sorted(set(expected) - mine)[:3]
        extra = sorted(mine - set(expected))[:3]
        raise CheckpointError(f"checkpoint tensors do not match its config (missing {missing}, extra {extra}): {path}")
    for name, t in expected.items():
        e = header[name]
        if _DTYPES.get(e.get("dtype")) != t.dtype or list(e["shape"]) != list(t.shape):
            raise CheckpointError(f"checkpoint tensor {name!r} has dtype {e.get('dtype')} shape {e['shape']}, "
                                  f"expected {t.dtype} {list(t.shape)}: {path}")
    return model


def describe(path: Path) -> dict:
    """What a checkpoint is: config, info, parameter count, size. Loads it, so damage shows here too."""
    model, info = load_model(path)
    info.pop("path", None)
    return {"path": str(path), "bytes": Path(path).stat().st_size, "parameters": model.num_parameters(),
            "model": model.config.to_dict(), **info}


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[FragmentAutoencoder, dict]:
    """Rebuild the model a checkpoint describes and load its weights, after checking every tensor."""
    path = Path(path)
    header, meta, data = read_header(path)
    model = _build(meta_json(meta, "model_config", path), header, path)
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own types for corrupt bodies
        raise CheckpointError(f"damaged checkpoint ({e}): {path}") from None
    model.load_state_dict(tensors, strict=True)
    info = meta_json(meta, "info", path)
    info["path"] = str(path)
    info["sha256"] = hashlib.sha256(data).hexdigest()  # of the bytes loaded, not a second read
    return model.to(device).eval(), info


def save_resume(path: Path, model: FragmentAutoencoder, optimizer: torch.optim.Optimizer,
                state: dict[str, Any]) -> None:
    """Weights, optimizer tensors and loop state (epoch, best loss …) in ONE file, so `--resume` never
    mixes an epoch's weights with another epoch's optimizer, whenever an interrupt lands. No pickle."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars = {}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    meta = {"format": FORMAT + "-resume", "model_config": json.dumps(model.config.to_dict()),
            "param_groups": json.dumps(opt["param_groups"]), "scalars": json.dumps(scalars),
            "state": json.dumps(state)}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta), force=True)


def load_resume(path: Path, device: str | torch.device = "cpu") -> tuple[FragmentAutoencoder, dict, dict]:
    """(model with its weights, loop state, optimizer state_dict) from a resume file."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"nothing to resume: {path} not found")
    raw = read_checked(path, "resume state")
    header, meta = parse_safetensors(raw, path, FORMAT + "-resume")
    model = _build(meta_json(meta, "model_config", path), header, path, "model.")
    try:
        tensors = st_load(raw)
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta["scalars"])
        state = json.loads(meta["state"])
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    except Exception:
        raise CheckpointError(f"damaged or incompatible resume state: {path}") from None
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[k] = v
    for key, v in scalars.items():
        pid, k = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[k] = v
    return model.to(device), state, {"state": opt_state, "param_groups": groups}
