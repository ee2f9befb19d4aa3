"""Spatial ops (pooling, resizing) and reductions: channels pass through unless an op reduces across them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .idmap import Ids, broadcast, varies, vector
from .registry import Call, ChannelPass, Label, register_op


def per_channel(p: ChannelPass, call: Call) -> Any:
    """Spatial ops (pooling, resizing): each output channel carries its input channel's id."""
    x = call.args[0].t
    ids = vector(x, 1) if x.dim() >= 2 else None
    if ids is None:
        return p.opaque(call, [x], f"{call.what} mixes channels")
    return broadcast(ids, call.node.meta["shape"])


def reduces(p: ChannelPass, call: Call) -> Any:
    """mean/sum/amax over dims: fine over spatial dims. Over a dim that holds channels *while the result still
    holds channels* (the paths of a selective-kernel block, stacked then summed: `torch.stack(paths, 1).sum(1)`),
    it is an element-wise op across the slices, and the channels it combines become one unit, as for an add.
    Reducing away every channel (a spatial-attention map's `x.mean(1)`) pins them."""
    args, kwargs = call.args, call.kwargs
    x = args[0].t
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    dims = tuple(range(x.dim())) if dims is None else (dims if isinstance(dims, (list, tuple)) else (dims,))
    reduced = sorted({d % x.dim() for d in dims}, reverse=True)
    lo, hi = x, x
    for d in reduced:
        lo, hi = lo.amin(d, keepdim=True), hi.amax(d, keepdim=True)
    if torch.equal(lo, hi):
        return Ids(lo.reshape(call.node.meta["shape"]))
    if not _couple(p, x, lo):
        return p.opaque(call, [x], f"{call.what} reduces across channels")
    if call.op.name == "sum":
        p.mark_summed([x.narrow(reduced[0], k, 1) for k in range(x.shape[reduced[0]])])
    return Ids(lo.reshape(call.node.meta["shape"]).contiguous())


def normalises_along(p: ChannelPass, call: Call) -> Any:
    """softmax / log_softmax along a dim: every element depends on all the elements along it. Along a dim that holds
    channels while others still do (the path weights of a selective-kernel block), those channels become one
    unit; along the only channel dim (a softmax over channels) they are pinned."""
    x = call.args[0].t
    dim = call.args[1] if len(call.args) > 1 else call.kwargs.get("dim")
    if dim is None or not varies(x, dim % x.dim()):
        return call.args[0]  # along a spatial dim: the channels pass through
    lo = x.amin(dim % x.dim(), keepdim=True)
    if not _couple(p, x, lo):
        return p.opaque(call, [x], f"{call.what} normalises across channels")
    return Ids(lo.expand(x.shape).contiguous())


def _couple(p: ChannelPass, x: torch.Tensor, lo: torch.Tensor) -> bool:
    """Make the channels `x` combines into each element of `lo` (its minimum over the combined dims) one unit, when
    `lo` still holds channels; False (nothing joined) when it holds none, or `x` has elements of no channel."""
    if bool((x < 0).any()) or not any(varies(lo, d) for d in range(lo.dim())):
        return False
    p.union(x.numpy(), lo.expand(x.shape).numpy())
    return True


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
register_op(torch.softmax, F.softmax, ".softmax", torch.log_softmax, F.log_softmax, ".log_softmax", name="softmax",
            channels=normalises_along, label="act_other")
