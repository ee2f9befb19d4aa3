"""Where default data, weights and caches live when the user names none."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shared_dir() -> Path | None:
    """The project's `../shared` folder (beside the repository, or beside the working directory), if any."""
    env = os.environ.get("GNNRL_SHARED")
    candidates = [Path(env)] if env else []
    # src/gnnrl -> src -> repo root; `shared` sits beside the repo root.
    candidates += [_PACKAGE_DIR.parents[2] / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def default_data_root() -> Path | None:
    """`GNNRL_DATA`, else `../shared/data`; None when neither exists."""
    env = os.environ.get("GNNRL_DATA")
    if env:
        return Path(env)
    shared = shared_dir()
    return shared / "data" if shared and (shared / "data").is_dir() else None


def default_weights(name: str, dataset: str = "cifar10") -> Path | None:
    """The shared pre-trained checkpoint for a zoo model name (e.g. resnet56), if one exists."""
    roots = [Path(os.environ["GNNRL_MODELS"])] if os.environ.get("GNNRL_MODELS") else []
    shared = shared_dir()
    if shared:
        roots.append(shared / "models")
    for root in roots:
        for candidate in (root / dataset / f"{name}.th", root / f"{name}.th"):
            if candidate.is_file():
                return candidate
    return None


def cache_dir() -> Path:
    """Folder for decoded-dataset caches: `GNNRL_CACHE`, else `$XDG_CACHE_HOME/gnnrl`, else `~/.cache/gnnrl`."""
    env = os.environ.get("GNNRL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gnnrl"
