"""Which channels must be removed together: found by propagating channel ids through the traced graph.

Every channel a layer creates (a conv's or linear's outputs, the zeros a channel-pad inserts, the network
input) gets a fresh integer id. We then push *id maps* — int64 tensors shaped like the real activations
(batch 1), holding each element's channel id — through the graph: layout ops (view, transpose, flatten,
cat, chunk, getitem, pad…) are simply run on the id maps, so concat offsets, channel shuffles and
flatten → linear column blocks come out of the ops themselves, not out of per-model rules. Where two
channels must be removed together, their ids are unioned (union-find):

  * element-wise ops between tensors (residual add, SE-style mul) union the ids they combine;
  * a depthwise conv ties input channel i to its outputs; a grouped conv ties position k of every group;
  * a reshape/chunk that splits a channel dimension into a constant number of pieces ties the pieces'
    equal positions (this is what keeps a channel shuffle consistent).

A *unit* is one union-find class: the atom of pruning. A *group* is a set of units connected through the
layers that create them; one ratio is chosen per group. Units touching the network input or output, or an
op this module does not understand, are pinned (kept), with a one-line reason — never a silent wrong shape.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .trace import Graph

NO_CHANNEL = -1


@dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned with one ratio: the layers that create them, who consumes them, what they cost."""

    id: int
    size: int
    """number of units (channels that can be removed one by one) in the group"""
    prunable_size: int
    """units that may be removed (size minus pinned units)"""
    members: tuple[str, ...]
    """layers creating the channels (conv/linear names, 'pad@node' for zero-padding, 'input')"""
    consumers: tuple[str, ...]
    """conv/linear/BN layers reading the channels"""
    macs: int
    """MACs (per sample) of the conv/linear layers that create or read the group's channels"""
    prunable: bool
    reason: str = ""
    """why the group is pinned, when it is"""
    summed: bool = False
    """its channels are added to (or subtracted from) another tensor's by an element-wise op: a residual
    stream, whose channels every block on it shares (baselines that keep the stream whole read this)"""


@dataclass
class ModuleChannels:
    """Per-position unit labels of one conv / linear / BN call: what to slice when units are removed."""

    node: str
    target: str
    kind: str  # "conv", "linear" or "bn"
    in_units: np.ndarray
    out_units: np.ndarray
    out_ids: np.ndarray


@dataclass
class PadChannels:
    """A constant pad on the channel dimension: unit of every output channel, and the pad's channel slots."""

    node: str
    units: np.ndarray
    left: int
    right: int
    arg_index: int  # index in the pad tuple of the channel dimension's "before" entry


@dataclass
class Analysis:
    """Everything the pruner needs, computed once per traced graph."""

    groups: list[ChannelGroup]
    unit_group: np.ndarray  # unit -> group id
    unit_pinned: np.ndarray  # unit -> bool
    unit_of_id: np.ndarray  # channel id -> unit
    modules: list[ModuleChannels]
    pads: list[PadChannels]
    node_units: dict[str, np.ndarray]  # fx node name -> unit of each position of its dim 1 (-1: not a channel)
    num_units: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_units = len(self.unit_group)


class _Ids:
    """An id map: an int64 tensor shaped like an activation (batch 1), holding channel ids (or -1)."""

    __slots__ = ("t",)

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


