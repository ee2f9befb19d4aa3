"""The short distilled fine-tune a search may run on every candidate before measuring it (`EnvConfig.reward =
'tuned'`): a reward closer to what the user gets after fine-tuning than the accuracy straight after pruning.

Why: under an aggressive budget the pruned networks are near chance before any training (ResNet-20 at 30 % of
the MACs: 10–17 % top-1 over a whole search), so the paper's reward ranks them by noise, while a few dozen
distilled SGD steps already separate them (docs/benchmarks.md, "Reward study"). The tune set is fixed (images,
labels and the original network's logits computed once), and every candidate is tuned with the same seed, so the
reward is a function of the policy alone: cached, resumed and evaluated on parallel workers exactly like the
plain one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .images import MEAN, STD, normalize
from .train import distillation_loss, sgd


@dataclass(frozen=True, eq=False)
class TuneSet:
    """Training images (uint8), their labels and the original network's logits on them."""

    images: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD


def tune_set(teacher: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...] = MEAN,
             std: tuple[float, ...] = STD, batch_size: int = 256) -> TuneSet:
    """The tune set for `images`: the teacher's logits on them, computed once (eval mode, no augmentation)."""
    was = teacher.training
    teacher.eval()
    with torch.inference_mode():
        logits = torch.cat([teacher(normalize(images[i:i + batch_size], mean, std)).float()
                            for i in range(0, len(images), batch_size)])
    teacher.train(was)
    return TuneSet(images, labels, logits, mean, std)


def short_finetune(module: nn.Module, tune: TuneSet, steps: int, batch_size: int, lr: float = 0.02,
                   kd_weight: float = 0.7, temperature: float = 4.0, seed: int = 0,
                   device: torch.device | None = None) -> float:
    """`steps` SGD steps (nesterov, cosine from `lr`) of the distilled loss on batches drawn from `tune`; the same
    `seed` draws the same batches for every candidate. No augmentation: the teacher's logits are those of the
    images as they are. Returns the last step's loss. `module` is left in eval mode with the BatchNorm statistics
    of training (re-estimate them)."""
    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    opt = sgd(module, lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    module.train()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(0, len(tune.images), (batch_size,), generator=gen)
        x = normalize(tune.images[idx], tune.mean, tune.std).to(device)
        logits = module(x).float()
        loss = (1 - kd_weight) * F.cross_entropy(logits, tune.labels[idx].to(device)) + \
            kd_weight * distillation_loss(logits, tune.teacher_logits[idx].to(device), temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    module.eval()
    return float(loss.detach())
