"""Per-epoch training checkpoints: plain dicts of tensors, read back with weights_only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mpt.errors import MPTError

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none. Never unpickles code."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MPTError(f"checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(state, dict) or "epoch" not in state or "model" not in state:
        raise MPTError(f"checkpoint {path} is not a training checkpoint")
    return state
