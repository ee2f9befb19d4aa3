"""Pruning engine speed and what pruning buys: prune + cost_after time, and CPU latency of a 50%-MACs ResNet-56.

One process, interleaved measurements (ratios are what matter on noisy machines). Writes
benchmarks/results/prune_speed.json and the "Pruning speed and latency" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/prune_speed.py [--model resnet56] [--budget 0.5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from kit import ROOT, write_section

import gnnrl
from gnnrl.evaluate import inference_copy, use_all_cores
from gnnrl.prune import cost_after, original_cost, prune, ratios_for_budget


def per_call_ms(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--budget", type=float, default=0.5)
    args = ap.parse_args()
    use_all_cores()
    model = gnnrl.create(args.model).eval()
    x1 = torch.randn(1, 3, 32, 32)
    t = time.perf_counter()
    graph = gnnrl.trace(model, x1)
    gnnrl.channel_groups(graph)
    trace_ms = (time.perf_counter() - t) * 1000
    ratios = ratios_for_budget(graph, args.budget)
    budget_ms = statistics.median(per_call_ms(lambda: ratios_for_budget(graph, args.budget), 5))
    step = per_call_ms(lambda: (prune(graph, ratios=ratios), cost_after(graph, ratios)), 20)
    pruned = prune(graph, ratios=ratios)
    # Channel counts in multiples of 8 suit the CPU's vector width (oneDNN blocks channels by 8/16).
    pruned8 = prune(graph, ratios=ratios_for_budget(graph, args.budget, round_to=8), round_to=8)

    variants = {"original": model, "pruned": pruned.module,
                "original (folded BN, channels-last, in-place)": inference_copy(model, x1),
                "pruned (folded BN, channels-last, in-place)": inference_copy(pruned.module, x1),
                "pruned round_to=8 (folded BN, channels-last, in-place)": inference_copy(pruned8.module, x1)}
    latency: dict[str, dict[int, float]] = {k: {} for k in variants}
    for batch, repeats in ((1, 200), (256, 10)):
        x = torch.randn(batch, 3, 32, 32)
        xc = x.contiguous(memory_format=torch.channels_last)
        samples: dict[str, list[float]] = {k: [] for k in variants}
        with torch.inference_mode():
            for m in variants.values():
                m(x)  # warm-up
            for _ in range(repeats):  # interleave the variants so that machine noise hits all alike
                for k, m in variants.items():
                    inp = xc if "channels-last" in k else x
                    t = time.perf_counter()
                    m(inp)
                    samples[k].append((time.perf_counter() - t) * 1000)
        for k in variants:
            latency[k][batch] = statistics.median(samples[k])

    macs_ratio = pruned.cost.macs / original_cost(graph).macs
    result = {
        "model": args.model, "budget": args.budget, "macs_ratio": round(macs_ratio, 4),
        "params_ratio": round(pruned.cost.params / original_cost(graph).params, 4),
        "trace_and_groups_ms": round(trace_ms, 1), "ratios_for_budget_ms": round(budget_ms, 1),
        "prune_plus_cost_after_ms": {"median": round(statistics.median(step), 1), "min": round(min(step), 1)},
        "latency_ms_median": {k: {str(b): round(v, 3) for b, v in d.items()} for k, d in latency.items()},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    out = ROOT / "benchmarks" / "results" / "prune_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"## Pruning speed and latency ({args.model}, {args.budget:.0%} MACs budget)", "",
        f"`python benchmarks/prune_speed.py --model {args.model} --budget {args.budget}` — "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}.", "",
        f"* trace + channel groups, once: {trace_ms:.0f} ms; `ratios_for_budget`: {budget_ms:.0f} ms",
        f"* `prune` + `cost_after` per RL step: median {statistics.median(step):.1f} ms (min {min(step):.1f} ms)",
        f"* pruned MACs {macs_ratio:.3f} of the original, params {result['params_ratio']:.3f}; "
        f"with round_to=8: MACs {pruned8.macs_ratio:.3f}", "",
        "| variant | batch 1 (ms) | batch 256 (ms) | speed-up b1 | speed-up b256 |", "|---|---|---|---|---|",
    ]
    for k, d in latency.items():
        base = latency["original"]
        lines.append(f"| {k} | {d[1]:.2f} | {d[256]:.1f} | {base[1] / d[1]:.2f}× | {base[256] / d[256]:.2f}× |")
    write_section("Pruning speed and latency", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
