"""The reference a pruned model must equal: the original with removed channels' consumer weights zeroed."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import fx, nn

from gnnrl import channel_groups, count_flops, trace
from gnnrl.groups import analyze
from gnnrl.prune import PrunePlan, apply_plan, cost_after, make_plan
from gnnrl.trace import TracedModel


def masked_reference(graph: TracedModel, plan: PrunePlan) -> fx.GraphModule:
    """A copy of the traced model in which every conv/linear ignores the removed input channels."""
    ref = copy.deepcopy(graph.module)
    for m in analyze(graph).modules:
        if not m.creates:  # norms and other per-channel layers: a removed channel is simply never read
            continue
        removed = np.flatnonzero((m.in_units >= 0) & ~plan.keep[np.maximum(m.in_units, 0)])
        if not len(removed):
            continue
        mod = ref.get_submodule(m.target)
        w = mod.weight.data
        if type(mod).forward not in _PLAIN_FORWARDS and getattr(mod, "groups", 1) == 1:
            # a layer that computes its own weight (weight standardisation…): zeroing raw weights would change
            # what it computes from them, so the removed input channels themselves are zeroed
            mod.register_forward_pre_hook(_zero_channels(torch.from_numpy(removed)))
        elif m.kind == "conv_transpose":  # weight (in, out, k…)
            w[torch.from_numpy(removed)] = 0
        elif isinstance(mod, nn.Linear) or mod.groups == 1:
            w[:, torch.from_numpy(removed)] = 0
        elif mod.groups == mod.in_channels:  # depthwise: the filters reading a removed channel
            mult = mod.out_channels // mod.in_channels
            rows = np.concatenate([np.arange(c * mult, (c + 1) * mult) for c in removed])
            w[torch.from_numpy(rows)] = 0
        else:  # grouped: output channels of group j read in-group position c % per of input channel c
            per, out_per = mod.in_channels // mod.groups, mod.out_channels // mod.groups
            for c in removed.tolist():
                j = c // per
                w[j * out_per : (j + 1) * out_per, c % per] = 0
    return ref


_PLAIN_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, nn.Linear.forward,
                   nn.ConvTranspose1d.forward, nn.ConvTranspose2d.forward, nn.ConvTranspose3d.forward)


def _zero_channels(removed: torch.Tensor) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    """A forward pre-hook zeroing the removed channels of a layer's input."""

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0].clone()
        x[:, removed] = 0
        return (x, *args[1:])

    return hook


def randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so that a wrongly kept or dropped channel changes the output."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)
    return model.eval()


def check_exact(model: nn.Module, side: int = 16, seed: int = 0, low: float = 0.1, high: float = 0.8,
                shrinks: bool = True, input_shape: tuple[int, ...] | None = None) -> None:
    """Random per-group ratios: pruned == masked original, and analytic cost == measured cost."""
    torch.manual_seed(seed)
    model = randomise_bn(model)
    shape = input_shape or (2, 3, side, side)
    x = torch.randn(*shape)
    graph = trace(model, x)
    rng = np.random.default_rng(seed)
    ratios = {g.id: float(rng.uniform(low, high)) for g in channel_groups(graph) if g.prunable}
    plan = make_plan(graph, ratios)
    pruned = apply_plan(graph, plan)
    with torch.no_grad():
        out, ref = pruned(x), masked_reference(graph, plan)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
    one = (1, *shape[1:])
    assert cost_after(graph, plan) == count_flops(pruned, one)
    if shrinks:
        assert count_flops(pruned, one).macs < count_flops(model, one).macs
