"""The op registry: everything gnnrl knows about one operation, in one entry.

An `Op` says, for a module class, a function or a tensor method:

  * ``channels``: how channel ids flow through it (the channel analysis, `gnnrl.groups`, calls it);
  * ``slice`` / ``cost``: how a layer that owns per-channel parameters is cut, and what it costs on a kept
    subset of its channels (`gnnrl.prune`, `gnnrl.cost`, the shape pass of `gnnrl.trace`);
  * ``label``: its level-0 type and kernel/stride/groups in the computational graph (`gnnrl.graph`);
  * ``channel_dim``, ``filters``, ``gains``: where its channels are, and which weights rank them.

`groups`, `prune`, `cost`, `graph` and `latency` only loop over these entries. `register_op` is the public way
to teach gnnrl a layer it does not know (see the README).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import fx, nn

from .idmap import Ids

Label = tuple[str, int, int, int]
"""(level-0 op type, kernel, stride, groups) of a computational-graph edge"""


@dataclass(frozen=True)
class Call:
    """One traced call as a channel rule sees it: the fx node, its module (None for functions), its op entry,
    and its arguments with every tensor that carries channels replaced by an id map (`gnnrl.ops.idmap.Ids`)."""

    node: fx.Node
    module: nn.Module | None
    op: Op
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def what(self) -> str:
        """The module class or function name, for messages."""
        if self.module is not None:
            return type(self.module).__name__
        return getattr(self.node.target, "__name__", str(self.node.target))


class ChannelPass(Protocol):
    """What a channel rule may call on the channel analysis walking the graph (`gnnrl.groups.ChannelPass`)."""

    shuffles: int
    untie_shuffles: bool

    def new_ids(self, n: int, source: str) -> np.ndarray:
        """`n` fresh channel ids, created by layer `source`."""
        ...

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channels a[i] and b[i] must be removed together."""
        ...

    def pin(self, ids: torch.Tensor | np.ndarray, reason: str) -> None:
        """These channels are kept."""
        ...

    def fresh_map(self, shape: tuple[int, ...], source: str, dim: int = 1) -> tuple[Ids, np.ndarray]:
        """An id map of `shape` with new ids along `dim`, and the ids."""
        ...

    def opaque(self, where: Call | fx.Node, inputs: list[torch.Tensor], why: str) -> Any:
        """Pin every input channel of a call that is not understood; its output's id map."""
        ...

    def record(self, call: Call, in_ids: np.ndarray, out_ids: np.ndarray) -> None:
        """This call's layer is cut when its channels go."""
        ...

    def balance(self, call: Call, blocks: np.ndarray, side: str) -> bool:
        """The rows of `blocks` must keep equally many channels each; False when they must be tied instead."""
        ...

    def add_pad(self, node: str, ids: np.ndarray, before: int, after: int, arg_index: int) -> None:
        """A channel pad at `node`."""
        ...

    def permutes(self, source: fx.Node, nodes: list[fx.Node]) -> None:
        """`nodes[-1]` holds the channels of `source` in a fixed other order."""
        ...

    def mark_summed(self, maps: Iterable[torch.Tensor]) -> None:
        """These channel maps are added together: a residual stream."""
        ...


ChannelRule = Callable[[ChannelPass, Call], Any]
"""(channel pass, call) -> the output's id maps (or plain values)"""
Slicer = Callable[[nn.Module, torch.Tensor, torch.Tensor], None]
"""(module, kept input channel positions, kept output channel positions): cut the module in place"""
CostRule = Callable[[nn.Module, np.ndarray, np.ndarray, tuple[int, ...], tuple[int, ...]], tuple[int, int]]
"""(unpruned module, kept input positions, kept output positions, input shape, output shape) -> (MACs, params),
shapes and MACs for one sample (batch dimension 1)"""
LabelRule = Callable[[nn.Module | None, fx.Node], Label]


