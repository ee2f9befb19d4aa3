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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import fx, nn

if TYPE_CHECKING:
    from ..groups import ChannelPass

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


ChannelRule = Callable[["ChannelPass", Call], Any]
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
            MODULE_OPS[t] = op
            if not t.__module__.startswith("torch."):
                from ..trace import register_leaf

                register_leaf(t)
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

