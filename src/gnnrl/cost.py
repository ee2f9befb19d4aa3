"""Counting multiply-accumulates (MACs) and parameters of a model, by the thop / fvcore convention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    """MACs for one input sample and the number of parameters."""

    macs: int
    params: int

    def __str__(self) -> str:
        return f"{self.macs / 1e6:.2f} M MACs, {self.params / 1e6:.3f} M params"


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> Cost:
    """MACs of one forward pass per sample (by each layer's op entry: conv and linear count, norms and
    activations are free, as in thop/fvcore) and the parameter count.

    `input_shape` includes the batch dimension; MACs are reported per sample.
    """
    from .ops import module_op

    macs = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        macs += module_op(type(m)).full_cost(m, tuple(inp[0].shape), tuple(out.shape))[0]  # type: ignore[union-attr]

    def costed(m: nn.Module) -> list[nn.Module]:
        """Modules whose op entry has a cost; a registered layer's own submodules are inside its cost."""
        op = module_op(type(m))
        if op is not None and op.cost is not None:
            return [m]
        return [c for child in m.children() for c in costed(child)]

    handles = [m.register_forward_hook(hook) for m in costed(model)]
    was_training = model.training
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Cost(macs=macs, params=params)
