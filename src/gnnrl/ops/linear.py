"""Fully connected layers: features on the last dim; a flatten before them gives each channel a block of columns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .idmap import vector
from .registry import Call, ChannelPass, register_op


def creates(p: ChannelPass, call: Call) -> Any:
    """A layer whose outputs are new channels, each computed from all of its input channels (linear, a custom
    conv…); channels lie on the entry's `channel_dim`. The layer is recorded to be cut by its `slice`."""
    x = call.args[0].t
    dim = call.op.channel_dim
    in_ids = vector(x, dim)
    if in_ids is None:
        return p.opaque(call, [x], f"{call.what} {call.node.target}: channels not separable")
    out, out_ids = p.fresh_map(call.node.meta["shape"], str(call.node.target), dim=dim)
    p.record(call, in_ids, out_ids)
    return out


def slice_linear(mod: nn.Module, in_k: torch.Tensor, out_k: torch.Tensor) -> None:
    """Keep the rows of the kept outputs and the columns of the kept inputs."""
    assert isinstance(mod, nn.Linear)
    mod.weight = nn.Parameter(mod.weight.detach()[out_k][:, in_k].contiguous(), requires_grad=mod.weight.requires_grad)
    if mod.bias is not None:
        mod.bias = nn.Parameter(mod.bias.detach()[out_k].contiguous(), requires_grad=mod.bias.requires_grad)
    mod.in_features, mod.out_features = len(in_k), len(out_k)


def linear_cost(mod: nn.Module, in_k: np.ndarray, out_k: np.ndarray, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> tuple[int, int]:
    """in × out multiply-accumulates per row of features."""
    bias = len(out_k) if getattr(mod, "bias", None) is not None else 0
    return math.prod(out_shape[1:-1]) * len(out_k) * len(in_k), len(out_k) * len(in_k) + bias


register_op(nn.Linear, name="linear", channels=creates, label="linear", slice=slice_linear, cost=linear_cost,
            channel_dim=-1, filters=lambda m: m.weight.detach().flatten(1))
