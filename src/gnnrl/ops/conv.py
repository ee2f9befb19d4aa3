"""Convolutions (1-D, 2-D, 3-D; plain, grouped, depthwise; transposed)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .idmap import vector
from .registry import Call, ChannelPass, Label, register_op


def conv_channels(p: ChannelPass, call: Call) -> Any:
    """New output channels; depthwise ties input i to its outputs; a grouped conv's groups keep equally many
    input and output channels (`ChannelPass.balance`), or, where that cannot be met, position k of every group
    goes at once."""
    m = call.module
    assert isinstance(m, nn.modules.conv._ConvNd)
    x = call.args[0].t
    in_ids = vector(x, 1)
    if in_ids is None:
        return p.opaque(call, [x], f"{type(m).__name__} {call.node.target}: channels not separable")
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    if m.transposed and g > 1:
        return p.opaque(call, [x], f"grouped {type(m).__name__} {call.node.target} (kept whole)")
    out, out_ids = p.fresh_map(call.node.meta["shape"], str(call.node.target))
    if g == cin and g > 1:  # depthwise (with multiplier k): input channel i feeds outputs i·k … i·k+k−1
        p.union(np.repeat(in_ids, cout // cin), out_ids)
    elif g > 1:  # grouped: where a side's groups cannot keep equal counts, position k of every group goes at once
        for side, ids, n in (("in", in_ids, cin), ("out", out_ids, cout)):
            if not p.balance(call, ids.reshape(g, -1), side):
                p.union(np.repeat(ids[: n // g], g - 1), ids[n // g :].reshape(g - 1, -1).T.ravel())
    p.record(call, in_ids, out_ids)
    return out


def slice_conv(mod: nn.Module, in_k: torch.Tensor, out_k: torch.Tensor) -> None:
    """Keep the filters of the kept outputs, reading the kept inputs."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    g = mod.groups
    if mod.transposed:  # weight: (in, out, k…)
        w = mod.weight.detach()[in_k][:, out_k]
        new_groups = 1
    elif g == mod.in_channels and g > 1:  # depthwise: one group per kept input channel
        w = mod.weight.detach()[out_k]
        new_groups = len(in_k)
    elif g > 1:  # grouped: every group keeps as many inputs (see conv_channels); each output reads its group's
        per = mod.in_channels // g
        local = (in_k % per).view(g, -1)  # kept in-group positions, one row per group (in_k is ascending)
        out_group = out_k // (mod.out_channels // g)
        w = mod.weight.detach()[out_k]
        w = w[torch.arange(len(out_k))[:, None], local[out_group]]
        new_groups = g
    else:
        w = mod.weight.detach()[out_k][:, in_k]
        new_groups = 1
    mod.weight = nn.Parameter(w.contiguous(), requires_grad=mod.weight.requires_grad)
    if mod.bias is not None:
        mod.bias = nn.Parameter(mod.bias.detach()[out_k].contiguous(), requires_grad=mod.bias.requires_grad)
    mod.in_channels, mod.out_channels, mod.groups = len(in_k), len(out_k), new_groups


def conv_cost(mod: nn.Module, in_k: np.ndarray, out_k: np.ndarray, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...]) -> tuple[int, int]:
    """Each output element reads (inputs per group) × kernel area; a transposed conv, each input element."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    g = mod.groups
    if g == 1:
        fan_in = len(in_k)
    elif g == mod.in_channels:  # depthwise: every output reads one input channel
        fan_in = 1
    else:  # grouped: every group keeps as many inputs as the first
        fan_in = int(np.count_nonzero(in_k < mod.in_channels // g))
    k = math.prod(mod.kernel_size)
    bias = len(out_k) if mod.bias is not None else 0
    if mod.transposed:  # every input element is spread over k outputs of each output channel
        return math.prod(in_shape[2:]) * len(in_k) * len(out_k) * k, len(in_k) * len(out_k) * k + bias
    return math.prod(out_shape[2:]) * len(out_k) * fan_in * k, len(out_k) * fan_in * k + bias


def conv_label(mod: nn.Module | None, node: fx.Node) -> Label:
    """conv1x1/3x3/5x5/7x7, dwconv3x3/5x5 or gconv, with kernel, stride and groups."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    k, s, g = mod.kernel_size[0], mod.stride[0], mod.groups
    if g > 1 and g == mod.in_channels:
        return ("dwconv3x3" if k <= 3 else "dwconv5x5"), k, s, g
    if g > 1:
        return "gconv", k, s, g
    return {1: "conv1x1", 3: "conv3x3", 5: "conv5x5"}.get(k, "conv7x7"), k, s, g


def conv_filters(mod: nn.Module) -> torch.Tensor:
    """One row of weights per output channel."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    w = mod.weight.detach()
    return (w.transpose(0, 1) if mod.transposed else w).flatten(1)


register_op(nn.Conv1d, nn.Conv2d, nn.Conv3d, name="conv", channels=conv_channels, label=conv_label,
            slice=slice_conv, cost=conv_cost, filters=conv_filters)
register_op(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, name="conv_transpose",
            channels=conv_channels, label=conv_label, slice=slice_conv, cost=conv_cost, filters=conv_filters)
