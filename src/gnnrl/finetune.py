"""Fine-tuning a pruned network (paper §5: all headline numbers are after fine-tuning), distilled from the original.

The loop is `train.train`; this module holds what is specific to fine-tuning: its defaults (the paper
protocol: train on all 50k training images, pick the best epoch on the 5k validation images carved from test,
report on the other 5k), and how to rebuild the unpruned teacher from a pruned file's lineage.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .config import FINETUNE, TrainConfig
from .config import finetune_config as finetune_config  # re-exported: where fine-tuning's defaults were
from .data import Cifar
from .errors import GnnrlError
from .train import TrainResult, train


def teacher_for(pruned: nn.Module, weights: str | Path | None, allow_pickle: bool = False) -> nn.Module:
    """The unpruned base model of a pruned module (from its lineage's spec), with `weights` loaded."""
    from .models import create
    from .paths import default_weights

    lineage = getattr(pruned, "gnnrl_lineage", None)
    spec = lineage.spec if lineage is not None else None
    if not spec:
        raise GnnrlError("this model does not record its unpruned base (it was not pruned by gnnrl from a zoo model); "
                         "fine-tune without distillation (--no-kd)")
    if weights is None:
        weights = default_weights(spec["name"])
        if weights is None:
            raise GnnrlError(f"no --teacher-weights given and no shared checkpoint for {spec['name']}; pass the "
                             "weights the model was pruned from, or --no-kd")
    return create(spec["name"], num_classes=spec["num_classes"], weights=weights, allow_pickle=allow_pickle,
                  **spec.get("kwargs", {})).eval()


def finetune(pruned: nn.Module, data: Cifar, config: TrainConfig = FINETUNE, teacher: nn.Module | None = None,
             out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
             device: str | None = None, **kw: object) -> TrainResult:
    """Fine-tune a pruned model in place (distilled from `teacher` when `config.kd_weight` > 0; `train` refuses
    distillation without a teacher)."""
    return train(pruned, data, config, out_dir=out_dir, resume=resume, device=device, progress=progress,
                 teacher=teacher, **kw)  # type: ignore[arg-type]
