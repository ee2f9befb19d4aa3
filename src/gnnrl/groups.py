"""Which channels must be removed together: found by propagating channel ids through the traced graph.

Every channel a layer creates (a conv's or linear's outputs, the zeros a channel-pad inserts, the network
input) gets a fresh integer id. We then push *id maps* — int64 tensors shaped like the real activations
(batch 1), holding each element's channel id — through the graph, each node by the channel rule of its entry
in the op registry (`gnnrl.ops`): layout ops (view, transpose, flatten, cat, chunk, getitem, pad…) are simply
run on the id maps, so concat offsets, channel shuffles and flatten → linear column blocks come out of the ops
themselves, not out of per-model rules. Where two channels must be removed together, their ids are unioned:

  * element-wise ops between tensors (residual add, SE-style mul) union the ids they combine;
  * a depthwise conv ties input channel i to its outputs; a grouped conv asks that each of its groups keep
    equally many channels (a *balance* constraint: `Balance`), and only where that cannot be met ties position
    k of every group, as one union;
  * a reshape/chunk that splits a channel dimension into a constant number of pieces ties the pieces'
    equal positions (this is what keeps a channel shuffle consistent). Where that tie would break a grouped
    conv's balance (ShuffleNet-v1), the shuffle is instead a reordering (`Permutation`): the pruned network
    gathers the kept channels in shuffled order, and the grouped convs on both sides stay balanced (`Balance`).

A *unit* is one union-find class: the atom of pruning. A *group* is a set of units connected through the
layers that create them; one ratio is chosen per group. Units touching the network input or output, or an
op the registry does not know, are pinned (kept), with a one-line reason — never a silent wrong shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .algorithms import UnionFind, min_cost_assignment
from .ops import Call, Op, load_optional, node_op
from .ops.idmap import NO_CHANNEL, Ids, broadcast, flat, tensors, vector
from .ops.registry import overrides_forward, prunes_like_its_base, registered_base
from .trace import TracedModel


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
    """Per-position unit labels of one call of a layer that is cut (conv, linear, norm…): what to slice."""

    node: str
    target: str
    kind: str  # the op entry's name: "conv", "linear", "bn", …
    in_units: np.ndarray
    out_units: np.ndarray
    out_ids: np.ndarray
    op: Op = field(repr=False, compare=False)
    in_shape: tuple[int, ...] = ()  # input and output shapes for one sample, as traced
    out_shape: tuple[int, ...] = ()
    creates: bool = True  # its outputs are new channels (conv, linear), not its inputs passed on (norms)
    module: nn.Module | None = field(default=None, repr=False, compare=False)  # the traced (unpruned) layer


@dataclass
class PadChannels:
    """A constant pad on the channel dimension: unit of every output channel, and the pad's channel slots."""

    node: str
    units: np.ndarray
    left: int
    right: int
    arg_index: int  # index in the pad tuple of the channel dimension's "before" entry


