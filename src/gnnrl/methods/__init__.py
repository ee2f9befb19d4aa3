"""Search methods that share one environment, episode loop, evaluation cache, outputs and resume.

Each method is a small module: it chooses every episode's pruning policy (`rollout`) and learns from the reward
(`learn`); `gnnrl.search.search` runs the episodes, keeps the records, checkpoints and writes the outputs.

- `gnnrl`: the paper's agent, DDPG with m-GNN actor and critic (after a warm-up of random episodes);
- `random`: random policies through the same env (the paper's RS), exactly the `gnnrl` warm-up's draws;
- `amc`: AMC (He et al. 2018): DDPG with plain MLPs over a per-group state vector, one group per step;
- `uniform`, `uniform-internal`, `l1-global`: one-shot heuristics (one episode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GnnrlError
from .base import Method, Rollout, step_until_done

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv

METHODS = ("gnnrl", "random", "uniform", "uniform-internal", "l1-global", "amc")
ONE_SHOT = ("uniform", "uniform-internal", "l1-global")
LEARNING = ("gnnrl", "amc")
"""methods with a warm-up and an agent"""


def make_method(env: DNNGraphEnv, config: SearchConfig) -> Method:
    """The method named by `config.method`, built for `env`."""
    from .amc import AMC
    from .heuristic import OneShot
    from .rl import GnnRL, RandomSearch

    if config.method == "gnnrl":
        return GnnRL(env, config)
    if config.method == "random":
        return RandomSearch()
    if config.method == "amc":
        return AMC(env, config)
    if config.method in ONE_SHOT:
        return OneShot(env, config.method)
    raise GnnrlError(f"unknown search method {config.method!r}; choose one of {', '.join(METHODS)}")


__all__ = ["LEARNING", "METHODS", "ONE_SHOT", "Method", "Rollout", "make_method", "step_until_done"]
