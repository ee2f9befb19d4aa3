"""Measured inference latency, and a model of it that a search can query thousands of times (metric 'latency').

Timing every candidate network would cost more than evaluating it, and on a shared machine single timings
drift by tens of percent. So, as in NetAdapt's look-up tables, latency is measured once per network family and
then predicted: a dozen pruned variants of the network are built and timed back to back, and a linear model

    seconds per batch ≈ c0 + c1 · MACs + c2 · activation elements

(coefficients ≥ 0, so more channels never predict less time) is fitted to them. c0 is what pruning cannot
remove — per-layer dispatch, which dominates small networks at batch 1 — and is why a latency budget can be
out of reach where the same MACs budget is not. The fit is saved with a search, so resuming it predicts the
same numbers.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .evaluate import inference_copy
from .groups import analyze
from .ops.idmap import kept
from .progress import progress_bar
from .prune import PrunePlan, apply_plan, cost_after, make_plan
from .trace import TracedModel


def measure_latency(module: nn.Module, example: torch.Tensor, batch_size: int = 1, repeats: int = 20,
                    warmup: int = 3) -> float:
    """Median seconds of one forward pass of the module's inference copy on a batch of `batch_size` inputs."""
    x = _batch(example, batch_size)
    return _time(inference_copy(module, x[:1]), x, repeats, warmup)


