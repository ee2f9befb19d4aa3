"""Hierarchical computational graph (paper §3.1): repeated motifs found automatically, no per-model code.

Level 0 is the computational graph (`graph.CompGraph`). To build level 1 we cut it at its *cut vertices* —
feature maps that every input → output path passes through (they dominate the output and post-dominate
the input). Between two consecutive cut vertices lies a single-entry/single-exit segment: one primitive
edge, or a region such as a residual block or a ShuffleNet unit. Segments are then chained: a new chain
starts at each segment holding a conv or linear, and parameter-free segments (BN, activation, pooling,
shuffle) join the chain before them — which yields conv-BN-ReLU stacks in VGG and MobileNet, whole residual
blocks in ResNet, and whole units in ShuffleNet from one rule. Each chain is an instance of a motif; motifs
are identified by a canonical Weisfeiler-Lehman hash of their structure (operation types, kernels and
strides; not channel counts, which change while pruning and live in the features instead).

The top level (level 2) has one edge per chain, between the chain's boundary feature maps. With
``levels=3`` the regions inside chains become motifs of their own one level below.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass, field

from .graph import _PARAMETRIC, CompGraph, build
from .trace import TracedModel


@dataclass
class SubGraph:
    """One graph of a level: its nodes (feature-map ids, in canonical order) and edges.

    `children[k]` says what edge k is: ("edge", i) a level-0 edge of the computational graph, or
    ("graph", j) the j-th graph of the level below.
    """

    motif: str
    nodes: list[int]
    edges: list[tuple[int, int]]  # (local src, local dst) indices into `nodes`
    children: list[tuple[str, int]]


@dataclass
class Hierarchy:
    """Levels of graphs: `levels[0]` are the motif instances, `levels[-1]` holds the single top graph."""

    comp: CompGraph
    levels: list[list[SubGraph]]
    motif_names: dict[str, str] = field(default_factory=dict)

    def motif_counts(self, level: int = 0) -> Counter[str]:
        """How many instances each motif type has at a level (0 = the lowest motif level)."""
        return Counter(g.motif for g in self.levels[level])

    @property
    def top(self) -> SubGraph:
        return self.levels[-1][0]


def _topo(n: int, edges: list[tuple[int, int]]) -> list[int]:
    indeg = [0] * n
    out: list[list[int]] = [[] for _ in range(n)]
    for s, d in edges:
        indeg[d] += 1
        out[s].append(d)
    ready = [v for v in range(n) if indeg[v] == 0]
    order = []
    while ready:
        v = ready.pop(0)
        order.append(v)
        for d in out[v]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    return order


def _cut_vertices(order: list[int], edges: list[tuple[int, int]], nodes: set[int]) -> list[int]:
    """Nodes (in topological order) that no edge jumps over: every source → sink path goes through them."""
    pos = {v: i for i, v in enumerate(order)}
    reach = [0] * (len(order) + 1)
    for s, d in edges:
        if s in nodes and d in nodes:
            reach[pos[s]] = max(reach[pos[s]], pos[d])
    cuts, furthest = [], -1
    for i, v in enumerate(order):
        if furthest <= i:
            cuts.append(v)
        furthest = max(furthest, reach[i])
    return cuts


def _wl_hash(n: int, edges: list[tuple[int, int, str]], rounds: int = 4) -> tuple[str, list[int]]:
    """Canonical hash of a small typed DAG, and a canonical node order (by final label, then topology)."""
    order = _topo(n, [(s, d) for s, d, _ in edges])
    labels = ["src" if i == order[0] else ("sink" if i == order[-1] else "in") for i in range(n)]
    for _ in range(rounds):
        new = []
        for v in range(n):
            ins = sorted(f"{t}<{labels[s]}" for s, d, t in edges if d == v)
            outs = sorted(f"{t}>{labels[d]}" for s, d, t in edges if s == v)
            new.append(hashlib.sha1(f"{labels[v]}|{ins}|{outs}".encode()).hexdigest()[:16])
        labels = new
    pos = {v: i for i, v in enumerate(order)}
    canon = sorted(range(n), key=lambda v: (labels[v], pos[v]))
    key = hashlib.sha1("|".join(sorted(labels)).encode()).hexdigest()[:12]
    return key, canon


def _segments(comp: CompGraph, nodes: list[int], edge_ids: list[int]) -> list[tuple[int, int, list[int]]]:
    """Split a single-entry/single-exit piece into (start, end, edge ids) segments between its cut vertices."""
    local = [(comp.edges[e].src, comp.edges[e].dst) for e in edge_ids]
    idx = {v: i for i, v in enumerate(nodes)}
    order = [nodes[i] for i in _topo(len(nodes), [(idx[s], idx[d]) for s, d in local])]
    cuts = _cut_vertices(order, local, set(nodes))
    pos = {v: i for i, v in enumerate(order)}
    segs = []
    for a, b in itertools.pairwise(cuts):
        inside = [e for e in edge_ids if pos[a] <= pos[comp.edges[e].src] and pos[comp.edges[e].dst] <= pos[b]]
        segs.append((a, b, inside))
    return segs


def build_hierarchy(graph: TracedModel, levels: int = 2) -> Hierarchy:
    """The hierarchical computational graph of a traced network (cached per number of levels)."""
    if levels not in (2, 3):
        raise ValueError(f"levels must be 2 or 3, not {levels}")
    cache = graph.cache.hierarchies
    if levels in cache:
        return cache[levels]
    comp = build(graph)
    live = _live_nodes(comp)
    edge_ids = [i for i, e in enumerate(comp.edges) if e.src in live and e.dst in live]
    segs = _segments(comp, sorted(live), edge_ids)

    def parametric(ids: list[int]) -> bool:
        return any(comp.edges[e].op in _PARAMETRIC for e in ids)

    chains: list[list[tuple[int, int, list[int]]]] = []
    for seg in segs:
        if not chains or (parametric(seg[2]) and parametric([e for s in chains[-1] for e in s[2]])):
            chains.append([seg])
        else:
            chains[-1].append(seg)

    names: dict[str, str] = {}
    lower: list[SubGraph] = []  # level-1 motif instances (or level-2 with levels=3)
    below: list[SubGraph] = []  # the region motifs inside chains, when levels=3
    top_nodes: list[int] = []
    top_edges: list[tuple[int, int]] = []
    for chain in chains:
        start, end = chain[0][0], chain[-1][1]
        if levels == 3:
            parts: list[tuple[int, int, tuple[str, int]]] = []
            for a, b, ids in chain:
                if len(ids) == 1:
                    parts.append((a, b, ("edge", ids[0])))
                else:
                    below.append(_subgraph(comp, ids, names))
                    parts.append((a, b, ("graph", len(below) - 1)))
            lower.append(_from_parts(parts, names, comp, below))
        else:
            lower.append(_subgraph(comp, [e for _, _, ids in chain for e in ids], names))
        for v in (start, end):
            if v not in top_nodes:
                top_nodes.append(v)
        top_edges.append((top_nodes.index(start), top_nodes.index(end)))
    top = SubGraph("network", top_nodes, top_edges, [("graph", i) for i in range(len(lower))])
    result = Hierarchy(comp, ([below] if levels == 3 else []) + [lower, [top]], names)
    cache[levels] = result
    return result


def _live_nodes(comp: CompGraph) -> set[int]:
    """Feature maps on some input → output path (drops dangling side computations)."""
    n = len(comp.nodes)
    fwd = [[] for _ in range(n)]  # type: list[list[int]]
    bwd = [[] for _ in range(n)]  # type: list[list[int]]
    for e in comp.edges:
        fwd[e.src].append(e.dst)
        bwd[e.dst].append(e.src)
    sources = [v for v in range(n) if not bwd[v]]
    sinks = [v for v in range(n) if not fwd[v]]
    sink = max(sinks)  # the network output is produced last

    def reach(starts: list[int], adj: list[list[int]]) -> set[int]:
        seen, stack = set(starts), list(starts)
        while stack:
            for w in adj[stack.pop()]:
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        return seen

    return reach(sources[:1], fwd) & reach([sink], bwd)


def _subgraph(comp: CompGraph, edge_ids: list[int], names: dict[str, str]) -> SubGraph:
    """A motif instance made of level-0 edges, with canonical node order and its motif key."""
    verts = sorted({v for e in edge_ids for v in (comp.edges[e].src, comp.edges[e].dst)})
    idx = {v: i for i, v in enumerate(verts)}
    typed = [(idx[comp.edges[e].src], idx[comp.edges[e].dst], comp.edges[e].structure) for e in edge_ids]
    key, canon = _wl_hash(len(verts), typed)
    names.setdefault(key, _describe([comp.edges[e].op + ("/s2" if comp.edges[e].stride > 1 else "")
                                     for e in edge_ids]))
    remap = {old: new for new, old in enumerate(canon)}
    return SubGraph(key, [verts[i] for i in canon], [(remap[s], remap[d]) for s, d, _ in typed],
                    [("edge", e) for e in edge_ids])


def _from_parts(parts: list[tuple[int, int, tuple[str, int]]], names: dict[str, str], comp: CompGraph,
                below: list[SubGraph]) -> SubGraph:
    """A chain whose edges are primitive edges or motifs of the level below (levels=3)."""
    verts = sorted({v for a, b, _ in parts for v in (a, b)})
    idx = {v: i for i, v in enumerate(verts)}
    typed = [(idx[a], idx[b], comp.edges[c[1]].structure if c[0] == "edge" else f"motif:{below[c[1]].motif}")
             for a, b, c in parts]
    key, canon = _wl_hash(len(verts), typed)
    names.setdefault(key, "-".join(f"⟨{t[6:12]}⟩" if t.startswith("motif:") else t.split("/")[0]
                                   for _, _, t in typed))
    remap = {old: new for new, old in enumerate(canon)}
    return SubGraph(key, [verts[i] for i in canon], [(remap[s], remap[d]) for s, d, _ in typed], [c for *_, c in parts])


def _describe(ops: list[str]) -> str:
    """A short human name for a motif: its operations in order, with the count of parallel adds/concats."""
    seen: list[str] = []
    for op in ops:
        if not seen or seen[-1] != op:
            seen.append(op)
    return "-".join(seen)
