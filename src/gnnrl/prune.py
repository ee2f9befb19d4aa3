"""Physically removing channels: importance → plan (kept units) → sliced copy; analytic cost; budget scaling.

Four questions are kept apart (as in Torch-Pruning): which channels are coupled (`groups`), which to remove
(`unit_scores`, by importance), how many (the ratio per group — the agent's job) and how one layer is cut
(the `slice` and `cost` of its entry in the op registry, `gnnrl.ops`).
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import get_args

import numpy as np
import torch
from torch import fx, nn

from .config import Importance, check_budget
from .cost import Cost
from .errors import GnnrlError
from .groups import Analysis, ChannelGroup, analyze
from .ops.idmap import kept
from .trace import TracedModel, trace

IMPORTANCES: tuple[str, ...] = get_args(Importance)
Ratios = float | Mapping[int, float]


class PruneError(GnnrlError):
    """Invalid ratios, group ids or budgets."""


@dataclass(frozen=True)
class PrunePlan:
    """Which units survive: `keep[u]` per unit, and the kept unit indices per group (group-local order)."""

    keep: np.ndarray
    kept: dict[int, list[int]]
    ratios: dict[int, float]


@dataclass
class PrunedModel:
    """A physically smaller copy of a model, the plan that made it, and its cost before and after."""

    module: fx.GraphModule
    plan: PrunePlan
    cost: Cost
    base_cost: Cost

    @property
    def macs_ratio(self) -> float:
        return self.cost.macs / self.base_cost.macs


class Channels:
    """One traced model's channel analysis and what the pruner derives from it, built once per traced model
    (`channels(graph)`): its groups and units, unit importances and removal orders, the cost of any plan without
    building it, and a plan applied. The module-level functions below are the same operations for a caller that
    holds only the traced model."""

    def __init__(self, graph: TracedModel) -> None:
        self.graph = graph
        self.analysis: Analysis = analyze(graph)

    @property
    def groups(self) -> list[ChannelGroup]:
        """Every channel group, pinned ones included (index = group id)."""
        return self.analysis.groups

    @property
    def prunable(self) -> list[int]:
        """The ids of the groups a ratio is chosen for."""
        return [g.id for g in self.analysis.groups if g.prunable]

    @property
    def num_units(self) -> int:
        """Channel units: what a plan keeps or removes."""
        return self.analysis.num_units

    # -- which channels go first ---------------------------------------------------------------------------

    def scores(self, importance: str = "l1", seed: int = 0) -> np.ndarray:
        """Importance per unit: the chosen per-channel score summed over every layer the unit appears in (from
        the weights as they are now: never cached)."""
        if importance not in IMPORTANCES:
            raise PruneError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
        a = self.analysis
        if importance == "random":
            return np.random.default_rng(seed).random(a.num_units)
        per_id = np.zeros(len(a.unit_of_id))
        for m in a.modules:
            mod = m.module
            if importance in ("l1", "l2") and m.op.filters is not None:
                w = m.op.filters(mod)
                norm = w.abs().sum(1) if importance == "l1" else w.pow(2).sum(1).sqrt()
                np.add.at(per_id, m.out_ids, norm.double().numpy())
            elif importance == "bn_scale" and m.op.gains is not None and (gain := m.op.gains(mod)) is not None:
                np.add.at(per_id, m.out_ids, gain.abs().double().numpy())
        return np.bincount(a.unit_of_id, weights=per_id, minlength=a.num_units)

    def orders(self, group_ids: list[int], importance: str = "l1") -> list[np.ndarray]:
        """Per group: its free units, least important first (`removal_orders`)."""
        scores = self.scores(importance)
        return [_order(self.analysis, g, scores) for g in group_ids]

    # -- plans ---------------------------------------------------------------------------------------------

    def plan_removed(self, orders: list[np.ndarray], removed: np.ndarray | list[int]) -> PrunePlan:
        """The keep mask with the first `removed[i]` units of `orders[i]` dropped."""
        keep = np.ones(self.num_units, dtype=bool)
        for order, r in zip(orders, removed, strict=True):
            keep[order[: int(r)]] = False
        return PrunePlan(keep, {}, {})

    def plan(self, ratios: Ratios, importance: str | np.ndarray = "l1", round_to: int = 1) -> PrunePlan:
        """Choose the units to keep: in each group, remove `ratio` of its free units, least important first."""
        if not isinstance(round_to, int) or round_to < 1:
            raise PruneError(f"round_to must be a positive integer (1: no rounding), not {round_to!r}")
        a = self.analysis
        per_group = _check_ratios(a, ratios)
        scores = self.scores(importance) if isinstance(importance, str) else np.asarray(importance)
        keep = np.ones(a.num_units, dtype=bool)
        kept: dict[int, list[int]] = {}
        for g, r in per_group.items():
            units = np.flatnonzero(a.unit_group == g)
            order = _order(a, g, scores)
            steps, width = order.shape[0], (order.shape[1] if order.ndim == 2 else 1)  # width: units per step
            n_keep = steps - math.floor(r * steps + 0.5)
            # kept units rounded up to a multiple of round_to (in whole steps); ≥ 1 step survives
            n_keep = min(steps, max(1, math.ceil(math.ceil(n_keep * width / round_to) * round_to / width)))
            keep[order[: steps - n_keep]] = False
            kept[g] = [i for i, u in enumerate(units) if keep[u]]
        return PrunePlan(keep=keep, kept=kept, ratios=per_group)

    # -- cost without building the model -------------------------------------------------------------------

    def cost_after(self, plan: PrunePlan) -> Cost:
        """MACs and params of the network `plan` leaves, computed from the graph without building it."""
        base = self.unresized_cost
        macs, params = base.macs, base.params
        for m in self.analysis.modules:
            if m.op.cost is None:
                raise PruneError(f"op {m.op.name!r} ({m.target}) records channels to cut but has no cost rule")
            in_k = kept(m.in_units, plan.keep)
            mc, pc = m.op.cost(m.module, in_k, kept(m.out_units, plan.keep) if m.creates else in_k, m.in_shape,
                               m.out_shape)
            macs += mc
            params += pc
        return Cost(macs=macs, params=params)

    def fractions_after(self, plan: PrunePlan) -> tuple[float, float]:
        """(MACs, params) that `plan` leaves, as fractions of the original's."""
        return self.cost_after(plan).fraction_of(self.original_cost)

    @cached_property
    def unresized_cost(self) -> Cost:
        """The cost of everything the pruner does not resize."""
        graph = self.graph
        sliced = {m.target for m in self.analysis.modules}
        # every node the pruner leaves alone, functional and unregistered ops included (`trace` measured them)
        macs = sum(int(n.meta.get("macs", 0)) for n in graph.module.graph.nodes
                   if not (n.op == "call_module" and str(n.target) in sliced))
        # a registered layer's parameters may sit in its submodules: exclude everything under a sliced layer
        params = sum(p.numel() for name, p in graph.module.named_parameters()
                     if not any(name.startswith(f"{t}.") for t in sliced))
        return Cost(macs=macs, params=params)

    @cached_property
    def original_cost(self) -> Cost:
        """MACs and params of the unpruned traced model."""
        return self.cost_after(PrunePlan(np.ones(self.num_units, dtype=bool), {}, {}))

    def ratios_for_budget(self, budget: float, profile: Mapping[int, float] | None = None,
                          importance: str | np.ndarray = "l1", max_ratio: float = 0.95,
                          round_to: int = 1) -> dict[int, float]:
        """Scale a per-group ratio profile (default: uniform) so that MACs fall to `budget` × the original.

        Bisection on the scale s of ratios min(s·profile, max_ratio); the result meets the budget (≤).
        """
        check_budget(budget, error=PruneError)
        prof = {g: float(profile.get(g, 0.0)) if profile is not None else 1.0 for g in self.prunable}
        if max(prof.values(), default=0.0) <= 0:
            raise PruneError("the ratio profile is zero for every prunable group")
        scores = self.scores(importance) if isinstance(importance, str) else importance
        target = budget * self.original_cost.macs

        def macs_at(s: float) -> int:
            return self.cost_after(self.plan(at(s), scores, round_to)).macs

        def at(s: float) -> dict[int, float]:
            return {g: min(max_ratio, s * p) for g, p in prof.items()}

        hi = max_ratio / min(p for p in prof.values() if p > 0)  # every group at max_ratio
        if macs_at(hi) > target:
            raise PruneError(f"budget {budget:.3f} cannot be met: pruning every group to {max_ratio:.0%} leaves "
                             f"{macs_at(hi) / self.original_cost.macs:.3f} of the MACs")
        lo = 0.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if macs_at(mid) > target:
                lo = mid
            else:
                hi = mid
        return at(hi)

    # -- cutting layers ------------------------------------------------------------------------------------

    def apply(self, plan: PrunePlan) -> fx.GraphModule:
        """A physically pruned copy of the traced module (the original is untouched)."""
        graph, a = self.graph, self.analysis
        root = _clone_modules(graph.module)
        for m in a.modules:
            if keep_all(m.in_units, plan.keep) and keep_all(m.out_units, plan.keep):
                continue
            if m.op.slice is None:
                raise PruneError(f"op {m.op.name!r} ({m.target}) records channels to cut but has no slice rule; "
                                 "give register_op a `slice` and a `cost`")
            in_k = torch.from_numpy(kept(m.in_units, plan.keep))
            out_k = torch.from_numpy(kept(m.out_units, plan.keep)) if m.creates else in_k  # norms: in = out
            m.op.slice(root.get_submodule(m.target), in_k, out_k)
        new_graph = fx.Graph()
        new_graph.output(new_graph.graph_copy(graph.module.graph, {}))
        if a.pads:  # shrink channel-pad widths to the number of pad channels kept
            nodes = {n.name: n for n in new_graph.nodes}
            for pad in a.pads:
                node = nodes[pad.node]
                left = int(np.count_nonzero(plan.keep[pad.units[: pad.left]]))
                right = int(np.count_nonzero(plan.keep[pad.units[len(pad.units) - pad.right :]])) if pad.right else 0
                widths = list(node.args[1])
                widths[pad.arg_index : pad.arg_index + 2] = [left, right]
                node.args = (node.args[0], tuple(widths), *node.args[2:])
        _gather_permutations(a, plan.keep, new_graph)
        return fx.GraphModule(root, new_graph, graph.module.__class__.__name__)

    def pruned(self, plan: PrunePlan) -> PrunedModel:
        """`apply(plan)` with its lineage (so that `gnnrl.save`/`load` can rebuild it) and its costs."""
        module = self.apply(plan)
        module.gnnrl_lineage = lineage_after(self.graph, plan)  # type: ignore[assignment]
        return PrunedModel(module=module, plan=plan, cost=self.cost_after(plan), base_cost=self.original_cost)


