"""At equal measured latency on the deploy engine, after the same fine-tune: does GNN-RL beat the simple alternatives?

Every method searches under the same budget (`--metric latency` on ONNX Runtime by default, or MACs), with the same
latency model (one table model fitted first and passed to every search), the same width rounding (`--round-to`,
measured on the engine by default) and the same budget landing. Each best policy is then fine-tuned with the same
distilled schedule for every fine-tune seed, and, in the report pass, timed on the engine at batch 1 and 64
interleaved with the original in one process (so that every method's latency is measured alike).

    .venv/bin/python benchmarks/latency_compare.py --prepare                  # fits the shared latency model
    .venv/bin/python benchmarks/latency_compare.py --shard 0/2 &   # and --shard 1/2 beside it: one per core
    .venv/bin/python benchmarks/latency_compare.py --report                   # times every policy, writes the table

Runs live in runs/latency_compare/MODEL/B<budget>/METHOD-sSEED; every piece is written atomically and reused, a
search resumes. Writes benchmarks/results/latency_compare_MODEL.json, docs/latency_compare_MODEL.png and the
"Equal-latency comparison: MODEL" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from kit import ROOT, paired_differences, write_section

import gnnrl
from gnnrl.agent import DDPGConfig
from gnnrl.engines import CpuMeter, Engine, busy_warning, cpu_model
from gnnrl.env import EnvConfig
from gnnrl.files import write_json
from gnnrl.finetune import finetune, finetune_config
from gnnrl.latency import channel_granularity, engine_ratio, fit_table_model, latency_from_dict
from gnnrl.methods import method_spec
from gnnrl.paths import default_weights
from gnnrl.policy import apply_policy, read_policy
from gnnrl.search import SearchConfig, evaluate_policy, make_env, measured_lander, search
from gnnrl.selection import select_after_search


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--metric", default="latency", choices=("latency", "macs"))
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.55])
    ap.add_argument("--methods", nargs="+", default=["gnnrl", "amc", "random", "uniform-internal"],
                    help="search methods; METHOD+tuned: the same method rewarded after a short distilled fine-tune; "
                    "METHOD+capacity: rewarded for the fraction of the MACs kept too (gnnrl.env.CAPACITY_WEIGHT); "
                    "METHOD+select: METHOD's search, then its --finalists best and the simple rules scored after "
                    "--select-steps distilled steps (gnnrl.selection), the best fine-tuned")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--ft-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--searched-ft-seeds", type=int, nargs="+",
                    help="fine-tune seeds of the searched methods' policies (default: --ft-seeds)")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ft-epochs", type=int, default=5)
    ap.add_argument("--engine", default="onnxruntime")
    ap.add_argument("--latency-batch", type=int, default=1)
    ap.add_argument("--round-to", default="auto")
    ap.add_argument("--reward-steps", type=int, default=50, help="short fine-tune steps of a METHOD+tuned search")
    ap.add_argument("--finalists", type=int, default=3, help="METHOD+select: the search's best policies scored")
    ap.add_argument("--select-steps", type=int, default=300, help="METHOD+select: distilled steps per finalist")
    ap.add_argument("--select-batch", type=int, default=64)
    ap.add_argument("--shard", default="0/1", help="i/n: this process does every n-th piece of work, from i")
    ap.add_argument("--only", nargs="+", metavar="METHOD:SEED:FT_SEED",
                    help="fine-tune only these pieces (their searches must be done), in this order")
    ap.add_argument("--prepare", action="store_true", help="only fit the shared latency model and granularity")
    ap.add_argument("--report", action="store_true", help="no new searches or fine-tunes: time and tabulate")
    ap.add_argument("--timing-passes", type=int, default=3,
                    help="--report: each policy timed this many times (7 interleaved rounds each), the median kept")
    ap.add_argument("--reuse-timing", action="store_true",
                    help="--report: keep the latencies the result file already holds for the same policies (timed "
                    "on a quiet machine) and time only new ones")
    ap.add_argument("--tag", help="names the result file, plot and doc section (default: MODEL_METRIC); the runs "
                    "folder stays runs/latency_compare/MODEL_METRIC unless --runs")
    ap.add_argument("--runs", help="the runs folder's name under runs/latency_compare (default: MODEL_METRIC): a "
                    "second experiment at the same budgets, e.g. after a change to the search")
    ap.add_argument("--reuse-ft-from", nargs="+", default=[], metavar="RUNS",
                    help="other runs folders (names under runs/latency_compare) whose finished fine-tunes of the "
                    "same policy, seed and epochs are reused (the fine-tune is deterministic)")
    args = ap.parse_args()
    args.tag = args.tag or f"{args.model}_{args.metric}"
    args.runs = args.runs or f"{args.model}_{args.metric}"
    if any(not 0 < b < 1 for b in args.budgets) or args.ft_epochs < 0 or args.episodes <= args.warmup \
            or args.timing_passes < 1:
        ap.error("budgets in (0, 1), --ft-epochs ≥ 0 (0: no fine-tune), --episodes > --warmup and --timing-passes ≥ 1")
    if missing := [r for r in args.reuse_ft_from if not (ROOT / "runs" / "latency_compare" / r).is_dir()]:
        ap.error(f"--reuse-ft-from: no runs folder {', '.join(missing)} under runs/latency_compare")
    return args


def root(args: argparse.Namespace) -> Path:
    return ROOT / "runs" / "latency_compare" / args.runs


def prepared(args: argparse.Namespace, graph: Any) -> tuple[int, Any]:
    """The rounding and the latency model every search shares (fitted once, then read back)."""
    path = root(args) / "shared.json"
    if not path.is_file():
        engine = Engine(args.engine, 1, args.latency_batch)
        g = channel_granularity(engine) if args.round_to == "auto" else int(args.round_to)
        write_json(path, {"round_to": g, "latency": fit_table_model(graph, engine, g).to_dict()})
    saved = json.loads(path.read_text())
    return int(saved["round_to"]), latency_from_dict(saved["latency"])


def config_for(args: argparse.Namespace, method: str, seed: int, budget: float, round_to: int) -> SearchConfig:
    """The search of `method` ('NAME', 'NAME+tuned': the same method rewarded after a short fine-tune, or
    'NAME+capacity': rewarded for the MACs it keeps too)."""
    name, *variants = method.split("+")  # '+select' searches as the plain method (the same search)
    reward = next((v for v in variants if v in ("tuned", "capacity")), "accuracy")
    env = EnvConfig(budget=budget, metric=args.metric, engine=args.engine, latency_batch=args.latency_batch,
                    round_to=round_to, reward=reward,
                    reward_steps=args.reward_steps)
    agent = DDPGConfig(candidates=1) if name == "amc" else DDPGConfig()  # AMC as published
    return SearchConfig(env=env, agent=agent, episodes=args.episodes, warmup=args.warmup, seed=seed, method=name)


def pieces(args: argparse.Namespace) -> tuple[list[tuple[float, str, int]], list[tuple[float, str, int, int]]]:
    """The searches and the fine-tunes (a one-shot heuristic is searched once, and fine-tuned with every seed)."""
    searches = [(b, m, s) for b in args.budgets for m in args.methods
                for s in (args.seeds[:1] if one_shot(m) else args.seeds)]
    searched = args.searched_ft_seeds if args.searched_ft_seeds is not None else args.ft_seeds
    tunes = [(b, m, s, f) for b, m, s in searches
             for f in (args.ft_seeds if one_shot(m) else searched)] if args.ft_epochs else []
    return searches, tunes


def one_shot(method: str) -> bool:
    """A deterministic heuristic: searched once, whatever the seeds."""
    return method_spec(method.partition("+")[0]).one_shot


def folder(args: argparse.Namespace, budget: float, method: str, seed: int) -> Path:
    return root(args) / f"B{budget:g}" / f"{method}-s{seed}"


def run_search(args: argparse.Namespace, data: Any, latency: Any, round_to: int, budget: float, method: str,
               seed: int) -> None:
    out = folder(args, budget, method, seed)
    if (out / "row.json").is_file():
        return
    if method.endswith("+select"):
        run_selection(args, data, latency, round_to, budget, method, seed)
        return
    model = gnnrl.create(args.model, weights=default_weights(args.model))
    config = config_for(args, method, seed, budget, round_to)
    t = time.perf_counter()
    result = search(model, data, config, out_dir=out / "search", resume=(out / "search/checkpoint.pt").is_file(),
                    progress=False, latency=latency)
    env = make_env(model, data, config, latency)
    # before fine-tuning, every method's policy is measured alike: BatchNorm re-estimated, no short fine-tune
    val, before = (evaluate_policy(env, result.removed, data.split(s)).top1 for s in ("val", "test_rest"))
    write_json(out / "row.json", {"budget": budget, "method": method, "seed": seed, "val": val,
                                  "search_reward_top1": result.val_top1, "test_rest": before,
                                  "macs_ratio": result.macs_ratio,
                                  "predicted_latency_ratio": result.latency_ratio,
                                  "landing_cpu_share": (result.landing or {}).get("cpu_share"),
                                  "search_s": round(time.perf_counter() - t, 1)})


def run_selection(args: argparse.Namespace, data: Any, latency: Any, round_to: int, budget: float, method: str,
                  seed: int) -> None:
    """METHOD+select: METHOD's own search (run first if needed), its best policies and the simple rules scored
    after the same short distilled fine-tune; the winner becomes this folder's policy."""
    base = method.removesuffix("+select")
    run_search(args, data, latency, round_to, budget, base, seed)
    searched = folder(args, budget, base, seed) / "search"
    out = folder(args, budget, method, seed)
    model = gnnrl.create(args.model, weights=default_weights(args.model))
    config = config_for(args, base, seed, budget, round_to)
    env = make_env(model, data, config, latency)
    t = time.perf_counter()
    policy, ranked = select_after_search(env, model, data, searched, top=args.finalists, steps=args.select_steps,
                                         batch_size=args.select_batch, val_from=config.val_from,
                                         out=out / "select", land=measured_lander(env))
    write_json(out / "search" / "policy.json", policy)
    win = ranked[0].candidate
    val, before = (evaluate_policy(env, list(win.removed), data.split(s)).top1 for s in ("val", "test_rest"))
    write_json(out / "row.json", {"budget": budget, "method": method, "seed": seed, "val": val,
                                  "search_reward_top1": win.reward_top1, "test_rest": before,
                                  "macs_ratio": policy["macs_ratio"], "predicted_latency_ratio": win.metric_ratio,
                                  "chosen": win.name, "finalists": policy["selection"]["finalists"],
                                  "landing_cpu_share": win.cpu_share,
                                  "select_s": round(time.perf_counter() - t, 1)})


