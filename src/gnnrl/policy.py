"""A searched policy as a file (`policy.json`), and replaying it on a model: the same channels as in the search.

A policy stores, per prunable channel group, how many channels the search removed (`removed`), plus who it
belongs to: the model spec, the traced input shape and a fingerprint of the weights. The channels removed are
the least important first in the order `prune.removal_orders` gives, so replaying on the same weights removes
exactly the channels the search evaluated; on other weights the order (and the result) would differ silently,
so that is refused.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .cost import Cost
from .errors import GnnrlError
from .identity import weights_fingerprint
from .prune import Channels, PrunedModel, PrunePlan, channels
from .trace import TracedModel, trace


class PolicyError(GnnrlError):
    """A policy file that is missing, unreadable, or made for another model or other weights."""


def read_policy(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A policy dict from a `policy.json` path (or the dict itself), checked for the keys a replay needs."""
    if isinstance(source, dict):
        policy = source
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "policy.json"
        if not path.is_file():
            raise PolicyError(f"policy file {path} not found (a search writes RUN/policy.json)")
        try:
            policy = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PolicyError(f"{path} is not a valid policy.json ({e}); rerun the search or restore the file") from e
    if not isinstance(policy, dict) or not isinstance(policy.get("removed"), dict):
        raise PolicyError("not a gnnrl policy: it has no 'removed' table of channels per group")
    _check_schema(policy)
    return policy


IDENTITY_KEYS = ("model", "input_shape", "weights_sha256")
"""what a replay checks the policy against; a policy without them could be replayed on anything"""


def _check_schema(policy: dict[str, Any]) -> None:
    """Every value a replay reads has its type: group ids and channel counts are integers, ratios numbers."""
    missing = [k for k in IDENTITY_KEYS if k not in policy]
    if missing:
        raise PolicyError(f"this policy lacks {', '.join(missing)} (what it was searched for), so it cannot be "
                          "checked against the model. Restore the file a search wrote")
    for table in ("removed", "ratios"):
        values = policy.get(table)
        if table == "ratios" and values is None:
            continue  # a hand-written policy may give channel counts only
        if not isinstance(values, dict):
            raise PolicyError(f"the policy's {table!r} must be a table of group id → value, not {values!r}")
        for key, v in values.items():
            if not (isinstance(key, str) and key.isdigit()):
                raise PolicyError(f"the policy's {table!r} has group id {key!r}: group ids are integers ('0', '3')")
            if table == "removed" and (isinstance(v, bool) or not isinstance(v, int)):
                raise PolicyError(f"the policy removes {json.dumps(v)} channels from group {key}: channel counts are "
                                  "whole numbers (JSON integers, not 3.7 or \"5\")")
            if table == "ratios" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1):
                raise PolicyError(f"the policy's ratio {json.dumps(v)} for group {key} is not a number in [0, 1)")
    if policy.get("ratios") is not None and set(policy["ratios"]) != set(policy["removed"]):
        raise PolicyError("the policy's 'ratios' and 'removed' name different groups; edit 'removed' (channels per "
                          "group) and delete 'ratios', or make them agree")


def unfinished(policy: dict[str, Any]) -> str | None:
    """A line saying the policy comes from a search that stopped early (None when it finished or is hand-made)."""
    from .methods import method_names, method_spec

    run, want = policy.get("episodes_run"), policy.get("episodes_total")
    if want is None:  # written before episodes_total: a one-shot method runs one episode whatever `episodes` says
        one_shot = method_spec(policy["method"]).one_shot if policy.get("method") in method_names() else False
        want = 1 if one_shot else (policy.get("config") or {}).get("episodes")
    if isinstance(run, int) and isinstance(want, int) and run < want:
        return (f"this policy comes from a search that stopped after {run} of {want} episodes: it is the best "
                "found so far, not the search's result (resume the search to finish it)")
    return None


