"""`gnnrl compress`: the whole job in one resumable run — search → prune → fine-tune → evaluate → export → report.

The run folder records what the run depends on (run.json: model, a hash of its weights, data source, budget,
every stage's settings). Each stage leaves its result in the folder before the next begins, so a killed run
resumes (`resume=True`) from the stage it reached — and inside the search and the fine-tune, from the last
episode or epoch — with the result an uninterrupted run gives. A folder that holds a run is never reused
without `resume` or `overwrite`; a resume with other settings is refused, naming the keys that differ.

    RUN/run.json            identity and settings
    RUN/search/             policy.json, history.jsonl, rewards.png, checkpoint.pt (gnnrl search)
    RUN/select/             finalist-<i>.json (each finalist's score after the short fine-tune), policy.json (the
                            one fine-tuned, with every finalist's scores): `finalists` > 0 and a learning method
    RUN/pruned.safetensors  the policy applied, before fine-tuning (gnnrl.load)
    RUN/layers.json         per layer: original and kept channels
    RUN/finetune/           history.jsonl, checkpoint.pt, best.safetensors, model.safetensors
    RUN/model.safetensors   the result: best-on-val fine-tuned weights (gnnrl.load)
    RUN/model.onnx          the result in ONNX (original.onnx beside it, for the latency comparison)
    RUN/baseline/           the simple alternative (`baseline_method`: uniform-internal unless asked) at the same
                            budget, engine and rounding: search/, pruned.safetensors, finetune/ (the same
                            fine-tune), model.onnx
    RUN/eval.json, deploy.json, report.json, report.md, *.png
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .batchnorm import recalibrate_bn
from .checkpoint import differences
from .config import CompressConfig, ParallelConfig, TrainConfig
from .config import quick_config as quick_config  # re-exported: `gnnrl.compress.quick_config` (README)
from .data import Cifar
from .engines import budget_check, machine
from .env import EnvConfig, allowed_removed
from .errors import GnnrlError
from .evaluate import evaluate
from .export import compare_latency, export_onnx, memory
from .files import atomic_write, prepare_run_dir, write_json
from .finetune import finetune
from .groups import analyze
from .identity import model_identity
from .latency import latency_from_dict
from .methods import method_spec
from .policy import apply_policy, policy_cost, read_policy
from .prune import PrunedModel
from .report import write_report
from .saving import load, save
from .search import LEGACY, episodes_to_run, make_env, measured_lander, recal_split, search
from .selection import select_after_search
from .train import TrainResult

STAGES = ("search", "select", "prune", "finetune", "evaluate", "export", "report")


def _identity(model: nn.Module, data: Cifar, config: CompressConfig) -> dict[str, Any]:
    return {"model": model_identity(model), "dataset": data.name,
            "data_source": str(data.source), "config": json.loads(json.dumps(asdict(config)))}


def _check_identity(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run made with another model, weights, data or settings; name what differs."""
    diff = differences({k: v for k, v in saved.items() if k != "data_source"},
                       {k: v for k, v in now.items() if k != "data_source"},
                       defaults={"config": {"search": LEGACY, "finetune": {"val_size": 5000}, "baseline": False,
                                            "baseline_method": "uniform-internal", "finalists": 0,
                                            "finalist_steps": 300, "finalist_batch": 64}})
    if diff:
        raise GnnrlError(f"{path} was made with other inputs or settings ({diff}); resume with the same ones, "
                         "or start a new --out")


def layer_widths(pruned: PrunedModel, base_graph_module: nn.Module) -> list[dict[str, Any]]:
    """Per conv/linear layer of the original (in graph order): original and kept output channels, coupling."""
    rows = []
    for name, mod in base_graph_module.named_modules():
        if not isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        new = pruned.module.get_submodule(name)
        width = mod.out_channels if isinstance(mod, nn.modules.conv._ConvNd) else mod.out_features
        kept = new.out_channels if isinstance(new, nn.modules.conv._ConvNd) else new.out_features
        rows.append({"name": name, "original": int(width), "kept": int(kept)})
    return rows


