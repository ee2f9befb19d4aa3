"""Does the search's reward rank policies by what the user finally gets? (issue 14, item 5)

Takes ~10 policies of spread-out reward from one search's history (quantiles of its validation accuracy), and
for each measures candidate rewards and the final result:

- `val_top1`: the search's reward, top-1 on the 5k validation images after BatchNorm re-estimation on 500
  training images;
- `val_loss`: minus the cross-entropy on the same images after the same re-estimation (free: same pass);
- `short_ft`: top-1 on the validation images after a short distilled fine-tune (`--short-steps` SGD steps of 128
  images, lr 0.02 cosine, KD weight 0.7 at T 4) — a reward a search could afford for a bounded cost;
- the final result: test_rest top-1 after the same distilled fine-tune that benchmarks/compare.py uses
  (`--ft-epochs`, default 1 epoch over the 50k training images).

Spearman's rank correlation of each candidate reward with the final result says which one ranks policies the
way fine-tuning will. Each policy is its own folder (runs/reward_study/MODEL/pNN), so shards run in parallel
processes (`--shard 0/2`, `--shard 1/2`) and a killed run resumes; `--report` gathers them.

    .venv/bin/python benchmarks/reward_study.py --model resnet20 \\
        --history runs/compare/resnet20/gnnrl-s0/search/history.jsonl [--n 10] [--shard 0/2 | --report]

Writes benchmarks/results/reward_study_MODEL.json and the "Reward study" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kit import ROOT


def pick(history: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """`n` episodes whose validation accuracies are spread over the run's range (quantiles, distinct policies)."""
    seen, unique = set(), []
    for h in sorted(history, key=lambda h: h["val_top1"]):
        key = tuple(h["removed"])
        if key not in seen:
            seen.add(key)
            unique.append(h)
    idx = np.unique(np.round(np.linspace(0, len(unique) - 1, n)).astype(int))
    return [unique[i] for i in idx]