def channels(graph: TracedModel) -> Channels:
    """The channel analysis of a traced model with its pruning operations (built once, kept with the graph)."""
    if graph.cache.channels is None:
        graph.cache.channels = Channels(graph)
    return graph.cache.channels


def _order(a: Analysis, g: int, scores: np.ndarray) -> np.ndarray:
    """Group `g`'s free units least important first; for a balanced group (see `groups.Balance`) a 2-D array
    of removal steps, one unit of every block each, so that any prefix of rows keeps the balance."""
    if g in a.balance:
        return a.balance[g].steps(scores)
    units = np.flatnonzero((a.unit_group == g) & ~a.unit_pinned)
    return units[np.argsort(scores[units], kind="stable")]


# ---------------------------------------------------------------------------------------------------------
# The same operations on a traced model (its `Channels`)


def unit_scores(graph: TracedModel, importance: str = "l1", seed: int = 0) -> np.ndarray:
    """Importance per unit: the chosen per-channel score summed over every layer the unit appears in."""
    return channels(graph).scores(importance, seed)


def removal_orders(graph: TracedModel, group_ids: list[int], importance: str = "l1") -> list[np.ndarray]:
    """Per group: its free units, least important first. A policy of `r` removed channels drops the first `r`
    (for a balanced group, rows: one unit of every conv group each).

    The search and `apply_policy` both use this order, which is what makes a searched policy replay exactly.
    """
    return channels(graph).orders(group_ids, importance)


