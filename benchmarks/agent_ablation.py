"""Agent settings that cost search time: do they buy policy quality? (m-GNN width, updates per episode)

Runs short searches that differ in one DDPG setting, same seeds, one after the other in one process (this
machine's speed drifts, so compare within a run), and reports best and mean validation top-1 before
fine-tuning, the agent's share of the time, and the wall time. Writes benchmarks/results/agent_ablation.json and
a section of docs/benchmarks.md.

    .venv/bin/python benchmarks/agent_ablation.py --model resnet20 --episodes 60 --warmup 20 --seeds 0 1 \\
        --variant channels=64 --variant channels=32 --name width
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from kit import ROOT, write_section

import gnnrl
from gnnrl.agent import DDPGConfig
from gnnrl.data import load_cifar
from gnnrl.evaluate import use_all_cores
from gnnrl.paths import default_weights
from gnnrl.search import SearchConfig, search


def parse_variant(text: str) -> dict[str, int | float | str]:
    """'channels=32,updates_per_episode=10' → DDPGConfig overrides, typed like the defaults."""
    defaults = DDPGConfig()
    out: dict[str, int | float | str] = {}
    for item in text.split(","):
        key, value = item.split("=")
        out[key] = type(getattr(defaults, key))(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variant", action="append", required=True, help="DDPGConfig overrides, e.g. channels=32")
    ap.add_argument("--name", default="width-updates", help="names the results file and the docs section")
    args = ap.parse_args()
    use_all_cores()
    data = load_cifar(progress=False)
    rows = []
    for seed in args.seeds:  # seeds outermost: variants of one seed run back to back, under similar load
        for text in args.variant:
            agent = dataclasses.replace(DDPGConfig(), **parse_variant(text))
            config = SearchConfig(agent=agent, episodes=args.episodes, warmup=args.warmup, seed=seed)
            model = gnnrl.create(args.model, weights=default_weights(args.model))
            t = time.perf_counter()
            result = search(model, data, config, progress=False)
            wall = time.perf_counter() - t
            agent_phase = [h for h in result.history if h["phase"] == "agent"]
            rows.append({
                "variant": text, "seed": seed, "best_val_top1": result.val_top1, "best_episode": result.episode,
                "agent_mean_val_top1": statistics.mean(h["val_top1"] for h in agent_phase),
                "last10_mean_val_top1": statistics.mean(h["val_top1"] for h in agent_phase[-10:]),
                "uniform_val_top1": result.uniform_val_top1, "wall_s": round(wall, 1),
                "agent_s": round(sum(h["agent_s"] for h in result.history), 1),
                "eval_s": round(sum(h["eval_s"] for h in result.history), 1),
                "mean_steps": statistics.mean(h["steps"] for h in agent_phase)})
            print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / f"agent_ablation_{args.name}_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "episodes": args.episodes, "warmup": args.warmup,
                               "rows": rows}, indent=2) + "\n")
    variants = " ".join(f"--variant {v}" for v in args.variant)
    title = f"Agent ablation: {args.name} ({args.model}"
    lines = [f"## {title}, {args.episodes} episodes, seeds {' '.join(map(str, args.seeds))})", "",
             f"`python benchmarks/agent_ablation.py --model {args.model} --episodes {args.episodes} --warmup "
             f"{args.warmup} --seeds {' '.join(map(str, args.seeds))} {variants} --name {args.name}`. "
             "Validation top-1 before fine-tuning at 50% MACs; seconds are sums over the run's episodes "
             "(agent = DDPG updates).", "",
             "| variant | seed | best val % | agent-phase mean % | last-10 mean % | mean steps | agent s | eval s | "
             "wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['best_val_top1']:.2f} | {r['agent_mean_val_top1']:.2f} | "
                     f"{r['last10_mean_val_top1']:.2f} | {r['mean_steps']:.1f} | {r['agent_s']} | {r['eval_s']} | "
                     f"{r['wall_s']} |")
    write_section(title, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
