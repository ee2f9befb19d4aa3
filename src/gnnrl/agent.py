"""The GNN-RL agent (paper §3.2.2): DDPG whose actor and critic each read the state through an m-GNN.

Actor: m-GNN encoder → MLP → sigmoid, one pruning ratio per prunable channel group (eq. 6–7). Heads:
``groups`` (the default: one shared MLP per group over [its group embedding, g, its static descriptors], so the
actor reads each group's place in the graph directly), ``graph`` (the paper's: an MLP over the network
embedding g) and ``both`` (their logits summed). Critic: m-GNN
encoder → MLP over [g, action] → Q. The update is CleanRL's DDPG: target under no_grad, critic step,
actor step, soft update.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DDPGConfig
from .hierarchy import Hierarchy

if TYPE_CHECKING:  # PyG is imported when an agent is built, not by `import gnnrl` or `gnnrl --help` (seconds)
    from .gnn import Encoding, MultiStageEncoder


class Batch(NamedTuple):
    """A sampled minibatch: states (B, E, F), actions (B, A), rewards (B,), next states, done flags (B,)."""

    states: Tensor
    actions: Tensor
    rewards: Tensor
    next_states: Tensor
    dones: Tensor

    def to(self, device: torch.device) -> Batch:
        """The same minibatch on `device` (the replay buffer stays in host memory)."""
        return Batch(*(t.to(device) for t in self))


class ReplayBuffer:
    """Fixed-size FIFO of transitions in preallocated tensors.

    With `key_dim` > 0 every state also carries a small integer key it can be rebuilt from (in the search: the
    channels removed per group, from which the observation is computed). `state_dict` then stores the keys
    instead of the states — 2000 ResNet-56 observations are 120 MB, their keys 0.3 MB — and `load_state_dict`
    rebuilds the states with the function it is given.
    """

    def __init__(self, capacity: int, state_shape: tuple[int, ...], action_dim: int, key_dim: int = 0) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.states = torch.zeros(capacity, *state_shape)
        self.next_states = torch.zeros(capacity, *state_shape)
        self.actions = torch.zeros(capacity, action_dim)
        self.rewards = torch.zeros(capacity)
        self.dones = torch.zeros(capacity)
        self.keys = torch.zeros(capacity, 2, key_dim, dtype=torch.long)  # (state, next state) keys

    def add(self, state: np.ndarray, action: np.ndarray, reward: float, next_state: np.ndarray, done: bool,
            keys: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        i = self.pos
        self.states[i] = torch.as_tensor(state)
        self.actions[i] = torch.as_tensor(action, dtype=torch.float32)
        self.rewards[i] = reward
        self.next_states[i] = torch.as_tensor(next_state)
        self.dones[i] = float(done)
        if self.keys.shape[2]:
            if keys is None:
                raise ValueError("this buffer stores state keys: pass keys=(state key, next state key)")
            self.keys[i] = torch.as_tensor(np.stack(keys))
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        idx = torch.from_numpy(rng.integers(0, self.size, size=batch_size))
        return Batch(self.states[idx], self.actions[idx], self.rewards[idx], self.next_states[idx], self.dones[idx])

    def state_dict(self) -> dict[str, object]:
        n = self.size
        d: dict[str, object] = {"actions": self.actions[:n].clone(), "rewards": self.rewards[:n].clone(),
                                "dones": self.dones[:n].clone(), "pos": self.pos, "size": n}
        if self.keys.shape[2]:
            d["keys"] = self.keys[:n].clone()
        else:
            d.update(states=self.states[:n].clone(), next_states=self.next_states[:n].clone())
        return d

    def load_state_dict(self, d: dict[str, object],
                        rebuild: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Restore a `state_dict`; one saved with keys needs `rebuild(key) → state`."""
        n = int(d["size"])  # type: ignore[call-overload]
        if self.keys.shape[2] and "keys" not in d:
            # its states would load, but the next checkpoint would save zero keys for them
            raise ValueError("this replay buffer was saved without state keys (an older gnnrl): start a new run")
        names = ["actions", "rewards", "dones"] + (["keys"] if "keys" in d else ["states", "next_states"])
        for name in names:
            getattr(self, name)[:n] = d[name]
        if "keys" in d:
            if rebuild is None:
                raise ValueError("this replay buffer was saved as state keys: pass `rebuild`")
            built: dict[bytes, Tensor] = {}  # episodes share their start state: build each distinct one once
            for i in range(n):
                for which, target in enumerate((self.states, self.next_states)):
                    key = self.keys[i, which].numpy()
                    if key.tobytes() not in built:
                        built[key.tobytes()] = torch.as_tensor(rebuild(key))
                    target[i] = built[key.tobytes()]
        self.size, self.pos = n, int(d["pos"])  # type: ignore[call-overload]