def plan_from_removed(graph: TracedModel, orders: list[np.ndarray], removed: np.ndarray | list[int]) -> PrunePlan:
    """The keep mask with the first `removed[i]` units of `orders[i]` dropped."""
    return channels(graph).plan_removed(orders, removed)


def make_plan(graph: TracedModel, ratios: Ratios, importance: str | np.ndarray = "l1", round_to: int = 1) -> PrunePlan:
    """Choose the units to keep: in each group, remove `ratio` of its free units, least important first."""
    return channels(graph).plan(ratios, importance, round_to)


def apply_plan(graph: TracedModel, plan: PrunePlan) -> fx.GraphModule:
    """A physically pruned copy of the traced module (the original is untouched)."""
    return channels(graph).apply(plan)


def cost_after(graph: TracedModel, ratios: Ratios | PrunePlan, importance: str | np.ndarray = "l1",
               round_to: int = 1) -> Cost:
    """MACs and params of the pruned network, computed from the graph without building it."""
    ch = channels(graph)
    return ch.cost_after(ratios if isinstance(ratios, PrunePlan) else ch.plan(ratios, importance, round_to))


def original_cost(graph: TracedModel) -> Cost:
    """MACs and params of the unpruned traced model (computed once)."""
    return channels(graph).original_cost


