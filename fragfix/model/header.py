"""A checkpoint's header, read without torch: what repair needs to know before it loads weights.

A checkpoint is safetensors (8-byte header length, JSON header with every tensor's dtype, shape
and offsets, then the raw tensors) whose metadata names the format and carries the model config
and training facts. Reading and checking the header (size, format, version, every tensor's bounds,
the config) needs only json: a repair that never asks the model (the learned rule) learns the
checkpoint's head and digest here and imports torch only when a model must run (checkpoints.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from pathlib import Path

import numpy as np

from fragfix import __version__
from fragfix.config import ModelConfig
from fragfix.errors import CheckpointError, InvalidInput
from fragfix.files.reading import open_readonly

FORMAT = "fragfix"
FORMAT_VERSION = 1
MAX_HEADER = 16 * 1024 * 1024  # real headers are a few KB; refuse absurd ones before parsing
MAX_FILE = 1 << 30             # fragfix models are a few MB; refuse to read a GB as a checkpoint


def read_checked(path: Path, what: str = "checkpoint") -> bytes:
    """The whole file, if it is a regular file under MAX_FILE: never a FIFO or device that would
    block or stream forever. Opened non-blocking and read to the size checked, never past it."""
    path = Path(path)
    try:
        fd = open_readonly(path)
    except FileNotFoundError:
        raise InvalidInput(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} is a folder, expected a file: {path}") from None
    except PermissionError:
        raise InvalidInput(f"{what} is not readable (permission denied): {path}") from None
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"{what} is a folder, expected a file: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{what} is not a regular file: {path}")
        if st.st_size > MAX_FILE:
            raise CheckpointError(f"not a fragfix {what} (too large, {st.st_size} bytes): {path}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(st.st_size)
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    return data


def parse_safetensors(data: bytes, path: Path, fmt: str = FORMAT) -> tuple[dict, dict]:
    """(tensor entries, metadata) of safetensors bytes whose metadata says `fmt`: header size, JSON,
    format and every tensor's bounds checked. The one header parser (checkpoints and resume state)."""
    what = "checkpoint" if fmt == FORMAT else "resume state"
    if len(data) < 8:
        raise CheckpointError(f"not a fragfix {what} (truncated or empty): {path}")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise CheckpointError(f"not a fragfix {what} (bad or truncated safetensors header): {path}")
    try:
        header = json.loads(data[8:8 + n])
        assert isinstance(header, dict)
    except (ValueError, AssertionError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"not a fragfix {what} (unreadable header): {path}") from None
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"not a fragfix {what} (safetensors without fragfix metadata): {path}")
    body = len(data) - 8 - n
    for name, entry in header.items():
        try:
            lo, hi = entry["data_offsets"]
            ok = isinstance(entry["shape"], list) and 0 <= lo <= hi <= body
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"damaged {what} (tensor {name!r} out of bounds): {path}")
    return header, meta


def read_header(path: Path) -> tuple[dict, dict, bytes]:
    """Checked header of a fragfix checkpoint: (tensor entries, metadata, whole file bytes)."""
    path = Path(path)
    data = read_checked(path)
    header, meta = parse_safetensors(data, path)
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {meta.get('format_version')!r} is not supported "
                              f"by fragfix {__version__} (expects {FORMAT_VERSION}): {path}")
    check_weights(header, data, path)
    return header, meta, data


# safetensors dtypes: bytes per value, and the numpy type a float's finiteness is read with
# (bf16 is the top half of a float32: all exponent bits set is an infinity or a NaN)
_DTYPES = {"F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "<u2"), "I64": (8, None),
           "I32": (4, None), "U8": (1, None), "BOOL": (1, None)}


def check_weights(header: dict, data: bytes, path: Path) -> None:
    """Every tensor of a known dtype, exactly as long as its shape says, and every float finite:
    read with numpy, so a damaged checkpoint is refused even by a run that never loads it."""
    (n,) = struct.unpack("<Q", data[:8])
    body = memoryview(data)[8 + n:]
    for name, e in header.items():
        size, view = _DTYPES.get(e.get("dtype"), (None, None))
        if size is None:
            raise CheckpointError(f"checkpoint tensor {name!r} has an unsupported dtype {e.get('dtype')!r}: {path}")
        lo, hi = e["data_offsets"]
        if not all(isinstance(d, int) and d >= 0 for d in e["shape"]) or hi - lo != math.prod(e["shape"]) * size:
            raise CheckpointError(f"damaged checkpoint (tensor {name!r} does not fit its shape): {path}")
        if view is None:
            continue
        values = np.frombuffer(body[lo:hi], dtype=view)
        finite = (values & 0x7F80) != 0x7F80 if e["dtype"] == "BF16" else np.isfinite(values)
        if not finite.all():
            raise CheckpointError(f"checkpoint holds NaN or infinite weights: {path}")


def meta_json(meta: dict, key: str, path: Path) -> dict:
    try:
        value = json.loads(meta.get(key, "{}"))
        assert isinstance(value, dict)
        return value
    except (ValueError, AssertionError, TypeError, RecursionError):
        raise CheckpointError(f"damaged checkpoint metadata ({key}): {path}") from None


def summary(path: Path) -> dict:
    """{path, head, sha256} of a checkpoint from its checked header and config, without torch: what
    a report records of the model before (or without) loading its weights."""
    path = Path(path)
    _, meta, data = read_header(path)
    try:
        config = ModelConfig(**meta_json(meta, "model_config", path))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint has an incompatible model config ({e}): {path}") from None
    return {"path": str(path), "head": config.head, "sha256": hashlib.sha256(data).hexdigest()}
