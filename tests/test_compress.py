"""The product pipeline: exact policy replay, fine-tune resume and torchrun, export parity, compress kill/resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_search import TINY

import gnnrl
from gnnrl.data import Cifar
from gnnrl.errors import GnnrlError
from gnnrl.export import compare_latency, export_onnx, memory, time_interleaved
from gnnrl.finetune import finetune, finetune_config
from gnnrl.paths import default_weights
from gnnrl.policy import PolicyError, apply_policy, policy_cost, policy_for_ratios
from gnnrl.prune import apply_plan
from gnnrl.search import make_env, search

ROOT = Path(__file__).resolve().parents[1]


def r20() -> torch.nn.Module:
    return gnnrl.create("resnet20", weights=default_weights("resnet20"))


@pytest.fixture(scope="module")
def searched(cifar: Cifar, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished search run folder."""
    out = tmp_path_factory.mktemp("search")
    search(r20(), cifar, TINY, out_dir=out, progress=False)
    return out


def test_policy_replays_exactly_the_searched_network(cifar: Cifar, searched: Path) -> None:
    policy = json.loads((searched / "policy.json").read_text())
    env = make_env(r20(), cifar, TINY)
    removed = np.array([policy["removed"][str(g)] for g in env.group_ids])
    in_search = apply_plan(env.graph, env.plan_for(removed))
    replayed = apply_policy(r20(), searched / "policy.json")
    a, b = in_search.state_dict(), replayed.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert replayed.macs_ratio == pytest.approx(policy["macs_ratio"])
    # and the saved file rebuilds it with gnnrl.load alone
    path = gnnrl.save(replayed, searched / "p.safetensors")
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(gnnrl.load(path).eval()(x), replayed.module.eval()(x))


def test_foreign_or_broken_policies_are_refused(searched: Path, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="other weights"):
        apply_policy(gnnrl.create("resnet20"), searched / "policy.json")  # random init, not the searched weights
    with pytest.raises(PolicyError, match="another model"):
        apply_policy(gnnrl.create("resnet32", weights=default_weights("resnet32")), searched / "policy.json")
    with pytest.raises(PolicyError, match="not found"):
        apply_policy(r20(), tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PolicyError, match="not a valid policy"):
        apply_policy(r20(), tmp_path / "bad.json")


def test_uniform_policy_dict_round_trip() -> None:
    model = r20().eval()
    graph = gnnrl.trace(model, torch.zeros(1, 3, 32, 32))
    ratios = gnnrl.ratios_for_budget(graph, 0.5)
    policy = policy_for_ratios(graph, model, ratios)
    direct = gnnrl.prune(graph, ratios=ratios)
    replayed = apply_policy(model, policy)
    assert np.array_equal(direct.plan.keep, replayed.plan.keep)
    assert replayed.cost == direct.cost
    assert policy_cost(model, policy) == direct.cost  # the same, without building the network


def test_finetune_learns_resumes_exactly_and_keeps_the_best(cifar: Cifar, tmp_path: Path) -> None:
    teacher = r20()
    config = finetune_config(epochs=3, subset=640, lr=0.05)

    def student() -> torch.nn.Module:
        return gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.6).module

    straight = student()
    before = gnnrl.evaluate(straight, cifar.split("val").balanced_subset(500))
    res = finetune(straight, cifar, config, teacher=teacher, out_dir=tmp_path / "a", progress=False)
    assert res.best_val_top1 > before.top1 + 10, "distillation recovers a 60%-pruned ResNet-20"
    assert len((tmp_path / "a" / "history.jsonl").read_text().splitlines()) == 3
    best = max(res.history, key=lambda r: r["val/top1"])
    assert res.best_epoch == best["epoch"] and res.best_path is not None
    assert gnnrl.evaluate(gnnrl.load(res.best_path), cifar.split("val").balanced_subset(128)).total == 128

    halted = student()
    finetune(halted, cifar, config, teacher=teacher, out_dir=tmp_path / "b", progress=False,
             on_epoch_end=lambda m: m["epoch"] == 1)
    resumed = student()
    again = finetune(resumed, cifar, config, teacher=teacher, out_dir=tmp_path / "b", resume=True, progress=False)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in res.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again.history] == strip
    with pytest.raises(GnnrlError, match="teacher"):
        finetune(student(), cifar, config, teacher=None, progress=False)


