"""The DNN-Graph environment (paper §3, Fig. 1) with the Gymnasium API.

Observation: the edge features of the network's computational graph (E × F; the structure is fixed and
lives in `env.hierarchy`, so an m-GNN encodes observations). Action: one ratio in [0, 1] per prunable
channel group. A step prunes the *current* network further — each group loses that fraction of the
channels it still has, least important first — and the episode ends once the budget (a fraction of the
original MACs, parameters or predicted latency) is met. The step that crosses the budget is scaled down,
and the last allowed step scaled up, so that every episode ends inside [budget − tolerance, budget]. The
reward is 0 on intermediate steps and −top-1 error (a fraction) on the validation split at the end (eq. 8).

Nothing is re-traced while stepping: since a group always loses its least important remaining channels,
its state is one number (how many it has lost), costs come from `Channels.cost_after` and observations from
`CompGraph.edge_features`. Only the final network of an episode is built physically, its BatchNorm
statistics optionally re-estimated on training images, and evaluated; results are cached by policy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .batchnorm import recalibrate_bn
from .config import METRICS, PREDICTORS, EnvConfig  # noqa: F401  (re-exported: gnnrl.env.EnvConfig)
from .cost import Cost
from .data import MEAN, STD, Split
from .errors import GnnrlError
from .evaluate import evaluate
from .hierarchy import Hierarchy, build_hierarchy
from .latency import LatencyModel, TableModel, fit_latency_model, fit_table_model
from .proxy import TuneSet, short_finetune
from .prune import Channels, PrunePlan, channels
from .trace import TracedModel, trace


class DNNGraphEnv(gym.Env):
    """Prune a network step by step until a MACs/params/latency budget is met; reward = −validation error."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, model: nn.Module | TracedModel, val: Split, config: EnvConfig = EnvConfig(),
                 recal: Split | None = None, latency: LatencyModel | None = None, tune: TuneSet | None = None
                 ) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.val = val
        # uint8, normalised batch by batch when used: a quarter of the memory (294 → 74 MB for 500 ImageNet crops)
        self.recal_images = recal.images[: config.bn_recal] if recal is not None and config.bn_recal else None
        self.recal_norm = (recal.mean, recal.std) if recal is not None else (MEAN, STD)
        example = torch.zeros(1, *val.image_shape)
        self.graph = model if isinstance(model, TracedModel) else trace(model, example)
        if config.reward == "tuned" and tune is None:
            raise GnnrlError("reward 'tuned' needs a tune set (training images and the original's logits: "
                             "gnnrl.proxy.tune_set); gnnrl.search.make_env builds it")
        self.tune = tune
        """reward 'tuned': what every candidate is briefly fine-tuned on before it is measured"""
        self.channels: Channels = channels(self.graph)
        """the channel analysis with its plans, costs and cuts (built once, shared with whoever traced)"""
        self.analysis = self.channels.analysis
        self.hierarchy: Hierarchy = build_hierarchy(self.graph, config.levels)
        self.group_ids = self.channels.prunable
        if not self.group_ids:
            raise GnnrlError("this model has no prunable channel group (see `gnnrl info`)")
        # per action: the group's free units, least important first (a group always loses a prefix)
        self.order = self.channels.orders(self.group_ids, config.importance)
        self.sizes = np.array([len(o) for o in self.order])
        self.allowed = [allowed_removed(o, config.round_to) for o in self.order]
        """per group: the removal counts that leave a width divisible by `round_to` (or the full width), ascending"""
        self.latency: LatencyModel | TableModel | None = None
        if config.metric == "latency":  # measured once here; pass the saved model to reproduce a run exactly
            self.latency = latency or fit_latency(self.graph, config)
        self.base = self._metric(self.plan_for(np.zeros(len(self.sizes), dtype=np.int64)))
        self.most = np.array([a[-1] for a in self.allowed])
        """channels removed per group at the smallest widths allowed"""
        floor = self._metric(self.plan_for(self.most))
        if floor > config.budget * self.base:
            what = (f"the predicted latency on {config.engine} at batch {config.latency_batch} (what pruning channels "
                    "cannot remove: per-layer dispatch and the layers it does not resize)"
                    if config.metric == "latency" else f"the {config.metric}")
            raise GnnrlError(f"budget {config.budget} cannot be met: keeping the fewest channels allowed per group "
                             f"(round_to {config.round_to}) leaves {floor / self.base:.3f} of {what}; "
                             f"ask for {floor / self.base + 0.02:.2f} or more")
        n_edges = self.hierarchy.comp.num_edges
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_edges, self.observation(None).shape[1]),
                                                np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, (len(self.group_ids),), np.float32)
        self.cache: dict[str, float] = {}
        self.deferred: list[np.ndarray] | None = None
        """while a list (see `defer_evaluation`): policies whose evaluation was asked for and postponed"""
        self.device = torch.device("cpu")
        """where the pruned networks are recalibrated and evaluated (a Ray worker given a GPU sets cuda)"""
        self.removed = np.zeros(len(self.group_ids), dtype=np.int64)
        self.t = 0

    # -- helpers ---------------------------------------------------------------------------------------
    def _metric(self, plan: PrunePlan, cost: Cost | None = None) -> float:
        """The budgeted quantity of the network pruned by `plan` (`cost`: its MACs/params, when known)."""
        cost = cost if cost is not None else self.channels.cost_after(plan)
        if self.latency is not None:
            return self.latency.predict_plan(self.graph, plan, cost.macs)
        return float(cost.macs if self.config.metric == "macs" else cost.params)

    def plan_for(self, removed: np.ndarray) -> PrunePlan:
        """The keep mask of the network with `removed` channels removed per prunable group."""
        return self.channels.plan_removed(self.order, removed)

    def observation(self, removed: np.ndarray | None) -> np.ndarray:
        """The observation of the network with `removed` channels per group (None: the original network)."""
        keep = None if removed is None else self.plan_for(removed).keep
        return self.hierarchy.comp.edge_features(keep).numpy()

    def _after(self, action: np.ndarray, scale: float, cap: float | None = None) -> np.ndarray:
        """Channels removed per group after removing `scale·action` of what each group has left."""
        frac = np.clip(action * scale, 0.0, self.config.max_step_ratio if cap is None else cap)
        left = self.sizes - self.removed
        more = np.floor(frac * left + 0.5).astype(np.int64)
        return self.snap(np.minimum(self.removed + more, self.sizes - 1))  # at least one channel survives

    def snap(self, removed: np.ndarray) -> np.ndarray:
        """`removed` moved, group by group, to the nearest allowed count (`allowed`) not below what the episode
        has already removed (ties: fewer removed)."""
        if self.config.round_to == 1:
            return removed
        out = np.empty_like(removed)
        for i, (r, allowed) in enumerate(zip(removed, self.allowed, strict=True)):
            ok = allowed[allowed >= self.removed[i]]
            out[i] = ok[np.argmin(np.abs(ok - r))] if len(ok) else r
        return out

    def metric_of(self, removed: np.ndarray) -> float:
        """The budgeted quantity (MACs, params or predicted latency) with `removed` channels per group."""
        return self._metric(self.plan_for(removed))

    def land(self, action: np.ndarray) -> np.ndarray:
        """Channels removed per group when `action` (a fraction of what each group has left) is scaled so that
        the budget is met as closely as possible from below; an action that
        cannot reach it alone (zeros on groups that the rest cannot make up for) is blended with 1 so that every
        group helps."""
        budget = self.config.budget
        target = budget * self.base
        a = np.clip(action, 0.0, 1.0)
        hi = 1.0 / max(float(a.max()), 1e-6)  # the landing is the env's move: no per-step cap
        if self.metric_of(self._after(a, hi, 1.0)) > target:  # this action cannot reach the budget: all groups help
            a = 0.5 * a + 0.5
            hi = 1.0 / float(a.min())  # at hi every group is down to one channel, which meets the budget
        lo, landed = 0.0, None  # landed: the metric at hi, once known
        for _ in range(30):
            mid = (lo + hi) / 2
            metric = self.metric_of(self._after(a, mid, 1.0))
            if metric > target:
                lo = mid
            else:
                hi, landed = mid, metric
        removed = self._after(a, hi, 1.0)
        floor = (budget - self.config.tolerance) * self.base
        if (landed if landed is not None else self.metric_of(removed)) >= floor:
            return removed
        return self._give_back(removed, a, target, floor)

    def _give_back(self, removed: np.ndarray, action: np.ndarray, target: float, floor: float) -> np.ndarray:
        """`removed`, which undershoots the budget band, with single removal steps given back while the budget
        holds: group by group, round robin, those the action prunes least first. Scaling alone can skip the band
        when one group's step is large (ShuffleNet-v1's residual stream: 8 steps, 12% of the MACs each); every
        step of the other groups is then worth trying. First only the steps this episode's last action took; if
        that cannot reach the band, the earlier steps' too (measured: at 20 % of ResNet-20's MACs, widths ×8, a
        first step that cut the inner layers left only the residual stream's 12 %-of-the-MACs steps, and most
        episodes ended at 0.12–0.15, far below the band)."""
        removed, metric = removed.copy(), self.metric_of(removed)
        for least in (self.removed, np.zeros_like(self.removed)):
            changed = True
            while changed and metric < floor:
                changed = False
                for g in np.argsort(action, kind="stable"):
                    fewer = self.allowed[g][(self.allowed[g] < removed[g]) & (self.allowed[g] >= least[g])]
                    if len(fewer):
                        was, removed[g] = removed[g], fewer[-1]
                        after = self.metric_of(removed)
                        if after > target:
                            removed[g] = was
                        else:
                            changed, metric = True, after
        return removed

    def group_descriptors(self) -> np.ndarray:
        """Static descriptors of the prunable groups (A, 4), AMC's per-layer state: position in the network (group
        order, 0 to 1), width (/ the widest), share of the MACs (/ the largest), and the MACs share of the groups
        after it. With a latency budget on the table model two more columns (A, 6) tell the agent where channels
        are cheap: the share of the predicted latency that pruning the group alone (to its fewest allowed channels)
        removes, and that saving per channel removed (both / their largest)."""
        n = len(self.group_ids)
        macs = np.array([self.analysis.groups[g].macs for g in self.group_ids], dtype=np.float64)
        share = macs / max(macs.sum(), 1.0)
        columns = [np.arange(n) / max(n - 1, 1), self.sizes / self.sizes.max(), share / share.max(),
                   share[::-1].cumsum()[::-1] - share]
        if isinstance(self.latency, TableModel):  # (not the linear model: its runs keep their 4-column agents)
            saved = np.zeros(n)
            for i in range(n):
                alone = np.zeros(n, dtype=np.int64)
                alone[i] = self.most[i]
                saved[i] = max(0.0, 1.0 - self.metric_of(alone) / self.base)
            per_channel = saved / np.maximum(self.most, 1)
            columns += [saved / max(saved.max(), 1e-12), per_channel / max(per_channel.max(), 1e-12)]
        return np.stack(columns, 1)

    def policy(self) -> dict[int, float]:
        """Cumulative fraction of each prunable group's channels removed so far: the episode's policy."""
        return {g: float(r / n) for g, r, n in zip(self.group_ids, self.removed, self.sizes, strict=True)}

    def defer_evaluation(self, on: bool = True) -> list[np.ndarray]:
        """Switch deferred evaluation on (or off): an uncached evaluation is then collected instead of run, so that
        a round of episodes can be played first and its policies evaluated together (e.g. in parallel, see
        `gnnrl.parallel`); returns the policies collected so far, which the caller evaluates into `cache`. While
        deferred, an episode's last step returns reward 0.0 with ``info["pending"] = True`` and no accuracy: the
        caller completes it from the cache (never a NaN reward)."""
        collected = self.deferred or []
        self.deferred = [] if on else None
        return collected

    def recalibrate(self, module: nn.Module) -> None:
        """Re-estimate `module`'s BatchNorm statistics on the env's training images, as before every evaluation."""
        if self.recal_images is not None:
            recalibrate_bn(module, self.recal_images.to(self.device), mean=self.recal_norm[0], std=self.recal_norm[1])

    def evaluate_removed(self, removed: np.ndarray) -> float | None:
        """Validation top-1 (fraction) of the network with `removed` channels per group (cached; None while
        deferred and not cached: see `defer_evaluation`)."""
        return self.evaluate_timed(removed)[0]

    def evaluate_timed(self, removed: np.ndarray) -> tuple[float | None, dict[str, float]]:
        """`evaluate_removed`, and where its seconds went (build_s, recal_s, eval_s; zeros when cached), so that a
        search can compare its wall time with its own evaluation floor."""
        key = removed_key(removed)
        timing = {"build_s": 0.0, "recal_s": 0.0, "eval_s": 0.0}
        if key not in self.cache and self.deferred is not None:
            self.deferred.append(np.asarray(removed, dtype=np.int64).copy())
            return None, timing
        if key not in self.cache:
            t0 = time.perf_counter()
            module = self.channels.apply(self.plan_for(removed)).to(self.device)
            t1 = time.perf_counter()
            if self.config.reward == "tuned":  # __init__ refused a 'tuned' env without a tune set
                short_finetune(module, self.tune, self.config.reward_steps, self.config.reward_batch,
                               device=self.device)
            self.recalibrate(module)
            t2 = time.perf_counter()
            result = evaluate(module, self.val, batch_size=self.config.eval_batch, device=self.device)
            self.cache[key] = result.top1 / 100.0
            timing = {"build_s": t1 - t0, "recal_s": t2 - t1, "eval_s": time.perf_counter() - t2}
        return self.cache[key], timing

    def finish(self, removed: np.ndarray) -> tuple[float, dict[str, Any]]:
        """End the episode at `removed` channels per group (a policy chosen whole): its reward and info."""
        self.removed = np.asarray(removed, dtype=np.int64).copy()
        self.t += 1
        accuracy = self.evaluate_removed(self.removed)
        info = self._info(accuracy, pending=accuracy is None)
        return (self.reward(accuracy, info["macs_ratio"]) if accuracy is not None else 0.0), info

    def reward(self, accuracy: float, macs_ratio: float) -> float:
        """The reward of a policy with validation top-1 `accuracy` (fraction) keeping `macs_ratio` of the MACs."""
        return reward_of(accuracy, macs_ratio if self.config.reward == "capacity" else None)

    # -- gymnasium API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.removed = np.zeros(len(self.group_ids), dtype=np.int64)
        self.t = 0
        return self.observation(self.removed), self._info(None)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.nan_to_num(np.asarray(action, dtype=np.float64).reshape(-1), nan=0.0)
        nxt = self._after(a, 1.0)
        plan = self.plan_for(nxt)
        cost = self.channels.cost_after(plan)  # one plan and one cost per state: check, observation and info
        terminated = self._metric(plan, cost) <= self.config.budget * self.base or \
            self.t == self.config.max_steps - 1
        if terminated:
            nxt = self.land(a)
            plan = self.plan_for(nxt)
            cost = self.channels.cost_after(plan)
        self.removed, self.t = nxt, self.t + 1
        accuracy = self.evaluate_removed(self.removed) if terminated else None
        info = self._info(accuracy, cost, pending=terminated and accuracy is None)
        reward = self.reward(accuracy, info["macs_ratio"]) if accuracy is not None else 0.0
        obs = self.hierarchy.comp.edge_features(plan.keep).numpy()
        return obs, float(reward), bool(terminated), False, info

    def _info(self, accuracy: float | None, cost: Cost | None = None, pending: bool = False) -> dict[str, Any]:
        # one plan for the cost and the latency, and none when the caller brought the cost of a MACs budget
        plan = self.plan_for(self.removed) if cost is None or self.latency is not None else None
        if cost is None:
            cost = self.channels.cost_after(plan)
        macs, params = cost.fraction_of(self.channels.original_cost)
        info: dict[str, Any] = {"step": self.t, "macs": cost.macs, "params": cost.params,
                                "macs_ratio": macs, "params_ratio": params,
                                "policy": self.policy(), "removed": self.removed.copy()}
        if self.latency is not None:
            seconds = self.latency.predict_plan(self.graph, plan, cost.macs)
            info.update(latency_s=seconds, latency_ratio=seconds / self.base)
        if accuracy is not None:
            info["accuracy"] = accuracy
        if pending:  # the episode ended while evaluation is deferred: its reward is given later, from the cache
            info["pending"] = True
        return info


