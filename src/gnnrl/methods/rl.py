"""The paper's GNN-RL agent, and random search through the same env (the agent's warm-up, run throughout).

Warm-up episodes take uniform random actions; later ones the actor's, with truncated-normal noise whose
std decays every episode (`DDPGConfig.candidates` draws per step, the critic's favourite taken). Every
transition goes to the replay buffer (intermediate rewards 0, the final one −error minus a moving baseline),
and after each post-warm-up episode the agent makes `DDPGConfig.updates_per_episode` DDPG updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..agent import DDPG, ReplayBuffer, gnn_ddpg
from ..config import AGENT_FIELDS
from .base import MovingBaseline, Rollout, step_until_done
from .registry import register_method

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv


def noise_sigma(config: SearchConfig, episode: int) -> float:
    """Exploration noise std of `episode`: 0 in the warm-up, then `noise_init` decaying every episode."""
    a, w = config.agent, config.warmup
    return 0.0 if episode < w else a.noise_init * a.noise_decay ** (episode - w)


def ddpg_updates(agent: DDPG, buffer: ReplayBuffer, n: int, rng: np.random.Generator) -> dict[str, float]:
    """`n` DDPG updates on minibatches from `buffer`: the mean of each loss (empty when `n` is 0)."""
    losses = [agent.update(buffer.sample(agent.cfg.batch_size, rng)) for _ in range(n)]
    return {k: float(np.mean([x[k] for x in losses])) for k in losses[0]} if losses else {}


def random_action(env: DNNGraphEnv, rng: np.random.Generator) -> np.ndarray:
    """One uniform random ratio per group: the warm-up's and random search's action."""
    return rng.random(len(env.group_ids))


@register_method("gnnrl", warmup=True, agent_fields=AGENT_FIELDS,
                 help="the paper's agent: DDPG whose actor and critic read the m-GNN embedding")
class GnnRL:
    """DDPG whose actor and critic read the network's graph through the m-GNN (paper §3.2)."""

    def __init__(self, env: DNNGraphEnv, config: SearchConfig) -> None:
        self.config = config
        self.agent = gnn_ddpg(env.hierarchy, env.group_ids, len(env.analysis.groups), config.agent, config.seed,
                              env.group_descriptors())
        # the buffer keeps, with every observation, the removed-channel counts it is computed from: checkpoints
        # store those (KBs) instead of the observations (up to 120 MB rewritten every episode on ResNet-56)
        self.buffer = ReplayBuffer(config.agent.replay_size, env.observation_space.shape, len(env.group_ids),
                                   key_dim=len(env.group_ids))
        self.baseline = MovingBaseline(config.baseline_decay)

    def rollout(self, env: DNNGraphEnv, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """Random actions in the warm-up, then the actor's with noise."""
        warm = episode < self.config.warmup
        sigma = noise_sigma(self.config, episode)
        if episode == self.config.warmup and self.config.agent.pretrain_updates and self.buffer.size:
            ddpg_updates(self.agent, self.buffer, self.config.agent.pretrain_updates, rng)
        steps, reward, info = step_until_done(
            env, obs, (lambda o: random_action(env, rng)) if warm else (lambda o: self.agent.act(o, sigma, rng)))
        q = self.agent.value(steps[0][0], steps[0][1])  # before learning from it: a prediction
        return Rollout(reward, info, "warmup" if warm else "agent", steps, sigma, q_predicted=q + self.baseline_now())

    def baseline_now(self) -> float:
        """The reward baseline the critic's Q is relative to (0 before the first episode)."""
        return self.baseline.value or 0.0

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Store the episode's transitions; after the warm-up, make the DDPG updates."""
        advantage = self.baseline.update(rollout.reward)
        for s, a, s2, d, keys in rollout.steps:
            self.buffer.add(s, a, advantage if d else 0.0, s2, d, keys)
        warm = episode < self.config.warmup
        return ddpg_updates(self.agent, self.buffer, 0 if warm else self.config.agent.updates_per_episode, rng)

    def state_dict(self) -> dict[str, Any]:
        """Agent, optimisers, replay buffer (as state keys) and the reward baseline."""
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "baseline": self.baseline.value}

    def load_state_dict(self, state: dict[str, Any], env: DNNGraphEnv) -> None:
        """Restore `state_dict`, rebuilding the replayed observations from their keys."""
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"], rebuild=env.observation)
        self.baseline.value = state["baseline"]


@register_method("random", help="random policies through the same env (the paper's RS)")
class RandomSearch:
    """Random policies through the env (paper's RS): exactly the draws of a `gnnrl` warm-up of the same seed."""

    def __init__(self, env: DNNGraphEnv | None = None, config: SearchConfig | None = None) -> None:
        """Nothing to build: the search's generator draws the policies."""

    def rollout(self, env: DNNGraphEnv, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """Uniform random ratios at every step until the budget is met."""
        steps, reward, info = step_until_done(env, obs, lambda o: random_action(env, rng))
        return Rollout(reward, info, "random", steps)

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Nothing to learn."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Nothing to keep: the search's generator holds the draws."""
        return {}

    def load_state_dict(self, state: dict[str, Any], env: DNNGraphEnv) -> None:
        """Nothing to restore."""
