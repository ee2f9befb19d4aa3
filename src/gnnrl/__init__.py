"""gnnrl: topology-aware channel pruning of PyTorch CNNs with multi-stage GNN embeddings and RL (GNN-RL)."""

from .cost import Cost, count_flops
from .data import Cifar, Split, load_cifar, load_split
from .errors import DataError, GnnrlError, ModelError, WeightsError
from .evaluate import EvalResult, evaluate
from .groups import ChannelGroup, channel_groups
from .models import create, list_models
from .prune import PrunedModel, PruneError, cost_after, prune, ratios_for_budget
from .saving import load, save
from .search import SearchConfig, SearchResult, search
from .trace import Graph, TraceError, register_leaf, trace

__version__ = "0.1.0"

__all__ = [
    "ChannelGroup",
    "Cifar",
    "Cost",
    "DataError",
    "EvalResult",
    "GnnrlError",
    "Graph",
    "ModelError",
    "PruneError",
    "PrunedModel",
    "SearchConfig",
    "SearchResult",
    "Split",
    "TraceError",
    "WeightsError",
    "channel_groups",
    "cost_after",
    "count_flops",
    "create",
    "evaluate",
    "list_models",
    "load",
    "load_cifar",
    "load_split",
    "prune",
    "ratios_for_budget",
    "register_leaf",
    "save",
    "search",
    "trace",
]
