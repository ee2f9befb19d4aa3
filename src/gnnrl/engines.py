"""The inference engines a pruned network is deployed on, and how long one layer or one network takes there.

A latency budget means nothing apart from the engine that runs the network: ONNX Runtime's CPU convolutions use
blocked layouts (8 or 16 channels per block, by the CPU's vector width), so a width off the block runs on a slower
kernel and 25 channels can cost more than 32; eager PyTorch (oneDNN) has its own rules. So latency is always
measured on the engine named (`Engine`): whole networks (`Engine.network`), and single layers (`Engine.layer`)
for the per-layer table of `gnnrl.latency`. Every timing goes through `seconds`, whose clock tests replace.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from .errors import GnnrlError

EngineName = Literal["onnxruntime", "torch"]
ENGINES: tuple[str, ...] = get_args(EngineName)

LayerKey = tuple[Any, ...]
"""One layer configuration as the table keys it: ('conv', cin, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, h, w)
or ('linear', cin, cout) — the pruned layer's own shape, for one batch of the engine's batch size."""


@dataclass(frozen=True)
class Engine:
    """Where the network runs: 'onnxruntime' (CPU execution provider) or 'torch' (eager, BN folded, channels-last),
    at a fixed batch size and thread count."""

    name: str = "onnxruntime"
    threads: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise GnnrlError(f"unknown engine {self.name!r}; choose one of {', '.join(ENGINES)}")
        if self.threads < 1 or self.batch < 1:
            raise GnnrlError(f"latency threads ({self.threads}) and batch ({self.batch}) must be at least 1")

    def fingerprint(self) -> dict[str, Any]:
        """What a timing on this engine depends on: CPU model, engine and its version, threads, batch size."""
        return {"cpu": cpu_model(), "engine": self.name, "version": engine_version(self.name),
                "threads": self.threads, "batch": self.batch}

    def cache_name(self) -> str:
        """A file name for this engine's layer table (a hash of the fingerprint)."""
        digest = hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.name}-b{self.batch}-t{self.threads}-{digest}.json"

    def network(self, module: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        """A callable that runs one batch of `module` (exported or copied for inference once, here)."""
        x = torch.randn(self.batch, *example.shape[1:], generator=torch.Generator().manual_seed(0))
        if self.name == "onnxruntime":
            return _ort_runner(_onnx_bytes(module, x[:1]), x, self.threads)
        from .evaluate import inference_copy

        layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format
        return _torch_runner(inference_copy(module, x[:1]), x.contiguous(memory_format=layout), self.threads)

    def layer(self, key: LayerKey) -> Callable[[], Any]:
        """A callable that runs one layer of configuration `key` followed by a ReLU (fused on both engines, as
        in a network, where BatchNorm is folded into the conv) on one batch."""
        if self.name == "onnxruntime":
            model, x = _onnx_layer(key, self.batch)
            return _ort_runner(model, x, self.threads)
        layer, x = _torch_layer(key, self.batch)
        return _torch_runner(layer, x, self.threads)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (inverse: `Engine(**d)`)."""
        return asdict(self)


Clock = Callable[[], float]


def seconds(run: Callable[[], Any], clock: Clock = time.perf_counter, warmup: int = 2, min_reps: int = 5,
            max_reps: int = 40, target_s: float = 0.03) -> float:
    """Median seconds of `run()` after `warmup` calls: at least `min_reps`, more while under `target_s` in all."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = clock()
    while len(times) < max_reps and (len(times) < min_reps or clock() - start < target_s):
        t = clock()
        run()
        times.append(clock() - t)
    return statistics.median(times)


BUSY_SHARE = 0.8
"""a timing during which this process got less than this fraction of the CPU it asked for was taken on a busy
machine: ResNet-20's ONNX Runtime latency (1 thread) measured beside 3 busy loops on 2 cores gets 0.50 of a core
(quiet: 1.00, beside 1 loop: 0.99), and landings measured beside other work read 0.01–0.10 low (session 17)"""


MIN_WALL_S = 0.005
"""a CPU meter judges only timings at least this long (a real one is ≥ 30 ms: `seconds`' target)"""


@dataclass
class CpuMeter:
    """CPU seconds this process got per wall second of the timings it wrapped, per thread asked for: about 1 on a
    quiet machine, about 0.5 when twice as many busy threads as cores share it. Ratios timed interleaved cancel slow
    drift, not time-sharing: a busy machine biases them (see BUSY_SHARE)."""

    threads: int = 1
    cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_clock: Clock = time.process_time
    wall_clock: Clock = time.perf_counter

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Count the CPU and wall seconds of the block."""
        c, w = self.cpu_clock(), self.wall_clock()
        try:
            yield
        finally:
            self.cpu_s += self.cpu_clock() - c
            self.wall_s += self.wall_clock() - w

    @property
    def share(self) -> float | None:
        """CPU seconds per wall second per thread (None before any timing)."""
        return self.cpu_s / (self.wall_s * self.threads) if self.wall_s > 0 else None

    @property
    def busy(self) -> bool:
        """True when the timings got clearly less CPU than they asked for (others were running); no verdict on
        less than `MIN_WALL_S` of timing, where the clocks' resolution decides the share."""
        return self.wall_s >= MIN_WALL_S and is_busy(self.share)

    def warn_if_busy(self, what: str, stacklevel: int = 2) -> bool:
        """Warn (`busy_warning`) that `what` was timed on a busy machine, when it was; True then.
        `stacklevel` as `warnings.warn`'s, counted from the caller."""
        if not self.busy:
            return False
        assert self.share is not None
        warnings.warn(busy_warning(self.share, what), UserWarning, stacklevel=stacklevel + 1)
        return True


def is_busy(share: float | None) -> bool:
    """True for a recorded CPU share (`CpuMeter.share`) clearly under what the timing asked for."""
    return share is not None and share < BUSY_SHARE


def busy_warning(share: float, what: str) -> str:
    """One line telling the user that `what` was timed on a busy machine, and what to do."""
    return (f"{what} was measured on a busy machine (this process got {share:.0%} of the CPU it asked for; other "
            f"processes were running): the measured latency ratios are biased — measure again on a quiet machine")


def interleaved_ratio(a: Callable[[], Any], b: Callable[[], Any], rounds: int = 5,
                      clock: Clock = time.perf_counter) -> tuple[float, float]:
    """Median over `rounds` of seconds(a) / seconds(b), timed alternately (drift hits both); and b's median."""
    ratios, base = interleaved_ratios(a, b, rounds, clock)
    return statistics.median(ratios), statistics.median(base)


def interleaved_ratios(a: Callable[[], Any], b: Callable[[], Any], rounds: int = 5,
                       clock: Clock = time.perf_counter) -> tuple[list[float], list[float]]:
    """seconds(a) / seconds(b) and seconds(b) of each of `rounds` alternating rounds (a first, then b first)."""
    ratios, base = [], []
    for i in range(rounds):
        if i % 2 == 0:
            ta, tb = seconds(a, clock), seconds(b, clock)
        else:
            tb, ta = seconds(b, clock), seconds(a, clock)
        ratios.append(ta / tb)
        base.append(tb)
    return ratios, base


def budget_check(engine: Engine, networks: dict[str, nn.Module], original: nn.Module, example: torch.Tensor,
                 rounds: int = 7, clock: Clock = time.perf_counter) -> dict[str, dict[str, float]]:
    """Each network's latency / the original's on `engine`: median and inter-quartile range of interleaved ratios."""
    base = engine.network(original, example)
    out = {}
    for name, module in networks.items():
        pruned, meter = engine.network(module, example), CpuMeter(engine.threads)
        with meter.timing():
            ratios, _ = interleaved_ratios(pruned, base, rounds, clock)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        out[name] = {"ratio": statistics.median(ratios), "iqr": q[2] - q[0], "rounds": rounds,
                     "cpu_share": meter.share}
    return out


@cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and its vector extensions."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    have = set(line.split(":", 1)[1].split())
                    flags = "+".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in have)
    except OSError:
        pass
    return f"{name} [{flags}]" if flags else name


