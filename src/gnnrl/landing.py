"""Landing a policy on a latency budget as measured on the deploy engine, not only as predicted.

The latency model predicts to a few percent on average, but not equally well everywhere: on an AVX2 machine the
table model fitted on 8 whole networks let every method's policy overshoot a budget of 0.5 by up to 12 %
(predicted 0.484–0.498, measured 0.501–0.563; docs/benchmarks.md, "Equal-latency comparison:
resnet20_latency_r8b"), the error growing with the MACs kept. So a policy the user will get is measured, as
NetAdapt measures its candidates: one measured over the budget (or well under it) is landed again with the
prediction corrected by measured / predicted at that point — the same allocation, moved by single width steps —
and measured again, a few times. Every method's policy goes through the same landing, so that methods are
compared at equal measured latency and the budget the user asked for is the one the network meets.

The allocation is moved by single width steps (`step_to`), each the one that loses the least share of its group's
importance per predicted latency saved, so that it stays the searched one. (A first version scaled it as an
episode's last action is, through `DNNGraphEnv.land`, whose bisection can jump a large width step — ResNet-20's
residual stream at widths ×8 is 12 % of the MACs per step — and then gives channels back group by group: AMC's
policies were reshaped that way into [56, 0, 0, …]; docs/benchmarks.md, "resnet20_latency_r8c".) A one-shot
rule's policy (uniform, uniform-internal, l1-global) is landed as the rule itself at the corrected budget
(`rule_at`): moved by steps it would become another allocation and no longer be the baseline it is named for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

import numpy as np

from .env import DNNGraphEnv, removed_key
from .prune import PrunePlan

MeasureRatio = Callable[[PrunePlan], float]
"""the pruned network's measured latency / the original's on the budget's engine (injected in tests)"""

SLACK = 0.01
"""a policy measured up to this much over the budget (fraction of the original's latency) meets it: about the
spread of repeated interleaved measurements of one network on a quiet machine (0.677–0.680 for ResNet-56)"""
BAND = 0.03
"""a policy measured more than this much under the budget is landed again, closer to it: the latency the user
allowed is accuracy left on the table, and methods compare fairly only at equal latency"""


@dataclass(frozen=True)
class Landing:
    """Where a policy ended after being measured and landed again."""

    removed: tuple[int, ...]
    """channels removed per prunable group, in the env's group order"""
    predicted: float
    """its predicted latency / the original's"""
    measured: float
    """its measured latency / the original's"""
    met: bool
    """measured ≤ budget + SLACK"""
    steps: tuple[tuple[float, float], ...]
    """(predicted, measured) of every policy measured, in order (the first is the one given)"""
    cpu_share: float | None = None
    """CPU this process got per thread asked for while measuring (`gnnrl.engines.CpuMeter`); under
    `engines.BUSY_SHARE` other processes took the cores and the measured ratios are biased"""


Rule = Callable[[DNNGraphEnv], np.ndarray]
"""a one-shot baseline (`gnnrl.methods.heuristic.RULES`): its policy at the env's budget"""


class Lander(Protocol):
    """What lands a policy on the measured budget (`gnnrl.search.measured_lander`); `rule`: the one-shot baseline
    the policy is, if it is one."""

    def __call__(self, removed: Sequence[int], rule: Rule | None = None) -> Landing: ...


