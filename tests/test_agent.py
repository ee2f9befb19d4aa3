"""DDPG agent: the update learns, noise stays in bounds, buffers round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnrl import channel_groups, create, trace
from gnnrl.agent import DDPG, Batch, DDPGConfig, ReplayBuffer, gnn_ddpg, polyak_update, truncated_normal
from gnnrl.hierarchy import build_hierarchy
from gnnrl.prune import make_plan


def make_agent(head: str = "graph", **options: object) -> tuple[DDPG, torch.Tensor, list[int]]:
    graph = trace(create("resnet20"), torch.randn(1, 3, 32, 32))
    h = build_hierarchy(graph)
    groups = channel_groups(graph)
    ids = [g.id for g in groups if g.prunable]
    cfg = DDPGConfig(channels=16, hidden=64, head=head, **options)  # type: ignore[arg-type]
    descriptors = np.stack([np.linspace(0, 1, len(ids)), np.ones(len(ids))], 1)  # position, a constant
    agent = gnn_ddpg(h, ids, len(groups), cfg, seed=0, descriptors=descriptors)
    states = torch.stack([h.comp.edge_features(make_plan(graph, r).keep) for r in np.linspace(0, 0.7, 8)])
    return agent, states, ids


def test_update_lowers_the_critic_loss_on_a_fixed_batch() -> None:
    agent, states, ids = make_agent()
    g = torch.Generator().manual_seed(0)
    batch = Batch(states, torch.rand(8, len(ids), generator=g), -torch.rand(8, generator=g), states, torch.ones(8))
    losses = [agent.update(batch)["agent/critic_loss"] for _ in range(100)]
    assert np.mean(losses[-10:]) < 0.25 * np.mean(losses[:10]), (losses[:3], losses[-3:])


def textbook_update(agent: DDPG, batch: Batch) -> None:
    """CleanRL's DDPG update, written out in full (the reference for `DDPG.update`)."""
    with torch.no_grad():
        next_q = agent.critic_target(batch.next_states, agent.actor_target(batch.next_states))
        target = batch.rewards + agent.cfg.discount * (1.0 - batch.dones) * next_q
    critic_loss = torch.nn.functional.mse_loss(agent.critic(batch.states, batch.actions), target)
    agent.critic_opt.zero_grad()
    critic_loss.backward()
    agent.critic_opt.step()
    actor_loss = -agent.critic(batch.states, agent.actor(batch.states)).mean()
    agent.actor_opt.zero_grad()
    actor_loss.backward()
    agent.actor_opt.step()
    polyak_update(agent.actor, agent.actor_target, agent.cfg.tau)
    polyak_update(agent.critic, agent.critic_target, agent.cfg.tau)


def test_update_equals_the_textbook_update() -> None:
    fast, states, ids = make_agent()
    slow, _, _ = make_agent()
    g = torch.Generator().manual_seed(1)
    for dones in (torch.tensor([0.0, 1, 0, 0, 1, 0, 1, 0]), torch.ones(8), torch.zeros(8)):
        batch = Batch(states, torch.rand(8, len(ids), generator=g), -torch.rand(8, generator=g),
                      states.roll(1, 0), dones)
        fast.update(batch)
        textbook_update(slow, batch)
    for name in ("actor", "critic", "actor_target", "critic_target"):
        a, b = getattr(fast, name).state_dict(), getattr(slow, name).state_dict()
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst < 1e-5, (name, worst)
    assert any((p != q).any() for p, q in zip(fast.actor.parameters(), make_agent()[0].actor.parameters(),
                                               strict=True))  # the updates did move the actor


def test_both_actor_heads_output_one_ratio_per_group() -> None:
    for head in ("graph", "groups", "both"):
        agent, states, ids = make_agent(head, descriptors=head == "both")
        out = agent.actor(states)
        assert out.shape == (8, len(ids)) and bool(((out > 0) & (out < 1)).all())


