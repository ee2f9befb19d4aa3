"""What every search method provides, and the step loop the env-driven methods share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..env import DNNGraphEnv

Step = tuple[np.ndarray, np.ndarray, np.ndarray, bool, tuple[np.ndarray, np.ndarray]]
"""(observation, action, next observation, done, (channels removed before, after)): one env transition"""


@dataclass
class Rollout:
    """One episode as a method played it: the reward, the env's final info and what the method needs to learn."""

    reward: float
    info: dict[str, Any]
    phase: str
    """'warmup', 'agent', 'random' or 'heuristic' (history.jsonl and the plots show it)"""
    steps: list[Any] = field(default_factory=list)
    sigma: float = 0.0
    """std of the exploration noise the actions were drawn with"""
    q_predicted: float | None = None
    """the critic's estimate of the reward of the episode's first action, made before the episode's reward was
    known (a diagnostic of whether the critic learns)"""


class Method(Protocol):
    """A search method: chooses each episode's policy and learns from its reward (one-shot heuristics, listed in
    `gnnrl.methods.ONE_SHOT`, run a single episode)."""

    def rollout(self, env: DNNGraphEnv, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """Play one episode on a freshly reset `env` (whose first observation is `obs`) to its end."""
        ...

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Learn from a finished episode; returns the losses to record (empty when nothing learns)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed search needs to continue exactly."""
        ...

    def load_state_dict(self, state: dict[str, Any], env: DNNGraphEnv) -> None:
        """Restore `state_dict` (observations are rebuilt with `env`)."""
        ...


def step_until_done(env: DNNGraphEnv, obs: np.ndarray, choose: Callable[[np.ndarray], np.ndarray]
                    ) -> tuple[list[Step], float, dict[str, Any]]:
    """Step `env` with `choose(observation)` until the episode ends: the transitions, final reward and info."""
    steps: list[Step] = []
    done, reward, info = False, 0.0, {}
    while not done:
        action = choose(obs)
        before = env.removed.copy()
        nxt, reward, done, _, info = env.step(action)
        steps.append((obs, action, nxt, done, (before, env.removed.copy())))
        obs = nxt
    return steps, reward, info


class MovingBaseline:
    """b ← decay·b + (1 − decay)·reward; the agents learn from reward − b (AMC's reward normalisation)."""

    def __init__(self, decay: float) -> None:
        self.decay, self.value = decay, None

    def update(self, reward: float) -> float:
        """Move the baseline by `reward` and return the advantage reward − b (after the move, as before)."""
        self.value = reward if self.value is None else self.decay * self.value + (1 - self.decay) * reward
        return reward - self.value
