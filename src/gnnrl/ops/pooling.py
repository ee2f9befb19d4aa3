"""Spatial ops (pooling, resizing) and reductions: channels pass through unless an op reduces across them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .idmap import Ids, broadcast, vector
from .registry import Call, ChannelPass, Label, register_op


def per_channel(p: ChannelPass, call: Call) -> Any:
    """Spatial ops (pooling, resizing): each output channel carries its input channel's id."""
    x = call.args[0].t
    ids = vector(x, 1) if x.dim() >= 2 else None
    if ids is None:
        return p.opaque(call, [x], f"{call.what} mixes channels")
    return broadcast(ids, call.node.meta["shape"])


def reduces(p: ChannelPass, call: Call) -> Any:
    """mean/sum/amax over dims: fine over spatial dims; reducing across channels pins them."""
    args, kwargs = call.args, call.kwargs
    x = args[0].t
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    dims = tuple(range(x.dim())) if dims is None else (dims if isinstance(dims, (list, tuple)) else (dims,))
    lo, hi = x, x
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        lo, hi = lo.amin(d, keepdim=True), hi.amax(d, keepdim=True)
    if not torch.equal(lo, hi):
        return p.opaque(call, [x], f"{call.what} reduces across channels")
    return Ids(lo.reshape(call.node.meta["shape"]))


def _first(v: object) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)  # type: ignore[arg-type, call-overload]


def _window(kind: str) -> Any:
    """The label rule of a windowed pool: its kernel and stride, from the module or the call's arguments."""

    def label(m: nn.Module | None, node: fx.Node) -> Label:
        if m is not None:
            return kind, _first(m.kernel_size), _first(m.stride), 1  # type: ignore[arg-type]
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size", 1)
        s = node.args[2] if len(node.args) > 2 else node.kwargs.get("stride", k)
        return kind, _first(k), _first(s or k), 1

    return label


register_op(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, F.max_pool1d, F.max_pool2d, name="maxpool",
            channels=per_channel, label=_window("maxpool"))
register_op(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, F.avg_pool1d, F.avg_pool2d, name="avgpool",
            channels=per_channel, label=_window("avgpool"))
register_op(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
            F.adaptive_max_pool2d, name="global_pool", channels=per_channel, label="global_pool")
register_op(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, F.interpolate, name="resize",
            channels=per_channel)
register_op(torch.mean, ".mean", name="mean", channels=reduces, label="global_pool")
register_op(torch.sum, ".sum", torch.amax, ".amax", name="sum", channels=reduces)