def test_descriptors_tell_repeated_blocks_apart() -> None:
    """ResNet-20's stage-2 blocks are identical motifs, so their m-GNN group embeddings are equal and a per-group
    head gives them one ratio; with the group descriptors (here: position) it can give each its own."""
    plain, states, ids = make_agent("groups", descriptors=False)
    described, _, _ = make_agent("groups", descriptors=True)
    with torch.no_grad():
        a, b = plain.actor(states[:1])[0], described.actor(states[:1])[0]
    stage2 = [i for i in range(len(ids)) if i >= 2][:3]  # a run of internal groups of one stage
    assert len(set(a[stage2].tolist())) < len(stage2) and len(set(b[stage2].tolist())) == len(stage2)


def test_the_per_group_critic_scores_actions_and_trains_the_actor() -> None:
    """The per-group (DeepSets) critic, an ablation (measured worse, see DDPGConfig.critic): one Q per state and
    action, candidates ranked by it, and an update moves the actor through it."""
    agent, states, ids = make_agent(critic="groups", descriptors=True)
    actions = torch.rand(8, len(ids), generator=torch.Generator().manual_seed(0))
    assert agent.critic(states, actions).shape == (8,)
    assert agent.act(states[0].numpy(), 0.3, np.random.default_rng(0)).shape == (len(ids),)
    before = [p.clone() for p in agent.actor.parameters()]
    agent.update(Batch(states, actions, -torch.rand(8, generator=torch.Generator().manual_seed(1)), states,
                       torch.ones(8)))
    assert any((p != b).any() for p, b in zip(agent.actor.parameters(), before, strict=True))


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


def test_replay_buffer_saved_as_keys_rebuilds_the_same_states() -> None:
    def observe(key: np.ndarray) -> np.ndarray:
        return np.outer(key, [1.0, 0.5]).astype(np.float32)  # any deterministic key → state

    buf = ReplayBuffer(4, (2, 2), 1, key_dim=2)
    for i in range(6):
        k, k2 = np.array([0, i]), np.array([i, i + 1])
        buf.add(observe(k), np.array([i]), float(i), observe(k2), i % 2 == 1, keys=(k, k2))
    saved = buf.state_dict()
    assert "states" not in saved and saved["keys"].shape == (4, 2, 2)  # type: ignore[union-attr]
    other = ReplayBuffer(4, (2, 2), 1, key_dim=2)
    other.load_state_dict(saved, rebuild=observe)
    for name in ("states", "next_states", "actions", "rewards", "dones", "keys"):
        assert torch.equal(getattr(other, name), getattr(buf, name)), name
    assert other.pos == buf.pos == 2
    with pytest.raises(ValueError, match="rebuild"):
        ReplayBuffer(4, (2, 2), 1, key_dim=2).load_state_dict(saved)
    old_format = ReplayBuffer(4, (2, 2), 1)  # observations saved as they are: cannot give keys back
    old_format.add(observe(np.array([0, 0])), np.array([0]), 0.0, observe(np.array([0, 1])), True)
    with pytest.raises(ValueError, match="without state keys"):
        ReplayBuffer(4, (2, 2), 1, key_dim=2).load_state_dict(old_format.state_dict())


def test_candidates_take_the_draw_the_critic_values_most() -> None:
    import dataclasses

    agent, states, _ = make_agent()
    agent.cfg = dataclasses.replace(agent.cfg, candidates=8)
    state = states[0].numpy()
    chosen = agent.act(state, 0.3, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # the same draws, replayed
    with torch.no_grad():
        mu = agent.actor(states[:1])[0].double().numpy()
    draws = [truncated_normal(mu, 0.3, rng) for _ in range(8)]
    q = [agent.value(state, d) for d in draws]
    assert len({tuple(d) for d in draws}) == 8
    np.testing.assert_array_equal(chosen, draws[int(np.argmax(q))])
    assert max(q) > min(q)
