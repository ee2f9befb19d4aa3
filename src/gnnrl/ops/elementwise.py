"""Binary element-wise ops (residual add, SE-style mul…): the channels they combine become one unit."""

from __future__ import annotations

import operator
from typing import Any

import torch

from .idmap import Ids, varies
from .registry import Call, ChannelPass, register_op


def _combine(p: ChannelPass, call: Call, sums: bool) -> Any:
    """Operands' ids at the same (broadcast) position become one unit; a per-channel constant pins them."""
    operands = [a for a in (*call.args, *call.kwargs.values()) if isinstance(a, (Ids, torch.Tensor))]
    shape = call.node.meta.get("shape")
    if shape is None:
        return call.node.meta.get("value")
    maps = [a.t.expand(shape) for a in operands if isinstance(a, Ids)]
    for const in (a for a in operands if isinstance(a, torch.Tensor) and a.numel() > 1):
        # a constant with one value per channel (e.g. a layer scale) fixes the channel count
        cshape = (1,) * (len(shape) - const.dim()) + tuple(const.shape)
        for m in maps:
            if any(cshape[d] > 1 and varies(m, d) for d in range(len(shape))):
                p.pin(m, f"{call.what} with a constant per-channel tensor")
    if len(maps) > 1 and sums:
        p.mark_summed(maps)
    out = maps[0].clone()
    for m in maps[1:]:
        p.union(out.numpy(), m.numpy())
        out = torch.maximum(out, m)
    return Ids(out.contiguous())


def sums(p: ChannelPass, call: Call) -> Any:
    """add / sub: besides the union, the operands are marked as one residual stream (`ChannelGroup.summed`)."""
    return _combine(p, call, sums=True)


def combines(p: ChannelPass, call: Call) -> Any:
    """mul, div, max, where…: the operands' channels are tied."""
    return _combine(p, call, sums=False)


register_op(operator.add, operator.iadd, torch.add, ".add", ".add_", name="add", channels=sums, label="add")
register_op(operator.sub, operator.isub, torch.sub, ".sub", ".sub_", name="sub", channels=sums)
register_op(operator.mul, operator.imul, torch.mul, ".mul", ".mul_", name="mul", channels=combines, label="mul")
register_op(operator.truediv, operator.itruediv, torch.div, torch.maximum, torch.minimum, torch.where, ".div",
            ".div_", name="div", channels=combines)

