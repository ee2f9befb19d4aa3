"""Weight-standardised convolutions (timm's StdConv2d / ScaledStdConv2d: NF-ResNet, NFNet, BiT).

Such a conv normalises each filter over its inputs before convolving, so removing an input channel would change
the statistics of every filter that reads it: the cut layer would no longer compute what the masked original does.
When cut, the layer is therefore *folded*: the standardised weight it actually convolves with (read from one call,
so any variant's formula is honoured) becomes a plain conv's weight, which is then sliced like any conv. The cut
network is exactly the masked original; fine-tuning after the cut trains the folded weights directly.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .conv import conv_channels, conv_cost, conv_label, slice_conv
from .registry import MODULE_OPS, register_op, when_loaded

_CONVS = {torch.conv1d, torch.conv2d, torch.conv3d, nn.functional.conv1d, nn.functional.conv2d,
          nn.functional.conv3d}


class _WeightOfConv(TorchFunctionMode):
    """Records the weight of every convolution called while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[torch.Tensor] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _CONVS:
            self.weights.append(args[1] if len(args) > 1 else kwargs["weight"])
        return func(*args, **kwargs)


def effective_weight(conv: nn.modules.conv._ConvNd) -> torch.Tensor:
    """The weight `conv`'s own forward convolves with (after its standardisation), from one call on zeros."""
    # the smallest input the layer takes under any padding: one output position
    size = [d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
    x = torch.zeros(1, conv.in_channels, *size, dtype=conv.weight.dtype, device=conv.weight.device)
    with torch.no_grad(), _WeightOfConv() as seen:
        conv(x)
    if len(seen.weights) != 1:
        raise ValueError(f"{type(conv).__name__} made {len(seen.weights)} convolution calls, not one")
    return seen.weights[0].detach().clone()


def fold_and_slice(mod: nn.Module, in_k: torch.Tensor, out_k: torch.Tensor) -> None:
    """Turn the layer into the plain conv it computes (timm's Conv2dSame where it pads by the input), then cut it."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    weight = effective_weight(mod)
    same = bool(getattr(mod, "same_pad", False))
    for name in [n for n in mod._parameters if n not in ("weight", "bias")]:  # gain: folded into the weight
        delattr(mod, name)
    if same:
        from timm.layers import Conv2dSame

        mod.__class__ = Conv2dSame
    else:
        mod.__class__ = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(mod.kernel_size)]
    mod.weight = nn.Parameter(weight, requires_grad=mod.weight.requires_grad)
    slice_conv(mod, in_k, out_k)


def standardized_filters(mod: nn.Module) -> torch.Tensor:
    """One row of the standardised weight per output channel (what ranks a filter is what it convolves with)."""
    assert isinstance(mod, nn.modules.conv._ConvNd)
    return effective_weight(mod).flatten(1)


@when_loaded
def _register_timm() -> None:
    """timm's weight-standardised convs, once timm is imported."""
    if "timm" not in sys.modules:
        return
    from timm.layers import std_conv

    classes = [getattr(std_conv, n) for n in ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")
               if hasattr(std_conv, n)]
    if classes and classes[0] not in MODULE_OPS:
        register_op(*classes, name="std_conv", channels=conv_channels, label=conv_label, slice=fold_and_slice,
                    cost=conv_cost, filters=standardized_filters)
