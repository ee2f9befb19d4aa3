"""The computational graph of a network (paper §3.1): nodes are feature maps, directed edges are operations.

Built once from a traced `Graph`; pruning never changes its structure, only its edge features, so the
features are recomputed from a keep mask (`edge_features`) instead of re-tracing the pruned model. Every
edge maps back to the fx node it came from and, for convs and linears, to the channel groups it produces.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .groups import analyze
from .trace import Graph

# Level-0 vocabulary: the primitive operations (edge types).
OPS: tuple[str, ...] = (
    "conv1x1", "conv3x3", "conv5x5", "conv7x7", "dwconv3x3", "dwconv5x5", "gconv", "linear", "bn", "relu", "relu6",
    "sigmoid", "hardswish", "silu", "gelu", "act_other", "add", "mul", "concat", "maxpool", "avgpool", "global_pool",
    "pad", "reshape", "norm_other", "other",
)
OP_INDEX = {op: i for i, op in enumerate(OPS)}
# one-hot op, then: kernel, stride, log-groups, in channels, out channels, kept fraction, MACs, prunable
NUM_EDGE_FEATURES = len(OPS) + 8

_ACTS: dict[type[nn.Module] | object, str] = {
    nn.ReLU: "relu", F.relu: "relu", torch.relu: "relu", "relu": "relu", "relu_": "relu",
    nn.ReLU6: "relu6", F.relu6: "relu6", nn.Sigmoid: "sigmoid", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    "sigmoid": "sigmoid", nn.Hardswish: "hardswish", F.hardswish: "hardswish", nn.SiLU: "silu", F.silu: "silu",
    nn.GELU: "gelu", F.gelu: "gelu", nn.Hardsigmoid: "act_other", F.hardsigmoid: "act_other", nn.Tanh: "act_other",
    nn.LeakyReLU: "act_other", nn.ELU: "act_other", nn.Mish: "act_other", F.hardtanh: "act_other",
}
_FUNCS: dict[object, str] = {
    operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add", "add_": "add",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", "mul": "mul", "mul_": "mul",
    torch.cat: "concat", torch.concat: "concat", torch.stack: "concat",
    F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool", F.adaptive_avg_pool2d: "global_pool",
    F.adaptive_max_pool2d: "global_pool", torch.mean: "global_pool", "mean": "global_pool", F.pad: "pad",
    torch.flatten: "reshape", "flatten": "reshape", "view": "reshape", "reshape": "reshape", torch.reshape: "reshape",
    "transpose": "reshape", torch.transpose: "reshape", "permute": "reshape", torch.permute: "reshape",
    "contiguous": "reshape", "chunk": "reshape", torch.chunk: "reshape", "split": "reshape", torch.split: "reshape",
    operator.getitem: "reshape", F.layer_norm: "norm_other", "squeeze": "reshape", "unsqueeze": "reshape",
    F.dropout: "other",
}


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
    graph: Graph
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
        b = len(OPS)
        feats = self._static.copy()
        cin = np.array([_count(u, keep) for u in self._in_units], dtype=np.float64)
        cout = np.array([_count(u, keep) for u in self._out_units], dtype=np.float64)
        scale = max(1.0, float(self._orig_out.max()))
        frac_in = np.where(self._orig_in > 0, cin / np.maximum(self._orig_in, 1), 1.0)
        frac_out = np.where(self._orig_out > 0, cout / np.maximum(self._orig_out, 1), 1.0)
        feats[:, b + 3] = cin / scale
        feats[:, b + 4] = cout / scale
        feats[:, b + 5] = frac_out
        # MACs scale with the kept fractions of input and output channels (depthwise: output only)
        feats[:, b + 6] *= np.where(self._depthwise, frac_out, frac_in * frac_out)
        return torch.from_numpy(feats.astype(np.float32))


def _count(units: np.ndarray | None, keep: np.ndarray) -> int:
    if units is None:
        return 0
    return int(((units < 0) | keep[np.maximum(units, 0)]).sum())


def _op_of(graph: Graph, node: fx.Node) -> tuple[str, int, int, int]:
    """(op type, kernel, stride, groups) of an fx node."""
    if node.op == "call_module":
        m = graph.submodule(node)
        if isinstance(m, nn.modules.conv._ConvNd):
            k, s, g = m.kernel_size[0], m.stride[0], m.groups
            if g > 1 and g == m.in_channels:
                return ("dwconv3x3" if k <= 3 else "dwconv5x5"), k, s, g
            if g > 1:
                return "gconv", k, s, g
            return {1: "conv1x1", 3: "conv3x3", 5: "conv5x5"}.get(k, "conv7x7"), k, s, g
        if isinstance(m, nn.Linear):
            return "linear", 1, 1, 1
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return "bn", 1, 1, 1
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)):
            return "norm_other", 1, 1, 1
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            return "maxpool", _first(m.kernel_size), _first(m.stride), 1
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            return "avgpool", _first(m.kernel_size), _first(m.stride), 1
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d)):
            return "global_pool", 1, 1, 1
        if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
            return "reshape" if isinstance(m, nn.Flatten) else "other", 1, 1, 1
        return _ACTS.get(type(m), "other"), 1, 1, 1
    key: object = node.target if node.op == "call_function" else str(node.target)
    if key in _ACTS:
        return _ACTS[key], 1, 1, 1
    if key in (F.max_pool2d, F.avg_pool2d):
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size", 1)
        s = node.args[2] if len(node.args) > 2 else node.kwargs.get("stride", k)
        return _FUNCS[key], _first(k), _first(s or k), 1
    return _FUNCS.get(key, "other"), 1, 1, 1


def _first(v: object) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)  # type: ignore[arg-type, call-overload]


def build(graph: Graph) -> CompGraph:
    """The computational graph of a traced network (cached on the graph)."""
    cached = getattr(graph, "_comp_graph", None)
    if cached is not None:
        return cached
    a = analyze(graph)
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

    module_of = {m.node: i for i, m in enumerate(a.modules) if m.kind in ("conv", "linear")}
    macs = {n.name: float(n.meta.get("macs", 0)) for n in fx_nodes}
    total_macs = max(1.0, max(macs.values(), default=1.0))
    in_units, out_units, static, orig_in, orig_out, groups = [], [], [], [], [], []
    for e in edges:
        src, dst = names[e.src], names[e.dst]
        iu, ou = a.node_units.get(src), a.node_units.get(dst)
        in_units.append(iu)
        out_units.append(ou)
        f = np.zeros(NUM_EDGE_FEATURES)
        f[OP_INDEX[e.op]] = 1.0
        base = len(OPS)
        f[base] = e.kernel / 7.0
        f[base + 1] = e.stride / 2.0
        f[base + 2] = math.log2(e.groups + 1) / 10.0
        f[base + 6] = macs.get(e.node, 0.0) / total_macs  # scaled by the kept fractions in edge_features
        mi = module_of.get(e.node, -1)
        produced: tuple[int, ...] = ()
        if mi >= 0:
            units = a.modules[mi].out_units
            produced = tuple(sorted({int(a.unit_group[u]) for u in units[units >= 0]}))
            f[base + 7] = float(any(a.groups[g].prunable for g in produced))
        static.append(f)
        orig_in.append(len(iu) if iu is not None else 0)
        orig_out.append(len(ou) if ou is not None else 0)
        groups.append(produced)
    comp = CompGraph(names, edges, graph, in_units, out_units, np.array(static).reshape(-1, NUM_EDGE_FEATURES),
                     np.array(orig_in, dtype=np.float64), np.array(orig_out, dtype=np.float64), groups)
    graph._comp_graph = comp  # type: ignore[attr-defined]
    return comp
