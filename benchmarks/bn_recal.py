"""How many training images does BatchNorm recalibration need for a faithful reward? (search default)

For random policies at the budget (as warm-up episodes draw them), compare validation top-1 after
recalibrating on N training images with the 2000-image reference: mean accuracy, rank agreement (Spearman)
and time. Writes benchmarks/results/bn_recal.json and a section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bn_recal.py [--model resnet56] [--policies 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from kit import ROOT, write_section

import gnnrl
from gnnrl.data import load_cifar
from gnnrl.env import EnvConfig, recalibrate_bn
from gnnrl.evaluate import evaluate, use_all_cores
from gnnrl.paths import default_weights
from gnnrl.prune import apply_plan
from gnnrl.search import SearchConfig, make_env

SIZES = (0, 250, 500, 1000, 2000)


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--policies", type=int, default=10)
    args = ap.parse_args()
    use_all_cores()
    data = load_cifar(progress=False)
    model = gnnrl.create(args.model, weights=default_weights(args.model))
    env = make_env(model, data, SearchConfig(env=EnvConfig(bn_recal=max(SIZES))))
    rng = np.random.default_rng(0)
    acc: dict[int, list[float]] = {n: [] for n in SIZES}
    secs: dict[int, list[float]] = {n: [] for n in SIZES}
    eval_secs = []
    for _ in range(args.policies):
        env.reset()
        done = False
        while not done:
            _, _, done, _, _ = env.step(rng.random(len(env.group_ids)))
        for n in SIZES:
            module = apply_plan(env.graph, env.plan_for(env.removed))
            t = time.perf_counter()
            if n:
                recalibrate_bn(module, env.recal_images[:n])
            secs[n].append(time.perf_counter() - t)
            r = evaluate(module, env.val)
            eval_secs.append(r.seconds)
            acc[n].append(r.top1)
    ref = acc[max(SIZES)]
    rows = [{"images": n, "mean_top1": round(float(np.mean(acc[n])), 2),
             "spearman_vs_2000": round(spearman(acc[n], ref), 3),
             "mean_abs_diff_vs_2000": round(float(np.mean(np.abs(np.subtract(acc[n], ref)))), 2),
             # what picking the best policy by this reward costs, in 2000-image top-1 (0: same pick)
             "pick_regret": round(float(max(ref) - ref[int(np.argmax(acc[n]))]), 2),
             "recal_s": round(float(np.mean(secs[n])), 2)}
            for n in SIZES]
    result = {"model": args.model, "policies": args.policies, "val_images": len(env.val),
              "eval_s": round(float(np.mean(eval_secs)), 2), "rows": rows, "top1": acc}
    out = ROOT / "benchmarks" / "results" / f"bn_recal_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"## BN recalibration size ({args.model}, {args.policies} random policies at 50% MACs)", "",
             f"`python benchmarks/bn_recal.py --model {args.model} --policies {args.policies}` — one validation pass "
             f"({len(env.val)} images) "
             f"takes {result['eval_s']} s here.", "",
             "| recal images | mean val top-1 % | Spearman vs 2000 | mean abs. diff vs 2000 (pp) | "
             "regret of its best pick (pp) | recal s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['images']} | {r['mean_top1']} | {r['spearman_vs_2000']} | {r['mean_abs_diff_vs_2000']} | "
              f"{r['pick_regret']} | {r['recal_s']} |" for r in rows]
    write_section(f"BN recalibration size ({args.model}", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