def land_measured(env: DNNGraphEnv, removed: Sequence[int], measure: MeasureRatio, tries: int = 3,
                  slack: float = SLACK, band: float = BAND, rule: Rule | None = None) -> Landing:
    """`removed` measured and, while its measured latency is over the env's budget (by more than `slack`) or under
    it by more than `band`, landed again at the predicted ratio that should meet the budget (`_next_goal`: the
    measured/predicted correction at the last point, or between the points measured on either side), at most `tries`
    times; the result is the measured policy closest under the budget
    + slack (or, when none is, the fastest measured). A `rule`'s policy is landed as the rule run at that predicted
    ratio (`rule_at`), so that uniform stays uniform; any other by single width steps (`step_to`)."""
    budget = env.config.budget
    current = np.asarray(removed, dtype=np.int64)
    measured: dict[str, tuple[np.ndarray, float, float]] = {}  # key → (removed, predicted, measured)
    steps = []
    goal = budget  # the predicted ratio aimed at
    lost = importance_lost(env)
    floor = None
    for attempt in range(tries + 1):
        predicted = env.metric_of(current) / env.base
        actual = measure(env.plan_for(current))
        measured[removed_key(current)] = (current, predicted, actual)
        steps.append((predicted, actual))
        if budget - band <= actual <= budget + slack or attempt == tries:
            break
        goal = _next_goal(budget, band, list(measured.values()))
        if floor is None:  # the direction the searched allocation first needed: it moves that way only
            floor = current.copy() if actual > budget else np.zeros_like(current)
        at = partial(rule_at, env, rule) if rule is not None else partial(step_to, env, current, lost=lost, floor=floor)
        nxt = _landed_elsewhere(env, goal, actual > budget, measured, at)
        if nxt is None:
            break  # no allowed width moves the policy that way (every group at its fewest, or at its full width)
        current = nxt
    feasible = [m for m in measured.values() if m[2] <= budget + slack]
    best = max(feasible, key=lambda m: m[2]) if feasible else min(measured.values(), key=lambda m: m[2])
    return Landing(tuple(int(r) for r in best[0]), best[1], best[2], best[2] <= budget + slack, tuple(steps))


def _next_goal(budget: float, band: float, measured: list[tuple[np.ndarray, float, float]]) -> float:
    """The predicted ratio to aim at next: where the measured points nearest the budget on either side (over it, and
    more than `band` under it) interpolate to the budget, once there are both; before that, the latency model
    corrected by measured / predicted at the last point. (The correction alone can go back and forth: uniform's
    measured latency is not monotone in its predicted one, 0.553 / 0.516 / 0.529 / 0.439 for 0.497 … 0.397, and
    a measurement is noisy by about SLACK.)"""
    over = [(p, a) for _, p, a in measured if a > budget]
    under = [(p, a) for _, p, a in measured if a < budget - band]
    if over and under:
        (p_hi, a_hi), (p_lo, a_lo) = min(over, key=lambda m: m[1]), max(under, key=lambda m: m[1])
        if a_hi > a_lo and p_hi > p_lo:  # the two points agree on the direction: interpolate
            return p_lo + (budget - a_lo) * (p_hi - p_lo) / (a_hi - a_lo)
    _, predicted, actual = measured[-1]
    return budget * predicted / actual  # the latency model, corrected where the last policy is


def _landed_elsewhere(env: DNNGraphEnv, goal: float, faster: bool,
                      measured: dict[str, tuple[np.ndarray, float, float]],
                      at: Callable[[float], np.ndarray]) -> np.ndarray | None:
    """The policy `at` the predicted ratio `goal`; if that is one already measured (the widths move in steps), the
    goal moved on, 2 % of the budget at a time in the direction asked, up to 10 times."""
    step = -0.02 * env.config.budget if faster else 0.02 * env.config.budget
    for _ in range(10):
        nxt = at(goal)
        if removed_key(nxt) not in measured:
            return nxt
        goal += step
        if goal <= 0:
            return None
    return None


def rule_at(env: DNNGraphEnv, rule: Rule, goal: float) -> np.ndarray:
    """`rule`'s policy at the predicted ratio `goal` instead of the env's budget (the env's episode is reset)."""
    was = env.config
    env.config = replace(was, budget=goal)
    try:
        return np.asarray(rule(env), dtype=np.int64)
    finally:
        env.config = was


def importance_lost(env: DNNGraphEnv) -> list[np.ndarray]:
    """Per prunable group: the share of its importance (the env's unit scores, summed over each removal step's
    units) removed with the first k steps of its removal order, for k = 0 … its steps (ascending, 0 to 1)."""
    scores = env.channels.scores(env.config.importance)
    lost = []
    for order in env.order:
        per_step = scores[order].reshape(len(order), -1).sum(1)
        lost.append(np.concatenate([[0.0], np.cumsum(per_step)]) / max(float(per_step.sum()), 1e-12))
    return lost


OPTIONS = 4
"""ways to reach a landing's goal that are evaluated (the search's reward) before one is kept: the cheapest by the
importance they cut, each also with latency given back where it overshot"""


