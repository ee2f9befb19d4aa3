"""Commands that prune: `gnnrl search` (a policy under a budget), `prune` (apply one) and `compress` (the whole job).
The search and fine-tune flags are made from the config dataclasses (`cli.flags`); those defined here by hand
carry more help or a value that needs converting (`--round-to auto`, `--warmup` by default a sixth)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import GnnrlError
from ..files import atomic_write, prepare_run_dir
from .common import (
    add_data_args,
    add_json_arg,
    add_model_args,
    add_run_folder_args,
    check_budget,
    classes_hint,
    console,
    emit_json,
    load_model,
    out,
    output_file,
    print_report,
)
from .flags import add_config_flags, config_from
from .training import add_finetune_args, finetune_config_from


def cmd_search(args: argparse.Namespace) -> int:
    """Search a per-group pruning policy under a budget with the GNN-RL agent."""
    from ..data import load_dataset
    from ..evaluate import use_all_cores
    from ..methods import method_spec
    from ..search import search

    config = _search_config_from(args, args.episodes)
    parallel = _parallel_from(args)
    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    load_model(args, classes_hint(args))  # names and weights are checked before the (slow) data load
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet)
    model = load_model(args, data.num_classes)
    if not args.resume and method_spec(config.method).warmup:  # a resumed run keeps its warm-up (checked)
        console.print(f"{config.episodes} episodes, the first {config.warmup} with random actions (--warmup)")
    result = search(model, data, config, out_dir=args.out, resume=args.resume, progress=not args.quiet,
                    overwrite=args.overwrite, parallel=parallel)
    when = "after the short fine-tune of --reward tuned" if config.env.reward == "tuned" else "before fine-tuning"
    out.print(f"[bold]{model.gnnrl_spec.name}[/] ({config.method}) at {result.macs_ratio:.3f} of the MACs: best val "
              f"top-1 {result.val_top1:.2f} % (episode {result.episode}) vs uniform L1 {result.uniform_val_top1:.2f} % "
              f"— {when}. Policy: {Path(args.out) / 'policy.json'}")
    if result.latency_ratio is not None:
        steps = (result.landing or {}).get("steps", [])
        landed = (f" (the best episode's {steps[0]['measured']:.3f} measured, landed again on the budget in "
                  f"{len(steps) - 1} tries)" if len(steps) > 1 else "")
        out.print(f"Latency at batch {args.latency_batch}: {result.latency_ratio:.3f} of the original predicted, "
                  f"{result.measured_latency_ratio:.3f} measured{landed}.")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Apply a policy (or a uniform ratio / budget) and save the physically smaller model."""
    import torch

    from ..models import input_size
    from ..policy import apply_policy
    from ..prune import prune, ratios_for_budget
    from ..saving import save
    from ..trace import trace

    target = output_file(args.out, ".safetensors", args.overwrite)
    if args.budget is not None:
        check_budget(args.budget)
    if args.ratio is not None and not 0 <= args.ratio < 1:
        raise GnnrlError(f"--ratio {args.ratio} must be in [0, 1)")
    model = load_model(args).eval()
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


def cmd_compress(args: argparse.Namespace) -> int:
    """The whole job: search → prune → fine-tune → evaluate → export → report, resumable by stage."""
    from ..compress import compress
    from ..config import CompressConfig, quick_config
    from ..data import load_dataset
    from ..evaluate import use_all_cores

    base = quick_config() if args.quick else CompressConfig()
    episodes = args.episodes if args.episodes is not None else base.search.episodes
    search_cfg = _search_config_from(args, episodes)
    ft_epochs = args.epochs if args.epochs is not None else base.finetune.epochs
    config = config_from(args, base, search=search_cfg, finetune=finetune_config_from(args, ft_epochs),
                         latency_batches=tuple(args.latency_batch_sizes))
    config.validate()
    parallel = _parallel_from(args)
    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    load_model(args, classes_hint(args))
    use_all_cores()
    quiet = args.quiet or args.json == "-"
    data = load_dataset(args.data, args.dataset, progress=not quiet)
    model = load_model(args, data.num_classes)
    log = None if quiet else (lambda msg: console.print(f"[bold cyan]{msg}[/]"))
    result = compress(model, data, args.out, config, resume=args.resume, overwrite=args.overwrite,
                      progress=not quiet, log=log, policy=args.policy, parallel=parallel)
    emit_json(args.json, result.report)
    if args.json != "-":
        print_report(result.out)
    return 0