def _mark_coupled(rows: list[dict[str, Any]], graph: Any) -> list[dict[str, Any]]:
    """Mark layers whose output channels share a group with other layers (residual adds, concat)."""
    coupled = set()
    for g in analyze(graph).groups:
        layers = [m for m in g.members if not m.startswith(("pad@", "input"))]
        if len(layers) > 1:
            coupled.update(layers)
    return [{**r, "coupled": r["name"] in coupled} for r in rows]


def check_reachable(model: nn.Module, env: EnvConfig, input_shape: tuple[int, ...]) -> None:
    """Refuse, before anything is written, a MACs/params budget that even one channel per group cannot meet."""
    if env.metric not in ("macs", "params"):
        return  # a latency budget needs the timed latency model: the environment checks it
    from .prune import channels
    from .trace import trace

    ch = channels(trace(model.eval(), torch.zeros(1, *input_shape)))
    if not ch.prunable:
        raise GnnrlError("this model has no prunable channel group (see `gnnrl info`)")
    orders = ch.orders(ch.prunable, env.importance)
    # the fewest channels the env will allow: its own rule, rounding included (so both refuse the same budgets)
    floor = ch.cost_after(ch.plan_removed(orders, [allowed_removed(o, env.round_to)[-1] for o in orders]))
    base = ch.original_cost
    ratio = floor.macs / base.macs if env.metric == "macs" else floor.params / base.params
    if ratio > env.budget:
        what = "MACs" if env.metric == "macs" else env.metric
        raise GnnrlError(f"budget {env.budget} cannot be met: keeping the fewest channels allowed per group (round_to "
                         f"{env.round_to}) still leaves {ratio:.3f} "
                         f"of the {what}; choose a budget above that")


def _evaluate_all(module: nn.Module, splits: dict[str, Any]) -> dict[str, float]:
    """Top-1 on val and test_rest, and on the whole test set as their image-weighted mean (they partition it)."""
    res = {name: evaluate(module, split) for name, split in splits.items()}
    out = {name: r.top1 for name, r in res.items()}
    out["test"] = 100.0 * sum(r.correct for r in res.values()) / sum(r.total for r in res.values())
    return out


@dataclass
class CompressResult:
    """Where the run folder is and what it reports."""

    out: Path
    report: dict[str, Any]


def compress(model: nn.Module, data: Cifar, out: str | Path, config: CompressConfig | None = None,
             resume: bool = False, overwrite: bool = False, progress: bool = True,
             log: Any = None, policy: str | Path | None = None, parallel: ParallelConfig | None = None
             ) -> CompressResult:
    """Search, prune, fine-tune, evaluate, export and report `model` into the run folder `out` (resumable).

    With `policy` (a policy.json from an earlier search of this model and weights) the search is skipped.
    `parallel`: evaluate the search's episodes on Ray workers (see `gnnrl.search.search`). Each stage skips
    what its files show is done, so a killed run resumes at the stage it reached.
    """
    config = config or CompressConfig()
    say = log or (lambda msg: None)
    config.validate()
    given = read_policy(policy) if policy is not None else None
    if given is not None:
        apply_policy(model, given)  # refuses a policy of another model or other weights, before anything is written
    else:
        check_reachable(model, config.search.env, tuple(data.image_shape))
    out = _open_run(model, data, config, out, resume, overwrite, given)
    policy_path = _search_stage(model, data, config, out, given, policy, progress, parallel, say)
    pruned = _prune_stage(model, data, out, policy_path, say)
    final, alt = _finetune_stage(model, data, config, out, progress, say)
    if not (out / "eval.json").is_file():
        say("[4/6] evaluate on val, test_rest and test")
        write_json(out / "eval.json", _evaluation(model, data, config, out, pruned, final, alt))
    if not (out / "deploy.json").is_file():
        say("[5/6] export to ONNX, measure latency and memory")
        write_json(out / "deploy.json", _deployment(model, data, config, out, final, alt))
    # 6. report (always rebuilt: cheap, and picks up every file)
    say("[6/6] report")
    return CompressResult(out=out, report=write_report(out))


