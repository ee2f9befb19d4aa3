"""Choosing the policy to fine-tune: the search's best few and the simple alternatives, each given the same short
distilled fine-tune and judged by validation accuracy after it (a second, more faithful fidelity for a handful).

Why: the search's reward — top-1 straight after pruning, BatchNorm re-estimated — ranks policies poorly by what
the user gets after fine-tuning (Spearman 0.22 over one search's best at 30 % of ResNet-20's MACs; docs/
benchmarks.md, "Reward study"), and at an equal latency budget a one-line rule has beaten the search's best by
points after the same fine-tune ("Compress demo-r20-avx512"). Scoring a few finalists after a few hundred distilled
steps costs a fraction of the final fine-tune, and putting the simple alternatives among them means the result is
never a policy that this measure already shows to be worse than the rule the user would otherwise have used.

Every finalist is tuned from the same pruned weights with the same batches (one seed), so the score is a function
of the policy; each score is written as soon as it is known, so a killed selection resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Cifar
from .env import DNNGraphEnv, removed_key
from .evaluate import evaluate
from .files import write_json
from .folder import FolderDataset, FolderSplit
from .landing import Lander, Landing, Rule
from .methods.heuristic import RULES
from .progress import progress_bar
from .proxy import TuneSet, short_finetune, tune_set


@dataclass(frozen=True)
class Candidate:
    """A policy put forward for selection."""

    name: str
    """where it comes from: 'search #k (episode e)' or a rule's name (names joined when two give one policy)"""
    removed: tuple[int, ...]
    """channels removed per prunable group, in the env's group order"""
    reward_top1: float
    """validation top-1 (%) right after pruning, BatchNorm re-estimated: the search's measure"""
    macs_ratio: float
    metric_ratio: float
    """the budgeted quantity (MACs, params or predicted latency) / the original's"""
    measured_ratio: float | None = None
    """latency budget with a measured landing: the latency measured on the engine / the original's"""
    cpu_share: float | None = None
    """the CPU that landing's measurements got (`Landing.cpu_share`): under `engines.BUSY_SHARE`, biased"""


@dataclass(frozen=True)
class Finalist:
    """A candidate with its score after the short fine-tune."""

    candidate: Candidate
    tuned_top1: float
    """validation top-1 (%) after the short distilled fine-tune and BatchNorm re-estimation"""
    seconds: float


STREAMED_TUNE_IMAGES = 4096
"""at most this many images of a streamed ImageFolder are held in memory for the finalists (uint8, ~0.6 GB at 224²);
batches are then drawn from them with repeats"""


def selection_tune_set(teacher: Any, data: Cifar | FolderDataset, val_from: str, steps: int,
                       batch_size: int) -> TuneSet:
    """The finalists' tune set: class-balanced training images, enough for `steps` batches without repeats (fewer
    when the training split is smaller, or streamed from files: `STREAMED_TUNE_IMAGES`), with `teacher`'s logits."""
    train = data.split("train", val_from=val_from)
    limit = STREAMED_TUNE_IMAGES if isinstance(train, FolderSplit) else len(train.labels)
    n = min(steps * batch_size, limit)
    images = train.balanced_subset(n, seed=3) if n < len(train.labels) else train
    return tune_set(teacher, images.images, images.labels, images.mean, images.std)


