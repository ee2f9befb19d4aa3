"""Counting multiply-accumulates (MACs) and parameters of a model, by the thop / fvcore convention."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _conv_macs(m: nn.Module, out: torch.Tensor) -> int:
    # Each output element needs (in_channels / groups) × kernel-area multiply-accumulates.
    assert isinstance(m, nn.modules.conv._ConvNd)
    k = 1
    for s in m.kernel_size:
        k *= s
    return out[0].numel() * (m.in_channels // m.groups) * k


def _linear_macs(m: nn.Module, out: torch.Tensor) -> int:
    assert isinstance(m, nn.Linear)
    return out[0].numel() * m.in_features


# Per-op MAC rules, keyed by module type; layers not listed (BN, activations, pooling) count as free, as in thop/fvcore.
MAC_RULES: dict[type[nn.Module], Callable[[nn.Module, torch.Tensor], int]] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.Linear: _linear_macs,
}


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> Cost:
    """MACs of one forward pass per sample (conv and linear, groups counted) and the parameter count.

    `input_shape` includes the batch dimension; MACs are reported per sample.
    """
    macs = 0

    def hook(m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        macs += MAC_RULES[type(m)](m, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in MAC_RULES]
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
