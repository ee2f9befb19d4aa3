"""Top-1 accuracy of a model on a split: whole split normalised once, batched `inference_mode` passes."""

from __future__ import annotations

import copy
import operator
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.fx.passes.shape_prop import ShapeProp

from .data import Split
from .errors import GnnrlError

if TYPE_CHECKING:
    from .folder import FolderSplit

# Measured on the 2-core CPU machines (benchmarks/eval_speed.py, docs/benchmarks.md): with folded BN and
# channels-last, batches of 32–128 are within this machine's noise of each other, batch 512 is ~2× slower
# (activations fall out of the 2 MB L2; ReLU and add are memory-bound, ~25% of the time). 64 sits in the middle.
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class EvalResult:
    """Correct predictions out of `total`, and the wall time of the evaluation."""

    correct: int
    total: int
    seconds: float

    @property
    def top1(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * self.correct / self.total

    @property
    def error(self) -> float:
        """Top-1 error in percent (the paper's reward is minus this, eq. 8)."""
        return 100.0 - self.top1


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup-limited containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def use_all_cores() -> None:
    """Set torch's intra-op thread count to the usable cores, or to $GNNRL_THREADS (`gnnrl --threads N`)."""
    wanted = os.environ.get("GNNRL_THREADS")
    torch.set_num_threads(int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else available_cores())


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_copy(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode copy with BatchNorm folded into the preceding convs, in channels-last layout.

    Measured ~1.3–1.6× faster than the plain module on these CPUs (benchmarks/eval_speed.py). With an
    `example` input, ReLUs and residual adds also run in place where that is safe (~10% more). All of it
    needs a torch.fx trace; a model that does not trace is only converted to channels-last.
    """
    m = copy.deepcopy(model).eval()
    try:
        m = fuse(m)
        if example is not None:
            _run_in_place(m, example)
    except (torch.fx.proxy.TraceError, TypeError, RuntimeError, AttributeError, NotImplementedError, ValueError):
        pass  # untraceable control flow: these are optimisations, the copy is still correct
    return m.to(memory_format=torch.channels_last)


_FRESH_MODULES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)
_RELUS = (F.relu, torch.relu)


def _run_in_place(gm: torch.fx.GraphModule, example: torch.Tensor) -> None:
    """Rewrite `relu(t)` and `t + u` to update `t` in place when `t` is a fresh tensor used only there.

    ReLU and add are memory-bound on CPUs; in place they skip an allocation and a write stream. "Fresh"
    means produced by a conv / linear / BN or by an add or ReLU we made in-place (never a view or an input),
    so no other tensor can observe the update; adds also need `t` to have the result's shape (no broadcast).
    """
    ShapeProp(gm).propagate(example[:1])
    fresh: set[torch.fx.Node] = set()
    for n in gm.graph.nodes:
        if n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), _FRESH_MODULES):
            fresh.add(n)
        elif n.op == "call_function" and n.args and isinstance(n.args[0], torch.fx.Node):
            src = n.args[0]
            if src not in fresh or len(src.users) != 1:
                continue
            if n.target in _RELUS:
                n.target, n.kwargs = F.relu, {**n.kwargs, "inplace": True}
                fresh.add(n)
            elif n.target in (operator.add, torch.add) and not n.kwargs and \
                    src.meta.get("tensor_meta") and n.meta.get("tensor_meta") and \
                    src.meta["tensor_meta"].shape == n.meta["tensor_meta"].shape:
                n.target = operator.iadd
                fresh.add(n)
    gm.recompile()


def evaluate(
    model: nn.Module,
    split: Split | FolderSplit,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
    fast: bool = True,
) -> EvalResult:
    """Top-1 accuracy of `model` on `split` (the model itself is left untouched).

    `fast` evaluates an `inference_copy` (folded BN, channels-last); `fast=False` runs the module as is.
    """
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    start = time.perf_counter()
    was_training = model.training
    runner = inference_copy(model, torch.zeros(1, *split.image_shape, device=device)) if fast else model.eval()
    correct = 0
    batches = split.batches(batch_size, device)  # outside inference mode: a split may cache what it makes here
    try:
        with torch.inference_mode():
            for i, (x, y) in enumerate(batches):
                logits = runner(x.contiguous(memory_format=torch.channels_last) if fast else x)
                if i == 0 and not bool(torch.isfinite(logits).all()):
                    # argmax of NaN is class 0: the accuracy would read as chance, not as an error
                    raise GnnrlError(f"the model's outputs on split {split.name!r} are not finite "
                                     "(NaN or inf): its weights or BatchNorm statistics are damaged")
                correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return EvalResult(correct=correct, total=len(split), seconds=time.perf_counter() - start)
