"""Commands that train: `gnnrl train` (from scratch) and `gnnrl finetune` (a pruned model, distilled)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..files import prepare_run_dir
from .common import add_data_args, add_run_folder_args, add_weights_args, console, out
from .flags import add_config_flags, config_from


def cmd_train(args: argparse.Namespace) -> int:
    """Train a zoo model from scratch on CIFAR (SGD + cosine, crop + flip)."""
    import torch

    from ..config import TrainConfig
    from ..data import load_dataset
    from ..evaluate import use_all_cores
    from ..models import create
    from ..train import train

    config = config_from(args, TrainConfig())
    config.validate()  # before the run folder is made and the data loaded
    prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not args.quiet)
    torch.manual_seed(args.seed)  # the initialisation is part of what the seed reproduces
    model = create(args.model, num_classes=data.num_classes)
    result = train(model, data, config, out_dir=args.out, resume=args.resume, progress=not args.quiet,
                   overwrite=args.overwrite)
    console.print(f"[bold]{args.model}[/]: val top-1 {result.val_top1:.2f} %, test top-1 {result.test_top1:.2f} % "
                  f"→ {result.weights_path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a pruned model; under torchrun, one process per rank (DDP)."""
    from ..data import load_dataset
    from ..evaluate import use_all_cores
    from ..finetune import finetune, teacher_for
    from ..saving import load

    config = finetune_config_from(args, args.epochs)
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


def add_finetune_args(p: argparse.ArgumentParser, flag: str = "--epochs", epochs_from_preset: bool = False) -> None:
    """Fine-tuning flags: one per `TrainConfig` field, defaults from `gnnrl.finetune.FINETUNE` (epochs: None when a
    preset such as --quick decides; a flag the command already has, such as compress's --seed, is shared)."""
    from ..config import FINETUNE as F
    from ..config import TrainConfig

    flags = (flag, "--epochs") if flag != "--epochs" else (flag,)  # compress: --ft-epochs, --epochs as elsewhere
    p.add_argument(*flags, dest="epochs", type=int, default=None if epochs_from_preset else F.epochs,
                   help=f"fine-tuning epochs (default {F.epochs}; --quick: 2)")
    p.add_argument("--kd", action=argparse.BooleanOptionalAction, default=True,
                   help="distil the unpruned model's logits into the pruned one")
    add_config_flags(p, TrainConfig, defaults=F, skip=("val_from", "epochs"), help={
        "lr": "peak learning rate (SGD + nesterov, per-step cosine)", "kd_weight": "w in (1 − w)·CE + w·T²·KL",
        "subset": "train on only this many (class-balanced) images: a smoke run"})


def finetune_config_from(args: argparse.Namespace, epochs: int) -> Any:
    """The fine-tune's `TrainConfig` from the flags, checked before the run folder is made and the data loaded."""
    from dataclasses import replace

    from ..config import FINETUNE

    config = config_from(args, FINETUNE, skip=("val_from",), epochs=epochs)
    config = config if args.kd else replace(config, kd_weight=0.0)
    config.validate()
    return config


TRAIN_SKIPS = ("val_from", "kd_weight", "kd_temperature", "label_smoothing")
"""`TrainConfig` fields `gnnrl train` makes no flag for (--val-from is a data flag; no teacher from scratch)"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add `train` and `finetune` to the subcommands."""
    from ..config import TrainConfig

    p = sub.add_parser("train", parents=[parent], help="train a zoo model from scratch on CIFAR (CPU, or GPU when "
                       "present)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="run folder: checkpoint, final weights, metrics")
    add_config_flags(p, TrainConfig, skip=TRAIN_SKIPS, help={
        "subset": "train on only this many (class-balanced) images: a smoke run"})
    add_run_folder_args(p, resume="continue from OUT/checkpoint.pt")
    add_data_args(p, val_from="train")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", parents=[parent], help="fine-tune a pruned model (distilled from the original); "
                       "torchrun-ready")
    p.add_argument("--pruned", required=True, help="a pruned model file from `gnnrl prune` / `gnnrl compress`")
    p.add_argument("--out", required=True, help="run folder: checkpoint, history.jsonl, best/last weights")
    add_finetune_args(p)
    p.add_argument("--teacher-weights", help="weights of the unpruned model (default: the shared checkpoint)")
    add_run_folder_args(p)
    add_data_args(p)
    add_weights_args(p)
    p.set_defaults(func=cmd_finetune)
