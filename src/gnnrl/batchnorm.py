"""Re-estimating BatchNorm statistics of a pruned network on training images (the search's reward, compress's
final network)."""

from __future__ import annotations

import torch
from torch import nn

from .images import MEAN, STD, normalize


def recalibrate_bn(module: nn.Module, images: torch.Tensor, batch_size: int = 128,
                   mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> None:
    """Reset BatchNorm running statistics and re-estimate them (cumulative average) on `images` (normalised
    float, or uint8 that is normalised with `mean`/`std` batch by batch)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(images) == 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = module.training
    module.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            module(normalize(x, mean, std) if x.dtype == torch.uint8 else x)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    module.train(was_training)