def fit_latency(graph: TracedModel, config: EnvConfig, progress: bool = False,
                warn: Callable[[str], None] | None = None) -> LatencyModel | TableModel:
    """The latency predictor `config` names, fitted on its engine (the linear one on eager PyTorch, as before;
    `warn` hears when its timings were too noisy)."""
    if config.latency_model == "linear":
        return fit_latency_model(graph, config.latency_batch, progress=progress, warn=warn)
    return fit_table_model(graph, config.latency_engine(), config.round_to, progress=progress)


def allowed_removed(order: np.ndarray, round_to: int) -> np.ndarray:
    """The removal counts of a group (rows of `order`) that leave a width divisible by `round_to`, or the full
    width, keeping at least one row; ascending. A group too narrow for any such cut can only stay whole."""
    steps, width = order.shape[0], (order.shape[1] if order.ndim == 2 else 1)
    counts = np.arange(steps)  # removing all `steps` would leave nothing
    ok = (counts == 0) | (((steps - counts) * width) % round_to == 0)
    return counts[ok]


CAPACITY_WEIGHT = 1.0
"""reward 'capacity': reward per fraction of the original's MACs kept. At equal measured latency the accuracy after
a 5-epoch fine-tune followed the MACs kept (r = 0.93 over 7 landed ResNet-20 policies, about 0.8 point per 0.01 of
the MACs) more than the validation accuracy before it (r = 0.77, about 0.65 point per point): 1.0 weighs them
about as they paid (docs/benchmarks.md, "resnet20_latency_r8d")"""


def reward_of(accuracy: float, macs_ratio: float | None = None) -> float:
    """The episode's reward: minus the top-1 error, as a fraction (eq. 8); with `macs_ratio` (reward 'capacity'),
    plus `CAPACITY_WEIGHT` × the fraction of the MACs the policy keeps."""
    return -(1.0 - accuracy) + (CAPACITY_WEIGHT * macs_ratio if macs_ratio is not None else 0.0)


def removed_key(removed: np.ndarray) -> str:
    """The evaluation cache's key of a policy (channels removed per group)."""
    return hashlib.sha1(np.asarray(removed).astype(np.int64).tobytes()).hexdigest()


def uniform_removed(env: DNNGraphEnv) -> np.ndarray:
    """The uniform-ratio baseline at the env's budget: one ratio for every group, scaled to land on budget."""
    env.reset()
    return env.land(np.ones(len(env.group_ids)))

