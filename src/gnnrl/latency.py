"""Measured inference latency, and models of it that a search can query thousands of times (metric 'latency').

Two predictors, both fitted on the engine the network is deployed on (`gnnrl.engines.Engine`):

- `TableModel` (the default, in the spirit of NetAdapt's and HALP's look-up tables): every distinct layer
  configuration (conv or linear, at its pruned widths) is timed once, alone, on the engine and kept in a table on
  disk keyed by CPU model, engine and version, threads and batch size; a network's latency is predicted as
  c0 + c1 · (sum of its layers' table entries) + c2 · activation elements, the three coefficients fitted on a few
  whole pruned networks timed on the same engine. The table sees what MACs cannot: on ONNX Runtime a width off
  the CPU's channel block (8 or 16) runs on a slower kernel, so 25 channels can cost more than 32.
- `LatencyModel` (the first version, kept as the 'linear' row of the comparison): the linear fit below.

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
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .engines import CpuMeter, Engine, LayerKey, conv_chain, interleaved_ratio, layer_key, seconds
from .evaluate import inference_copy
from .files import write_json
from .groups import analyze
from .ops.idmap import kept
from .paths import cache_dir
from .progress import progress_bar
from .prune import PrunePlan, channels
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

    kind = "linear"

    def flush(self) -> None:
        """Nothing to save (the fit is all there is)."""

    def predict_plan(self, graph: TracedModel, plan: PrunePlan, macs: float | None = None) -> float:
        """Predicted seconds per batch of `graph` pruned by `plan` (pass `macs` when already known)."""
        if macs is None:
            macs = channels(graph).cost_after(plan).macs
        return self.predict(macs, activation_elements(graph, plan.keep))

    @property
    def max_relative_error(self) -> float:
        """Largest |predicted − measured| / measured over the fitted networks (0 when given without any)."""
        return max((abs(self.predict(m, a) - s) / s for m, a, s in self.samples), default=0.0)

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
    ch = channels(graph)
    x = _batch(graph.example_input, batch_size)
    variants = []
    for level in np.linspace(0.0, 0.9, networks):
        ratios = {g: float(np.clip(level * rng.uniform(0.3, 1.7), 0.0, 0.95)) for g in ch.prunable}
        plan = ch.plan(ratios)
        variants.append((plan, inference_copy(ch.apply(plan), x[:1])))
    times: list[list[float]] = [[] for _ in variants]
    bar = progress_bar(progress, counts=True, transient=True)
    task = bar.add_task(f"timing pruned variants (batch {batch_size})", total=rounds * networks, info="")
    with bar:
        for r in range(rounds):
            order = range(networks) if r % 2 == 0 else reversed(range(networks))
            for i in order:
                times[i].append(measure(variants[i][1], x))
                bar.update(task, advance=1, info=f"{1000 * times[i][-1]:.2f} ms")
    samples = [(float(ch.cost_after(plan).macs), float(activation_elements(graph, plan.keep)),
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
    subsets = [c for k in range(1, 4) for c in itertools.combinations(range(3), k)]
    return _best_subset_fit(x, y, subsets, free=())


def _best_subset_fit(x: np.ndarray, y: np.ndarray, subsets: list[tuple[int, ...]], free: tuple[int, ...]
                     ) -> tuple[float, float, float]:
    """Least squares on relative error over each feature subset; a coefficient not in `free` must be ≥ 0 (exact
    NNLS by trying the subsets); the best admissible subset wins, the others' coefficients are 0."""
    scale = np.maximum(np.abs(x).max(0), 1e-30)  # features span 1 … 1e8: solve in units where they are comparable
    w = 1.0 / y  # relative, not absolute, error: small networks matter as much as big ones
    best: tuple[float, np.ndarray] | None = None
    for cols in subsets:
        sub = x[:, cols] / scale[list(cols)]
        c, *_ = np.linalg.lstsq(sub * w[:, None], y * w, rcond=None)
        if any(v < 0 and col not in free for v, col in zip(c, cols, strict=True)):
            continue
        full = np.zeros(3)
        full[list(cols)] = c / scale[list(cols)]
        err = float(np.sum(((x @ full - y) * w) ** 2))
        if best is None or err < best[0]:
            best = (err, full)
    assert best is not None  # the constant alone always fits (it is ≥ 0 when the times are)
    return (float(best[1][0]), float(best[1][1]), float(best[1][2]))


