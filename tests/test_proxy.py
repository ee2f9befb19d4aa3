"""Reward 'tuned': the short distilled fine-tune every candidate gets before it is measured — deterministic per
policy (so cached, resumed and parallel searches agree), it really trains, and a search runs and resumes with it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_search import TINY

from gnnrl import create, trace
from gnnrl.cli import main
from gnnrl.data import Cifar
from gnnrl.env import DNNGraphEnv, EnvConfig
from gnnrl.errors import GnnrlError
from gnnrl.images import normalize
from gnnrl.paths import default_weights
from gnnrl.proxy import short_finetune, tune_set
from gnnrl.prune import prune
from gnnrl.search import make_env, search

TUNED = replace(TINY, env=replace(TINY.env, reward="tuned", reward_steps=6, reward_batch=16))


def r20() -> torch.nn.Module:
    return create("resnet20", weights=default_weights("resnet20"))


def _kd_gap(module: torch.nn.Module, tune) -> float:  # type: ignore[no-untyped-def]
    """Mean KL from the teacher's logits on the tune set, in eval mode."""
    module.eval()
    with torch.no_grad():
        out = module(normalize(tune.images, tune.mean, tune.std))
    return float(F.kl_div(F.log_softmax(out, 1), F.log_softmax(tune.teacher_logits, 1), reduction="batchmean",
                          log_target=True))


def test_short_finetune_is_deterministic_and_trains(cifar: Cifar) -> None:
    base = r20()
    split = cifar.split("train").balanced_subset(256, seed=2)
    tune = tune_set(base, split.images, split.labels, split.mean, split.std)
    assert tune.teacher_logits.shape == (256, 10)
    graph = trace(base, torch.zeros(1, 3, 32, 32))
    a, b = (prune(graph, ratios=0.6).module for _ in range(2))
    before = _kd_gap(a, tune)
    short_finetune(a, tune, steps=20, batch_size=32)
    short_finetune(b, tune, steps=20, batch_size=32)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name  # the same policy always gets the same reward
    assert _kd_gap(a, tune) < 0.5 * before  # and the steps really move it towards the original
    assert not a.training


def test_the_tuned_reward_needs_a_tune_set_and_valid_settings(cifar: Cifar) -> None:
    val = cifar.split("val").balanced_subset(20)
    with pytest.raises(GnnrlError, match="needs a tune set"):
        DNNGraphEnv(r20(), val, EnvConfig(reward="tuned", bn_recal=0))
    with pytest.raises(GnnrlError, match="reward_steps and reward_batch must be at least 1"):
        EnvConfig(reward="tuned", reward_steps=0).validate()


def test_a_search_with_the_tuned_reward_runs_and_resumes(cifar: Cifar, tmp_path: Path) -> None:
    straight = search(r20(), cifar, TUNED, out_dir=tmp_path / "a", progress=False)
    search(r20(), cifar, TUNED, out_dir=tmp_path / "b", progress=False,
           on_episode_end=lambda rec: rec["episode"] == 2)  # "killed" after episode 2
    resumed = search(r20(), cifar, TUNED, out_dir=tmp_path / "b", resume=True, progress=False)
    assert [h["removed"] for h in resumed.history] == [h["removed"] for h in straight.history]
    assert [h["reward"] for h in resumed.history] == [h["reward"] for h in straight.history]
    plain = make_env(r20(), cifar, TINY)
    tuned = make_env(r20(), cifar, TUNED)
    removed = np.array(straight.removed)
    # the reward is the accuracy after the short fine-tune: not the plain one, and higher on a pruned network
    assert tuned.evaluate_removed(removed) > plain.evaluate_removed(removed)
    assert tuned.evaluate_removed(removed) == pytest.approx(straight.val_top1 / 100)


def test_cli_takes_the_reward_flags(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["search", "--model", "resnet20", "--method", "uniform-internal", "--episodes", "2", "--val-size",
                 "50", "--bn-recal", "32", "--reward", "tuned", "--reward-steps", "3", "--reward-batch", "8",
                 "--out", str(out), "--quiet"]) == 0
    env = json.loads((out / "policy.json").read_text())["config"]["env"]
    assert (env["reward"], env["reward_steps"], env["reward_batch"]) == ("tuned", 3, 8)


def test_the_report_says_the_reward_was_measured_after_a_short_finetune(tmp_path: Path) -> None:
    from gnnrl.report import collect, markdown

    (tmp_path / "search").mkdir()
    (tmp_path / "run.json").write_text(json.dumps({"model": {"name": "resnet20"}, "budget": 0.3, "metric": "macs"}))
    policy = {"val_top1": 56.8, "uniform_val_top1": 40.1, "episode": 7, "episodes_run": 60, "method": "gnnrl",
              "config": {"env": {"reward": "tuned", "reward_steps": 50, "reward_batch": 64}}}
    (tmp_path / "search" / "policy.json").write_text(json.dumps(policy))
    text = markdown(collect(tmp_path))
    assert "best val top-1 56.80 % at episode 7" in text
    assert "after a short distilled fine-tune of 50 steps × 64 images (--reward tuned)" in text
    policy["config"]["env"]["reward"] = "accuracy"
    (tmp_path / "search" / "policy.json").write_text(json.dumps(policy))
    assert "before fine-tuning, BatchNorm re-estimated" in markdown(collect(tmp_path))
