"""Where a search's evaluations run: in this process, or in parallel on Ray actors (`gnnrl[distributed]`).

A search plays its episodes in rounds of `SearchConfig.round_size`: the method proposes every episode's policy of
the round (evaluations deferred), the round's policies are evaluated together by an `Evaluator`, and then the
method learns from the episodes in their fixed order. The evaluators return the same accuracies in the same
order however the work is spread, so a search's result depends on its seed and round size only, never on how
many workers ran it or which finished first.

`RayEvaluator` puts the base model, the validation split and the BatchNorm-recalibration images into Ray's
object store once; each actor builds its own environment from them when it starts, and then receives only a
policy (a few hundred integers) per episode. GPUs per worker are a Ray resource request, so a cluster of GPU
nodes is used as it is.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from .config import ParallelConfig
from .errors import GnnrlError

if TYPE_CHECKING:
    from torch import nn

    from .env import DNNGraphEnv

INSTALL_RAY = "pip install 'gnnrl[distributed]'"


@dataclass(frozen=True)
class Evaluation:
    """The validation accuracy (a fraction) of one policy and where its seconds went."""

    accuracy: float
    build_s: float
    recal_s: float
    eval_s: float
    worker: str = "local"
    """which process evaluated it ('local', or host:pid of a Ray actor)"""

    @property
    def busy_s(self) -> float:
        """Seconds the worker spent on it."""
        return self.build_s + self.recal_s + self.eval_s


class Evaluator(Protocol):
    """Evaluates a round's policies; results in the order of the policies."""

    def evaluate(self, policies: list[np.ndarray]) -> list[Evaluation]:
        """The accuracy of each policy (channels removed per group), in order."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


def env_signature(env: DNNGraphEnv) -> str:
    """A digest of what maps a policy to a network (groups, their removal orders): driver and workers must agree."""
    h = hashlib.sha256()
    for g, order in zip(env.group_ids, env.order, strict=True):
        h.update(f"{g}:{order.shape}:".encode())
        h.update(np.ascontiguousarray(order, dtype=np.int64).tobytes())
    h.update(env.config.importance.encode())
    return h.hexdigest()


class LocalEvaluator:
    """Evaluates in this process, one policy after another (the default: no Ray needed)."""

    def __init__(self, env: DNNGraphEnv) -> None:
        self.env = env

    def evaluate(self, policies: list[np.ndarray]) -> list[Evaluation]:
        """Each policy through the env (its cache included), in order."""
        out = []
        for removed in policies:
            accuracy, timing = self.env.evaluate_timed(removed)
            out.append(Evaluation(accuracy, **timing))
        return out

    def close(self) -> None:
        """Nothing to release."""


def import_ray() -> Any:
    """The `ray` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise GnnrlError(f"parallel evaluation (--workers > 1 or --ray-address) needs Ray: {INSTALL_RAY}, or run "
                         "with --workers 1") from e
    return ray


class EvalWorker:
    """A Ray actor: one copy of the environment, evaluating one policy per call."""

    def __init__(self, shared: list[Any], env_config: Any, latency: dict[str, Any] | None, threads: int) -> None:
        import ray

        from .env import DNNGraphEnv
        from .latency import latency_from_dict

        torch.set_num_threads(max(1, threads))
        # `shared` holds object-store references (model, validation split, recalibration images and their
        # normalisation, the tune set of reward 'tuned'), fetched here once; nested in a list, Ray passes the
        # references themselves, so the driver's copies stay the only ones and a replacement actor fetches the
        # same objects
        model, val, recal, tune = ray.get(shared)
        self.env = DNNGraphEnv(model, val, env_config, None, latency_from_dict(latency) if latency else None, tune)
        self.env.recal_images, self.env.recal_norm = recal
        if torch.cuda.is_available() and _assigned_gpus():
            self.env.device = torch.device("cuda")
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def signature(self) -> str:
        """`env_signature` of this worker's environment."""
        return env_signature(self.env)

    def evaluate(self, removed: list[int]) -> Evaluation:
        """The accuracy of one policy."""
        accuracy, timing = self.env.evaluate_timed(np.asarray(removed, dtype=np.int64))
        return Evaluation(accuracy, **timing, worker=self.name)


def _assigned_gpus() -> list[Any]:
    import ray

    return list(ray.get_gpu_ids())


