"""Search methods that share one environment, episode loop, evaluation cache, outputs and resume.

Each method is one module that registers itself (`register_method`): it chooses every episode's pruning policy
(`rollout`) and learns from the reward (`learn`); `gnnrl.search.search` runs the episodes, keeps the records,
checkpoints and writes the outputs. A method of your own is one file with one decorated class; it is then a
`--method` choice, a `SearchConfig.method`, and resumes like the built-ins.

- `gnnrl`: the paper's agent, DDPG with m-GNN actor and critic (after a warm-up of random episodes);
- `random`: random policies through the same env (the paper's RS), exactly the `gnnrl` warm-up's draws;
- `uniform`, `uniform-internal`, `l1-global`: one-shot heuristics (one episode);
- `amc`: AMC (He et al. 2018): DDPG with plain MLPs over a per-group state vector, one group per step.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .base import Method, Rollout, step_until_done
from .registry import MethodSpec, method_names, method_spec, register_method, unregister_method

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv

# the built-in methods register themselves on import, in this order (the order of `method_names()`): gnnrl and
# random, then uniform, uniform-internal and l1-global, then amc
for _module in ("rl", "heuristic", "amc"):
    import_module(f".{_module}", __name__)


def make_method(env: DNNGraphEnv, config: SearchConfig) -> Method:
    """The method named by `config.method`, built for `env`."""
    return method_spec(config.method).build(env, config)


def __getattr__(name: str) -> tuple[str, ...]:
    # the name tuples of earlier versions, computed from the registry so that they include registered methods
    if name == "METHODS":
        return method_names()
    if name == "ONE_SHOT":
        return tuple(n for n in method_names() if method_spec(n).one_shot)
    if name == "LEARNING":
        return tuple(n for n in method_names() if method_spec(n).warmup)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Method", "MethodSpec", "Rollout", "make_method", "method_names", "method_spec", "register_method",
           "step_until_done", "unregister_method"]
