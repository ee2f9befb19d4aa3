"""The report of a `gnnrl compress` run, rebuilt from the run folder's files alone (`gnnrl report RUN`).

Reads run.json, search/policy.json, search/history.jsonl, select/policy.json, layers.json, eval.json,
finetune/history.jsonl and deploy.json; writes report.json (everything in one place, for scripts), report.md (the
before/after table a reader wants) and the plots (`gnnrl.plot`): ratios.png (kept channels per layer, like the
paper's Fig. 3), pareto.png (every episode's validation top-1 against its MACs), rewards.png and finetune.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .engines import busy_warning, is_busy
from .errors import GnnrlError
from .files import write_json, write_text


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GnnrlError(f"{path} is unreadable ({e}); rerun that stage with `gnnrl compress … --resume` after "
                         "deleting it") from e


def _read_jsonl(path: Path, notes: list[str] | None = None, expected: int | None = None) -> list[dict[str, Any]]:
    """The records of a log, up to its first damaged line; what is missing or damaged is said in `notes`."""
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        lines = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if notes is not None:
                notes.append(f"{path.parent.name}/{path.name}: line {i + 1} is damaged; shown are the {len(records)} "
                             "records before it")
            return records
        records.append(record)
    if expected is not None and len(records) < expected and notes is not None:
        notes.append(f"{path.parent.name}/{path.name} holds {len(records)} of the {expected} records its run wrote "
                     "(lines were lost); shown are those")
    return records


def collect(run: str | Path) -> dict[str, Any]:
    """Everything a run folder knows, as one dict (what report.json holds)."""
    run = Path(run)
    if not (run / "run.json").is_file():
        raise GnnrlError(f"{run} is not a gnnrl compress run folder (no run.json)")
    rep: dict[str, Any] = {"run": _read_json(run / "run.json")}
    policy = _read_json(run / "search" / "policy.json")
    if policy:
        rep["search"] = {k: policy.get(k) for k in ("val_top1", "uniform_val_top1", "macs_ratio", "params_ratio",
                                                    "episode", "episodes_run", "budget", "metric", "method")}
        env = (policy.get("config") or {}).get("env", {})
        if env.get("reward") == "tuned":  # the reward's accuracy is after a short fine-tune: say so
            rep["search"]["reward"] = {k: env[k] for k in ("reward", "reward_steps", "reward_batch")}
        if policy.get("latency"):
            rep["search_latency"] = {k: v for k, v in policy["latency"].items() if k != "model"}
    chosen = _read_json(run / "select" / "policy.json")
    if chosen and chosen.get("latency"):  # the policy fine-tuned is the selection's: so are its latencies
        rep["search_latency"] = {k: v for k, v in chosen["latency"].items() if k != "model"}
    if chosen and chosen.get("selection"):
        cfg = (rep["run"].get("identity") or {}).get("config", {})
        rep["selection"] = {**chosen["selection"], "steps": cfg.get("finalist_steps"),
                            "batch": cfg.get("finalist_batch")}
    for name in ("eval", "deploy"):
        value = _read_json(run / f"{name}.json")
        if value is not None:
            rep[name] = value
    notes: list[str] = []
    if policy:
        _read_jsonl(run / "search" / "history.jsonl", notes, policy.get("episodes_run"))
    ckpt_epochs = ((rep["run"] or {}).get("finetune") or {}).get("epochs") if (run / "model.safetensors").is_file() \
        else None  # a finished run wrote every epoch
    ft = _read_jsonl(run / "finetune" / "history.jsonl", notes, ckpt_epochs)
    if notes:
        rep["warnings"] = notes
    if ft:
        rep["finetune"] = {"epochs": len(ft), "best_val_top1": max(r["val/top1"] for r in ft),
                           "best_epoch": max(ft, key=lambda r: r["val/top1"])["epoch"], "history": ft}
    return rep


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(rep: dict[str, Any]) -> str:
    """The before/after table and the run's key facts as Markdown."""
    r = rep["run"]
    metric = {"macs": "MACs", "params": "parameters"}.get(r["metric"], r["metric"])
    lines = [f"# gnnrl compress: {r['model']['name']} at {r['budget']:.0%} of the {metric}", ""]
    lines += [f"> ⚠ {note}" for note in rep.get("warnings", [])] + ([""] if rep.get("warnings") else [])
    alt = r.get("identity", {}).get("config", {}).get("baseline_method", "uniform-internal")
    lines += _table(rep.get("eval", {}), rep.get("deploy", {}), alt)
    lines += _latency_lines(r, rep.get("deploy", {}), rep.get("search_latency"), alt)
    lines += _run_lines(r, rep.get("deploy", {}), rep.get("search"), rep.get("finetune"), rep.get("selection"))
    return "\n".join(lines) + "\n"


