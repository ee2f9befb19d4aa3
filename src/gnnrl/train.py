"""Training and fine-tuning on CIFAR: SGD + nesterov, per-step cosine, crop + flip, optional distillation; resumable.

One loop serves `gnnrl train` (a zoo model from scratch) and `gnnrl finetune` (a pruned model, distilled from
the unpruned one). The whole uint8 training set lives on the device and is augmented there batch by batch, so
no data-loader workers are needed on 2-core machines. Under `torchrun` the loop runs DistributedDataParallel
(gloo on CPU, nccl on GPU): every rank draws the same global batch and trains on its slice of it, so the
per-epoch loss follows the single-process run, and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import load_for_resume
from .config import TrainConfig
from .data import Cifar, Split
from .errors import GnnrlError
from .evaluate import available_cores, default_device, evaluate, inference_copy
from .files import claim_run_dir, torch_save, write_json, write_text
from .identity import model_identity, tensor_fingerprint, weights_fingerprint
from .progress import progress_bar


@dataclass(frozen=True)
class TrainResult:
    """Final metrics and where the weights were written."""

    val_top1: float
    """validation top-1 of the last epoch"""
    test_top1: float
    """test top-1 of the last epoch's weights"""
    epochs: int
    seconds: float
    weights_path: Path | None
    """the last epoch's weights (`model.safetensors`)"""
    best_val_top1: float = float("nan")
    best_epoch: int = 0
    best_path: Path | None = None
    """the best-on-validation weights (`best.safetensors`)"""
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Dist:
    """This process's place in a `torchrun` job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group `torchrun` describes in the environment (gloo on CPU, nccl on CUDA); else alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # ranks share the machine's cores: one rank per core on CPU instead of every rank on every core
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(max(1, available_cores() // local))
    return Dist(dist.get_rank(), dist.get_world_size())


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s KD term: T² · KL(softmax(teacher/T) ‖ softmax(student/T)), batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


def sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool) -> torch.optim.SGD:
    """SGD with weight decay on weights only (BatchNorm parameters and biases: none), as every fine-tune uses."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=momentum, nesterov=nesterov)


def save_weights(model: nn.Module, path: Path) -> Path:
    """Atomically write weights: `gnnrl.save` (rebuildable by `gnnrl.load`) when the model has a spec, else plain."""
    from .files import atomic_write
    from .saving import save

    if getattr(model, "gnnrl_lineage", None) is not None or getattr(model, "gnnrl_spec", None) is not None:
        return atomic_write(path, lambda p: save(model, p))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda p: save_file(state, str(p)))


