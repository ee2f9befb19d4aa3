"""Latency on the deploy engine: timing helpers, the per-layer table, its fit, width rounding, the budget check.

No test depends on this machine's speed: clocks, layer timings and network timings are injected. The engines
themselves are run only for their outputs (an ONNX layer against torch's own conv), never for their speed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gnnrl import channel_groups, create, trace
from gnnrl.data import Cifar
from gnnrl.engines import BUSY_SHARE, CpuMeter, Engine, _onnx_layer, budget_check, conv_key, interleaved_ratios, seconds
from gnnrl.env import DNNGraphEnv, EnvConfig, allowed_removed
from gnnrl.errors import GnnrlError
from gnnrl.export import ort_session
from gnnrl.latency import LayerTable, TableModel, channel_granularity, fit_table_model, latency_from_dict, layer_keys
from gnnrl.methods.heuristic import l1_global_removed, uniform_internal_removed
from gnnrl.prune import apply_plan, make_plan


class FakeClock:
    """A clock that advances by a fixed step at every reading."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def fake_layer_seconds(key: tuple) -> float:
    """A deterministic 'timing' of a layer: its MACs, with widths off a multiple of 8 twice as slow."""
    if key[0] == "conv":
        cin, cout, kh, kw, sh, sw, *_, groups, h, w = key[1:]
        macs = cout * (cin // groups) * kh * kw * (h // sh) * (w // sw)
        slow = 2.0 if cin % 8 or cout % 8 else 1.0
    else:
        macs, slow = key[1] * key[2], 1.0
    return 1e-9 * macs * slow + 1e-6


def pruned_convs(module: nn.Module) -> list[tuple[int, int, int]]:
    return [(m.in_channels, m.out_channels, m.groups) for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_seconds_is_the_median_and_alternates_in_interleaved_rounds() -> None:
    calls: list[str] = []
    clock = FakeClock(1e-3)
    assert seconds(lambda: calls.append("a"), clock, warmup=1, min_reps=3, max_reps=3) == pytest.approx(1e-3)
    assert len(calls) == 4  # one warm-up call, three timed
    order: list[str] = []
    ratios, base = interleaved_ratios(lambda: order.append("a"), lambda: order.append("b"), rounds=2,
                                      clock=FakeClock(1e-3))
    firsts = [order[0], order[len(order) // 2]]
    assert firsts == ["a", "b"] and ratios == pytest.approx([1.0, 1.0]) and len(base) == 2


def test_onnx_layer_computes_the_conv_relu_it_is_keyed_by() -> None:
    conv = nn.Conv2d(16, 24, 3, stride=2, padding=1, groups=8)
    key = conv_key(conv, 16, 24, (12, 12))
    model, x = _onnx_layer(key, batch=2)
    import onnx
    from onnx import numpy_helper

    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load_from_string(model)
               .graph.initializer}
    want = torch.relu(nn.functional.conv2d(x, weights["w"], weights["b"], stride=2, padding=1, groups=8))
    got = ort_session(model, threads=1).run(None, {"x": x.numpy()})[0]
    assert got.shape == (2, 24, 6, 6) and np.allclose(got, want.numpy(), atol=1e-4)
    depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
    assert conv_key(depthwise, 20, 20, (8, 8))[11] == 20  # depthwise: groups follow the kept channels


def test_layer_keys_are_the_shapes_of_the_pruned_network() -> None:
    for name in ("resnet20", "cifar_mobilenet_v2"):
        graph = trace(create(name), torch.zeros(1, 3, 32, 32))
        rng = np.random.default_rng(0)
        plan = make_plan(graph, {g.id: float(rng.uniform(0, 0.8)) for g in channel_groups(graph) if g.prunable})
        keys = [k for k in layer_keys(graph, plan.keep) if k[0] == "conv"]
        pruned = apply_plan(graph, plan)
        # ground truth: the channels and groups of the convs of the network actually built
        assert sorted((k[1], k[2], k[11]) for k in keys) == sorted(pruned_convs(pruned))


def test_layer_table_times_each_configuration_once_and_keeps_it_on_disk(tmp_path: Path) -> None:
    engine = Engine("onnxruntime", 1, 1)
    timed: list[tuple] = []
    path = tmp_path / "table.json"
    table = LayerTable(engine, measure=lambda k: timed.append(k) or fake_layer_seconds(k), path=path)
    keys = [("linear", 8, 10), ("linear", 8, 10), ("linear", 16, 10)]
    values = [table(k) for k in keys]
    assert len(timed) == 2 and values[0] == values[1]
    table.save()
    again = LayerTable(engine, measure=lambda k: pytest.fail("the saved table should answer"), path=path)
    assert again(("linear", 16, 10)) == values[2]
    # another machine's or engine's table, or a damaged file, is not used
    other = LayerTable(Engine("torch", 1, 1), measure=fake_layer_seconds, path=path)
    assert other.entries == {}
    path.write_text('{"fingerprint": ')
    assert LayerTable(engine, measure=fake_layer_seconds, path=path).entries == {}


def test_a_layer_timed_on_a_busy_machine_is_used_but_not_cached(tmp_path: Path) -> None:
    """A layer whose timing got little CPU (the 'engine' sleeps, as a process waiting for a core does) answers
    this run but is not written to the cache, with a warning; a table cached by version 1 (which kept such timings:
    they read down to 0.42× of a quiet re-timing) is not read."""
    engine = Engine("onnxruntime", 1, 1)
    path = tmp_path / "table.json"

    def measure(key: tuple) -> float:
        if key[1] == 16:
            time.sleep(0.02)  # waiting, not computing
        return fake_layer_seconds(key)
    table = LayerTable(engine, measure=measure, path=path)
    quiet, busy = table(("linear", 8, 10)), table(("linear", 16, 10))
    assert busy == fake_layer_seconds(("linear", 16, 10)) and table.busy == {json.dumps(["linear", 16, 10])}
    with pytest.warns(UserWarning, match="1 latency-table entries were timed on a busy machine"):
        table.save()
    again = LayerTable(engine, measure=lambda k: pytest.fail("the quiet entry is cached"), path=path)
    assert again(("linear", 8, 10)) == quiet and json.dumps(["linear", 16, 10]) not in again.entries
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "version": 1}))
    assert LayerTable(engine, measure=fake_layer_seconds, path=path).entries == {}


