"""Multi-stage GNN (m-GNN, paper §3.2.1): edge-feature message passing (eq. 4) and learned pooling (eq. 5).

Stage t embeds every graph of hierarchy level t at once (one batched pass, weights shared by the level);
the pooled embedding of each graph becomes the feature of the edge that stands for it one level up, and
the top graph's embedding is the state g. Design choices the paper leaves open, made here:

  * messages flow both ways along an edge (a direction flag is appended to the edge feature), so a feature
    map hears from its producers and its consumers;
  * each layer is residual with LayerNorm: ``h ← LayerNorm(h + ReLU(conv(h)))``, which keeps deep stacks
    trainable by the RL losses;
  * raw edge features are projected to the hidden size (the element-wise product of eq. 4 needs equal sizes);
  * all feature maps start from one learned vector: the operations on the edges tell them apart.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # PyG's pooling modules call torch.jit.script at import: not ours to fix
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from .graph import NUM_EDGE_FEATURES
from .hierarchy import Hierarchy


class EdgeGNNConv(MessagePassing):
    r"""Message passing with edge features from GNN-RL (Yu et al., ICML 2022, eq. 4).

    .. math::
        \mathbf{h}_i' = \sum_{j \in \mathcal{N}(i)} \frac{1}{c_i} \mathbf{W} (\mathbf{h}_j \circ \mathbf{e}_{ij}),
        \qquad c_i = |\mathcal{N}(i)|

    Args:
        channels (int): size of node states and edge features (they are multiplied element-wise).

    Shapes:
        - **input:** node states :math:`(|\mathcal{V}|, C)`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, C)`
        - **output:** node states :math:`(|\mathcal{V}|, C)`
    """

    def __init__(self, channels: int) -> None:
        super().__init__(aggr="mean")  # the mean is the 1/c_i normalisation of eq. 4
        self.channels = channels
        self.lin = nn.Linear(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        # W is linear and bias-free, so it commutes with the mean: applying it once per node instead of once
        # per message gives the same result with ~2.5× fewer rows in the matmul (edges run both ways)
        return self.lin(self.propagate(edge_index, x=x, edge_attr=edge_attr))

    def message(self, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return x_j * edge_attr

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels})"


class MotifPool(nn.Module):
    r"""Learned pooling of GNN-RL (eq. 5): :math:`\mathbf{e} = \sum_i \alpha_i \mathbf{h}_i`.

    One coefficient per (motif type, canonical node position): every instance of a motif pools with the
    same :math:`\alpha`, and node order inside a graph does not matter (positions are canonical).

    Args:
        slot_sizes (list[int]): number of nodes of each graph type; slots are laid out type after type.
    """

    def __init__(self, slot_sizes: list[int]) -> None:
        super().__init__()
        self.slot_sizes = list(slot_sizes)
        self.alpha = nn.Parameter(torch.empty(sum(slot_sizes)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # start as a mean over the graph's nodes
        with torch.no_grad():
            self.alpha.copy_(torch.cat([torch.full((n,), 1.0 / n) for n in self.slot_sizes]))

    def forward(self, h: Tensor, slot: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return scatter(h * self.alpha[slot].unsqueeze(-1), batch, dim=0, dim_size=num_graphs, reduce="sum")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(types={len(self.slot_sizes)}, slots={sum(self.slot_sizes)})"


class Stage(nn.Module):
    """One m-GNN stage: project edge features, `layers` residual EdgeGNNConv layers, learned pooling."""

    def __init__(self, edge_dim: int, channels: int, layers: int, slot_sizes: list[int]) -> None:
        super().__init__()
        self.edge_proj = nn.Linear(edge_dim + 1, channels)  # input: edge features + direction flag; then tanh
        self.node_init = nn.Parameter(torch.randn(channels) * 0.1)
        self.convs = nn.ModuleList(EdgeGNNConv(channels) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.pool = MotifPool(slot_sizes)

    def forward(self, edge_attr: Tensor, edge_index: Tensor, num_nodes: int, slot: Tensor, batch: Tensor,
                num_graphs: int) -> tuple[Tensor, Tensor]:
        """Graph embeddings (num_graphs × C) and node states (num_nodes × C)."""
        # edge_proj([x, direction]) for both directions from one matmul: the flag only adds a column of W
        w = self.edge_proj.weight
        z = F.linear(edge_attr, w[:, :-1], self.edge_proj.bias)
        e = torch.tanh(torch.cat([z + w[:, -1], z]))
        ei = torch.cat([edge_index, edge_index.flip(0)], 1)
        h = self.node_init.expand(num_nodes, -1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(h + torch.relu(conv(h, ei, e)))
        return self.pool(h, slot, batch, num_graphs), h


_LEVEL_TENSORS = ("edge_index", "slot", "batch", "child_kind", "child_index")


class _Level(nn.Module):
    """Flattened structure of one hierarchy level (one state); replicated per batch element in forward. Its index
    tensors are non-persistent buffers: they move with `.to(device)`, stay integers under dtype casts, and are not
    in the state dict (checkpoints hold only the learned weights)."""

    edge_index: Tensor  # (2, E) local to this level's node list
    slot: Tensor  # (N,) pooling slot of every node
    batch: Tensor  # (N,) graph of every node
    child_kind: Tensor  # (E,) 0: primitive edge, 1: graph of the level below
    child_index: Tensor  # (E,) index of that edge / graph

    def __init__(self, edge_index: Tensor, slot: Tensor, batch: Tensor, child_kind: Tensor, child_index: Tensor,
                 num_nodes: int, num_graphs: int) -> None:
        super().__init__()
        for name, t in zip(_LEVEL_TENSORS, (edge_index, slot, batch, child_kind, child_index), strict=True):
            self.register_buffer(name, t, persistent=False)
        self.num_nodes = num_nodes
        self.num_graphs = num_graphs


@dataclass
class Encoding:
    """m-GNN outputs for a batch of B states."""

    g: Tensor  # (B, C): the network embedding (the paper's state)
    groups: Tensor  # (B, num_groups, 2C): per channel group, from the edges that produce its channels


class MultiStageEncoder(nn.Module):
    """m-GNN over a `Hierarchy`: stage t embeds level t; the top graph's embedding is the state g.

    Args:
        hierarchy: the network's hierarchical graph (fixes structure; states differ only in edge features).
        channels: hidden size C.
        layers: message-passing layers per stage.

    Shapes:
        - **input:** edge features of the computational graph :math:`(B, |\\mathcal{E}_0|, F)` or
          :math:`(|\\mathcal{E}_0|, F)`
        - **output:** `Encoding` with g :math:`(B, C)` and per-group embeddings :math:`(B, G, 2C)`
    """

    def __init__(self, hierarchy: Hierarchy, channels: int = 64, layers: int = 2,
                 num_groups: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        levels, stages = [], []
        for t, graphs in enumerate(hierarchy.levels):
            types = list(dict.fromkeys(g.motif for g in graphs))
            sizes = [next(len(g.nodes) for g in graphs if g.motif == k) for k in types]
            offset = dict(zip(types, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
            src, dst, slot, batch, kind, index = [], [], [], [], [], []
            base = 0
            for gi, g in enumerate(graphs):
                for (s, d), (c_kind, c_idx) in zip(g.edges, g.children, strict=True):
                    src.append(base + s)
                    dst.append(base + d)
                    kind.append(0 if c_kind == "edge" else 1)
                    index.append(c_idx)
                slot.extend(offset[g.motif] + i for i in range(len(g.nodes)))
                batch.extend([gi] * len(g.nodes))
                base += len(g.nodes)
            levels.append(_Level(torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                                      torch.tensor(slot), torch.tensor(batch), torch.tensor(kind),
                                      torch.tensor(index), base, len(graphs)))
            stages.append(Stage(NUM_EDGE_FEATURES if t == 0 else channels, channels, layers, sizes))
        self.levels = nn.ModuleList(levels)
        self.stages = nn.ModuleList(stages)
        # primitive edges appearing above the lowest level (levels=3) are projected to the hidden size
        mixed = any(bool((lvl.child_kind == 0).any()) for lvl in self.levels[1:])
        self.raw_proj = nn.Linear(NUM_EDGE_FEATURES, channels) if mixed else None
        self._group_index(hierarchy, num_groups)

    def _group_index(self, h: Hierarchy, num_groups: int | None) -> None:
        """For each channel group, the (level, src node, dst node) of the primitive edges producing it."""
        where: dict[int, tuple[int, int, int]] = {}
        for t, lvl in enumerate(self.levels):
            ei = lvl.edge_index
            for k in range(ei.shape[1]):
                if int(lvl.child_kind[k]) == 0:
                    where[int(lvl.child_index[k])] = (t, int(ei[0, k]), int(ei[1, k]))
        groups = h.comp.edge_groups
        n = num_groups if num_groups is not None else 1 + max((g for gs in groups for g in gs), default=-1)
        rows: list[tuple[int, int, int, int]] = []  # (group, level, src, dst)
        for e, gs in enumerate(groups):
            if e in where:
                for g in gs:
                    rows.append((g, *where[e]))
        self.num_groups = n
        self.register_buffer("group_rows", torch.tensor(rows, dtype=torch.long).reshape(-1, 4), persistent=False)

    def forward(self, edge_features: Tensor) -> Encoding:
        feats = edge_features.unsqueeze(0) if edge_features.dim() == 2 else edge_features
        b = feats.shape[0]
        below: Tensor | None = None  # (B, graphs of the previous level, C)
        node_states: list[Tensor] = []
        for lvl, stage in zip(self.levels, self.stages, strict=True):
            raw = feats[:, lvl.child_index.clamp(max=feats.shape[1] - 1)]  # (B, E, F)
            if below is None:
                attr = raw
            else:
                motif = below[:, lvl.child_index.clamp(max=below.shape[1] - 1)]
                if self.raw_proj is None:
                    attr = motif
                else:
                    attr = torch.where((lvl.child_kind == 1).view(1, -1, 1), motif, self.raw_proj(raw))
            e_count = lvl.edge_index.shape[1]
            step = torch.arange(b, device=feats.device)
            shift = (step * lvl.num_nodes).repeat_interleave(e_count)
            edge_index = lvl.edge_index.repeat(1, b) + shift
            batch = lvl.batch.repeat(b) + (step * lvl.num_graphs).repeat_interleave(lvl.num_nodes)
            pooled, h = stage(attr.reshape(b * e_count, -1), edge_index, b * lvl.num_nodes, lvl.slot.repeat(b),
                              batch, b * lvl.num_graphs)
            below = pooled.view(b, lvl.num_graphs, -1)
            node_states.append(h.view(b, lvl.num_nodes, -1))
        assert below is not None
        return Encoding(g=below[:, 0], groups=self._groups(node_states, b))

    def _groups(self, node_states: list[Tensor], b: int) -> Tensor:
        out = node_states[0].new_zeros(b, self.num_groups, 2 * self.channels)
        if len(self.group_rows) == 0:
            return out
        rows_all = self.group_rows
        count = out.new_zeros(self.num_groups).index_add_(0, rows_all[:, 0], out.new_ones(len(rows_all)))
        for t, h in enumerate(node_states):
            rows = self.group_rows[self.group_rows[:, 1] == t]
            if len(rows):
                pair = torch.cat([h[:, rows[:, 2]], h[:, rows[:, 3]]], -1)  # (B, R, 2C)
                out = out.index_add(1, rows[:, 0], pair)
        return out / count.clamp(min=1).view(1, -1, 1)
