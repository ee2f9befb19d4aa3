"""Normalisations: per-channel ones are cut with their channels; GroupNorm loses whole groups; LayerNorm pins."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .idmap import vector
from .registry import Call, ChannelPass, register_op


def channelwise(p: ChannelPass, call: Call) -> Any:
    """A layer acting on each channel alone with per-channel parameters (BatchNorm, a custom scale…): the
    output keeps the input's channels; the layer is recorded to be cut by its `slice`."""
    x = call.args[0].t
    ids = vector(x, call.op.channel_dim)
    if ids is None:
        return p.opaque(call, [x], f"{call.what} {call.node.target}: channels not separable")
    p.record(call, ids, ids)
    return call.args[0]


def slice_channelwise(mod: nn.Module, in_k: torch.Tensor, out_k: torch.Tensor) -> None:
    """Keep the per-channel parameters and statistics (weight, bias, running mean/var) of the kept channels."""
    for name in ("weight", "bias"):
        p = getattr(mod, name, None)
        if isinstance(p, nn.Parameter):
            setattr(mod, name, nn.Parameter(p.detach()[out_k].contiguous(), requires_grad=p.requires_grad))
    for name in ("running_mean", "running_var"):
        b = getattr(mod, name, None)
        if b is not None:
            setattr(mod, name, b[out_k].contiguous())
    for attr in ("num_features", "num_channels", "num_parameters"):
        if hasattr(mod, attr):
            setattr(mod, attr, len(out_k))


def channelwise_cost(mod: nn.Module, in_k: np.ndarray, out_k: np.ndarray, in_shape: tuple[int, ...],
                     out_shape: tuple[int, ...]) -> tuple[int, int]:
    """Free in MACs (thop/fvcore convention); one parameter per kept channel for each per-channel tensor."""
    per_channel = sum(1 for name in ("weight", "bias") if isinstance(getattr(mod, name, None), nn.Parameter))
    return 0, per_channel * len(out_k)


def group_norm_channels(p: ChannelPass, call: Call) -> Any:
    """GroupNorm normalises within each of its groups: a group's channels become one unit, removed together, so
    the statistics of the groups that stay are unchanged."""
    m = call.module
    assert isinstance(m, nn.GroupNorm)
    x = call.args[0].t
    ids = vector(x, 1)
    if ids is None:
        return p.opaque(call, [x], f"GroupNorm {call.node.target}: channels not separable")
    rows = ids.reshape(m.num_groups, -1)
    p.union(np.repeat(rows[:, :1], rows.shape[1] - 1, axis=1).ravel(), rows[:, 1:].ravel())
    p.record(call, ids, ids)
    return call.args[0]


def slice_group_norm(mod: nn.Module, in_k: torch.Tensor, out_k: torch.Tensor) -> None:
    """Whole groups go (see group_norm_channels): the group size stays, the group count shrinks."""
    assert isinstance(mod, nn.GroupNorm)
    size = mod.num_channels // mod.num_groups
    assert len(out_k) % size == 0, "GroupNorm channels must be removed in whole groups"
    slice_channelwise(mod, in_k, out_k)
    mod.num_groups = len(out_k) // size


def pins(p: ChannelPass, call: Call) -> Any:
    """Normalisations across channels (LayerNorm over C, LocalResponseNorm): their channels are kept whole."""
    x = call.args[0]
    where = f"{call.what} {call.node.target}" if call.module is not None else call.what
    p.pin(x.t, f"{where} normalises across channels")
    return x


def _gains(m: nn.Module) -> torch.Tensor | None:
    w = getattr(m, "weight", None)
    return w.detach() if isinstance(w, torch.Tensor) else None


register_op(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, name="bn", channels=channelwise, label="bn",
            slice=slice_channelwise, cost=channelwise_cost, gains=_gains)
register_op(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, name="instance_norm", channels=channelwise,
            label="norm_other", slice=slice_channelwise, cost=channelwise_cost, gains=_gains)
register_op(nn.GroupNorm, name="group_norm", channels=group_norm_channels, label="norm_other",
            slice=slice_group_norm, cost=channelwise_cost, gains=_gains)
register_op(nn.LayerNorm, nn.LocalResponseNorm, F.layer_norm, name="norm", channels=pins, label="norm_other")
