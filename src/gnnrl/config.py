"""Settings, on the ground floor: every frozen config dataclass — the environment's (`gnnrl.env`), the search
loop's and its methods' (`gnnrl.search`, `gnnrl.methods`), training's and fine-tuning's (`gnnrl.train`,
`gnnrl.finetune`), the whole job's (`gnnrl.compress`) and parallel evaluation's (`gnnrl.parallel`) — each with one
`validate()`, and the one budget check every entry point uses. The CLI makes its flags from these fields."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from .engines import ENGINES, Engine, EngineName
from .errors import GnnrlError
from .evaluate import DEFAULT_BATCH_SIZE


def check_budget(budget: float, what: str = "the MACs", name: str = "budget",
                 error: type[GnnrlError] = GnnrlError) -> None:
    """A budget is a fraction in (0, 1) of the original metric; one message wherever it is given."""
    if not isinstance(budget, (int, float)) or not 0 < budget < 1:
        raise error(f"{name} {budget} must be a fraction in (0, 1), e.g. 0.5 keeps half of {what}")


Metric = Literal["macs", "params", "latency"]
Predictor = Literal["table", "linear"]
Importance = Literal["l1", "l2", "bn_scale", "random"]
Reward = Literal["accuracy", "tuned", "capacity"]
REWARDS: tuple[str, ...] = get_args(Reward)
METRICS: tuple[str, ...] = get_args(Metric)
PREDICTORS: tuple[str, ...] = get_args(Predictor)


@dataclass(frozen=True)
class EnvConfig:
    """Settings of `DNNGraphEnv`."""

    budget: float = 0.5
    """fraction of the original metric to keep"""
    metric: Metric = "macs"
    """what the budget constrains: 'macs', 'params' or 'latency' (predicted by a `LatencyModel` fitted on
    measured variants of the network, see gnnrl.latency)"""
    max_steps: int = 5
    """step cap: the last step is scaled so that the budget is met"""
    tolerance: float = 0.02
    """episodes end with the metric inside [budget − tolerance, budget] (fractions of the original)"""
    max_step_ratio: float = 0.9
    """largest fraction of a group's remaining channels one step may remove"""
    importance: Importance = "l1"
    """how channels are ranked within a group: L1 or L2 norm of their filters, |BatchNorm scale|, or random"""
    bn_recal: int = 500
    """training images used to re-estimate BatchNorm statistics before each evaluation (0: off). Measured
    (benchmarks/bn_recal.py, Spearman with the ranking under 2000-image statistics, ResNet-20 / ResNet-56):
    none 0.38 / 0.50, 250 images 0.975 / 0.947, 500 images 0.994 / 0.982 at a quarter of 2000's cost. 250
    makes a search ~7% faster (docs/benchmarks.md), at that cost in fidelity."""
    eval_batch: int = DEFAULT_BATCH_SIZE
    """images per batch when evaluating a candidate"""
    levels: int = 2
    """levels of the motif hierarchy the m-GNN embeds (2 or 3)"""
    latency_batch: int = 1
    """batch size the latency budget is measured at (metric 'latency')"""
    engine: EngineName = "onnxruntime"
    """where the latency budget is measured (metric 'latency'): 'onnxruntime' or 'torch' (eager)"""
    latency_threads: int = 1
    """intra-op threads of the engine the latency budget is measured with"""
    latency_model: Predictor = "table"
    """the latency predictor: 'table' (per-layer table on the engine, `gnnrl.latency.TableModel`) or 'linear'
    (the first version: c0 + MACs + activations fitted on eager PyTorch)"""
    round_to: int = 1
    """every pruned width is a multiple of this (or the layer's full width): the channel granularity that pays
    on the engine (8 or 16 on ONNX Runtime's CPU kernels, `gnnrl.latency.channel_granularity`); 1: any width"""
    measured_landing: int = 5
    """metric 'latency': the search's best policy (and each finalist of a selection) is timed on the engine and,
    when its measured latency misses the budget, landed again with the prediction corrected there, up to this many
    times (`gnnrl.landing`: on an AVX2 machine the table model alone let policies overshoot 0.5 by up to 12 %);
    0: trust the prediction"""
    reward: Reward = "accuracy"
    """what a candidate is rewarded by: 'accuracy', its validation top-1 after BatchNorm re-estimation (the
    paper's); 'tuned', the same after a short distilled fine-tune (`reward_steps` SGD steps of `reward_batch`
    training images, `gnnrl.proxy`): closer to the accuracy after the user's fine-tune, at the cost of those
    steps per candidate; 'capacity', the plain accuracy plus the fraction of the MACs kept
    (`gnnrl.env.CAPACITY_WEIGHT`): under a latency budget, the policy that keeps the most computation where the
    engine runs it cheaply, which is what a fine-tune turns into accuracy"""
    reward_steps: int = 50
    """SGD steps of the short fine-tune (reward 'tuned')"""
    reward_batch: int = 64
    """images per step of the short fine-tune (reward 'tuned'); the tune set holds steps × batch images"""

    def validate(self) -> None:
        """Raise one clear `GnnrlError` for a setting outside its choices."""
        if self.metric not in METRICS:
            raise GnnrlError(f"unknown budget metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        check_budget(self.budget, {"macs": "the MACs", "params": "the parameters", "latency": "the latency"}[
            self.metric])
        if self.engine not in ENGINES or self.latency_model not in PREDICTORS:
            raise GnnrlError(f"unknown engine {self.engine!r} or latency model {self.latency_model!r}; choose "
                             f"one of {', '.join(ENGINES)} and {', '.join(PREDICTORS)}")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise GnnrlError(f"round_to must be a positive integer (1: any width), not {self.round_to!r}")
        if not isinstance(self.measured_landing, int) or self.measured_landing < 0:
            raise GnnrlError(f"measured_landing must be 0 (off) or a number of tries, not {self.measured_landing!r}")
        if self.reward not in REWARDS:
            raise GnnrlError(f"unknown reward {self.reward!r}; choose one of {', '.join(REWARDS)}")
        if self.reward_steps < 1 or self.reward_batch < 1:
            raise GnnrlError(f"reward_steps and reward_batch must be at least 1 (got {self.reward_steps}, "
                             f"{self.reward_batch})")

    def latency_engine(self) -> Engine:
        """The engine a latency budget is measured on."""
        return Engine(self.engine, self.latency_threads, self.latency_batch)


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG hyper-parameters: τ, batch and replay size from the paper; the rest from AMC (He et al. 2018)."""

    tau: float = 0.01
    """soft target update rate"""
    batch_size: int = 64
    """transitions per DDPG update"""
    replay_size: int = 2000
    """transitions the replay buffer keeps"""
    discount: float = 1.0
    """reward discount γ. 1: episodes are a few steps long and only the last step is rewarded"""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic"""
    hidden: int = 300
    """hidden width of the actor's and critic's MLPs"""
    channels: int = 32
    """m-GNN hidden size. 32 rather than 64: as good in short searches (benchmarks/agent_ablation.py) at ~55% of
    the update time"""
    gnn_layers: int = 2
    """edge-convolution layers of each m-GNN stage"""
    noise_init: float = 0.5
    """std of the truncated-normal exploration noise on the first episode after warm-up"""
    noise_decay: float = 0.95
    """the noise std is multiplied by this after every episode"""
    head: Literal["groups", "graph", "both"] = "groups"
    """'groups': a shared per-group MLP over [group embedding, g] and the group's descriptors (`descriptors`);
    'graph': an MLP over g, one output per group (the paper's); 'both': the sum of the two heads' logits.
    Measured (docs/benchmarks.md, agent ablations; best policy's test_rest before fine-tuning, with the default
    200 pretraining updates for 'groups'): ResNet-56, 180 episodes, 3 seeds: groups 86.45 ± 0.29, graph 83.37 ±
    1.04 (AMC 85.13 ± 0.64); ResNet-20, 60 episodes: groups 66.16 ± 2.51 (4 seeds), graph 66.60 ± 2.12 (6
    seeds). 'both' did as well as graph on ResNet-20 (3 seeds) but gave 83.5 on ResNet-56 seed 0"""
    critic: Literal["graph", "groups"] = "graph"
    """'graph': MLP over [g, action] (paper); 'groups': a shared per-group MLP over [group embedding, the
    group's action] (DeepSets), mean-pooled over the groups, then an MLP over [g, pooled], meant to learn from
    every group of every episode as AMC's per-layer critic does. Measured worse: ResNet-20 best val 58.2 vs 65.3
    (with the per-group actor and descriptors, 3 seeds), and it fits 8 random rewards far slower than 'graph'
    (loss 0.071 → 0.065 in 200 Adam steps vs 0.35 → 0.0004)"""
    descriptors: bool = True
    """per-group heads (actor and critic) also read each group's static descriptors (`group_descriptors`:
    position, width, share of the MACs, MACs still to come). Repeated blocks have identical m-GNN embeddings, so
    without them a per-group head cannot tell a stage's first block from its last, and gives every block of a
    stage one ratio (ResNet-20, 3 seeds: 62.4 ± 3.6 without, the 'groups-cand32' ablation row)"""
    updates_per_episode: int = 10
    """DDPG updates after each post-warm-up episode. Episodes are mostly one to five steps long here (a step
    may prune as much as the budget needs), and AMC's one update per step left the agent nearly untrained
    (best 50.1 % vs 64.4 % with 20 on ResNet-20); 10 did as well as 20 at half the cost (agent_ablation.py)"""
    pretrain_updates: int = 200
    """DDPG updates on the warm-up's transitions before the first agent episode (0: none, as in plain DDPG). The
    per-group head starts out giving nearly one ratio to every group, the weakest kind of policy; these updates
    move it towards what the warm-up found before it acts. Measured with the per-group head (docs/benchmarks.md,
    agent ablations, best val before fine-tuning): ResNet-20, 60 episodes, seeds 0-3: 63.7 → 66.4 (seed 0: 55.3 →
    63.0); ResNet-56, 180 episodes, 3 seeds: 85.8 → 86.6. With the paper's graph head 200 made no measurable
    difference (cand32-pre200)"""
    candidates: int = 32
    """noisy actions drawn per step; the one the critic values most is taken (1: plain DDPG exploration). The
    critic, trained on every episode since the warm-up, becomes a cheap surrogate of the reward, and a step costs
    32 critic heads instead of 1 (milliseconds). ResNet-20, 60 episodes, seeds 0-2: best policy 64.5 → 65.4 %
    test_rest (higher on every seed), mean of the agent's episodes 50.2 → 55.8 %; ResNet-56, 180 episodes, seed 0:
    82.2 → 83.4 % (docs/benchmarks.md, agent ablation and method comparison)"""

    def validate(self) -> None:
        """Refuse agent settings no search can use, before any work (an Adam with lr 0 or an empty replay would
        otherwise run a whole search that never learns)."""
        rules = {"batch_size": (1, None), "replay_size": (1, None), "hidden": (1, None), "channels": (1, None),
                 "gnn_layers": (1, None), "candidates": (1, None), "updates_per_episode": (0, None),
                 "pretrain_updates": (0, None), "noise_init": (0, None), "discount": (0, 1)}
        bad = [f"{agent_flag(k)} {getattr(self, k)} (at least {lo}{f', at most {hi}' if hi is not None else ''})"
               for k, (lo, hi) in rules.items()
               if getattr(self, k) < lo or (hi is not None and getattr(self, k) > hi)]
        bad += [f"{agent_flag(k)} {getattr(self, k)} (in (0, 1])" for k in ("tau", "noise_decay")
                if not 0 < getattr(self, k) <= 1]
        bad += [f"{agent_flag(k)} {getattr(self, k)} (> 0)" for k in ("actor_lr", "critic_lr") if getattr(self, k) <= 0]
        if bad:
            raise GnnrlError(f"agent settings no search can use: {'; '.join(bad)}")