def ratios_for_budget(graph: TracedModel, budget: float, profile: Mapping[int, float] | None = None,
                      importance: str | np.ndarray = "l1", max_ratio: float = 0.95,
                      round_to: int = 1) -> dict[int, float]:
    """Scale a per-group ratio profile (default: uniform) so that MACs fall to `budget` × the original."""
    return channels(graph).ratios_for_budget(budget, profile, importance, max_ratio, round_to)


def _check_ratios(a: Analysis, ratios: Ratios) -> dict[int, float]:
    prunable = [g.id for g in a.groups if g.prunable]
    if isinstance(ratios, (int, float, np.number)) and not isinstance(ratios, bool):
        ratios = dict.fromkeys(prunable, float(ratios))
    if not isinstance(ratios, Mapping):
        raise PruneError(f"ratios must be a number in [0, 1) or a dict {{group id: ratio}}, not {ratios!r}")
    out = {}
    for g, r in ratios.items():
        if not 0.0 <= float(r) < 1.0:
            raise PruneError(f"pruning ratio {r} for group {g} is outside [0, 1)")
        if not isinstance(g, (int, np.integer)) or not 0 <= g < len(a.groups):
            raise PruneError(f"unknown group id {g!r}; this model has groups 0…{len(a.groups) - 1} "
                             "(see `gnnrl info --model …`)")
        if not a.groups[int(g)].prunable:
            if r > 0:
                raise PruneError(f"group {g} is pinned ({a.groups[int(g)].reason}); it cannot be pruned")
            continue
        out[int(g)] = float(r)
    return out


def _gather_permutations(a: Analysis, keep: np.ndarray, g: fx.Graph) -> None:
    """Replace each channel shuffle (or gather) that lost channels by one gather of the kept channels in the order
    the shuffle had them: its own arithmetic on fewer channels would interleave other ones (`groups.Permutation`).
    """
    nodes = {n.name: n for n in g.nodes}
    for perm in a.permutations:
        src, dst = a.node_units[perm.source], a.node_units[perm.final]
        if keep_all(src, keep):
            continue
        position = {int(u): i for i, u in enumerate(src[kept(src, keep)])}  # unit -> index in the pruned source
        order = [position[int(u)] for u in dst[kept(dst, keep)]]
        final = nodes[perm.final]
        with g.inserting_before(final):
            gather = g.call_function(operator.getitem, (nodes[perm.source], (slice(None), order)))
        final.replace_all_uses_with(gather)
        for name in reversed(perm.nodes):
            g.erase_node(nodes[name])


