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
    """Write a pruned model (or any `gnnrl.create` model) to one `.safetensors` file."""
    module = model.module if isinstance(model, PrunedModel) else model
    lineage: Lineage | None = getattr(module, "gnnrl_lineage", None)
    if lineage is None:
        spec = getattr(module, "gnnrl_spec", None)
        if spec is None:
            raise WeightsError("gnnrl.save needs a model built by gnnrl.create (or pruned from one): it stores the "
                               "zoo name to rebuild the architecture. Save other models' state_dict with safetensors.")
        lineage = Lineage(spec=asdict(spec), input_shape=(), rounds=())
    if lineage.spec is None:
        raise WeightsError("this pruned model's base was not built by gnnrl.create, so it cannot be rebuilt by name")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"format": FORMAT, "spec": lineage.spec, "input_shape": list(lineage.input_shape),
            "rounds": [list(r) for r in lineage.rounds]}
    save_file(state, str(path), metadata={"gnnrl": json.dumps(meta)})
    return path


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

    return (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("num_classes"), int)
            and isinstance(spec.get("kwargs", {}), dict) and ints(shape)
            and isinstance(rounds, list) and all(ints(r) for r in rounds) and (not rounds or len(shape) >= 2))


def load(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save`: base architecture, pruning rounds, then the weights (strictly)."""
    from .models import create
    from .weights import load_weights

    lineage = read_lineage(path)
    spec = lineage.spec or {}
    base = create(spec["name"], num_classes=spec["num_classes"], **spec.get("kwargs", {}))
    module = replay(base, lineage) if lineage.rounds else base
    load_weights(module, path)
    return module