def same_policy_ft(args: argparse.Namespace, budget: float, method: str, seed: int, ft_seed: int) -> Path | None:
    """A finished fine-tune, with the same seed and epochs, of exactly this folder's policy in another method's
    folder (a '+select' winner is often the search's best or a rule's policy): the fine-tune is deterministic, so
    its result is this one's (checked: two processes, one policy and seed, gave 85.10 % both times)."""
    mine = read_policy(folder(args, budget, method, seed) / "search" / "policy.json")["removed"]
    here = folder(args, budget, method, seed).parent
    others = [d for runs in [here, *(here.parents[1] / r / here.name for r in args.reuse_ft_from)] if runs.is_dir()
              for d in sorted(runs.iterdir())]
    for other in others:
        done, policy = other / f"ft{args.ft_epochs}-f{ft_seed}.json", other / "search" / "policy.json"
        if other != folder(args, budget, method, seed) and done.is_file() and policy.is_file() \
                and read_policy(policy)["removed"] == mine:
            return done
    return None


def run_finetune(args: argparse.Namespace, data: Any, budget: float, method: str, seed: int, ft_seed: int) -> None:
    out = folder(args, budget, method, seed)
    done = out / f"ft{args.ft_epochs}-f{ft_seed}.json"
    while not (out / "row.json").is_file():  # searched by another shard
        time.sleep(10)
    if done.is_file():
        return
    if (twin := same_policy_ft(args, budget, method, seed, ft_seed)) is not None:
        same = twin.parent.name if twin.parent.parent == out.parent else str(twin.parent.relative_to(root(args).parent))
        write_json(done, {**json.loads(twin.read_text()), "same_policy_as": same})
        return
    base = gnnrl.create(args.model, weights=default_weights(args.model))
    pruned = apply_policy(base, read_policy(out / "search" / "policy.json"))
    ft = out / f"ft{args.ft_epochs}-f{ft_seed}"
    t = time.perf_counter()
    finetune(pruned.module, data, finetune_config(epochs=args.ft_epochs, kd=True, seed=ft_seed), teacher=base,
             out_dir=ft, resume=(ft / "checkpoint.pt").is_file(), progress=False)
    best = gnnrl.load(ft / "best.safetensors")
    write_json(done, {s: gnnrl.evaluate(best, data.split(s)).top1 for s in ("test_rest", "test")}
               | {"seconds": round(time.perf_counter() - t, 1)})