def _open_run(model: nn.Module, data: Cifar, config: CompressConfig, out: str | Path, resume: bool, overwrite: bool,
              given: dict[str, Any] | None) -> Path:
    """The run folder, refused / emptied / resumed as asked, with run.json naming what the run is."""
    out = prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if overwrite and not resume and any(out.iterdir()):
        if not (out / "run.json").is_file():  # never empty a folder that is not ours (think `--out ~ --overwrite`)
            raise GnnrlError(f"--overwrite refused: {out} is not a gnnrl compress run folder (no run.json), so its "
                             "files are not ours to delete; choose an empty or new --out")
        for child in out.iterdir():  # start over: what the user asked for, and only inside our run folder
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    identity = _identity(model, data, config)
    if given is not None:
        identity["policy_sha256"] = hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()
    if (out / "run.json").is_file():
        saved = json.loads((out / "run.json").read_text())
        _check_identity(saved.get("identity", {}), identity, out / "run.json")
    elif resume and any(out.iterdir()):
        raise GnnrlError(f"{out} holds files but no run.json: it is not a gnnrl compress run; choose another --out")
    write_json(out / "run.json", {"model": identity["model"]["spec"] or {"name": type(model).__name__, "custom": True},
                                  "budget": config.search.env.budget,
                                  "metric": config.search.env.metric, "finetune": asdict(config.finetune),
                                  "gnnrl_version": __version__, "stages": list(STAGES), "identity": identity})
    return out


def _search_stage(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, given: dict[str, Any] | None,
                  policy: str | Path | None, progress: bool, parallel: ParallelConfig | None, say: Any) -> Path:
    """1. search (its own checkpoint resumes it episode by episode), and the baseline's; the policy's path."""
    sdir = out / "search"
    policy_path = sdir / "policy.json"
    if given is not None and not policy_path.is_file():
        say(f"[1/6] search: skipped, using the given policy ({given.get('episodes_run', '?')} episodes, val top-1 "
            f"{given.get('val_top1', float('nan')):.2f} % before fine-tuning)")
        write_json(policy_path, {**given, "given": str(policy)})
    episodes = episodes_to_run(config.search)
    done = policy_path.is_file() and (json.loads(policy_path.read_text()).get("episodes_run") == episodes
                                      or given is not None)
    if not done:
        warm = method_spec(config.search.method).warmup
        say(f"[1/6] search ({config.search.method}): {episodes} episode(s)" +
            (f", the first {config.search.warmup} with random actions" if warm else ""))
        search(model, data, config.search, out_dir=sdir, resume=(sdir / "checkpoint.pt").is_file(),
               progress=progress, parallel=parallel)
    if config.baseline:
        _baseline_search(model, data, config, out, policy_path, progress, say)
    if given is None and config.finalists > 0 and not method_spec(config.search.method).one_shot:
        return _select_stage(model, data, config, out, policy_path, progress, say)
    return policy_path


def _select_stage(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, policy_path: Path,
                  progress: bool, say: Any) -> Path:
    """1b. select: the search's best few and the simple rules, each scored after the same short distilled fine-tune;
    the chosen policy's path (select/policy.json)."""
    sdir = out / "select"
    chosen = sdir / "policy.json"
    if chosen.is_file():
        return chosen
    searched = json.loads(policy_path.read_text())
    saved = searched.get("latency")
    latency = latency_from_dict(saved["model"]) if saved and saved.get("model") else None
    env = make_env(model, data, config.search, latency)  # the search's budget, rounding and latency model
    policy, _ = select_after_search(env, model, data, out / "search", top=config.finalists,
                                    steps=config.finalist_steps, batch_size=config.finalist_batch,
                                    val_from=config.search.val_from, seed=config.finetune.seed, out=sdir,
                                    progress=progress, say=lambda s: say(f"[1/6] select: {s}"),
                                    land=measured_lander(env), searched=searched)
    write_json(chosen, policy)
    return chosen