def measure(args: argparse.Namespace, i: int, episode: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The candidate rewards and the final fine-tuned accuracy of one policy (resumable by stage)."""
    import torch.nn.functional as F

    import gnnrl
    from gnnrl.data import load_cifar
    from gnnrl.env import EnvConfig
    from gnnrl.finetune import finetune, finetune_config
    from gnnrl.paths import default_weights
    from gnnrl.prune import apply_plan
    from gnnrl.search import SearchConfig, make_env

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if args.select_steps and result.get("select_steps") != args.select_steps:  # a column added later
            result.update(select_score(args, episode))
            done.write_text(json.dumps(result, indent=2) + "\n")
        return result
    data = load_cifar(progress=False)
    base = gnnrl.create(args.model, weights=default_weights(args.model))
    config = SearchConfig(env=EnvConfig(budget=args.budget))
    env = make_env(base, data, config)
    removed = np.array(episode["removed"])
    val = data.split("val")

    def pruned() -> torch.nn.Module:
        module = apply_plan(env.graph, env.plan_for(removed))
        env.recalibrate(module)
        return module

    t0 = time.perf_counter()
    module = pruned().eval()
    with torch.inference_mode():
        logits = torch.cat([module(x) for x, _ in val.batches(256)])
    loss = float(F.cross_entropy(logits, val.labels))
    top1 = 100.0 * float((logits.argmax(1) == val.labels).float().mean())
    t1 = time.perf_counter()
    steps = args.short_steps
    short = finetune(pruned(), data, finetune_config(epochs=1, kd=True, seed=0, subset=steps * 128), teacher=base,
                     progress=False)
    t2 = time.perf_counter()
    student = pruned()
    finetune(student, data, finetune_config(epochs=args.ft_epochs, kd=True, seed=0), teacher=base,
             out_dir=folder / "ft", resume=(folder / "ft" / "checkpoint.pt").is_file(), progress=False)
    final = gnnrl.evaluate(student, data.split("test_rest")).top1
    result = {"index": i, "episode": episode["episode"], "search_val_top1": episode["val_top1"],
              "val_top1": top1, "val_loss": loss, "short_ft_val_top1": short.val_top1, "final_test_rest": final,
              "seconds": {"reward": t1 - t0, "short_ft": t2 - t1, "final_ft": time.perf_counter() - t2},
              "macs_ratio": episode["macs_ratio"]}
    if args.select_steps:
        result.update(select_score(args, episode))
    done.write_text(json.dumps(result, indent=2) + "\n")
    print(result, flush=True)
    return result


def select_score(args: argparse.Namespace, episode: dict[str, Any]) -> dict[str, Any]:
    """The score `gnnrl compress` selects its finalists by (`gnnrl.selection.score`: `--select-steps` distilled
    steps × 64 images, no augmentation, one seed for all, then val top-1), for this policy."""
    import gnnrl
    from gnnrl.data import load_cifar
    from gnnrl.env import EnvConfig
    from gnnrl.paths import default_weights
    from gnnrl.search import SearchConfig, make_env
    from gnnrl.selection import Candidate, score, selection_tune_set

    data = load_cifar(progress=False)
    base = gnnrl.create(args.model, weights=default_weights(args.model))
    config = SearchConfig(env=EnvConfig(budget=args.budget))
    env = make_env(base, data, config)
    tune = selection_tune_set(base, data, config.val_from, args.select_steps, 64)
    cand = Candidate("p", tuple(episode["removed"]), episode["val_top1"], episode["macs_ratio"], episode["macs_ratio"])
    fin = score(env, cand, tune, args.select_steps, 64)
    return {"select_steps": args.select_steps, "select_val_top1": fin.tuned_top1, "select_seconds": fin.seconds}


def report(args: argparse.Namespace, chosen: list[dict[str, Any]], folder: Path) -> None:
    """Gather the finished policies, correlate each reward with the final accuracy, write JSON and docs."""
    from compare import spearman
    from kit import write_section

    from gnnrl.files import write_json

    rows = [json.loads((folder / f"p{i:02d}" / "result.json").read_text()) for i in range(len(chosen))
            if (folder / f"p{i:02d}" / "result.json").is_file()]
    final = [r["final_test_rest"] for r in rows]
    rewards = {"val_top1": [r["val_top1"] for r in rows], "val_loss": [-r["val_loss"] for r in rows],
               "short_ft": [r["short_ft_val_top1"] for r in rows]}
    if rows and all("select_val_top1" in r for r in rows):
        rewards["selection"] = [r["select_val_top1"] for r in rows]
    top = sorted(range(len(rows)), key=lambda k: rows[k]["val_top1"])[len(rows) // 2:]
    corr = {k: spearman(v, final) for k, v in rewards.items()}
    corr_top = {k: spearman([v[t] for t in top], [final[t] for t in top]) for k, v in rewards.items()}
    cost = {k: float(np.mean([r["seconds"][s] for r in rows])) for k, s in
            (("val_top1", "reward"), ("val_loss", "reward"), ("short_ft", "short_ft"))}
    if "selection" in rewards:
        cost["selection"] = float(np.mean([r["select_seconds"] for r in rows]))
    out = {"model": args.model, "budget": args.budget, "history": str(args.history), "ft_epochs": args.ft_epochs,
           "short_steps": args.short_steps,
           "select_steps": args.select_steps, "rows": rows, "spearman": corr, "spearman_top_half": corr_top,
           "mean_seconds": cost}
    write_json(ROOT / "benchmarks" / "results" / f"reward_study_{args.tag}.json", out)
    title = f"Reward study ({args.model}, {len(rows)} policies)" if args.tag == args.model else \
        f"Reward study: {args.tag}"
    lines = [f"## {title}", "",
             f"`python benchmarks/reward_study.py --model {args.model} --budget {args.budget:g} --history "
             f"{args.history} --n {args.n} --ft-epochs {args.ft_epochs} --short-steps {args.short_steps}"
             + (f" --select-steps {args.select_steps}" if "selection" in rewards else "")
             + (f" --tag {args.tag}" if args.tag != args.model else "") + "` "
             f"(benchmarks/results/reward_study_{args.tag}.json). Policies: quantiles of the validation "
             "accuracy over one search's episodes. Final = test_rest top-1 after a "
             f"{args.ft_epochs}-epoch distilled fine-tune (as in the method comparison). Short fine-tune = "
             f"{args.short_steps} distilled SGD steps of 128 images, then validation top-1." +
             (f" Selection = the score `gnnrl compress` picks its finalists by (`gnnrl.selection.score`: "
              f"{args.select_steps} distilled steps of 64 images, then validation top-1)." if "selection" in rewards
              else ""), "",
             "| policy (episode) | MACs | val top-1 (reward) | −val loss | short FT val |" +
             (" selection |" if "selection" in rewards else "") + " final test_rest |",
             "|---|---|---|---|---|---|" + ("---|" if "selection" in rewards else "")]
    for r in sorted(rows, key=lambda r: r["val_top1"]):
        sel = f" {r['select_val_top1']:.2f} |" if "selection" in rewards else ""
        lines.append(f"| {r['episode']} | {r['macs_ratio']:.3f} | {r['val_top1']:.2f} | {-r['val_loss']:.3f} | "
                     f"{r['short_ft_val_top1']:.2f} |{sel} {r['final_test_rest']:.2f} |")
    lines += ["", "| reward | Spearman with final (all) | Spearman (top half by reward) | seconds per policy |",
              "|---|---|---|---|"]
    for k in rewards:
        lines.append(f"| {k} | {corr[k]:.2f} | {corr_top[k]:.2f} | {cost[k]:.1f} |")
    write_section(title, "\n".join(lines) + "\n")
    print(json.dumps({"spearman": corr, "spearman_top_half": corr_top, "seconds": cost}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--history", type=Path, required=True, help="a search's history.jsonl")
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--short-steps", type=int, default=200)
    p.add_argument("--select-steps", type=int, default=0,
                   help="also the finalists' selection score after this many steps (0: not measured)")
    p.add_argument("--shard", default="0/1", help="I/N: measure every N-th policy starting at I")
    p.add_argument("--report", action="store_true", help="only gather finished policies and write the results")
    p.add_argument("--tag", help="names the run folder, result file and doc section (default: the model)")
    args = p.parse_args()
    args.tag = args.tag or args.model
    from gnnrl.evaluate import use_all_cores

    use_all_cores()  # GNNRL_THREADS=1 for shards side by side
    history = [json.loads(line) for line in args.history.read_text().splitlines() if line.strip()]
    chosen = pick(history, args.n)
    folder = ROOT / "runs" / "reward_study" / args.tag
    if not args.report:
        i0, n = (int(x) for x in args.shard.split("/"))
        for i in range(i0, len(chosen), n):
            measure(args, i, chosen[i], folder / f"p{i:02d}")
    report(args, chosen, folder)


if __name__ == "__main__":
    main()
