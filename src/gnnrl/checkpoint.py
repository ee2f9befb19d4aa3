"""Resumable runs: one guard for reading a run's checkpoint back (used by `train`, `search` and `compress`).

A resume must continue the same run: the checkpoint stores the run's settings and the identity of what it
depends on (model, a hash of its weights, data), and a resume with anything different is refused, naming the
keys that differ — never a silent mix of two runs.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import GnnrlError


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys ({'a': {'b': 1}} → {'a.b': 1})."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(saved: dict[str, Any], now: dict[str, Any], limit: int = 6,
                defaults: dict[str, Any] | None = None) -> str:
    """'key: old → new, …' for the dotted keys whose values differ ('' when none do).

    With `defaults`, a key that `saved` lacks is no difference while `now` holds the value in `defaults`: a setting
    added by a newer gnnrl, at the value that does what the older one did.
    """
    a, b = flatten(saved), flatten(now)
    d = flatten(defaults or {})
    keys = sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not (k not in a and k in d and b.get(k) == d[k]))
    shown = ", ".join(f"{k}: {_short(a.get(k))} → {_short(b.get(k))}" for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _short(value: Any) -> str:
    """repr, with long hashes cut to 12 characters (a reader compares their starts)."""
    if isinstance(value, str) and len(value) > 20 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12] + "…")
    return repr(value)


def load_for_resume(path: Path | None, config: dict[str, Any], map_location: Any = None,
                    identity: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                    view: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The checkpoint at `path` (weights_only), refusing a missing or unreadable file, other settings or inputs
    (`defaults`: what settings added later did before, see `differences`; `view`: the part of both settings that
    is compared, e.g. what the run's method reads)."""
    if path is None or not path.is_file():
        raise GnnrlError(f"--resume given but there is no checkpoint at {path}; start without --resume")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise GnnrlError(f"{path} is unreadable ({type(e).__name__}); it was not written by this gnnrl or is "
                         "damaged. Start over with --overwrite (or in another --out)") from e
    if not isinstance(saved, dict) or "config" not in saved:
        raise GnnrlError(f"{path} is not a gnnrl checkpoint; start over with --overwrite (or in another --out)")
    view = view or (lambda c: c)
    diff = differences(view(saved["config"]), view(config), defaults=defaults)
    if diff:
        raise GnnrlError(f"{path} was made with other settings ({diff}); resume with those, or start a new run")
    if identity is not None:
        diff = differences(saved.get("identity") or {}, identity)
        if diff:
            raise GnnrlError(f"{path} was made with other inputs ({diff}); resume with the same model, weights and "
                             "data, or start a new run")
    return saved
