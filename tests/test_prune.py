"""Pruning the zoo and torchvision CNNs: exact equivalence, exact analytic cost, budgets, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from pruning_reference import check_exact

from gnnrl import PruneError, channel_groups, cost_after, count_flops, create, evaluate, prune, ratios_for_budget, trace
from gnnrl.data import Cifar
from gnnrl.models import CIFAR_MODELS
from gnnrl.prune import make_plan, original_cost

TORCHVISION_CNNS = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "shufflenet_v2_x1_0", "mnasnet1_0", "efficientnet_b0", "regnet_x_400mf", "regnet_y_400mf",
    "densenet121", "vgg16_bn", "googlenet", "squeezenet1_1", "alexnet", "convnext_tiny", "inception_v3",
]


@pytest.mark.parametrize("name", list(CIFAR_MODELS))
def test_zoo_prunes_exactly(name: str) -> None:
    check_exact(create(name), side=32)


@pytest.mark.parametrize("name", TORCHVISION_CNNS)
def test_torchvision_prunes_exactly(name: str) -> None:
    pytest.importorskip("torchvision")
    # 96 px keeps the run short; the channel structure does not depend on the image size
    check_exact(create(name, num_classes=10), side=96)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_CNNS)
def test_torchvision_prunes_exactly_at_224(name: str) -> None:
    check_exact(create(name, num_classes=1000), side=299 if name == "inception_v3" else 224, seed=1)


@pytest.fixture(scope="module")
def r56():  # type: ignore[no-untyped-def]
    return trace(create("resnet56"), torch.randn(1, 3, 32, 32))


def test_uniform_budget_on_resnet56(r56) -> None:  # type: ignore[no-untyped-def]
    ratios = ratios_for_budget(r56, 0.5)
    assert len(set(ratios.values())) == 1, "a uniform profile gives one ratio"
    cost = cost_after(r56, ratios)
    assert 0.48 <= cost.macs / original_cost(r56).macs <= 0.50
    pruned = prune(r56, ratios=ratios)
    assert count_flops(pruned.module) == cost
    r = next(iter(ratios.values()))
    for stage, width in ((1, 16), (2, 32), (3, 64)):  # block-internal channels: width − round(r·width)
        for i in range(9):
            conv = pruned.module.get_submodule(f"layer{stage}.{i}.conv1")
            assert conv.out_channels == width - math.floor(r * width + 0.5)
    residual = next(g for g in channel_groups(r56) if len(g.members) > 1)
    assert pruned.module.get_submodule("layer3.0.conv2").out_channels + \
        sum(1 for k in pruned.plan.kept[residual.id] if k < 0) <= 64


def test_prune_leaves_the_original_untouched_and_prunes_again(r56) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in r56.module.state_dict().items()}
    first = prune(r56, ratios=0.3)
    second = prune(first.module, torch.randn(1, 3, 32, 32), ratios=0.3)
    assert all(torch.equal(before[k], v) for k, v in r56.module.state_dict().items())
    assert second.cost.macs < first.cost.macs < original_cost(r56).macs
    assert second.base_cost == first.cost
    assert len(second.module.gnnrl_lineage.rounds) == 2
    with torch.no_grad():
        assert second.module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_l1_removes_the_weakest_filters() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([3.0, 1.0, 4.0, 0.5]).view(4, 1, 1, 1).expand(4, 3, 1, 1))
    pruned = prune(model, torch.randn(1, 3, 4, 4), ratios=0.5)
    kept = pruned.module.get_submodule("0").weight[:, 0, 0, 0].tolist()
    assert kept == [3.0, 4.0]


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "random"])
def test_every_importance_gives_a_valid_pruning(importance: str, r56) -> None:  # type: ignore[no-untyped-def]
    pruned = prune(r56, ratios=0.4, importance=importance)
    assert count_flops(pruned.module) == pruned.cost
    with torch.no_grad():
        assert pruned.module(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_round_to_keeps_multiples(r56) -> None:  # type: ignore[no-untyped-def]
    pruned = prune(r56, ratios=0.3, round_to=8)
    for i in range(9):
        assert pruned.module.get_submodule(f"layer3.{i}.conv1").out_channels % 8 == 0


def test_extreme_ratios_keep_one_channel(r56) -> None:  # type: ignore[no-untyped-def]
    pruned = prune(r56, ratios=0.999)
    assert all(len(kept) >= 1 for kept in pruned.plan.kept.values())
    with torch.no_grad():
        assert pruned.module(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(
    ("ratios", "message"),
    [(1.0, "outside"), (-0.1, "outside"), ({999: 0.5}, "unknown group"), ({0: 0.5}, "pinned")],
)
def test_bad_ratios(ratios: object, message: str, r56) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PruneError, match=message):
        prune(r56, ratios=ratios)  # type: ignore[arg-type]


def test_unreachable_budget(r56) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PruneError, match="cannot be met"):
        ratios_for_budget(r56, 0.001)
    with pytest.raises(PruneError, match="budget"):
        ratios_for_budget(r56, 1.5)


def test_l1_beats_random_channels_at_the_same_budget(cifar: Cifar, weights: Callable[[str], Path]) -> None:
    """Real weights, real data: at 80% of the MACs, removing low-L1 channels keeps far more accuracy."""
    graph = trace(create("resnet56", weights=weights("resnet56")), torch.randn(1, 3, 32, 32))
    val = cifar.split("val").balanced_subset(1000)
    top1 = {}
    for importance in ("l1", "random"):
        ratios = ratios_for_budget(graph, 0.8, importance=importance)
        pruned = prune(graph, ratios=ratios, importance=importance)
        assert 0.78 <= pruned.macs_ratio <= 0.8
        top1[importance] = evaluate(pruned.module, val).top1
    assert top1["l1"] > top1["random"] + 10, top1


def test_plan_is_deterministic(r56) -> None:  # type: ignore[no-untyped-def]
    a, b = make_plan(r56, 0.5), make_plan(r56, 0.5)
    assert np.array_equal(a.keep, b.keep)


def test_the_channel_analysis_is_one_object_built_once(r56) -> None:  # type: ignore[no-untyped-def]
    """`channels(graph)` is what the module functions use: one object per traced model, the same answers."""
    from gnnrl import channels

    ch = channels(r56)
    assert channels(r56) is ch
    plan = ch.plan(0.4, round_to=8)
    assert np.array_equal(plan.keep, make_plan(r56, 0.4, round_to=8).keep)
    pruned = ch.apply(plan)
    assert count_flops(pruned) == ch.cost_after(plan) == cost_after(r56, 0.4, round_to=8)
    assert ch.original_cost == count_flops(r56.module)
    orders = ch.orders(ch.prunable)
    assert np.array_equal(ch.plan_removed(orders, [math.floor(0.5 * len(o) + 0.5) for o in orders]).keep,
                          ch.plan({g: 0.5 for g in ch.prunable}).keep)  # half of each group, least important first
