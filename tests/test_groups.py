"""Channel groups on hand-built tricky modules: the coupling is found by propagation, and pruning is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pruning_reference import check_exact, randomise_bn
from torch import nn

from gnnrl import channel_groups, create, trace
from gnnrl.groups import analyze
from gnnrl.models import channel_shuffle
from gnnrl.prune import PrunePlan, apply_plan, make_plan


def cbr(i: int, o: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class Concat(nn.Module):  # two branches of different widths, concatenated, then consumed
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b, self.head = cbr(3, 8), cbr(8, 6), cbr(8, 10, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.cat([self.a(x), self.b(x)], 1))


class ThreeWayAdd(nn.Module):  # a residual add of three branches
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b, self.head = cbr(3, 8), cbr(8, 8), cbr(8, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.a(x) + self.b(x))


class DepthwiseSeparable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.dw, self.pw, self.head = cbr(3, 8), cbr(8, 16, 3, groups=8), cbr(16, 12, 1), nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pw(self.dw(self.stem(x))))


class Shuffle(nn.Module):  # split → transform half → concat → shuffle, as in ShuffleNet-v2
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.branch, self.head = cbr(3, 12), cbr(6, 6, 1), nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.stem(x).chunk(2, dim=1)
        return self.head(channel_shuffle(torch.cat([x1, self.branch(x2)], 1), 2))


class SE(nn.Module):  # squeeze-excitation scaling
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = cbr(3, 16), nn.Conv2d(16, 4, 1)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head(x * s)


class FlattenHead(nn.Module):  # flatten → linear: each channel owns a block of H·W columns
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.fc = cbr(3, 8), nn.Linear(8 * 8 * 8, 5)  # 16×16 input, pooled to 8×8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.max_pool2d(self.stem(x), 2), 1))


class PadShortcut(nn.Module):  # option-A: zero channels padded onto a subsampled input, added to a wider branch
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.branch, self.head = cbr(3, 8), cbr(8, 16), nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        short = F.pad(x, (0, 0, 0, 0, 4, 4))
        return self.head(F.relu(self.branch(x) + short))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.g, self.head = cbr(3, 12), cbr(12, 18, 1, groups=3), nn.Conv2d(18, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.g(self.stem(x)))


def groups_of(model: nn.Module, side: int = 16) -> list:
    return [g for g in channel_groups(trace(model, torch.randn(1, 3, side, side))) if g.prunable]


@pytest.mark.parametrize("cls", [Concat, ThreeWayAdd, DepthwiseSeparable, Shuffle, SE, FlattenHead, PadShortcut,
                                 Grouped])
def test_tricky_modules_prune_exactly(cls: type[nn.Module]) -> None:
    for seed in range(3):
        check_exact(cls(), seed=seed)


def test_concat_keeps_branches_separate() -> None:
    groups = groups_of(Concat())
    assert {g.members for g in groups} == {("stem.0",), ("a.0",), ("b.0",)}
    assert {g.members: g.size for g in groups}[("b.0",)] == 10


def test_three_way_add_is_one_group() -> None:
    (g,) = [g for g in groups_of(ThreeWayAdd()) if len(g.members) > 1]
    assert set(g.members) == {"stem.0", "a.0", "b.0"} and g.size == 8


def test_depthwise_ties_input_and_output() -> None:
    groups = groups_of(DepthwiseSeparable())
    assert {g.members: g.size for g in groups} == {("dw.0", "stem.0"): 8, ("pw.0",): 12}


def test_shuffle_pairs_channels_across_halves() -> None:
    (g,) = groups_of(Shuffle())
    assert set(g.members) == {"stem.0", "branch.0"} and g.size == 6  # 6 units of 2 channels each


def test_se_excitation_joins_the_scaled_channels() -> None:
    groups = {g.members: g.size for g in groups_of(SE())}
    assert groups == {("fc2", "stem.0"): 16, ("fc1",): 4}


def test_pad_channels_join_the_residual_group() -> None:
    (g,) = [g for g in groups_of(PadShortcut()) if len(g.members) > 1]
    assert set(g.members) == {"stem.0", "branch.0", "pad@pad"} and g.size == 16


def test_pad_widths_shrink_to_the_kept_pad_channels() -> None:
    model = randomise_bn(PadShortcut())
    graph = trace(model, torch.randn(1, 3, 16, 16))
    a = analyze(graph)
    (pad,) = a.pads
    keep = np.ones(a.num_units, dtype=bool)
    keep[pad.units[[0, 1, 2, 13]]] = False  # three of the 4 zero channels before, one of the 4 after, plus…
    keep[pad.units[5]] = False  # …one real channel in the middle
    pruned = apply_plan(graph, PrunePlan(keep, {}, {}))
    node = next(n for n in pruned.graph.nodes if n.name == "pad")
    assert node.args[1][4:] == (1, 3)
    assert pruned.get_submodule("stem.0").out_channels == 7
    assert pruned.get_submodule("branch.0").out_channels == 11


def test_flatten_linear_drops_column_blocks() -> None:
    model = randomise_bn(FlattenHead())
    graph = trace(model, torch.randn(1, 3, 16, 16))
    (g,) = [g for g in channel_groups(graph) if g.prunable]
    plan = make_plan(graph, {g.id: 0.5})
    pruned = apply_plan(graph, plan)
    assert pruned.fc.in_features == 4 * 64


def test_resnet20_groups() -> None:
    groups = channel_groups(trace(create("resnet20"), torch.randn(1, 3, 32, 32)))
    residual = [g for g in groups if len(g.members) > 1]
    assert len(residual) == 1 and residual[0].size == 64  # all three stages, linked by the zero-pad shortcuts
    assert sorted(g.size for g in groups if g.prunable and len(g.members) == 1) == [16] * 3 + [32] * 3 + [64] * 3
    pinned = {g.reason for g in groups if not g.prunable}
    assert pinned == {"network input", "network output"}


class ScaledView(nn.Module):  # a per-channel parameter reshaped in forward: pruning would have to slice it
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = cbr(3, 8), nn.Conv2d(8, 4, 1)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x) * self.scale.view(1, -1, 1, 1))


class WithToken(nn.Module):  # a learned constant concatenated to the features (as ViT's class token)
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = cbr(3, 8), nn.Conv2d(8, 4, 1)
        self.token = nn.Parameter(torch.randn(1, 8, 1, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(torch.cat([self.token.expand(y.shape[0], -1, -1, -1), y], 2))


@pytest.mark.parametrize("cls", [ScaledView, WithToken])
def test_channels_tied_to_constants_are_pinned(cls: type[nn.Module]) -> None:
    groups = channel_groups(trace(cls(), torch.randn(1, 3, 16, 16)))
    stem = next(g for g in groups if "stem.0" in g.members)
    assert not stem.prunable and stem.reason
    check_exact(cls(), shrinks=False)  # nothing else is prunable here, and nothing breaks
