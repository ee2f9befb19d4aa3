"""Landing a policy on a latency budget as measured on the deploy engine, not only as predicted.

The latency model predicts to a few percent on average, but not equally well everywhere: on an AVX2 machine the
table model fitted on 8 whole networks let every method's policy overshoot a budget of 0.5 by up to 12 %
(predicted 0.484–0.498, measured 0.501–0.563; docs/benchmarks.md, "Equal-latency comparison:
resnet20_latency_r8b"), the error growing with the MACs kept. So a policy the user will get is measured, as
NetAdapt measures its candidates: one measured over the budget (or well under it) is landed again with the
prediction corrected by measured / predicted at that point — the same allocation, scaled as an episode's last step
is — and measured again, a few times. Every method's policy goes through the same landing, so that methods are
compared at equal measured latency and the budget the user asked for is the one the network meets.

Known limit: "scaled" goes through `DNNGraphEnv.land`, whose bisection can jump a large width step (ResNet-20's
residual stream at widths ×8: 12 % of the MACs per step) and then give channels back group by group to stay in the
band; AMC's policies were reshaped that way into [56, 0, 0, …] (docs/benchmarks.md, "resnet20_latency_r8c"). A
landing by single width steps from the given allocation would move it less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def land_measured(env: DNNGraphEnv, removed: Sequence[int], measure: MeasureRatio, tries: int = 3,
                  slack: float = SLACK, band: float = BAND) -> Landing:
    """`removed` measured and, while its measured latency is over the env's budget (by more than `slack`) or under
    it by more than `band`, landed again at the predicted ratio that the measured/predicted correction at the last
    point says meets the budget, at most `tries` times; the result is the measured policy closest under the budget
    + slack (or, when none is, the fastest measured)."""
    budget = env.config.budget
    current = np.asarray(removed, dtype=np.int64)
    measured: dict[str, tuple[np.ndarray, float, float]] = {}  # key → (removed, predicted, measured)
    steps = []
    goal = budget  # the predicted ratio aimed at
    for attempt in range(tries + 1):
        predicted = env.metric_of(current) / env.base
        actual = measure(env.plan_for(current))
        measured[removed_key(current)] = (current, predicted, actual)
        steps.append((predicted, actual))
        if budget - band <= actual <= budget + slack or attempt == tries:
            break
        goal = budget * predicted / actual  # the latency model, corrected where this policy is
        nxt = _landed_elsewhere(env, current, goal, actual > budget, measured)
        if nxt is None:
            break  # no allowed width moves the policy that way (every group at its fewest, or at its full width)
        current = nxt
    feasible = [m for m in measured.values() if m[2] <= budget + slack]
    best = max(feasible, key=lambda m: m[2]) if feasible else min(measured.values(), key=lambda m: m[2])
    return Landing(tuple(int(r) for r in best[0]), best[1], best[2], best[2] <= budget + slack, tuple(steps))


def _landed_elsewhere(env: DNNGraphEnv, current: np.ndarray, goal: float, faster: bool,
                      measured: dict[str, tuple[np.ndarray, float, float]]) -> np.ndarray | None:
    """`current`'s allocation landed at the predicted ratio `goal`; if that gives a policy already measured (the
    widths move in steps), the goal moved on, 2 % of the budget at a time in the direction asked, up to 10 times."""
    step = -0.02 * env.config.budget if faster else 0.02 * env.config.budget
    for _ in range(10):
        nxt = env.reland(current, goal)
        if removed_key(nxt) not in measured:
            return nxt
        goal += step
        if goal <= 0:
            return None
    return None
