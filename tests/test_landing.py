"""Landing on the measured latency budget: a prediction that misses is corrected where the policy is, a search's
best and a selection's finalists are landed, and nothing here times anything (the measurement is injected)."""

from __future__ import annotations

import importlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_engines import FakeClock, fake_layer_seconds
from test_search import TINY

import gnnrl
from gnnrl import create, trace
from gnnrl.data import Cifar
from gnnrl.engines import BUSY_SHARE, CpuMeter, Engine
from gnnrl.env import DNNGraphEnv, EnvConfig, uniform_removed
from gnnrl.landing import BAND, SLACK, importance_lost, land_measured, least_step, rule_at, step_to
from gnnrl.latency import LatencyModel, LayerTable, TableModel
from gnnrl.methods.heuristic import uniform_internal_removed
from gnnrl.paths import default_weights
from gnnrl.prune import PrunePlan
from gnnrl.search import SearchConfig, evaluate_policy, make_env, measured_lander, search
from gnnrl.selection import candidates, kept_landings

MODEL = LatencyModel(1, (1e-3, 1e-10, 1e-8), ())
"""a fixed latency model (1 ms that pruning cannot remove + compute + memory): no timing in these tests"""


@pytest.fixture(scope="module", params=[1, 8], ids=["any-width", "round-to-8"])
def env(cifar: Cifar, request: pytest.FixtureRequest) -> DNNGraphEnv:
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    config = EnvConfig(budget=0.6, metric="latency", bn_recal=0, round_to=request.param)
    return DNNGraphEnv(graph, cifar.split("val").balanced_subset(8), config, latency=MODEL)


def engine_off_by(env: DNNGraphEnv, error: Callable[[float], float]) -> Callable[[PrunePlan], float]:
    """A fake engine whose measured ratio is the predicted ratio × error(fraction of the MACs kept): the model's
    error grows with the MACs kept, as measured on the AVX2 machine."""
    def measure(plan: PrunePlan) -> float:
        predicted = env.latency.predict_plan(env.graph, plan) / env.base  # type: ignore[union-attr]
        return predicted * error(env.channels.fractions_after(plan)[0])
    return measure


def test_a_policy_measured_over_the_budget_is_landed_under_it(env: DNNGraphEnv) -> None:
    start = uniform_removed(env)
    measure = engine_off_by(env, lambda macs: 1.0 + 0.25 * macs)  # ~12 % over at ~0.5 of the MACs
    landing = land_measured(env, start, measure)
    first_predicted, first_measured = landing.steps[0]
    assert first_predicted <= 0.6 and first_measured > 0.6 + SLACK  # the prediction alone misses the budget
    assert landing.met and 0.6 - BAND <= landing.measured <= 0.6 + SLACK
    assert landing.measured == pytest.approx(measure(env.plan_for(np.array(landing.removed))))
    assert landing.predicted == pytest.approx(env.metric_of(np.array(landing.removed)) / env.base)
    assert np.all(np.array(landing.removed) >= start)  # the same allocation, cut further: no group grows back
    assert 2 <= len(landing.steps) <= 4


def test_a_policy_measured_well_under_the_budget_is_given_latency_back(env: DNNGraphEnv) -> None:
    start = uniform_removed(env)
    landing = land_measured(env, start, engine_off_by(env, lambda macs: 0.85))
    assert landing.steps[0][1] < 0.6 - BAND  # the prediction was pessimistic here
    assert landing.met and 0.6 - BAND <= landing.measured <= 0.6 + SLACK
    assert np.all(np.array(landing.removed) <= start) and landing.predicted > landing.steps[0][0]


def test_no_tries_measures_only_and_an_unreachable_budget_keeps_the_fastest(env: DNNGraphEnv) -> None:
    start = uniform_removed(env)
    measure = engine_off_by(env, lambda macs: 1.3)
    once = land_measured(env, start, measure, tries=0)
    assert once.removed == tuple(start) and len(once.steps) == 1 and not once.met
    predicted = engine_off_by(env, lambda macs: 1.0)
    never = land_measured(env, start, lambda plan: predicted(plan) + 0.5, tries=2)  # a cost the model misses
    assert not never.met and len(never.steps) <= 3
    assert never.measured == min(m for _, m in never.steps)


