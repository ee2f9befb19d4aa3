"""Does GNN-RL beat the simple alternatives? Every search method, same episodes, same env, over seeds.

For each seed and method: the search (`gnnrl.search.search(method=…)`, same budget landing, BN re-estimation
and validation split), then the best policy evaluated on test_rest (never seen by the search) and test, with
BatchNorm re-estimated as in the search. Then the same short distilled fine-tune of the best policy of every
method named by --ft-methods, evaluated again. One process, methods of one seed back to back (this machine's
speed drifts: compare within a run).

    .venv/bin/python benchmarks/compare.py --model resnet20 --budget 0.5 --episodes 60 --seeds 0 1 2

Writes benchmarks/results/compare_MODEL[_NAME].json, docs/compare_MODEL[_NAME].png (best-so-far validation
top-1 per episode, mean and min–max band over seeds) and a section of docs/benchmarks.md. Runs live in
runs/compare/MODEL[_NAME]/METHOD-sSEED: rerun the same command after a kill and finished pieces are reused,
an interrupted search resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kit import ROOT, write_section

import gnnrl
from gnnrl.agent import DDPGConfig
from gnnrl.checkpoint import differences
from gnnrl.env import EnvConfig
from gnnrl.files import write_json
from gnnrl.finetune import finetune, finetune_config
from gnnrl.methods import METHODS, ONE_SHOT
from gnnrl.paths import default_weights
from gnnrl.policy import apply_policy, read_policy
from gnnrl.search import LEGACY, SearchConfig, evaluate_policy, make_env, search, settings_read


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """'agent.noise_init=0.3' / 'env.bn_recal=250' / 'warmup=20' → nested SearchConfig overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, value = item.split("=")
        part, _, field = key.rpartition(".")
        default = getattr({"": SearchConfig(), "agent": DDPGConfig(), "env": EnvConfig()}[part], field)
        if isinstance(default, bool) and value not in ("True", "False"):
            raise SystemExit(f"--set {key}: True or False, not {value!r}")
        out.setdefault(part, {})[field] = value == "True" if isinstance(default, bool) else type(default)(value)
    return out


