"""m-GNN: eq. 4 and eq. 5 as written, invariance to node numbering, sensitivity to pruning, gradients, batching."""

from __future__ import annotations

import copy

import pytest
import torch

from gnnrl import channel_groups, create, trace
from gnnrl.gnn import EdgeGNNConv, MotifPool, MultiStageEncoder, Stage
from gnnrl.hierarchy import build_hierarchy
from gnnrl.prune import make_plan


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    h = build_hierarchy(graph)
    torch.manual_seed(0)
    enc = MultiStageEncoder(h, channels=32, num_groups=len(channel_groups(graph))).eval()
    return graph, h, enc


def test_edge_conv_is_equation_4() -> None:
    torch.manual_seed(0)
    conv = EdgeGNNConv(3)
    x = torch.randn(3, 3)
    edge_index = torch.tensor([[0, 1, 0], [2, 2, 1]])
    e = torch.randn(3, 3)
    out = conv(x, edge_index, e)
    w = conv.lin.weight
    expected2 = (w @ (x[0] * e[0]) + w @ (x[1] * e[1])) / 2  # node 2 has c = 2 neighbours
    assert torch.allclose(out[2], expected2, atol=1e-6)
    assert torch.allclose(out[1], w @ (x[0] * e[2]), atol=1e-6)
    assert torch.equal(out[0], torch.zeros(3))


def test_stage_projects_edges_with_a_direction_flag() -> None:
    torch.manual_seed(0)
    stage = Stage(edge_dim=5, channels=4, layers=0, slot_sizes=[3])
    x = torch.randn(2, 5)
    proj = torch.tanh(stage.edge_proj(torch.cat([torch.cat([x, torch.ones(2, 1)], 1),
                                                 torch.cat([x, torch.zeros(2, 1)], 1)])))
    seen = {}
    stage.convs.append(EdgeGNNConv(4))  # one layer, to observe the edge features it receives
    stage.norms.append(torch.nn.Identity())
    stage.convs[0].register_forward_pre_hook(lambda m, args: seen.update(e=args[2]))
    stage(x, torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long), 1)
    assert torch.allclose(seen["e"], proj, atol=1e-6)


def test_pool_is_equation_5() -> None:
    pool = MotifPool([2, 3])
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    h = torch.arange(10.0).view(5, 2)
    out = pool(h, torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 0, 1, 1, 1]), 2)
    assert torch.equal(out[0], 1 * h[0] + 2 * h[1]) and torch.equal(out[1], 3 * h[2] + 4 * h[3] + 5 * h[4])


def test_embedding_is_invariant_to_node_numbering(setup) -> None:  # type: ignore[no-untyped-def]
    _, h, enc = setup
    feats = h.comp.edge_features()
    shuffled = copy.deepcopy(enc)
    torch.manual_seed(1)
    for t, lvl in enumerate(shuffled.levels):  # renumber every node of every level at random
        perm = torch.randperm(lvl.num_nodes)  # new node i is old node perm[i]
        new_id = torch.empty_like(perm)
        new_id[perm] = torch.arange(lvl.num_nodes)
        lvl.edge_index = new_id[lvl.edge_index]
        lvl.slot, lvl.batch = lvl.slot[perm], lvl.batch[perm]
        rows = shuffled.group_rows[:, 1] == t
        shuffled.group_rows[rows, 2:] = new_id[shuffled.group_rows[rows, 2:]]
    with torch.no_grad():
        before, after = enc(feats), shuffled(feats)
    assert torch.allclose(before.g, after.g, atol=1e-5)
    assert torch.allclose(before.groups, after.groups, atol=1e-5)


def test_embedding_changes_when_a_group_is_pruned(setup) -> None:  # type: ignore[no-untyped-def]
    graph, h, enc = setup
    group = next(g.id for g in channel_groups(graph) if g.prunable and len(g.members) == 1)
    plan = make_plan(graph, {group: 0.5})
    with torch.no_grad():
        full, pruned = enc(h.comp.edge_features()), enc(h.comp.edge_features(plan.keep))
    assert not torch.allclose(full.g, pruned.g)
    assert not torch.allclose(full.groups[0, group], pruned.groups[0, group])


def test_batch_of_states_in_one_pass_and_gradients_reach_every_parameter(setup) -> None:  # type: ignore[no-untyped-def]
    graph, h, enc = setup
    states = torch.stack([h.comp.edge_features(make_plan(graph, r).keep) for r in (0.0, 0.3, 0.6)])
    out = enc(states)
    assert out.g.shape == (3, 32) and out.groups.shape == (3, len(channel_groups(graph)), 64)
    with torch.no_grad():
        single = enc(states[1])
    assert torch.allclose(out.g[1], single.g[0], atol=1e-5)
    (out.g.pow(2).sum() + out.groups.pow(2).sum()).backward()
    dead = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_encoder_runs_wherever_it_is_moved(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Device-agnostic without a GPU: on the meta device any tensor left on the CPU (an index not moved by
    `.to`, an `arange` made without a device) makes the forward fail, as it would on CUDA."""
    import torch.fx.experimental._config as fx_config

    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)  # boolean masks have no meta shape
    _, h, enc = setup
    moved = copy.deepcopy(enc).to("meta")
    out = moved(h.comp.edge_features().to("meta").expand(3, -1, -1))
    assert out.g.device.type == "meta" and out.groups.device.type == "meta"
    assert out.g.shape == (3, 32) and out.groups.shape == (3, enc.num_groups, 64)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_agent_acts_and_learns_on_its_device(setup, device: str) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from gnnrl.agent import Batch, DDPGConfig, gnn_ddpg

    graph, h, _ = setup
    ids = [g.id for g in channel_groups(graph) if g.prunable]
    descriptors = np.linspace(0, 1, len(ids))[:, None]  # per-group heads read one row per group (env: 4 columns)
    agent = gnn_ddpg(h, ids, len(channel_groups(graph)), DDPGConfig(channels=16, hidden=16, candidates=4),
                     descriptors=descriptors).to(device)
    assert agent.actor.desc.device.type == device
    assert {p.device.type for net in (agent.actor, agent.critic_target) for p in net.parameters()} == {device}
    state = h.comp.edge_features().numpy()
    action = agent.act(state, 0.2, np.random.default_rng(0))
    assert action.shape == (len(ids),) and isinstance(agent.value(state, action), float)
    s = torch.from_numpy(state).expand(4, -1, -1)
    losses = agent.update(Batch(s, torch.rand(4, len(ids)), -torch.rand(4), s, torch.tensor([0.0, 1, 0, 1])))
    assert all(np.isfinite(v) for v in losses.values())