def train(
    model: nn.Module,
    data: Cifar,
    config: TrainConfig = TrainConfig(),
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float]], bool | None] | None = None,
    teacher: nn.Module | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train `model` in place; with `out_dir`, checkpoint every epoch (resumable) and save best and last weights.

    `teacher` (with `config.kd_weight` > 0) distils its logits into the model. `on_epoch_end(metrics)` is called
    after each epoch's checkpoint; returning True stops training there (tests use it to simulate a kill).
    """
    run = _setup(model, data, config, out_dir, resume, device, teacher, overwrite)
    t0 = time.perf_counter()
    bar = progress_bar(progress and run.dist.main, counts=True)
    task = bar.add_task("fine-tune" if run.teacher is not None else "train", total=config.epochs * run.steps,
                        completed=run.start_epoch * run.steps, info="")
    with bar:
        for epoch in range(run.start_epoch, config.epochs):
            epoch_loss = _train_epoch(run, model, config, epoch, lambda info, advance: bar.update(
                task, advance=advance, **({"info": info} if info else {})))
            record = {"epoch": epoch + 1, "train/loss": epoch_loss, "lr": run.sched.get_last_lr()[0],
                      "seconds": time.perf_counter() - t0}
            if run.dist.main:  # the other ranks wait at the barrier below instead of evaluating the same images
                record["val/top1"] = evaluate(model, run.val, device=run.device).top1
            record = _broadcast(record, run.dist)
            run.history.append(record)
            improved = record["val/top1"] > run.best["val/top1"]
            if improved:
                run.best = {"val/top1": record["val/top1"], "epoch": epoch + 1}
            bar.console.log(f"epoch {epoch + 1}: train/loss {epoch_loss:.4f}  val/top1 {record['val/top1']:.2f} %"
                            + ("  (best)" if improved else ""))
            _checkpoint(run, model, config, epoch, improved)
            _barrier(run.dist)
            if on_epoch_end is not None and on_epoch_end(run.history[-1]):
                break
    return _finish(run, model, data, config, time.perf_counter() - t0)


@dataclass
class _Run:
    """What one `train` call sets up and its epochs update."""

    device: torch.device
    dist: Any
    train: Split
    val: Split
    steps: int
    opt: torch.optim.Optimizer
    sched: Any
    runner: nn.Module
    teacher: nn.Module | None
    out: Path | None
    ckpt_path: Path | None
    identity: dict[str, Any]
    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=lambda: {"val/top1": -1.0, "epoch": 0})


def _setup(model: nn.Module, data: Cifar, config: TrainConfig, out_dir: str | Path | None, resume: bool,
           device: torch.device | str | None, teacher: nn.Module | None, overwrite: bool) -> _Run:
    """Check the settings, the splits, optimiser and schedule, the run folder (refused, or resumed), the runners."""
    if config.kd_weight > 0 and teacher is None:
        raise GnnrlError("kd_weight > 0 needs a teacher model (the unpruned network)")
    config.validate()
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and os.environ.get("LOCAL_RANK"):
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    dist = init_distributed(device)
    train_split = data.split("train", val_from=config.val_from, val_size=config.val_size)
    if config.subset:
        train_split = train_split.balanced_subset(config.subset, seed=config.seed)
    val_split = data.split("val", val_from=config.val_from, val_size=config.val_size)
    if config.subset:
        val_split = val_split.balanced_subset(min(len(val_split), max(config.subset // 5, data.num_classes)))
    steps_per_epoch = -(-len(train_split) // config.batch_size)

    model.to(device)
    if device.type == "cuda":  # channels-last convolutions are the fast path on tensor cores
        model.to(memory_format=torch.channels_last)
    opt = sgd(model, config.lr, config.momentum, config.weight_decay, config.nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    out = claim_run_dir(out_dir, "training run", ("checkpoint.pt",), resume, overwrite, lock=dist.main)
    ckpt_path = out / "checkpoint.pt" if out else None
    # a resume must continue this run: same architecture, same teacher, same data (the weights themselves differ:
    # they are what the checkpoint restores)
    identity = {"model": model_identity(model, with_weights=False), "dataset": data.name,
                "train_images": len(train_split), "val_sha256": tensor_fingerprint(val_split.labels),
                "teacher_sha256": weights_fingerprint(teacher) if teacher is not None and config.kd_weight else None}
    start_epoch, history, best = 0, [], {"val/top1": -1.0, "epoch": 0}
    if resume:
        ckpt = load_for_resume(ckpt_path, asdict(config), map_location=device, identity=identity,
                               defaults={"val_size": 5000})
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        best = dict(ckpt.get("best", best))
    runner: nn.Module = DistributedDataParallel(model) if dist.world > 1 else model
    teacher_runner = inference_copy(teacher.to(device)) if teacher is not None and config.kd_weight > 0 else None
    return _Run(device, dist, train_split, val_split, steps_per_epoch, opt, sched, runner, teacher_runner, out,
                ckpt_path, identity, start_epoch, history, best)


def _train_epoch(run: _Run, model: nn.Module, config: TrainConfig, epoch: int,
                 show: Callable[[str | None, int], None]) -> float:
    """One epoch of (distilled) SGD; the mean training loss over every rank's images."""
    # A generator per epoch, seeded from (seed, epoch): a resumed run replays the same batches.
    gen = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + epoch)
    model.train()
    dist, device = run.dist, run.device
    # Summed on the device and read back only for the bar: a float() per step would sync a GPU.
    loss_sum, seen = torch.zeros((), device=device), 0
    # every rank augments the same global batch (same generator) and trains on its slice of it
    for step, (x, y) in enumerate(run.train.train_batches(config.batch_size, gen, device)):
        if dist.world > 1:
            x, y = x[dist.rank :: dist.world], y[dist.rank :: dist.world]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = run.runner(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            if run.teacher is not None:
                with torch.no_grad():
                    target = run.teacher(x)
                kd = distillation_loss(logits.float(), target.float(), config.kd_temperature)
                loss = (1 - config.kd_weight) * loss + config.kd_weight * kd
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        if step % 20 == 0:
            running = float(loss_sum) / seen  # read back for the bar anyway: checking it costs nothing more
            if dist.world == 1:
                _check_loss(running, epoch, step, run.ckpt_path)
            show(f"epoch {epoch + 1}/{config.epochs} loss {running:.3f}", 0)
        show(None, 1)
    epoch_loss = _global_mean(loss_sum, seen, dist)
    _check_loss(epoch_loss, epoch, None, run.ckpt_path)  # the same on every rank: all stop together
    return epoch_loss


def _checkpoint(run: _Run, model: nn.Module, config: TrainConfig, epoch: int, improved: bool) -> None:
    """After an epoch (main rank): best weights when improved, the history, and the resumable checkpoint."""
    if run.out is None or not run.dist.main:
        return
    if improved:
        save_weights(model, run.out / "best.safetensors")
    write_text(run.out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in run.history))
    torch_save({"model": model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
                "epoch": epoch + 1, "history": run.history, "best": run.best, "config": asdict(config),
                "identity": run.identity}, run.ckpt_path)


