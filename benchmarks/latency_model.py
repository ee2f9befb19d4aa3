"""How well does the latency model predict networks it was not fitted on? (metric 'latency')

Fits `gnnrl.latency.fit_latency_model` (12 timed variants), then draws random pruning policies like a search's
episodes do, and compares each one's predicted latency ratio with its measured ratio (pruned vs original,
interleaved timings). Writes benchmarks/results/latency_model.json and a section of docs/benchmarks.md.

    .venv/bin/python benchmarks/latency_model.py [--models resnet20 resnet56] [--batches 1 32] [--policies 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from kit import ROOT, write_section

import gnnrl
from gnnrl.env import DNNGraphEnv, EnvConfig
from gnnrl.evaluate import use_all_cores
from gnnrl.latency import fit_latency_model, measured_ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--policies", type=int, default=10)
    args = ap.parse_args()
    use_all_cores()
    rows = []
    for name in args.models:
        graph = gnnrl.trace(gnnrl.create(name), torch.randn(1, 3, 32, 32))
        for batch in args.batches:
            t = time.perf_counter()
            model = fit_latency_model(graph, batch)
            fit_s = time.perf_counter() - t
            # random policies at random MACs budgets, drawn by the env like warm-up episodes
            rng = np.random.default_rng(0)
            errors, pairs = [], []
            for i in range(args.policies):
                budget = float(rng.uniform(0.3, 0.9))
                env = DNNGraphEnv(graph, _tiny_split(), EnvConfig(budget=budget, bn_recal=0))
                env.reset(seed=i)
                done = False
                while not done:
                    _, _, done, _, _ = env.step(rng.random(len(env.group_ids)))
                plan = env.plan_for(env.removed)
                full = env.plan_for(np.zeros_like(env.removed))
                predicted = model.predict_plan(graph, plan) / model.predict_plan(graph, full)
                measured = measured_ratio(graph, plan, batch, rounds=3)
                pairs.append((round(predicted, 3), round(measured, 3)))
                errors.append(abs(predicted - measured))
            rows.append({"model": name, "batch": batch, "fit_s": round(fit_s, 1), "coef": model.coef,
                         "fit_max_rel_error": round(model.max_relative_error, 3),
                         "fixed_share": round(model.coef[0] / model.samples[0][2], 3),
                         "mean_abs_ratio_error": round(float(np.mean(errors)), 3),
                         "max_abs_ratio_error": round(float(np.max(errors)), 3), "predicted_measured": pairs})
            print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "latency_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["## Latency model (predicted vs measured latency ratios)", "",
             f"`python benchmarks/latency_model.py --models {' '.join(args.models)} --batches "
             f"{' '.join(map(str, args.batches))} --policies {args.policies}` — {torch.get_num_threads()} threads. "
             "Fit: 12 timed variants; then random policies at random MACs budgets (0.3–0.9), each timed "
             "interleaved with the original (median of 3 rounds). Fixed share: the fitted time pruning cannot "
             "remove, as a fraction of the unpruned network's; a latency budget below it is refused.", "",
             "| model | batch | fit s | fit max rel. error | fixed share | mean abs. ratio error | "
             "max abs. ratio error |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['fit_s']} | {r['fit_max_rel_error']} | {r['fixed_share']} | "
                     f"{r['mean_abs_ratio_error']} | {r['max_abs_ratio_error']} |")
    write_section("Latency model", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _tiny_split():  # type: ignore[no-untyped-def]
    """The env needs a validation split to exist; this benchmark never evaluates accuracy."""
    from gnnrl.data import Split

    return Split("unused", torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, dtype=torch.long), ("x",))


if __name__ == "__main__":
    main()