class _Pass:
    """One walk over the graph computing id maps, unions and pins."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.parent: list[int] = []
        self.id_source: list[int] = []
        self.sources: list[str] = []
        self.pin_reason: dict[int, str] = {}
        self.modules: list[tuple[str, str, str, np.ndarray, np.ndarray]] = []
        self.pads: list[tuple[str, np.ndarray, int, int, int]] = []
        self.calls: dict[str, int] = {}
        self.node_ids: dict[str, np.ndarray] = {}
        self.summed: list[np.ndarray] = []  # ids joined by an element-wise add/sub of two channel maps

    # ---- union-find over channel ids -----------------------------------------------------------------
    def new_ids(self, n: int, source: str) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.sources.append(source)
        self.id_source.extend([len(self.sources) - 1] * n)
        return np.arange(start, start + n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        ok = (a >= 0) & (b >= 0) & (a != b)
        if not ok.any():
            return
        # Activations repeat each pair over every spatial position: dedupe on one int64 key first.
        pairs = np.unique(a[ok] * (1 << 31) + b[ok])
        for x, y in zip((pairs >> 31).tolist(), (pairs & ((1 << 31) - 1)).tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def pin(self, ids: torch.Tensor | np.ndarray, reason: str) -> None:
        arr = ids.numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        for i in np.unique(arr[arr >= 0]):
            self.pin_reason.setdefault(int(i), reason)

    # ---- helpers -----------------------------------------------------------------------------------
    def fresh_map(self, shape: tuple[int, ...], source: str, dim: int = 1) -> tuple[torch.Tensor, np.ndarray]:
        """An id map of `shape` with new ids along `dim` (constant along the other dims)."""
        if len(shape) == 0:
            return torch.full((), NO_CHANNEL, dtype=torch.long), np.empty(0, dtype=np.int64)
        dim = dim % len(shape)
        ids = self.new_ids(shape[dim], source)
        view = [1] * len(shape)
        view[dim] = shape[dim]
        return torch.from_numpy(ids).view(view).expand(shape).contiguous(), ids

    def opaque(self, node: fx.Node, inputs: list[torch.Tensor], why: str) -> Any:
        """Pin every input channel; a same-shaped output keeps the input's (now pinned) ids, others get new ones."""
        for t in inputs:
            self.pin(t, why)
        shape = node.meta.get("shape")
        if shape is None:
            return node.meta.get("value")
        if inputs and tuple(inputs[0].shape) == tuple(shape):
            return _Ids(inputs[0])
        t, ids = self.fresh_map(shape, f"opaque:{node.name}")
        self.pin(ids, why)
        return _Ids(t)

    # ---- the walk ------------------------------------------------------------------------------------
    def run(self) -> Analysis:
        env: dict[fx.Node, Any] = {}
        for node in self.graph.module.graph.nodes:
            env[node] = self.visit(node, env)
            out = env[node]
            if isinstance(out, _Ids) and out.t.dim() >= 2:
                ids = _vector(out.t, 1)
                if ids is not None:
                    self.node_ids[node.name] = ids
        return self.finish()

    def visit(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            t, ids = self.fresh_map(node.meta["shape"], "input")
            self.pin(ids, "network input")
            return _Ids(t)
        if node.op == "get_attr":
            return _fetch_attr(self.graph.module, str(node.target))
        if node.op == "output":
            for t in _tensors(args):
                self.pin(t, "network output")
            return None
        tensors = _tensors((args, kwargs))
        if not tensors:  # sizes, other Python values, or tensors computed from constants (parameters, buffers)
            return _constant(node, args, kwargs)
        if node.op == "call_module":
            module = self.graph.module.get_submodule(str(node.target))
            self.calls[str(node.target)] = self.calls.get(str(node.target), 0) + 1
            rule = _lookup(MODULE_RULES, type(module))
            if rule is None:
                return self.opaque(node, tensors, f"module {type(module).__name__} is not understood (kept whole)")
            return rule(self, node, module, args, kwargs)
        key: Any = node.target if node.op == "call_function" else f".{node.target}"
        rule = FUNCTION_RULES.get(key)
        if rule is None:
            name = getattr(node.target, "__name__", str(node.target))
            return self.opaque(node, tensors, f"op {name} is not understood")
        return rule(self, node, args, kwargs)

    def finish(self) -> Analysis:
        n_ids = len(self.parent)
        roots = np.array([self.find(i) for i in range(n_ids)], dtype=np.int64)
        # A module called more than once would need the same slicing at every call: keep it whole.
        for target, count in self.calls.items():
            if count > 1:
                for _node, tgt, _, iu, ou in self.modules:
                    if tgt == target:
                        self.pin(iu, f"module {target} is called {count} times")
                        self.pin(ou, f"module {target} is called {count} times")
        uniq, unit_of_id = np.unique(roots, return_inverse=True)
        num_units = len(uniq)
        pinned = np.zeros(num_units, dtype=bool)
        reasons: dict[int, str] = {}
        for i, why in self.pin_reason.items():
            u = int(unit_of_id[i])
            pinned[u] = True
            reasons.setdefault(u, why)
        # Group = units connected through the layers (sources) that create them.
        src_parent = list(range(len(self.sources)))

        def sfind(a: int) -> int:
            while src_parent[a] != a:
                src_parent[a] = src_parent[src_parent[a]]
                a = src_parent[a]
            return a

        id_source = np.asarray(self.id_source, dtype=np.int64)
        first_src = np.full(num_units, -1, dtype=np.int64)
        for i in range(n_ids):
            u, s = int(unit_of_id[i]), int(id_source[i])
            if first_src[u] < 0:
                first_src[u] = s
            else:
                a, b = sfind(int(first_src[u])), sfind(s)
                if a != b:
                    src_parent[max(a, b)] = min(a, b)
        comp = np.array([sfind(int(first_src[u])) for u in range(num_units)], dtype=np.int64)
        order = {c: g for g, c in enumerate(dict.fromkeys(comp.tolist()))}
        unit_group = np.array([order[c] for c in comp.tolist()], dtype=np.int64)

        modules = [ModuleChannels(n, t, k, _units(iu, unit_of_id), _units(ou, unit_of_id), ou)
                   for n, t, k, iu, ou in self.modules]
        pads = [PadChannels(n, _units(ids, unit_of_id), left, right, idx) for n, ids, left, right, idx in self.pads]
        macs = {n.name: int(n.meta.get("macs", 0)) for n in self.graph.module.graph.nodes}
        groups = []
        for g in range(len(order)):
            units = np.flatnonzero(unit_group == g)
            members = sorted({self.sources[s] for s in np.unique(id_source[np.isin(unit_of_id, units)])})
            touching = [m for m in modules if np.isin(m.in_units, units).any() or np.isin(m.out_units, units).any()]
            consumers = tuple(dict.fromkeys(m.target for m in touching if np.isin(m.in_units, units).any()))
            free = int((~pinned[units]).sum())
            why = next((reasons[int(u)] for u in units if int(u) in reasons), "")
            if not why and free < 2:
                why = ("a single channel" if len(members) == 1 and len(units) == 1 else
                       "all its channels are tied into one unit (e.g. grouped convs around a channel shuffle)")
            groups.append(ChannelGroup(
                id=g, size=len(units), prunable_size=free, members=tuple(members), consumers=consumers,
                macs=sum(macs.get(m.node, 0) for m in touching if m.kind != "bn"), prunable=free >= 2,
                reason="" if free >= 2 else why,
            ))
        summed_ids = np.unique(np.concatenate(self.summed)) if self.summed else np.empty(0, dtype=np.int64)
        summed_groups = set(unit_group[unit_of_id[summed_ids[summed_ids >= 0]]].tolist())
        groups = [replace(g, summed=g.id in summed_groups) for g in groups]
        node_units = {n: _units(ids, unit_of_id) for n, ids in self.node_ids.items()}
        return Analysis(groups, unit_group, pinned, unit_of_id, modules, pads, node_units)


def _constant(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """The value of a node none of whose inputs carry channels: recorded by the shape pass, or recomputed.

    Ops on parameters and buffers (`self.scale.view(1, -1, 1, 1)`, `self.cls_token.expand(n, -1, -1)`) are run
    on the real tensors, so a per-channel constant still reaches the element-wise rule that pins it.
    """
    if "value" in node.meta or "shape" not in node.meta:
        return node.meta.get("value")
    if any(isinstance(a, torch.Tensor) for a in _flat((args, list(kwargs.values())))):
        try:
            if node.op == "call_function":
                return node.target(*args, **kwargs)  # type: ignore[operator]
            if node.op == "call_method":
                return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        except (TypeError, RuntimeError, ValueError):
            pass
    return torch.zeros(node.meta["shape"])  # an unknown constant: no channels, shape kept


def _units(ids: np.ndarray, unit_of_id: np.ndarray) -> np.ndarray:
    out = np.full(len(ids), NO_CHANNEL, dtype=np.int64)
    ok = ids >= 0
    out[ok] = unit_of_id[ids[ok]]
    return out


def _fetch_attr(module: nn.Module, target: str) -> Any:
    obj: Any = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _tensors(tree: Any) -> list[torch.Tensor]:
    """All id maps inside nested args (lists, tuples, dicts)."""
    out: list[torch.Tensor] = []

    def walk(x: Any) -> None:
        if isinstance(x, _Ids):
            out.append(x.t)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)

    walk(tree)
    return out


def _raw(tree: Any) -> Any:
    """Replace id maps by their tensors, and constant tensors by channel-free maps, so an op can run on them."""
    if isinstance(tree, _Ids):
        return tree.t
    if isinstance(tree, torch.Tensor):  # a constant (e.g. a class token concatenated to the features)
        return torch.full(tree.shape, NO_CHANNEL, dtype=torch.long)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_raw(x) for x in tree)
    if isinstance(tree, dict):
        return {k: _raw(v) for k, v in tree.items()}
    return tree