def step_to(env: DNNGraphEnv, removed: np.ndarray, goal: float, lost: list[np.ndarray],
            floor: np.ndarray | None = None, band: float = BAND) -> np.ndarray:
    """`removed` moved to a predicted ratio at or under `goal` by single allowed width steps, so that the searched
    allocation moves as little as it can. Over the goal, the `OPTIONS` cheapest ways to cut there (`_cuts`), each
    with steps given back while the goal holds (`_give_back_to`) down to `floor` (default: `removed` when it is over
    the goal: cut further, never grown elsewhere) — and, where one is still more than `band` under the goal (a large
    step, e.g. a residual stream's, overshot it), also below `floor`. Of these, the one within `band` of the goal
    (if any is) that the env evaluates best is kept: the importance share is only a proxy for what a step costs."""
    current = np.asarray(removed, dtype=np.int64).copy()
    target, low = goal * env.base, (goal - band) * env.base
    if floor is None:
        floor = current.copy() if env.metric_of(current) > target else np.zeros_like(current)
    options = [_give_back_to(env, cut, target, lost, floor) for cut in _cuts(env, current, target, lost)[:OPTIONS]]
    options += [_give_back_to(env, o, target, lost, np.zeros_like(o)) for o in options if env.metric_of(o) < low]
    metrics = {removed_key(o): (o, env.metric_of(o)) for o in options}  # each distinct option's metric, once
    if len(metrics) == 1:
        return options[0]
    near = [m for m in metrics.values() if m[1] >= low] or list(metrics.values())
    return max(near, key=lambda m: (env.evaluate_removed(m[0]) or 0.0, m[1]))[0]


def _cuts(env: DNNGraphEnv, current: np.ndarray, target: float, lost: list[np.ndarray]) -> list[np.ndarray]:
    """Ways to cut `current` by single width steps until the predicted metric is at or under `target`, cheapest
    first by the importance (share of each group's, summed) they cut: along a greedy path that takes, while the
    target is not reached, the step that cuts the least per latency saved, each point's cheapest step that reaches
    the target. (Finishing as soon as a step can is not enough: a large step, a residual stream's, can overshoot the
    target by far.) Just `current` when it is at or under the target; the fastest reached when nothing reaches it."""
    metric, spent = env.metric_of(current), 0.0
    if metric <= target:
        return [current]
    finishes: list[tuple[float, np.ndarray]] = []  # (share cut in all, removed)
    while True:
        ordinary, finish = None, None  # (share cut per latency saved, share cut, removed, metric) / (share, removed)
        for g in range(len(current)):
            more = env.allowed[g][env.allowed[g] >= current[g] + least_step(env, g)]
            if not len(more):
                continue
            trial = current.copy()
            trial[g] = more[0]
            after = env.metric_of(trial)
            share = lost[g][trial[g]] - lost[g][current[g]]
            if after <= target:
                if finish is None or share < finish[0]:
                    finish = (share, trial)
            elif after < metric and (ordinary is None or share / (metric - after) < ordinary[0]):
                ordinary = (share / (metric - after), share, trial, after)
        if finish is not None:
            finishes.append((spent + finish[0], finish[1]))
        if ordinary is None:
            break  # every group at its fewest, or no step that saves anything without reaching the target
        _, share, current, metric = ordinary
        spent += share
    return [r for _, r in sorted(finishes, key=lambda f: f[0])] or [current]


def least_step(env: DNNGraphEnv, g: int) -> int:
    """The fewest channels a landing moves group `g` by: one allowed step, but at least 1/32 of the group's width
    (without rounding a step is one channel, and ResNet-18's 512-wide groups took 7 s to land 5 % lower)."""
    return max(1, int(env.sizes[g]) // 32)


def _give_back_to(env: DNNGraphEnv, current: np.ndarray, target: float, lost: list[np.ndarray],
                  floor: np.ndarray) -> np.ndarray:
    """Single width steps given back (no group below `floor`) while the predicted metric stays at or under
    `target`: each time the one that gives back the most share of its group's importance per latency added."""
    metric = env.metric_of(current)
    while True:
        best = None
        for g in range(len(current)):
            fewer = env.allowed[g][(env.allowed[g] <= current[g] - least_step(env, g)) & (env.allowed[g] >= floor[g])]
            if not len(fewer):
                continue
            trial = current.copy()
            trial[g] = fewer[-1]
            after = env.metric_of(trial)
            if after <= target:
                value = (lost[g][current[g]] - lost[g][trial[g]]) / max(after - metric, 1e-12 * env.base)
                if best is None or value > best[0]:
                    best = (value, trial, after)
        if best is None:
            return current
        _, current, metric = best
