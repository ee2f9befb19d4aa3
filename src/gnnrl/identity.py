"""Fingerprints of what a run depends on (weights, architecture, data), so that a resume can check them."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ._version import __version__


def _hash(named: list[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over (name, tensor) pairs: each name, shape, dtype and the raw bytes."""
    h = hashlib.sha256()
    for name, t in named:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state dict (names, shapes, dtypes and bytes, in key order): identifies weights."""
    return _hash(sorted(model.state_dict().items()))


def architecture_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the state dict's names and shapes only: the same for any weights of one (pruned) architecture."""
    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(model.state_dict().items()))
    return hashlib.sha256(text.encode()).hexdigest()


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 over tensors' bytes (e.g. a split's images and labels): identifies data."""
    return _hash([("", t) for t in tensors])


def model_identity(model: nn.Module, with_weights: bool = True) -> dict[str, Any]:
    """Model spec (when built by gnnrl.create; None for pruned modules, which the architecture hash identifies),
    architecture and, optionally, weights fingerprints."""
    spec = getattr(model, "gnnrl_spec", None)
    out: dict[str, Any] = {"spec": asdict(spec) if spec is not None else None,
                           "architecture_sha256": architecture_fingerprint(model), "gnnrl_version": __version__}
    if with_weights:
        out["weights_sha256"] = weights_fingerprint(model)
    return out