def _wrap(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return _Ids(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(y) for y in x)
    return x


def _lookup(table: dict[type, Any], cls: type) -> Any:
    for base in cls.__mro__:
        if base in table:
            return table[base]
    return None


def _vector(t: torch.Tensor, dim: int) -> np.ndarray | None:
    """The ids along `dim` if the map is constant along every other dim, else None."""
    dim = dim % t.dim()
    moved = t.movedim(dim, 0).reshape(t.shape[dim], -1)
    v = moved[:, 0]
    return v.numpy().copy() if bool((moved == v[:, None]).all()) else None


def _varies(t: torch.Tensor, dim: int) -> bool:
    return t.shape[dim] > 1 and bool((t != t.narrow(dim, 0, 1)).any())


def _union_along(p: _Pass, t: torch.Tensor, dim: int, pieces: int | None = None) -> None:
    """Tie together the ids that face each other along `dim` (split into `pieces` equal parts, or per element)."""
    moved = t.movedim(dim, -1)
    if pieces is not None:  # chunk-like: piece j position k ↔ piece 0 position k
        moved = moved.reshape(*moved.shape[:-1], pieces, -1).transpose(-1, -2)
    rows = moved.reshape(-1, moved.shape[-1])
    for j in range(1, rows.shape[1]):
        p.union(rows[:, 0].numpy(), rows[:, j].numpy())


# ---------------------------------------------------------------------------------------------------------
# Module rules


def _conv(p: _Pass, node: fx.Node, m: nn.Module, args: tuple, kwargs: dict) -> _Ids:
    assert isinstance(m, nn.modules.conv._ConvNd)
    x = args[0].t
    in_ids = _vector(x, 1)
    if in_ids is None or m.transposed:
        return p.opaque(node, [x], f"{type(m).__name__} {node.target}: channels not separable")
    out, out_ids = p.fresh_map(node.meta["shape"], str(node.target))
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    if g == cin and g > 1:  # depthwise (with multiplier k): input channel i feeds outputs i·k … i·k+k−1
        p.union(np.repeat(in_ids, cout // cin), out_ids)
    elif g > 1:  # grouped: the weight's in-dim is shared by all groups, so position k goes in every group at once
        p.union(np.repeat(in_ids[: cin // g], g - 1), in_ids[cin // g :].reshape(g - 1, -1).T.ravel())
        p.union(np.repeat(out_ids[: cout // g], g - 1), out_ids[cout // g :].reshape(g - 1, -1).T.ravel())
    p.modules.append((node.name, str(node.target), "conv", in_ids, out_ids))
    return _Ids(out)


def _linear(p: _Pass, node: fx.Node, m: nn.Module, args: tuple, kwargs: dict) -> _Ids:
    x = args[0].t
    in_ids = _vector(x, -1)
    if in_ids is None:
        return p.opaque(node, [x], f"Linear {node.target}: features not separable")
    out, out_ids = p.fresh_map(node.meta["shape"], str(node.target), dim=-1)
    p.modules.append((node.name, str(node.target), "linear", in_ids, out_ids))
    return _Ids(out)


def _batchnorm(p: _Pass, node: fx.Node, m: nn.Module, args: tuple, kwargs: dict) -> _Ids:
    x = args[0].t
    ids = _vector(x, 1)
    if ids is None:
        return p.opaque(node, [x], f"BatchNorm {node.target}: channels not separable")
    p.modules.append((node.name, str(node.target), "bn", ids, ids))
    return args[0]


def _same(p: _Pass, node: fx.Node, *rest: Any) -> Any:
    """Element-wise unary ops: the output has the input's ids."""
    args = rest[-2]
    return next(a for a in _flat(args) if isinstance(a, _Ids))


def _flat(tree: Any) -> list[Any]:
    if isinstance(tree, (list, tuple)):
        return [y for x in tree for y in _flat(x)]
    return [tree]


def _per_channel(p: _Pass, node: fx.Node, *rest: Any) -> _Ids:
    """Spatial ops (pooling, resizing): each output channel carries its input channel's id."""
    x = rest[-2][0].t
    ids = _vector(x, 1) if x.dim() >= 2 else None
    if ids is None:
        return p.opaque(node, [x], f"{_name(node)} mixes channels")
    shape = node.meta["shape"]
    return _Ids(torch.from_numpy(ids).view(1, -1, *([1] * (len(shape) - 2))).expand(shape).contiguous())


def _flatten_module(p: _Pass, node: fx.Node, m: nn.Module, args: tuple, kwargs: dict) -> _Ids:
    assert isinstance(m, nn.Flatten)
    return _Ids(args[0].t.flatten(m.start_dim, m.end_dim))


def _pinning_module(p: _Pass, node: fx.Node, m: nn.Module, args: tuple, kwargs: dict) -> Any:
    """Normalisations across channels (LayerNorm, GroupNorm…): pruning would change their statistics."""
    x = args[0]
    p.pin(x.t, f"{type(m).__name__} {node.target} normalises across channels")
    return x


MODULE_RULES: dict[type[nn.Module], Callable[..., Any]] = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.BatchNorm3d: _batchnorm,
    nn.Flatten: _flatten_module,
    **{cls: _same for cls in (
        nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
        nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
        nn.Dropout3d, nn.AlphaDropout, nn.Identity)},
    **{cls: _per_channel for cls in (
        nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
        nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)},
    **{cls: _pinning_module for cls in (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.InstanceNorm1d,
                                        nn.InstanceNorm2d, nn.InstanceNorm3d)},
}
# nn.PReLU with one weight per channel would need slicing; with a single weight it is element-wise.


# ---------------------------------------------------------------------------------------------------------
# Function and method rules (methods are keyed as ".name")


def _name(node: fx.Node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def _elementwise(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Binary element-wise ops: operands' ids at the same (broadcast) position become one unit."""
    operands = [a for a in (*args, *kwargs.values()) if isinstance(a, (_Ids, torch.Tensor))]
    shape = node.meta.get("shape")
    maps = [a.t for a in operands if isinstance(a, _Ids)]
    if shape is None:
        return node.meta.get("value")
    maps = [m.expand(shape) for m in maps]
    for const in (a for a in operands if isinstance(a, torch.Tensor) and a.numel() > 1):
        # a constant with one value per channel (e.g. a layer scale) fixes the channel count
        cshape = (1,) * (len(shape) - const.dim()) + tuple(const.shape)
        for m in maps:
            if any(cshape[d] > 1 and _varies(m, d) for d in range(len(shape))):
                p.pin(m, f"{_name(node)} with a constant per-channel tensor")
    if len(maps) > 1 and _name(node) in _SUMS:
        p.summed.extend(np.unique(m.numpy()) for m in maps)
    out = maps[0].clone()
    for m in maps[1:]:
        p.union(out.numpy(), m.numpy())
        out = torch.maximum(out, m)
    return _Ids(out.contiguous())


def _layout(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Pure data movement (flatten, transpose, permute, cat, stack, contiguous…): run it on the id maps."""
    fn = node.target if node.op == "call_function" else None
    raw_args, raw_kwargs = _raw(args), _raw(kwargs)
    out = fn(*raw_args, **raw_kwargs) if fn else getattr(raw_args[0], str(node.target))(*raw_args[1:], **raw_kwargs)
    return _wrap(out)


def _reshape(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> _Ids:
    """view / reshape: literal sizes stay fixed after pruning, so ids spread along such a dim are tied."""
    x = args[0].t
    sizes_arg = node.args[1:]
    if len(sizes_arg) == 1 and isinstance(sizes_arg[0], (list, tuple)):
        sizes_arg = tuple(sizes_arg[0])
    shape = node.meta["shape"]
    out = x.reshape(shape)
    for d, s in enumerate(sizes_arg):
        if isinstance(s, int) and s not in (-1, 1) and d < out.dim() and _varies(out, d):
            _union_along(p, out, d)
    return _Ids(out)


def _chunk(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """chunk(n, dim): pruned halves must stay equal, so position k of every chunk is tied."""
    x = args[0].t
    n = args[1] if len(args) > 1 else kwargs["chunks"]
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if _varies(x, dim):
        if x.shape[dim] % n:
            p.pin(x, "chunk of a channel dimension into unequal parts")
        else:
            _union_along(p, x, dim, pieces=n)
    return _wrap(torch.chunk(x, n, dim))


def _split(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """split with constant sizes: the sizes would no longer fit a pruned dimension."""
    x = args[0].t
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if _varies(x, dim):
        p.pin(x, "split of a channel dimension into constant sizes")
    return _wrap(torch.split(x, args[1], dim))


def _getitem(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Indexing: on tuples it selects; on an id map, slicing a channel-carrying dim pins it."""
    obj, index = args
    if not isinstance(obj, _Ids):
        return obj[index]
    x = obj.t
    idx = index if isinstance(index, tuple) else (index,)
    dims: list[int] = []
    d = 0
    for i, item in enumerate(idx):
        if item is Ellipsis:
            d = x.dim() - (len(idx) - i - 1 - sum(1 for j in idx[i + 1 :] if j is None))
            continue
        if item is None:
            continue
        if not (isinstance(item, slice) and item == slice(None)):
            dims.append(d)
        d += 1
    for d in dims:
        if d < x.dim() and _varies(x, d):
            p.pin(x, "indexing a channel dimension with constant bounds")
    return _Ids(x[index])


def _pad(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> _Ids:
    """Constant padding: new channels get fresh ids (zeros: removable); spatial padding keeps the channel's id."""
    x = args[0].t
    pad = list(args[1] if len(args) > 1 else kwargs["pad"])
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    c_in = _vector(x, 1)
    if c_in is None or x.dim() < 2:
        return p.opaque(node, [x], "pad of a tensor whose channels are not separable")
    k = (x.dim() - 1 - 1) * 2  # the pad tuple lists the last dim first
    before = pad[k] if len(pad) > k else 0
    after = pad[k + 1] if len(pad) > k + 1 else 0
    if (before or after) and mode != "constant":
        return p.opaque(node, [x], f"{mode} padding of channels")
    shape = node.meta["shape"]
    ids = c_in
    if before or after:
        fresh = p.new_ids(before + after, f"pad@{node.name}")
        ids = np.concatenate([fresh[:before], c_in, fresh[before:]])
        p.pads.append((node.name, ids, before, after, k))
    return _Ids(torch.from_numpy(ids).view(1, -1, *([1] * (len(shape) - 2))).expand(shape).contiguous())


def _reduce(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> _Ids:
    """mean/sum/amax over dims: fine over spatial dims; reducing across channels pins them."""
    x = args[0].t
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    dims = tuple(range(x.dim())) if dims is None else (dims if isinstance(dims, (list, tuple)) else (dims,))
    shape = node.meta["shape"]
    lo, hi = x, x
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        lo, hi = lo.amin(d, keepdim=True), hi.amax(d, keepdim=True)
    if not torch.equal(lo, hi):
        return p.opaque(node, [x], f"{_name(node)} reduces across channels")
    return _Ids(lo.reshape(shape))


def _value(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Shape queries (x.size(), x.dim(), x.shape): the value recorded by the shape pass."""
    return node.meta.get("value")


def _unsupported_channels(p: _Pass, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    return p.opaque(node, _tensors((args, kwargs)), f"{_name(node)} mixes channels")


_SAME_FUNCS: tuple[Any, ...] = (
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.softplus, F.dropout, F.dropout2d, F.alpha_dropout, torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
    torch.clone, torch.neg, torch.abs, torch.exp, F.sigmoid, F.tanh, operator.neg,
)
_SAME_METHODS = (".relu", ".relu_", ".sigmoid", ".sigmoid_", ".tanh", ".clamp", ".clamp_", ".clone", ".contiguous",
                 ".float", ".to", ".type_as", ".detach", ".abs", ".exp", ".neg", ".clamp_min", ".clamp_max")
_SUMS = frozenset({"add", "iadd", "add_", "sub", "isub", "sub_"})  # names of the ops that join residual streams
_ELEMENTWISE = (operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
                operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub, torch.div, torch.maximum,
                torch.minimum, torch.where)

FUNCTION_RULES: dict[Any, Callable[..., Any]] = {
    **{f: _same for f in _SAME_FUNCS}, **{m: _same for m in _SAME_METHODS},
    **{f: _elementwise for f in _ELEMENTWISE},
    **{m: _elementwise for m in (".add", ".add_", ".mul", ".mul_", ".sub", ".sub_", ".div", ".div_")},
    **{f: _layout for f in (torch.flatten, torch.transpose, torch.permute, torch.cat, torch.concat, torch.stack,
                            torch.squeeze, torch.unsqueeze, torch.movedim)},
    **{m: _layout for m in (".flatten", ".transpose", ".permute", ".squeeze", ".unsqueeze", ".expand", ".movedim",
                            ".expand_as")},
    **{f: _per_channel for f in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d,
                                 F.adaptive_avg_pool1d, F.avg_pool1d, F.max_pool1d, F.interpolate)},
    torch.reshape: _reshape, ".view": _reshape, ".reshape": _reshape,
    torch.chunk: _chunk, ".chunk": _chunk,
    torch.split: _split, ".split": _split,
    operator.getitem: _getitem,
    F.pad: _pad,
    torch.mean: _reduce, ".mean": _reduce, torch.sum: _reduce, ".sum": _reduce, torch.amax: _reduce,
    ".amax": _reduce,
    F.softmax: _unsupported_channels,
    ".size": _value, ".dim": _value, ".numel": _value, getattr: _value,
}


def _register_torchvision_ops() -> None:
    """torchvision wraps a few ops as single fx nodes; teach the rules about them once torchvision is loaded."""
    if "torchvision" not in sys.modules:
        return
    from torchvision.ops import stochastic_depth

    FUNCTION_RULES.setdefault(stochastic_depth, _same)  # identity in eval mode; element-wise in training


def analyze(graph: Graph) -> Analysis:
    """Channel units, groups and per-layer slicing data of a traced graph (cached on the graph)."""
    _register_torchvision_ops()
    cached = getattr(graph, "_analysis", None)
    if cached is None:
        with torch.no_grad():
            cached = _Pass(graph).run()
        graph._analysis = cached  # type: ignore[attr-defined]
    return cached


def channel_groups(graph: Graph) -> list[ChannelGroup]:
    """The channel groups of a traced graph: one pruning ratio is chosen per group."""
    return analyze(graph).groups
