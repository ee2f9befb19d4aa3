"""`gnnrl search`: find a per-group pruning policy under a budget (paper §4), by GNN-RL or a baseline.

The episode loop is shared by every method (`gnnrl.methods`): reset the env, let the method play the episode
(`rollout`) and learn from it (`learn`), record it (`EpisodeRecord`), keep the best, and checkpoint. After every
episode the checkpoint holds everything the run depends on — the method's state (agent, optimisers, replay
buffer), random generators, evaluation cache and the `SearchState` — so `resume=True` continues a killed run
exactly as if it had not been interrupted.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import load_for_resume
from .config import ParallelConfig, SearchConfig
from .data import Cifar, Split
from .engines import CpuMeter
from .env import DNNGraphEnv, fit_latency, removed_key, uniform_removed
from .errors import GnnrlError
from .evaluate import EvalResult, evaluate
from .files import claim_run_dir, torch_save, write_json, write_text
from .identity import model_identity
from .landing import Lander, Landing, land_measured
from .latency import LatencyModel, TableModel, engine_ratio, latency_from_dict, measured_ratio
from .methods import Method, Rollout, make_method, method_spec
from .methods.heuristic import RULES
from .parallel import Evaluation, Evaluator, make_evaluator
from .plot import plot_rewards
from .progress import progress_bar
from .proxy import TuneSet, tune_set
from .trace import TracedModel, trace

LEGACY: dict[str, Any] = {"method": "gnnrl", "round_size": 1,
                          "agent": {"candidates": 1, "pretrain_updates": 0, "critic": "graph", "descriptors": False},
                          "env": {"engine": "torch", "latency_model": "linear", "latency_threads": 1, "round_to": 1,
                                  "reward": "accuracy", "reward_steps": 50, "reward_batch": 64}}
"""What settings added later did before they existed: a checkpoint that lacks one resumes only with this value."""
LATENCY_ONLY = ("engine", "latency_model", "latency_threads", "latency_batch")
"""Env settings only a latency budget reads."""
TUNED_ONLY = ("reward_steps", "reward_batch")
"""Env settings only the 'tuned' reward reads."""


@dataclass
class EpisodeRecord:
    """One episode, as history.jsonl stores it (a line per episode)."""

    episode: int
    phase: str
    reward: float
    val_top1: float
    macs_ratio: float
    params_ratio: float
    steps: int
    sigma: float
    removed: list[int]
    build_s: float
    recal_s: float
    """BatchNorm re-estimation (and, with reward 'tuned', the short fine-tune before it)"""
    eval_s: float
    agent_s: float
    seconds: float
    latency_ratio: float | None = None
    q_predicted: float | None = None
    """the critic's predicted reward (learning methods): compare with `reward` to see if the critic learns"""
    critic_loss: float | None = None
    actor_loss: float | None = None
    round_eval_s: float | None = None
    """wall time of evaluating the episode's round (all its policies, on however many workers)"""
    worker: str | None = None
    """who evaluated the policy ('local', or a Ray actor's host:pid); None when it was already cached"""
    landed: bool | None = None
    """True on a search's best when the measured landing moved it (`gnnrl.landing`): its policy, accuracy and
    ratios are the landed one's, its episode the one it was landed from"""

    def to_dict(self) -> dict[str, Any]:
        """The JSON line (losses under 'agent/…'; fields that do not apply left out)."""
        d = asdict(self)
        for key in ("critic_loss", "actor_loss"):
            d[f"agent/{key}"] = d.pop(key)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeRecord:
        """The record of a JSON line or a checkpoint's (either spelling of the losses; keys it does not know, from
        another version, left out)."""
        d = {k.removeprefix("agent/"): v for k, v in d.items()}
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class SearchState:
    """Where a search stands: what its checkpoint stores besides the method's state."""

    episode: int = 0
    """episodes finished"""
    best: EpisodeRecord | None = None
    """the record of the best episode so far (after the measured landing: the landed policy's)"""
    history: list[dict[str, Any]] = field(default_factory=list)
    uniform_macs_ratio: float | None = None
    measured_latency_ratio: float | None = None
    landing: dict[str, Any] | None = None
    """metric 'latency': how the best policy was measured and landed again on the engine (`gnnrl.landing`)"""

    def add(self, record: EpisodeRecord) -> dict[str, Any]:
        """Append an episode (kept as the best when its reward is the highest so far); returns its dict."""
        d = record.to_dict()
        self.history.append(d)
        if self.best is None or record.reward > self.best.reward:
            self.best = record
        self.episode = record.episode
        return d

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> SearchState:
        """The state a checkpoint stored (`asdict`; its best a plain dict)."""
        best = saved.get("best")
        return cls(**{**saved, "best": EpisodeRecord.from_dict(best) if best is not None else None})