@dataclass
class Balance:
    """A group whose units must leave every block equally full (the groups of the grouped convs that read or
    write it: each conv group keeps as many channels as the others). A removal step takes one unit per block.

    With `cross`, a second partition must stay balanced too: ShuffleNet-v1's middle channels are split into
    blocks one way by the grouped conv that writes them and, through the channel shuffle, another way by the
    grouped conv that reads them. A step then removes one unit of every block of both, i.e. a perfect matching
    of the bipartite multigraph (write block × read block, one edge per unit); that multigraph is regular, so
    one always exists, and it stays regular after each step (König)."""

    units: np.ndarray  # the group's free units
    block: np.ndarray  # the block of each unit
    num_blocks: int
    cross: np.ndarray | None = None  # the block of each unit in the second partition (same number of blocks)

    def steps(self, scores: np.ndarray) -> np.ndarray:
        """(steps × blocks) units: row t holds the t-th least important unit of every block; with `cross`, the
        matching of least total importance among the units left (one unit per block of both partitions)."""
        if self.cross is not None:
            return self._matched_steps(scores)
        per_block = np.stack([self.units[self.block == b] for b in range(self.num_blocks)])
        ranked = np.take_along_axis(per_block, np.argsort(scores[per_block], axis=1, kind="stable"), axis=1)
        return np.ascontiguousarray(ranked.T)

    def _matched_steps(self, scores: np.ndarray) -> np.ndarray:
        assert self.cross is not None
        n = self.num_blocks
        ranked = np.argsort(scores[self.units], kind="stable")  # positions in `units`, least important first
        cell = self.block[ranked] * n + self.cross[ranked]
        alive = np.ones(len(ranked), dtype=bool)
        rows = []
        for _ in range(len(self.units) // n):
            cells, first = np.unique(cell[alive], return_index=True)  # the cheapest unit left in every cell
            where = np.flatnonzero(alive)[first]
            cost = np.full((n, n), np.inf)
            cost[cells // n, cells % n] = scores[self.units[ranked[where]]]
            pick = dict(zip(cells.tolist(), where.tolist(), strict=True))
            chosen = [pick[b * n + c] for b, c in enumerate(min_cost_assignment(cost))]
            alive[chosen] = False
            rows.append(self.units[ranked[chosen]])
        return np.array(rows, dtype=np.int64).reshape(-1, n)


@dataclass
class Permutation:
    """A fixed reordering of channels (a channel shuffle: view → transpose → reshape, or a gather by a list):
    `final` holds the channels of `source` in another order. Once channels go, the pruned network gathers the
    kept ones in the order `final` had them, since the shuffle's own arithmetic would interleave the wrong
    channels unless every group kept the same positions."""

    source: str  # the fx node whose channels are reordered
    final: str  # the fx node holding them in the new order
    nodes: tuple[str, ...]  # the nodes from source (excluded) to final (included), replaced by one gather


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
    balance: dict[int, Balance] = field(default_factory=dict)
    """group id -> its balance constraints, for groups read or written by grouped convs"""
    permutations: list[Permutation] = field(default_factory=list)
    num_units: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_units = len(self.unit_group)


class ChannelPass:
    """One walk over the graph computing id maps, unions and pins: the API a channel rule (`gnnrl.ops`) uses."""

    def __init__(self, graph: TracedModel, tied: frozenset[str] = frozenset(), untie_shuffles: bool = False) -> None:
        self.graph = graph
        self.tied = tied  # layer sides ('conv:in') whose balance could not be met: tie their groups' positions
        self.untie_shuffles = untie_shuffles  # channel shuffles are reorderings (`Permutation`), not ties
        self.shuffles = 0  # channel shuffles seen
        self.balanced: list[tuple[str, np.ndarray]] = []  # (layer, blocks of channel ids that keep equal counts)
        self.ids = UnionFind()
        self.id_source: list[int] = []
        self.sources: list[str] = []
        self.pin_reason: dict[int, str] = {}
        self.modules: list[ModuleChannels] = []
        self.pads: list[tuple[str, np.ndarray, int, int, int]] = []
        self.calls: dict[str, int] = {}
        self.node_ids: dict[str, np.ndarray] = {}
        self.summed: list[np.ndarray] = []  # ids joined by an element-wise add/sub of two channel maps
        self.permutations: list[Permutation] = []

    # ---- what rules call -------------------------------------------------------------------------------
    def new_ids(self, n: int, source: str) -> np.ndarray:
        """`n` fresh channel ids, created by layer `source`."""
        start = self.ids.add(n)
        self.sources.append(source)
        self.id_source.extend([len(self.sources) - 1] * n)
        return np.arange(start, start + n)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channels a[i] and b[i] must be removed together."""
        self.ids.join_pairs(a, b)

    def pin(self, ids: torch.Tensor | np.ndarray, reason: str) -> None:
        """These channels are kept; the first reason given is the one reported."""
        arr = ids.numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        for i in np.unique(arr[arr >= 0]):
            self.pin_reason.setdefault(int(i), reason)

    def fresh_map(self, shape: tuple[int, ...], source: str, dim: int = 1) -> tuple[Ids, np.ndarray]:
        """An id map of `shape` with new ids along `dim` (constant along the other dims), and the ids."""
        if len(shape) == 0:
            return Ids(torch.full((), NO_CHANNEL, dtype=torch.long)), np.empty(0, dtype=np.int64)
        ids = self.new_ids(shape[dim % len(shape)], source)
        return broadcast(ids, shape, dim), ids

    def opaque(self, where: Call | fx.Node, inputs: list[torch.Tensor], why: str) -> Any:
        """Pin every input channel; a same-shaped output keeps the input's (now pinned) ids, others get new ones."""
        node = where.node if isinstance(where, Call) else where
        for t in inputs:
            self.pin(t, why)
        shape = node.meta.get("shape")
        if shape is None:
            return node.meta.get("value")
        if inputs and tuple(inputs[0].shape) == tuple(shape):
            return Ids(inputs[0])
        t, ids = self.fresh_map(shape, f"opaque:{node.name}")
        self.pin(ids, why)
        return t

    def record(self, call: Call, in_ids: np.ndarray, out_ids: np.ndarray) -> None:
        """This call's layer is cut when its channels go: input / output channel ids per position."""
        node = call.node
        first = next((a for a in node.all_input_nodes if "shape" in a.meta), None)
        self.modules.append(ModuleChannels(node.name, str(node.target), call.op.name, in_ids, out_ids, out_ids,
                                           call.op, first.meta["shape"] if first is not None else (),
                                           node.meta["shape"], not np.array_equal(in_ids, out_ids), call.module))

    def balance(self, call: Call, blocks: np.ndarray, side: str) -> bool:
        """The rows of `blocks` (channel ids) must keep equally many channels each (a grouped conv's groups on
        its `side`, "in" or "out"). False when this side falls back to tying position k of every row (the caller
        then unions them)."""
        target = f"{call.node.target}:{side}"
        if target in self.tied:
            return False
        self.balanced.append((target, blocks))
        return True

    def add_pad(self, node: str, ids: np.ndarray, before: int, after: int, arg_index: int) -> None:
        """A channel pad at `node`: `ids` of its output channels, `before`/`after` of them new zeros."""
        self.pads.append((node, ids, before, after, arg_index))

    def permutes(self, source: fx.Node, nodes: list[fx.Node]) -> None:
        """`nodes[-1]` holds the channels of `source` in a fixed other order (`nodes`: the ops in between)."""
        self.permutations.append(Permutation(source.name, nodes[-1].name, tuple(n.name for n in nodes)))

    def mark_summed(self, maps: Iterable[torch.Tensor]) -> None:
        """These channel maps are added together: a residual stream."""
        self.summed.extend(np.unique(m.numpy()) for m in maps)

    # ---- the walk ------------------------------------------------------------------------------------
    def run(self) -> tuple[Analysis, set[str]]:
        """The analysis, and the layers whose balance constraints cannot be met (rerun with them tied)."""
        env: dict[fx.Node, Any] = {}
        for node in self.graph.module.graph.nodes:
            env[node] = self.visit(node, env)
            out = env[node]
            if isinstance(out, Ids) and out.t.dim() >= 2:
                ids = vector(out.t, 1)
                if ids is not None:
                    self.node_ids[node.name] = ids
        return self.finish()

    def visit(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        """The id maps (or plain value) of one node, by its op entry's channel rule."""
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            t, ids = self.fresh_map(node.meta["shape"], "input")
            self.pin(ids, "network input")
            return t
        if node.op == "get_attr":
            return _fetch_attr(self.graph.module, str(node.target))
        if node.op == "output":
            for t in tensors(args):
                self.pin(t, "network output")
            return None
        inputs = tensors((args, kwargs))
        if not inputs:  # sizes, other Python values, or tensors computed from constants (parameters, buffers)
            return _constant(node, args, kwargs)
        op, module = node_op(self.graph.module, node)
        if node.op == "call_module":
            self.calls[str(node.target)] = self.calls.get(str(node.target), 0) + 1
        if op is None:
            untraced = self.graph.untraced.get(str(node.target)) if module is not None else None
            what = (f"module {type(module).__name__}" if module is not None else
                    f"op {getattr(node.target, '__name__', str(node.target))}")
            return self.opaque(node, inputs, untraced or f"{what} is not understood" +
                               (" (kept whole)" if module is not None else ""))
        if module is not None and overrides_forward(type(module)):
            first = next((a for a in node.all_input_nodes if "shape" in a.meta), None)
            if first is None or not prunes_like_its_base(module, op, first.meta["shape"]):
                base = registered_base(type(module))
                return self.opaque(node, inputs, f"module {type(module).__name__} overrides "
                                   f"{base.__name__ if base else 'its base'}.forward and does not prune like it")
        return op.channels(self, Call(node, module, op, args, kwargs))

    def finish(self) -> tuple[Analysis, set[str]]:
        """Units, pins, groups and per-layer slicing data from the unions and records of the walk."""
        self.pin_repeated_calls()
        uniq, unit_of_id = np.unique(self.ids.roots(), return_inverse=True)
        num_units = len(uniq)
        pinned = np.zeros(num_units, dtype=bool)
        reasons: dict[int, str] = {}
        for i, why in self.pin_reason.items():
            u = int(unit_of_id[i])
            pinned[u] = True
            reasons.setdefault(u, why)
        unit_group = self.group_of_units(unit_of_id, num_units)
        modules = [replace(m, in_units=_units(m.in_units, unit_of_id), out_units=_units(m.out_units, unit_of_id))
                   for m in self.modules]
        pads = [PadChannels(n, _units(ids, unit_of_id), left, right, idx) for n, ids, left, right, idx in self.pads]
        balance, infeasible = self.balances(unit_of_id, unit_group, pinned)
        groups = self.make_groups(unit_of_id, unit_group, pinned, reasons, modules, balance)
        summed_ids = np.unique(np.concatenate(self.summed)) if self.summed else np.empty(0, dtype=np.int64)
        summed_groups = set(unit_group[unit_of_id[summed_ids[summed_ids >= 0]]].tolist())
        groups = [replace(g, summed=g.id in summed_groups) for g in groups]
        node_units = {n: _units(ids, unit_of_id) for n, ids in self.node_ids.items()}
        return Analysis(groups, unit_group, pinned, unit_of_id, modules, pads, node_units, balance,
                        self.permutations), infeasible

    def pin_repeated_calls(self) -> None:
        """A module called more than once would need the same slicing at every call: keep it whole."""
        for target, count in self.calls.items():
            if count > 1:
                for m in self.modules:
                    if m.target == target:
                        self.pin(m.in_units, f"module {target} is called {count} times")
                        self.pin(m.out_units, f"module {target} is called {count} times")

    def group_of_units(self, unit_of_id: np.ndarray, num_units: int) -> np.ndarray:
        """Each unit's group: units are grouped when connected through the layers (sources) that create them,
        numbered in the order the walk met them."""
        layers = UnionFind(len(self.sources))
        id_source = np.asarray(self.id_source, dtype=np.int64)
        first_src = np.full(num_units, -1, dtype=np.int64)
        for i in range(len(unit_of_id)):
            u, s = int(unit_of_id[i]), int(id_source[i])
            if first_src[u] < 0:
                first_src[u] = s
            else:
                layers.join(int(first_src[u]), s)
        comp = np.array([layers.find(int(first_src[u])) for u in range(num_units)], dtype=np.int64)
        order = {c: g for g, c in enumerate(dict.fromkeys(comp.tolist()))}
        return np.array([order[c] for c in comp.tolist()], dtype=np.int64)

    def make_groups(self, unit_of_id: np.ndarray, unit_group: np.ndarray, pinned: np.ndarray,
                    reasons: dict[int, str], modules: list[ModuleChannels], balance: dict[int, Balance]
                    ) -> list[ChannelGroup]:
        """One `ChannelGroup` per group: its members, consumers, MACs and whether (or why not) it is prunable."""
        id_source = np.asarray(self.id_source, dtype=np.int64)
        macs = {n.name: int(n.meta.get("macs", 0)) for n in self.graph.module.graph.nodes}
        # which groups each layer reads and writes, once (not one isin per group and layer)
        reads = [set(unit_group[m.in_units[m.in_units >= 0]].tolist()) for m in modules]
        writes = [set(unit_group[m.out_units[m.out_units >= 0]].tolist()) for m in modules]
        source_groups = np.zeros(len(self.sources), dtype=bool)
        groups = []
        for g in range(int(unit_group.max()) + 1 if len(unit_group) else 0):
            units = np.flatnonzero(unit_group == g)
            source_groups[:] = False
            source_groups[id_source[unit_group[unit_of_id] == g]] = True
            members = sorted({self.sources[s] for s in np.flatnonzero(source_groups)})
            touching = [m for m, r, w in zip(modules, reads, writes, strict=True) if g in r or g in w]
            consumers = tuple(dict.fromkeys(m.target for m, r in zip(modules, reads, strict=True) if g in r))
            free = int((~pinned[units]).sum())
            # removable steps: units, or for balanced groups one unit of every block at a time
            steps = len(balance[g].units) // balance[g].num_blocks if g in balance else free
            why = next((reasons[int(u)] for u in units if int(u) in reasons), "")
            if not why and steps < 2:
                why = ("a single channel" if len(members) == 1 and len(units) == 1 else
                       "each group of its grouped convs has one channel" if g in balance else
                       "all its channels are tied into one unit (e.g. grouped convs around a channel shuffle)")
            groups.append(ChannelGroup(
                id=g, size=len(units), prunable_size=free, members=tuple(members), consumers=consumers,
                macs=sum(macs.get(m.node, 0) for m in touching), prunable=steps >= 2,
                reason="" if steps >= 2 else why,
            ))
        return groups

    def balances(self, unit_of_id: np.ndarray, unit_group: np.ndarray, pinned: np.ndarray
                 ) -> tuple[dict[int, Balance], set[str]]:
        """Per group under balance constraints, its `Balance`; and the layers whose constraints cannot be met.

        Met when every constraint lies in one group, none of its units is pinned or in two of its blocks, every
        free unit of the group is covered, and the group's constraints split it into blocks of equal size in at
        most two ways with as many blocks each (two: grouped convs on either side of a channel shuffle, see
        `Balance`). Not met, for example, when a reshape ties position k of every piece of a split channel
        dimension into one unit, which then sits in every group of the conv before it (the fallback ties those).
        """
        by_group: dict[int, list[tuple[str, np.ndarray]]] = {}
        bad: set[str] = set()
        for target, blocks in self.balanced:
            units = unit_of_id[blocks]
            owners = np.unique(unit_group[units])
            if len(owners) != 1 or pinned[units].any():
                bad.add(target)
                continue
            by_group.setdefault(int(owners[0]), []).append((target, units))
        out: dict[int, Balance] = {}
        for g, constraints in by_group.items():
            free = np.flatnonzero((unit_group == g) & ~pinned)
            partitions: list[np.ndarray] = []
            for _, units in constraints:
                block_of = np.full(len(unit_group), -1, dtype=np.int64)
                for b, row in enumerate(units):
                    u = np.unique(row)
                    block_of[u] = np.where(block_of[u] == -1, b, -2)  # -2: in two blocks
                if not any(np.array_equal(block_of[free], q) for q in partitions):
                    partitions.append(block_of[free])
            counts = [np.bincount(q[q >= 0]) for q in partitions] if len(free) else []
            if (len(free) and len(partitions) <= 2 and all((q >= 0).all() for q in partitions)
                    and all(len(c) == len(counts[0]) and (c == counts[0][0]).all() for c in counts)):
                out[g] = Balance(free, partitions[0], len(counts[0]), partitions[1] if len(partitions) > 1 else None)
            else:
                bad.update(target for target, _ in constraints)
        return out, bad


def _constant(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """The value of a node none of whose inputs carry channels: recorded by the shape pass, or recomputed.

    Ops on parameters and buffers (`self.scale.view(1, -1, 1, 1)`, `self.cls_token.expand(n, -1, -1)`) are run
    on the real tensors, so a per-channel constant still reaches the element-wise rule that pins it.
    """
    if "value" in node.meta or "shape" not in node.meta:
        return node.meta.get("value")
    if any(isinstance(a, torch.Tensor) for a in flat((args, list(kwargs.values())))):
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


def analyze(graph: TracedModel) -> Analysis:
    """Channel units, groups and per-layer slicing data of a traced graph (cached on the graph)."""
    if graph.cache.analysis is None:
        load_optional()
        tied: frozenset[str] = frozenset()
        untie = False
        with torch.no_grad():
            while True:
                walk = ChannelPass(graph, tied, untie)
                analysis, bad = walk.run()
                if not bad:
                    break
                if walk.shuffles and not untie:  # first retry: shuffles as reorderings (grouped convs around them)
                    untie = True
                    continue
                tied |= bad  # then: tie the layers whose balance constraints could not be met
        graph.cache.analysis = analysis
    return graph.cache.analysis


def channel_groups(graph: TracedModel) -> list[ChannelGroup]:
    """The channel groups of a traced graph: one pruning ratio is chosen per group."""
    return analyze(graph).groups
