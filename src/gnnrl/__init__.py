"""gnnrl: topology-aware channel pruning of PyTorch CNNs with multi-stage GNN embeddings and RL (GNN-RL)."""

import warnings as _warnings
from typing import Any as _Any

from ._version import __version__ as __version__
from .compress import CompressResult, compress
from .config import CompressConfig, ParallelConfig, SearchConfig, TrainConfig, finetune_config, quick_config
from .cost import Cost, count_flops
from .data import Cifar, Split, load_cifar, load_split
from .errors import DataError, GnnrlError, ModelError, WeightsError
from .evaluate import EvalResult, evaluate
from .finetune import finetune
from .groups import ChannelGroup, channel_groups
from .models import create, list_models
from .ops import register_op
from .policy import PolicyError, apply_policy
from .prune import Channels, PrunedModel, PruneError, channels, cost_after, prune, ratios_for_budget
from .saving import load, save
from .search import SearchResult, search
from .trace import TracedModel, TraceError, register_leaf, trace
from .train import TrainResult

__all__ = [
    "ChannelGroup",
    "Channels",
    "Cifar",
    "CompressConfig",
    "CompressResult",
    "Cost",
    "DataError",
    "EvalResult",
    "GnnrlError",
    "ModelError",
    "ParallelConfig",
    "PolicyError",
    "PruneError",
    "PrunedModel",
    "SearchConfig",
    "SearchResult",
    "Split",
    "TraceError",
    "TracedModel",
    "TrainConfig",
    "TrainResult",
    "WeightsError",
    "apply_policy",
    "channel_groups",
    "channels",
    "compress",
    "cost_after",
    "count_flops",
    "create",
    "evaluate",
    "finetune",
    "finetune_config",
    "list_models",
    "load",
    "load_cifar",
    "load_split",
    "prune",
    "quick_config",
    "ratios_for_budget",
    "register_leaf",
    "register_op",
    "save",
    "search",
    "trace",
]


def __getattr__(name: str) -> _Any:
    """Old names, still answered with a DeprecationWarning: `Graph` is `TracedModel` since the op registry."""
    if name == "Graph":
        _warnings.warn("gnnrl.Graph is now gnnrl.TracedModel; the old name will be removed", DeprecationWarning,
                       stacklevel=2)
        return TracedModel
    raise AttributeError(f"module 'gnnrl' has no attribute {name!r}")