@dataclass
class SearchResult:
    """The best policy found and the run's record."""

    policy: dict[int, float]
    """fraction of each prunable group's channels removed"""
    removed: list[int]
    """channels removed per prunable group (in `group_ids` order): replays the policy exactly"""
    group_ids: list[int]
    val_top1: float
    macs_ratio: float
    params_ratio: float
    episode: int
    history: list[dict[str, Any]]
    uniform_val_top1: float
    latency_ratio: float | None = None
    """metric 'latency': the best network's predicted latency / the original's"""
    measured_latency_ratio: float | None = None
    """metric 'latency': the same ratio measured at the end of the search (interleaved timings)"""
    landing: dict[str, Any] | None = None
    """metric 'latency': how the best policy was measured and landed again (`SearchState.landing`)"""


def recal_split(data: Cifar, config: SearchConfig) -> Split | None:
    """The training images whose statistics re-estimate BatchNorm before each evaluation (None: off)."""
    n = config.env.bn_recal
    return data.split("train", val_from=config.val_from).balanced_subset(max(n, 10), seed=1) if n else None


def _warn(message: str) -> None:
    """A warning a user sees as one line on stderr (and a script can catch as a Python warning)."""
    warnings.warn(message, UserWarning, stacklevel=3)


def search_identity(model: nn.Module, data: Cifar, config: SearchConfig) -> dict[str, Any]:
    """What a search depends on besides its settings: the model and its weights, the validation images."""
    val = data.split("val", val_from=config.val_from, val_size=config.val_size)
    return {"model": model_identity(model), "dataset": data.name, "val_sha256": val.fingerprint()}


def make_env(model: nn.Module, data: Cifar, config: SearchConfig, latency: LatencyModel | TableModel | None = None,
             progress: bool = False) -> DNNGraphEnv:
    """The search's environment: val split per `config`, BN recalibration images from the training split, and
    for a latency budget the latency model (`latency`, or fitted here on timed variants of `model`)."""
    val = data.split("val", val_from=config.val_from, val_size=config.val_size)
    recal = recal_split(data, config)
    source: nn.Module | TracedModel = model
    if config.env.metric == "latency" and latency is None:
        source = trace(model, torch.zeros(1, *val.image_shape))
        latency = fit_latency(source, config.env, progress=progress, warn=_warn)
    return DNNGraphEnv(source, val, config.env, recal, latency, tune_split(model, data, config))


def tune_split(model: nn.Module, data: Cifar, config: SearchConfig) -> TuneSet | None:
    """Reward 'tuned': steps × batch class-balanced training images and the original network's logits on them."""
    env = config.env
    if env.reward != "tuned":
        return None
    images = data.split("train", val_from=config.val_from).balanced_subset(env.reward_steps * env.reward_batch,
                                                                           seed=2)
    return tune_set(model, images.images, images.labels, images.mean, images.std)


def episodes_to_run(config: SearchConfig) -> int:
    """Episodes the search runs: one for a one-shot heuristic, `config.episodes` otherwise."""
    return 1 if method_spec(config.method).one_shot else config.episodes


