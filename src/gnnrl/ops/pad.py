"""Constant padding: zeros padded onto the channel dimension are channels of their own (removable)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F

from .idmap import broadcast, vector
from .registry import Call, ChannelPass, register_op


def pads(p: ChannelPass, call: Call) -> Any:
    """New channels get fresh ids (option-A shortcuts' zeros: removable); spatial padding keeps the channel's id."""
    args, kwargs = call.args, call.kwargs
    x = args[0].t
    pad = list(args[1] if len(args) > 1 else kwargs["pad"])
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    c_in = vector(x, 1) if x.dim() >= 2 else None
    if c_in is None:
        return p.opaque(call, [x], "pad of a tensor whose channels are not separable")
    k = (x.dim() - 1 - 1) * 2  # the pad tuple lists the last dim first
    before = pad[k] if len(pad) > k else 0
    after = pad[k + 1] if len(pad) > k + 1 else 0
    if (before or after) and mode != "constant":
        return p.opaque(call, [x], f"{mode} padding of channels")
    ids = c_in
    if before or after:
        fresh = p.new_ids(before + after, f"pad@{call.node.name}")
        ids = np.concatenate([fresh[:before], c_in, fresh[before:]])
        p.add_pad(call.node.name, ids, before, after, k)
    return broadcast(ids, call.node.meta["shape"])


register_op(F.pad, name="pad", channels=pads, label="pad")
