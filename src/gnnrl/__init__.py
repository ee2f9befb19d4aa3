"""gnnrl: topology-aware channel pruning of PyTorch CNNs with multi-stage GNN embeddings and RL (GNN-RL)."""

from .cost import Cost, count_flops
from .data import Cifar, Split, load_cifar, load_split
from .errors import DataError, GnnrlError, ModelError, WeightsError
from .evaluate import EvalResult, evaluate
from .models import create, list_models

__version__ = "0.1.0"

__all__ = [
    "Cifar", "Cost", "DataError", "EvalResult", "GnnrlError", "ModelError", "Split", "WeightsError",
    "count_flops", "create", "evaluate", "list_models", "load_cifar", "load_split",
]