def add_search_args(p: argparse.ArgumentParser, episodes: int | None = 180) -> None:
    """Search flags: those below by hand (more help, or a value to convert), then one for every other field of
    `EnvConfig`, `SearchConfig` and (as --agent-FIELD) `DDPGConfig`, made from the dataclasses."""
    from ..config import SHORT_AGENT_FLAGS, DDPGConfig, EnvConfig, SearchConfig
    from ..methods import method_names, method_spec

    search = SearchConfig()
    add_config_flags(p, EnvConfig, only=("budget", "metric", "latency_batch", "latency_threads", "engine",
                                         "latency_model"), help={
        "budget": "fraction of the original MACs/params/latency to keep, in (0, 1)",
        "metric": "what the budget limits; latency is that of --engine at --latency-batch and --latency-threads, "
                  "predicted from a per-layer table timed on this machine (cached), and the best network's is "
                  "measured after the search",
        "latency_batch": "batch size a latency budget is for",
        "latency_threads": "engine threads a latency budget is for (and compress's latency comparison)",
        "engine": "where the network will run: a latency budget and --round-to auto are measured there",
        "latency_model": "latency predictor: a per-layer table on the engine (default) or the old linear fit on "
                         "eager PyTorch"})
    p.add_argument("--round-to", default=None, metavar="auto|N",
                   help="keep every pruned width a multiple of N (or whole): 'auto' measures the multiple that pays "
                   "on --engine (8 or 16 on ONNX Runtime); default auto for --metric latency, 1 (any width) otherwise")
    p.add_argument("--episodes", type=int, default=episodes,
                   help=f"total episodes, warm-up included (paper: {search.episodes})")
    p.add_argument("--warmup", type=int, help=f"episodes of random actions first (default: a sixth of the episodes, "
                   f"at most {search.warmup}, the paper's)")
    add_config_flags(p, EnvConfig, only=("max_steps", "bn_recal"), help={
        "max_steps": "pruning steps per episode before the budget is forced",
        "bn_recal": "training images for re-estimating BatchNorm statistics before each evaluation (0: off)"})
    add_config_flags(p, SearchConfig, only=("val_size",), help={"val_size": "validation images (paper: 5000)"})
    p.add_argument("--method", default=search.method, choices=method_names(),
                   help="; ".join(f"{n}: {method_spec(n).help}" + (" (one episode)" * method_spec(n).one_shot)
                                  for n in method_names()) + " (gnnrl.methods.register_method adds yours)")
    # the agent's most used settings keep their short names (--head, not --agent-head: SHORT_AGENT_FLAGS)
    short_help = {"head": "actor head: one MLP per channel group over its embedding and descriptors (default), an "
                          "MLP over the graph embedding (the paper's), or the sum of both",
                  "descriptors": "per-group heads also read each group's position, width and MACs share",
                  "pretrain_updates": "DDPG updates on the warm-up's episodes before the agent's first (0: none)",
                  "candidates": "noisy actions drawn per step, the critic's favourite taken (1: plain DDPG, the "
                                "paper's)"}
    for name in SHORT_AGENT_FLAGS:
        add_config_flags(p, DDPGConfig, prefix="agent_", only=(name,), help={name: short_help[name]}, bare=True)
    add_config_flags(p, SearchConfig, only=("seed",))
    g = p.add_argument_group("parallel evaluation (Ray: pip install 'gnnrl[distributed]')")
    g.add_argument("--workers", type=int, default=1,
                   help="evaluate each round's policies on this many Ray workers (1: in this process, no Ray)")
    g.add_argument("--ray-address", help="join this Ray cluster ('auto' or HOST:PORT) instead of starting a local one")
    g.add_argument("--round-size", type=int,
                   help="episodes proposed per round before their policies are evaluated together (default: "
                   "--workers). The result depends on it, not on --workers")
    g.add_argument("--cpus-per-worker", type=int, default=1, help="CPU cores (torch threads) per worker")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (a Ray resource request)")
    more = p.add_argument_group("every other search setting (gnnrl.config: EnvConfig, SearchConfig, DDPGConfig)")
    add_config_flags(more, EnvConfig)
    add_config_flags(more, SearchConfig, skip=("val_from",))  # --val-from is a data flag (add_data_args)
    add_config_flags(more, DDPGConfig, prefix="agent_")