def _prune_stage(model: nn.Module, data: Cifar, out: Path, policy_path: Path, say: Any) -> PrunedModel:
    """2. prune: replay the best policy exactly; the pruned file and the layer widths."""
    say("[2/6] prune: applying the best policy")
    pruned = apply_policy(model, policy_path)
    if not (out / "pruned.safetensors").is_file():
        atomic_write(out / "pruned.safetensors", lambda p: save(pruned, p))
    if not (out / "layers.json").is_file():
        from .trace import trace

        graph = trace(model.eval(), torch.zeros(1, *data.image_shape))
        write_json(out / "layers.json", _mark_coupled(layer_widths(pruned, graph.module), graph))
    return pruned


def _finetune_stage(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, progress: bool, say: Any
                    ) -> tuple[nn.Module, nn.Module | None]:
    """3. fine-tune (its own checkpoint resumes it epoch by epoch), and the baseline the same way."""
    fdir = out / "finetune"
    if not (fdir / "train.json").is_file():
        say(f"[3/6] fine-tune: {config.finetune.epochs} epochs" + (" with distillation"
                                                                    if config.finetune.kd_weight else ""))
        student = _rebuild(out / "pruned.safetensors", model)
        _finetune(student, model, data, config.finetune, fdir, progress)
    if not (out / "model.safetensors").is_file():
        atomic_write(out / "model.safetensors", lambda p: shutil.copyfile(fdir / "best.safetensors", p))
    final = _rebuild(out / "model.safetensors", model)
    alt = _baseline_finetune(model, data, config, out, progress, say) if config.baseline else None
    return final, alt


def _evaluation(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, pruned: PrunedModel,
                final: nn.Module, alt: nn.Module | None) -> dict[str, Any]:
    """4. evaluate: original, pruned before fine-tuning (BN re-estimated as in the search), after; the baseline."""
    splits = {s: data.split(s, val_from=config.search.val_from, val_size=config.search.val_size)
              for s in ("val", "test_rest")}
    if config.eval_size:
        splits = {k: v.balanced_subset(config.eval_size) for k, v in splits.items()}
    recal = recal_split(data, config.search)

    def recalibrated(path: Path) -> nn.Module:  # a pruned file, BatchNorm re-estimated as in the search
        module = _rebuild(path, model)
        if recal is not None:
            recalibrate_bn(module, recal.images[: config.search.env.bn_recal], mean=recal.mean, std=recal.std)
        return module

    before = recalibrated(out / "pruned.safetensors")
    base_cost = pruned.base_cost
    macs, params = pruned.cost.fraction_of(base_cost)
    evaluation = {
        "original": _evaluate_all(model, splits), "pruned_before_ft": _evaluate_all(before, splits),
        "pruned_after_ft": _evaluate_all(final, splits), "images": {k: len(v) for k, v in splits.items()},
        "cost": {"original": asdict(base_cost), "pruned": asdict(pruned.cost),
                 "macs_ratio": macs, "params_ratio": params}}
    if alt is not None:
        alt_before = recalibrated(out / "baseline" / "pruned.safetensors")
        alt_cost = policy_cost(model, out / "baseline" / "search" / "policy.json")
        evaluation.update(baseline_before_ft=_evaluate_all(alt_before, splits),
                          baseline_after_ft=_evaluate_all(alt, splits))
        evaluation["cost"].update(baseline=asdict(alt_cost), baseline_macs_ratio=alt_cost.fraction_of(base_cost)[0])
    return evaluation