def candidates(env: DNNGraphEnv, history: Sequence[dict[str, Any]], top: int,
               rules: Sequence[str] = ("uniform-internal", "uniform"),
               land: Lander | None = None) -> list[Candidate]:
    """The `top` distinct policies of a search's history by reward, then the simple `rules` at the env's budget
    and rounding; a policy two sources share appears once, under both names. With `land` (a latency budget:
    `gnnrl.search.measured_lander`) each is first landed on the budget as measured on the engine, so that the
    finalists compete at equal measured latency, not at equal predicted latency."""
    proposed: list[tuple[str, Sequence[int]]] = []
    seen: set[str] = set()
    for rec in sorted(history, key=lambda r: (-r["reward"], r["episode"])):
        if len(seen) == top:
            break
        key = removed_key(np.asarray(rec["removed"]))
        if key not in seen:
            seen.add(key)
            proposed.append((f"search #{len(seen)} (episode {rec['episode']})", rec["removed"]))
    proposed += [(rule, RULES[rule][0](env)) for rule in rules]
    found: dict[str, Candidate] = {}
    for name, removed in proposed:
        landing = land(removed, RULES[name][0] if name in RULES else None) if land is not None else None
        if landing is not None:
            removed = landing.removed
        key = removed_key(np.asarray(removed))
        if key in found:
            found[key] = Candidate(**{**asdict(found[key]), "name": f"{found[key].name} = {name}"})
        else:
            found[key] = _candidate(env, name, removed, landing)
    return list(found.values())


def kept_landings(land: Lander, path: Path) -> Lander:
    """`land`, each landing kept in `path` (JSON, by the policy given) so that a resumed selection lands no finalist
    again: a landing times the policy, and timing noise could land it on a neighbour whose saved score would then
    be lost (300 distilled steps)."""
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        saved = {}  # damaged: landed again

    def landed(removed: Sequence[int], rule: Rule | None = None) -> Landing:
        key = removed_key(np.asarray(removed)) + (f" as {rule.__name__}" if rule is not None else "")
        if key not in saved:
            saved[key] = asdict(land(removed, rule))
            write_json(path, saved)
        d = saved[key]
        return Landing(tuple(d["removed"]), d["predicted"], d["measured"], d["met"],
                       tuple(tuple(s) for s in d["steps"]), d.get("cpu_share"))
    return landed


def _candidate(env: DNNGraphEnv, name: str, removed: Sequence[int], landing: Landing | None = None) -> Candidate:
    arr = np.asarray(removed, dtype=np.int64)
    plan = env.plan_for(arr)
    return Candidate(name=name, removed=tuple(int(r) for r in arr),
                     reward_top1=100 * float(env.evaluate_removed(arr) or 0.0),
                     macs_ratio=env.channels.fractions_after(plan)[0],
                     metric_ratio=env.metric_of(arr) / env.base,
                     measured_ratio=landing.measured if landing is not None else None,
                     cpu_share=landing.cpu_share if landing is not None else None)


def score(env: DNNGraphEnv, candidate: Candidate, tune: TuneSet, steps: int, batch_size: int,
          seed: int = 0) -> Finalist:
    """`candidate` pruned, given `steps` distilled SGD steps on `tune` (batches drawn by `seed`), BatchNorm
    re-estimated as in the search, and evaluated on the env's validation images."""
    t0 = time.perf_counter()
    module = env.channels.apply(env.plan_for(np.asarray(candidate.removed))).to(env.device)
    short_finetune(module, tune, steps, batch_size, seed=seed, device=env.device)
    env.recalibrate(module)
    top1 = evaluate(module, env.val, batch_size=env.config.eval_batch, device=env.device).top1
    return Finalist(candidate, top1, time.perf_counter() - t0)


def select(env: DNNGraphEnv, pool: Sequence[Candidate], tune: TuneSet, steps: int, batch_size: int,
           seed: int = 0, out: Path | None = None, progress: bool = False,
           on_score: Callable[[Finalist], None] | None = None) -> list[Finalist]:
    """Every candidate of `pool` scored (`score`), best first (ties: the higher reward, then the earlier
    candidate). With `out`, each score is kept in out/finalist-<i>.json and reused by a rerun that scores the same
    policy with the same steps, batch size and seed."""
    done: list[Finalist] = []
    bar = progress_bar(progress, counts=True)
    task = bar.add_task("select", total=len(pool), info="")
    with bar:
        for i, cand in enumerate(pool):
            path = out / f"finalist-{i}.json" if out else None
            saved = json.loads(path.read_text()) if path is not None and path.is_file() else None
            how = {"steps": steps, "batch_size": batch_size, "seed": seed}
            if saved is not None and tuple(saved["candidate"]["removed"]) == cand.removed and \
                    saved.get("how") == how:  # the same policy scored the same way: its score stands
                fin = Finalist(cand, saved["tuned_top1"], saved["seconds"])
            else:
                fin = score(env, cand, tune, steps, batch_size, seed)
                if path is not None:
                    write_json(path, {**finalist_dict(fin), "how": how})
            done.append(fin)
            if on_score is not None:
                on_score(fin)
            bar.update(task, advance=1, info=f"{cand.name}: {fin.tuned_top1:.2f} %")
    order = sorted(range(len(done)), key=lambda i: (-done[i].tuned_top1, -done[i].candidate.reward_top1, i))
    return [done[i] for i in order]