def search_config(args: argparse.Namespace, method: str, seed: int) -> SearchConfig:
    """The search settings shared by every method, plus --set overrides (applied to the learning methods)."""
    over = parse_overrides(args.set)
    env = dataclasses.replace(EnvConfig(budget=args.budget), **over.get("env", {}))
    # the critic filter (DDPGConfig.candidates) is GNN-RL's own addition: AMC runs as published, with plain DDPG
    # exploration (the other methods have no agent)
    agent = DDPGConfig(candidates=1) if method == "amc" else DDPGConfig()
    agent = dataclasses.replace(agent, **over.get("agent", {}))
    warmup = min(30, max(1, args.episodes // 6))
    base = SearchConfig(env=env, agent=agent, episodes=args.episodes, warmup=warmup, seed=seed, method=method)
    return dataclasses.replace(base, **over.get("", {}))


def run_search(args: argparse.Namespace, data: gnnrl.Cifar, method: str, seed: int, folder: Path) -> dict[str, Any]:
    """One search (reused when finished, resumed when interrupted) and its best policy on test_rest and test."""
    done = folder / "row.json"
    config = search_config(args, method, seed)
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    if done.is_file():
        row = json.loads(done.read_text())
        if args.existing:  # tabulated as run: its settings are in the row
            return row
        saved = row.get("config", settings)
        if differences(settings_read(saved), settings_read(settings), defaults=LEGACY):
            raise SystemExit(f"{folder} holds a run with other settings: delete it or choose another --name")
        return row
    model = gnnrl.create(args.model, weights=default_weights(args.model))
    out = folder / "search"
    t = time.perf_counter()
    result = search(model, data, config, out_dir=out, resume=(out / "checkpoint.pt").is_file(), progress=False)
    wall = time.perf_counter() - t
    env = make_env(model, data, config)
    before = {s: evaluate_policy(env, result.removed, data.split(s, val_size=config.val_size)).top1
              for s in ("test_rest", "test")}
    h = result.history
    row = {"method": method, "seed": seed, "episodes": len(h), "best_episode": result.episode,
           "macs_ratio": result.macs_ratio, "params_ratio": result.params_ratio, "val": result.val_top1,
           "test_rest": before["test_rest"], "test": before["test"],
           "best_so_far": np.maximum.accumulate([r["val_top1"] for r in h]).tolist(),
           "wall_s": round(wall, 1), "s_per_episode": round(sum(r["seconds"] for r in h) / len(h), 2),
           "agent_s": round(sum(r["agent_s"] for r in h), 1), "config": settings}
    write_json(done, row)
    return row


def ft_name(args: argparse.Namespace, suffix: str = "") -> str:
    """A fine-tune's file or folder in a run: ft for the default one epoch (older runs), ftN for N epochs."""
    return "ft" + (str(args.ft_epochs) if args.ft_epochs != 1 else "") + suffix


def run_finetune(args: argparse.Namespace, data: gnnrl.Cifar, row: dict[str, Any], folder: Path) -> None:
    """The short distilled fine-tune of a row's best policy; adds ft_test_rest / ft_test to the row."""
    done = folder / ft_name(args, ".json")
    if not done.is_file():
        policy = read_policy(folder / "search" / "policy.json")
        base = gnnrl.create(args.model, weights=default_weights(args.model))
        pruned = apply_policy(base, policy)
        config = finetune_config(epochs=args.ft_epochs, kd=True, seed=row["seed"])
        out = folder / ft_name(args)
        t = time.perf_counter()
        finetune(pruned.module, data, config, teacher=base, out_dir=out,
                 resume=(out / "checkpoint.pt").is_file(), progress=False)
        write_json(done, {s: gnnrl.evaluate(pruned.module, data.split(s)).top1 for s in ("test_rest", "test")}
                   | {"seconds": round(time.perf_counter() - t, 1)})
    ft = json.loads(done.read_text())
    row.update(ft_test_rest=ft["test_rest"], ft_test=ft["test"], ft_s=ft["seconds"])


def summary(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Per method: means and spreads over seeds."""
    out = []
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        s: dict[str, Any] = {"method": m, "seeds": len(rs)}
        for key in ("macs_ratio", "params_ratio", "val", "test_rest", "test", "ft_test_rest", "ft_test", "wall_s",
                    "s_per_episode"):
            vals = [r[key] for r in rs if key in r]
            if vals:  # fine-tunes may cover fewer seeds than searches (counted in ft_seeds)
                s[key] = statistics.mean(vals)
                s[key + "_std"] = statistics.pstdev(vals)
        s["ft_seeds"] = sum("ft_test_rest" in r for r in rs)
        out.append(s)
    return out


def plot(rows: list[dict[str, Any]], methods: list[str], path: Path, title: str) -> None:
    """Best-so-far validation top-1 per episode: mean over seeds, min–max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    n = max(len(r["best_so_far"]) for r in rows)
    for m in methods:
        curves = [r["best_so_far"] for r in rows if r["method"] == m]
        if not curves:
            continue
        c = np.array([cv + [cv[-1]] * (n - len(cv)) for cv in curves])  # one-shot: a flat line
        ep = np.arange(1, n + 1)
        line, = ax.plot(ep, c.mean(0), label=m, ls="--" if m in ONE_SHOT else "-")
        ax.fill_between(ep, c.min(0), c.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("episode")
    ax.set_ylabel("best validation top-1 so far (%), before fine-tuning")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ms(vals: list[float]) -> str:
    """'mean ± std' over seeds (population std: 0 for one seed)."""
    return f"{statistics.mean(vals):.2f} ± {statistics.pstdev(vals):.2f}"


def ablation(args: argparse.Namespace) -> None:
    """A docs section comparing finished `gnnrl` runs of several --name variants (their rows, no new work)."""
    lines = [f"## Agent ablation: {args.model} ({args.budget:.0%} MACs, {args.episodes} episodes)", "",
             "Each row: `python benchmarks/compare.py --model " + args.model + " --episodes " + str(args.episodes) +
             " --seeds 0 1 2" + (" --set warmup=20" if args.episodes == 60 else "") +
             " --methods gnnrl --set agent.KEY=VALUE … --name NAME` with the settings "
             "shown (the rest at the defaults); the table: `python benchmarks/compare.py --model " + args.model +
             " --episodes " + str(args.episodes) + " --ablation " + " ".join(args.ablation) + "`. Seconds include "
             "other jobs running beside each row (rows ran at different times: compare them with care). Top-1 "
             "(%) before fine-tuning, mean ± std over seeds; agent phase: mean val of the episodes after the "
             "warm-up (how good the agent's proposals are, not only its luckiest); FT test_rest: after the "
             "comparison's short fine-tune, where it ran.", "",
             "| variant | settings | seeds | val | test_rest | FT test_rest | agent-phase mean val | agent s "
             "| wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    out = []
    for name in args.ablation:
        folder = ROOT / "runs" / "compare" / (args.model + (f"_{name}" if name else ""))
        done = [f for f in sorted(folder.glob("gnnrl-s*")) if (f / "row.json").is_file()]
        rows = [json.loads((f / "row.json").read_text()) for f in done]
        if not rows:
            continue
        agent_means = []
        for f in done:
            h = [json.loads(x) for x in (f / "search" / "history.jsonl").read_text().splitlines()]
            agent_means.append(statistics.mean(r["val_top1"] for r in h if r["phase"] == "agent"))
        cfg = rows[0].get("config", {}).get("agent", {})
        settings = f"head {cfg.get('head', 'graph')}, critic {cfg.get('critic', 'graph')}, descriptors " \
                   f"{'on' if cfg.get('descriptors') else 'off'}, candidates {cfg.get('candidates', 1)}, " \
                   f"pretrain {cfg.get('pretrain_updates', 0)}"
        for f, row in zip(done, rows, strict=True):
            if (f / "ft.json").is_file():
                row["ft_test_rest"] = json.loads((f / "ft.json").read_text())["test_rest"]
        ft = [r["ft_test_rest"] for r in rows if "ft_test_rest" in r]
        ft_cell = (ms(ft) + (f" ({len(ft)} of {len(rows)})" if len(ft) < len(rows) else "")) if ft else "–"
        lines.append(f"| {name or 'default'} | {settings} | {len(rows)} | {ms([r['val'] for r in rows])} | "
                     f"{ms([r['test_rest'] for r in rows])} | {ft_cell} | {ms(agent_means)} | "
                     f"{statistics.mean(r['agent_s'] for r in rows):.0f} | "
                     f"{statistics.mean(r['wall_s'] for r in rows):.0f} |")
        out.append({"name": name, "rows": rows, "agent_phase_mean_val": agent_means})
    write_json(ROOT / "benchmarks" / "results" / f"compare_ablation_{args.model}.json", {"variants": out})
    write_section(f"Agent ablation: {args.model} ", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--ft-methods", nargs="*", default=["gnnrl", "random", "uniform-internal"],
                    help="methods whose best policies get the short fine-tune")
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="a SearchConfig override, e.g. agent.noise_init=0.3")
    ap.add_argument("--name", default="", help="suffix of the results file, plot and docs section")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--existing", action="store_true", help="no new work: tabulate the finished searches and "
                    "fine-tunes only (e.g. when seeds differ per method)")
    ap.add_argument("--ablation", nargs="+", help="only summarise finished gnnrl runs of these --name variants "
                    "('' for the default run)")
    args = ap.parse_args()
    if args.ft_epochs < 0:
        ap.error(f"--ft-epochs ({args.ft_epochs}) must be 0 or more")
    if args.ablation:
        ablation(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    tag = args.model + (f"_{args.name}" if args.name else "")
    root = ROOT / "runs" / "compare" / tag
    data = gnnrl.load_cifar(progress=False)
    rows = []
    for seed in args.seeds:
        for method in args.methods:
            folder = root / f"{method}-s{seed}"
            if args.existing and not (folder / "row.json").is_file():
                continue
            rows.append(run_search(args, data, method, seed, folder))
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("best_so_far", "config")}), flush=True)
    for row in rows:
        folder = root / f"{row['method']}-s{row['seed']}"
        if args.existing and not (folder / ft_name(args, ".json")).is_file():
            continue
        if row["method"] in args.ft_methods and args.ft_epochs > 0:
            run_finetune(args, data, row, folder)
            print(json.dumps({k: row[k] for k in ("method", "seed", "ft_test_rest", "ft_test")}), flush=True)
    table = summary(rows, args.methods)
    tuned = [r for r in rows if "ft_test_rest" in r]
    result = {"model": args.model, "budget": args.budget, "episodes": args.episodes, "seeds": args.seeds,
              "overrides": args.set, "ft_epochs": args.ft_epochs, "threads": torch.get_num_threads(),
              "summary": table, "rows": rows,
              "spearman_val_vs_ft_test_rest": spearman([r["val"] for r in tuned], [r["ft_test_rest"] for r in tuned])
              if len(tuned) > 2 else None}
    # a longer fine-tune of the same searches is its own table, beside the default one-epoch one
    tag += f"_ft{args.ft_epochs}" if args.ft_epochs != 1 else ""
    write_json(ROOT / "benchmarks" / "results" / f"compare_{tag}.json", result)
    png = ROOT / "docs" / f"compare_{tag}.png"
    title = f"{args.model}, {args.budget:.0%} MACs, {args.episodes} episodes, seeds {args.seeds}"
    plot(rows, args.methods, png, title)
    write_section(f"Method comparison: {tag} ", markdown(args, tag, table, png.name, tuned))


def ranks(x: list[float]) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank."""
    v = np.asarray(x, dtype=np.float64)
    r = np.empty(len(v))
    r[v.argsort(kind="stable")] = np.arange(len(v))
    for u in np.unique(v):
        r[v == u] = r[v == u].mean()
    return r


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation: Pearson's on the ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def markdown(args: argparse.Namespace, tag: str, table: list[dict[str, Any]], png: str,
             tuned: list[dict[str, Any]]) -> str:
    """The docs section: command, table, plot."""
    cmd = (f"python benchmarks/compare.py --model {args.model} --budget {args.budget} --episodes {args.episodes} "
           f"--seeds {' '.join(map(str, args.seeds))}" + "".join(f" --set {s}" for s in args.set)
           + (f" --methods {' '.join(args.methods)}" if args.methods != list(METHODS) else "")
           + (f" --name {args.name}" if args.name else "")
           + (f" --ft-epochs {args.ft_epochs}" if args.ft_epochs != 1 else "")
           + f" --ft-methods {' '.join(args.ft_methods)}" + (" --existing" if args.existing else ""))
    lines = [f"## Method comparison: {tag} ({args.model}, {args.budget:.0%} MACs, {args.episodes} episodes, "
             f"seeds {' '.join(map(str, args.seeds))})", "", f"`{cmd}`", "",
             "One process per row group, one machine; the seconds include other jobs running beside it.", "",
             "Top-1 (%) of each method's best policy, mean ± std over seeds; before fine-tuning = BatchNorm "
             "re-estimated on 500 training images, as in the search. val: the search's 5k images from test; "
             "test_rest: the other 5k, never seen by the search. After fine-tuning: "
             f"{args.ft_epochs} distilled epoch(s) (lr 0.02 cosine, KD w 0.7, T 4) of the same policy.", "",
             "| method | seeds | MACs | params | val | test_rest | test | FT test_rest | FT test | wall s | s/ep |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in table:
        cells = [f"{s[k]:.2f} ± {s[k + '_std']:.2f}" if k in s else "–"
                 for k in ("val", "test_rest", "test", "ft_test_rest", "ft_test")]
        lines.append(f"| {s['method']} | {s['seeds']} | {s['macs_ratio']:.3f} | {s['params_ratio']:.3f} | "
                     f"{' | '.join(cells)} | {s['wall_s']:.0f} | {s['s_per_episode']:.2f} |")
    if any(s["ft_seeds"] not in (0, s["seeds"]) for s in table):
        lines += ["", "FT cells average the seeds whose fine-tune finished: " + ", ".join(
            f"{s['method']} {s['ft_seeds']} of {s['seeds']}" for s in table if s["ft_seeds"]) + "."]
    if len(tuned) > 2:
        lines += ["", f"Does the search's reward rank policies by what fine-tuning gives? Over the {len(tuned)} "
                  f"fine-tuned policies above, Spearman(val before, test_rest after) = "
                  f"{spearman([r['val'] for r in tuned], [r['ft_test_rest'] for r in tuned]):.2f}."]
    lines += ["", f"![best so far]({png})", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
