"""Measured seconds per episode component, and the wall-time model for N parallel evaluation workers.

A search episode has a serial part, done by the driver in order (the method proposes the policy: env steps,
budget landing, observations, the actor; then it learns: replay and DDPG updates), and a parallel part, the
evaluation (build the pruned network, re-estimate BatchNorm, run the validation split), which `--workers N`
spreads over Ray actors in rounds of K = N policies. So

    wall(E, N) ≈ E · t_serial + ⌈E / N⌉ · (t_eval + t_overhead)

and adding workers stops paying once t_eval / N falls to t_serial: N* = t_eval / t_serial is where the serial
agent becomes the bottleneck.

Measured here, on this machine (2 cores, torch on both): a short GNN-RL search of ResNet-56 on CIFAR-10 (the
default 5k validation images, 500 BN images) and of VGG-16-BN at 224×224 on a generated ImageFolder (a few
images: the serial part does not depend on the data; VGG-16's evaluation cost is measured separately as
images/s on this CPU). Ray's per-round overhead comes from benchmarks/results/parallel_search.json.

    .venv/bin/python benchmarks/scaling_model.py [--episodes 12]

Writes benchmarks/results/scaling_model.json and the "Scaling model" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kit import ROOT

WORKERS = (1, 8, 64)


def components(history: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per agent-phase episode: propose (serial), learn (serial), build/recal/eval (parallel)."""
    agent = [h for h in history if h["phase"] == "agent"] or history
    evals = [h for h in agent if h.get("worker")]  # episodes that paid for an evaluation (not cached)

    def med(xs: list[float]) -> float:
        return float(statistics.median(xs)) if xs else 0.0

    return {
        "propose_s": med([h["seconds"] - h["agent_s"] - h["round_eval_s"] for h in agent]),
        "learn_s": med([h["agent_s"] for h in agent]),
        "build_s": med([h["build_s"] for h in evals]),
        "recal_s": med([h["recal_s"] for h in evals]),
        "eval_s": med([h["eval_s"] for h in evals]),
    }


