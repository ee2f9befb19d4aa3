"""The finalists' selection: who is put forward, how each is scored, resume, and the policy file it writes."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from test_search import TINY
from torch.utils.flop_counter import FlopCounterMode

import gnnrl
from gnnrl.data import Cifar
from gnnrl.env import EnvConfig, uniform_removed
from gnnrl.identity import weights_fingerprint
from gnnrl.methods.heuristic import uniform_internal_removed
from gnnrl.paths import default_weights
from gnnrl.policy import apply_policy
from gnnrl.search import make_env
from gnnrl.selection import Finalist, candidates, chosen_policy, score, select, selection_tune_set

CONFIG = replace(TINY, env=EnvConfig(budget=0.4, bn_recal=64, max_steps=3))
STEPS, BATCH = 12, 32


@pytest.fixture(scope="module")
def setup(cifar: Cifar):  # type: ignore[no-untyped-def]
    model = gnnrl.create("resnet20", weights=default_weights("resnet20"))
    env = make_env(model, cifar, CONFIG)
    return model, env, selection_tune_set(model, cifar, CONFIG.val_from, STEPS, BATCH)


def _history(env) -> list[dict]:  # type: ignore[no-untyped-def]
    """A search's history: two records of one policy (the rule 'uniform'), a worse one, a better one."""
    uni = [int(r) for r in uniform_removed(env)]
    other = list(np.minimum(np.asarray(uni) + 8, env.most))
    third = [int(r) for r in env.most]
    return [{"episode": 1, "reward": -0.5, "removed": uni}, {"episode": 2, "reward": -0.9, "removed": third},
            {"episode": 3, "reward": -0.4, "removed": [int(r) for r in other]},
            {"episode": 4, "reward": -0.5, "removed": uni}]


def test_candidates_are_the_distinct_best_and_the_rules(setup) -> None:  # type: ignore[no-untyped-def]
    model, env, _ = setup
    hist = _history(env)
    pool = candidates(env, hist, top=2)
    # by reward, one entry per policy: episode 3, then the uniform policy (first seen at episode 1)
    assert [c.name for c in pool] == ["search #1 (episode 3)", "search #2 (episode 1) = uniform", "uniform-internal"]
    assert pool[1].removed == tuple(hist[0]["removed"])
    assert pool[2].removed == tuple(int(r) for r in uniform_internal_removed(env))
    for c in pool:  # the MACs ratio is PyTorch's count of the pruned network, not the cost model's own
        pruned = apply_policy(model, chosen_policy(_policy(model), env, [_fin(c)]))
        with FlopCounterMode(display=False) as fc:
            pruned.module(env.graph.example_input)
        with FlopCounterMode(display=False) as fo:
            model(env.graph.example_input)
        assert c.macs_ratio == pytest.approx(fc.get_total_flops() / fo.get_total_flops(), rel=1e-6)
        assert c.metric_ratio == pytest.approx(c.macs_ratio) and c.metric_ratio <= CONFIG.env.budget + 1e-9


def _policy(model) -> dict:  # type: ignore[no-untyped-def]
    """What a search's policy.json says of the model (chosen_policy keeps it and rewrites the channels)."""
    return {"model": asdict(model.gnnrl_spec), "input_shape": [1, 3, 32, 32],
            "weights_sha256": weights_fingerprint(model), "config": {"env": {"importance": "l1"}}}


def _fin(c):  # type: ignore[no-untyped-def]
    return Finalist(c, 0.0, 0.0)


def test_scores_are_a_function_of_the_policy_and_the_short_finetune_helps(setup) -> None:  # type: ignore
    _, env, tune = setup
    cand = candidates(env, [], top=0, rules=("uniform",))[0]
    a, b = score(env, cand, tune, STEPS, BATCH), score(env, cand, tune, STEPS, BATCH)
    assert a.tuned_top1 == b.tuned_top1  # same batches, same start: the same score
    # at 40 % of the MACs the network straight after pruning is far below what a dozen distilled steps give
    assert a.tuned_top1 > cand.reward_top1 + 5


def test_select_ranks_resumes_and_writes_a_policy_that_replays(setup, tmp_path: Path) -> None:  # type: ignore
    model, env, tune = setup
    pool = candidates(env, _history(env), top=1)
    seen: list[str] = []
    ranked = select(env, pool, tune, STEPS, BATCH, out=tmp_path, on_score=lambda f: seen.append(f.candidate.name))
    assert seen == [c.name for c in pool] and len(ranked) == len(pool)
    assert [f.tuned_top1 for f in ranked] == sorted((f.tuned_top1 for f in ranked), reverse=True)
    # a rerun reads each score back (shown by a planted value), but rescores a file of another policy
    saved = json.loads((tmp_path / "finalist-1.json").read_text())
    (tmp_path / "finalist-1.json").write_text(json.dumps({**saved, "tuned_top1": 99.5}))
    other = json.loads((tmp_path / "finalist-2.json").read_text())
    other["candidate"]["removed"][0] += 1
    (tmp_path / "finalist-2.json").write_text(json.dumps({**other, "tuned_top1": 99.9}))
    again = select(env, pool, tune, STEPS, BATCH, out=tmp_path)
    assert again[0].candidate == pool[1] and again[0].tuned_top1 == 99.5
    assert {f.candidate.name: f.tuned_top1 for f in again}[pool[2].name] == \
        {f.candidate.name: f.tuned_top1 for f in ranked}[pool[2].name]
    # scored another way (more steps), a saved score no longer stands
    other_way = select(env, pool[:2], tune, STEPS + 1, BATCH, out=tmp_path)
    assert 99.5 not in [f.tuned_top1 for f in other_way]
    # the winner's policy file replays exactly the winner's channels
    policy = chosen_policy(_policy(model), env, again)
    assert policy["selection"]["chosen"] == pool[1].name and len(policy["selection"]["finalists"]) == len(pool)
    pruned = apply_policy(model, policy)
    assert np.array_equal(pruned.plan.keep, env.plan_for(np.asarray(pool[1].removed)).keep)
    assert policy["macs_ratio"] == pytest.approx(pool[1].macs_ratio)
