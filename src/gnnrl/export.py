"""Deploying a pruned network: ONNX export checked against PyTorch, latency of original vs pruned, memory.

Latency is compared, never quoted alone: this machine's speed drifts by tens of percent between minutes, so the
original and the pruned network are timed in interleaved rounds (A, B, A, B, …) at a fixed thread count and
reported as medians with their inter-quartile range; the speed-up is the ratio of the medians. The timer is a
parameter so that tests never depend on the machine's speed.
"""

from __future__ import annotations

import io
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import GnnrlError
from .evaluate import inference_copy
from .files import atomic_write
from .trace import trace

OPSET = 17


@dataclass(frozen=True)
class OnnxExport:
    """An exported ONNX file and how closely onnxruntime reproduces PyTorch on it."""

    path: str
    opset: int
    max_abs_diff: float
    """largest |ORT − PyTorch| over the logits of the check batch"""
    check_batch: int
    bytes: int


def export_onnx(module: nn.Module, path: str | Path, example: torch.Tensor, opset: int = OPSET,
                check_batch: int = 8) -> OnnxExport:
    """Export `module` (eval mode, dynamic batch axis) to ONNX and check it with onnxruntime on random inputs."""
    module = module.eval()
    names = {"input_names": ["input"], "output_names": ["logits"]}
    buf = io.BytesIO()
    try:  # the TorchScript exporter: opset 17, quiet, ~20× faster here than the dynamo one on these models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example[:1],), buf, dynamo=False, opset_version=opset,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **names)
    except Exception as first:
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it; not a gnnrl dependency)
        except ImportError:
            why = (str(first).strip().splitlines() or [type(first).__name__])[0][:300]
            raise GnnrlError(f"cannot export {type(module).__name__} to ONNX: {why} (PyTorch's other exporter, "
                             f"which may succeed, needs onnxscript: pip install onnxscript)") from first
        buf = io.BytesIO()
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(module, (example[:1],), dynamo=True, opset_version=max(opset, 18),
                                    dynamic_shapes=({0: batch},), verbose=False, **names)
        program.save(buf)  # type: ignore[union-attr]
    data = buf.getvalue()
    atomic_write(path, lambda p: p.write_bytes(data))
    x = torch.randn(check_batch, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = module(x).numpy()
    got = ort_session(data, threads=1).run(None, {"input": x.numpy()})[0]
    return OnnxExport(path=str(path), opset=opset, max_abs_diff=float(np.abs(got - want).max()),
                      check_batch=check_batch, bytes=len(data))


def ort_session(model: bytes | str | Path, threads: int) -> Any:
    """An onnxruntime CPU session with a fixed number of intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise GnnrlError("onnxruntime is not installed: pip install 'gnnrl[export]' (or onnxruntime)") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Timing:
    """Milliseconds per forward pass of one batch: median and inter-quartile range over the rounds."""

    median_ms: float
    iqr_ms: float
    rounds: int


def _timing(seconds: list[float]) -> Timing:
    q = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else [seconds[0]] * 3
    return Timing(median_ms=1e3 * statistics.median(seconds), iqr_ms=1e3 * (q[2] - q[0]), rounds=len(seconds))


def time_interleaved(runners: dict[str, Callable[[], Any]], rounds: int = 15, warmup: int = 2,
                     timer: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """Time each runner once per round, alternating runners within every round (drift hits all alike)."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    seconds: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(rounds):
        names = list(runners) if i % 2 == 0 else list(reversed(runners))  # no runner always goes first
        for name in names:
            t = timer()
            runners[name]()
            seconds[name].append(timer() - t)
    return {k: _timing(v) for k, v in seconds.items()}


def compare_latency(models: dict[str, nn.Module], onnx_files: dict[str, str | Path] | None = None,
                    input_shape: tuple[int, ...] = (3, 32, 32), batch_sizes: tuple[int, ...] = (1, 256),
                    threads: int = 1, rounds: int = 15, timer: Callable[[], float] = time.perf_counter
                    ) -> list[dict[str, Any]]:
    """Latency rows (engine, batch, model, median, IQR) of PyTorch inference copies and ORT sessions, interleaved."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape).contiguous(memory_format=torch.channels_last)
            copies = {k: inference_copy(m, x[:1]) for k, m in models.items()}

            def eager(m: nn.Module, x: torch.Tensor = x) -> Callable[[], Any]:
                def run() -> Any:
                    with torch.inference_mode():
                        return m(x)
                return run

            n = rounds if batch <= 32 else max(5, rounds // 3)  # big batches: each round is long and steadier
            for name, t in time_interleaved({k: eager(m) for k, m in copies.items()}, n, timer=timer).items():
                rows.append({"engine": "pytorch", "batch": batch, "model": name, **asdict(t)})
            if onnx_files:
                feed = {"input": x.contiguous().numpy()}
                sessions = {k: ort_session(p, threads) for k, p in onnx_files.items()}
                runners = {k: (lambda s=s, feed=feed: s.run(None, feed)) for k, s in sessions.items()}
                for name, t in time_interleaved(runners, n, timer=timer).items():
                    rows.append({"engine": "onnxruntime", "batch": batch, "model": name, **asdict(t)})
    finally:
        torch.set_num_threads(old_threads)
    return rows


@dataclass(frozen=True)
class Memory:
    """Bytes a network needs at inference: weights, and the peak of live activations for one image."""

    weight_bytes: int
    peak_activation_bytes: int
    """largest sum of the tensors alive at once during one forward pass of one image (float32)"""


def memory(module: nn.Module, example: torch.Tensor) -> Memory:
    """Weights and peak live activation memory (per image), from the traced graph's shapes and liveness."""
    graph = trace(module.eval(), example[:1])
    nodes = list(graph.module.graph.nodes)
    last_use = {n: i for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):
        for arg in n.all_input_nodes:
            last_use[arg] = max(last_use[arg], i)
    live: dict[Any, int] = {}
    peak = 0
    for i, n in enumerate(nodes):
        shape = n.meta.get("shape")
        if shape is not None:
            live[n] = 4 * math.prod(shape)
        peak = max(peak, sum(live.values()))
        for arg in [a for a in live if last_use[a] <= i]:
            del live[arg]
    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return Memory(weight_bytes=weights, peak_activation_bytes=peak)
