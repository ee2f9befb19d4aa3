"""The GNN-RL agent (paper §3.2.2): DDPG whose actor and critic each read the state through an m-GNN.

Actor: m-GNN encoder → MLP → sigmoid, one pruning ratio per prunable channel group (eq. 6–7). Two heads:
``graph`` (the paper's: an MLP over the network embedding g) and ``groups`` (one shared MLP per group over
[its group embedding, g], so the actor reads each group's place in the graph directly). Critic: m-GNN
encoder → MLP over [g, action] → Q. The update is CleanRL's DDPG: target under no_grad, critic step,
actor step, soft update.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gnn import Encoding, MultiStageEncoder
from .hierarchy import Hierarchy


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG hyper-parameters: τ, batch and replay size from the paper; the rest from AMC (He et al. 2018)."""

    tau: float = 0.01
    """soft target update rate"""
    batch_size: int = 64
    replay_size: int = 2000
    discount: float = 1.0
    """episodes are a few steps long and only the last step is rewarded"""
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    hidden: int = 300
    channels: int = 64
    """m-GNN hidden size"""
    gnn_layers: int = 2
    noise_init: float = 0.5
    """std of the truncated-normal exploration noise on the first episode after warm-up"""
    noise_decay: float = 0.95
    """the noise std is multiplied by this after every episode"""
    head: str = "graph"
    """'graph': MLP over g (paper); 'groups': shared per-group MLP over [group embedding, g]"""
    updates_per_episode: int = 20
    """DDPG updates after each post-warm-up episode. Episodes are mostly one step long here (a step may prune
    as much as the budget needs), so AMC's one-update-per-step would leave the agent nearly untrained"""


class Batch(NamedTuple):
    """A sampled minibatch: states (B, E, F), actions (B, A), rewards (B,), next states, done flags (B,)."""

    states: Tensor
    actions: Tensor
    rewards: Tensor
    next_states: Tensor
    dones: Tensor


class ReplayBuffer:
    """Fixed-size FIFO of transitions in preallocated tensors."""

    def __init__(self, capacity: int, state_shape: tuple[int, ...], action_dim: int) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.states = torch.zeros(capacity, *state_shape)
        self.next_states = torch.zeros(capacity, *state_shape)
        self.actions = torch.zeros(capacity, action_dim)
        self.rewards = torch.zeros(capacity)
        self.dones = torch.zeros(capacity)

    def add(self, state: np.ndarray, action: np.ndarray, reward: float, next_state: np.ndarray, done: bool) -> None:
        i = self.pos
        self.states[i] = torch.as_tensor(state)
        self.actions[i] = torch.as_tensor(action, dtype=torch.float32)
        self.rewards[i] = reward
        self.next_states[i] = torch.as_tensor(next_state)
        self.dones[i] = float(done)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        idx = torch.from_numpy(rng.integers(0, self.size, size=batch_size))
        return Batch(self.states[idx], self.actions[idx], self.rewards[idx], self.next_states[idx], self.dones[idx])

    def state_dict(self) -> dict[str, object]:
        return {"states": self.states[: self.size].clone(), "next_states": self.next_states[: self.size].clone(),
                "actions": self.actions[: self.size].clone(), "rewards": self.rewards[: self.size].clone(),
                "dones": self.dones[: self.size].clone(), "pos": self.pos, "size": self.size}

    def load_state_dict(self, d: dict[str, object]) -> None:
        n = int(d["size"])  # type: ignore[call-overload]
        for name in ("states", "next_states", "actions", "rewards", "dones"):
            getattr(self, name)[:n] = d[name]
        self.size, self.pos = n, int(d["pos"])  # type: ignore[call-overload]


