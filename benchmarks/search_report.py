"""Score a finished search: best policy vs uniform L1 at the same budget, on val, test_rest and test.

Reads RUN/policy.json and RUN/history.jsonl, rebuilds the network with the shared weights, and evaluates the
best policy and the uniform baseline (both BatchNorm-recalibrated as in the search, no fine-tuning) on the
validation split the search optimised, on test_rest (never seen by the search) and on the full test set.
Copies policy.json to benchmarks/results/ and writes a section of docs/benchmarks.md.

    .venv/bin/python benchmarks/search_report.py runs/r56-180 [--floor-pass-s 4.2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from eval_speed import write_section

import gnnrl
from gnnrl.data import load_cifar
from gnnrl.env import uniform_removed
from gnnrl.evaluate import use_all_cores
from gnnrl.paths import default_weights
from gnnrl.prune import original_cost
from gnnrl.search import SearchConfig, evaluate_policy, make_env

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--wall-s", type=float, help="wall time of the search (from its log), for the floor ratio")
    args = ap.parse_args()
    use_all_cores()
    run = Path(args.run)
    policy = json.loads((run / "policy.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    config = SearchConfig.from_dict(policy["config"])
    name = policy["model"]["name"]
    data = load_cifar(progress=False)
    env = make_env(gnnrl.create(name, weights=default_weights(name)), data, config)
    best = [policy["removed"][str(g)] for g in env.group_ids]
    uniform = [int(r) for r in uniform_removed(env)]
    splits = {s: data.split(s, val_from=config.val_from) for s in ("val", "test_rest", "test")}
    scores = {label: {s: evaluate_policy(env, removed, split).top1 for s, split in splits.items()}
              for label, removed in (("gnn-rl", best), ("uniform", uniform))}
    t = time.perf_counter()
    one_pass = evaluate_policy(env, best, splits["val"]).seconds  # the validation pass alone
    with_recal = time.perf_counter() - t
    costs = {label: gnnrl.cost_after(env.graph, env.plan_for(np.array(r)))
             for label, r in (("gnn-rl", best), ("uniform", uniform))}
    base = original_cost(env.graph)
    total_s = sum(h["seconds"] for h in history)
    result = {"run": str(run), "model": name, "episodes": len(history), "best_episode": policy["episode"],
              "budget": config.env.budget, "scores_top1": scores,
              "macs_ratio": {k: c.macs / base.macs for k, c in costs.items()},
              "params_ratio": {k: c.params / base.params for k, c in costs.items()},
              "episode_seconds_total": round(total_s, 1), "wall_s": args.wall_s,
              "one_val_pass_s": round(one_pass, 2), "one_val_pass_with_recal_s": round(with_recal, 2)}
    dest = ROOT / "benchmarks" / "results" / f"search_{run.name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(run / "policy.json", ROOT / "benchmarks" / "results" / f"policy_{run.name}.json")
    lines = [f"## Search {run.name} ({name}, {config.env.budget:.0%} MACs, {len(history)} episodes)", "",
             f"`gnnrl search --model {name} --budget {config.env.budget} --episodes {config.episodes} --warmup "
             f"{config.warmup} --out {run}` then `python benchmarks/search_report.py {run}`. Top-1 before "
             "fine-tuning, BatchNorm re-estimated on 500 training images for both rows.", "",
             "| policy | MACs | params | val (searched) % | test_rest % | test (10k) % |", "|---|---|---|---|---|---|"]
    for label in ("gnn-rl", "uniform"):
        s = scores[label]
        lines.append(f"| {label} | {result['macs_ratio'][label]:.3f} | {result['params_ratio'][label]:.3f} | "
                     f"{s['val']:.2f} | {s['test_rest']:.2f} | {s['test']:.2f} |")
    lines += ["", f"Best policy found at episode {policy['episode']}. Episodes took {total_s:.0f} s in all"
              + (f"; wall time {args.wall_s:.0f} s" if args.wall_s else "")
              + f". One validation pass of the best network (5k images) takes {one_pass:.2f} s here "
              f"({with_recal:.2f} s with BN recalibration), so the pure evaluation floor of {len(history)} "
              f"episodes is {len(history) * one_pass:.0f} s and the search spent "
              f"{total_s / (len(history) * one_pass):.2f}× that."]
    write_section(f"Search {run.name}", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