class Actor(nn.Module):
    """State → one ratio in (0, 1) per prunable group."""

    def __init__(self, hierarchy: Hierarchy, group_ids: list[int], num_groups: int, cfg: DDPGConfig,
                 descriptors: np.ndarray | None = None) -> None:
        super().__init__()
        from .gnn import MultiStageEncoder

        self.encoder = MultiStageEncoder(hierarchy, cfg.channels, cfg.gnn_layers, num_groups)
        self.head = cfg.head
        self.register_buffer("group_ids", torch.tensor(group_ids), persistent=False)
        self.register_buffer("desc", _descriptor_tensor(cfg, descriptors, len(group_ids)), persistent=False)
        c, h = cfg.channels, cfg.hidden
        # built in this order, and only those used, so that a seed initialises each head as it always has
        def per_group() -> nn.Module:
            return nn.Sequential(nn.Linear(3 * c + self.desc.shape[1], h), nn.ReLU(), nn.Linear(h, 1))

        if cfg.head == "groups":
            self.mlp = per_group()
        else:
            self.mlp = nn.Sequential(nn.Linear(c, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                     nn.Linear(h, len(group_ids)))
            if cfg.head == "both":
                self.group_mlp = per_group()

    def forward(self, states: Tensor) -> Tensor:
        enc = encode(self.encoder, states)
        if self.head == "graph":
            return torch.sigmoid(self.mlp(enc.g))
        per_group = _with_descriptors(enc.groups[:, self.group_ids], self.desc)  # (B, A, 2C + D)
        g = enc.g.unsqueeze(1).expand(-1, per_group.shape[1], -1)
        if self.head == "groups":
            return torch.sigmoid(self.mlp(torch.cat([per_group, g], -1)).squeeze(-1))
        return torch.sigmoid(self.mlp(enc.g) + self.group_mlp(torch.cat([per_group, g], -1)).squeeze(-1))


class Critic(nn.Module):
    """(state, action) → Q."""

    def __init__(self, hierarchy: Hierarchy, group_ids: list[int], num_groups: int, cfg: DDPGConfig,
                 descriptors: np.ndarray | None = None) -> None:
        super().__init__()
        from .gnn import MultiStageEncoder

        self.encoder = MultiStageEncoder(hierarchy, cfg.channels, cfg.gnn_layers, num_groups)
        self.kind = cfg.critic
        self.register_buffer("group_ids", torch.tensor(group_ids), persistent=False)
        self.register_buffer("desc", _descriptor_tensor(cfg, descriptors, len(group_ids)), persistent=False)
        c, h = cfg.channels, cfg.hidden
        self.channels = c
        if cfg.critic == "groups":
            self.phi = nn.Sequential(nn.Linear(2 * c + self.desc.shape[1] + 1, h), nn.ReLU(), nn.Linear(h, h))
            self.mlp = nn.Sequential(nn.Linear(c + h, h), nn.ReLU(), nn.Linear(h, 1))
        else:
            self.mlp = nn.Sequential(nn.Linear(c + len(group_ids), h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                     nn.Linear(h, 1))

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.q(self.embed(states), actions)

    def embed(self, states: Tensor) -> Tensor:
        """The state part the Q head reads (B, ·): g, and with the per-group critic the group embeddings after it
        (flattened, so that callers can expand it like g)."""
        enc = encode(self.encoder, states)
        if self.kind == "groups":
            return torch.cat([enc.g, enc.groups[:, self.group_ids].flatten(1)], 1)
        return enc.g

    def q(self, g: Tensor, actions: Tensor) -> Tensor:
        """Q from an already computed state embedding (`embed`) and actions (B, A)."""
        if self.kind == "groups":
            c = self.channels
            per_group = _with_descriptors(g[:, c:].view(len(g), actions.shape[1], -1), self.desc)
            pooled = self.phi(torch.cat([per_group, actions.unsqueeze(-1)], -1)).mean(1)
            return self.mlp(torch.cat([g[:, :c], pooled], -1)).squeeze(-1)
        return self.mlp(torch.cat([g, actions], -1)).squeeze(-1)


def _descriptor_tensor(cfg: DDPGConfig, descriptors: np.ndarray | None, n: int) -> Tensor:
    """The (A, D) descriptors a per-group head reads: none (D = 0) unless `cfg.descriptors`."""
    if not cfg.descriptors:
        return torch.zeros(n, 0)
    if descriptors is None or descriptors.shape[0] != n:
        raise ValueError("DDPGConfig.descriptors needs one descriptor row per prunable group: pass "
                         "descriptors=env.group_descriptors(), or set DDPGConfig(descriptors=False)")
    return torch.as_tensor(descriptors, dtype=torch.float32)


def _with_descriptors(per_group: Tensor, desc: Tensor) -> Tensor:
    """[per-group embedding, descriptors] for a batch (B, A, ·)."""
    return torch.cat([per_group, desc.unsqueeze(0).expand(len(per_group), -1, -1)], -1)


def encode(encoder: MultiStageEncoder, states: Tensor) -> Encoding:
    """Encode a batch, running the m-GNN once per *distinct* state (replayed batches repeat the start state)."""
    flat = states.reshape(states.shape[0], -1)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    enc = encoder(unique.view(-1, *states.shape[1:]))
    return dataclasses.replace(enc, g=enc.g[inverse], groups=enc.groups[inverse])


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


def gnn_ddpg(hierarchy: Hierarchy, group_ids: list[int], num_groups: int, cfg: DDPGConfig, seed: int = 0,
             descriptors: np.ndarray | None = None) -> DDPG:
    """The GNN-RL agent: DDPG with m-GNN actor and critic, initialised from `seed` (`descriptors`: one row per
    prunable group, read by per-group heads when `cfg.descriptors`)."""
    torch.manual_seed(seed)
    actor = Actor(hierarchy, group_ids, num_groups, cfg, descriptors)
    return DDPG(actor, Critic(hierarchy, group_ids, num_groups, cfg, descriptors), cfg)


class DDPG:
    """Actor, critic, their targets and optimisers, and one readable `update`."""

    def __init__(self, actor: nn.Module, critic: nn.Module, cfg: DDPGConfig) -> None:
        """`critic` needs `embed(states)` (the state part of its input) and `q(embedding, actions)`."""
        self.cfg = cfg
        self.actor, self.critic = actor, critic
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)

    @property
    def device(self) -> torch.device:
        """Where the networks live (move them with `to`); states and actions come and go as numpy arrays."""
        return next(self.actor.parameters()).device

    def to(self, device: torch.device | str) -> DDPG:
        """Move the actor, the critic and their targets to `device` (the optimisers follow their parameters)."""
        for net in (self.actor, self.critic, self.actor_target, self.critic_target):
            net.to(device)
        return self

    def act(self, state: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """The actor's ratios for one state, with truncated-normal exploration noise of std `sigma`; with
        `candidates` > 1, the best of that many noisy draws by the critic's Q."""
        with torch.no_grad():
            s = torch.as_tensor(state, device=self.device).unsqueeze(0)
            mu = self.actor(s)[0].double().cpu().numpy()
            draws = [truncated_normal(mu, sigma, rng) for _ in range(self.cfg.candidates)]
            if len(draws) == 1:
                return draws[0]
            a = torch.as_tensor(np.stack(draws), dtype=torch.float32, device=self.device)
            q = self.critic.q(self.critic.embed(s).expand(len(draws), -1), a)
        return draws[int(q.argmax())]

    def value(self, state: np.ndarray, action: np.ndarray) -> float:
        """The critic's Q of `action` in `state` (a diagnostic: does it predict the reward?)."""
        with torch.no_grad():
            s = torch.as_tensor(state, device=self.device).unsqueeze(0)
            a = torch.as_tensor(action, dtype=torch.float32, device=self.device).reshape(1, -1)
            return float(self.critic(s, a))

    def update(self, batch: Batch) -> dict[str, float]:
        """One DDPG step on a minibatch; returns the losses.

        The textbook update, minus work whose result is discarded: the target networks only run on the
        next states of non-terminal transitions (the others are multiplied by 0), and the actor loss reads
        the critic's state embedding without gradient (only the actor is stepped on that loss; the critic's
        gradients from it would be zeroed before they are used). tests/test_agent.py checks the equivalence.
        """
        batch = batch.to(self.device)
        target = batch.rewards.clone()
        live = batch.dones == 0
        if bool(live.any()):
            with torch.no_grad():
                nxt = batch.next_states[live]
                target[live] += self.cfg.discount * self.critic_target(nxt, self.actor_target(nxt))
        q = self.critic(batch.states, batch.actions)
        critic_loss = F.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        with torch.no_grad():
            g = self.critic.embed(batch.states)
        actor_loss = -self.critic.q(g, self.actor(batch.states)).mean()
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