def test_torchrun_two_processes_follow_the_single_process_loss(tmp_path: Path) -> None:
    pruned = gnnrl.save(gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.5), tmp_path / "p.safetensors")
    args = ["finetune", "--pruned", str(pruned), "--epochs", "2", "--subset", "1024", "--lr", "0.05", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "gnnrl.cli", *args, "--out", str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "gnnrl.cli", *args, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                           text=True, timeout=900)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "train.json").read_text())
    two = json.loads((tmp_path / "two" / "train.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    for a, b in zip(one["history"], two["history"], strict=True):
        # same global batches and augmentation; only BatchNorm sees half batches per rank
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=0.05)
    assert len((tmp_path / "two" / "history.jsonl").read_text().splitlines()) == 2  # written once, by rank 0


def test_onnx_export_matches_pytorch_and_latency_uses_the_injected_timer(tmp_path: Path) -> None:
    model = r20().eval()
    pruned = gnnrl.prune(model, torch.zeros(1, 3, 32, 32), ratios=0.5).module
    check = export_onnx(pruned, tmp_path / "p.onnx", torch.zeros(1, 3, 32, 32))
    assert check.max_abs_diff < 1e-4 and check.opset >= 17
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0].shape == (5, 10)  # dynamic batch
    ticks = iter(range(10_000))
    rows = compare_latency({"original": model, "pruned": pruned}, {"pruned": tmp_path / "p.onnx"},
                           batch_sizes=(1,), rounds=4, timer=lambda: float(next(ticks)))
    assert {(r["engine"], r["model"]) for r in rows} == {("pytorch", "original"), ("pytorch", "pruned"),
                                                         ("onnxruntime", "pruned")}
    assert all(r["median_ms"] == 1000.0 and r["iqr_ms"] == 0.0 for r in rows)  # one tick per call
    order: list[str] = []
    time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=2, warmup=0)
    assert order == ["a", "b", "b", "a"]
    mem, mem_p = memory(model, torch.zeros(1, 3, 32, 32)), memory(pruned, torch.zeros(1, 3, 32, 32))
    assert mem.weight_bytes == 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point()) + 8 * 19
    assert mem_p.weight_bytes < mem.weight_bytes and mem_p.peak_activation_bytes <= mem.peak_activation_bytes


def _child(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "compress_child.py"), str(out), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, path: Path, timeout: float = 600) -> None:
    """SIGKILL the child as soon as `path` appears; fail if it finished or timed out first."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"child ended before {path.name} appeared: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < end, "child too slow"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_compress_killed_mid_search_and_mid_finetune_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    straight = _child(tmp_path / "a")
    killed = tmp_path / "b"
    _kill_when(_child(killed), killed / "search" / "checkpoint.pt")  # after the first episode
    assert not (killed / "search" / "history.jsonl").exists() or \
        len((killed / "search" / "history.jsonl").read_text().splitlines()) < 6
    again = _child(killed)  # without --resume: refused, nothing touched
    assert again.wait() != 0 and "--resume" in again.stderr.read()
    _kill_when(_child(killed, "--resume"), killed / "select" / "finalist-0.json")  # after the first finalist
    assert not (killed / "select" / "policy.json").exists()
    _kill_when(_child(killed, "--resume"), killed / "finetune" / "checkpoint.pt")  # after the first epoch
    assert not (killed / "finetune" / "train.json").exists()
    last = _child(killed, "--resume")
    assert last.wait() == 0, last.stderr.read()[-2000:]
    assert straight.wait() == 0, straight.stderr.read()[-2000:]

    a, b = tmp_path / "a", killed
    pa, pb = (json.loads((d / "search" / "policy.json").read_text()) for d in (a, b))
    assert pa["removed"] == pb["removed"] and pa["val_top1"] == pb["val_top1"]
    sa, sb = (json.loads((d / "select" / "policy.json").read_text()) for d in (a, b))
    for s in (sa, sb):  # (the seconds each score took may differ)
        s["selection"]["finalists"] = [{**f, "seconds": None} for f in s["selection"]["finalists"]]
    assert sa == sb and len(sa["selection"]["finalists"]) >= 3  # 2 of the search's, the rules that differ
    assert [layer["kept"] for layer in json.loads((b / "layers.json").read_text())] == \
        [layer["kept"] for layer in layer_widths_of(b / "select" / "policy.json")]
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ea, eb = (json.loads((d / "eval.json").read_text()) for d in (a, b))
    assert ea == eb  # the uniform-internal baseline's fine-tune too, killed or not
    assert ea["baseline_after_ft"]["val"] > ea["baseline_before_ft"]["val"] and (b / "baseline/model.onnx").is_file()
    assert "uniform-internal, after" in (b / "report.md").read_text()
    assert f"the policy fine-tuned is **{sa['selection']['chosen']}**" in (b / "report.md").read_text()
    for name in ("report.md", "report.json", "ratios.png", "pareto.png", "rewards.png", "finetune.png",
                 "model.onnx", "deploy.json"):
        assert (b / name).is_file(), name
    report = json.loads((b / "report.json").read_text())
    assert report["eval"]["pruned_after_ft"]["val"] > report["eval"]["pruned_before_ft"]["val"]
    # a resume with other settings names what differs
    other = _child(killed, "--resume", "--seed", "5")
    assert other.wait() != 0 and "search.seed: 0 → 5" in other.stderr.read()


def layer_widths_of(policy: Path) -> list[dict]:
    """Kept output channels per conv/linear layer of R20 pruned by a policy file."""
    from gnnrl.compress import layer_widths

    pruned = apply_policy(r20(), policy)
    return layer_widths(pruned, gnnrl.trace(r20(), torch.zeros(1, 3, 32, 32)).module)


class _OwnNet(torch.nn.Module):
    """A user's own network: no gnnrl.create, no zoo name."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def _tiny_compress(budget: float = 0.6) -> object:
    from gnnrl.compress import CompressConfig
    from gnnrl.env import EnvConfig
    from gnnrl.search import SearchConfig

    return CompressConfig(search=SearchConfig(episodes=3, warmup=1, val_size=100,
                                              env=EnvConfig(budget=budget, bn_recal=32, max_steps=2)),
                          finetune=finetune_config(epochs=1, subset=64), latency_batches=(1,), latency_rounds=2,
                          eval_size=100, baseline=False, finalists=1, finalist_steps=4, finalist_batch=16)


