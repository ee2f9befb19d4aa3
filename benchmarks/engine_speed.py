"""Pruning-engine hot paths, this tree against another revision, side by side in one run.

The search calls these thousands of times per run: the non-evaluating part of an env step (the budget landing's
31 analytic costs plus one observation), `cost_after`, `CompGraph.edge_features`, `apply_plan`,
`ratios_for_budget`, `prune`, and tracing + channel analysis. Each revision is timed in its own process (one
thread), the two alternating for `--rounds` rounds, so machine drift hits both alike; the table reports the
median over rounds of each process's median and the ratio new / old.

    .venv/bin/python benchmarks/engine_speed.py --against 4744856 [--model resnet56] [--rounds 3]

`--against REV` checks REV out in a temporary git worktree. Writes benchmarks/results/engine_speed.json and the
"Engine speed" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit import ROOT


def measure(model_name: str) -> dict[str, float]:
    """Median milliseconds of each hot path, for the gnnrl on sys.path."""
    import numpy as np
    import torch

    import gnnrl
    from gnnrl.graph import build
    from gnnrl.groups import analyze
    from gnnrl.hierarchy import build_hierarchy
    from gnnrl.prune import apply_plan, cost_after, plan_from_removed, prune, ratios_for_budget, removal_orders

    torch.set_num_threads(1)
    model = gnnrl.create(model_name).eval()
    x = torch.randn(1, 3, 32, 32)

    def ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return statistics.median(out)

    def fresh():  # type: ignore[no-untyped-def]
        g = gnnrl.trace(model, x)
        analyze(g)
        return g

    res = {"trace_and_groups": ms(fresh, 5)}
    g = fresh()
    build_hierarchy(g)
    order = removal_orders(g, [gr.id for gr in analyze(g).groups if gr.prunable])
    sizes = np.array([len(o) for o in order])
    rng = np.random.default_rng(0)
    removed = [(rng.random(len(sizes)) * (sizes - 1)).astype(int) for _ in range(50)]
    comp = build(g)
    counter = iter(range(10**9))

    def plan():  # type: ignore[no-untyped-def]
        return plan_from_removed(g, order, removed[next(counter) % 50])

    def step() -> None:  # an env step without its evaluation: the landing's bisection, then the observation
        p = plan()
        for _ in range(31):
            cost_after(g, p)
        comp.edge_features(p.keep)

    res["env_step_no_eval"] = ms(step, 30)
    res["cost_after"] = ms(lambda: cost_after(g, plan()), 200)
    res["edge_features"] = ms(lambda: comp.edge_features(plan().keep), 200)
    res["apply_plan"] = ms(lambda: apply_plan(g, plan()), 30)
    res["ratios_for_budget"] = ms(lambda: ratios_for_budget(g, 0.5), 5)
    res["prune_plus_cost_after"] = ms(lambda: prune(g, ratios=0.5), 20)
    return res


def run_in(src: Path, model_name: str) -> dict[str, float]:
    """`measure` in a fresh process importing gnnrl from `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, __file__, "--measure", "--model", model_name], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:  # the child's own last line says why (e.g. an unknown model name)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"engine_speed: measuring {src} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", help="git revision to compare with (default: measure this tree only)")
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.model)))
        return
    if not args.against:
        print(json.dumps(run_in(ROOT / "src", args.model), indent=1))
        return
    from kit import write_section

    found = subprocess.run(["git", "rev-parse", "--short", "--verify", "--quiet", f"{args.against}^{{commit}}"],
                           cwd=ROOT, capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"engine_speed: {args.against!r} is not a commit of this repository (try `git log --oneline`)")
    rev = found.stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            rounds: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                rounds["old"].append(run_in(old_tree / "src", args.model))
                rounds["new"].append(run_in(ROOT / "src", args.model))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    keys = list(rounds["new"][0])
    table = {k: {side: round(statistics.median(r[k] for r in rounds[side]), 3) for side in ("old", "new")}
             for k in keys}
    for row in table.values():
        row["new/old"] = round(row["new"] / row["old"], 3)
    result = {"model": args.model, "against": rev, "rounds": args.rounds, "threads": 1, "ms": table}
    path = ROOT / "benchmarks" / "results" / "engine_speed.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"## Engine speed ({args.model}, this tree vs {rev})", "",
             f"`python benchmarks/engine_speed.py --against {rev} --model {args.model} --rounds {args.rounds}`", "",
             "Median milliseconds per call, one thread, the two revisions in alternating processes "
             f"({args.rounds} rounds each). Other jobs may share the machine: compare the ratios, not the times.",
             "", "| path | old | new | new/old |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['old']:.2f} | {v['new']:.2f} | {v['new/old']:.2f} |" for k, v in table.items()]
    write_section("Engine speed", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
