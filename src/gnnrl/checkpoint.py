"""Resumable runs: one guard for reading a run's checkpoint back (used by `train` and `search`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import GnnrlError


def load_for_resume(path: Path | None, config: dict[str, Any], map_location: Any = None) -> dict[str, Any]:
    """The checkpoint at `path` (weights_only), refusing a missing file or one made with other settings."""
    if path is None or not path.is_file():
        raise GnnrlError(f"--resume given but there is no checkpoint at {path}; start without --resume")
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if saved["config"] != config:
        raise GnnrlError(f"{path} was made with other settings ({saved['config']}); resume with those")
    return saved
