"""Training a zoo model from scratch on CIFAR: SGD + cosine schedule, random crop + flip, resumable.

Needed for models without shared weights. The whole uint8 training set lives on the device and is
augmented there batch by batch, so no data-loader workers are needed on 2-core machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from .checkpoint import load_for_resume
from .data import Cifar, normalize
from .evaluate import default_device, evaluate
from .progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of `train`."""

    epochs: int = 200
    """passes over the training split"""
    batch_size: int = 128
    lr: float = 0.1
    """peak learning rate, decayed to 0 by a per-step cosine schedule"""
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    seed: int = 0
    """seeds shuffling and augmentation (`gnnrl train` also seeds initialisation): same seed ⇒ same weights"""
    subset: int | None = None
    """train on only this many class-balanced images (smoke runs and tests)"""
    val_from: str = "train"
    """'train' holds out 5k of train for validation (train on 45k); 'test' trains on all 50k"""


@dataclass(frozen=True)
class TrainResult:
    """Final metrics and where the weights were written."""

    val_top1: float
    test_top1: float
    epochs: int
    seconds: float
    weights_path: Path | None


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a uint8 batch B×C×H×W: zero-pad by `pad`, random crop back, random h-flip."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    rows = oy + torch.arange(h, device=x.device)
    cols = ox + torch.arange(w, device=x.device)
    flip = (torch.rand(b, 1, generator=gen, device=gen.device) < 0.5).to(x.device)
    cols = torch.where(flip, cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def train(
    model: nn.Module,
    data: Cifar,
    config: TrainConfig = TrainConfig(),
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float]], bool | None] | None = None,
) -> TrainResult:
    """Train `model` in place; with `out_dir`, checkpoint every epoch (resumable) and save final weights.

    `on_epoch_end(metrics)` is called after each epoch's checkpoint; returning True stops training there.
    """
    device = torch.device(device) if device is not None else default_device()
    train_split = data.split("train", val_from=config.val_from)
    if config.subset:
        train_split = train_split.balanced_subset(config.subset, seed=config.seed)
    val_split = data.split("val", val_from=config.val_from)
    if config.subset:
        val_split = val_split.balanced_subset(min(len(val_split), max(config.subset // 5, data.num_classes)))
    images, labels = train_split.images.to(device), train_split.labels.to(device)
    steps_per_epoch = -(-len(train_split) // config.batch_size)

    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN and biases: no weight decay
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    start_epoch = 0
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out else None
    if resume:
        ckpt = load_for_resume(ckpt_path, asdict(config), map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    if out:
        out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    bar = progress_bar(progress, counts=True)
    task = bar.add_task("train", total=config.epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                        info="")
    with bar:
        for epoch in range(start_epoch, config.epochs):
            # A generator per epoch, seeded from (seed, epoch): a resumed run replays the same batches.
            gen = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + epoch)
            order = torch.randperm(len(labels), generator=gen).to(device)
            model.train()
            # Summed on the device and read back only for the bar: a float() per step would sync a GPU.
            loss_sum, seen = torch.zeros((), device=device), 0
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                x = normalize(random_crop_flip(images[idx], gen), train_split.mean, train_split.std)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = F.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach() * len(idx)
                seen += len(idx)
                if step % 20 == 0:
                    bar.update(task, info=f"epoch {epoch + 1}/{config.epochs} loss {float(loss_sum) / seen:.3f}")
                bar.update(task, advance=1)
            total_loss = float(loss_sum)
            val = evaluate(model, val_split, device=device)
            history.append({"epoch": epoch + 1, "train/loss": total_loss / seen, "val/top1": val.top1,
                            "lr": sched.get_last_lr()[0]})
            bar.console.log(f"epoch {epoch + 1}: train/loss {total_loss / seen:.4f}  val/top1 {val.top1:.2f} %")
            if ckpt_path:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                            "config": asdict(config)}, ckpt_path)
            if on_epoch_end is not None and on_epoch_end(history[-1]):
                break

    test = evaluate(model, data.split("test"), device=device)
    val_top1 = history[-1]["val/top1"] if history else float("nan")
    weights_path = None
    if out:
        weights_path = out / "model.safetensors"
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        spec = getattr(model, "gnnrl_spec", None)
        save_file(state, str(weights_path), metadata={"gnnrl_spec": json.dumps(asdict(spec)) if spec else ""})
        (out / "train.json").write_text(json.dumps({
            "model": asdict(spec) if spec else None, "config": asdict(config), "history": history,
            "val/top1": val_top1, "test/top1": test.top1, "dataset": data.name,
        }, indent=2) + "\n")
    return TrainResult(val_top1=val_top1, test_top1=test.top1, epochs=len(history),
                       seconds=time.perf_counter() - t0, weights_path=weights_path)