class RayEvaluator:
    """Evaluates a round's policies on `ParallelConfig.workers` Ray actors, scheduled as they become free."""

    def __init__(self, env: DNNGraphEnv, model: nn.Module, parallel: ParallelConfig,
                 worker: type[EvalWorker] = EvalWorker) -> None:
        ray = import_ray()
        t0 = time.perf_counter()
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            self.started = True
            _init_ray(ray, parallel)
        try:
            self.actors = self._start(env, model, parallel, worker)
        except BaseException:
            self.close()
            raise
        self.start_s = time.perf_counter() - t0
        """seconds to start Ray and the actors (each builds its environment)"""

    def _start(self, env: DNNGraphEnv, model: nn.Module, parallel: ParallelConfig,
               worker_class: type[EvalWorker]) -> list[Any]:
        from .data import Split
        from .folder import FolderSplit

        ray = self.ray
        val = env.val
        if isinstance(val, Split):  # a fresh copy: without the cached float images (4× the uint8 ones)
            val = Split(val.name, val.images, val.labels, val.classes, val.mean, val.std)
        elif isinstance(val, FolderSplit):  # streamed: each worker decodes with its own cores
            val = replace(val, workers=parallel.cpus_per_worker)
        # kept alive for restarts
        self.shared = [ray.put(x) for x in (model, val, (env.recal_images, env.recal_norm), env.tune)]
        latency = env.latency.to_dict() if env.latency is not None else None
        worker = ray.remote(num_cpus=parallel.cpus_per_worker, num_gpus=parallel.gpus_per_worker)(worker_class)
        self.new_actor = lambda: worker.remote(self.shared, env.config, latency, parallel.cpus_per_worker)
        actors = [self.new_actor() for _ in range(parallel.workers)]
        expected = env_signature(env)
        for sig in self._get([a.signature.remote() for a in actors], "starting the evaluation workers"):
            if sig != expected:
                raise GnnrlError("a Ray worker's channel analysis differs from this process's: install the same "
                                 "gnnrl and torch versions on every node")
        return actors

    def _get(self, refs: list[Any], doing: str) -> list[Any]:
        """`ray.get`, with a worker's death or error turned into one line."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as e:
            raise GnnrlError(f"an evaluation worker died while {doing}; every finished round is in the "
                             "checkpoint: rerun with --resume") from e
        except self.ray.exceptions.RayTaskError as e:
            cause = e.as_instanceof_cause()
            if isinstance(cause, GnnrlError):
                raise GnnrlError(str(cause).splitlines()[-1]) from e
            raise

    def evaluate(self, policies: list[np.ndarray]) -> list[Evaluation]:
        """The round's policies spread over the actors (each takes the next as soon as it is free); in order."""
        results: list[Evaluation | None] = [None] * len(policies)
        queue = list(enumerate(policies))[::-1]
        running: dict[Any, tuple[int, Any]] = {}

        def submit(actor: Any) -> None:
            i, removed = queue.pop()
            running[actor.evaluate.remote([int(r) for r in removed])] = (i, actor)

        for actor in self.actors[: len(policies)]:
            submit(actor)
        retried: set[int] = set()
        while running:
            done, _ = self.ray.wait(list(running), num_returns=1)
            i, actor = running.pop(done[0])
            try:
                results[i] = self.ray.get(done[0])
            except self.ray.exceptions.RayActorError:
                # a dead worker is replaced and its policy evaluated again, once; a second death fails the run
                if i in retried:
                    raise GnnrlError("evaluation workers died twice on the same policy (out of memory? see Ray's "
                                     "logs under /tmp/ray); every finished round is in the checkpoint: rerun with "
                                     "--resume") from None
                retried.add(i)
                fresh = self.new_actor()
                self.actors[self.actors.index(actor)] = fresh
                queue.append((i, policies[i]))
                submit(fresh)
                continue
            except self.ray.exceptions.RayTaskError:
                self._get(done, "evaluating a round")  # raises, in one line when it is gnnrl's own error
            if queue:
                submit(actor)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Stop the actors, and the local Ray instance if this evaluator started it."""
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor)
            except Exception:  # an actor that is already gone needs no stopping
                pass
        if self.started:
            self.ray.shutdown()


def _init_ray(ray: Any, parallel: ParallelConfig) -> None:
    """Join the cluster at `parallel.address`, or start a local instance sized for the workers."""
    if parallel.address is None:  # a local instance talks over loopback only
        ray.init(num_cpus=parallel.workers * parallel.cpus_per_worker, include_dashboard=False,
                 log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
        return
    try:
        ray.init(address=parallel.address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise GnnrlError(f"cannot join the Ray cluster at {parallel.address!r}: {str(e).splitlines()[0]} Start one "
                         "with `ray start --head`, or leave out --ray-address to run locally") from e


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, when HOST:PORT does not accept connections (Ray itself retries for minutes)."""
    if address == "auto":
        return  # Ray finds a running local cluster, or says at once that there is none
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise GnnrlError(f"--ray-address {address!r} is not 'auto' or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GnnrlError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with "
                         "`ray start --head`, check the address, or leave out --ray-address to run locally") from e


def check_parallel(parallel: ParallelConfig) -> None:
    """Refuse settings that cannot run (Ray missing, a cluster that does not answer included), before slow work."""
    parallel.validate()
    if parallel.address is not None:
        check_reachable(parallel.address)
    if parallel.uses_ray:
        import_ray()


def make_evaluator(env: DNNGraphEnv, model: nn.Module, parallel: ParallelConfig | None,
                   worker: type[EvalWorker] = EvalWorker) -> Evaluator:
    """The evaluator `parallel` asks for (local when None or one worker without a cluster); `worker`: the Ray
    actor's class (the tests pass one that misbehaves)."""
    if parallel is None or not parallel.uses_ray:
        return LocalEvaluator(env)
    check_parallel(parallel)
    return RayEvaluator(env, model, parallel, worker)
