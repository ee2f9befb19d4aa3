"""Latency budget: activation count, the non-negative fit, the env meeting a latency budget, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gnnrl import channel_groups, create, trace
from gnnrl.agent import DDPGConfig
from gnnrl.data import Cifar
from gnnrl.env import DNNGraphEnv, EnvConfig
from gnnrl.errors import GnnrlError
from gnnrl.groups import analyze
from gnnrl.latency import LatencyModel, _nonnegative_fit, activation_elements, fit_latency_model
from gnnrl.paths import default_weights
from gnnrl.prune import apply_plan, make_plan
from gnnrl.search import SearchConfig, search


def hooked_elements(module: nn.Module, names: set[str], x: torch.Tensor) -> int:
    """Output elements per sample of the named submodules, counted on a real forward pass."""
    total = [0]
    hooks = [m.register_forward_hook(lambda _m, _i, out: total.__setitem__(0, total[0] + out[0].numel()))
             for name, m in module.named_modules() if name in names]
    with torch.no_grad():
        module.eval()(x)
    for h in hooks:
        h.remove()
    return total[0]


def test_activation_elements_match_a_forward_pass() -> None:
    graph = trace(create("cifar_mobilenet_v2"), torch.randn(1, 3, 32, 32))
    names = {m.target for m in analyze(graph).modules}
    x = torch.randn(1, 3, 32, 32)
    full = np.ones(analyze(graph).num_units, dtype=bool)
    assert activation_elements(graph, full) == hooked_elements(graph.module, names, x)
    rng = np.random.default_rng(0)
    plan = make_plan(graph, {g.id: float(rng.uniform(0, 0.8)) for g in channel_groups(graph) if g.prunable})
    assert activation_elements(graph, plan.keep) == hooked_elements(apply_plan(graph, plan), names, x)
    assert activation_elements(graph, plan.keep) < activation_elements(graph, full)


def test_nonnegative_fit_recovers_coefficients_and_never_goes_negative() -> None:
    rng = np.random.default_rng(0)
    macs, acts = rng.uniform(1e6, 1e8, 12), rng.uniform(1e4, 1e6, 12)
    exact = [(m, a, 2e-3 + 3e-11 * m + 4e-9 * a) for m, a in zip(macs, acts, strict=True)]
    assert np.allclose(_nonnegative_fit(exact), (2e-3, 3e-11, 4e-9), rtol=1e-6)
    # time that falls as activations grow would fit a negative c2: the fit drops that feature instead
    odd = [(m, a, 1e-3 + 3e-11 * m - 1e-9 * a + 1e-3) for m, a in zip(macs, acts, strict=True)]
    coef = _nonnegative_fit(odd)
    assert min(coef) >= 0 and coef[2] == 0


def _fake_measure(graph_input: torch.Tensor):  # type: ignore[no-untyped-def]
    """A deterministic 'clock': 1 ms fixed + 1e-10 s per MAC of the module timed (no real timing in tests)."""
    from gnnrl import count_flops

    return lambda module, x: 1e-3 + 1e-10 * count_flops(module, tuple(x.shape)).macs


def test_fitted_model_on_measured_networks() -> None:
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    model = fit_latency_model(graph, batch_size=16, networks=6, measure=_fake_measure(graph.example_input))
    assert len(model.samples) == 6 and min(model.coef) >= 0 and not model.fallback
    largest, smallest = model.samples[0], model.samples[-1]
    assert largest[0] > 5 * smallest[0]  # the variants span the range
    assert model.predict(largest[0], largest[1]) > model.predict(smallest[0], smallest[1])
    assert model.predict(largest[0], largest[1]) == pytest.approx(1e-3 + 1e-10 * largest[0], rel=1e-6)
    assert LatencyModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model


def test_noisy_timings_fall_back_to_macs_with_a_warning() -> None:
    """A busy machine: timings that do not fall with pruning must not make every latency budget unreachable."""
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    rng = np.random.default_rng(0)
    warned: list[str] = []
    model = fit_latency_model(graph, networks=6, measure=lambda m, x: float(rng.uniform(1e-3, 2e-3)),
                              warn=warned.append)
    assert model.fallback and warned and "noisy" in warned[0]
    full, smallest = model.samples[0], model.samples[-1]
    assert model.predict(smallest[0], smallest[1]) / model.predict(full[0], full[1]) == pytest.approx(
        smallest[0] / full[0])
    order: list[float] = []
    fit_latency_model(graph, networks=3, rounds=2, measure=lambda m, x: order.append(count(m)) or 1e-3)
    assert order[:3] == order[3:][::-1]  # rounds alternate their order


def count(module: torch.nn.Module) -> float:
    return float(sum(p.numel() for p in module.parameters()))


def test_env_lands_on_a_latency_budget(cifar: Cifar) -> None:
    val = cifar.split("val").balanced_subset(8)
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    # a fixed model (no timing in this test): 1 ms that pruning cannot remove + compute + memory
    model = LatencyModel(1, (1e-3, 1e-10, 1e-8), ())
    env = DNNGraphEnv(graph, val, EnvConfig(budget=0.6, metric="latency", bn_recal=0), latency=model)
    rng = np.random.default_rng(0)
    for episode in range(6):
        env.reset(seed=episode)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step([1.0, 0.05, 0.3][episode % 3] * rng.random(env.action_space.shape[0]))
        assert 0.58 <= info["latency_ratio"] <= 0.6, info["latency_ratio"]
        assert info["latency_ratio"] == pytest.approx(info["latency_s"] / env.base)
    with pytest.raises(GnnrlError, match="cannot be met"):  # mostly fixed cost: a 50% latency cut is out of reach
        DNNGraphEnv(graph, val, EnvConfig(budget=0.5, metric="latency", bn_recal=0),
                    latency=LatencyModel(1, (1.0, 1e-10, 1e-8), ()))


def test_latency_search_reports_prediction_and_measurement_and_resumes_with_its_model(
        cifar: Cifar, tmp_path: Path) -> None:
    config = SearchConfig(episodes=4, warmup=2, val_size=100, agent=DDPGConfig(channels=16, hidden=32, batch_size=8),
                          env=EnvConfig(bn_recal=64, max_steps=3, metric="latency", budget=0.9, latency_batch=32,
                                        measured_landing=0))  # real timing against a fake model: no landing
    model = create("resnet20", weights=default_weights("resnet20"))
    graph = trace(model, torch.zeros(1, 3, 32, 32))
    fitted = fit_latency_model(graph, batch_size=32, networks=6, measure=_fake_measure(graph.example_input))
    first = search(model, cifar, config, out_dir=tmp_path, progress=False, latency=fitted,
                   on_episode_end=lambda rec: rec["episode"] == 2)
    saved = json.loads((tmp_path / "policy.json").read_text())["latency"]
    assert 0.88 <= first.latency_ratio <= 0.9 and saved["predicted_ratio"] == first.latency_ratio
    assert first.measured_latency_ratio is not None and first.measured_latency_ratio > 0  # real timing: any value
    resumed = search(model, cifar, config, out_dir=tmp_path, resume=True, progress=False)
    assert json.loads((tmp_path / "policy.json").read_text())["latency"]["model"] == saved["model"]
    assert resumed.history[:2] == first.history[:2] and len(resumed.history) == 4
    assert all(0.88 <= h["latency_ratio"] <= 0.9 for h in resumed.history)