SHORT_AGENT_FLAGS = ("head", "descriptors", "pretrain_updates", "candidates")
"""agent settings whose CLI flag has no --agent- prefix (the most used)"""


def agent_flag(field_name: str) -> str:
    """The CLI flag of a `DDPGConfig` field, so that an error names what the user typed."""
    flag = field_name.replace("_", "-")
    return f"--{flag}" if field_name in SHORT_AGENT_FLAGS else f"--agent-{flag}"


AGENT_FIELDS = frozenset(f.name for f in fields(DDPGConfig))
"""every agent setting: what a method that reads the whole `DDPGConfig` declares (`register_method`)"""


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search; the defaults are the paper's (5k validation images from test, 30 + 150 episodes)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """budget, metric, step cap, BN recalibration…"""
    agent: DDPGConfig = field(default_factory=DDPGConfig)
    episodes: int = 180
    """total episodes, warm-up included"""
    warmup: int = 30
    """episodes of uniform random actions before the agent acts and learns"""
    seed: int = 0
    """seeds the agent, the exploration and the validation draw: same seed, same search"""
    val_from: Literal["test", "train"] = "test"
    """where the validation images the reward is measured on are carved from"""
    val_size: int = 5000
    """validation images (class-balanced, seeded)"""
    baseline_decay: float = 0.95
    """moving reward baseline: b ← decay·b + (1 − decay)·reward"""
    method: str = "gnnrl"
    """a registered search method: gnnrl, random, uniform, uniform-internal, l1-global, amc or one of your own
    (`gnnrl.methods.register_method`)"""
    round_size: int = 1
    """episodes proposed before their policies are evaluated (together, e.g. on parallel workers) and learnt
    from; 1 is the paper's loop. The result depends on it, never on how many workers evaluate a round."""

    def validate(self) -> None:
        """Refuse settings that cannot run, before any work (`gnnrl.search.check_config` adds the method's own)."""
        self.env.validate()
        self.agent.validate()
        if self.round_size < 1:
            raise GnnrlError(f"--round-size ({self.round_size}) must be at least 1")

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SearchConfig:
        """Inverse of `dataclasses.asdict` (as stored in policy.json and checkpoints)."""
        return SearchConfig(**{**d, "env": EnvConfig(**d["env"]), "agent": DDPGConfig(**d["agent"])})


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of `train`."""

    epochs: int = 200
    """passes over the training split"""
    batch_size: int = 128
    """images per SGD step"""
    lr: float = 0.1
    """peak learning rate, decayed to 0 by a per-step cosine schedule"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 5e-4
    """L2 weight decay"""
    nesterov: bool = True
    """Nesterov momentum"""
    seed: int = 0
    """seeds shuffling and augmentation (`gnnrl train` also seeds initialisation): same seed ⇒ same weights"""
    subset: int | None = None
    """train on only this many class-balanced images (smoke runs and tests)"""
    val_from: str = "train"
    """'train' holds out 5k of train for validation (train on 45k); 'test' trains on all 50k"""
    val_size: int = 5000
    """validation images (class-balanced, seeded; the search's rule, so that both use the same images)"""
    label_smoothing: float = 0.0
    """label smoothing of the cross-entropy"""
    kd_weight: float = 0.0
    """knowledge distillation: loss = (1 − w)·CE + w·T²·KL(teacher ‖ student) at temperature T (needs a teacher)"""
    kd_temperature: float = 4.0
    """distillation temperature T"""

    def validate(self) -> None:
        """Refuse settings no run can use, before any work (`compress` checks its fine-tune before the search)."""
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise GnnrlError(f"epochs ({self.epochs}), batch size ({self.batch_size}) and lr ({self.lr}) must be "
                             "positive")
        if not 0 <= self.kd_weight <= 1 or self.kd_temperature <= 0 or not 0 <= self.label_smoothing < 1:
            raise GnnrlError("--kd-weight must be in [0, 1], --kd-temperature > 0 and --label-smoothing in [0, 1) "
                             f"(got {self.kd_weight}, {self.kd_temperature}, {self.label_smoothing})")