def measured_ratio(graph: TracedModel, plan: PrunePlan, batch_size: int = 1, rounds: int = 5,
                   repeats: int = 20, meter: CpuMeter | None = None) -> float:
    """Measured latency of the pruned network / the original's: median over interleaved rounds (drift cancels);
    `meter` counts the CPU the timings got."""
    x = _batch(graph.example_input, batch_size)
    # both inference copies built once; only the timings alternate
    pruned, original = (inference_copy(m, x[:1]) for m in (channels(graph).apply(plan), graph.module))
    with (meter or CpuMeter()).timing():
        return statistics.median(_time(pruned, x, repeats) / _time(original, x, repeats) for _ in range(rounds))


# ---------------------------------------------------------------------------------------------------------
# The per-layer table (metric 'latency', predictor 'table')


TABLE_VERSION = 2
"""version 2 caches only entries timed on a quiet machine (`engines.CpuMeter`). Version 1 cached every entry: on
the AVX2 machine of session 18 its ResNet-20 entries read a median 0.94× and down to 0.42× of a quiet re-timing
(timed beside fine-tunes), and the model fitted on them under-predicted searched policies by 9 % (freshly timed:
0.7–1.6 %). Re-timing a ResNet-20 table costs ~3 s, so a version 1 file is ignored."""


class LayerTable:
    """Seconds of each layer configuration on one engine, each timed once (`measure`) and kept in `path`; an entry
    timed on a busy machine is used in this run but not kept (a later run times it again)."""

    def __init__(self, engine: Engine, entries: dict[str, float] | None = None,
                 measure: Callable[[LayerKey], float] | None = None, path: Path | None = None) -> None:
        self.engine = engine
        self.measure = measure or (lambda key: seconds(engine.layer(key)))
        self.path = path
        self.entries: dict[str, float] = {**(_read_table(path, engine) if path else {}), **(entries or {})}
        self.new = 0
        """entries measured since the last `save`"""
        self.busy: set[str] = set()
        """entries timed while other processes took the cores: never saved"""
        self.reported = 0
        """how many of them a warning has named"""

    def __call__(self, key: LayerKey) -> float:
        """Seconds of one layer of configuration `key` (timed now if the table lacks it)."""
        name = json.dumps(list(key))
        value = self.entries.get(name)
        if value is None:
            meter = CpuMeter(self.engine.threads)
            with meter.timing():
                value = self.entries[name] = float(self.measure(key))
            if meter.busy:
                self.busy.add(name)
            else:
                self.new += 1
        return value

    def save(self) -> None:
        """Write the table's quietly timed entries (merged with what is on disk) if it has new ones, with a warning
        when some were timed on a busy machine; a cache that cannot be written is skipped with a warning, never an
        error (it only saves time)."""
        if len(self.busy) > self.reported:
            warnings.warn(f"{len(self.busy) - self.reported} latency-table entries were timed on a busy machine "
                          "(other processes took the cores): this run predicts latency with them, but they are not "
                          "cached — measure on a quiet machine", UserWarning, stacklevel=2)
            self.reported = len(self.busy)
        if self.path is None or not self.new:
            return
        mine = {k: v for k, v in self.entries.items() if k not in self.busy}
        merged = {**_read_table(self.path, self.engine), **mine}
        try:
            write_json(self.path, {"version": TABLE_VERSION, "fingerprint": self.engine.fingerprint(),
                                   "entries": merged})
            self.new = 0
        except OSError as e:
            warnings.warn(f"latency table not saved to {self.path}: {e.strerror or e}", UserWarning, stacklevel=2)


def _read_table(path: Path, engine: Engine) -> dict[str, float]:
    """The entries of a saved table for this engine; {} when missing, damaged, made on another machine or by a
    version that cached timings from a busy machine (`TABLE_VERSION`)."""
    try:
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") != engine.fingerprint() or saved.get("version") != TABLE_VERSION:
            return {}
        return {str(k): float(v) for k, v in saved["entries"].items() if math.isfinite(float(v)) and float(v) > 0}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # a damaged cache is rebuilt by measuring again