def machine() -> dict[str, Any]:
    """What timings depend on, for a report: CPU model, usable cores, torch and onnxruntime versions."""
    import os

    try:
        ort_version = _ort().__version__
    except GnnrlError:
        ort_version = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "torch": torch.__version__, "onnxruntime": ort_version}


def engine_version(name: str) -> str:
    """The engine's version string."""
    if name == "onnxruntime":
        return _ort().__version__
    return torch.__version__


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise GnnrlError("onnxruntime is not installed: pip install onnxruntime (or use --engine torch)") from e
    return ort


def _ort_runner(model: bytes, x: torch.Tensor, threads: int) -> Callable[[], Any]:
    from .export import ort_session

    session = ort_session(model, threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def _torch_runner(module: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], Any]:
    def run() -> Any:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return module(x)
        finally:
            torch.set_num_threads(old)
    return run


def _onnx_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    """`module` (eval mode) exported to ONNX with a dynamic batch axis, in memory."""
    import io

    from .export import OPSET

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def _onnx_layer(key: LayerKey, batch: int) -> tuple[bytes, torch.Tensor]:
    """An ONNX model of one conv (or linear) with bias, then ReLU, written directly (no exporter: ~1 ms), and
    its input."""
    from onnx import TensorProto, helper, numpy_helper

    from .export import OPSET

    rng = np.random.default_rng(0)
    kind, cin, cout = key[0], int(key[1]), int(key[2])
    if kind == "conv":
        kh, kw, sh, sw, ph, pw, dh, dw, groups, h, w = (int(v) for v in key[3:])
        weight = rng.standard_normal((cout, cin // groups, kh, kw), dtype=np.float32) * 0.1
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[kh, kw], strides=[sh, sw],
                                pads=[ph, pw, ph, pw], dilations=[dh, dw], group=groups)
        shape = [batch, cin, h, w]
    else:
        weight = rng.standard_normal((cout, cin), dtype=np.float32) * 0.1
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
        shape = [batch, cin]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
    graph = helper.make_graph([node, helper.make_node("Relu", ["y"], ["z"])], "layer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # readable by every onnxruntime of the last years
    return model.SerializeToString(), torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _torch_layer(key: LayerKey, batch: int) -> tuple[nn.Module, torch.Tensor]:
    """The same layer for eager PyTorch (channels-last, as `inference_copy` runs networks), and its input."""
    kind, cin, cout = key[0], int(key[1]), int(key[2])
    if kind == "conv":
        kh, kw, sh, sw, ph, pw, dh, dw, groups, h, w = (int(v) for v in key[3:])
        layer: nn.Module = nn.Sequential(nn.Conv2d(cin, cout, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups),
                                         nn.ReLU(inplace=True))
        x = torch.randn(batch, cin, h, w).contiguous(memory_format=torch.channels_last)
        return layer.eval().to(memory_format=torch.channels_last), x
    return nn.Sequential(nn.Linear(cin, cout), nn.ReLU(inplace=True)).eval(), torch.randn(batch, cin)


def layer_key(mod: nn.Module, cin: int, cout: int, in_shape: tuple[int, ...]) -> LayerKey | None:
    """The table key of a conv2d or linear layer cut to `cin` → `cout` channels (None for other layers, whose time
    the table model's activation and constant terms carry)."""
    if isinstance(mod, nn.Conv2d):
        return conv_key(mod, cin, cout, (int(in_shape[-2]), int(in_shape[-1])))
    if isinstance(mod, nn.Linear):
        return ("linear", cin, cout)
    return None


def conv_chain(width: int, depth: int = 4) -> nn.Module:
    """`depth` 3×3 convs of `width` channels, each with a ReLU: what `channel_granularity` times."""
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU()) for _ in range(depth)])


def conv_key(mod: nn.Conv2d, cin: int, cout: int, in_hw: tuple[int, int]) -> LayerKey:
    """The table key of `mod` cut to `cin` → `cout` channels, on inputs of spatial size `in_hw`."""
    depthwise = mod.groups == mod.in_channels and mod.groups > 1
    groups = cin if depthwise else mod.groups
    return ("conv", cin, cout, *mod.kernel_size, *mod.stride, *_pair(mod.padding, mod.kernel_size, mod.dilation),
            *mod.dilation, groups, *in_hw)


def _pair(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, int]:
    if isinstance(padding, str):  # 'same' (stride 1): symmetric when the kernel is odd, as ONNX would need
        return (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]
    return tuple(int(p) for p in padding)  # type: ignore[return-value]
