"""A user's files are sacred: atomic writes, run folders that are never silently reused, early path checks."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import GnnrlError


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (a kill leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a result should get the user's usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def torch_save(obj: Any, path: str | Path) -> Path:
    """Atomically `torch.save` a checkpoint (a kill mid-write never leaves the only checkpoint unreadable)."""
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Check a run folder before any slow work: writable, and not a finished or foreign run unless asked.

    A non-empty folder is refused unless `resume` (continue it) or `overwrite` (start over in it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GnnrlError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        raise GnnrlError(f"--out {out} already holds a run; pass --resume to continue it, --overwrite to start over, "
                         "or choose another --out")
    _check_creatable(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_writable(path: str | Path) -> Path:
    """Fail now, with one line, if the file `path` cannot be created (checked before the slow work that writes it)."""
    path = Path(path)
    if path.is_dir():
        raise GnnrlError(f"{path} is a folder; give a file name")
    _check_creatable(path.parent)
    return path


def _check_creatable(folder: Path) -> None:
    """The folder exists or can be made: no file in the way, and its nearest existing ancestor is writable."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise GnnrlError(f"cannot create {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GnnrlError(f"cannot write in {existing} (permission denied); choose another output path")
