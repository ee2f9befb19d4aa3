"""Does choosing among a search's top policies by a short fine-tune give a better final network? (issue 14)

The search's reward (top-1 after BatchNorm re-estimation) ranks the good policies poorly by what a fine-tune then
gives (docs "Method comparison": the best-on-val policy is not the best after fine-tuning). This benchmark tries a
two-fidelity selection on finished `benchmarks/compare.py` searches: take each search's K best distinct policies
by the search's reward, give each the same short distilled fine-tune (`--steps` SGD steps of 128 images, lr 0.02
cosine, KD weight 0.7 at T 4), keep the one with the best validation top-1 after it, and give that policy the
comparison's final fine-tune (1 distilled epoch). The same K and steps for every method, so it stays a fair
comparison: a method gains from it only if its top-K holds better policies than its single best.

    .venv/bin/python benchmarks/rerank.py --model resnet20 --k 5 --steps 200 --seeds 0 1 2 \\
        --methods gnnrl random amc [--report]

Each candidate is its own file (runs/compare/MODEL/METHOD-sSEED/rerankK-S/cN.json), so processes for different
methods run side by side and a killed run resumes. Writes benchmarks/results/rerank_MODEL.json and the
"Rerank" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from compare import ROOT, ms
from kit import write_section

import gnnrl
from gnnrl.files import write_json
from gnnrl.finetune import finetune, finetune_config
from gnnrl.paths import default_weights
from gnnrl.policy import apply_policy, read_policy


def top_k(history: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The k best distinct policies by the search's reward (the first episode of a repeated policy)."""
    seen, out = set(), []
    for h in sorted(history, key=lambda h: (-h["reward"], h["episode"])):
        key = tuple(h["removed"])
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out[:k]


def with_removed(policy: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The search's policy.json with another episode's channel counts (the same groups, in the same order)."""
    return {**policy, "removed": dict(zip(policy["removed"], record["removed"], strict=True)),
            "episode": record["episode"], "val_top1": record["val_top1"]}


def short_ft(args: argparse.Namespace, data: gnnrl.Cifar, base: torch.nn.Module, policy: dict[str, Any],
             seed: int) -> float:
    """Validation top-1 after the short distilled fine-tune."""
    pruned = apply_policy(base, policy)
    config = finetune_config(epochs=1, kd=True, seed=seed, subset=args.steps * 128)
    return finetune(pruned.module, data, config, teacher=base, progress=False).val_top1


def final_ft(data: gnnrl.Cifar, base: torch.nn.Module, policy: dict[str, Any], seed: int, out: Path
             ) -> dict[str, float]:
    """compare.py's final fine-tune (1 distilled epoch, the row's seed), then test_rest / test top-1."""
    pruned = apply_policy(base, policy)
    finetune(pruned.module, data, finetune_config(epochs=1, kd=True, seed=seed), teacher=base, out_dir=out,
             resume=(out / "checkpoint.pt").is_file(), progress=False)
    return {s: gnnrl.evaluate(pruned.module, data.split(s)).top1 for s in ("test_rest", "test")}


def run(args: argparse.Namespace, data: gnnrl.Cifar, folder: Path, seed: int) -> dict[str, Any]:
    """Rerank one search's top-K and fine-tune the winner (each piece reused when already done)."""
    work = folder / f"rerank{args.k}-{args.steps}"
    done = work / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    base = gnnrl.create(args.model, weights=default_weights(args.model))
    policy = read_policy(folder / "search" / "policy.json")
    history = [json.loads(line) for line in (folder / "search" / "history.jsonl").read_text().splitlines() if line]
    cands = []
    for i, record in enumerate(top_k(history, args.k)):
        path = work / f"c{i}.json"
        if not path.is_file():
            t = time.perf_counter()
            val = short_ft(args, data, base, with_removed(policy, record), seed)
            write_json(path, {"episode": record["episode"], "val_top1": record["val_top1"], "short_ft_val": val,
                              "seconds": round(time.perf_counter() - t, 1)})
        cands.append(json.loads(path.read_text()))
    best = max(range(len(cands)), key=lambda i: (cands[i]["short_ft_val"], cands[i]["val_top1"]))
    record = top_k(history, args.k)[best]
    if best == 0 and (folder / "ft.json").is_file():  # the search's own best: compare.py fine-tuned it already
        ft = json.loads((folder / "ft.json").read_text())
    else:
        t = time.perf_counter()
        ft = final_ft(data, base, with_removed(policy, record), seed, work / "ft") | {
            "seconds": round(time.perf_counter() - t, 1)}
    row = json.loads((folder / "row.json").read_text())
    result = {"method": row["method"], "seed": seed, "candidates": cands, "chosen": best,
              "chosen_episode": record["episode"], "val": record["val_top1"],
              "params_ratio": record["params_ratio"], "ft_test_rest": ft["test_rest"], "ft_test": ft["test"],
              "best_val_ft_test_rest": json.loads((folder / "ft.json").read_text())["test_rest"]
              if (folder / "ft.json").is_file() else None,
              "seconds": round(sum(c["seconds"] for c in cands) + ft.get("seconds", 0.0), 1)}
    write_json(done, result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["gnnrl", "random", "amc"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="only tabulate finished reranks")
    args = ap.parse_args()
    if args.k < 1 or args.steps < 1:
        ap.error("--k and --steps must be 1 or more")
    root = ROOT / "runs" / "compare" / args.model
    missing = [f"{m}-s{s}" for s in args.seeds for m in args.methods if not (root / f"{m}-s{s}" / "row.json").is_file()]
    if missing and not args.report:
        ap.error(f"no finished comparison search in {root} for {', '.join(missing)}: run benchmarks/compare.py first")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = None if args.report else gnnrl.load_cifar(progress=False)
    rows = []
    for seed in args.seeds:
        for method in args.methods:
            folder = root / f"{method}-s{seed}"
            done = folder / f"rerank{args.k}-{args.steps}" / "result.json"
            if args.report:
                if done.is_file():
                    rows.append(json.loads(done.read_text()))
                continue
            rows.append(run(args, data, folder, seed))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "candidates"}), flush=True)
    if args.report:
        if not rows:  # an empty table would replace the committed one
            ap.error(f"no finished rerank in {root} for these methods and seeds; nothing written")
        report(args, rows)