def _onnx_matches(module: torch.nn.Module, onnx_path: Path) -> bool:
    import onnxruntime as ort

    x = torch.randn(2, 3, 32, 32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = module.eval()(x).numpy()
    got = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1].numpy()})[0] for i in range(2)])
    return bool(np.abs(got - want).max() <= 1e-3 * max(1.0, float(np.abs(want).max())))


def test_your_own_module_goes_through_compress_and_back(cifar: Cifar, tmp_path: Path) -> None:
    """Any nn.Module: compress prunes it, the file stores what was kept (not the class), and gnnrl.load rebuilds it
    on the user's own unpruned instance."""
    from gnnrl.compress import compress
    from gnnrl.errors import WeightsError

    torch.manual_seed(0)
    compress(_OwnNet(), cifar, tmp_path / "run", _tiny_compress(), progress=False)
    with pytest.raises(WeightsError, match=r"gnnrl.load\(path, model=YourNet\(\)\)"):
        gnnrl.load(tmp_path / "run" / "model.safetensors")
    back = gnnrl.load(tmp_path / "run" / "model.safetensors", model=_OwnNet())
    assert _onnx_matches(back, tmp_path / "run" / "model.onnx")
    assert gnnrl.count_flops(back).macs < 0.7 * gnnrl.count_flops(_OwnNet()).macs
    assert "# gnnrl compress: _OwnNet at 60% of the MACs" in (tmp_path / "run" / "report.md").read_text()
    # and without compress: prune, save, load on a fresh instance
    pruned = gnnrl.prune(_OwnNet(), torch.zeros(1, 3, 32, 32), ratios=0.5)
    gnnrl.save(pruned, tmp_path / "p.safetensors")
    again = gnnrl.load(tmp_path / "p.safetensors", model=_OwnNet())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), pruned.module.eval()(x), atol=1e-5)