def _selection_lines(sel: dict[str, Any] | None, metric: str, alt: str) -> list[str]:
    """The finalists, each scored after the same short distilled fine-tune, and which one was fine-tuned (`alt`:
    the baseline's name, said when the result is the baseline's own policy)."""
    if not sel:
        return []
    budgeted = {"params": "params", "latency": "predicted latency"}.get(metric)  # (MACs have their own column)
    lines = ["", f"Selection: the policy fine-tuned is **{sel['chosen']}**, the best of these finalists on val after "
             f"the same {sel.get('steps')} distilled steps × {sel.get('batch')} images each (BatchNorm re-estimated); "
             "the search's reward ranks policies poorly by their accuracy after fine-tuning, so the finalists are "
             "scored again:", "",
             "| finalist |" + (f" {budgeted} / original |" if budgeted else "") +
             " MACs / original | val before | val after the short fine-tune |",
             "|---|---|---|---|" + ("---|" if budgeted else "")]
    for f in sel["finalists"]:
        c = f["candidate"]
        mark = "**" if c["name"] == sel["chosen"] else ""
        lines.append(f"| {mark}{c['name']}{mark} |" + (f" {c['metric_ratio']:.3f} |" if budgeted else "") +
                     f" {c['macs_ratio']:.3f} | {c['reward_top1']:.2f} | {f['tuned_top1']:.2f} |")
    if alt in sel["chosen"].split(" = "):
        lines += ["", f"The policy chosen is {alt}'s own, so the result and the baseline are one network (one "
                  "fine-tune, copied): nothing the search found scored better under this budget."]
    return lines


def _table(ev: dict[str, Any], dep: dict[str, Any], name: str) -> list[str]:
    """Accuracy, size and memory of the original, the result and (when run) the baseline `name`, before and
    after."""
    orig, before, after = ev.get("original", {}), ev.get("pruned_before_ft", {}), ev.get("pruned_after_ft", {})
    alt_before, alt_after = ev.get("baseline_before_ft"), ev.get("baseline_after_ft")
    alt = alt_after is not None
    blank = " | |" if alt else ""
    head = "| | original | pruned, before fine-tune | pruned, after fine-tune |"
    lines = [head + (f" {name}, before | {name}, after |" if alt else ""),
             "|---|---|---|---|" + ("---|---|" if alt else "")]
    images = ev.get("images", {})
    for split, label in (("test", "top-1 test %"), ("test_rest", "top-1 test_rest (unseen) %"),
                         ("val", "top-1 val (searched on) %")):
        n = sum(images.values()) if split == "test" else images.get(split)
        label = label.replace(" %", f" ({n} images) %") if n else label
        extra = f" {_fmt(alt_before.get(split))} | {_fmt(alt_after.get(split))} |" if alt else ""
        lines.append(f"| {label} | {_fmt(orig.get(split))} | {_fmt(before.get(split))} | {_fmt(after.get(split))} |"
                     + extra)
    cost = ev.get("cost", {})
    if cost:
        o, p = cost["original"], cost["pruned"]
        b = cost.get("baseline")
        extra = f" {b['macs'] / 1e6:.2f} ({b['macs'] / o['macs']:.3f}×) | ← |" if alt and b else blank
        lines.append(f"| MACs (M) | {o['macs'] / 1e6:.2f} | {p['macs'] / 1e6:.2f} "
                     f"({p['macs'] / o['macs']:.3f}×) | ← |" + extra)
        lines.append(f"| params (M) | {o['params'] / 1e6:.3f} | {p['params'] / 1e6:.3f} "
                     f"({p['params'] / o['params']:.3f}×) | ← |" + blank)
    files = dep.get("files", {})
    if files:
        lines.append(f"| ONNX file (KB) | {files['original_onnx'] / 1024:.0f} | | {files['pruned_onnx'] / 1024:.0f} |"
                     + blank)
        lines.append(f"| safetensors (KB) | | | {files['pruned_safetensors'] / 1024:.0f} |" + blank)
    mem = dep.get("memory", {})
    if mem:
        o, p = mem["original"], mem["pruned"]
        lines.append(f"| weights + peak activations per image (KB) | {o['weight_bytes'] / 1024:.0f} + "
                     f"{o['peak_activation_bytes'] / 1024:.0f} | | {p['weight_bytes'] / 1024:.0f} + "
                     f"{p['peak_activation_bytes'] / 1024:.0f} |" + blank)
    return lines