def table_path(engine: Engine) -> Path:
    """Where the layer table of `engine` is cached: `<cache_dir>/latency/<engine fingerprint>.json`."""
    return cache_dir() / "latency" / engine.cache_name()


def layer_keys(graph: TracedModel, keep: np.ndarray) -> list[LayerKey]:
    """The table keys of the network's convs and linears at the widths `keep` leaves them."""
    keys = (layer_key(m.module, len(kept(m.in_units, keep)), len(kept(m.out_units, keep)), m.in_shape)
            for m in analyze(graph).modules)
    return [k for k in keys if k is not None]


@dataclass
class TableModel:
    """seconds per batch ≈ c0 + c1 · Σ table(layer) + c2 · activation elements, on `engine`."""

    engine: Engine
    table: LayerTable
    coef: tuple[float, float, float]
    samples: tuple[tuple[float, float, float], ...]
    """(sum of table entries, activation elements, measured seconds) of each network the fit used"""
    kind: str = "table"

    @property
    def batch_size(self) -> int:
        return self.engine.batch

    def layer_sum(self, graph: TracedModel, keep: np.ndarray) -> float:
        """Sum of the table entries of the network's layers at the widths `keep` leaves them."""
        return sum(self.table(k) for k in layer_keys(graph, keep))

    def predict(self, layer_sum: float, activations: float) -> float:
        """Predicted seconds per batch from the two features."""
        c0, c1, c2 = self.coef
        return c0 + c1 * layer_sum + c2 * activations

    def predict_plan(self, graph: TracedModel, plan: PrunePlan, macs: float | None = None) -> float:
        """Predicted seconds per batch of `graph` pruned by `plan` (`macs` is not needed: the table has it)."""
        return self.predict(self.layer_sum(graph, plan.keep), activation_elements(graph, plan.keep))

    @property
    def max_relative_error(self) -> float:
        """Largest |predicted − measured| / measured over the fitted networks (0 when given without any)."""
        return max((abs(self.predict(t, a) - s) / s for t, a, s in self.samples), default=0.0)

    def flush(self) -> None:
        """Save the layer table's new entries to its cache file."""
        self.table.save()

    def to_dict(self) -> dict[str, object]:
        """JSON/checkpoint-friendly form, with every table entry used so far (inverse: `latency_from_dict`)."""
        return {"kind": "table", "engine": self.engine.to_dict(), "coef": list(self.coef),
                "samples": [list(s) for s in self.samples], "entries": dict(self.table.entries),
                "batch_size": self.engine.batch}


def latency_from_dict(d: dict[str, Any], measure: Callable[[LayerKey], float] | None = None
                      ) -> LatencyModel | TableModel:
    """A saved latency model of either kind (a saved table answers what it holds, and times what it lacks)."""
    if d.get("kind", "linear") == "linear":
        return LatencyModel.from_dict(d)
    engine = Engine(**d["engine"])
    table = LayerTable(engine, {str(k): float(v) for k, v in d["entries"].items()}, measure)
    return TableModel(engine, table, tuple(float(c) for c in d["coef"]),  # type: ignore[arg-type]
                      tuple(tuple(float(v) for v in s) for s in d["samples"]))


NetworkSeconds = Callable[[nn.Module, nn.Module], tuple[float, float]]
"""(seconds of the pruned network, seconds of the original), timed interleaved on the engine (injected in tests)"""


def engine_pair_timer(engine: Engine, example: torch.Tensor, rounds: int = 3) -> NetworkSeconds:
    """The real `NetworkSeconds`: both networks built for `engine` and timed alternately, `rounds` times; the
    pruned network's seconds are its median ratio to the original times the original's median (drift cancels)."""
    def timer(pruned: nn.Module, original: nn.Module) -> tuple[float, float]:
        ratio, base = interleaved_ratio(engine.network(pruned, example), engine.network(original, example), rounds)
        return ratio * base, base
    return timer


