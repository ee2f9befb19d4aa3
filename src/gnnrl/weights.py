"""Reading checkpoints safely (no arbitrary unpickling unless asked) and fitting them to a model."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightsError

# Common wrappers around a state dict, and prefixes added by DataParallel / torch.compile.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` file or a torch checkpoint (`weights_only` unless `allow_pickle`) as a flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path} is not a readable safetensors file: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch phrases a blocked global as "Unsupported global" or "unsupported GLOBAL" depending on where it is
        if "unsupported global" not in str(e).lower():
            raise WeightsError(_corrupt(path, e)) from e
        if not allow_pickle:
            raise WeightsError(
                f"{path} contains pickled Python objects ({_unsupported_global(e)}), which can run arbitrary code "
                "when loaded, so it was refused. If you trust its source, pass --allow-pickle "
                "(allow_pickle=True); better, re-save it as a plain state_dict or .safetensors."
            ) from e
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        # for truncated or foreign bytes depending on where they go wrong; all mean "not a readable checkpoint"
        raise WeightsError(_corrupt(path, e)) from e
    return _flatten(obj, path)


def _flatten(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {'state_dict': …}-style containers or a whole pickled module; strip DataParallel prefixes."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (expected a dict of tensors, optionally under 'state_dict')")
    out = {}
    for k, v in obj.items():
        for prefix in _PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def load_weights(model: nn.Module, path: str | Path, allow_pickle: bool = False,
                 candidates: Mapping[str, Callable[..., nn.Module]] | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly; on mismatch raise `WeightsError` naming the first bad keys (and
    which of `candidates`, model constructors by name, the checkpoint does fit)."""
    state = read_state_dict(path, allow_pickle)
    check_finite(state, path)
    problems = mismatches(model, state)
    if problems:
        spec = getattr(model, "gnnrl_spec", None)
        what = f"model {spec.name!r}" if spec else "the model"
        hint = _guess_architecture(state, candidates or {})
        raise WeightsError(f"{path} does not fit {what}: " + "; ".join(problems) + (f". {hint}" if hint else ""))
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(state, strict=True)
    return model


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or ±inf: such a network evaluates to chance and trains to NaN without a word."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise WeightsError(f"{path} holds non-finite values (NaN or inf) in {', '.join(bad[:3])}{more}: the file is "
                           "damaged or was written by a run that diverged; restore it or use another checkpoint")


def mismatches(model: nn.Module, state: dict[str, torch.Tensor], limit: int = 5) -> list[str]:
    """Human-readable differences between a model's state dict and `state` (first `limit` of each kind)."""
    own = model.state_dict()
    # Checkpoints from before PyTorch 0.4.1 lack BN's step counter; it does not affect inference.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    out = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            out.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return out


def _guess_architecture(state: dict[str, torch.Tensor], candidates: Mapping[str, Callable[..., nn.Module]]) -> str:
    """Name the candidate models whose parameter names and shapes match the checkpoint exactly."""
    head = next((v for k, v in state.items() if k.endswith("weight") and v.ndim == 2), None)
    num_classes = int(head.shape[0]) if head is not None else 10
    fits = []
    for name, ctor in candidates.items():
        try:
            if not mismatches(ctor(num_classes=num_classes), state):
                fits.append(name)
        except (TypeError, ValueError, RuntimeError):
            continue
    return f"The checkpoint fits: {', '.join(fits)} (num_classes={num_classes})." if fits else ""


def _corrupt(path: Path, e: BaseException) -> str:
    """One line for an unreadable checkpoint: never torch's advice to load it unsafely."""
    detail = _first_line(e)
    if "weights_only" in detail or len(detail) > 100 or detail.isdigit():
        detail = type(e).__name__
    return (f"{path} is corrupt or not a PyTorch checkpoint ({detail}); check the path, or re-download / re-save it "
            "(.pt, .pth, .th or .safetensors)")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _unsupported_global(e: BaseException) -> str:
    for line in str(e).splitlines():
        low = line.lower()
        if "unsupported global" in low:
            start = low.index("unsupported global") + len("unsupported global")
            return line[start:].lstrip(": ").strip().split(" was not")[0]
    return "custom classes"