def check_policy(policy: dict[str, Any], model: nn.Module, graph: TracedModel, group_ids: list[int],
                 sizes: list[int]) -> None:
    """Refuse a policy made for another architecture, class count or weights, naming what differs."""
    spec = getattr(model, "gnnrl_spec", None)
    want = policy.get("model")
    if (want is None) != (spec is None):
        raise PolicyError("this policy was searched for " + ("a model not built by gnnrl.create" if want is None else
                          f"zoo model {want.get('name')!r}") + ", and this model is " +
                          (f"zoo model {spec.name!r}" if spec is not None else "not from gnnrl.create"))
    if spec is not None and want is not None:
        have = asdict(spec)
        diff = [k for k in ("name", "num_classes", "kwargs") if want.get(k) != have.get(k)]
        if diff:
            raise PolicyError("this policy was searched for another model: " + ", ".join(
                f"{k} {want.get(k)!r} (policy) vs {have.get(k)!r} (model)" for k in diff))
    stored = policy["weights_sha256"]
    have_sha = weights_fingerprint(model)
    if stored != have_sha:
        raise PolicyError(f"this policy was searched on other weights (sha256 {stored[:12]}…, these are "
                          f"{have_sha[:12]}…): channel importances differ, so it would not remove "
                          "the channels the search evaluated. Pass the --weights the search used.")
    removed = {int(k): int(v) for k, v in policy["removed"].items()}
    if sorted(removed) != sorted(group_ids):
        raise PolicyError(f"this policy names channel groups {sorted(removed)}, the model has prunable groups "
                          f"{sorted(group_ids)}: it was made for another architecture")
    bad = [g for g, n in zip(group_ids, sizes, strict=True) if not 0 <= removed[g] < n]
    if bad:
        raise PolicyError(f"this policy removes a negative count or at least as many channels as groups {bad} have "
                          "(each keeps one or more): it was edited wrongly or made for another model")
    ratios = policy.get("ratios")
    if ratios is not None:
        # the ratios are derived from `removed`; an edit to one alone would be half-read, so refuse the mix
        off = [g for g, n in zip(group_ids, sizes, strict=True) if abs(float(ratios[str(g)]) - removed[g] / n) > 1e-6]
        if off:
            g = off[0]
            n = sizes[group_ids.index(g)]
            raise PolicyError(f"the policy's 'ratios' and 'removed' disagree for groups {off} (group {g}: ratio "
                              f"{ratios[str(g)]} vs {removed[g]} of {n} channels removed). Edit 'removed' (what is "
                              "replayed) and delete 'ratios', or make them agree")


def apply_policy(model: nn.Module, policy: str | Path | dict[str, Any], example_input: torch.Tensor | None = None,
                 importance: str | None = None) -> PrunedModel:
    """Prune `model` exactly as a search's policy says (the same channels the search evaluated)."""
    policy = read_policy(policy)
    if (early := unfinished(policy)) is not None:
        warnings.warn(early, UserWarning, stacklevel=2)
    ch, plan = _planned(model, policy, example_input, importance)
    return ch.pruned(plan)


def policy_cost(model: nn.Module, policy: str | Path | dict[str, Any], example_input: torch.Tensor | None = None,
                importance: str | None = None) -> Cost:
    """MACs and params of the network `apply_policy` would give, computed from the graph without building it."""
    ch, plan = _planned(model, read_policy(policy), example_input, importance)
    return ch.cost_after(plan)


def _planned(model: nn.Module, policy: dict[str, Any], example_input: torch.Tensor | None,
             importance: str | None) -> tuple[Channels, PrunePlan]:
    """The traced model's channel analysis and the plan that removes what the (checked) policy says."""
    if example_input is None:
        shape = policy.get("input_shape") or [1, 3, 32, 32]
        example_input = torch.zeros(1, *shape[1:])
    graph = trace(model.eval(), example_input)
    ch = channels(graph)
    group_ids = ch.prunable
    importance = importance or (policy.get("config") or {}).get("env", {}).get("importance", "l1")
    orders = ch.orders(group_ids, importance)
    check_policy(policy, model, graph, group_ids, [len(o) for o in orders])
    removed = np.array([int(policy["removed"][str(g)]) for g in group_ids])
    return ch, ch.plan_removed(orders, removed)


def policy_for_ratios(graph: TracedModel, model: nn.Module, ratios: dict[int, float], importance: str = "l1"
                      ) -> dict[str, Any]:
    """A policy dict (as a search writes it) for per-group ratios, e.g. a uniform baseline at a budget."""
    ch = channels(graph)
    group_ids = ch.prunable
    orders = ch.orders(group_ids, importance)
    removed = {str(g): int(np.floor(ratios.get(g, 0.0) * len(o) + 0.5)) for g, o in zip(group_ids, orders, strict=True)}
    removed = {g: min(r, len(o) - 1) for (g, r), o in zip(removed.items(), orders, strict=True)}
    plan = ch.plan_removed(orders, list(removed.values()))
    macs, params = ch.fractions_after(plan)
    spec = getattr(model, "gnnrl_spec", None)
    return {"model": asdict(spec) if spec is not None else None, "input_shape": list(graph.example_input.shape),
            "weights_sha256": weights_fingerprint(model), "macs_ratio": macs,
            "params_ratio": params, "removed": removed,
            "ratios": {g: r / len(o) for (g, r), o in zip(removed.items(), orders, strict=True)},
            "config": {"env": {"importance": importance}}}
