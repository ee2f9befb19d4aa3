"""AMC (He et al. 2018) as a peer baseline: the paper's own comparison row.

DDPG with plain MLPs (no graph): one step per prunable group in topological order, each step's state AMC's
per-layer vector read per group — position, width, the group's share of the MACs, the share of the budget
metric removed so far, the share of MACs in the groups still to come, and the previous action. The action is
the fraction of the group's channels to remove. When every group has acted, the env's landing scales the
ratios so that the budget is met exactly as every other method's (AMC instead clips each action to keep the
budget reachable), and the network is evaluated.

Like AMC, every step of an episode is stored with the episode's reward (minus a moving baseline) and one
update follows every step after the warm-up. Each step is stored as terminal, so that Q estimates that reward
rather than summing it once per remaining step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..agent import DDPG, ReplayBuffer
from ..config import AGENT_FIELDS
from .base import MovingBaseline, Rollout
from .registry import register_method
from .rl import ddpg_updates, noise_sigma

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv

GNN_AGENT_ONLY = frozenset({"head", "critic", "descriptors", "pretrain_updates", "channels", "gnn_layers"})
"""settings only GNN-RL's m-GNN actor and critic read (agent.Actor / Critic), not AMC's MLPs"""

FEATURES = ("position", "width", "macs share", "removed so far", "macs to come", "previous action")


class MLPActor(nn.Module):
    """AMC's actor: state → one ratio in (0, 1)."""

    def __init__(self, n_state: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_state, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, states: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(states))


class MLPCritic(nn.Module):
    """AMC's critic: (state, action) → Q."""

    def __init__(self, n_state: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_state + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.q(states, actions)

    def embed(self, states: Tensor) -> Tensor:
        """The state vector is its own embedding."""
        return states

    def q(self, states: Tensor, actions: Tensor) -> Tensor:
        """Q of `actions` in `states`."""
        return self.mlp(torch.cat([states, actions], -1)).squeeze(-1)


@register_method("amc", warmup=True, agent_fields=AGENT_FIELDS - GNN_AGENT_ONLY,
                 help="AMC (He et al. 2018): DDPG with plain MLPs, one group per step")
class AMC:
    """DDPG over AMC's per-layer state, one group per step."""

    def __init__(self, env: DNNGraphEnv, config: SearchConfig) -> None:
        self.config = config
        self.static = env.group_descriptors()
        torch.manual_seed(config.seed)
        hidden = config.agent.hidden
        self.agent = DDPG(MLPActor(len(FEATURES), hidden), MLPCritic(len(FEATURES), hidden), config.agent)
        self.buffer = ReplayBuffer(config.agent.replay_size, (len(FEATURES),), 1)
        self.baseline = MovingBaseline(config.baseline_decay)

    def state(self, env: DNNGraphEnv, t: int, ratios: np.ndarray) -> np.ndarray:
        """AMC's state before group `t` acts, the groups before it having removed `ratios[:t]`."""
        done = np.zeros(len(ratios), dtype=np.int64)
        done[:t] = np.floor(ratios[:t] * env.sizes[:t] + 0.5)
        removed_so_far = 1.0 - env.metric_of(np.minimum(done, env.sizes - 1)) / env.base
        position, width, share, to_come = self.static[t][:4]  # AMC's own state: no latency columns
        return np.array([position, width, share, removed_so_far, to_come, ratios[t - 1] if t else 0.0],
                        dtype=np.float32)

    def rollout(self, env: DNNGraphEnv, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """Every group acts once, in order; the ratios are landed on the budget and evaluated."""
        warm = episode < self.config.warmup
        sigma = noise_sigma(self.config, episode)  # the GNN-RL agent's schedule
        ratios = np.zeros(len(env.group_ids))
        states = []
        for t in range(len(ratios)):
            s = self.state(env, t, ratios)
            ratios[t] = rng.random() if warm else self.agent.act(s, sigma, rng)[0]
            states.append(s)
        reward, info = env.finish(env.land(ratios))
        steps = [(s, np.array([a]), s, True, None) for s, a in zip(states, ratios, strict=True)]
        return Rollout(reward, info, "warmup" if warm else "agent", steps, sigma)

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Store every step with the episode's advantage; after the warm-up, one update per step."""
        advantage = self.baseline.update(rollout.reward)
        for s, a, s2, d, _ in rollout.steps:
            self.buffer.add(s, a, advantage, s2, d)
        return ddpg_updates(self.agent, self.buffer, 0 if episode < self.config.warmup else len(rollout.steps), rng)

    def state_dict(self) -> dict[str, Any]:
        """Agent, optimisers, replay buffer and the reward baseline."""
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "baseline": self.baseline.value}

    def load_state_dict(self, state: dict[str, Any], env: DNNGraphEnv) -> None:
        """Restore `state_dict`."""
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.baseline.value = state["baseline"]
