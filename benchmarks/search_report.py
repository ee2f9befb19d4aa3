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
from kit import ROOT, write_section

import gnnrl
from gnnrl.data import load_cifar
from gnnrl.env import uniform_removed
from gnnrl.evaluate import use_all_cores
from gnnrl.paths import default_weights
from gnnrl.prune import original_cost
from gnnrl.search import SearchConfig, evaluate_policy, make_env


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
    # The floor measured inside the run (same minutes, same load): mean validation pass of the episodes that
    # evaluated a network (cache hits evaluate nothing) times the number of episodes.
    evaluated = [h for h in history if h.get("eval_s")]
    in_run = {}
    if evaluated:
        mean_pass = sum(h["eval_s"] for h in evaluated) / len(evaluated)
        in_run = {"mean_val_pass_s": round(mean_pass, 3), "evaluated_episodes": len(evaluated),
                  "floor_s": round(mean_pass * len(history), 1),
                  **{f"sum_{k}": round(sum(h.get(k, 0.0) for h in history), 1)
                     for k in ("eval_s", "recal_s", "build_s", "agent_s", "seconds")}}
        in_run["wall_over_floor"] = round((args.wall_s or total_s) / in_run["floor_s"], 3)
    result = {"run": str(run), "model": name, "episodes": len(history), "best_episode": policy["episode"],
              "budget": config.env.budget, "scores_top1": scores,
              "macs_ratio": {k: c.macs / base.macs for k, c in costs.items()},
              "params_ratio": {k: c.params / base.params for k, c in costs.items()},
              "episode_seconds_total": round(total_s, 1), "wall_s": args.wall_s,
              "one_val_pass_s": round(one_pass, 2), "one_val_pass_with_recal_s": round(with_recal, 2),
              "in_run": in_run}
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
              + f". Measured again while writing this report: one validation pass of the best network (5k "
              f"images) {one_pass:.2f} s, {with_recal:.2f} s with BN recalibration — for reference only: this "
              "machine's speed drifts between minutes, so the floor below uses the passes timed inside the run."]
    if in_run:
        other = in_run["sum_seconds"] - sum(in_run[f"sum_{k}"] for k in ("eval_s", "recal_s", "build_s", "agent_s"))
        lines += ["", f"Inside the run ({len(evaluated)} of {len(history)} episodes evaluated a new network, "
                  f"the rest were cache hits): mean validation pass {in_run['mean_val_pass_s']:.2f} s → "
                  f"floor {in_run['floor_s']:.0f} s; {'wall' if args.wall_s else 'episode'} time / floor = "
                  f"**{in_run['wall_over_floor']:.2f}×**. Where the episode time went: validation passes "
                  f"{in_run['sum_eval_s']:.0f} s, BN recalibration {in_run['sum_recal_s']:.0f} s, building "
                  f"pruned networks {in_run['sum_build_s']:.0f} s, DDPG updates {in_run['sum_agent_s']:.0f} s, "
                  f"everything else (stepping, acting, outputs) {other:.0f} s."]
    write_section(f"Search {run.name}", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