def _parallel_from(args: argparse.Namespace) -> Any:
    """The parallel-evaluation settings; Ray's presence is checked before any slow work."""
    from ..config import ParallelConfig
    from ..parallel import check_parallel

    parallel = ParallelConfig(workers=args.workers, address=args.ray_address, cpus_per_worker=args.cpus_per_worker,
                              gpus_per_worker=args.gpus_per_worker)
    check_parallel(parallel)
    return parallel


def _search_config_from(args: argparse.Namespace, episodes: int) -> Any:
    """The `SearchConfig` the flags describe; settings that cannot run end here, before any work."""
    from ..config import DDPGConfig, EnvConfig, SearchConfig

    check_budget(args.budget)
    if episodes < 2:
        raise GnnrlError(f"--episodes ({episodes}) must be at least 2")
    if args.warmup is not None and not 0 <= args.warmup < episodes:
        raise GnnrlError(f"--warmup ({args.warmup}) must be in [0, --episodes) = [0, {episodes})")
    round_size = args.round_size if args.round_size is not None else max(args.workers, 1)
    if args.latency_batch < 1 or args.latency_threads < 1:
        raise GnnrlError("--latency-batch and --latency-threads must be at least 1")
    env = config_from(args, EnvConfig(), round_to=_round_to(args))
    config = config_from(args, SearchConfig(), env=env, agent=config_from(args, DDPGConfig(), prefix="agent_"),
                         episodes=episodes, warmup=_warmup(args, episodes), round_size=round_size)
    config.validate()  # before the run folder is made
    return config


def _round_to(args: argparse.Namespace) -> int:
    """--round-to as a number: 'auto' is measured on the engine (a second or two)."""
    value = args.round_to if args.round_to is not None else ("auto" if args.metric == "latency" else "1")
    if value == "auto":
        from ..engines import Engine
        from ..latency import cached_granularity

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

def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add `search`, `prune` and `compress` to the subcommands."""
    p = sub.add_parser("search", parents=[parent], help="GNN-RL search of a per-group pruning policy under a "
                       "MACs/params/latency budget")
    add_model_args(p)
    add_search_args(p)
    p.add_argument("--out", required=True, help="run folder: policy.json, history.jsonl, rewards.png, checkpoint")
    add_run_folder_args(p)
    add_data_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("prune", parents=[parent], help="apply a searched policy (or a uniform ratio) and save the "
                       "smaller model")
    add_model_args(p)
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

    p = sub.add_parser("compress", parents=[parent], help="the whole job: search → prune → fine-tune → evaluate → "
                       "export → report")
    add_model_args(p)
    add_search_args(p, episodes=None)
    add_finetune_args(p, flag="--ft-epochs", epochs_from_preset=True)
    p.add_argument("--policy", help="skip the search: use this policy.json (from a search of the same model and "
                   "weights)")
    p.add_argument("--quick", action="store_true", help="a short search (24 episodes) and a 2-epoch fine-tune: "
                   "the demo, minutes on 2 cores")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also prune, fine-tune the same way, evaluate and time a simple alternative "
                   "(--baseline-method) at the same budget, engine and rounding (it doubles the fine-tune)")
    p.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 256], metavar="B",
                   help="batch sizes the original and pruned networks are timed at (use smaller ones for 224-pixel "
                   "images on a CPU)")
    p.add_argument("--out", required=True, help="run folder (see `gnnrl compress --help` and the README)")
    add_run_folder_args(p, resume="continue a killed run from the stage it reached",
                        overwrite="delete what --out holds and start over")
    add_json_arg(p, "report.json")
    add_data_args(p)
    from ..config import CompressConfig

    # --latency-batch-sizes is made by hand above (its name); latency_rounds comes from --quick or the default
    add_config_flags(p, CompressConfig, skip=("latency_batches", "latency_rounds"))
    p.set_defaults(func=cmd_compress)
