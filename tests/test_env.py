"""DNN-Graph environment: the Gymnasium contract, budgets always met, BN recalibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch.utils.flop_counter import FlopCounterMode

from gnnrl import create, evaluate
from gnnrl.data import Cifar
from gnnrl.env import CAPACITY_WEIGHT, DNNGraphEnv, EnvConfig, recalibrate_bn, uniform_removed
from gnnrl.errors import GnnrlError
from gnnrl.prune import apply_plan, cost_after, original_cost


@pytest.fixture(scope="module")
def small(cifar: Cifar):  # type: ignore[no-untyped-def]
    """40 validation and 64 recalibration images: the contract does not need more."""
    return cifar.split("val").balanced_subset(40), cifar.split("train").balanced_subset(64)


def test_gymnasium_env_checker(small) -> None:  # type: ignore[no-untyped-def]
    val, recal = small
    env = DNNGraphEnv(create("resnet20"), val, EnvConfig(bn_recal=64), recal)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize(("name", "budget", "metric", "round_to"), [
    ("resnet20", 0.5, "macs", 1), ("resnet56", 0.3, "macs", 1), ("cifar_mobilenet_v2", 0.6, "macs", 1),
    ("cifar_shufflenet_v1", 0.5, "macs", 1), ("cifar_shufflenet_v2", 0.6, "macs", 1),
    ("cifar_vgg16_bn", 0.2, "macs", 1), ("resnet20", 0.5, "params", 1),
    ("resnet20", 0.2, "macs", 8),  # coarse steps: a big first step leaves only the stream's 12 %-of-MACs steps
])
def test_budget_always_met_over_random_actions(name: str, budget: float, metric: str, round_to: int,
                                               small) -> None:  # type: ignore[no-untyped-def]
    val, _ = small
    env = DNNGraphEnv(create(name), val.subset(8), EnvConfig(budget=budget, metric=metric, bn_recal=0,
                                                             round_to=round_to))
    rng = np.random.default_rng(0)
    key = "macs_ratio" if metric == "macs" else "params_ratio"
    for episode in range(8):
        env.reset(seed=episode)
        scale = [1.0, 0.05, 0.0, 0.3][episode % 4]  # big steps, tiny steps (step cap), zeros, in between
        done, steps, info = False, 0, {}
        while not done:
            _, reward, done, _, info = env.step(scale * rng.random(env.action_space.shape[0]))
            steps += 1
        assert budget - env.config.tolerance <= info[key] <= budget, (episode, info[key])
        assert steps <= env.config.max_steps and -1.0 <= reward <= 0.0


def test_uniform_baseline_lands_on_budget_and_matches_prune(small) -> None:  # type: ignore[no-untyped-def]
    val, _ = small
    env = DNNGraphEnv(create("resnet56"), val, EnvConfig(budget=0.5, bn_recal=0))
    removed = uniform_removed(env)
    fractions = removed / env.sizes
    assert fractions.max() - fractions.min() < 0.1, "one ratio for every group (up to rounding)"
    cost = cost_after(env.graph, env.plan_for(removed))
    assert 0.48 <= cost.macs / original_cost(env.graph).macs <= 0.5


def test_bn_recalibration_helps_a_pruned_resnet(cifar: Cifar, weights) -> None:  # type: ignore[no-untyped-def]
    """The measured fact behind the --bn-recal default: stale BN statistics dominate the reward otherwise."""
    val = cifar.split("val").balanced_subset(1000)
    recal = cifar.split("train").balanced_subset(2000, seed=1)
    env = DNNGraphEnv(create("resnet20", weights=weights("resnet20")), val, EnvConfig(budget=0.5, bn_recal=0))
    plain = env.evaluate_removed(uniform_removed(env))
    env_recal = DNNGraphEnv(env.graph, val, EnvConfig(budget=0.5, bn_recal=2000), recal)
    recalibrated = env_recal.evaluate_removed(uniform_removed(env_recal))
    assert recalibrated > plain + 0.1, (plain, recalibrated)


def test_recalibrate_bn_recomputes_statistics() -> None:
    bn = torch.nn.BatchNorm2d(3)
    x = torch.randn(64, 3, 4, 4) * 3 + 2
    recalibrate_bn(torch.nn.Sequential(bn).eval(), x)
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-5)
    assert not bn.training and bn.momentum == 0.1, "mode and momentum are restored"
    assert torch.allclose(bn.running_var, x.var((0, 2, 3), unbiased=True), atol=1e-4)


def test_unreachable_budget_is_refused(small) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GnnrlError, match="cannot be met"):
        DNNGraphEnv(create("resnet20"), small[0], EnvConfig(budget=0.001, bn_recal=0))


def test_reward_is_minus_the_validation_error(small) -> None:  # type: ignore[no-untyped-def]
    val, _ = small
    env = DNNGraphEnv(create("resnet20"), val, EnvConfig(bn_recal=0))
    env.reset()
    _, reward, done, _, _ = env.step(np.ones(env.action_space.shape[0]))
    assert done
    pruned = apply_plan(env.graph, env.plan_for(env.removed))
    assert reward == pytest.approx(evaluate(pruned, val).top1 / 100 - 1)


def test_the_capacity_reward_adds_the_macs_kept_counted_outside(small) -> None:  # type: ignore[no-untyped-def]
    val, _ = small
    env = DNNGraphEnv(create("resnet20"), val, EnvConfig(bn_recal=0, reward="capacity"))
    env.reset()
    _, reward, done, _, info = env.step(np.ones(env.action_space.shape[0]))
    pruned = apply_plan(env.graph, env.plan_for(env.removed))
    macs = torch_macs(pruned) / torch_macs(create("resnet20"))
    assert done and 0.3 < macs < 0.6 and info["macs_ratio"] == pytest.approx(macs)
    assert reward == pytest.approx(evaluate(pruned, val).top1 / 100 - 1 + CAPACITY_WEIGHT * macs)
    assert env.finish(env.removed)[0] == pytest.approx(reward)  # a policy chosen whole: the same reward


def test_deferred_evaluation_keeps_the_gymnasium_contract(small) -> None:  # type: ignore[no-untyped-def]
    """While evaluation is deferred, the last step's reward is a finite 0.0 marked pending (never NaN), the
    policy is collected, and once it is evaluated the same episode gets its real reward from the cache."""
    val, _ = small
    env = DNNGraphEnv(create("resnet20"), val, EnvConfig(bn_recal=0))
    env.defer_evaluation(True)
    env.reset()
    _, reward, done, _, info = env.step(np.ones(env.action_space.shape[0]))
    assert done and reward == 0.0 and info["pending"] and "accuracy" not in info
    collected = env.defer_evaluation(False)
    assert len(collected) == 1 and np.array_equal(collected[0], info["removed"])
    _, finished = env.finish(collected[0])
    assert "pending" not in finished and 0 < finished["accuracy"] <= 1
    env.reset()
    _, again, _, _, info = env.step(np.ones(env.action_space.shape[0]))  # the same policy: from the cache
    assert again == pytest.approx(finished["accuracy"] - 1) and "pending" not in info


def torch_macs(model: torch.nn.Module) -> float:
    """Multiply-accumulates of one 32×32 image, counted by PyTorch (convs and matmuls: 2 FLOPs each)."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() / 2
