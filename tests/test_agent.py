"""DDPG agent: the update learns, noise stays in bounds, buffers round-trip."""

from __future__ import annotations

import numpy as np
import torch

from gnnrl import channel_groups, create, trace
from gnnrl.agent import DDPG, Batch, DDPGConfig, ReplayBuffer, truncated_normal
from gnnrl.hierarchy import build_hierarchy
from gnnrl.prune import make_plan


def make_agent(head: str = "graph") -> tuple[DDPG, torch.Tensor, list[int]]:
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    h = build_hierarchy(graph)
    groups = channel_groups(graph)
    ids = [g.id for g in groups if g.prunable]
    agent = DDPG(h, ids, len(groups), DDPGConfig(channels=16, hidden=64, head=head), seed=0)
    states = torch.stack([h.comp.edge_features(make_plan(graph, r).keep) for r in np.linspace(0, 0.7, 8)])
    return agent, states, ids


def test_update_lowers_the_critic_loss_on_a_fixed_batch() -> None:
    agent, states, ids = make_agent()
    g = torch.Generator().manual_seed(0)
    batch = Batch(states, torch.rand(8, len(ids), generator=g), -torch.rand(8, generator=g), states, torch.ones(8))
    losses = [agent.update(batch)["agent/critic_loss"] for _ in range(100)]
    assert np.mean(losses[-10:]) < 0.25 * np.mean(losses[:10]), (losses[:3], losses[-3:])


def test_both_actor_heads_output_one_ratio_per_group() -> None:
    for head in ("graph", "groups"):
        agent, states, ids = make_agent(head)
        out = agent.actor(states)
        assert out.shape == (8, len(ids)) and bool(((out > 0) & (out < 1)).all())


def test_targets_follow_slowly() -> None:
    agent, states, ids = make_agent()
    before = [p.clone() for p in agent.actor_target.parameters()]
    batch = Batch(states, torch.rand(8, len(ids)), -torch.rand(8), states, torch.zeros(8))
    agent.update(batch)
    moved = [(p - b).abs().max().item() for p, b in zip(agent.actor_target.parameters(), before, strict=True)]
    online = [(p - b).abs().max().item() for p, b in zip(agent.actor.parameters(), before, strict=True)]
    assert max(moved) < 0.05 * max(online) + 1e-12 or max(moved) < max(online)


def test_truncated_normal_stays_in_bounds() -> None:
    rng = np.random.default_rng(0)
    mu = np.array([0.0, 0.5, 1.0, 0.99])
    x = np.stack([truncated_normal(mu, 0.5, rng) for _ in range(2000)])
    assert x.min() >= 0 and x.max() <= 1
    assert abs(np.mean(truncated_normal(np.full(4000, 0.3), 0.01, rng)) - 0.3) < 0.002
    assert np.array_equal(truncated_normal(mu, 0.0, rng), mu)


def test_replay_buffer_round_trip_and_wraparound() -> None:
    buf = ReplayBuffer(3, (2, 2), 1)
    for i in range(5):
        buf.add(np.full((2, 2), i, dtype=np.float32), np.array([i]), float(i), np.zeros((2, 2)), i == 4)
    assert buf.size == 3 and sorted(buf.rewards.tolist()) == [2.0, 3.0, 4.0]
    other = ReplayBuffer(3, (2, 2), 1)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.states, buf.states) and other.pos == buf.pos