def fit_table_model(graph: TracedModel, engine: Engine, round_to: int = 1, networks: int = 8, seed: int = 0,
                    progress: bool = False, table: LayerTable | None = None,
                    network_seconds: NetworkSeconds | None = None) -> TableModel:
    """Time `networks` pruned variants (widths rounded to `round_to`) whole on `engine`, next to the original,
    and fit the table model's three coefficients to them (c1, c2 ≥ 0; c0 free: the isolated layers include
    layout changes and dispatch that a whole network shares, so c0 may be negative)."""
    table = table if table is not None else LayerTable(engine, path=table_path(engine))
    timer = network_seconds or engine_pair_timer(engine, graph.example_input)
    rng = np.random.default_rng(seed)
    ch = channels(graph)
    model = TableModel(engine, table, (0.0, 1.0, 0.0), ())
    samples = []
    bar = progress_bar(progress, counts=True, transient=True)
    levels = np.linspace(0.0, 0.85, networks)
    task = bar.add_task(f"timing pruned variants on {engine.name} (batch {engine.batch})", total=networks, info="")
    meter = CpuMeter(engine.threads)
    with bar:
        for level in levels:
            ratios = {g: float(np.clip(level * rng.uniform(0.3, 1.7), 0.0, 0.95)) for g in ch.prunable}
            plan = ch.plan(ratios, round_to=round_to)
            pruned = ch.apply(plan)
            with meter.timing():
                pruned_s, _ = timer(pruned, graph.module)
            samples.append((model.layer_sum(graph, plan.keep), float(activation_elements(graph, plan.keep)),
                            float(pruned_s)))
            bar.update(task, advance=1, info=f"{1000 * pruned_s:.2f} ms")
    meter.warn_if_busy("the latency model's fit")
    table.save()
    return TableModel(engine, table, _fit_free_intercept(samples), tuple(samples))


def _fit_free_intercept(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Least squares on relative error, c0 free and c1, c2 ≥ 0 (the best of the feature subsets with c0)."""
    x = np.array([[1.0, t, a] for t, a, _ in samples])
    y = np.array([s for *_, s in samples])
    return _best_subset_fit(x, y, [(0, 1, 2), (0, 1), (0, 2), (1,), (0,)], free=(0,))


def engine_ratio(graph: TracedModel, plan: PrunePlan, engine: Engine, rounds: int = 5,
                 original: Callable[[], Any] | None = None, meter: CpuMeter | None = None) -> float:
    """Measured latency of the pruned network / the original's on `engine`, interleaved (drift cancels);
    `original`: the original's `engine.network`, when the caller holds it (building it exports the model);
    `meter` counts the CPU the timings (not the export) got."""
    pruned = engine.network(channels(graph).apply(plan), graph.example_input)
    original = original or engine.network(graph.module, graph.example_input)
    with (meter or CpuMeter()).timing():
        return interleaved_ratio(pruned, original, rounds)[0]


def channel_granularity(engine: Engine, network_seconds: Callable[[int], float] | None = None,
                        meter: CpuMeter | None = None) -> int:
    """The channel multiple that pays on `engine`, measured: the largest g in 16, 8, 4 for which a chain of
    3×3 convs of width 4g costs clearly less per MAC (≤ 0.85×) than one of width 4g − g/2; 1 if none does.

    `network_seconds(width)` times the chain (injected in tests); `meter` counts the CPU the timings got."""
    def chain_seconds(width: int) -> float:
        return seconds(engine.network(conv_chain(width), torch.zeros(1, width, 16, 16)), target_s=0.05)

    timer = network_seconds or chain_seconds
    with (meter or CpuMeter()).timing():
        for g in (16, 8, 4):
            aligned, off = 4 * g, 4 * g - g // 2
            per_mac = (timer(aligned) / aligned**2) / (timer(off) / off**2)
            if per_mac <= 0.85:
                return g
    return 1


def cached_granularity(engine: Engine) -> int:
    """`channel_granularity(engine)`, measured once per machine and engine and kept beside the layer table, so that
    `--round-to auto` means the same number in every run here (a resumed run included)."""
    path = table_path(engine).with_name("granularity-" + engine.cache_name())
    try:
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") == engine.fingerprint() and int(saved["granularity"]) >= 1:
            return int(saved["granularity"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # missing or damaged: measured again
    meter = CpuMeter(engine.threads)
    g = channel_granularity(engine, meter=meter)
    if meter.warn_if_busy("the channel granularity (--round-to auto)"):
        return g  # used for this run, but not kept: every later run here would inherit a busy reading
    try:
        write_json(path, {"fingerprint": engine.fingerprint(), "granularity": g})
    except OSError:
        pass  # only a cache
    return g