def test_table_model_fit_recovers_a_network_made_of_its_layers_and_round_trips() -> None:
    graph = trace(create("resnet20"), torch.zeros(1, 3, 32, 32))
    engine = Engine("onnxruntime", 1, 1)
    table = LayerTable(engine, measure=fake_layer_seconds)

    def truth(module: nn.Module) -> float:  # the 'engine': 0.8 × its layers + 1 ms of dispatch
        sub = trace(module, torch.zeros(1, 3, 32, 32))
        return 0.8 * sum(table(k) for k in layer_keys(sub, np.ones(_units(sub), dtype=bool))) + 1e-3

    fitted = fit_table_model(graph, engine, round_to=8, networks=6, table=table,
                             network_seconds=lambda pruned, original: (truth(pruned), truth(original)))
    assert fitted.coef[1] == pytest.approx(0.8, rel=1e-6) and fitted.coef[0] == pytest.approx(1e-3, rel=1e-4)
    assert fitted.max_relative_error < 1e-6
    rng = np.random.default_rng(5)
    plan = make_plan(graph, {g.id: float(rng.uniform(0, 0.9)) for g in channel_groups(graph) if g.prunable})
    assert fitted.predict_plan(graph, plan) == pytest.approx(truth(apply_plan(graph, plan)), rel=1e-6)
    loaded = latency_from_dict(json.loads(json.dumps(fitted.to_dict())),
                               measure=lambda k: pytest.fail("a saved model answers what it was fitted with"))
    base = make_plan(graph, 0.0)
    assert isinstance(loaded, TableModel) and loaded.predict_plan(graph, base) == fitted.predict_plan(graph, base)


def _units(graph) -> int:  # type: ignore[no-untyped-def]
    from gnnrl.groups import analyze

    return analyze(graph).num_units


def test_channel_granularity_finds_the_multiple_that_pays() -> None:
    def blocked(block: int):  # type: ignore[no-untyped-def]
        return lambda width: width**2 * (1.0 if width % block == 0 else 1.6)

    assert channel_granularity(Engine(), blocked(16)) == 16
    assert channel_granularity(Engine(), blocked(8)) == 8
    assert channel_granularity(Engine(), lambda width: float(width**2)) == 1  # time ∝ MACs: rounding never pays


def test_allowed_removed_counts_keep_multiples_or_the_whole_group() -> None:
    assert allowed_removed(np.arange(64), 16).tolist() == [0, 16, 32, 48]
    assert allowed_removed(np.arange(20), 8).tolist() == [0, 4, 12]
    assert allowed_removed(np.arange(16).reshape(8, 2), 4).tolist() == [0, 2, 4, 6]  # 2 units per step
    assert allowed_removed(np.arange(8), 16).tolist() == [0]  # too narrow: stays whole


@pytest.mark.parametrize("name", ["resnet20", "cifar_mobilenet_v2"])
def test_every_method_lands_on_rounded_widths_within_the_budget(cifar: Cifar, name: str) -> None:
    val = cifar.split("val").balanced_subset(8)
    graph = trace(create(name), torch.zeros(1, 3, 32, 32))
    env = DNNGraphEnv(graph, val, EnvConfig(budget=0.5, round_to=8, bn_recal=0))
    rng = np.random.default_rng(0)
    landed = [uniform_internal_removed(env), l1_global_removed(env)]
    for episode in range(8):
        env.reset(seed=episode)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step([1.0, 0.1, 0.4, 0.02][episode % 4] * rng.random(env.action_space.shape))
        landed.append(info["removed"])
    for removed in landed:
        assert env.metric_of(removed) <= 0.5 * env.base
        module = apply_plan(graph, env.plan_for(removed))
        original = dict(pruned_convs_named(graph.module))
        for layer, (_cin, cout) in pruned_convs_named(module):
            assert cout == original[layer][1] or cout % 8 == 0, (layer, cout)