def test_report_states_the_measured_latency_against_the_budget(tmp_path: Path) -> None:
    """A latency run's report says whether the measured latency met the budget, and shows the baseline's."""
    from gnnrl.report import write_report

    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": {"name": "resnet20"}, "budget": 0.7, "metric": "latency"}))
    (run / "search" / "policy.json").write_text(json.dumps({
        "latency": {"predicted_ratio": 0.69, "batch_size": 1}, "val_top1": 80.0, "uniform_val_top1": 79.0,
        "episode": 3, "episodes_run": 4, "macs_ratio": 0.6, "budget": 0.7, "metric": "latency"}))
    timing = {"median_ms": 1.0, "iqr_ms": 0.01, "rounds": 9}
    rows = [{"engine": "onnxruntime", "batch": 1, "model": m, **timing} for m in ("original", "pruned", "baseline")]

    def report(pruned: float, share: float = 1.0) -> str:
        check = {"name": "onnxruntime", "threads": 1, "batch": 1, "budget": 0.7,
                 "networks": {"pruned": {"ratio": pruned, "iqr": 0.02, "rounds": 7, "cpu_share": share},
                              "baseline": {"ratio": 0.69, "iqr": 0.01, "rounds": 7}}}
        (run / "deploy.json").write_text(json.dumps({"latency": rows, "threads": 1, "budget_check": check}))
        write_report(run)
        return (run / "report.md").read_text()

    assert "measured 0.705 (IQR 0.020 over 7 interleaved rounds): met." in report(0.705)  # within its spread
    text = report(0.75)
    assert "measured 0.750" in text and "**NOT met**" in text and "uniform-internal at the same budget" in text
    assert "landed again" not in text  # this search's best was not landed (an older run: no landing record)
    landing = {"from_episode": 3, "met": True, "tries": 3,
               "steps": [{"predicted": 0.69, "measured": 0.76}, {"predicted": 0.63, "measured": 0.70}]}
    (run / "search" / "policy.json").write_text(json.dumps({
        **json.loads((run / "search" / "policy.json").read_text()),
        "latency": {"predicted_ratio": 0.63, "measured_ratio": 0.70, "batch_size": 1, "landing": landing}}))
    assert "predicted 0.630" in report(0.705) and "(predicted → measured: 0.690 → 0.760, 0.630 → 0.700)" in \
        report(0.705)
    (run / "select").mkdir()  # a selection fine-tunes its own winner, landed like every finalist: its numbers count
    (run / "select" / "policy.json").write_text(json.dumps({"latency": {
        "predicted_ratio": 0.64, "measured_ratio": 0.695, "landing": {"finalists_landed": True}}}))
    text = report(0.705)
    assert "predicted 0.640" in text and "Every finalist" in text and "chosen one measured 0.695" in text
    assert "busy machine" not in text
    assert "⚠ This check was measured on a busy machine (this process got 55% of the CPU" in report(0.705, 0.55)


def test_a_timm_model_goes_through_compress_and_back(cifar: Cifar, tmp_path: Path) -> None:
    """`timm/<name>` is a zoo name like any other: compress writes a file that `gnnrl.load` rebuilds (no download),
    and ONNX Runtime's output of the exported network equals the rebuilt model's."""
    pytest.importorskip("timm")
    from gnnrl.compress import compress

    torch.manual_seed(0)
    model = gnnrl.create("timm/resnet18", num_classes=10)
    from dataclasses import replace

    # (and the paper's way: the search's best fine-tuned, no selection)
    compress(model, cifar, tmp_path / "run", replace(_tiny_compress(), finalists=0), progress=False)
    run = tmp_path / "run"
    assert not (run / "select").exists() and "Selection:" not in (run / "report.md").read_text()
    back = gnnrl.load(tmp_path / "run" / "model.safetensors")
    assert back.gnnrl_lineage.spec["name"] == "timm/resnet18"
    assert _onnx_matches(back, tmp_path / "run" / "model.onnx")
    assert gnnrl.count_flops(back).macs < 0.7 * gnnrl.count_flops(model).macs


def test_when_the_baseline_policy_is_chosen_its_finetune_is_not_repeated(cifar: Cifar, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """If the selection picks uniform-internal's own policy, the baseline's fine-tune would repeat the result's
    exactly: it is copied, and the report's two 'after' columns agree."""
    import dataclasses
    import importlib

    comp = importlib.import_module("gnnrl.compress")  # (the package's `gnnrl.compress` is the function)
    sel = importlib.import_module("gnnrl.selection")
    real = sel.select

    def baseline_first(*args, **kw):  # type: ignore[no-untyped-def]
        ranked = real(*args, **kw)
        return sorted(ranked, key=lambda f: "uniform-internal" not in f.candidate.name)

    monkeypatch.setattr(sel, "select", baseline_first)
    config = dataclasses.replace(_tiny_compress(), baseline=True)
    comp.compress(r20(), cifar, tmp_path / "run", config, progress=False)
    run = tmp_path / "run"
    chosen = json.loads((run / "select" / "policy.json").read_text())
    assert chosen["selection"]["chosen"].endswith("uniform-internal")
    assert chosen["removed"] == json.loads((run / "baseline" / "search" / "policy.json").read_text())["removed"]
    a, b = load_file(str(run / "model.safetensors")), load_file(str(run / "baseline" / "finetune" / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ev = json.loads((run / "eval.json").read_text())
    assert ev["baseline_after_ft"] == ev["pruned_after_ft"]
    assert "is uniform-internal's own, so the result and the baseline are one" in (run / "report.md").read_text()
    assert json.loads((run / "report.json").read_text())["selection"]["chosen"] == chosen["selection"]["chosen"]