@dataclass(frozen=True)
class Op:
    """What gnnrl knows about one operation (see the module docstring)."""

    name: str
    channels: ChannelRule
    label: str | LabelRule = "other"
    slice: Slicer | None = None
    cost: CostRule | None = None
    channel_dim: int = 1
    filters: Callable[[nn.Module], torch.Tensor] | None = None
    """the weights computing each output channel, one row per channel (L1/L2 importance)"""
    gains: Callable[[nn.Module], torch.Tensor | None] | None = None
    """a per-channel scale (BatchNorm's weight…) for the 'bn_scale' importance"""

    def label_of(self, module: nn.Module | None, node: fx.Node) -> Label:
        """The computational-graph label of one call."""
        return (self.label, 1, 1, 1) if isinstance(self.label, str) else self.label(module, node)

    def full_cost(self, module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        """(MACs, params) of the unpruned layer for one sample (shapes may carry any batch size)."""
        assert self.cost is not None, f"op {self.name} has no cost rule"
        in_shape, out_shape = (1, *in_shape[1:]), (1, *out_shape[1:])
        d = self.channel_dim
        return self.cost(module, np.arange(in_shape[d]), np.arange(out_shape[d]), in_shape, out_shape)


MODULE_OPS: dict[type[nn.Module], Op] = {}
FUNCTION_OPS: dict[Any, Op] = {}  # keyed by the function object, or by ".name" for a tensor method
_OPTIONAL: list[Callable[[], None]] = []  # registrations that wait for an optional library (torchvision)


def register_op(*targets: type[nn.Module] | Callable[..., Any] | str, channels: ChannelRule,
                label: str | LabelRule = "other", slice: Slicer | None = None, cost: CostRule | None = None,
                channel_dim: int = 1, filters: Callable[[nn.Module], torch.Tensor] | None = None,
                gains: Callable[[nn.Module], torch.Tensor | None] | None = None, name: str | None = None) -> Op:
    """Teach gnnrl an operation: module classes, functions, or tensor methods written as ".name".

    A module class registered here is also kept whole by the tracer (its forward may be untraceable): gnnrl
    learns what it does from this entry instead. Layers that own per-channel parameters (those whose
    `channels` rule records them, like `gnnrl.ops.creates` and `gnnrl.ops.channelwise`) need `slice` and `cost`.
    """
    if not targets:
        raise ValueError("register_op needs at least one module class, function or '.method' name")
    if (slice is None) != (cost is None):
        raise ValueError("register_op: give both `slice` and `cost` (a layer that is cut must also be costed), "
                         "or neither")
    op = Op(name or _default_name(targets[0]), channels, label, slice, cost, channel_dim, filters, gains)
    for t in targets:
        if isinstance(t, type) and issubclass(t, nn.Module):
            MODULE_OPS[t] = op  # the tracer keeps every registered module class whole (`gnnrl.trace`)
        elif isinstance(t, str) and t.startswith("."):
            FUNCTION_OPS[t] = op
        elif callable(t):
            FUNCTION_OPS[t] = op
        else:
            raise ValueError(f"register_op: {t!r} is not a module class, a function or a '.method' name")
    return op


def _default_name(target: object) -> str:
    return str(target).lstrip(".") if isinstance(target, str) else getattr(target, "__name__", str(target))


def module_op(cls: type[nn.Module]) -> Op | None:
    """The entry of a module class (the nearest registered base class counts)."""
    for base in cls.__mro__:
        op = MODULE_OPS.get(base)
        if op is not None:
            return op
    return None


def registered_base(cls: type[nn.Module]) -> type[nn.Module] | None:
    """The nearest registered class among `cls`'s bases (not `cls` itself): what a subclass is understood as."""
    return next((b for b in cls.__mro__[1:] if b in MODULE_OPS), None)


def is_registered_subclass(cls: type[nn.Module]) -> bool:
    """Not registered itself, but a subclass of a registered layer."""
    return cls not in MODULE_OPS and registered_base(cls) is not None


def overrides_forward(cls: type[nn.Module]) -> bool:
    """A subclass of a registered layer with its own `forward` (timm's BatchNormAct2d: BatchNorm2d + activation)."""
    return is_registered_subclass(cls) and cls.forward is not registered_base(cls).forward  # type: ignore[union-attr]


def prunes_like_its_base(module: nn.Module, op: Op, in_shape: tuple[int, ...]) -> bool:
    """Whether a layer whose class overrides its registered base's `forward` still prunes as the base does.

    Checked on the layer itself, once per trace, with the base's slicing rule: a shape-preserving per-channel layer
    (a norm fused with an activation…) must give, on the first half of its channels, exactly those channels of its
    whole output (a layer that mixes channels fails); a layer that makes new channels (a conv or linear with its
    own forward) must give the first half of its outputs when sliced to them, and, when ungrouped, ignore a removed
    input channel exactly as the base would. Anything else, or any failure, is not trusted.
    """
    import copy

    if op.slice is None or len(in_shape) < 2 or in_shape[1] < 2:
        return False
    like = next(iter(module.parameters()), None)  # the check runs in the layer's own dtype (a float64 copy…)
    x = torch.randn((2, *in_shape[1:]), generator=torch.Generator().manual_seed(0),
                    dtype=like.dtype if like is not None else torch.float32)
    if like is not None:
        x = x.to(like.device)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and bool(torch.allclose(a, b, atol=1e-5, rtol=1e-4))

    def sliced(in_k: torch.Tensor, out_k: torch.Tensor) -> nn.Module:
        trial = copy.deepcopy(module).eval()
        op.slice(trial, in_k, out_k)  # type: ignore[misc]
        return trial

    try:
        with torch.no_grad():
            reference = copy.deepcopy(module).eval()  # never run on the user's layer: no statistic may move
            whole = reference(x)
            half_in = torch.arange(in_shape[1] // 2)
            depthwise = getattr(module, "groups", 1) == in_shape[1] == whole.shape[1]
            if tuple(whole.shape) == tuple(x.shape) or depthwise:  # per channel: the outputs are the inputs' channels
                return same(sliced(half_in, half_in)(x[:, half_in]), whole[:, half_in])
            all_in, half_out = torch.arange(in_shape[1]), torch.arange(whole.shape[1] // 2)
            if len(half_out) == 0 or not same(sliced(all_in, half_out)(x), whole[:, half_out]):
                return False
            if getattr(module, "groups", 1) != 1:
                return False  # grouped layers tie their inputs to their outputs: not checked, so not trusted
            masked = x.clone()
            masked[:, len(half_in):] = 0
            all_out = torch.arange(whole.shape[1])
            return same(sliced(half_in, all_out)(x[:, half_in]), reference(masked))
    except Exception:  # any failure to slice or run means "not like the base"
        return False


def node_key(node: fx.Node) -> Any:
    """The registry key of a call_function / call_method node."""
    return node.target if node.op == "call_function" else f".{node.target}"


def node_op(root: nn.Module, node: fx.Node) -> tuple[Op | None, nn.Module | None]:
    """The entry and module (None for functions) of an fx call node."""
    if node.op == "call_module":
        m = root.get_submodule(str(node.target))
        return module_op(type(m)), m
    if node.op in ("call_function", "call_method"):
        return FUNCTION_OPS.get(node_key(node)), None
    return None, None


def when_loaded(register: Callable[[], None]) -> Callable[[], None]:
    """Run `register` (registrations for an optional library) the first time an analysis needs the registry."""
    _OPTIONAL.append(register)
    return register


def load_optional() -> None:
    """Registrations for optional libraries that are imported by now (see `when_loaded`)."""
    for register in list(_OPTIONAL):
        register()

