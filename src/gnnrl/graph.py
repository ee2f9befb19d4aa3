"""The computational graph of a network (paper §3.1): nodes are feature maps, directed edges are operations.

Built once from a traced `TracedModel`; pruning never changes its structure, only its edge features, so the
features are recomputed from a keep mask (`edge_features`) instead of re-tracing the pruned model. Every
edge maps back to the fx node it came from and, for convs and linears, to the channel groups it produces.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx

from .groups import analyze
from .ops import Label, node_op
from .trace import TracedModel

# Level-0 vocabulary: the primitive operations (edge types).
OPS: tuple[str, ...] = (
    "conv1x1", "conv3x3", "conv5x5", "conv7x7", "dwconv3x3", "dwconv5x5", "gconv", "linear", "bn", "relu", "relu6",
    "sigmoid", "hardswish", "silu", "gelu", "act_other", "add", "mul", "concat", "maxpool", "avgpool", "global_pool",
    "pad", "reshape", "norm_other", "other",
)
OP_INDEX = {op: i for i, op in enumerate(OPS)}
# After the one-hot op type, these named columns (the m-GNN's input features of an edge):
COLUMNS: tuple[str, ...] = ("kernel", "stride", "log_groups", "in_channels", "out_channels", "kept_fraction", "macs",
                            "prunable")
COL = {name: len(OPS) + i for i, name in enumerate(COLUMNS)}
NUM_EDGE_FEATURES = len(OPS) + len(COLUMNS)


@dataclass(frozen=True)
class Edge:
    """One operation: from feature map `src` to `dst`, of type `op`, made by fx node `node`."""

    src: int
    dst: int
    op: str
    node: str
    kernel: int = 1
    stride: int = 1
    groups: int = 1

    @property
    def structure(self) -> str:
        """What identifies the operation regardless of channel counts (motifs are hashed on this)."""
        shaped = self.op in _PARAMETRIC or self.op.endswith("pool")
        return f"{self.op}/k{self.kernel}s{self.stride}" if shaped else self.op


_PARAMETRIC = {"conv1x1", "conv3x3", "conv5x5", "conv7x7", "dwconv3x3", "dwconv5x5", "gconv", "linear"}


@dataclass
class CompGraph:
    """Feature maps (nodes, named by their fx node) and operations (edges) of a traced network."""

    nodes: list[str]
    edges: list[Edge]
    graph: TracedModel
    # per edge: units of the input / output feature map's channels (for current channel counts)
    _in_units: list[np.ndarray | None]
    _out_units: list[np.ndarray | None]
    _static: np.ndarray  # (E, NUM_EDGE_FEATURES) features that never change, original MACs included
    _orig_in: np.ndarray  # (E,) original input channels
    _orig_out: np.ndarray  # (E,) original output channels
    edge_groups: list[tuple[int, ...]]  # per edge: channel groups whose channels the edge produces
    _depthwise: np.ndarray = field(init=False)  # per edge: MACs scale with output channels only

    def __post_init__(self) -> None:
        self._depthwise = np.array([e.op.startswith("dwconv") for e in self.edges], dtype=bool)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def edge_features(self, keep: np.ndarray | None = None) -> torch.Tensor:
        """Edge features (E × NUM_EDGE_FEATURES) for the network pruned to `keep` (per unit; None = unpruned)."""
        if keep is None:
            keep = np.ones(analyze(self.graph).num_units, dtype=bool)
        feats = self._static.copy()
        cin = np.array([_count(u, keep) for u in self._in_units], dtype=np.float64)
        cout = np.array([_count(u, keep) for u in self._out_units], dtype=np.float64)
        scale = max(1.0, float(self._orig_out.max()))
        frac_in = np.where(self._orig_in > 0, cin / np.maximum(self._orig_in, 1), 1.0)
        frac_out = np.where(self._orig_out > 0, cout / np.maximum(self._orig_out, 1), 1.0)
        feats[:, COL["in_channels"]] = cin / scale
        feats[:, COL["out_channels"]] = cout / scale
        feats[:, COL["kept_fraction"]] = frac_out
        # MACs scale with the kept fractions of input and output channels (depthwise: output only)
        feats[:, COL["macs"]] *= np.where(self._depthwise, frac_out, frac_in * frac_out)
        return torch.from_numpy(feats.astype(np.float32))


def _count(units: np.ndarray | None, keep: np.ndarray) -> int:
    if units is None:
        return 0
    return int(((units < 0) | keep[np.maximum(units, 0)]).sum())


def _op_of(graph: TracedModel, node: fx.Node) -> Label:
    """(op type, kernel, stride, groups) of an fx node, from its op registry entry ('other' if it has none)."""
    op, module = node_op(graph.module, node)
    return op.label_of(module, node) if op is not None else ("other", 1, 1, 1)


def build(graph: TracedModel) -> CompGraph:
    """The computational graph of a traced network (cached on the graph)."""
    if graph.cache.comp_graph is not None:
        return graph.cache.comp_graph
    names, edges = _edges(graph)
    a = analyze(graph)
    module_of = {m.node: i for i, m in enumerate(a.modules) if m.creates}
    macs = {n.name: float(n.meta.get("macs", 0)) for n in graph.module.graph.nodes}
    total_macs = max(1.0, max(macs.values(), default=1.0))
    in_units, out_units, static, orig_in, orig_out, groups = [], [], [], [], [], []
    for e in edges:
        src, dst = names[e.src], names[e.dst]
        iu, ou = a.node_units.get(src), a.node_units.get(dst)
        in_units.append(iu)
        out_units.append(ou)
        f = np.zeros(NUM_EDGE_FEATURES)
        f[OP_INDEX[e.op]] = 1.0
        f[COL["kernel"]] = e.kernel / 7.0
        f[COL["stride"]] = e.stride / 2.0
        f[COL["log_groups"]] = math.log2(e.groups + 1) / 10.0
        f[COL["macs"]] = macs.get(e.node, 0.0) / total_macs  # scaled by the kept fractions in edge_features
        mi = module_of.get(e.node, -1)
        produced: tuple[int, ...] = ()
        if mi >= 0:
            units = a.modules[mi].out_units
            produced = tuple(sorted({int(a.unit_group[u]) for u in units[units >= 0]}))
            f[COL["prunable"]] = float(any(a.groups[g].prunable for g in produced))
        static.append(f)
        orig_in.append(len(iu) if iu is not None else 0)
        orig_out.append(len(ou) if ou is not None else 0)
        groups.append(produced)
    comp = CompGraph(names, edges, graph, in_units, out_units, np.array(static).reshape(-1, NUM_EDGE_FEATURES),
                     np.array(orig_in, dtype=np.float64), np.array(orig_out, dtype=np.float64), groups)
    graph.cache.comp_graph = comp
    return comp


def _edges(graph: TracedModel) -> tuple[list[str], list[Edge]]:
    """The feature maps (nodes, by name) and the operations between them (edges) of a traced network."""
    fx_nodes = list(graph.module.graph.nodes)
    is_map = {n: ("shape" in n.meta and n.op not in ("get_attr", "output")) for n in fx_nodes}
    index: dict[fx.Node, int] = {}
    names: list[str] = []
    edges: list[Edge] = []

    def tensor_inputs(n: fx.Node) -> list[fx.Node]:
        """Feature maps feeding `n`, looking through tuple-valued nodes (chunk/split results)."""
        out: list[fx.Node] = []
        for arg in n.all_input_nodes:
            if arg in index:
                out.append(arg)
            elif arg.op != "get_attr" and "shape" not in arg.meta and "value" not in arg.meta:
                out.extend(tensor_inputs(arg))
        return out

    for n in fx_nodes:
        if not is_map[n]:
            continue
        index[n] = len(names)
        names.append(n.name)
        if n.op == "placeholder":
            continue
        op, k, s, g = _op_of(graph, n)
        # getitem on a chunk/split result: the operation is the split itself
        src_node = n.args[0] if n.target is operator.getitem and isinstance(n.args[0], fx.Node) else None
        if src_node is not None and src_node not in index:
            op = _op_of(graph, src_node)[0]
        for src in tensor_inputs(n):
            edges.append(Edge(index[src], index[n], op, n.name, k, s, g))
    return names, edges
