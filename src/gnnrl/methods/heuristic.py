"""One-shot baselines a practitioner tries first: each is one deterministic policy, landed on the budget.

- `uniform`: one ratio for every prunable group, residual streams included;
- `uniform-internal`: the same ratio, but groups summed into a residual stream (`ChannelGroup.summed`, found by
  the channel analysis) are kept whole: what AMC and most ResNet pruning papers do. When the budget cannot be
  met without them, the landing lets every group help;
- `l1-global`: one global threshold on unit importance normalised by its group's mean, so that groups of
  different layer counts and widths compare; the threshold is the lowest that meets the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..env import uniform_removed
from .base import Rollout
from .registry import register_method

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv


def uniform_internal_removed(env: DNNGraphEnv) -> np.ndarray:
    """One ratio for the groups outside residual streams, landed on the budget."""
    internal = np.array([0.0 if env.analysis.groups[g].summed else 1.0 for g in env.group_ids])
    env.reset()
    return env.land(internal if internal.any() else np.ones(len(env.group_ids)))


def l1_global_removed(env: DNNGraphEnv) -> np.ndarray:
    """Remove every unit whose group-normalised importance is below one threshold, the lowest meeting the budget."""
    scores = env.channels.scores(env.config.importance)
    # env.order lists each group's removal steps least important first (a balanced group's step: one unit per
    # conv group, scored by their mean), so these are ascending
    step_scores = [scores[o].mean(1) if o.ndim == 2 else scores[o] for o in env.order]
    normed = [s / max(float(s.mean()), 1e-12) for s in step_scores]
    target = env.config.budget * env.base

    def removed_at(t: float) -> np.ndarray:
        return env.snap(np.minimum([int(np.searchsorted(s, t, side="left")) for s in normed], env.sizes - 1))

    lo, hi = 0.0, max(float(s[-1]) for s in normed) * 1.001
    for _ in range(50):
        mid = (lo + hi) / 2
        if env.metric_of(removed_at(mid)) > target:
            lo = mid
        else:
            hi = mid
    return removed_at(hi)


class OneShot:
    """A heuristic policy, evaluated once through the env."""

    def __init__(self, rule: Callable[[DNNGraphEnv], np.ndarray]) -> None:
        self.rule = rule

    def rollout(self, env: DNNGraphEnv, obs: np.ndarray, episode: int, rng: np.random.Generator) -> Rollout:
        """The heuristic's channels, evaluated."""
        reward, info = env.finish(self.rule(env))
        return Rollout(reward, info, "heuristic")

    def learn(self, rollout: Rollout, episode: int, rng: np.random.Generator) -> dict[str, float]:
        """Nothing to learn."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Nothing to keep."""
        return {}

    def load_state_dict(self, state: dict[str, Any], env: DNNGraphEnv) -> None:
        """Nothing to restore."""


RULES = {"uniform": (uniform_removed, "one ratio for every prunable group, residual streams included"),
         "uniform-internal": (uniform_internal_removed, "one ratio for the groups outside residual streams"),
         "l1-global": (l1_global_removed, "one threshold on group-normalised L1 importance")}


def _one_shot(rule: Callable[[DNNGraphEnv], np.ndarray]) -> Callable[[DNNGraphEnv, SearchConfig], OneShot]:
    return lambda env, config: OneShot(rule)


for _name, (_rule, _help) in RULES.items():
    register_method(_name, one_shot=True, help=_help)(_one_shot(_rule))