FINETUNE = TrainConfig(epochs=30, batch_size=128, lr=0.02, weight_decay=5e-4, val_from="test", kd_weight=0.7,
                       kd_temperature=4.0)
"""Fine-tuning defaults: a tenth of the from-scratch learning rate (the weights are already good), distillation
on (weight 0.7, T = 4), validation carved from test as in the search."""


def finetune_config(epochs: int | None = None, kd: bool = True, **changes: object) -> TrainConfig:
    """The fine-tuning defaults with `epochs`, distillation on/off and any other `TrainConfig` field changed."""
    config = replace(FINETUNE, **changes)  # type: ignore[arg-type]
    if epochs is not None:
        config = replace(config, epochs=epochs)
    return config if kd else replace(config, kd_weight=0.0)


@dataclass(frozen=True)
class CompressConfig:
    """Settings of every stage of `compress` (the CLI exposes each as a flag)."""

    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: TrainConfig = field(default_factory=finetune_config)
    latency_batches: tuple[int, ...] = (1, 256)
    latency_threads: int = 1
    """intra-op threads for the latency comparison (fixed, so numbers compare across runs)"""
    latency_rounds: int = 15
    """interleaved timing rounds per network (--quick: 9)"""
    baseline: bool = True
    """also prune, fine-tune (the same schedule), evaluate and time a simple alternative at the same budget, engine
    and rounding, so the report compares the result with it, not only with the original"""
    baseline_method: Literal["uniform-internal", "uniform", "l1-global"] = "uniform-internal"
    """the simple alternative: one ratio for the groups outside residual streams (the stronger at half the MACs),
    one ratio for every group (the stronger at 30 % of the MACs on ResNet-20: docs/benchmarks.md), or one L1
    threshold"""
    finalists: int = 3
    """the search's best few policies scored, beside the simple rules (uniform-internal, uniform), after the same
    short distilled fine-tune; the best is fine-tuned (gnnrl.selection). 0: fine-tune the search's best by its
    reward"""
    finalist_steps: int = 300
    """distilled SGD steps each finalist gets before it is scored"""
    finalist_batch: int = 64
    """images per step of the finalists' short fine-tune"""
    eval_size: int | None = None
    """evaluate on class-balanced subsets of this many images (smoke runs); None: the full splits"""

    def validate(self) -> None:
        """Refuse settings of any stage that cannot run, before any work: a bad fine-tune setting must not surface
        only after the search."""
        self.search.validate()
        self.finetune.validate()
        if self.finalists < 0:
            raise GnnrlError(f"--finalists must be 0 (no selection) or more, not {self.finalists}")
        if self.finalists and min(self.finalist_steps, self.finalist_batch) < 1:
            raise GnnrlError(f"--finalist-steps ({self.finalist_steps}) and --finalist-batch ({self.finalist_batch}) "
                             "must be at least 1 (or --finalists 0: fine-tune the search's best without a selection)")
        if not self.latency_batches or min(self.latency_batches) < 1 or min(self.latency_threads,
                                                                          self.latency_rounds) < 1:
            raise GnnrlError(f"--latency-batch-sizes ({', '.join(map(str, self.latency_batches)) or 'none'}), "
                             f"latency threads ({self.latency_threads}) and rounds ({self.latency_rounds}) must be "
                             "positive")