def check_config(config: SearchConfig) -> None:
    """Refuse settings that cannot run, before any work."""
    spec = method_spec(config.method)  # an unknown name ends here, naming the choices
    config.validate()
    if spec.warmup and config.warmup >= config.episodes:
        raise GnnrlError(f"warm-up ({config.warmup}) must be shorter than the search ({config.episodes} episodes)")


def search(
    model: nn.Module,
    data: Cifar,
    config: SearchConfig = SearchConfig(),
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_episode_end: Callable[[dict[str, Any]], bool | None] | None = None,
    overwrite: bool = False,
    latency: LatencyModel | TableModel | None = None,
    parallel: ParallelConfig | None = None,
) -> SearchResult:
    """Run the search (`config.method`); with `out_dir`, write policy.json, history.jsonl, rewards.png, checkpoints.

    `latency` (metric 'latency'): a latency model fitted beforehand (e.g. on the deployment device); by default one
    is fitted on this machine before the first episode. `parallel`: evaluate each round's policies on Ray workers
    (`gnnrl[distributed]`); the result is the same as in this process.
    """
    check_config(config)
    out = claim_run_dir(out_dir, "search", ("checkpoint.pt", "policy.json"), resume, overwrite)
    ckpt = out / "checkpoint.pt" if out else None
    identity = search_identity(model, data, config)
    saved = (load_for_resume(ckpt, _jsonable(config), identity=identity, defaults=LEGACY, view=settings_read)
             if resume else None)
    # a resumed run predicts latency with the model its first part measured, not a new (noisy) one
    if saved and saved.get("latency"):
        latency = latency_from_dict(saved["latency"])
    env = make_env(model, data, config, latency, progress)
    method = make_method(env, config)
    rng = np.random.default_rng(config.seed)
    state = SearchState()
    if saved is not None:
        saved = _upgrade(saved)
        method.load_state_dict(saved["method"], env)
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        env.cache.update(saved["cache"])
        state = SearchState.from_saved(saved["state"])
    evaluator = make_evaluator(env, model, parallel)
    try:
        uniform = _run(env, method, evaluator, config, state, rng, identity, out, progress, on_episode_end)
    finally:
        evaluator.close()
    if env.latency is not None and state.best is not None:  # the prediction, checked against a measurement
        _land_best(env, state, config.env.measured_landing, config.method)
        if out:
            _write_outputs(out, env, config, state, uniform, identity, plot=False)
    if out and state.history:
        plot_rewards(state.history, out / "rewards.png", _warmup_of(config), 100 * uniform)
    return _result(env, state, uniform)


