"""`gnnrl` command line: a thin layer over the Python API (every command is a few API calls)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import GnnrlError, WeightsError
from .evaluate import DEFAULT_BATCH_SIZE
from .files import atomic_write, check_writable, prepare_run_dir, write_json

console = Console(stderr=True)
out = Console()


def _add_data_args(p: argparse.ArgumentParser, val_from: str = "test") -> None:
    p.add_argument("--data", help="CIFAR source: PNG tarball, ImageFolder tree or python batches folder "
                   "(default: $GNNRL_DATA, else ../shared/data); or an ImageNet-style folder (train/<class>/, "
                   "val/<class>/, images of any size), which is streamed")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100", "imagefolder"),
                   help="imagefolder: stream --data's images (resize 256 / crop 224), never loading them whole; "
                   "chosen by itself for a folder with train/ and val/")
    p.add_argument("--val-from", default=val_from, choices=("test", "train"),
                   help=f"carve the 5k validation split out of test (paper protocol) or train (default: {val_from})")


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-pickle", action="store_true",
                   help="load checkpoints that contain pickled Python objects (only for files you trust)")


def _resolve_weights(name: str, given: str | None, dataset: str) -> Path | None:
    """The given weights path, or the shared default checkpoint for `name`; 'none' means random init."""
    from .paths import default_weights

    if given is not None:
        return None if given.lower() == "none" else Path(given)
    found = default_weights(name, dataset)
    if found is None:
        raise WeightsError(f"no --weights given and no default checkpoint for {name} (looked in $GNNRL_MODELS and "
                           f"../shared/models/{dataset}/). Pass --weights FILE, or --weights none for random init.")
    return found


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one or more models on a split and print accuracy, MACs and params."""
    from .cost import count_flops
    from .data import load_dataset
    from .evaluate import evaluate, use_all_cores
    from .models import canonical_name, create
    from .saving import is_pruned_file, load

    if args.weights and len(args.weights) != len(args.model):
        raise GnnrlError(f"got {len(args.model)} --model names but {len(args.weights)} --weights; give one each")
    # Check names and weights before the (possibly slow) data load, so mistakes surface at once.
    if args.json:
        check_writable(args.json)
    names = [canonical_name(n) for n in args.model]
    paths = [_resolve_weights(n, args.weights[i] if args.weights else None, args.dataset) for i, n in enumerate(names)]
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet)
    split = data.split(args.split, val_from=args.val_from)
    rows = []
    for name, weights in zip(names, paths, strict=True):
        if weights is not None and is_pruned_file(weights):  # a pruned file rebuilds its own (smaller) architecture
            model = load(weights)
        else:
            model = create(name, num_classes=data.num_classes, weights=weights, allow_pickle=args.allow_pickle)
        cost = count_flops(model, (1, *split.image_shape))
        result = evaluate(model, split, batch_size=args.batch_size)
        rows.append({
            "model": name, "weights": str(weights) if weights else None, "dataset": data.name,
            "split": split.name, "val_from": args.val_from, "correct": result.correct, "total": result.total,
            "top1": round(result.top1, 4), "macs": cost.macs, "params": cost.params,
            "seconds": round(result.seconds, 3), "batch_size": args.batch_size,
        })
    table = Table(title=f"{data.name} · split {split.name} ({len(split)} images, source: {data.source})")
    for col in ("model", "top-1 %", "correct", "MACs (M)", "params (M)", "eval s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['top1']:.2f}", f"{r['correct']}/{r['total']}", f"{r['macs'] / 1e6:.2f}",
                      f"{r['params'] / 1e6:.3f}", f"{r['seconds']:.1f}")
    out.print(table)
    if args.json:
        write_json(args.json, rows if len(rows) > 1 else rows[0])
        console.print(f"wrote {args.json}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a zoo model from scratch on CIFAR (SGD + cosine, crop + flip)."""
    import torch

    from .data import load_dataset
    from .evaluate import use_all_cores
    from .models import create
    from .train import TrainConfig, train

    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet)
    torch.manual_seed(args.seed)  # the initialisation is part of what the seed reproduces
    model = create(args.model, num_classes=data.num_classes)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, seed=args.seed, subset=args.subset,
                         val_from=args.val_from)
    result = train(model, data, config, out_dir=args.out, resume=args.resume, progress=not args.quiet,
                   overwrite=args.overwrite)
    console.print(f"[bold]{args.model}[/]: val top-1 {result.val_top1:.2f} %, test top-1 {result.test_top1:.2f} % "
                  f"→ {result.weights_path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the model names `--model` accepts."""
    from .models import CIFAR_MODELS, list_models

    names = list_models()
    out.print("[bold]CIFAR zoo[/] (32×32): " + ", ".join(CIFAR_MODELS))
    tv = [n for n in names if n not in CIFAR_MODELS]
    out.print("[bold]torchvision[/]: " + (", ".join(tv) if tv else "(install torchvision for these)"))
    try:
        import timm  # noqa: F401
        have = "installed"
    except ImportError:
        have = "pip install 'gnnrl-compress[timm]'"
    out.print(f"[bold]timm[/] ({have}): any model as timm/<name>, e.g. timm/efficientnet_b0; the CNN families "
              "measured to prune exactly are listed in docs/benchmarks.md, section 'timm zoo'")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the channel groups of a model: members, channels, MACs share, prunable or why not."""
    import torch

    from .groups import channel_groups
    from .models import create, input_size
    from .prune import original_cost
    from .trace import trace

    if args.json:
        check_writable(args.json)
    if (args.pruned is None) == (args.model is None):
        raise GnnrlError("gnnrl info takes a --model name or a pruned .safetensors file (gnnrl info FILE)"
                         + (", not both" if args.pruned else ""))
    _check_input_size(args.input_size)
    if args.pruned is not None:  # what is left to prune in a pruned network, at the size it was pruned at
        from .saving import load, read_lineage

        lineage = read_lineage(args.pruned)
        model, name = load(args.pruned).eval(), str(args.pruned)
        shape = lineage.input_shape or (1, 3, 32, 32)
        side = args.input_size or shape[-1]
        example = torch.zeros(1, *shape[1:-2], side, side)
    else:
        model, name = create(args.model, num_classes=args.num_classes).eval(), args.model
        side = args.input_size or input_size(args.model)
        example = torch.zeros(1, 3, side, side)
    graph = trace(model, example)
    groups = channel_groups(graph)
    total = original_cost(graph)
    table = Table(title=f"{name}: {len(groups)} channel groups, {sum(g.prunable for g in groups)} prunable "
                  f"({total}, input {side}×{side})")
    table.caption = ("MACs touched %: share of the model's MACs in the layers that create or read the group's "
                     "channels. A conv both reads one group and creates another, so the column sums to about 200 %.")
    for col in ("id", "members", "channels", "MACs touched %", "prunable"):
        table.add_column(col, justify="right" if col in ("id", "channels", "MACs touched %") else "left")
    for g in groups:
        names = ", ".join(g.members[:3]) + (f" … (+{len(g.members) - 3})" if len(g.members) > 3 else "")
        chans = f"{g.prunable_size}/{g.size}" if g.prunable_size != g.size else str(g.size)
        table.add_row(str(g.id), names, chans, f"{100 * g.macs / total.macs:.1f}",
                      "yes" if g.prunable else f"no: {g.reason}")
    out.print(table)
    uncosted = {str(n.target): int(n.meta["macs"]) for n in graph.nodes if n.meta.get("uncosted")}
    if uncosted:  # counted (by FlopCounterMode), never free, but no registry entry prices a cut of them
        names = ", ".join(f"{k} ({v / 1e6:.2f} M)" for k, v in list(uncosted.items())[:5])
        out.print(f"{100 * sum(uncosted.values()) / total.macs:.1f} % of the MACs are in ops gnnrl counts with "
                  f"PyTorch's FlopCounterMode but cannot cut: {names}" + (" …" if len(uncosted) > 5 else ""))
    if args.json:
        from dataclasses import asdict

        write_json(args.json, {"model": name, "input_size": side, "macs": total.macs, "params": total.params,
                               "uncosted_macs": uncosted, "groups": [asdict(g) for g in groups]})
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """Build the hierarchical computational graph, print motif types with counts, optionally draw it."""
    import torch

    from .hierarchy import build_hierarchy
    from .models import create, input_size
    from .trace import trace

    if args.out:
        if Path(args.out).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise GnnrlError(f"--out {args.out}: give a .png, .svg or .pdf file name")
        check_writable(args.out)
    side = args.input_size or input_size(args.model)
    graph = trace(create(args.model, num_classes=args.num_classes).eval(), torch.zeros(1, 3, side, side))
    h = build_hierarchy(graph, levels=args.levels)
    table = Table(title=f"{args.model}: {len(h.comp.nodes)} feature maps, {len(h.comp.edges)} operations → "
                  f"{len(h.levels[-2])} motif instances of {len(h.motif_counts(len(h.levels) - 2))} types → top "
                  f"graph of {len(h.top.nodes)} nodes")
    for col in ("motif", "count", "nodes", "operations"):
        table.add_column(col, justify="right" if col in ("count", "nodes") else "left")
    for level in range(len(h.levels) - 1):
        for key, count in h.motif_counts(level).most_common():
            example = next(g for g in h.levels[level] if g.motif == key)
            table.add_row(f"L{level + 1}:{key[:6]}", str(count), str(len(example.nodes)), h.motif_names.get(key, ""))
    out.print(table)
    if args.out:
        from .plot import draw_hierarchy

        console.print(f"wrote {draw_hierarchy(h, args.out, args.model)}")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo or torchvision model name, e.g. resnet56")
    p.add_argument("--weights", help="checkpoint (default: the shared pre-trained weights for that name; 'none': "
                   "random init)")
    _add_weights_args(p)


def _add_search_args(p: argparse.ArgumentParser, episodes: int | None = 180) -> None:
    """Search flags; their defaults are the config dataclasses' (one source of truth)."""
    from .agent import DDPGConfig
    from .engines import ENGINES
    from .env import PREDICTORS, EnvConfig
    from .methods import METHODS
    from .search import SearchConfig

    env, search = EnvConfig(), SearchConfig()
    p.add_argument("--budget", type=float, default=env.budget,
                   help="fraction of the original MACs/params/latency to keep, in (0, 1)")
    p.add_argument("--metric", default=env.metric, choices=("macs", "params", "latency"),
                   help="what the budget limits; latency is that of --engine at --latency-batch and "
                   "--latency-threads, predicted from a per-layer table timed on this machine (cached), and the best "
                   "network's is measured after the search")
    p.add_argument("--latency-batch", type=int, default=env.latency_batch, help="batch size a latency budget is for")
    p.add_argument("--latency-threads", type=int, default=env.latency_threads,
                   help="engine threads a latency budget is for (and compress's latency comparison)")
    p.add_argument("--engine", default=env.engine, choices=ENGINES,
                   help="where the network will run: a latency budget and --round-to auto are measured there")
    p.add_argument("--latency-model", default=env.latency_model, choices=PREDICTORS,
                   help="latency predictor: a per-layer table on the engine (default) or the old linear fit on "
                   "eager PyTorch")
    p.add_argument("--round-to", default=None, metavar="auto|N",
                   help="keep every pruned width a multiple of N (or whole): 'auto' measures the multiple that pays "
                   "on --engine (8 or 16 on ONNX Runtime); default auto for --metric latency, 1 (any width) otherwise")
    p.add_argument("--episodes", type=int, default=episodes,
                   help=f"total episodes, warm-up included (paper: {search.episodes})")
    p.add_argument("--warmup", type=int, help=f"episodes of random actions first (default: a sixth of the episodes, "
                   f"at most {search.warmup}, the paper's)")
    p.add_argument("--max-steps", type=int, default=env.max_steps,
                   help="pruning steps per episode before the budget is forced")
    p.add_argument("--bn-recal", type=int, default=env.bn_recal,
                   help="training images for re-estimating BatchNorm statistics before each evaluation (0: off)")
    p.add_argument("--val-size", type=int, default=search.val_size, help="validation images (paper: 5000)")
    p.add_argument("--method", default=search.method, choices=METHODS,
                   help="gnnrl (the paper's agent); random (random policies, same env); amc (DDPG over per-layer "
                   "state vectors); uniform, uniform-internal (residual streams kept whole), l1-global: one-shot "
                   "heuristics (one episode)")
    p.add_argument("--head", default=DDPGConfig().head, choices=("graph", "groups", "both"),
                   help="actor head: one MLP per channel group over its embedding and descriptors (default), an MLP "
                        "over the graph embedding (the paper's), or the sum of both")
    p.add_argument("--descriptors", action=argparse.BooleanOptionalAction, default=DDPGConfig().descriptors,
                   help="per-group heads also read each group's position, width and MACs share")
    p.add_argument("--pretrain-updates", type=int, default=DDPGConfig().pretrain_updates,
                   help="DDPG updates on the warm-up's episodes before the agent's first (0: none)")
    p.add_argument("--candidates", type=int, default=DDPGConfig().candidates,
                   help="noisy actions drawn per step, the critic's favourite taken (1: plain DDPG, the paper's)")
    p.add_argument("--seed", type=int, default=search.seed)
    g = p.add_argument_group("parallel evaluation (Ray: pip install 'gnnrl[distributed]')")
    g.add_argument("--workers", type=int, default=1,
                   help="evaluate each round's policies on this many Ray workers (1: in this process, no Ray)")
    g.add_argument("--ray-address", help="join this Ray cluster ('auto' or HOST:PORT) instead of starting a local one")
    g.add_argument("--round-size", type=int,
                   help="episodes proposed per round before their policies are evaluated together (default: "
                   "--workers). The result depends on it, not on --workers")
    g.add_argument("--cpus-per-worker", type=int, default=1, help="CPU cores (torch threads) per worker")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (a Ray resource request)")


def _parallel_from(args: argparse.Namespace) -> Any:
    """The parallel-evaluation settings; Ray's presence is checked before any slow work."""
    from .parallel import ParallelConfig

    parallel = ParallelConfig(workers=args.workers, address=args.ray_address, cpus_per_worker=args.cpus_per_worker,
                              gpus_per_worker=args.gpus_per_worker)
    parallel.check()
    return parallel


def _add_finetune_args(p: argparse.ArgumentParser, flag: str = "--epochs", epochs_from_preset: bool = False) -> None:
    """Fine-tuning flags; defaults from `gnnrl.finetune.FINETUNE` (epochs: None when a preset such as --quick
    decides)."""
    from .finetune import FINETUNE as F

    p.add_argument(flag, dest="epochs", type=int, default=None if epochs_from_preset else F.epochs,
                   help=f"fine-tuning epochs (default {F.epochs}; --quick: 2)")
    p.add_argument("--lr", type=float, default=F.lr, help="peak learning rate (SGD + nesterov, per-step cosine)")
    p.add_argument("--batch-size", type=int, default=F.batch_size)
    p.add_argument("--weight-decay", type=float, default=F.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=F.label_smoothing)
    p.add_argument("--kd", action=argparse.BooleanOptionalAction, default=True,
                   help="distil the unpruned model's logits into the pruned one (default: on)")
    p.add_argument("--kd-weight", type=float, default=F.kd_weight, help="w in (1 − w)·CE + w·T²·KL")
    p.add_argument("--kd-temperature", type=float, default=F.kd_temperature)


def _finetune_config_from(args: argparse.Namespace, epochs: int) -> Any:
    from .finetune import finetune_config
    from .train import check_config

    config = finetune_config(epochs=epochs, kd=args.kd, lr=args.lr, batch_size=args.batch_size,
                           weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                           kd_weight=args.kd_weight, kd_temperature=args.kd_temperature,
                           seed=getattr(args, "seed", 0), subset=getattr(args, "subset", None),
                           val_size=getattr(args, "val_size", 5000))
    check_config(config)  # before the run folder is made and the data loaded
    return config


def _search_config_from(args: argparse.Namespace, episodes: int) -> Any:
    from dataclasses import replace

    from .agent import DDPGConfig
    from .env import EnvConfig
    from .search import SearchConfig

    _check_budget(args.budget)
    if episodes < 2:
        raise GnnrlError(f"--episodes ({episodes}) must be at least 2")
    if args.candidates < 1:
        raise GnnrlError(f"--candidates ({args.candidates}) must be at least 1")
    if args.warmup is not None and not 0 <= args.warmup < episodes:
        raise GnnrlError(f"--warmup ({args.warmup}) must be in [0, --episodes) = [0, {episodes})")
    round_size = args.round_size if args.round_size is not None else max(args.workers, 1)
    if round_size < 1:
        raise GnnrlError(f"--round-size ({round_size}) must be at least 1")
    warmup = _warmup(args, episodes)
    if args.latency_batch < 1 or args.latency_threads < 1:
        raise GnnrlError("--latency-batch and --latency-threads must be at least 1")
    env = EnvConfig(budget=args.budget, metric=args.metric, max_steps=args.max_steps, bn_recal=args.bn_recal,
                    latency_batch=args.latency_batch, engine=args.engine, latency_threads=args.latency_threads,
                    latency_model=args.latency_model, round_to=_round_to(args))
    if args.pretrain_updates < 0:
        raise GnnrlError(f"--pretrain-updates ({args.pretrain_updates}) must be 0 or more")
    agent = replace(DDPGConfig(), head=args.head, candidates=args.candidates, descriptors=args.descriptors,
                    pretrain_updates=args.pretrain_updates)
    return SearchConfig(env=env, agent=agent, episodes=episodes, warmup=warmup,
                        seed=args.seed, val_from=args.val_from, val_size=args.val_size, method=args.method,
                        round_size=round_size)


def _round_to(args: argparse.Namespace) -> int:
    """--round-to as a number: 'auto' is measured on the engine (a second or two)."""
    value = args.round_to if args.round_to is not None else ("auto" if args.metric == "latency" else "1")
    if value == "auto":
        from .engines import Engine
        from .latency import cached_granularity

        return cached_granularity(Engine(args.engine, args.latency_threads, args.latency_batch))
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise GnnrlError(f"--round-to must be 'auto' or a positive integer, not {value!r}")
    return n


def _warmup(args: argparse.Namespace, episodes: int) -> int:
    """--warmup, or a sixth of the run (the paper's 30 of 180), at most 30: a short run just works."""
    if args.warmup is not None:
        return int(args.warmup)
    return min(30, max(1, episodes // 6))


def _check_input_size(side: int | None) -> None:
    if side is not None and side < 1:
        raise GnnrlError(f"--input-size {side} must be a positive number of pixels")


def _check_budget(budget: float) -> None:
    from .config import check_budget

    check_budget(budget, name="--budget")


def _classes_hint(args: argparse.Namespace) -> int:
    """The class count of the data named by --data/--dataset, known without loading it (to check weights early)."""
    from .folder import is_image_folder, streams

    if args.data and streams(args.data, args.dataset) and is_image_folder(args.data):
        return sum(1 for d in (Path(args.data) / "train").iterdir() if d.is_dir())
    return 100 if args.dataset == "cifar100" else 10


def _load_model(args: argparse.Namespace, num_classes: int = 10) -> Any:
    from .models import canonical_name, create

    name = canonical_name(args.model)
    weights = _resolve_weights(name, args.weights, getattr(args, "dataset", "cifar10"))
    return create(name, num_classes=num_classes, weights=weights, allow_pickle=args.allow_pickle)


def cmd_search(args: argparse.Namespace) -> int:
    """Search a per-group pruning policy under a budget with the GNN-RL agent."""
    from .data import load_dataset
    from .evaluate import use_all_cores
    from .methods import LEARNING
    from .search import search

    config = _search_config_from(args, args.episodes)
    parallel = _parallel_from(args)
    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    _load_model(args, _classes_hint(args))  # names and weights are checked before the (slow) data load
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet)
    model = _load_model(args, data.num_classes)
    if not args.resume and config.method in LEARNING:  # a resumed run keeps its warm-up (checked)
        console.print(f"{config.episodes} episodes, the first {config.warmup} with random actions (--warmup)")
    result = search(model, data, config, out_dir=args.out, resume=args.resume, progress=not args.quiet,
                    overwrite=args.overwrite, parallel=parallel)
    out.print(f"[bold]{model.gnnrl_spec.name}[/] ({config.method}) at {result.macs_ratio:.3f} of the MACs: best val "
              "top-1 "
              f"{result.val_top1:.2f} % (episode {result.episode}) vs uniform L1 {result.uniform_val_top1:.2f} % — "
              f"before fine-tuning. Policy: {Path(args.out) / 'policy.json'}")
    if result.latency_ratio is not None:
        out.print(f"Latency at batch {args.latency_batch}: {result.latency_ratio:.3f} of the original predicted, "
                  f"{result.measured_latency_ratio:.3f} measured.")
    return 0


def _output_file(path: str, suffix: str, overwrite: bool) -> Path:
    """The --out file of a command, checked before the work: its suffix, never replaced unasked, writable."""
    target = Path(path)
    if target.suffix != suffix:
        raise GnnrlError(f"--out {target} must end in {suffix}")
    if target.exists() and not overwrite:
        raise GnnrlError(f"{target} exists; pass --overwrite to replace it, or choose another --out")
    return check_writable(target)


def cmd_prune(args: argparse.Namespace) -> int:
    """Apply a policy (or a uniform ratio / budget) and save the physically smaller model."""
    import torch

    from .models import input_size
    from .policy import apply_policy
    from .prune import prune, ratios_for_budget
    from .saving import save
    from .trace import trace

    target = _output_file(args.out, ".safetensors", args.overwrite)
    if args.budget is not None:
        _check_budget(args.budget)
    if args.ratio is not None and not 0 <= args.ratio < 1:
        raise GnnrlError(f"--ratio {args.ratio} must be in [0, 1)")
    model = _load_model(args).eval()
    example = torch.zeros(1, 3, input_size(args.model), input_size(args.model))
    if args.policy:
        pruned = apply_policy(model, args.policy)
    else:
        graph = trace(model, example)
        round_to = _round_to(argparse.Namespace(round_to=args.round_to, metric="macs", engine="onnxruntime",
                                                latency_threads=1, latency_batch=1))
        ratios = args.ratio if args.ratio is not None else ratios_for_budget(graph, args.budget, round_to=round_to)
        pruned = prune(graph, ratios=ratios, round_to=round_to)
    atomic_write(target, lambda p: save(pruned, p))
    out.print(f"{model.gnnrl_spec.name}: MACs {pruned.cost.macs / 1e6:.2f} M ({pruned.macs_ratio:.3f} of the "
              f"original), params {pruned.cost.params / 1e6:.3f} M "
              f"({pruned.cost.params / pruned.base_cost.params:.3f}) → {target}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a pruned model; under torchrun, one process per rank (DDP)."""
    from .data import load_dataset
    from .evaluate import use_all_cores
    from .finetune import finetune, teacher_for
    from .saving import load

    config = _finetune_config_from(args, args.epochs)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    student = load(args.pruned)
    teacher = teacher_for(student, args.teacher_weights, args.allow_pickle) if args.kd else None
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet and rank0)
    result = finetune(student, data, config, teacher=teacher, out_dir=args.out, resume=args.resume,
                      progress=not args.quiet, overwrite=args.overwrite)
    if rank0:
        out.print(f"fine-tuned: best val top-1 {result.best_val_top1:.2f} % (epoch {result.best_epoch}) → "
                  f"{result.best_path}; last epoch: val {result.val_top1:.2f} %, test {result.test_top1:.2f} %")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    """The whole job: search → prune → fine-tune → evaluate → export → report, resumable by stage."""
    from dataclasses import replace

    from .compress import CompressConfig, compress, quick_config
    from .data import load_dataset
    from .evaluate import use_all_cores

    base = quick_config() if args.quick else CompressConfig()
    episodes = args.episodes if args.episodes is not None else base.search.episodes
    search_cfg = _search_config_from(args, episodes)
    ft_epochs = args.epochs if args.epochs is not None else base.finetune.epochs
    config = replace(base, search=search_cfg, finetune=_finetune_config_from(args, ft_epochs),
                     latency_threads=args.latency_threads, latency_batches=tuple(args.latency_batch_sizes),
                     baseline=args.baseline)
    if min(config.latency_batches) < 1:
        raise GnnrlError("--latency-batch-sizes must be positive")
    parallel = _parallel_from(args)
    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    _load_model(args, _classes_hint(args))
    use_all_cores()
    quiet = args.quiet or args.json
    data = load_dataset(args.data, args.dataset, progress=not quiet)
    model = _load_model(args, data.num_classes)
    log = None if args.json else (lambda msg: console.print(f"[bold cyan]{msg}[/]"))
    result = compress(model, data, args.out, config, resume=args.resume, overwrite=args.overwrite,
                      progress=not quiet, log=log, policy=args.policy, parallel=parallel)
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        _print_report(result.out)
    return 0


def _print_report(run: Path) -> None:
    from rich.markdown import Markdown

    out.print(Markdown((run / "report.md").read_text()))
    console.print(f"report: {run / 'report.md'} · model: {run / 'model.safetensors'} · ONNX: {run / 'model.onnx'}")


def cmd_export(args: argparse.Namespace) -> int:
    """Write a pruned (or any gnnrl-saved) model to ONNX, checked against PyTorch with onnxruntime."""
    import torch

    from .export import export_onnx
    from .saving import load, read_lineage

    target = _output_file(args.out, ".onnx", args.overwrite)
    _check_input_size(args.input_size)
    lineage = read_lineage(args.pruned)
    module = load(args.pruned).eval()
    shape = ((1, 3, args.input_size, args.input_size) if args.input_size else
             tuple(lineage.input_shape) or (1, 3, 32, 32))
    try:
        with torch.no_grad():
            module(torch.zeros(*shape))  # an input the network cannot take fails here, in one line, before any file
    except RuntimeError as e:
        raise GnnrlError(f"input {tuple(shape)} does not fit this model ({str(e).splitlines()[0][:200]}); "
                         "give the --input-size it was made for") from e
    done = export_onnx(module, target, torch.zeros(*shape))  # checks onnxruntime against PyTorch itself
    out.print(f"{target}: input {tuple(shape)}, ONNX Runtime vs PyTorch max |difference| {done.max_abs_diff:.2e} "
              f"on {done.check_batch} random images")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a compress run's report from its files."""
    from .report import write_report

    rep = write_report(args.run)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print_report(Path(args.run))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(prog="gnnrl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gnnrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all usable cores)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_eval_parser, _train_parser, _info_parser, _graph_parser, _search_parser, _prune_parser,
                _finetune_parser, _compress_parser, _export_parser, _report_parser, _models_parser):
        add(sub)
    return parser


def _add_run_folder_args(p: argparse.ArgumentParser, resume: str = "continue a killed run from OUT/checkpoint.pt",
                         overwrite: str = "start over in a folder that holds a run") -> None:
    """--resume, --overwrite and --quiet: what every command that writes a run folder takes."""
    p.add_argument("--resume", action="store_true", help=resume)
    p.add_argument("--overwrite", action="store_true", help=overwrite)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _eval_parser(sub: Any) -> None:
    """`gnnrl eval`."""

    p = sub.add_parser("eval", help="top-1 accuracy, MACs and params of models on a CIFAR split")
    p.add_argument("--model", nargs="+", required=True, help="zoo or torchvision model name(s), e.g. resnet56")
    p.add_argument("--weights", nargs="+", help="checkpoint per model (.th/.pt/.safetensors); default: the shared "
                   "pre-trained weights for that name; 'none' for random init")
    p.add_argument("--split", default="test", choices=("test", "val", "test_rest", "train"))
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_args(p)
    _add_weights_args(p)
    p.set_defaults(func=cmd_eval)


def _train_parser(sub: Any) -> None:
    """`gnnrl train`."""
    p = sub.add_parser("train", help="train a zoo model from scratch on CIFAR (CPU, or GPU when present)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="run folder: checkpoint, final weights, metrics")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, help="train on only this many (class-balanced) images: a smoke run")
    _add_run_folder_args(p, resume="continue from OUT/checkpoint.pt")
    _add_data_args(p, val_from="train")
    p.set_defaults(func=cmd_train)


def _info_parser(sub: Any) -> None:
    """`gnnrl info`."""
    p = sub.add_parser("info", help="channel groups of a model: what can be pruned, and why not")
    p.add_argument("pruned", nargs="?", help="a pruned .safetensors file (from gnnrl prune / compress / gnnrl.save) "
                   "instead of --model")
    p.add_argument("--model", help="a zoo name (gnnrl models)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, help="image side for tracing (default: 32 for the CIFAR zoo, else 224)")
    p.add_argument("--json", help="also write the groups to this JSON file")
    p.set_defaults(func=cmd_info)


def _graph_parser(sub: Any) -> None:
    """`gnnrl graph`."""
    p = sub.add_parser("graph", help="hierarchical computational graph: motif types, counts and a drawing")
    p.add_argument("--model", required=True)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, help="image side for tracing (default: 32 for the CIFAR zoo, else 224)")
    p.add_argument("--levels", type=int, default=2, choices=(2, 3))
    p.add_argument("--out", help="draw the levels to this image file (.png, .svg, .pdf)")
    p.set_defaults(func=cmd_graph)


def _search_parser(sub: Any) -> None:
    """`gnnrl search`."""
    p = sub.add_parser("search", help="GNN-RL search of a per-group pruning policy under a MACs/params/latency "
                       "budget")
    _add_model_args(p)
    _add_search_args(p)
    p.add_argument("--out", required=True, help="run folder: policy.json, history.jsonl, rewards.png, checkpoint")
    _add_run_folder_args(p)
    _add_data_args(p)
    p.set_defaults(func=cmd_search)


def _prune_parser(sub: Any) -> None:
    """`gnnrl prune`."""
    p = sub.add_parser("prune", help="apply a searched policy (or a uniform ratio) and save the smaller model")
    _add_model_args(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--policy", help="policy.json of a search (or its run folder): replays the same channels")
    how.add_argument("--ratio", type=float, help="remove this fraction of every prunable group (uniform, L1)")
    how.add_argument("--budget", type=float, help="a ratio profile (--method) scaled to keep this fraction of the "
                     "MACs")
    p.add_argument("--method", default="uniform", choices=("uniform",),
                   help="with --budget: how ratios are spread over groups (uniform: one ratio for every group)")
    p.add_argument("--round-to", default="1", metavar="auto|N",
                   help="with --ratio/--budget: keep every width a multiple of N or whole ('auto': the multiple "
                   "that pays on ONNX Runtime here, batch 1, 1 thread)")
    p.add_argument("--out", required=True, help="the pruned model file (.safetensors; rebuild with gnnrl.load)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_prune)


def _finetune_parser(sub: Any) -> None:
    """`gnnrl finetune`."""
    p = sub.add_parser("finetune", help="fine-tune a pruned model (distilled from the original); torchrun-ready")
    p.add_argument("--pruned", required=True, help="a pruned model file from `gnnrl prune` / `gnnrl compress`")
    p.add_argument("--out", required=True, help="run folder: checkpoint, history.jsonl, best/last weights")
    _add_finetune_args(p)
    p.add_argument("--teacher-weights", help="weights of the unpruned model (default: the shared checkpoint)")
    p.add_argument("--subset", type=int, help="train on only this many (class-balanced) images: a smoke run")
    p.add_argument("--seed", type=int, default=0)
    _add_run_folder_args(p)
    _add_data_args(p)
    _add_weights_args(p)
    p.set_defaults(func=cmd_finetune)


def _compress_parser(sub: Any) -> None:
    """`gnnrl compress`."""
    p = sub.add_parser("compress", help="the whole job: search → prune → fine-tune → evaluate → export → report")
    _add_model_args(p)
    _add_search_args(p, episodes=None)
    _add_finetune_args(p, flag="--ft-epochs", epochs_from_preset=True)
    p.add_argument("--policy", help="skip the search: use this policy.json (from a search of the same model and "
                   "weights)")
    p.add_argument("--quick", action="store_true", help="a short search (24 episodes) and a 2-epoch fine-tune: "
                   "the demo, minutes on 2 cores")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also prune, fine-tune the same way, evaluate and time uniform-internal at the same budget, "
                   "engine and rounding, the strongest simple alternative (default: on; it doubles the fine-tune)")
    p.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 256], metavar="B",
                   help="batch sizes the original and pruned networks are timed at (default: 1 256; use smaller "
                   "ones for 224-pixel images on a CPU)")
    p.add_argument("--out", required=True, help="run folder (see `gnnrl compress --help` and the README)")
    _add_run_folder_args(p, resume="continue a killed run from the stage it reached",
                         overwrite="delete what --out holds and start over")
    p.add_argument("--json", action="store_true", help="no progress output; print report.json to stdout")
    _add_data_args(p)
    p.set_defaults(func=cmd_compress)


def _export_parser(sub: Any) -> None:
    """`gnnrl export`."""
    p = sub.add_parser("export", help="write a pruned model file to ONNX (checked with onnxruntime)")
    p.add_argument("pruned", help="a .safetensors file from gnnrl prune / compress / gnnrl.save")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--input-size", type=int, help="image side (default: the size the model was pruned at)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)


def _report_parser(sub: Any) -> None:
    """`gnnrl report`."""
    p = sub.add_parser("report", help="rebuild report.md/json and the plots of a compress run from its files")
    p.add_argument("run", help="the run folder")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    p.set_defaults(func=cmd_report)


def _models_parser(sub: Any) -> None:
    """`gnnrl models`."""
    p = sub.add_parser("models", help="list model names")
    p.set_defaults(func=cmd_models)


_default_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, *rest: Any,
                  **kw: Any) -> None:
    """gnnrl's own warnings as one line on stderr (they are advice to a user, not a developer's source pointer)."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        console.print(Text.assemble(("gnnrl: warning: ", "bold yellow"), str(message)), soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, *rest, **kw)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is (a BaseException: no `except Exception` swallows it)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gnnrl` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        os.environ["GNNRL_THREADS"] = str(args.threads)  # read by use_all_cores() in every command
        from .evaluate import available_cores

        if args.threads > (cores := available_cores()):
            console.print(Text.assemble(("gnnrl: warning: ", "bold yellow"), f"--threads {args.threads} is more than "
                                        f"the {cores} cores this process may use; oversubscribed threads run several "
                                        f"times slower (use --threads {cores} or fewer)"), soft_wrap=True)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    handler = None
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except GnnrlError as e:
        if args.debug:
            raise
        console.print(Text.assemble(("gnnrl: error: ", "bold red"), str(e)), soft_wrap=True)
        return 2
    except OSError as e:  # disk full, permission denied, read-only place: say which file, not a traceback
        if args.debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        console.print(Text.assemble(("gnnrl: error: ", "bold red"), f"{e.strerror or e}{where}"), soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; what was written is intact (a run folder continues with --resume)", soft_wrap=True)
        return 130
    except _Terminated:
        console.print("terminated (SIGTERM); what was written is intact (a run folder continues with --resume)",
                      soft_wrap=True)
        return 143
    finally:
        warnings.showwarning = shown
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