def test_the_landing_moves_the_allocation_by_single_steps_that_lose_the_least(env: DNNGraphEnv) -> None:
    start = uniform_removed(env)
    start[0] = 0  # a group left whole, as AMC's policies leave the residual stream
    lost = importance_lost(env)
    scores = env.channels.scores(env.config.importance)  # the share lost, from the unit scores directly
    for g, order in enumerate(env.order):
        k = int(env.allowed[g][-1])
        assert lost[g][k] == pytest.approx(scores[order[:k]].sum() / scores[order].sum())
    goal = env.metric_of(start) / env.base - 0.05
    landed = step_to(env, start, goal, lost)
    assert env.metric_of(landed) / env.base <= goal and np.all(landed >= start)
    for g in np.flatnonzero(landed > start):  # tight: no step it took can be given back under the goal
        trial = landed.copy()
        trial[g] = env.allowed[g][env.allowed[g] <= landed[g] - least_step(env, g)][-1]
        assert trial[g] < start[g] or env.metric_of(trial) / env.base > goal
    # every group moved by a few steps at most: the allocation is the searched one, not a rescaled one
    moved = [np.searchsorted(env.allowed[g], landed[g]) - np.searchsorted(env.allowed[g], start[g])
             for g in range(len(start))]
    assert sum(moved) <= 0.35 * sum(len(a) for a in env.allowed), moved
    # under the goal, latency is given back by single steps while it holds
    back = step_to(env, landed, goal + 0.05, lost)
    assert env.metric_of(back) / env.base <= goal + 0.05 and np.all(back <= landed) and np.any(back < landed)


def test_a_rules_policy_is_landed_as_the_rule_at_another_budget(env: DNNGraphEnv) -> None:
    start = uniform_internal_removed(env)
    summed = np.array([env.analysis.groups[g].summed for g in env.group_ids])
    assert summed.any() and not start[summed].any()  # the rule keeps the residual streams whole
    measure = engine_off_by(env, lambda macs: 1.0 + 0.25 * macs)
    landing = land_measured(env, start, measure, rule=uniform_internal_removed)
    assert landing.steps[0][1] > 0.6 + SLACK and landing.met and 0.6 - BAND <= landing.measured <= 0.6 + SLACK
    # still the rule: a policy it gives at some budget (the streams whole where the internals alone can meet it)
    ruled = {tuple(rule_at(env, uniform_internal_removed, b)) for b in np.arange(0.40, 0.60, 0.002)}
    assert landing.removed in ruled and landing.removed != tuple(start)


def test_an_engine_steeper_than_the_model_is_landed_between_the_points_that_straddle_it(env: DNNGraphEnv) -> None:
    # measured latency moves three times as fast as predicted: corrected at the last point alone, the aim goes
    # back and forth over the window; between the two points on either side of it, it lands
    if env.config.round_to > 1:
        pytest.skip("a width step ×8 moves this engine's latency by more than the window: nothing lands there")
    predicted = engine_off_by(env, lambda macs: 1.0)
    steep = lambda plan: 3 * predicted(plan) - 1.15  # noqa: E731
    for rule in (uniform_removed, None):
        start = rule_at(env, uniform_removed, 0.6)
        landing = land_measured(env, start, steep, tries=4, rule=rule)
        assert landing.steps[0][1] > 0.6 + SLACK and landing.steps[1][1] < 0.6 - BAND  # over, then under by far
        assert landing.met and 0.6 - BAND <= landing.measured <= 0.6 + SLACK, landing.steps