def _batch(example: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.randn(batch_size, *example.shape[1:]).contiguous(memory_format=torch.channels_last)


def _time(runner: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3) -> float:
    """Median seconds of `runner(x)` after `warmup` untimed calls."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t = time.perf_counter()
            runner(x)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def activation_elements(graph: TracedModel, keep: np.ndarray) -> int:
    """Output elements (per sample) of the layers the pruner resizes (conv, linear, norms…), after pruning."""
    total = 0
    for m in analyze(graph).modules:
        per_channel = math.prod(m.out_shape) // m.out_shape[m.op.channel_dim]  # batch 1: elements per channel
        total += per_channel * len(kept(m.out_units, keep))
    return total


@dataclass(frozen=True)
class LatencyModel:
    """seconds per batch ≈ c0 + c1·MACs + c2·activation elements, fitted on measured pruned networks."""

    batch_size: int
    coef: tuple[float, float, float]
    samples: tuple[tuple[float, float, float], ...]
    """(MACs, activation elements, measured seconds) of each network the fit used"""
    fallback: bool = False
    """True when the timings were too noisy for pruning to lower the fitted latency, and the model fell back to
    latency ∝ MACs (scaled to the unpruned network's measured time)"""

    def predict(self, macs: float, activations: float) -> float:
        """Predicted seconds per batch."""
        c0, c1, c2 = self.coef
        return c0 + c1 * macs + c2 * activations

    def predict_plan(self, graph: TracedModel, plan: PrunePlan, macs: float | None = None) -> float:
        """Predicted seconds per batch of `graph` pruned by `plan` (pass `macs` when already known)."""
        if macs is None:
            macs = cost_after(graph, plan).macs
        return self.predict(macs, activation_elements(graph, plan.keep))

    @property
    def max_relative_error(self) -> float:
        """Largest |predicted − measured| / measured over the fitted networks."""
        return max(abs(self.predict(m, a) - s) / s for m, a, s in self.samples)

    def to_dict(self) -> dict[str, object]:
        """JSON/checkpoint-friendly form (inverse: `from_dict`)."""
        return {"batch_size": self.batch_size, "coef": list(self.coef), "samples": [list(s) for s in self.samples],
                "fallback": self.fallback}

    @staticmethod
    def from_dict(d: dict[str, object]) -> LatencyModel:
        """Inverse of `to_dict`."""
        coef = tuple(float(c) for c in d["coef"])  # type: ignore[attr-defined]
        samples = tuple(tuple(float(v) for v in s) for s in d["samples"])  # type: ignore[attr-defined]
        return LatencyModel(int(d["batch_size"]), coef, samples,  # type: ignore[arg-type, call-overload]
                            bool(d.get("fallback", False)))


Measure = Callable[[nn.Module, torch.Tensor], float]
"""seconds of one forward pass of an inference copy on a batch (injected in tests: no test times anything)"""


def timed(repeats: int = 20, warmup: int = 3) -> Measure:
    """The real `Measure`: median wall time over `repeats` calls after `warmup` untimed ones."""
    return lambda runner, x: _time(runner, x, repeats, warmup)


def fit_latency_model(graph: TracedModel, batch_size: int = 1, networks: int = 12, repeats: int = 20,
                      seed: int = 0, progress: bool = False, rounds: int = 3, measure: Measure | None = None,
                      warn: Callable[[str], None] | None = None) -> LatencyModel:
    """Time `networks` variants of the traced network (unpruned to ~90% of channels removed) and fit the model.

    Variants differ in overall ratio and, randomly (×0.3–1.7), per group, like a search's policies, so MACs and
    activations do not move in lockstep and odd channel counts are represented. Each is timed once per round,
    rounds interleaved (a busy machine slows all variants alike), and its median is fitted. If the fit still says
    pruning does not lower latency (noise swamped the signal), the model falls back to latency ∝ MACs and `warn`s.
    """
    measure = measure or timed(max(1, repeats // rounds))
    rng = np.random.default_rng(seed)
    groups = [g.id for g in analyze(graph).groups if g.prunable]
    x = _batch(graph.example_input, batch_size)
    variants = []
    for level in np.linspace(0.0, 0.9, networks):
        ratios = {g: float(np.clip(level * rng.uniform(0.3, 1.7), 0.0, 0.95)) for g in groups}
        plan = make_plan(graph, ratios)
        variants.append((plan, inference_copy(apply_plan(graph, plan), x[:1])))
    times: list[list[float]] = [[] for _ in variants]
    bar = progress_bar(progress, counts=True, transient=True)
    task = bar.add_task(f"timing pruned variants (batch {batch_size})", total=rounds * networks, info="")
    with bar:
        for r in range(rounds):
            order = range(networks) if r % 2 == 0 else reversed(range(networks))
            for i in order:
                times[i].append(measure(variants[i][1], x))
                bar.update(task, advance=1, info=f"{1000 * times[i][-1]:.2f} ms")
    samples = [(float(cost_after(graph, plan).macs), float(activation_elements(graph, plan.keep)),
                statistics.median(t)) for (plan, _), t in zip(variants, times, strict=True)]
    coef = _nonnegative_fit(samples)
    fitted = LatencyModel(batch_size, coef, tuple(samples))
    full, smallest = samples[0], min(samples, key=lambda s: s[0])
    if fitted.predict(smallest[0], smallest[1]) >= 0.98 * fitted.predict(full[0], full[1]):
        if warn is not None:
            warn(f"latency timings at batch {batch_size} were too noisy for pruning to lower the fitted latency "
                 "(a busy machine?); predicting latency ∝ MACs instead")
        return LatencyModel(batch_size, (0.0, full[2] / full[0], 0.0), tuple(samples), fallback=True)
    return fitted


def _nonnegative_fit(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Least squares on relative error with every coefficient ≥ 0 (exact NNLS by trying each feature subset)."""
    x = np.array([[1.0, m, a] for m, a, _ in samples])
    y = np.array([s for _, _, s in samples])
    scale = x.max(0)  # features span 1 … 1e8: solve in units where they are comparable
    w = 1.0 / y  # relative, not absolute, error: small networks matter as much as big ones
    best: tuple[float, np.ndarray] | None = None
    for k in range(1, 4):
        for cols in itertools.combinations(range(3), k):
            sub = x[:, cols] / scale[list(cols)]
            c, *_ = np.linalg.lstsq(sub * w[:, None], y * w, rcond=None)
            if (c < 0).any():
                continue
            full = np.zeros(3)
            full[list(cols)] = c / scale[list(cols)]
            err = float(np.sum(((x @ full - y) * w) ** 2))
            if best is None or err < best[0]:
                best = (err, full)
    assert best is not None  # the constant alone always fits with c0 ≥ 0
    return (float(best[1][0]), float(best[1][1]), float(best[1][2]))


def measured_ratio(graph: TracedModel, plan: PrunePlan, batch_size: int = 1, rounds: int = 5,
                   repeats: int = 20) -> float:
    """Measured latency of the pruned network / the original's: median over interleaved rounds (drift cancels)."""
    x = _batch(graph.example_input, batch_size)
    # both inference copies built once; only the timings alternate
    pruned, original = (inference_copy(m, x[:1]) for m in (apply_plan(graph, plan), graph.module))
    return statistics.median(_time(pruned, x, repeats) / _time(original, x, repeats) for _ in range(rounds))