def _deployment(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, final: nn.Module,
                alt: nn.Module | None) -> dict[str, Any]:
    """5. export to ONNX, latency on the engines (and the budget on its own engine), memory, file sizes."""
    example = torch.zeros(1, *data.image_shape)
    onnx = export_onnx(final, out / "model.onnx", example)
    export_onnx(model, out / "original.onnx", example)
    models, files = {"original": model, "pruned": final}, {"original": out / "original.onnx",
                                                          "pruned": out / "model.onnx"}
    if alt is not None:
        export_onnx(alt, out / "baseline" / "model.onnx", example)
        models["baseline"], files["baseline"] = alt, out / "baseline" / "model.onnx"
    env = config.search.env
    batches = tuple(sorted({*config.latency_batches, *([env.latency_batch] if env.metric == "latency" else [])}))
    rows = compare_latency(models, files, input_shape=tuple(example.shape[1:]), batch_sizes=batches,
                           threads=config.latency_threads, rounds=config.latency_rounds)
    check = None
    if env.metric == "latency":  # the budget, measured on its own engine with many repeats per round
        engine = env.latency_engine()
        check = {**engine.to_dict(), "budget": env.budget,
                 "networks": budget_check(engine, {k: v for k, v in models.items() if k != "original"}, model,
                                          example, rounds=max(5, config.latency_rounds // 2))}
    return {"onnx": asdict(onnx), "latency": rows, "threads": config.latency_threads, "budget_check": check,
            "machine": machine(),
            "memory": {"original": asdict(memory(model, example)), "pruned": asdict(memory(final, example))},
            "files": {"original_onnx": (out / "original.onnx").stat().st_size,
                      "pruned_onnx": (out / "model.onnx").stat().st_size,
                      "pruned_safetensors": (out / "model.safetensors").stat().st_size}}


def _baseline_search(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, policy_path: Path,
                     progress: bool, say: Any) -> None:
    """The baseline method (uniform-internal unless asked) at the search's budget, metric, engine and rounding,
    landed with the search's own latency model (not a second, differently noisy fit): the alternative the result
    must beat."""
    bdir = out / "baseline" / "search"
    if (bdir / "policy.json").is_file():
        return
    say(f"[1/6] baseline: {config.baseline_method} at the same budget, engine and rounding")
    saved = json.loads(policy_path.read_text()).get("latency")
    latency = latency_from_dict(saved["model"]) if saved and saved.get("model") else None
    alt = replace(config.search, method=config.baseline_method)
    search(model, data, alt, out_dir=bdir, overwrite=True, progress=progress, latency=latency)


def _baseline_finetune(model: nn.Module, data: Cifar, config: CompressConfig, out: Path, progress: bool,
                       say: Any) -> nn.Module:
    """The baseline pruned and given the same fine-tune as the result; its best-on-val weights."""
    bdir = out / "baseline"
    if not (bdir / "pruned.safetensors").is_file():
        alt = apply_policy(model, bdir / "search" / "policy.json")
        atomic_write(bdir / "pruned.safetensors", lambda p: save(alt, p))
    if not (bdir / "finetune" / "train.json").is_file() and _same_policy(out / "select" / "policy.json",
                                                                          bdir / "search" / "policy.json"):
        # the selection chose the baseline's own policy: the same fine-tune (deterministic) would repeat the result's
        say("[3/6] the baseline's policy is the one chosen: its fine-tune is the result's (copied, not repeated)")
        tmp = bdir / ".finetune.copy"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out / "finetune", tmp)
        shutil.rmtree(bdir / "finetune", ignore_errors=True)  # a part-run of an older version: ours to replace
        tmp.rename(bdir / "finetune")
    if not (bdir / "finetune" / "train.json").is_file():
        say(f"[3/6] fine-tune the baseline: the same {config.finetune.epochs} epochs")
        _finetune(_rebuild(bdir / "pruned.safetensors", model), model, data, config.finetune, bdir / "finetune",
                  progress)
    return _rebuild(bdir / "finetune" / "best.safetensors", model)


def _same_policy(a: Path, b: Path) -> bool:
    """Whether two policy files exist and remove the same channels."""
    return a.is_file() and b.is_file() and read_policy(a)["removed"] == read_policy(b)["removed"]


def _rebuild(path: Path, model: nn.Module) -> nn.Module:
    """A pruned file of this run, rebuilt by zoo name or, for the user's own module, on a copy of it."""
    return load(path, model=None if getattr(model, "gnnrl_spec", None) else copy.deepcopy(model))


def _finetune(student: nn.Module, teacher: nn.Module, data: Cifar, config: TrainConfig, out: Path,
              progress: bool) -> TrainResult:
    return finetune(student, data, config, teacher=teacher if config.kd_weight > 0 else None, out_dir=out,
                    resume=(out / "checkpoint.pt").is_file(), progress=progress)