def _latency_lines(r: dict[str, Any], dep: dict[str, Any], predicted: dict[str, Any] | None, name: str
                   ) -> list[str]:
    """The latency table (every engine and batch timed), the budget's verdict and the machine."""
    lat = dep.get("latency", [])
    if not lat:
        return []
    has_alt = any(x["model"] == "baseline" for x in lat)
    lines = ["", f"Latency (ms per batch, median ± IQR over interleaved rounds, {dep.get('threads')} thread(s); "
             "PyTorch = inference copy with folded BN, channels-last; a timing whose IQR exceeds a quarter of "
             "its median is marked ⚠, too noisy to trust):", "",
             "| engine | batch | original | pruned | speed-up |" + (f" {name} | speed-up |" if has_alt else ""),
             "|---|---|---|---|---|" + ("---|---|" if has_alt else "")]
    keys = sorted({(x["engine"], x["batch"]) for x in lat}, key=lambda k: (k[0] != "pytorch", k[1]))
    for engine, batch in keys:
        rows = {x["model"]: x for x in lat if x["engine"] == engine and x["batch"] == batch}
        o, p = rows["original"], rows["pruned"]
        cells = [f"{_ms(o)}", f"{_ms(p)}", f"{o['median_ms'] / p['median_ms']:.2f}×"]
        if "baseline" in rows:
            cells += [_ms(rows["baseline"]), f"{o['median_ms'] / rows['baseline']['median_ms']:.2f}×"]
        lines.append(f"| {engine} | {batch} | " + " | ".join(cells) + " |")
    lines += _budget_lines(r, predicted, dep.get("budget_check"), name)
    m = dep.get("machine")
    if m:
        lines += ["", f"Timed on {m['cpu']} ({m['cores']} usable cores), torch {m['torch']}, onnxruntime "
                  f"{m['onnxruntime']}."]
    return lines


def _run_lines(r: dict[str, Any], dep: dict[str, Any], s: dict[str, Any] | None, ft: dict[str, Any] | None,
               sel: dict[str, Any] | None = None) -> list[str]:
    """The ONNX check, the search, the selection (a table) and the fine-tune, and the plots."""
    lines = []
    onnx = dep.get("onnx", {})
    if onnx:
        lines += ["", f"ONNX (opset {onnx['opset']}, dynamic batch) vs PyTorch: max |Δ logits| "
                  f"{onnx['max_abs_diff']:.2e} on {onnx['check_batch']} random images."]
    if s:
        tuned = s.get("reward")
        how = (f"after a short distilled fine-tune of {tuned['reward_steps']} steps × {tuned['reward_batch']} "
               "images (--reward tuned)" if tuned else "before fine-tuning")
        lines += ["", f"Search ({r.get('method', 'gnnrl')}, {s['episodes_run']} episodes): best val top-1 "
                  f"{s['val_top1']:.2f} % at episode {s['episode']} (uniform L1 at the same budget: "
                  f"{s['uniform_val_top1']:.2f} %), {how}, BatchNorm re-estimated."]
    lines += _selection_lines(sel, r["metric"], r.get("identity", {}).get("config", {}).get("baseline_method",
                                                                                             "uniform-internal"))
    if ft:
        lines += [""] if sel else []
        cfg = r.get("finetune", {})
        kd = f"KD w={cfg.get('kd_weight')} T={cfg.get('kd_temperature')}" if cfg.get("kd_weight") else "no KD"
        lines += [f"Fine-tune: {ft['epochs']} epochs (lr {cfg.get('lr')}, {kd}), best val {ft['best_val_top1']:.2f} % "
                  f"at epoch {ft['best_epoch']} (the weights kept)."]
    lines += ["", "Plots: ratios.png (kept channels per layer), pareto.png (every searched episode's val top-1 "
              "before fine-tuning against its budget metric: the trade-off the search saw), "
              "rewards.png, finetune.png."]
    return lines