class Actor(nn.Module):
    """State → one ratio in (0, 1) per prunable group."""

    def __init__(self, hierarchy: Hierarchy, group_ids: list[int], num_groups: int, cfg: DDPGConfig) -> None:
        super().__init__()
        self.encoder = MultiStageEncoder(hierarchy, cfg.channels, cfg.gnn_layers, num_groups)
        self.head = cfg.head
        self.register_buffer("group_ids", torch.tensor(group_ids), persistent=False)
        c, h = cfg.channels, cfg.hidden
        if cfg.head == "groups":
            self.mlp = nn.Sequential(nn.Linear(3 * c, h), nn.ReLU(), nn.Linear(h, 1))
        else:
            self.mlp = nn.Sequential(nn.Linear(c, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                     nn.Linear(h, len(group_ids)))

    def forward(self, states: Tensor) -> Tensor:
        enc = encode(self.encoder, states)
        if self.head == "groups":
            per_group = enc.groups[:, self.group_ids]  # (B, A, 2C)
            g = enc.g.unsqueeze(1).expand(-1, per_group.shape[1], -1)
            return torch.sigmoid(self.mlp(torch.cat([per_group, g], -1)).squeeze(-1))
        return torch.sigmoid(self.mlp(enc.g))


class Critic(nn.Module):
    """(state, action) → Q."""

    def __init__(self, hierarchy: Hierarchy, action_dim: int, num_groups: int, cfg: DDPGConfig) -> None:
        super().__init__()
        self.encoder = MultiStageEncoder(hierarchy, cfg.channels, cfg.gnn_layers, num_groups)
        self.mlp = nn.Sequential(nn.Linear(cfg.channels + action_dim, cfg.hidden), nn.ReLU(),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.mlp(torch.cat([encode(self.encoder, states).g, actions], -1)).squeeze(-1)


def encode(encoder: MultiStageEncoder, states: Tensor) -> Encoding:
    """Encode a batch, running the m-GNN once per *distinct* state (replayed batches repeat the start state)."""
    flat = states.reshape(states.shape[0], -1)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    enc = encoder(unique.view(-1, *states.shape[1:]))
    return Encoding(enc.g[inverse], enc.groups[inverse])


def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """target ← τ·source + (1 − τ)·target, parameter by parameter."""
    with torch.no_grad():
        for p, tp in zip(source.parameters(), target.parameters(), strict=True):
            tp.mul_(1.0 - tau).add_(p, alpha=tau)


def truncated_normal(mu: np.ndarray, sigma: float, rng: np.random.Generator, low: float = 0.0,
                     high: float = 1.0) -> np.ndarray:
    """Samples of N(mu, sigma²) truncated to [low, high], by inverting the CDF (deterministic given `rng`)."""
    if sigma <= 0:
        return np.clip(mu, low, high)
    m = torch.as_tensor(mu, dtype=torch.float64)
    a = torch.special.ndtr((low - m) / sigma)
    b = torch.special.ndtr((high - m) / sigma)
    u = a + (b - a) * torch.from_numpy(rng.random(len(mu)))
    x = m + sigma * torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
    return x.clamp(low, high).numpy()


class DDPG:
    """Actor, critic, their targets and optimisers, and one readable `update`."""

    def __init__(self, hierarchy: Hierarchy, group_ids: list[int], num_groups: int, cfg: DDPGConfig,
                 seed: int = 0) -> None:
        self.cfg = cfg
        torch.manual_seed(seed)
        self.actor = Actor(hierarchy, group_ids, num_groups, cfg)
        self.critic = Critic(hierarchy, len(group_ids), num_groups, cfg)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)

    def act(self, state: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """The actor's ratios for one state, with truncated-normal exploration noise of std `sigma`."""
        with torch.no_grad():
            mu = self.actor(torch.as_tensor(state).unsqueeze(0))[0].double().numpy()
        return truncated_normal(mu, sigma, rng)

    def update(self, batch: Batch) -> dict[str, float]:
        """One DDPG step on a minibatch; returns the losses."""
        with torch.no_grad():
            next_q = self.critic_target(batch.next_states, self.actor_target(batch.next_states))
            target = batch.rewards + self.cfg.discount * (1.0 - batch.dones) * next_q
        q = self.critic(batch.states, batch.actions)
        critic_loss = F.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss = -self.critic(batch.states, self.actor(batch.states)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        polyak_update(self.actor, self.actor_target, self.cfg.tau)
        polyak_update(self.critic, self.critic_target, self.cfg.tau)
        return {"agent/critic_loss": float(critic_loss.detach()), "agent/actor_loss": float(actor_loss.detach())}

    def state_dict(self) -> dict[str, object]:
        return {name: getattr(self, name).state_dict() for name in
                ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")}

    def load_state_dict(self, d: dict[str, object]) -> None:
        for name, state in d.items():
            getattr(self, name).load_state_dict(state)
