"""Computational graph and motif hierarchy: one algorithm, sensible motifs on every zoo family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_groups import Concat, ThreeWayAdd

from gnnrl import create, trace
from gnnrl.graph import NUM_EDGE_FEATURES, OPS, build
from gnnrl.hierarchy import build_hierarchy
from gnnrl.prune import make_plan


def hierarchy(name: str, levels: int = 2):  # type: ignore[no-untyped-def]
    return build_hierarchy(trace(create(name), torch.randn(1, 3, 32, 32)), levels=levels)


def test_resnet56_has_a_handful_of_motifs_and_a_small_top_graph() -> None:
    h = hierarchy("resnet56")
    counts = h.motif_counts()
    assert len(counts) <= 6 and sum(counts.values()) == 29
    blocks = [k for k, c in counts.items() if c >= 20]
    assert len(blocks) == 1, "the 24 identity residual blocks are one motif"
    assert "conv3x3-bn-relu-conv3x3-bn-add-relu" in h.motif_names[blocks[0]]
    assert any("pad" in h.motif_names[k] and c == 2 for k, c in counts.items()), "two downsampling blocks"
    assert len(h.top.nodes) == 30 and len(h.top.edges) == 29


@pytest.mark.parametrize(("name", "expect"), [
    ("cifar_vgg16_bn", "conv3x3-bn-relu"),
    ("cifar_mobilenet_v2", "conv1x1-bn-relu6-dwconv3x3-bn-relu6-conv1x1-bn-add"),
    ("cifar_shufflenet_v2", "concat-reshape"),
    ("cifar_mobilenet_v1", "dwconv3x3-bn-relu"),
    ("cifar_mobilenet_v1", "conv1x1-bn-relu"),
])
def test_same_algorithm_finds_motifs_on_other_families(name: str, expect: str) -> None:
    h = hierarchy(name)
    assert any(expect in h.motif_names[k] and count >= 4 for k, count in h.motif_counts().items())
    assert len(h.top.edges) == len(h.levels[0]) and 3 * len(h.top.edges) <= len(h.comp.edges)


def test_torchvision_blocks_come_out_too() -> None:
    pytest.importorskip("torchvision")
    h = build_hierarchy(trace(create("resnet18"), torch.randn(1, 3, 64, 64)))
    names = [h.motif_names[k] for k in h.motif_counts()]
    assert any("add-relu" in n for n in names)


def test_three_levels_nest_regions_inside_chains() -> None:
    h = hierarchy("resnet20", levels=3)
    assert len(h.levels) == 3
    assert {g.motif for g in h.levels[0]} and all(len(g.edges) > 1 for g in h.levels[0])
    assert any(kind == "graph" for g in h.levels[1] for kind, _ in g.children)


def test_motif_hash_ignores_node_order() -> None:
    """Branches declared in another order trace to other node numbers but the same motif types."""

    class Swapped(ThreeWayAdd):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            yb = self.b(x)  # traced before branch a: every node of the block gets another number
            ya = self.a(x)
            return self.head(x + ya + yb)

    a = build_hierarchy(trace(ThreeWayAdd(), torch.randn(1, 3, 8, 8)))
    b = build_hierarchy(trace(Swapped(), torch.randn(1, 3, 8, 8)))
    assert sorted(a.motif_counts().items()) == sorted(b.motif_counts().items())


def test_edge_features_follow_pruning() -> None:
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    comp = build(graph)
    full = comp.edge_features()
    assert full.shape == (len(comp.edges), NUM_EDGE_FEATURES)
    assert torch.equal(full[:, : len(OPS)].sum(1), torch.ones(len(comp.edges))), "one op type per edge"
    plan = make_plan(graph, 0.5)
    pruned = comp.edge_features(plan.keep)
    conv = next(i for i, e in enumerate(comp.edges) if e.node == "layer1_0_conv1")
    b = len(OPS)
    assert pruned[conv, b + 4] == pytest.approx(full[conv, b + 4] / 2)  # out channels 16 → 8
    assert pruned[conv, b + 5] == pytest.approx(0.5)  # kept fraction
    assert pruned[conv, b + 6] < full[conv, b + 6]  # MACs shrink
    assert torch.equal(pruned[:, : b + 3], full[:, : b + 3]), "structure features do not change"


def test_edges_map_back_to_channel_groups() -> None:
    graph = trace(Concat(), torch.randn(1, 3, 8, 8))
    comp = build(graph)
    produced = {e.node: gs for e, gs in zip(comp.edges, comp.edge_groups, strict=True) if gs}
    assert set(produced) == {"stem_0", "a_0", "b_0", "head"}
    assert len({gs for gs in produced.values()}) == 4


def test_canonical_node_order_is_shared_by_instances() -> None:
    h = hierarchy("resnet56")
    blocks = [g for g in h.levels[0] if h.motif_counts()[g.motif] >= 20]
    edges = {tuple(sorted(g.edges)) for g in blocks}
    assert len(edges) == 1, "all instances of a motif list their nodes in the same canonical order"
    assert np.all([len(g.nodes) == len(blocks[0].nodes) for g in blocks])