def search_components(model: Any, data: Any, episodes: int, val_size: int, bn_recal: int) -> dict[str, float]:
    """Run a short GNN-RL search and return its per-episode components."""
    from gnnrl.env import EnvConfig
    from gnnrl.search import SearchConfig, search

    config = SearchConfig(episodes=episodes, warmup=max(1, episodes // 3), val_size=val_size,
                          env=EnvConfig(bn_recal=bn_recal))
    return components(search(model, data, config, progress=False).history)


def images_per_second(model: torch.nn.Module, shape: tuple[int, ...], batch: int, rounds: int = 3) -> float:
    """Inference throughput of `model` (eval mode, BN folded as in the search's evaluation) on this CPU."""
    from gnnrl.evaluate import inference_copy

    runner = inference_copy(model, torch.zeros(1, *shape))
    x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        runner(x)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            runner(x)
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def make_folder(root: Path, classes: int = 3, per_class: int = 6) -> Path:
    """A tiny ImageNet-layout tree of random JPEGs of mixed sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                h, w = int(rng.integers(200, 400)), int(rng.integers(200, 400))
                Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8)).save(d / f"{i}.JPEG")
    return root


def predict(c: dict[str, float], t_eval: float, overhead: float, episodes: int) -> dict[str, Any]:
    """Wall time for 1, 8 and 64 workers, and N* (serial bottleneck)."""
    serial = c["propose_s"] + c["learn_s"]
    rows = {str(n): episodes * serial + math.ceil(episodes / n) * (t_eval + (overhead if n > 1 else 0.0))
            for n in WORKERS}
    return {"t_serial_s": serial, "t_eval_s": t_eval, "wall_s": rows, "n_star": t_eval / serial if serial else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=12)
    args = p.parse_args()

    import gnnrl
    from gnnrl.data import load_cifar
    from gnnrl.folder import load_image_folder
    from gnnrl.paths import default_weights

    torch.set_num_threads(2)
    par = ROOT / "benchmarks" / "results" / "parallel_search.json"
    ray_runs = [r for r in json.loads(par.read_text())["runs"] if r["name"].startswith("ray")] if par.exists() else []
    overhead = statistics.median(r["round_overhead_s_median"] for r in ray_runs) if ray_runs else 0.0

    r56 = gnnrl.create("resnet56", weights=default_weights("resnet56"))
    c56 = search_components(r56, load_cifar(progress=False), args.episodes, 5000, 500)
    print("resnet56", c56, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = load_image_folder(make_folder(Path(tmp)), workers=1)
        vgg = gnnrl.create("vgg16_bn", num_classes=folder.num_classes)
        cvgg = search_components(vgg, folder, args.episodes, 6, 6)
    print("vgg16_bn", cvgg, flush=True)
    vgg_ips = images_per_second(gnnrl.create("vgg16_bn", num_classes=1000), (3, 224, 224), 8)
    print("vgg16_bn images/s on this CPU", vgg_ips, flush=True)

    episodes = 180
    t56 = c56["build_s"] + c56["recal_s"] + c56["eval_s"]
    # VGG-16 on ImageNet: the paper's protocol of 10k validation + 500 BN images per episode, here on this CPU
    tvgg_cpu = cvgg["build_s"] + 10_500 / vgg_ips
    result = {
        "machine": "2-core CPU, torch on 2 threads", "episodes_modelled": episodes, "ray_overhead_s": overhead,
        "resnet56_cifar10": {"components": c56, "this_cpu": predict(c56, t56, overhead, episodes)},
        "vgg16_bn_imagenet": {"components": cvgg, "cpu_images_per_s": vgg_ips,
                              "this_cpu": predict(cvgg, tvgg_cpu, overhead, episodes),
                              "per_gpu_eval_time": {str(t): predict(cvgg, t, overhead, episodes) for t in (5, 20, 60)}},
    }
    path = ROOT / "benchmarks" / "results" / "scaling_model.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    write_doc(result)


def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"


def write_doc(r: dict[str, Any]) -> None:
    """The "Scaling model" section of docs/benchmarks.md."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from kit import write_section

    c56, cvgg = r["resnet56_cifar10"]["components"], r["vgg16_bn_imagenet"]["components"]
    lines = ["## Scaling model (parallel evaluation workers)", "",
             "Written by `python benchmarks/scaling_model.py` (benchmarks/results/scaling_model.json). Measured on "
             "this 2-core machine, torch on 2 threads: median seconds per agent-phase episode of a short GNN-RL "
             "search. *Serial* parts run in the driver whatever the worker count; *parallel* parts are one "
             "evaluation, done by a worker.", "",
             "| model | propose (serial) | learn (serial) | build | BN re-estimation | validation pass |",
             "|---|---|---|---|---|---|"]
    for name, c in (("ResNet-56, CIFAR-10 (5k val, 500 BN images)", c56),
                    ("VGG-16-BN, 224×224 (6 generated images)", cvgg)):
        lines.append(f"| {name} | {c['propose_s']:.3f} | {c['learn_s']:.3f} | {c['build_s']:.3f} | "
                     f"{c['recal_s']:.3f} | {c['eval_s']:.3f} |")
    v = r["vgg16_bn_imagenet"]
    lines += ["", f"VGG-16-BN inference on this CPU: {v['cpu_images_per_s']:.1f} images/s (batch 8, BN folded), so "
              f"one ImageNet evaluation (10k validation + 500 BN images) takes {v['this_cpu']['t_eval_s']:.0f} s "
              f"here. Ray's median overhead per round: {r['ray_overhead_s'] * 1000:.0f} ms "
              "(benchmarks/results/parallel_search.json).", "",
              "Model: wall(E, N) = E · t_serial + ⌈E/N⌉ · (t_eval + overhead); workers stop paying at "
              "N* = t_eval / t_serial, where the serial agent becomes the bottleneck. Predicted for "
              f"{r['episodes_modelled']} episodes:", "",
              "| case | t_serial s | t_eval s | 1 worker | 8 workers | 64 workers | N* |",
              "|---|---|---|---|---|---|---|"]

    def row(name: str, pr: dict[str, Any]) -> str:
        w = pr["wall_s"]
        return (f"| {name} | {pr['t_serial_s']:.2f} | {pr['t_eval_s']:.1f} | {_hours(w['1'])} | {_hours(w['8'])} | "
                f"{_hours(w['64'])} | {pr['n_star']:.0f} |")

    lines.append(row("ResNet-56 / CIFAR-10, workers like this machine", r["resnet56_cifar10"]["this_cpu"]))
    lines.append(row("VGG-16 / ImageNet, workers like this machine", v["this_cpu"]))
    for t, pr in v["per_gpu_eval_time"].items():
        lines.append(row(f"VGG-16 / ImageNet, a GPU worker evaluating an episode in {t} s (assumed)", pr))
    lines += ["", "The GPU rows are the model with an assumed evaluation time (no GPU was measured): time one "
              "`gnnrl search --episodes 2` on the GPU to read yours from history.jsonl (build_s + recal_s + "
              "eval_s). With workers beyond N*, a round waits on the driver's proposals and updates; the next "
              "lever there is proposing a round's K policies in one batched actor pass and making the updates "
              "per round instead of per episode. The model leaves out Ray's start (5–7 s here, plus each worker "
              "building its environment) and assumes rounds of K = N. Rounds change the search itself: with 64 "
              f"workers a {r['episodes_modelled']}-episode search has "
              f"{math.ceil(r['episodes_modelled'] / 64)} rounds, so the agent acts on what it learnt only "
              f"{math.ceil(r['episodes_modelled'] / 64) - 1} times; a wide cluster needs more episodes, or a round "
              "size below the worker count (wall time then follows ⌈E/K⌉ rounds)."]
    write_section("Scaling model", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
