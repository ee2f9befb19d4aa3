"""Id maps: int64 tensors shaped like an activation (batch 1) that hold each element's channel id (or -1).

Channel rules run layout ops on id maps directly, so concat offsets, shuffles and flatten → linear blocks come
out of the ops themselves. These helpers are what rules share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

NO_CHANNEL = -1


class Ids:
    """An id map, wrapped so that rules can tell it from a constant tensor of the model."""

    __slots__ = ("t",)

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def vector(t: torch.Tensor, dim: int) -> np.ndarray | None:
    """The ids along `dim` if the map is constant along every other dim, else None."""
    dim = dim % t.dim()
    moved = t.movedim(dim, 0).reshape(t.shape[dim], -1)
    v = moved[:, 0]
    return v.numpy().copy() if bool((moved == v[:, None]).all()) else None


def varies(t: torch.Tensor, dim: int) -> bool:
    """True when the ids change along `dim` (the dim carries channels)."""
    return t.shape[dim] > 1 and bool((t != t.narrow(dim, 0, 1)).any())


def broadcast(ids: np.ndarray, shape: tuple[int, ...], dim: int = 1) -> Ids:
    """An id map of `shape` holding `ids` along `dim` (constant along the other dims)."""
    view = [1] * len(shape)
    view[dim % len(shape)] = len(ids)
    return Ids(torch.from_numpy(ids).view(view).expand(shape).contiguous())


def tensors(tree: Any) -> list[torch.Tensor]:
    """All id maps inside nested args (lists, tuples, dicts)."""
    return [x.t for x in flat(tree) if isinstance(x, Ids)]


def flat(tree: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts."""
    if isinstance(tree, (list, tuple)):
        return [y for x in tree for y in flat(x)]
    if isinstance(tree, dict):
        return [y for x in tree.values() for y in flat(x)]
    return [tree]


def raw(tree: Any) -> Any:
    """Replace id maps by their tensors, and constant tensors by channel-free maps, so an op can run on them."""
    if isinstance(tree, Ids):
        return tree.t
    if isinstance(tree, torch.Tensor):  # a constant (e.g. a class token concatenated to the features)
        return torch.full(tree.shape, NO_CHANNEL, dtype=torch.long)
    if isinstance(tree, (list, tuple)):
        return type(tree)(raw(x) for x in tree)
    if isinstance(tree, dict):
        return {k: raw(v) for k, v in tree.items()}
    return tree


def wrap(x: Any) -> Any:
    """Wrap the tensors of an op's result back into id maps."""
    if isinstance(x, torch.Tensor):
        return Ids(x)
    if isinstance(x, (list, tuple)):
        return type(x)(wrap(y) for y in x)
    return x


def kept(units: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Positions of `units` that survive `keep` (positions that are not channels always do)."""
    return np.flatnonzero((units < 0) | keep[np.maximum(units, 0)])