def pruned_convs_named(module: nn.Module) -> list[tuple[str, tuple[int, int]]]:
    return [(n, (m.in_channels, m.out_channels)) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def test_latency_descriptors_say_where_channels_are_cheap(cifar: Cifar) -> None:
    val = cifar.split("val").balanced_subset(8)
    graph = trace(create("resnet20"), torch.zeros(1, 3, 32, 32))
    engine = Engine()
    table = LayerTable(engine, measure=fake_layer_seconds)
    model = TableModel(engine, table, (1e-4, 1.0, 0.0), ())
    env = DNNGraphEnv(graph, val, EnvConfig(budget=0.6, metric="latency", round_to=8, bn_recal=0), latency=model)
    d = env.group_descriptors()
    assert d.shape == (len(env.group_ids), 6) and d[:, 4:].max() == pytest.approx(1.0) and (d[:, 4:] >= 0).all()
    # the group whose cut alone saves the most predicted latency is the one the descriptor ranks first
    saved = []
    for i in range(len(env.group_ids)):
        alone = np.zeros(len(env.group_ids), dtype=np.int64)
        alone[i] = env.most[i]
        saved.append(env.base - env.metric_of(alone))
    assert int(np.argmax(d[:, 4])) == int(np.argmax(saved))
    with pytest.raises(GnnrlError, match=r"leaves 0\.\d+ of the predicted latency on onnxruntime.*ask for"):
        DNNGraphEnv(graph, val, EnvConfig(budget=0.1, metric="latency", round_to=8, bn_recal=0), latency=model)


def test_budget_check_reports_each_networks_ratio_to_the_original() -> None:
    engine = Engine("torch", 1, 2)
    small, big = nn.Linear(4, 2), nn.Linear(4, 2)
    clock = FakeClock(1e-3)
    out = budget_check(engine, {"pruned": small}, big, torch.zeros(1, 4), rounds=3, clock=clock)
    assert out["pruned"]["ratio"] == pytest.approx(1.0) and out["pruned"]["rounds"] == 3
    assert list(out) == ["pruned"] and out["pruned"]["cpu_share"] is not None


def test_the_cpu_meter_tells_a_busy_machine_from_a_quiet_one() -> None:
    """The share is CPU seconds per wall second per thread: a timing that got half the CPU it asked for (others took
    the cores) is busy, one that got all of it is not; a sleeping block gets no CPU on any machine."""
    def meter(cpu_per_wall: float, threads: int = 1) -> CpuMeter:
        wall, cpu = FakeClock(1.0), FakeClock(cpu_per_wall)
        m = CpuMeter(threads, cpu_clock=cpu, wall_clock=wall)
        with m.timing():
            pass
        return m

    assert meter(1.0).share == pytest.approx(1.0) and not meter(1.0).busy
    assert meter(0.5).share == pytest.approx(0.5) and meter(0.5).busy
    assert meter(2.0, threads=2).share == pytest.approx(1.0) and meter(1.0, threads=2).busy  # per thread asked for
    assert CpuMeter().share is None and not CpuMeter().busy  # nothing timed: no verdict
    real = CpuMeter()
    with real.timing():
        time.sleep(0.05)
    assert real.share is not None and real.share < BUSY_SHARE and real.busy


def test_auto_rounding_is_measured_once_per_machine_and_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import gnnrl.latency as latency

    monkeypatch.setenv("GNNRL_CACHE", str(tmp_path))
    calls: list[Engine] = []
    monkeypatch.setattr(latency, "channel_granularity", lambda engine, meter=None: calls.append(engine) or 8)
    assert latency.cached_granularity(Engine()) == 8 and latency.cached_granularity(Engine()) == 8
    assert len(calls) == 1  # the second answer came from the cache
    assert latency.cached_granularity(Engine("torch")) == 8 and len(calls) == 2  # another engine: measured
    for f in (tmp_path / "latency").glob("granularity-*"):
        f.write_text("{broken")
    assert latency.cached_granularity(Engine()) == 8 and len(calls) == 3  # a damaged cache is measured again


def test_auto_rounding_measured_on_a_busy_machine_is_used_but_not_cached(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gnnrl.latency as latency

    monkeypatch.setenv("GNNRL_CACHE", str(tmp_path))

    def waited(engine: Engine, meter: CpuMeter) -> int:  # a timing that got no CPU: others held the cores
        with meter.timing():
            time.sleep(0.05)
        return 16

    monkeypatch.setattr(latency, "channel_granularity", waited)
    with pytest.warns(UserWarning, match="channel granularity .* busy machine"):
        assert latency.cached_granularity(Engine()) == 16
    assert not list((tmp_path / "latency").glob("granularity-*"))  # nothing kept for later runs
