"""Search methods: every baseline lands on the budget through the shared env; each one's defining property."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_search import TINY

from gnnrl import create, trace
from gnnrl.cli import main
from gnnrl.data import Cifar
from gnnrl.errors import GnnrlError
from gnnrl.groups import analyze
from gnnrl.methods import method_names
from gnnrl.methods.heuristic import l1_global_removed, uniform_internal_removed
from gnnrl.paths import default_weights
from gnnrl.prune import unit_scores
from gnnrl.search import make_env, search

TIMINGS = {"seconds", "agent_s", "build_s", "recal_s", "eval_s", "round_eval_s"}


def r20() -> torch.nn.Module:
    return create("resnet20", weights=default_weights("resnet20"))


@pytest.mark.parametrize("method", method_names())
def test_every_method_lands_on_the_budget(cifar: Cifar, method: str) -> None:
    result = search(r20(), cifar, replace(TINY, method=method), progress=False)
    one_shot = method in ("uniform", "uniform-internal", "l1-global")
    assert len(result.history) == (1 if one_shot else TINY.episodes)
    assert all(0.5 - TINY.env.tolerance - 0.01 <= h["macs_ratio"] <= 0.5 for h in result.history), method
    assert result.val_top1 == max(h["val_top1"] for h in result.history)


def test_summed_groups_are_the_residual_streams() -> None:
    import torchvision

    a = analyze(trace(r20(), torch.zeros(1, 3, 32, 32)))
    summed = [g for g in a.groups if g.summed]
    # option-A ResNet: the three stages' streams are one group (the zero-pad shortcut joins them)
    assert len(summed) == 1 and "layer1.0.conv2" in summed[0].members and "layer3.2.conv2" in summed[0].members
    assert not any(m.endswith("conv1") and m != "conv1" for m in summed[0].members)
    r18 = analyze(trace(torchvision.models.resnet18(), torch.zeros(1, 3, 64, 64)))
    assert sum(g.summed for g in r18.groups) == 4  # one stream per stage (projection shortcuts)
    vgg = analyze(trace(torchvision.models.vgg11(), torch.zeros(1, 3, 32, 32)))
    assert not any(g.summed for g in vgg.groups)


def test_uniform_internal_keeps_the_stream_and_prunes_the_rest_alike(cifar: Cifar) -> None:
    env = make_env(r20(), cifar, TINY)
    removed = uniform_internal_removed(env)
    summed = np.array([env.analysis.groups[g].summed for g in env.group_ids])
    assert (removed[summed] == 0).all()
    ratios = removed[~summed] / env.sizes[~summed]
    assert ratios.max() - ratios.min() <= 1 / env.sizes[~summed].min() + 1e-9  # one ratio, up to rounding
    reward, info = env.finish(removed)
    assert 0.48 <= info["macs_ratio"] <= 0.5 and reward == -(1 - info["accuracy"])


def test_l1_global_removes_exactly_the_units_below_one_threshold(cifar: Cifar) -> None:
    env = make_env(r20(), cifar, TINY)
    removed = l1_global_removed(env)
    scores = unit_scores(env.graph)
    normed = [scores[o] / scores[o].mean() for o in env.order]
    gone = np.concatenate([s[:r] for s, r in zip(normed, removed, strict=True)])
    kept = np.concatenate([s[r:] for s, r, n in zip(normed, removed, env.sizes, strict=True) if r < n - 1])
    assert gone.max() < kept.min()
    cost = env.metric_of(removed) / env.base
    assert cost <= 0.5 and env.metric_of(np.maximum(removed - 1, 0)) / env.base > 0.5 - 0.05


def test_random_search_draws_the_gnnrl_warmup(cifar: Cifar) -> None:
    rand = search(r20(), cifar, replace(TINY, method="random"), progress=False)
    agent = search(r20(), cifar, TINY, progress=False)
    warm = TINY.warmup
    assert [h["removed"] for h in rand.history[:warm]] == [h["removed"] for h in agent.history[:warm]]
    assert {h["phase"] for h in rand.history} == {"random"}


def test_amc_is_deterministic_and_resumes_exactly(cifar: Cifar, tmp_path: Path) -> None:
    config = replace(TINY, method="amc")
    straight = search(r20(), cifar, config, out_dir=tmp_path / "a", progress=False)
    search(r20(), cifar, config, out_dir=tmp_path / "b", progress=False,
           on_episode_end=lambda rec: rec["episode"] == 3)
    resumed = search(r20(), cifar, config, out_dir=tmp_path / "b", resume=True, progress=False)
    strip = [{k: v for k, v in h.items() if k not in TIMINGS} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in TIMINGS} for h in resumed.history] == strip
    assert straight.history[-1]["phase"] == "agent" and "agent/critic_loss" in straight.history[-1]
    assert straight.history[-1]["steps"] == len(straight.group_ids)  # one step per group
    assert json.loads((tmp_path / "a" / "policy.json").read_text())["method"] == "amc"


def test_an_amc_run_resumes_after_the_gnn_agent_defaults_changed(cifar: Cifar, tmp_path: Path) -> None:
    """AMC reads none of the m-GNN agent's settings: a run made when their defaults were others resumes exactly,
    while a GNN-RL run made so is still refused."""
    from gnnrl.errors import GnnrlError

    old = replace(TINY, method="amc", agent=replace(TINY.agent, head="graph", pretrain_updates=0, descriptors=False))
    straight = search(r20(), cifar, replace(TINY, method="amc"), progress=False)
    search(r20(), cifar, old, out_dir=tmp_path / "amc", progress=False, on_episode_end=lambda rec: rec["episode"] == 3)
    resumed = search(r20(), cifar, replace(TINY, method="amc"), out_dir=tmp_path / "amc", resume=True, progress=False)
    strip = [{k: v for k, v in h.items() if k not in TIMINGS} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in TIMINGS} for h in resumed.history] == strip
    gnn = replace(old, method="gnnrl")
    search(r20(), cifar, gnn, out_dir=tmp_path / "gnn", progress=False, on_episode_end=lambda rec: rec["episode"] == 1)
    with pytest.raises(GnnrlError, match=r"agent\.head: 'graph' → 'groups'"):
        search(r20(), cifar, TINY, out_dir=tmp_path / "gnn", resume=True, progress=False)


def test_cli_method_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u"
    rc = main(["search", "--model", "resnet20", "--method", "uniform-internal", "--episodes", "2", "--val-size",
               "100", "--bn-recal", "64", "--out", str(out), "--quiet"])
    assert rc == 0
    policy = json.loads((out / "policy.json").read_text())
    assert policy["method"] == "uniform-internal" and policy["episodes_run"] == 1
    assert "uniform-internal" in capsys.readouterr().out


def test_unknown_method_is_refused(cifar: Cifar) -> None:
    from gnnrl.errors import GnnrlError

    with pytest.raises(GnnrlError, match="unknown search method"):
        search(r20(), cifar, replace(TINY, method="greedy"), progress=False)


def test_a_setting_added_later_at_its_default_is_no_difference() -> None:
    from gnnrl.checkpoint import differences

    old = {"agent": {"tau": 0.01}, "seed": 0}  # a checkpoint written before `candidates` existed
    defaults = {"agent": {"candidates": 1}}  # what the search did then
    assert differences(old, {"agent": {"tau": 0.01, "candidates": 1}, "seed": 0}, defaults=defaults) == ""
    assert "agent.candidates: None → 32" in differences(old, {"agent": {"tau": 0.01, "candidates": 32}, "seed": 0},
                                                       defaults=defaults)
    assert "seed: 0 → 1" in differences(old, {"agent": {"tau": 0.01, "candidates": 1}, "seed": 1}, defaults=defaults)


def test_pretraining_on_the_warmup_moves_the_first_agent_actions(cifar: Cifar) -> None:
    from gnnrl.agent import DDPGConfig

    plain = search(r20(), cifar, TINY, progress=False)
    agent = replace(TINY.agent, pretrain_updates=20, candidates=4)
    assert isinstance(agent, DDPGConfig)
    tuned = search(r20(), cifar, replace(TINY, agent=agent), progress=False)
    warm = TINY.warmup
    assert [h["removed"] for h in tuned.history[:warm]] == [h["removed"] for h in plain.history[:warm]]
    assert tuned.history[warm]["removed"] != plain.history[warm]["removed"]
    assert all("q_predicted" in h for h in tuned.history)


def test_a_checkpoint_in_the_layout_before_methods_resumes(cifar: Cifar, tmp_path: Path) -> None:
    from gnnrl.errors import GnnrlError
    from gnnrl.files import torch_save

    # what the search did before `candidates` and `pretrain_updates`
    plain = replace(TINY, agent=replace(TINY.agent, candidates=1, pretrain_updates=0))
    straight = search(r20(), cifar, plain, progress=False)
    out = tmp_path / "old"
    search(r20(), cifar, plain, out_dir=out, progress=False, on_episode_end=lambda rec: rec["episode"] == 3)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    old = {k: v for k, v in ckpt.items() if k not in ("method", "state")} | ckpt["method"] | ckpt["state"]
    del old["config"]["method"], old["config"]["agent"]["candidates"], old["config"]["agent"]["pretrain_updates"]
    torch_save(old, out / "checkpoint.pt")
    with pytest.raises(GnnrlError, match=r"agent\.candidates: None → 32"):  # today's default is another search
        search(r20(), cifar, TINY, out_dir=out, resume=True, progress=False)
    resumed = search(r20(), cifar, plain, out_dir=out, resume=True, progress=False)
    assert [h["removed"] for h in resumed.history] == [h["removed"] for h in straight.history]


def test_a_method_of_ones_own_is_one_file(cifar: Cifar, tmp_path: Path) -> None:
    """tests/toy_method.py registers 'hill-climb'; search, resume, the stored policy and the CLI take it by name."""
    import toy_method  # noqa: F401  (registers on import, as a user's module would)

    from gnnrl.methods import method_names, unregister_method

    try:
        assert "hill-climb" in method_names()
        config = replace(TINY, method="hill-climb")
        straight = search(r20(), cifar, config, out_dir=tmp_path / "a", progress=False)
        assert len(straight.history) == TINY.episodes  # not one-shot: every episode runs
        assert all(0.5 - TINY.env.tolerance - 0.01 <= h["macs_ratio"] <= 0.5 for h in straight.history)
        search(r20(), cifar, config, out_dir=tmp_path / "b", progress=False,
               on_episode_end=lambda rec: rec["episode"] == 1)  # "killed" after episode 1
        resumed = search(r20(), cifar, config, out_dir=tmp_path / "b", resume=True, progress=False)
        assert [h["removed"] for h in resumed.history] == [h["removed"] for h in straight.history]
        assert json.loads((tmp_path / "b" / "policy.json").read_text())["method"] == "hill-climb"
        # the method reads no agent setting, so an agent setting changed since does not refuse the resume
        other_agent = replace(config, agent=replace(config.agent, hidden=64))
        search(r20(), cifar, other_agent, out_dir=tmp_path / "b", resume=True, progress=False)
        code = main(["search", "--model", "resnet20", "--method", "hill-climb", "--episodes", "2", "--val-size",
                     "50", "--bn-recal", "32", "--out", str(tmp_path / "cli"), "--quiet"])
        assert code == 0
        assert json.loads((tmp_path / "cli" / "policy.json").read_text())["method"] == "hill-climb"
    finally:
        unregister_method("hill-climb")
    with pytest.raises(GnnrlError, match="unknown search method 'hill-climb'; choose one of gnnrl, random"):
        search(r20(), cifar, replace(TINY, method="hill-climb"), progress=False)


def test_a_method_name_is_registered_once() -> None:
    from gnnrl.methods import register_method

    with pytest.raises(GnnrlError, match="registered already"):
        register_method("gnnrl")(lambda env, config: None)
