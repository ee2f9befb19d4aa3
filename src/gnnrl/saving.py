"""Saving and loading pruned models without pickle: safetensors weights + JSON lineage in its metadata.

The file holds the pruned weights and, under the metadata key ``gnnrl``, the base model's spec (zoo name,
classes, arguments), the traced input shape and the kept units of every pruning round. `load` rebuilds
the base model, replays the rounds (which re-derives the channel counts and pad widths) and loads weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import WeightsError
from .prune import Lineage, PrunedModel, replay

FORMAT = "gnnrl-pruned-v1"


def save(model: PrunedModel | nn.Module, path: str | Path) -> Path:
    """Write a pruned model (any `nn.Module`, pruned or not) to one `.safetensors` file."""
    module = model.module if isinstance(model, PrunedModel) else model
    lineage: Lineage | None = getattr(module, "gnnrl_lineage", None)
    if lineage is None:
        spec = getattr(module, "gnnrl_spec", None)
        lineage = Lineage(spec=asdict(spec) if spec is not None else None, input_shape=(), rounds=())
    # a zoo model is rebuilt by name; any other model by `load(path, model=<its unpruned instance>)`: the file
    # stores what was kept, never the class
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"format": FORMAT, "spec": lineage.spec, "input_shape": list(lineage.input_shape),
            "rounds": [list(r) for r in lineage.rounds]}
    save_file(state, str(path), metadata={"gnnrl": json.dumps(meta)})
    return path


def is_pruned_file(path: str | Path) -> bool:
    """Whether `path` is a safetensors file written by `save` for a pruned model (it rebuilds its own shapes)."""
    if Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return False
    try:
        return bool(read_lineage(path).rounds)
    except WeightsError:
        return False


def read_lineage(path: str | Path) -> Lineage:
    """The lineage stored in a file written by `save`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("gnnrl")
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path} is not a pruned model written by gnnrl (gnnrl prune / compress / gnnrl.save): "
                           f"{e}") from e
    if raw is None:
        raise WeightsError(f"{path} has no gnnrl metadata: it was not written by gnnrl.save (use --weights for "
                           "plain state dicts)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path} has damaged gnnrl metadata ({e.msg}); re-save the model with gnnrl.save") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise WeightsError(f"{path} is in format {fmt!r}; this gnnrl reads {FORMAT}")
    if not _valid_meta(meta):
        raise WeightsError(f"{path} has damaged gnnrl metadata (its spec, input_shape or rounds are missing or of the "
                           "wrong type); re-save the model with gnnrl.save")
    return Lineage(spec=meta["spec"], input_shape=tuple(meta["input_shape"]),
                   rounds=tuple(tuple(r) for r in meta["rounds"]))


def _valid_meta(meta: dict) -> bool:
    """The lineage fields `load` reads are all there, with their types (a hand edit or bit rot fails here)."""
    spec, shape, rounds = meta.get("spec"), meta.get("input_shape"), meta.get("rounds")

    def ints(xs: object) -> bool:
        return isinstance(xs, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in xs)

    known = spec is None or (isinstance(spec, dict) and isinstance(spec.get("name"), str)
                             and isinstance(spec.get("num_classes"), int) and isinstance(spec.get("kwargs", {}), dict))
    return (known and ints(shape)
            and isinstance(rounds, list) and all(ints(r) for r in rounds) and (not rounds or len(shape) >= 2))


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a model saved by `save`: base architecture, pruning rounds, then the weights (strictly).

    The base is built by its zoo name, or is `model`: the user's own unpruned instance of the architecture (needed
    for a model not built by `gnnrl.create`; it is pruned in place of a fresh copy).
    """
    from .models import create
    from .weights import load_weights

    lineage = read_lineage(path)
    spec = lineage.spec
    if model is None and spec is None:
        raise WeightsError(f"{path} was pruned from a model not built by gnnrl.create: rebuild it on your own "
                           "unpruned network with gnnrl.load(path, model=YourNet())")
    base = model if model is not None else create(spec["name"], num_classes=spec["num_classes"],  # type: ignore[index]
                                                  **spec.get("kwargs", {}))  # type: ignore[union-attr]
    module = replay(base.eval(), lineage) if lineage.rounds else base
    load_weights(module, path)
    return module
