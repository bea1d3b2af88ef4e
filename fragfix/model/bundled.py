"""The model shipped inside the package, used when no --model is given."""
from __future__ import annotations

from pathlib import Path

from fragfix.errors import InvalidInput

BUNDLED = Path(__file__).parent / "weights" / "default.safetensors"


def resolve_model_path(path: Path | str | None) -> Path:
    if path is not None:
        return Path(path)
    if not BUNDLED.is_file():
        raise InvalidInput("no --model given and this install has no bundled model; "
                           "train one with `fragfix train` and pass --model CHECKPOINT")
    return BUNDLED