def _clone_modules(module: nn.Module) -> nn.Module:
    """A copy of the module tree with cloned tensors: ~5× cheaper than `copy.deepcopy` of a GraphModule."""
    new = copy.copy(module)
    new._parameters = {k: None if v is None else nn.Parameter(v.detach().clone(), requires_grad=v.requires_grad)
                       for k, v in module._parameters.items()}
    new._buffers = {k: None if v is None else v.clone() for k, v in module._buffers.items()}
    new._modules = {k: None if v is None else _clone_modules(v) for k, v in module._modules.items()}
    return new


def keep_all(units: np.ndarray, keep: np.ndarray) -> bool:
    """True when no position of `units` is removed."""
    return bool(((units < 0) | keep[np.maximum(units, 0)]).all())


def prune(model: nn.Module | TracedModel, example_input: torch.Tensor | None = None, ratios: Ratios = 0.5,
          importance: str = "l1", round_to: int = 1) -> PrunedModel:
    """Physically remove channels: a float prunes every prunable group uniformly, a dict per group id.

    The result's module remembers how it was made (`gnnrl_lineage`: base model spec, input shape and the
    kept units of every pruning round), so it can be pruned again, saved and rebuilt (`gnnrl.save`/`load`).
    """
    graph = model if isinstance(model, TracedModel) else trace(model, _need(example_input))
    ch = channels(graph)
    plan = ch.plan(ratios, importance, round_to)
    return ch.pruned(plan)


@dataclass(frozen=True)
class Lineage:
    """How a pruned module was made from a zoo model: what `gnnrl.load` replays."""

    spec: dict | None  # ModelSpec of the base model as a dict (None for models not built by gnnrl.create)
    input_shape: tuple[int, ...]
    rounds: tuple[tuple[int, ...], ...]  # per pruning round: the indices of the kept units


def lineage_after(graph: TracedModel, plan: PrunePlan) -> Lineage:
    """The lineage of the module `graph` was traced from, extended by one pruning round."""
    from dataclasses import asdict

    traced_from = graph.module
    prior: Lineage | None = getattr(traced_from, "gnnrl_lineage", None)
    spec = getattr(traced_from, "gnnrl_spec", None)
    base = prior.spec if prior else (asdict(spec) if spec is not None else None)
    rounds = prior.rounds if prior else ()
    return Lineage(spec=base, input_shape=tuple(graph.example_input.shape),
                   rounds=(*rounds, tuple(int(u) for u in np.flatnonzero(plan.keep))))


def replay(model: nn.Module, lineage: Lineage) -> fx.GraphModule | nn.Module:
    """Apply the recorded pruning rounds to a freshly built base model (weights are loaded afterwards)."""
    module: nn.Module = model
    for round_kept in lineage.rounds:
        graph = trace(module, torch.zeros(lineage.input_shape))
        ch = channels(graph)
        keep = np.zeros(ch.num_units, dtype=bool)
        bad = [u for u in round_kept if not 0 <= u < len(keep)]
        if bad:
            raise PruneError(f"this pruned model's record keeps channel units {bad[:3]} of a network with "
                             f"{len(keep)}: the file is damaged or was written for another model; re-save it")
        keep[list(round_kept)] = True
        module = ch.apply(PrunePlan(keep, {}, {}))
    module.gnnrl_lineage = lineage  # type: ignore[assignment]
    return module


def _need(x: torch.Tensor | None) -> torch.Tensor:
    if x is None:
        raise PruneError("prune(model, example_input, …) needs an example input to trace the model")
    return x