def _run(env: DNNGraphEnv, method: Method, evaluator: Evaluator, config: SearchConfig, state: SearchState,
         rng: np.random.Generator, identity: dict[str, Any], out: Path | None, progress: bool,
         on_episode_end: Callable[[dict[str, Any]], bool | None] | None) -> float:
    """The episodes, a round at a time: propose the round's policies, evaluate them together, learn from each in
    order, checkpoint. Returns the uniform baseline's accuracy."""
    u_removed = uniform_removed(env)
    _evaluate_into_cache(env, evaluator, [u_removed])
    uniform = env.cache[removed_key(u_removed)]
    state.uniform_macs_ratio = env.channels.fractions_after(env.plan_for(u_removed))[0]
    episodes = episodes_to_run(config)
    bar = progress_bar(progress, counts=True)
    task = bar.add_task(config.method, total=episodes, completed=state.episode, info="")
    stop = False
    with bar:
        while state.episode < episodes and not stop:
            played = []
            env.defer_evaluation(True)
            for ep in range(state.episode, min(state.episode + config.round_size, episodes)):
                t0 = time.perf_counter()
                obs, _ = env.reset(seed=config.seed + ep)
                played.append((ep, method.rollout(env, obs, ep, rng), time.perf_counter() - t0))
            t_eval = time.perf_counter()
            fresh = _evaluate_into_cache(env, evaluator, env.defer_evaluation(False))
            round_eval_s = time.perf_counter() - t_eval
            for ep, roll, play_s in played:
                key = removed_key(roll.info["removed"])
                _complete(env, roll, env.cache[key])
                evaluation = fresh.pop(key, None)  # the first episode of a policy pays for its evaluation
                timing = {k: getattr(evaluation, k, 0.0) for k in ("build_s", "recal_s", "eval_s")}
                t_agent = time.perf_counter()
                losses = method.learn(roll, ep, rng)
                info = roll.info
                agent_s = time.perf_counter() - t_agent
                record = state.add(EpisodeRecord(
                    episode=ep + 1, phase=roll.phase, reward=roll.reward, val_top1=100 * info["accuracy"],
                    macs_ratio=info["macs_ratio"], params_ratio=info["params_ratio"], steps=len(roll.steps) or 1,
                    sigma=roll.sigma, removed=[int(r) for r in info["removed"]], **timing, agent_s=agent_s,
                    seconds=play_s + agent_s + round_eval_s / len(played), latency_ratio=info.get("latency_ratio"),
                    q_predicted=roll.q_predicted, critic_loss=losses.get("agent/critic_loss"),
                    actor_loss=losses.get("agent/actor_loss"), round_eval_s=round_eval_s,
                    worker=evaluation.worker if evaluation is not None else None))
                assert state.best is not None
                bar.update(task, advance=1, info=f"best val {state.best.val_top1:.2f} % "
                           f"(uniform {100 * uniform:.2f} %) · last {record['val_top1']:.2f} %")
                # a stop asked for mid-round takes effect at the round's end: checkpoints hold whole rounds only
                stop = bool(on_episode_end is not None and on_episode_end(record)) or stop
            if out:
                last = state.episode == episodes
                _write_outputs(out, env, config, state, uniform, identity,
                               plot=last or state.episode % 10 < len(played))
                if env.latency is not None:
                    env.latency.flush()  # the layer table's new entries, for the next search on this machine
                torch_save({"config": _jsonable(config), "identity": identity,
                            "method": method.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "cache": dict(env.cache),
                            "latency": env.latency.to_dict() if env.latency else None, "state": asdict(state)},
                           out / "checkpoint.pt")
    return uniform


def _evaluate_into_cache(env: DNNGraphEnv, evaluator: Evaluator, policies: list[np.ndarray]
                         ) -> dict[str, Evaluation]:
    """Evaluate the policies not yet in the env's cache (each once), store their accuracies there; by cache key."""
    todo: dict[str, np.ndarray] = {}
    for removed in policies:
        key = removed_key(removed)
        if key not in env.cache:
            todo.setdefault(key, removed)
    results = evaluator.evaluate(list(todo.values())) if todo else []
    for key, evaluation in zip(todo, results, strict=True):
        env.cache[key] = evaluation.accuracy
    return dict(zip(todo, results, strict=True))


def _complete(env: DNNGraphEnv, roll: Rollout, accuracy: float) -> None:
    """Give a rollout played with deferred evaluation its accuracy and reward (−error, eq. 8; `env.reward`)."""
    roll.info.pop("pending", None)
    roll.info["accuracy"] = accuracy
    roll.reward = env.reward(accuracy, roll.info["macs_ratio"])


def settings_read(config: dict[str, Any]) -> dict[str, Any]:
    """The part of stored settings (`asdict(SearchConfig)`) that its method reads: a run is refused only for a
    setting that changes it, not because a default the method never reads has changed since (the agent settings
    each method declares with `register_method`: none for random and the one-shot methods, no m-GNN setting for
    AMC)."""
    env = config.get("env", {})
    if env.get("metric") != "latency":  # the engine and its predictor do not change a MACs or params search
        env = {k: v for k, v in env.items() if k not in LATENCY_ONLY}
    if env.get("reward", "accuracy") != "tuned":  # nor do the short fine-tune's settings a plain reward
        env = {k: v for k, v in env.items() if k not in TUNED_ONLY}
    # the measured landing acts on the finished search's best, not on its episodes: a search may be resumed (and its
    # best landed again) with another number of tries
    env = {k: v for k, v in env.items() if k != "measured_landing"}
    config = {**config, "env": env}
    return method_spec(config.get("method", LEGACY["method"])).reads(config)