def test_search_lands_its_best_and_records_how(cifar: Cifar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    config = replace(TINY, episodes=3, warmup=2, env=EnvConfig(bn_recal=64, max_steps=3, metric="latency",
                                                               budget=0.8))
    model = create("resnet20", weights=default_weights("resnet20"))

    def slow_engine(env: DNNGraphEnv, plan: PrunePlan, original: object = None, meter: object = None
                    ) -> float:  # 10 % slower than predicted
        return 1.1 * env.latency.predict_plan(env.graph, plan) / env.base  # type: ignore[union-attr]
    # the module (`gnnrl.search` is also the function the package exports)
    monkeypatch.setattr(importlib.import_module("gnnrl.search"), "measured_latency", slow_engine)
    result = search(model, cifar, config, out_dir=tmp_path, progress=False, latency=MODEL)
    policy = json.loads((tmp_path / "policy.json").read_text())
    landing = policy["latency"]["landing"]
    best_episode = max(result.history, key=lambda r: r["reward"])
    assert landing["from_episode"] == best_episode["episode"] and landing["met"]
    assert landing["steps"][0]["measured"] > 0.81 and result.measured_latency_ratio <= 0.8 + SLACK
    assert policy["latency"]["measured_ratio"] == result.measured_latency_ratio and result.landing == landing
    assert result.removed != best_episode["removed"] and result.latency_ratio < best_episode["latency_ratio"]
    env = make_env(model, cifar, config, MODEL)  # the landed policy's accuracy is its own, not the episode's
    assert result.val_top1 == pytest.approx(evaluate_policy(env, result.removed, env.val).top1)
    # with the landing off, the best is the best episode, measured
    off = search(model, cifar, replace(config, env=replace(config.env, measured_landing=0)),
                 out_dir=tmp_path / "off", progress=False, latency=MODEL)
    assert off.removed == best_episode["removed"] and off.measured_latency_ratio > 0.81


def test_selection_finalists_compete_at_equal_measured_latency(env: DNNGraphEnv) -> None:
    measure = engine_off_by(env, lambda macs: 1.0 + 0.25 * macs)
    hist = [{"episode": 1, "reward": -0.5, "removed": [int(r) for r in uniform_removed(env)]},
            {"episode": 2, "reward": -0.4, "removed": [int(r) for r in np.minimum(uniform_removed(env) + 8,
                                                                                   env.most)]}]
    pool = candidates(env, hist, top=2, land=lambda removed, rule=None: land_measured(env, removed, measure,
                                                                                      rule=rule))
    for c in pool:
        assert c.measured_ratio is not None and 0.6 - BAND <= c.measured_ratio <= 0.6 + SLACK
        assert c.measured_ratio == pytest.approx(measure(env.plan_for(np.array(c.removed))))
    assert all(c.measured_ratio is None for c in candidates(env, hist, top=2))


def test_a_resumed_selection_lands_no_finalist_again(env: DNNGraphEnv, tmp_path: Path) -> None:
    measure = engine_off_by(env, lambda macs: 1.0 + 0.25 * macs)
    calls: list[tuple[int, ...]] = []

    def land(removed: object, rule: object = None) -> object:
        calls.append(tuple(removed))  # type: ignore[arg-type]
        return land_measured(env, removed, measure, rule=rule)  # type: ignore[arg-type]
    hist = [{"episode": 1, "reward": -0.5, "removed": [int(r) for r in uniform_removed(env)]}]
    first = candidates(env, hist, top=1, land=kept_landings(land, tmp_path / "landings.json"))  # type: ignore
    landed = len(calls)
    again = candidates(env, hist, top=1, land=kept_landings(land, tmp_path / "landings.json"))  # type: ignore
    assert landed == 3  # the search's best, and the rules (uniform's policy is that best, but a rule lands as itself)
    assert len(calls) == landed and again == first  # read back, not landed (timed) again
    (tmp_path / "landings.json").write_text("{")  # damaged: landed again, not a crash
    assert candidates(env, hist, top=1, land=kept_landings(land, tmp_path / "landings.json")) == first  # type: ignore
    assert len(calls) == 2 * landed


def test_measured_landing_is_a_latency_setting() -> None:
    with pytest.raises(gnnrl.GnnrlError, match="measured_landing"):
        EnvConfig(measured_landing=-1).validate()
    assert SearchConfig().env.measured_landing == 5


def test_a_landing_puts_the_original_on_the_engine_once(cifar: Cifar, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = trace(create("resnet20"), torch.zeros(1, 3, 32, 32))
    engine = Engine()
    model = TableModel(engine, LayerTable(engine, measure=fake_layer_seconds), (1e-4, 1.0, 0.0), ())
    env = DNNGraphEnv(graph, cifar.split("val").balanced_subset(8),
                      EnvConfig(budget=0.6, metric="latency", round_to=8, bn_recal=0), latency=model)
    built: list[torch.nn.Module] = []  # what was put on the engine (exported, for ONNX Runtime): nothing is timed
    monkeypatch.setattr(Engine, "network", lambda self, module, example: built.append(module) or (lambda: None))
    monkeypatch.setattr(importlib.import_module("gnnrl.latency"), "interleaved_ratio",
                        lambda pruned, original, rounds: (0.55, 1.0))  # always under the band: every try measures
    landing = measured_lander(env)(uniform_removed(env))  # type: ignore[misc]
    tries = env.config.measured_landing
    assert len(landing.steps) == tries + 1 and len(built) == tries + 2 and sum(m is graph.module for m in built) == 1


def test_a_landing_measured_on_a_busy_machine_says_so(cifar: Cifar, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaving cancels drift, not time-sharing: a landing whose timings got little CPU (here: the 'engine'
    sleeps, as a process waiting for a core does) warns and records its CPU share; a quiet one does neither."""
    graph = trace(create("resnet20"), torch.zeros(1, 3, 32, 32))
    engine = Engine()
    model = TableModel(engine, LayerTable(engine, measure=fake_layer_seconds), (1e-4, 1.0, 0.0), ())
    env = DNNGraphEnv(graph, cifar.split("val").balanced_subset(8),
                      EnvConfig(budget=0.6, metric="latency", round_to=8, bn_recal=0, measured_landing=1),
                      latency=model)
    monkeypatch.setattr(Engine, "network", lambda self, module, example: lambda: None)

    def waiting(pruned: object, original: object, rounds: int) -> tuple[float, float]:
        time.sleep(0.02)
        return 0.6, 1.0
    monkeypatch.setattr(importlib.import_module("gnnrl.latency"), "interleaved_ratio", waiting)
    with pytest.warns(UserWarning, match="busy machine .* measure again on a quiet machine"):
        busy = measured_lander(env)(uniform_removed(env))  # type: ignore[misc]
    assert busy.cpu_share is not None and busy.cpu_share < BUSY_SHARE
    search_module = importlib.import_module("gnnrl.search")
    monkeypatch.setattr(search_module, "CpuMeter",  # every timing got the whole core
                        lambda threads: CpuMeter(threads, cpu_clock=FakeClock(1.0), wall_clock=FakeClock(1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = measured_lander(env)(uniform_removed(env))  # type: ignore[misc]
    assert quiet.cpu_share == pytest.approx(1.0) and quiet.removed == busy.removed
