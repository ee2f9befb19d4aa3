"""Search: outputs, determinism, and resume equivalence on tiny runs."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from gnnrl import create
from gnnrl.agent import DDPGConfig
from gnnrl.cli import main
from gnnrl.data import Cifar
from gnnrl.env import EnvConfig
from gnnrl.errors import GnnrlError
from gnnrl.paths import default_weights
from gnnrl.search import EpisodeRecord, SearchConfig, SearchState, search

TINY = SearchConfig(episodes=4, warmup=2, val_size=100, env=EnvConfig(bn_recal=64, max_steps=3),
                    agent=DDPGConfig(channels=16, hidden=32, batch_size=8))


def run(cifar: Cifar, out: Path | None, **kw):  # type: ignore[no-untyped-def]
    model = create("resnet20", weights=default_weights("resnet20"))
    return search(model, cifar, TINY, out_dir=out, progress=False, **kw)


def test_same_seed_same_policy(cifar: Cifar) -> None:
    a, b = run(cifar, None), run(cifar, None)
    assert [h["removed"] for h in a.history] == [h["removed"] for h in b.history]
    assert a.policy == b.policy and a.val_top1 == b.val_top1
    assert len(a.history) == 4 and 0.48 <= a.macs_ratio <= 0.5


def test_resume_gives_the_uninterrupted_result(cifar: Cifar, tmp_path: Path) -> None:
    straight = run(cifar, tmp_path / "a")
    run(cifar, tmp_path / "b", on_episode_end=lambda rec: rec["episode"] == 3)  # "killed" after episode 3
    assert len(json.loads((tmp_path / "b" / "policy.json").read_text())["removed"]) > 0
    resumed = run(cifar, tmp_path / "b", resume=True)
    timings = {"seconds", "agent_s", "build_s", "recal_s", "eval_s", "round_eval_s"}
    strip = [{k: v for k, v in h.items() if k not in timings} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in timings} for h in resumed.history] == strip
    assert resumed.policy == straight.policy


def test_outputs_and_resume_guard(cifar: Cifar, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(cifar, out)
    for name in ("policy.json", "history.jsonl", "rewards.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    policy = json.loads((out / "policy.json").read_text())
    assert policy["model"]["name"] == "resnet20" and policy["episodes_run"] == 4
    assert len((out / "history.jsonl").read_text().splitlines()) == 4
    with pytest.raises(GnnrlError, match="other settings"):
        search(create("resnet20", weights=default_weights("resnet20")), cifar, replace(TINY, seed=1), out_dir=out,
               resume=True, progress=False)


def test_cli_search_smoke(tmp_path: Path) -> None:
    code = main(["search", "--model", "resnet20", "--episodes", "2", "--warmup", "1", "--val-size", "50",
                 "--bn-recal", "32", "--max-steps", "2", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 0 and (tmp_path / "r" / "policy.json").is_file()


def test_the_best_record_survives_the_checkpoint_and_older_spellings() -> None:
    record = EpisodeRecord(episode=3, phase="agent", reward=-0.5, val_top1=50.0, macs_ratio=0.5, params_ratio=0.4,
                           steps=2, sigma=0.1, removed=[8, 0, 16], build_s=0.1, recal_s=0.2, eval_s=0.3,
                           agent_s=0.0, seconds=0.6, latency_ratio=0.49, critic_loss=0.25, landed=True)
    state = SearchState()
    state.add(record)
    # what the checkpoint stores (asdict) and what history.jsonl / an older checkpoint's best stored (to_dict, with
    # the losses under 'agent/…' and, from another version, a key this one does not know)
    assert SearchState.from_saved(json.loads(json.dumps(asdict(state)))).best == record
    older = {**record.to_dict(), "from_a_later_version": 1}
    assert "agent/critic_loss" in older and EpisodeRecord.from_dict(older) == record
    worse = replace(record, episode=4, reward=-0.6)
    state.add(worse)
    assert state.best == record and len(state.history) == 2