def _finish(run: _Run, model: nn.Module, data: Cifar, config: TrainConfig, seconds: float) -> TrainResult:
    """Test accuracy, the last weights and train.json; the result."""
    dist, history, best = run.dist, run.history, run.best
    test = evaluate(model, data.split("test"), device=run.device) if dist.main else None
    val_top1 = history[-1]["val/top1"] if history else float("nan")
    weights_path = best_path = None
    if run.out:
        weights_path, best_path = run.out / "model.safetensors", run.out / "best.safetensors"
        if dist.main:
            save_weights(model, weights_path)
            spec = getattr(model, "gnnrl_spec", None)
            write_json(run.out / "train.json", {
                "model": asdict(spec) if spec else None, "config": asdict(config), "history": history,
                "val/top1": val_top1, "test/top1": test.top1 if test else None, "best/val_top1": best["val/top1"],
                "best/epoch": best["epoch"], "dataset": data.name, "world_size": dist.world,
            })
        _barrier(dist)
    return TrainResult(val_top1=val_top1, test_top1=test.top1 if test else float("nan"), epochs=len(history),
                       seconds=seconds, weights_path=weights_path, best_val_top1=best["val/top1"],
                       best_epoch=int(best["epoch"]), best_path=best_path, history=history)


def _check_loss(loss: float, epoch: int, step: int | None, ckpt_path: Path | None) -> None:
    """Stop at the first non-finite loss, before this epoch writes anything: NaN weights are never saved."""
    if math.isfinite(loss):
        return
    where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
    kept = (f"; {ckpt_path} still holds the last good epoch" if ckpt_path is not None and ckpt_path.is_file()
            else "; nothing was saved")
    raise GnnrlError(f"the training loss became {loss} in {where}: the weights diverged, so training stopped{kept}. "
                     "Lower --lr, or check the starting weights and the data")


def _global_mean(total: torch.Tensor, count: int, dist: Dist) -> float:
    """Mean of a summed quantity over all ranks."""
    if dist.world == 1:
        return float(total) / max(count, 1)
    import torch.distributed as tdist

    t = torch.stack([total.float().cpu(), torch.tensor(float(count))]).to(total.device)
    tdist.all_reduce(t)
    return float(t[0]) / max(float(t[1]), 1.0)


def _broadcast(obj: dict[str, float], dist: Dist) -> dict[str, float]:
    if dist.world == 1:
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