def report(args: argparse.Namespace, graph: Any, round_to: int) -> None:
    """Time every policy on the engine (batch 1 and 64, interleaved with the original), then tabulate and plot."""
    searches, _ = pieces(args)
    rows = []
    saved = ROOT / "benchmarks" / "results" / f"latency_compare_{args.tag}.json"
    before = {(r["budget"], r["method"], r["seed"]): r for r in json.loads(saved.read_text())["rows"]} \
        if args.reuse_timing and saved.is_file() else {}
    timed: dict[str, dict[str, float]] = {}  # one timing per distinct policy, the saved ones first
    for (budget, method, seed), old in before.items():
        path = folder(args, budget, method, seed) / "search" / "policy.json"
        if "measured_b1" in old and path.is_file():
            timed.setdefault(json.dumps(read_policy(path)["removed"], sort_keys=True),
                             {k: old[k] for k in ("measured_b1", "measured_b64", "timing_cpu_share") if k in old})
    for budget, method, seed in searches:
        out = folder(args, budget, method, seed)
        if not (out / "row.json").is_file():
            continue
        row = json.loads((out / "row.json").read_text())
        policy = read_policy(out / "search" / "policy.json")
        key = json.dumps(policy["removed"], sort_keys=True)
        if key not in timed:
            plan = apply_policy(gnnrl.create(args.model, weights=default_weights(args.model)), policy).plan
            # the median of several passes: one pass of 7 rounds has read 0.521 for a policy that four more read
            # at 0.500-0.504 (resnet20_latency_r8c)
            meter = CpuMeter()
            timed[key] = {f"measured_b{b}": statistics.median(
                engine_ratio(graph, plan, Engine(args.engine, 1, b), rounds=7, meter=meter)
                for _ in range(args.timing_passes)) for b in (1, 64)} | {"timing_cpu_share": meter.share}
            if meter.busy:
                print(f"warning: {busy_warning(meter.share or 0.0, method + ' seed ' + str(seed))}", file=sys.stderr)
        row.update(timed[key])
        row["policy_sha"] = hashlib.sha256(key.encode()).hexdigest()[:12]  # two seeds may fine-tune one policy
        seeds = {*args.ft_seeds, *(args.searched_ft_seeds or [])}
        row["ft"] = {f: json.loads(p.read_text())["test_rest"] for f in sorted(seeds)
                     if (p := out / f"ft{args.ft_epochs}-f{f}.json").is_file()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = []
    for budget in args.budgets:
        for method in args.methods:
            mine = [r for r in rows if r["budget"] == budget and r["method"] == method]
            if not mine:
                continue
            # a policy two seeds share (a selection often chooses one) is fine-tuned once per fine-tune seed, and
            # counts once: its copy would halve the spread without a second measurement
            after = list({(r.get("policy_sha", id(r)), f): v for r in mine for f, v in r["ft"].items()}.values())
            table.append({"budget": budget, "method": method, "policies": len(mine), "fine_tunes": len(after),
                          **{k: _ms([r[k] for r in mine]) for k in ("measured_b1", "measured_b64", "macs_ratio",
                                                                      "val", "test_rest")},
                          "ft_test_rest": _ms(after),
                          "vs_uniform_internal": paired_differences(
                              [r for r in rows if r["budget"] == budget], method) if method != REFERENCE else None,
                          "chosen": [f"seed {r['seed']}: {r['chosen']} (val after the short fine-tune "
                                     f"{r['finalists'][0]['tuned_top1']:.2f} %)" for r in mine if r.get("chosen")]})
    tag = args.tag
    result = {"model": args.model, "metric": args.metric, "tag": tag, "runs": args.runs, "round_to": round_to,
              "engine": args.engine, "cpu": cpu_model(),
              "timing_passes": args.timing_passes, "episodes": args.episodes, "warmup": args.warmup,
              "ft_epochs": args.ft_epochs, "seeds": args.seeds,
              "ft_seeds": args.ft_seeds, "summary": table, "rows": rows}
    write_json(ROOT / "benchmarks" / "results" / f"latency_compare_{tag}.json", result)
    png = ROOT / "docs" / f"latency_compare_{tag}.png"
    tuned = any(r["ft"] for r in rows)
    if tuned:
        plot(rows, args, png)
    write_section(f"Equal-latency comparison: {tag}", markdown(args, table, png.name if tuned else None, round_to))


REFERENCE = "uniform-internal"
"""the strongest simple alternative at a latency budget, which every method is compared with seed by seed"""


def _ms(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _cell(v: dict[str, float] | None, scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{scale * v['mean']:.{digits}f} ± {scale * v['std']:.{digits}f}"


def _paired(d: dict[str, float] | None) -> str:
    return "–" if d is None else f"{d['mean']:+.2f} ± {d['se']:.2f} ({d['n']})"


def plot(rows: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = dict(zip(args.methods, ("tab:red", "tab:blue", "tab:gray", "tab:green", "tab:purple", "tab:orange",
                                        "tab:brown", "tab:olive", "tab:cyan"),
                      strict=False))
    markers = dict(zip(args.budgets, "os^D", strict=False))
    for r in rows:
        for v in r["ft"].values():
            ax.scatter(r["measured_b1"], v, color=colors[r["method"]], marker=markers[r["budget"]], alpha=0.8)
    for m in args.methods:
        ax.scatter([], [], color=colors[m], label=m)
    for b in args.budgets:
        ax.scatter([], [], color="k", marker=markers[b], label=f"budget {b:g}")
    ax.set_xlabel(f"measured latency / original ({args.engine}, batch 1, 1 thread)")
    ax.set_ylabel(f"test_rest top-1 after {args.ft_epochs} distilled epochs (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(args: argparse.Namespace, table: list[dict[str, Any]], png: str | None, round_to: int) -> str:
    lines = [f"## Equal-latency comparison: {args.tag}", "",
             f"Budget: {args.metric} ({args.engine}, batch {args.latency_batch}, 1 thread, widths rounded to "
             f"multiples of {round_to} (`--round-to {args.round_to}`)); {args.episodes} episodes ({args.warmup} "
             f"warm-up), search seeds {args.seeds}; best policies fine-tuned {args.ft_epochs} distilled epochs "
             f"(fine-tune seeds {args.ft_seeds}; the last column counts the fine-tunes that finished). Latency "
             "measured in the report pass, one process, each policy interleaved with the original (median of "
             f"{args.timing_passes} pass(es) of 7 rounds). Mean ± std over policies (latency, before) and over "
             "policies × fine-tune seeds (after). "
             f"CPU: {cpu_model()}.", "",
             f"Δ vs {REFERENCE}: after-FT test_rest minus {REFERENCE}'s with the same fine-tune seed, mean ± "
             "standard error over policies × seeds (one seed gives both the same data order and augmentation).",
             "", "| budget | method | latency b1 | latency b64 | MACs | val before | test_rest before | "
             f"test_rest after FT | fine-tunes | Δ vs {REFERENCE} (pairs) |", "|---" * 10 + "|"]
    for t in table:
        lines.append(f"| {t['budget']:g} | {t['method']} | {_cell(t['measured_b1'], digits=3)} | "
                     f"{_cell(t['measured_b64'], digits=3)} | {_cell(t['macs_ratio'], digits=3)} | "
                     f"{_cell(t['val'])} | {_cell(t['test_rest'])} | {_cell(t['ft_test_rest'])} | "
                     f"{t['fine_tunes']} | {_paired(t.get('vs_uniform_internal'))} |")
    chosen = [t for t in table if t.get("chosen")]
    if chosen:
        lines += ["", "What each `+select` run fine-tuned (its finalists: the search's best "
                  f"{args.finalists} and the rules uniform-internal and uniform, each scored on val after "
                  f"{args.select_steps} distilled steps × {args.select_batch} images):", ""]
        lines += [f"- budget {t['budget']:g}, {t['method']}: " + "; ".join(t["chosen"]) for t in chosen]
    if png:
        lines += ["", f"![accuracy after fine-tuning against measured latency]({png})"]
    lines += ["", "Commands: `.venv/bin/python benchmarks/latency_compare.py "
              f"--model {args.model} --metric {args.metric} --methods {' '.join(args.methods)} "
              + (f"--tag {args.tag} " if args.tag != f"{args.model}_{args.metric}" else "")
              + (f"--runs {args.runs} " if args.runs != f"{args.model}_{args.metric}" else "") +
              f"--round-to {args.round_to} --budgets {' '.join(f'{b:g}' for b in args.budgets)} "
              f"--seeds {' '.join(map(str, args.seeds))} "
              f"--ft-seeds {' '.join(map(str, args.ft_seeds))} --ft-epochs {args.ft_epochs} [--prepare | --shard i/n "
              "| --report]`", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse()
    if args.report and not any((folder(args, b, m, s) / "row.json").is_file()
                               for b in args.budgets for m in args.methods for s in args.seeds):
        # before anything is fitted or written: a mistyped --runs/--budgets must not leave an empty section
        raise SystemExit(f"latency_compare: nothing to report: no finished search in {root(args)} for these "
                         "--budgets/--methods/--seeds (check --runs and --model/--metric)")
    torch.set_num_threads(1)
    model = gnnrl.create(args.model, weights=default_weights(args.model))
    graph = gnnrl.trace(model, torch.zeros(1, 3, 32, 32))
    round_to, latency = prepared(args, graph)
    if args.prepare:
        print(f"round_to {round_to}; latency model {latency.coef}")
        return
    if args.report:
        report(args, graph, round_to)
        return
    i, n = (int(v) for v in args.shard.split("/"))
    data = gnnrl.load_cifar(progress=False)
    searches, tunes = pieces(args)
    if args.only:  # fine-tunes only: a search another process is running must not be started here too
        wanted = [(m, int(s), int(f)) for m, s, f in (o.split(":") for o in args.only)]
        tunes = sorted((t for t in tunes if t[1:] in wanted), key=lambda t: wanted.index(t[1:]))
        missing = [f"{m}:{s} at {b:g}" for b, m, s, _ in tunes if not (folder(args, b, m, s) / "row.json").is_file()]
        if missing:
            raise SystemExit(f"latency_compare: --only: the searches of {', '.join(missing)} are not finished; run "
                             "them first (without --only)")
        searches = []
    for k, (budget, method, seed) in enumerate(searches):
        if k % n == i:
            run_search(args, data, latency if args.metric == "latency" else None, round_to, budget, method, seed)
            print("searched", budget, method, seed, flush=True)
    for k, piece in enumerate(tunes):
        if k % n == i:
            run_finetune(args, data, *piece)
            print("fine-tuned", *piece, flush=True)


if __name__ == "__main__":
    main()