def _ms(t: dict[str, Any]) -> str:
    """A timing cell: median ± IQR, flagged when the spread is too large to trust."""
    flag = " ⚠" if t["iqr_ms"] > 0.25 * t["median_ms"] else ""
    return f"{t['median_ms']:.2f} ± {t['iqr_ms']:.2f}{flag}"


def _budget_lines(run: dict[str, Any], predicted: dict[str, Any] | None, check: dict[str, Any] | None,
                  name: str) -> list[str]:
    """For a latency budget: the measured latency of the result (and the baseline) against it, on its engine."""
    if run.get("metric") != "latency" or not check:
        return []
    pruned = check["networks"]["pruned"]
    # met when the budget lies within the measurement's own spread (half its inter-quartile range)
    verdict = "met" if pruned["ratio"] - pruned["iqr"] / 2 <= check["budget"] else "**NOT met**"
    text = (f"Latency budget {check['budget']:.2f} of the original on {check['name']} at batch {check['batch']} "
            f"({check['threads']} thread(s)): predicted {_fmt((predicted or {}).get('predicted_ratio'), '.3f')}, "
            f"measured {pruned['ratio']:.3f} (IQR {pruned['iqr']:.3f} over {pruned['rounds']} interleaved rounds): "
            f"{verdict}.")
    text += _landing_text((predicted or {}).get("landing"), (predicted or {}).get("measured_ratio"))
    if "baseline" in check["networks"]:
        b = check["networks"]["baseline"]
        text += f" {name} at the same budget and rounding: {b['ratio']:.3f} (IQR {b['iqr']:.3f})."
    shares = [n["cpu_share"] for n in check["networks"].values() if n.get("cpu_share") is not None]
    if shares and is_busy(min(shares)):
        text += f" ⚠ {busy_warning(min(shares), 'This check')}."
    return ["", text]


def _landing_text(landing: dict[str, Any] | None, measured: float | None) -> str:
    """How the policy was landed on the measured budget before fine-tuning (gnnrl.landing), if it was."""
    if not landing:
        return ""
    share = landing.get("cpu_share")
    busy = f" ⚠ {busy_warning(share, 'The landing')}." if is_busy(share) else ""
    if landing.get("finalists_landed"):
        return (f" Every finalist of the selection was first landed on the budget as measured on the engine (the "
                f"chosen one measured {_fmt(measured, '.3f')}).{busy}")
    steps = landing.get("steps") or []
    if len(steps) < 2:
        return busy
    tried = ", ".join(f"{s['predicted']:.3f} → {s['measured']:.3f}" for s in steps)
    return (f" The search's best was measured before fine-tuning and landed again where the prediction missed "
            f"(predicted → measured: {tried}).{busy}")


def write_report(run: str | Path) -> dict[str, Any]:
    """Write report.json, report.md and the plots of a run folder from its files; returns the report dict."""
    from .plot import plot_finetune, plot_pareto, plot_ratios, plot_rewards

    run = Path(run)
    rep = collect(run)
    layers = _read_json(run / "layers.json")
    r = rep["run"]
    if layers:
        plot_ratios(layers, run / "ratios.png", f"{r['model']['name']}: channels kept per layer at "
                    f"{rep.get('eval', {}).get('cost', {}).get('macs_ratio', r['budget']):.3f} of the MACs")
    history = _read_jsonl(run / "search" / "history.jsonl")
    policy = _read_json(run / "search" / "policy.json") or {}
    if history:
        uniform = (policy["uniform_macs_ratio"], policy["uniform_val_top1"]) if "uniform_macs_ratio" in policy \
            else None
        latency = all(h.get("latency_ratio") is not None for h in history)
        plot_pareto(history, run / "pareto.png", None if latency else uniform,
                    "latency_ratio" if latency else "macs_ratio")
        plot_rewards(history, run / "rewards.png", sum(r.get("phase") == "warmup" for r in history),
                     float(policy.get("uniform_val_top1", float("nan"))))
    if "finetune" in rep:
        plot_finetune(rep["finetune"]["history"], run / "finetune.png",
                      rep.get("eval", {}).get("original", {}).get("val"))
    write_json(run / "report.json", rep)
    write_text(run / "report.md", markdown(rep))
    return rep
