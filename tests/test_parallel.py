"""Parallel episode evaluation: rounds of K policies give one result however (and wherever) they are evaluated."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gnnrl import create
from gnnrl.agent import DDPGConfig
from gnnrl.cli import main
from gnnrl.data import Cifar
from gnnrl.env import EnvConfig
from gnnrl.errors import GnnrlError
from gnnrl.parallel import EvalWorker, ParallelConfig, check_reachable, make_evaluator
from gnnrl.paths import default_weights
from gnnrl.search import SearchConfig, search

ROUNDS = SearchConfig(episodes=6, warmup=2, val_size=100, round_size=3, env=EnvConfig(bn_recal=64, max_steps=3),
                      agent=DDPGConfig(channels=16, hidden=32, batch_size=8))
search_module = importlib.import_module("gnnrl.search")  # the module (gnnrl.search is also the function)
TIMINGS = {"seconds", "agent_s", "build_s", "recal_s", "eval_s", "round_eval_s", "worker"}


def run(cifar: Cifar, out: Path | None = None, config: SearchConfig = ROUNDS, **kw):  # type: ignore[no-untyped-def]
    model = create("resnet20", weights=default_weights("resnet20"))
    return search(model, cifar, config, out_dir=out, progress=False, **kw)


def strip(history: list[dict]) -> list[dict]:
    """A history without what depends on timing or on who evaluated."""
    return [{k: v for k, v in h.items() if k not in TIMINGS} for h in history]


def test_round_size_changes_when_the_agent_learns_not_what_a_round_of_one_does(cifar: Cifar) -> None:
    one = run(cifar, config=replace(ROUNDS, round_size=1))
    three = run(cifar)
    # the warm-up's random draws are the same; later rounds act before learning from their siblings
    policies = [[(h["removed"], h["val_top1"]) for h in r.history] for r in (one, three)]
    assert policies[0][:2] == policies[1][:2]
    assert len(three.history) == 6 and all(h["round_eval_s"] >= 0 for h in three.history)


def test_a_run_stopped_mid_round_resumes_to_the_uninterrupted_result(cifar: Cifar, tmp_path: Path) -> None:
    straight = run(cifar, tmp_path / "a")
    run(cifar, tmp_path / "b", on_episode_end=lambda rec: rec["episode"] == 2)  # asked to stop mid-round
    # checkpoints hold whole rounds: the stop took effect at the round's end
    assert len((tmp_path / "b" / "history.jsonl").read_text().splitlines()) == 3
    resumed = run(cifar, tmp_path / "b", resume=True)
    assert strip(resumed.history) == strip(straight.history)


def test_workers_without_ray_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    code = main(["search", "--model", "resnet20", "--episodes", "4", "--workers", "2", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code != 0 and "pip install 'gnnrl[distributed]'" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # refused before any work


def test_an_unreachable_ray_address_fails_at_once() -> None:
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GnnrlError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(GnnrlError, match="not 'auto' or HOST:PORT"):
        check_reachable("nowhere")


# -- on Ray ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():  # type: ignore[no-untyped-def]
    """One local Ray instance (2 CPUs, loopback only) for this module's tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def faulty_worker(fault: dict) -> type[EvalWorker]:
    """An evaluation actor that misbehaves as `fault` says: random delays (jitter_s); exiting on the on_call-th
    call unless the file once_marker exists, creating it (once); exiting on every call while while_exists exists.
    Defined in a function, so Ray's pickler ships the class itself to the actors, not a reference to this module."""

    class FaultyWorker(EvalWorker):
        calls = 0

        def evaluate(self, removed: list[int]) -> Any:
            self.calls += 1
            if fault.get("jitter_s"):
                time.sleep(fault["jitter_s"] * int.from_bytes(os.urandom(2), "little") / 65535)
            once = fault.get("once_marker")
            if once is not None and self.calls == fault.get("on_call", 1) and not Path(once).exists():
                Path(once).touch()
                os._exit(1)
            if fault.get("while_exists") and Path(fault["while_exists"]).exists():
                os._exit(1)
            return super().evaluate(removed)

    return FaultyWorker


def with_fault(monkeypatch: pytest.MonkeyPatch, fault: dict) -> None:
    """Make the search's Ray workers misbehave as `fault` says (`faulty_worker`)."""
    monkeypatch.setattr(search_module, "make_evaluator",
                        lambda env, model, par: make_evaluator(env, model, par, faulty_worker(fault)))


def test_two_ray_workers_give_the_local_result_whatever_their_timing(
        cifar: Cifar, ray_local, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    local = run(cifar)
    with_fault(monkeypatch, {"jitter_s": 0.5})  # random delays: workers finish in a different order each round
    remote = run(cifar, parallel=ParallelConfig(workers=2))
    assert strip(remote.history) == strip(local.history)
    assert remote.policy == local.policy and remote.val_top1 == local.val_top1
    assert {h["worker"] for h in remote.history} - {None} != {"local"}  # evaluated on the actors
    assert len({h["worker"] for h in remote.history} - {None}) == 2


def test_ray_workers_give_the_local_result_with_the_tuned_reward(cifar: Cifar, ray_local) -> None:  # type: ignore[no-untyped-def]
    """The short fine-tune's tune set travels to the workers, and its seeded steps give them the local reward."""
    tuned = replace(ROUNDS, episodes=3, env=replace(ROUNDS.env, reward="tuned", reward_steps=3, reward_batch=8))
    local = run(cifar, config=tuned)
    remote = run(cifar, config=tuned, parallel=ParallelConfig(workers=2))
    assert strip(remote.history) == strip(local.history)
    assert {h["worker"] for h in remote.history} - {None} != {"local"}


def test_a_worker_killed_mid_round_is_restarted_and_the_round_rerun(
        cifar: Cifar, ray_local, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    local = run(cifar)
    with_fault(monkeypatch, {"once_marker": str(tmp_path / "died"), "on_call": 2})
    remote = run(cifar, parallel=ParallelConfig(workers=2))
    assert (tmp_path / "died").exists()  # a worker did exit mid-round
    assert strip(remote.history) == strip(local.history)


def test_a_worker_that_keeps_dying_fails_the_run_and_keeps_what_was_written(
        cifar: Cifar, ray_local, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trigger = tmp_path / "die"
    with_fault(monkeypatch, {"while_exists": str(trigger)})
    out = tmp_path / "run"

    def after(record: dict) -> None:
        if record["episode"] == 3:  # from the second round on, every evaluation kills its worker
            trigger.touch()

    with pytest.raises(GnnrlError, match=r"died twice on the same policy.*--resume"):
        run(cifar, out, parallel=ParallelConfig(workers=2), on_episode_end=after)
    assert len((out / "history.jsonl").read_text().splitlines()) == 3  # the first round is kept
    assert json.loads((out / "policy.json").read_text())["episodes_run"] == 3
    trigger.unlink()
    resumed = run(cifar, out, resume=True)  # and it resumes, here in-process, to the uninterrupted result
    assert strip(resumed.history) == strip(run(cifar).history)


def test_the_cli_searches_on_ray_workers(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s"
    code = main(["search", "--model", "resnet20", "--episodes", "4", "--warmup", "1", "--val-size", "100",
                 "--bn-recal", "64", "--max-steps", "3", "--workers", "2", "--out", str(out), "--quiet"])
    assert code == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    policy = json.loads((out / "policy.json").read_text())
    assert len(history) == 4 and policy["config"]["round_size"] == 2  # --round-size defaults to --workers
    assert {h.get("worker", "") for h in history} - {""} and "local" not in {h.get("worker") for h in history}