def finalist_dict(fin: Finalist) -> dict[str, Any]:
    """A finalist as JSON (the candidate's fields inline under 'candidate')."""
    return {"candidate": {**asdict(fin.candidate), "removed": list(fin.candidate.removed)},
            "tuned_top1": fin.tuned_top1, "seconds": round(fin.seconds, 1)}


def chosen_policy(searched: dict[str, Any], env: DNNGraphEnv, ranked: Sequence[Finalist]) -> dict[str, Any]:
    """The search's policy.json rewritten for the selection's winner (`ranked[0]`): its channels, ratios and
    costs, and a 'selection' table of every finalist's scores (so that the file says why it was chosen)."""
    win = ranked[0].candidate
    arr = np.asarray(win.removed, dtype=np.int64)
    macs, params = env.channels.fractions_after(env.plan_for(arr))
    policy = {**searched, "val_top1": win.reward_top1, "macs_ratio": macs, "params_ratio": params,
              "removed": {str(g): int(r) for g, r in zip(env.group_ids, arr, strict=True)},
              "ratios": {str(g): float(r / n) for g, r, n in zip(env.group_ids, arr, env.sizes, strict=True)},
              "selection": {"chosen": win.name, "finalists": [finalist_dict(f) for f in ranked]}}
    if searched.get("latency"):
        policy["latency"] = {**searched["latency"], "predicted_ratio": win.metric_ratio,
                             "measured_ratio": win.measured_ratio,
                             "landing": {"finalists_landed": win.measured_ratio is not None,
                                         "cpu_share": win.cpu_share}}
    return policy


def select_after_search(env: DNNGraphEnv, teacher: Any, data: Cifar | FolderDataset, search_dir: Path, *,
                        top: int, steps: int, batch_size: int, val_from: str, seed: int = 0, out: Path,
                        progress: bool = False, say: Callable[[str], None] = lambda _: None,
                        land: Lander | None = None, searched: dict[str, Any] | None = None
                        ) -> tuple[dict[str, Any], list[Finalist]]:
    """A finished search's (search_dir: history.jsonl, policy.json) best `top` policies and the simple rules (each
    first landed by `land`, see `candidates`), scored after the same short distilled fine-tune, resumable in `out`:
    the chosen policy and the ranking, best first. `searched`: its policy.json, when the caller has read it."""
    lines = (search_dir / "history.jsonl").read_text().splitlines()
    land = kept_landings(land, out / "landings.json") if land is not None else None
    pool = candidates(env, [json.loads(line) for line in lines if line], top, land=land)
    say(f"{len(pool)} finalists (the search's best {top} and the simple rules), each scored on val after {steps} "
        "distilled steps")
    tune = selection_tune_set(teacher, data, val_from, steps, batch_size)
    ranked = select(env, pool, tune, steps, batch_size, seed=seed, out=out, progress=progress)
    say(f"chosen: {ranked[0].candidate.name} ({ranked[0].tuned_top1:.2f} % after the short fine-tune)")
    searched = searched if searched is not None else json.loads((search_dir / "policy.json").read_text())
    return chosen_policy(searched, env, ranked), ranked