def measured_lander(env: DNNGraphEnv) -> Lander | None:
    """What lands a policy on the env's latency budget as measured on its engine (`gnnrl.landing`), with the env's
    `measured_landing` tries; None when the budget is not latency or the landing is off."""
    tries = env.config.measured_landing
    if env.latency is None or not tries:
        return None
    measure = _Measurer(env)
    return lambda removed, rule=None: measure.land(removed, tries, rule)


def _metered(landing: Landing, meter: CpuMeter) -> Landing:
    """`landing` with the CPU share its measurements got; a warning when the machine was busy meanwhile."""
    meter.warn_if_busy("the latency budget's landing", stacklevel=3)
    return replace(landing, cpu_share=meter.share)


def _land_best(env: DNNGraphEnv, state: SearchState, tries: int, method: str) -> None:
    """The best policy measured on the engine and, up to `tries` times, landed again where the measurement says it
    misses the budget (`gnnrl.landing`; a one-shot rule's as the rule at another budget); a landed policy is
    evaluated and becomes the best record (marked 'landed', its episode the one it was landed from)."""
    best = state.best
    assert best is not None
    rule = RULES[method][0] if method in RULES else None  # a rule's policy is landed as the rule, at another budget
    landing = _Measurer(env).land(best.removed, tries, rule)
    state.measured_latency_ratio = landing.measured
    state.landing = {"from_episode": best.episode, "met": landing.met, "tries": tries,
                     "steps": [{"predicted": p, "measured": m} for p, m in landing.steps],
                     "cpu_share": landing.cpu_share}
    if list(landing.removed) != list(best.removed):
        removed = np.array(landing.removed)
        accuracy = env.evaluate_removed(removed)
        assert accuracy is not None  # evaluation is deferred only inside a round
        macs, params = env.channels.fractions_after(env.plan_for(removed))
        state.best = replace(best, removed=list(landing.removed), val_top1=100 * accuracy,
                             reward=env.reward(accuracy, macs), macs_ratio=macs, params_ratio=params,
                             latency_ratio=landing.predicted, landed=True)


LANDING_ROUNDS = 15
"""interleaved rounds of a landing's measurement: one policy measured 8 times (ResNet-20, ORT b1, beside other
work) spread 0.465–0.491 (sd 0.008) at 5 rounds — as wide as the landing's band — and 0.483–0.493 (sd 0.0035) at
15, for 0.4 s more each"""


def measured_latency(env: DNNGraphEnv, plan: Any, original: Callable[[], Any] | None = None,
                     rounds: int = LANDING_ROUNDS, meter: CpuMeter | None = None) -> float:
    """The pruned network's latency / the original's, measured on the env's engine (the linear model's: eager)
    over `rounds` interleaved rounds; `original`: the original network on that engine, when the caller holds it;
    `meter` counts the CPU the timings got."""
    if isinstance(env.latency, TableModel):
        return engine_ratio(env.graph, plan, env.latency.engine, rounds=rounds, original=original, meter=meter)
    return measured_ratio(env.graph, plan, env.config.latency_batch, rounds=rounds, meter=meter)


class _Measurer:
    """`measured_latency` on an env, the original network put on the engine once (a landing measures up to 4
    policies; a selection's, its finalists' too) rather than exported again for every measurement; the CPU the
    timings got is counted in `meter`."""

    def __init__(self, env: DNNGraphEnv) -> None:
        self.env, self.original = env, None
        self.meter = CpuMeter(env.config.latency_threads)

    def __call__(self, plan: Any) -> float:
        """The measured latency ratio of `plan`."""
        env = self.env
        if self.original is None and isinstance(env.latency, TableModel):
            self.original = env.latency.engine.network(env.graph.module, env.graph.example_input)
        return measured_latency(env, plan, self.original, meter=self.meter)

    def land(self, removed: Any, tries: int, rule: Any = None) -> Landing:
        """`removed` landed on the budget (`gnnrl.landing`), with the CPU share this landing's timings got."""
        self.meter = CpuMeter(self.env.config.latency_threads)  # each landing its own share, one original network
        return _metered(land_measured(self.env, removed, self, tries, rule=rule), self.meter)