def quick_config(budget: float = 0.5, metric: str = "macs", round_to: int = 1) -> CompressConfig:
    """`--quick`: a 24-episode search and a 2-epoch distilled fine-tune — the README demo (minutes on 2 cores)."""
    env = EnvConfig(budget=budget, metric=metric, round_to=round_to)
    return CompressConfig(search=SearchConfig(env=env, episodes=24, warmup=4),
                          finetune=finetune_config(epochs=2), latency_rounds=9)


@dataclass(frozen=True)
class ParallelConfig:
    """How a search's evaluations are spread (none of it changes the result: see `SearchConfig.round_size`)."""

    workers: int = 1
    """evaluation workers; 1 without `address`: evaluate in this process (Ray not needed)"""
    address: str | None = None
    """Ray cluster to join ('auto' or HOST:PORT); None: start a local Ray instance on this machine"""
    cpus_per_worker: int = 1
    """CPU cores each worker reserves, and its torch thread count"""
    gpus_per_worker: float = 0.0
    """GPUs each worker reserves; a worker that gets one evaluates on it"""

    @property
    def uses_ray(self) -> bool:
        """Whether this configuration needs Ray."""
        return self.workers > 1 or self.address is not None

    def validate(self) -> None:
        """Refuse counts that cannot run (`gnnrl.parallel.check_parallel` also checks Ray and the cluster)."""
        if self.workers < 1 or self.cpus_per_worker < 1 or self.gpus_per_worker < 0:
            raise GnnrlError("--workers and --cpus-per-worker must be at least 1, --gpus-per-worker at least 0")
