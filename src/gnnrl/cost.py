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

    def fraction_of(self, base: Cost) -> tuple[float, float]:
        """(MACs, params) as fractions of `base`'s."""
        return self.macs / base.macs, self.params / base.params


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> Cost:
    """MACs of one forward pass per sample and the parameter count.

    Layers with an op entry are counted by it (conv and linear count; norms and activations are free, as in
    thop/fvcore). Everything else — functional convs, matmuls, layers gnnrl does not know — is counted by PyTorch's
    `FlopCounterMode`, so an unknown op is never silently free. `input_shape` includes the batch dimension.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from .ops import module_op

    macs = 0
    inside = 0  # FlopCounterMode's flops inside the layers counted by their entries

    def pre(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        m._gnnrl_flops_before = flops.get_total_flops()  # type: ignore[assignment]

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs, inside
        macs += module_op(type(m)).full_cost(m, tuple(inp[0].shape), tuple(out.shape))[0]  # type: ignore[union-attr]
        inside += flops.get_total_flops() - m.__dict__.pop("_gnnrl_flops_before")

    def costed(m: nn.Module) -> list[nn.Module]:
        """Modules whose op entry has a cost; a registered layer's own submodules are inside its cost."""
        op = module_op(type(m))
        if op is not None and op.cost is not None:
            return [m]
        return [c for child in m.children() for c in costed(child)]

    layers = costed(model)
    handles = [h for m in layers for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(hook))]
    was_training = model.training
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as flops:
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    outside = (flops.get_total_flops() - inside) // 2 // max(int(input_shape[0]), 1)
    params = sum(p.numel() for p in model.parameters())
    return Cost(macs=macs + int(outside), params=params)