def _upgrade(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written before the search methods (agent and search state at the top level), in today's layout."""
    if "method" in saved:
        return saved
    return {**saved, "method": {k: saved[k] for k in ("agent", "buffer", "baseline")},
            "state": {k: saved[k] for k in ("episode", "best", "history") if k in saved}}


def _jsonable(config: SearchConfig) -> dict[str, Any]:
    """The settings as stored in checkpoints (JSON types: tuples become lists)."""
    return json.loads(json.dumps(asdict(config)))


def _warmup_of(config: SearchConfig) -> int:
    """Episodes of random actions at the start (shaded in the plot): only the learning methods have one."""
    return config.warmup if method_spec(config.method).warmup else 0


def _result(env: DNNGraphEnv, state: SearchState, uniform: float) -> SearchResult:
    best = state.best
    assert best is not None
    removed = np.array(best.removed)
    return SearchResult(
        policy={g: float(r / n) for g, r, n in zip(env.group_ids, removed, env.sizes, strict=True)},
        removed=[int(r) for r in removed], group_ids=list(env.group_ids), val_top1=best.val_top1,
        macs_ratio=best.macs_ratio, params_ratio=best.params_ratio, episode=best.episode,
        history=state.history, uniform_val_top1=100 * uniform, latency_ratio=best.latency_ratio,
        measured_latency_ratio=state.measured_latency_ratio, landing=state.landing)


def _write_outputs(out: Path, env: DNNGraphEnv, config: SearchConfig, state: SearchState, uniform: float,
                   identity: dict[str, Any], plot: bool) -> None:
    """policy.json (best so far), history.jsonl (one line per episode) and, when `plot`, rewards.png."""
    result = _result(env, state, uniform)
    policy = {
        "model": identity["model"]["spec"], "input_shape": list(env.graph.example_input.shape),
        "weights_sha256": identity["model"]["weights_sha256"], "budget": config.env.budget,
        "metric": config.env.metric,
        "val_top1": result.val_top1, "uniform_val_top1": result.uniform_val_top1,
        "uniform_macs_ratio": state.uniform_macs_ratio, "method": config.method,
        "macs_ratio": result.macs_ratio, "params_ratio": result.params_ratio, "episode": result.episode,
        "episodes_run": state.episode, "episodes_total": episodes_to_run(config), "seed": config.seed,
        "ratios": {str(g): r for g, r in result.policy.items()},
        "removed": dict(zip(map(str, result.group_ids), result.removed, strict=True)),
        "config": asdict(config),
    }
    if env.latency is not None:
        policy["latency"] = {"batch_size": env.latency.batch_size, "engine": config.env.engine
                             if env.latency.kind == "table" else "torch", "threads": config.env.latency_threads,
                             "predicted_ratio": result.latency_ratio,
                             "measured_ratio": result.measured_latency_ratio,
                             "fit_max_relative_error": env.latency.max_relative_error, "landing": state.landing,
                             "model": env.latency.to_dict()}
    write_json(out / "policy.json", policy)
    # Rewritten whole (small): after a resume it must hold exactly the checkpointed episodes.
    write_text(out / "history.jsonl", "".join(json.dumps(rec) + "\n" for rec in state.history))
    if plot:  # matplotlib costs ~0.1 s: not every episode
        plot_rewards(state.history, out / "rewards.png", _warmup_of(config), 100 * uniform)


def evaluate_policy(env: DNNGraphEnv, removed: list[int], split: Any) -> EvalResult:
    """Accuracy of the network pruned by `removed` (BN recalibrated as in the search) on any split."""
    module = env.channels.apply(env.plan_for(np.asarray(removed)))
    env.recalibrate(module)
    return evaluate(module, split)
