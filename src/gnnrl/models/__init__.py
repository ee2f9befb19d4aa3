"""Model zoo: `create(name, num_classes, weights)` for CIFAR models and every torchvision classifier."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelError
from .cifar_resnet import CifarResNet
from .mobilenet import MobileNetV1, MobileNetV2
from .shufflenet import ShuffleNetV1, ShuffleNetV2, channel_shuffle
from .vgg import CifarVGG

__all__ = ["CIFAR_MODELS", "ModelSpec", "channel_shuffle", "create", "input_size", "list_models"]

# CIFAR models (32×32 inputs). Names that torchvision also uses carry a `cifar_` prefix.
CIFAR_MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": partial(CifarResNet, d) for d in (20, 32, 44, 56, 110)},
    "cifar_vgg16_bn": CifarVGG,
    "cifar_mobilenet_v1": MobileNetV1,
    "cifar_mobilenet_v2": MobileNetV2,
    "cifar_shufflenet_v1": ShuffleNetV1,
    "cifar_shufflenet_v2": ShuffleNetV2,
}
_ALIASES = {f"cifar_resnet{d}": f"resnet{d}" for d in (20, 32, 44, 56, 110)} | {
    "vgg16_cifar": "cifar_vgg16_bn", "mobilenet_v1": "cifar_mobilenet_v1", "shufflenet_v1": "cifar_shufflenet_v1",
}


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds an architecture: zoo name, class count and extra constructor arguments."""

    name: str
    num_classes: int = 10
    kwargs: dict[str, Any] = field(default_factory=dict)


def _torchvision_names() -> list[str]:
    try:
        import torchvision
    except ImportError:
        return []
    return list(torchvision.models.list_models(module=torchvision.models))


def list_models() -> list[str]:
    """All names `create` accepts: the CIFAR zoo first, then torchvision classifiers (if installed)."""
    return list(CIFAR_MODELS) + [n for n in _torchvision_names() if n not in CIFAR_MODELS]


TIMM_PREFIX = "timm/"
"""`create("timm/<name>")` builds a model of timm's zoo (the optional extra `gnnrl-compress[timm]`)"""


def _timm() -> Any:
    try:
        import timm
    except ImportError as e:
        raise ModelError("timm models need timm: pip install 'gnnrl-compress[timm]'") from e
    return timm


def canonical_name(name: str) -> str:
    """Resolve aliases; raise `ModelError` with close matches for an unknown name."""
    if name.startswith(TIMM_PREFIX):
        timm, short = _timm(), name[len(TIMM_PREFIX):]
        if not timm.is_model(short):
            close = difflib.get_close_matches(short, timm.list_models(), n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
            raise ModelError(f"timm has no model {short!r}.{hint}")
        return name
    name = _ALIASES.get(name, name)
    if name in CIFAR_MODELS or name in _torchvision_names():
        return name
    known = list_models() + list(_ALIASES)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    tv = "" if _torchvision_names() else " (torchvision is not installed, so only the CIFAR zoo is available)"
    raise ModelError(f"unknown model {name!r}.{hint} Run `gnnrl models` for the full list{tv}.")


def input_size(name: str) -> int:
    """Side length of the images a model expects: 32 for the CIFAR zoo, 224 for torchvision models."""
    return 32 if canonical_name(name) in CIFAR_MODELS else 224


def create(
    name: str,
    num_classes: int = 10,
    weights: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model by name (torchvision names included), randomly initialised unless `weights` is given.

    `weights`: a checkpoint path, or "pretrained" for the shared pre-trained CIFAR checkpoint the CLI uses by
    default (`gnnrl.paths.default_weights`). Like torchvision's builders, no `weights` means random weights; the CLI
    instead defaults to "pretrained", because compressing an untrained network is never what a user means.
    The returned module carries `gnnrl_spec` (a `ModelSpec`) so that it can be rebuilt later.
    """
    name = canonical_name(name)
    if isinstance(weights, str) and weights == "pretrained":
        from ..paths import default_weights

        found = default_weights(name, "cifar100" if num_classes == 100 else "cifar10")
        if found is None:
            raise ModelError(f"no pre-trained checkpoint for {name!r} was found (looked in $GNNRL_MODELS and "
                             "../shared/models); pass a checkpoint path as weights=")
        weights = found
    try:
        if name in CIFAR_MODELS:
            model = CIFAR_MODELS[name](num_classes=num_classes, **kwargs)
        elif name.startswith(TIMM_PREFIX):  # never downloads: weights come from `weights`, a local file
            model = _timm().create_model(name[len(TIMM_PREFIX):], pretrained=False, num_classes=num_classes, **kwargs)
        else:
            import torchvision

            model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ModelError(f"invalid arguments for {name}: {e}") from e
    model.gnnrl_spec = ModelSpec(name, num_classes, dict(kwargs))  # type: ignore[assignment]
    if weights is not None:
        from ..weights import load_weights

        load_weights(model, weights, allow_pickle=allow_pickle, candidates=CIFAR_MODELS)
    return model
