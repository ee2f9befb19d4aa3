"""Fine-tune one searched policy with and without distillation: test top-1 before and after, same schedule.

One variant per process (run the two side by side, one thread each, so both see the same machine load):

    .venv/bin/python benchmarks/finetune_kd.py --policy benchmarks/results/policy_r20-60.json --epochs 25 \
        --threads 1 --kd --out runs/ft-r20-kd
    .venv/bin/python benchmarks/finetune_kd.py --policy benchmarks/results/policy_r20-60.json --epochs 25 \
        --threads 1 --no-kd --out runs/ft-r20-nokd
    .venv/bin/python benchmarks/finetune_kd.py --report runs/ft-r20-kd runs/ft-r20-nokd --name r20

Writes RUN/result.json per variant; --report writes benchmarks/results/finetune_kd_NAME.json and a section of
docs/benchmarks.md. Resumable: rerun the same command after a kill and it continues from the last epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from kit import ROOT, write_section

import gnnrl
from gnnrl.env import recalibrate_bn
from gnnrl.files import write_json
from gnnrl.finetune import finetune, finetune_config
from gnnrl.paths import default_weights
from gnnrl.policy import apply_policy, read_policy


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    policy = read_policy(args.policy)
    name = policy["model"]["name"]
    data = gnnrl.load_cifar(progress=False)
    base = gnnrl.create(name, weights=default_weights(name))
    pruned = apply_policy(base, policy)
    splits = {s: data.split(s) for s in ("val", "test_rest", "test")}
    before = pruned.module
    recal = data.split("train").balanced_subset(500, seed=1).normalized
    probe = gnnrl.prune(before, torch.zeros(1, 3, 32, 32), ratios=0.0).module  # an independent copy
    recalibrate_bn(probe, recal)
    result = {"policy": str(args.policy), "model": name, "macs_ratio": pruned.macs_ratio,
              "params_ratio": pruned.cost.params / pruned.base_cost.params, "kd": args.kd,
              "threads": args.threads,
              "before": {s: gnnrl.evaluate(probe, sp).top1 for s, sp in splits.items()}}
    config = finetune_config(epochs=args.epochs, kd=args.kd)
    out = Path(args.out)
    res = finetune(pruned.module, data, config, teacher=base if args.kd else None, out_dir=out / "ft",
                   resume=(out / "ft" / "checkpoint.pt").is_file(), progress=False)
    best = gnnrl.load(res.best_path)
    result.update(config={k: getattr(config, k) for k in ("epochs", "lr", "batch_size", "kd_weight",
                                                          "kd_temperature", "label_smoothing")},
                  best_epoch=res.best_epoch, seconds=res.history[-1]["seconds"] if res.history else None,
                  after_best={s: gnnrl.evaluate(best, sp).top1 for s, sp in splits.items()},
                  after_last={s: gnnrl.evaluate(pruned.module, sp).top1 for s, sp in splits.items()},
                  history=res.history)
    write_json(out / "result.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))


def report(runs: list[str], name: str, note: str = "") -> None:
    results = [json.loads((Path(r) / "result.json").read_text()) for r in runs]
    write_json(ROOT / "benchmarks" / "results" / f"finetune_kd_{name}.json", results)
    r0 = results[0]
    lines = [f"`python benchmarks/finetune_kd.py --policy {r0['policy']} --epochs {r0['config']['epochs']} "
             f"--threads {r0['threads']} --kd|--no-kd` (both variants side by side on this machine). "
             f"MACs {r0['macs_ratio']:.3f}, params {r0['params_ratio']:.3f} of the original. Before fine-tuning: "
             "BatchNorm re-estimated on 500 training images (as in the search). After: the best-on-val epoch.",
             "", "| variant | schedule | val % | test_rest % | test (10k) % | best epoch | wall min |",
             "|---|---|---|---|---|---|---|",
             "| before fine-tuning | — | {val:.2f} | {test_rest:.2f} | {test:.2f} | — | — |".format(**r0["before"])]
    for r in results:
        c = r["config"]
        sched = (f"{c['epochs']} ep, SGD-nesterov lr {c['lr']} cosine, bs {c['batch_size']}"
                 + (f", KD w={c['kd_weight']} T={c['kd_temperature']}" if r["kd"] else ", no KD"))
        a = r["after_best"]
        lines.append(f"| {'KD' if r['kd'] else 'no KD'} | {sched} | {a['val']:.2f} | {a['test_rest']:.2f} | "
                     f"{a['test']:.2f} | {r['best_epoch']} | {r['seconds'] / 60:.1f} |")
    if note:
        lines += ["", note]
    title = f"Fine-tuning with and without distillation ({r0['model']}"
    write_section(title, f"## {title}, {r0['macs_ratio']:.0%} MACs)\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policy")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kd", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out")
    ap.add_argument("--report", nargs="+")
    ap.add_argument("--name", default="r20")
    ap.add_argument("--note", default="", help="with --report: the conditions of the runs, printed under the table")
    args = ap.parse_args()
    if args.report:
        report(args.report, args.name, args.note)
    else:
        run(args)


if __name__ == "__main__":
    main()