def report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """JSON and the docs table: the final accuracy of the reranked choice against the best-on-val policy's."""
    lines = [f"## Rerank ({args.model}, top {args.k} by reward, {args.steps}-step distilled fine-tune)", "",
             f"`python benchmarks/rerank.py --model {args.model} --k {args.k} --steps {args.steps} --seeds "
             f"{' '.join(map(str, args.seeds))} --methods {' '.join(args.methods)}` (then `--report`; "
             f"benchmarks/results/rerank_{args.model}.json). On the searches of 'Method comparison: {args.model}'. "
             "FT = the comparison's fine-tune (1 distilled epoch, the run's seed), test_rest top-1 %, mean ± std "
             "over seeds.", "",
             "| method | seeds | FT of the best-on-val policy | FT of the reranked choice | chosen ≠ best-on-val | "
             "s per search |", "|---|---|---|---|---|---|"]
    summary = []
    for method in args.methods:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        before = [r["best_val_ft_test_rest"] for r in rs if r["best_val_ft_test_rest"] is not None]
        s = {"method": method, "seeds": len(rs), "ft_best_val": before, "ft_reranked": [r["ft_test_rest"] for r in rs],
             "changed": sum(r["chosen"] != 0 for r in rs), "seconds": sum(r["seconds"] for r in rs) / len(rs)}
        summary.append(s)
        lines.append(f"| {method} | {len(rs)} | {ms(before)} | {ms(s['ft_reranked'])} | {s['changed']} of {len(rs)} "
                     f"| {s['seconds']:.0f} |")
    write_json(ROOT / "benchmarks" / "results" / f"rerank_{args.model}.json",
               {"model": args.model, "k": args.k, "steps": args.steps, "summary": summary, "rows": rows})
    write_section(f"Rerank ({args.model}", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
