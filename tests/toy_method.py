"""A search method of one's own, written as a user would: this one file is all it takes (tests/test_methods.py runs
it through `search`, resume and the CLI). Hill climbing: each episode perturbs the best ratios found so far."""

from __future__ import annotations

from typing import Any

import numpy as np

from gnnrl.methods import Rollout, register_method


@register_method("hill-climb", help="perturb the best ratios found so far (an example of one's own method)")
class HillClimb:
    """Keep the best per-group action; play it with Gaussian noise; the env lands every action on the budget."""

    def __init__(self, env: Any, config: Any) -> None:
        self.best = np.full(len(env.group_ids), 0.5)
        self.best_reward = -np.inf

    def rollout(self, env: Any, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """One whole policy per episode."""
        action = np.clip(self.best + rng.normal(0.0, 0.2, self.best.shape), 0.0, 1.0)
        reward, info = env.finish(env.land(action))
        return Rollout(reward, info, "agent", steps=[action])

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Move to the episode's action if it scored best."""
        if rollout.reward > self.best_reward:
            self.best, self.best_reward = rollout.steps[0], rollout.reward
        return {"best_reward": float(self.best_reward)}

    def state_dict(self) -> dict[str, Any]:
        """The best action and its reward: all a resumed search needs."""
        return {"best": self.best.tolist(), "best_reward": float(self.best_reward)}

    def load_state_dict(self, state: dict[str, Any], env: Any) -> None:
        """Restore `state_dict`."""
        self.best, self.best_reward = np.array(state["best"]), state["best_reward"]
