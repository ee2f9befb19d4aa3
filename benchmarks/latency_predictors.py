"""How well does each latency predictor foresee the latency measured on the deploy engine?

For each model, engine (ONNX Runtime, eager PyTorch) and batch size: the table model (`gnnrl.latency.TableModel`,
the default) and the old linear fit (`fit_latency_model`, fitted on eager PyTorch as before) are fitted once;
then held-out random policies, drawn like a search's (another seed than the fits'), with widths rounded to the
engine's measured channel granularity (what `--round-to auto` uses) and, at batch 1, also unrounded, are pruned
and timed on the engine interleaved with the original. Reported: |predicted − measured| / measured of the latency
ratio (pruned / original), median and max over the policies. One process, 1 thread (the machine's other core idle).

    .venv/bin/python benchmarks/latency_predictors.py --models resnet20 resnet56 --batches 1 64 --policies 10

Writes benchmarks/results/latency_predictors.json and the "Latency predictors" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from kit import ROOT, write_section

import gnnrl
from gnnrl.engines import Engine, cpu_model, engine_version
from gnnrl.files import write_json
from gnnrl.groups import analyze
from gnnrl.latency import channel_granularity, engine_ratio, fit_latency_model, fit_table_model
from gnnrl.paths import default_weights
from gnnrl.prune import cost_after, make_plan, original_cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    ap.add_argument("--engines", nargs="+", default=["onnxruntime", "torch"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--policies", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/latency_predictors.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        model = gnnrl.create(name, weights=default_weights(name))
        graph = gnnrl.trace(model, torch.zeros(1, 3, 32, 32))
        groups = [g.id for g in analyze(graph).groups if g.prunable]
        for engine_name in args.engines:
            for batch in args.batches:
                engine = Engine(engine_name, threads=1, batch=batch)
                t0 = time.perf_counter()
                g = channel_granularity(engine)
                t_gran = time.perf_counter() - t0
                t0 = time.perf_counter()
                table = fit_table_model(graph, engine, round_to=g)
                t_table = time.perf_counter() - t0
                t0 = time.perf_counter()
                linear = fit_latency_model(graph, batch)
                t_linear = time.perf_counter() - t0
                base_plan = make_plan(graph, 0.0)
                rng = np.random.default_rng(1000)
                for rounding in ([g, 1] if batch == 1 and g > 1 else [g]):
                    errs: dict[str, list[float]] = {"table": [], "linear": [], "macs": []}
                    measured_all = []
                    for _ in range(args.policies):
                        level = rng.uniform(0.1, 0.8)
                        ratios = {k: float(np.clip(level * rng.uniform(0.3, 1.7), 0, 0.95)) for k in groups}
                        plan = make_plan(graph, ratios, round_to=rounding)
                        measured = engine_ratio(graph, plan, engine, rounds=5)
                        measured_all.append(measured)
                        preds = {
                            "table": table.predict_plan(graph, plan) / table.predict_plan(graph, base_plan),
                            "linear": linear.predict_plan(graph, plan) / linear.predict_plan(graph, base_plan),
                            "macs": cost_after(graph, plan).macs / original_cost(graph).macs,
                        }
                        for k, p in preds.items():
                            errs[k].append(abs(p - measured) / measured)
                    row = {"model": name, "engine": engine_name, "batch": batch, "granularity": g,
                           "round_to": rounding, "policies": args.policies,
                           "measured_ratio_range": [min(measured_all), max(measured_all)],
                           "fit_s": {"granularity": t_gran, "table": t_table, "linear": t_linear},
                           "table_entries": len(table.table.entries)}
                    for k, e in errs.items():
                        row[k] = {"median": statistics.median(e), "max": max(e)}
                    rows.append(row)
                    print(row, flush=True)
    result = {"cpu": cpu_model(), "versions": {"onnxruntime": engine_version("onnxruntime"),
                                                "torch": engine_version("torch")}, "rows": rows}
    write_json(args.out, result)
    lines = ["## Latency predictors", "",
             "Held-out random policies (drawn like a search's), pruned, timed on the engine interleaved with the "
             "original (1 thread); error of the predicted latency ratio, median / max over the policies. "
             "`table`: the per-layer table model (the default); `linear`: the old fit on eager PyTorch "
             "(c0 + MACs + activations); `macs`: the MACs ratio used as a latency ratio.", "",
             f"CPU: {result['cpu']}; onnxruntime {result['versions']['onnxruntime']}, "
             f"torch {result['versions']['torch']}.", "",
             "| model | engine | batch | widths | measured ratios | table | linear | macs | table fit (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["measured_ratio_range"]
        cells = " | ".join(f"{100 * r[k]['median']:.1f} % / {100 * r[k]['max']:.1f} %" for k in ("table", "linear",
                                                                                                   "macs"))
        widths = f"× {r['round_to']}" if r["round_to"] > 1 else "any"
        lines.append(f"| {r['model']} | {r['engine']} | {r['batch']} | {widths} | {lo:.2f}–{hi:.2f} | {cells} | "
                     f"{r['fit_s']['table']:.0f} |")
    lines += ["", "Command: `.venv/bin/python benchmarks/latency_predictors.py --models "
              f"{' '.join(args.models)} --batches {' '.join(map(str, args.batches))} --policies {args.policies}`"]
    write_section("Latency predictors", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
