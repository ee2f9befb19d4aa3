"""Settings of a search, below both the loop that runs it (`gnnrl.search`) and the methods it runs
(`gnnrl.methods`), which read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .agent import DDPGConfig
from .env import EnvConfig


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search; the defaults are the paper's (5k validation images from test, 30 + 150 episodes)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """budget, metric, step cap, BN recalibration…"""
    agent: DDPGConfig = field(default_factory=DDPGConfig)
    episodes: int = 180
    """total episodes, warm-up included"""
    warmup: int = 30
    """episodes of uniform random actions before the agent acts and learns"""
    seed: int = 0
    val_from: str = "test"
    val_size: int = 5000
    baseline_decay: float = 0.95
    """moving reward baseline: b ← decay·b + (1 − decay)·reward"""
    method: str = "gnnrl"
    """gnnrl, random, uniform, uniform-internal, l1-global or amc (see gnnrl.methods)"""
    round_size: int = 1
    """episodes proposed before their policies are evaluated (together, e.g. on parallel workers) and learnt
    from; 1 is the paper's loop. The result depends on it, never on how many workers evaluate a round."""

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SearchConfig:
        """Inverse of `dataclasses.asdict` (as stored in policy.json and checkpoints)."""
        return SearchConfig(**{**d, "env": EnvConfig(**d["env"]), "agent": DDPGConfig(**d["agent"])})
