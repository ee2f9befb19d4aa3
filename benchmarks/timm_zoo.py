"""Which timm CNN families gnnrl prunes exactly, beside Torch-Pruning on the same list, in one run.

Each model is randomly initialised (no download) at a small input, 30% of every prunable group's channels are
removed by L1 norm, and the pruned network must: equal the original with the removed channels masked
(`tests/pruning_reference.masked_reference`), have fewer MACs, have the analytic cost equal PyTorch's
`FlopCounterMode` count, and export to ONNX with onnxruntime's output equal to PyTorch's. Torch-Pruning (a peer,
installed only here) runs its `MagnitudePruner` at the same ratio with the classifier ignored; it passes when it
returns a network that runs with fewer MACs.

    .venv/bin/pip install timm torch-pruning      # benchmark-only peers, never library dependencies
    .venv/bin/python benchmarks/timm_zoo.py [--models NAME …] [--side 64]

Writes benchmarks/results/timm_zoo.json and the "timm zoo" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from kit import ROOT

sys.path.insert(0, str(ROOT / "tests"))

# One small member per family (a family: a distinct block design in timm's model zoo).
FAMILIES = [
    "resnet18", "resnet26d", "seresnet18", "ecaresnet26t", "resnext26ts", "skresnet18", "resnest14d",
    "res2net50_14w_8s", "regnetx_002", "regnety_002", "regnetz_b16", "efficientnet_b0", "efficientnet_lite0",
    "tf_efficientnet_b0", "efficientnetv2_rw_t", "mobilenetv2_050", "mobilenetv3_small_050", "mobilenetv4_conv_small",
    "mnasnet_small", "fbnetc_100", "spnasnet_100", "ghostnet_050", "ghostnetv2_100", "mixnet_s", "rexnet_100",
    "hardcorenas_a", "lcnet_050", "tinynet_e", "dla34", "dpn48b", "densenet121", "ese_vovnet19b_dw", "cspresnet50",
    "cspdarknet53", "darknet17", "hrnet_w18_small", "repvgg_a0", "mobileone_s0", "nf_resnet26", "resnetv2_50",
    "convnext_atto", "convnextv2_atto", "gernet_s", "vgg11", "selecsls42b", "hgnetv2_b0", "rdnet_tiny",
    "legacy_seresnet18", "xception41", "dm_nfnet_f0",
]

# Families that need a larger input than --side: VGG's ConvMlp pools a map smaller than its 7×7 kernel up to
# 7×7 (adaptive_avg_pool2d to a non-divisor size), which no ONNX exporter writes; at 224 the map is 7×7 already.
SIDES = {"vgg11": 224}


def _gnnrl(name: str, side: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import timm
    import torch
    from pruning_reference import masked_reference, randomise_bn
    from torch.utils.flop_counter import FlopCounterMode

    import gnnrl
    from gnnrl.export import export_onnx
    from gnnrl.prune import apply_plan, cost_after, make_plan, original_cost

    def fcm(model: torch.nn.Module, x: torch.Tensor) -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as f:
            model(x)
        return f.get_total_flops() // 2

    torch.manual_seed(0)
    model = randomise_bn(timm.create_model(name, pretrained=False, num_classes=10).eval())
    x = torch.randn(1, 3, SIDES.get(name, side), SIDES.get(name, side))
    row: dict[str, Any] = {}
    try:
        graph = gnnrl.trace(model, x)
    except Exception as e:
        return {"stage": "trace", "error": f"{type(e).__name__}: {str(e)[:200]}"}
    groups = gnnrl.channel_groups(graph)
    prunable = [g for g in groups if g.prunable]
    row["groups"], row["prunable"] = len(groups), len(prunable)
    row["pinned_reasons"] = sorted({g.reason.split(":")[0][:80] for g in groups if not g.prunable and g.reason})[:5]
    row["count_ok"] = original_cost(graph).macs == fcm(model, x)
    if not prunable:
        return {**row, "stage": "groups", "error": "no prunable group"}
    plan = make_plan(graph, {g.id: 0.3 for g in prunable})
    pruned = apply_plan(graph, plan)
    # exactness in float64, the same plan cut from a float64 copy: random weights with random BN statistics reach
    # activations of 1e6, where float32's rounding alone differs by more than any fixed tolerance (a real slicing
    # error is O(1) relative), and a folded layer (weight standardisation) must be folded in float64 too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the float32 trace above has warned already
        graph64 = gnnrl.trace(copy.deepcopy(model).double(), x.double())
    with torch.no_grad():
        wide, ref = apply_plan(graph64, plan)(x.double()), masked_reference(graph64, plan)(x.double())
        out = pruned(x)
    row["exact"] = bool((wide - ref).abs().max() <= 1e-9 * max(1.0, float(ref.abs().max())))
    cost = cost_after(graph, plan)
    row["macs_ratio"] = cost.macs / original_cost(graph).macs
    row["pruned_count_ok"] = cost.macs == fcm(pruned, x)
    path = Path("/tmp") / f"timm_zoo_{name}.onnx"
    try:
        export_onnx(pruned, path, x)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        row["onnx_ok"] = bool(np.abs(got - out.numpy()).max() <= 1e-3 * max(1.0, float(np.abs(out.numpy()).max())))
    except Exception as e:
        row["onnx_ok"], row["onnx_error"] = False, f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        path.unlink(missing_ok=True)
    row["pass"] = bool(row["exact"] and row["macs_ratio"] < 0.99 and row["count_ok"] and row["pruned_count_ok"]
                       and row["onnx_ok"])
    return row


def _torch_pruning(name: str, side: int) -> dict[str, Any]:
    import timm
    import torch
    import torch_pruning as tp

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    x = torch.randn(1, 3, SIDES.get(name, side), SIDES.get(name, side))
    base, _ = tp.utils.count_ops_and_params(model, x)
    head = model.get_classifier()
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.3, ignored_layers=[head] if isinstance(head, torch.nn.Module)
                                       else [])
    pruner.step()
    with torch.no_grad():
        y = model(x)
    macs, _ = tp.utils.count_ops_and_params(model, x)
    return {"macs_ratio": macs / base, "pass": bool(y.shape == (1, 10) and macs < 0.99 * base)}


def _run(job: tuple[str, str, int], queue: Any) -> None:
    which, name, side = job
    try:
        queue.put((_gnnrl if which == "gnnrl" else _torch_pruning)(name, side))
    except Exception as e:
        queue.put({"pass": False, "error": f"{type(e).__name__}: {str(e)[:200]}"})


def isolated(which: str, name: str, side: int, timeout: float) -> dict[str, Any]:
    """One tool on one model in its own process, with a time limit (a peer once hung for over 10 minutes)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=((which, name, side), queue))
    start = time.perf_counter()
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        return {"pass": False, "error": f"timed out after {timeout:.0f} s"}
    row = queue.get() if not queue.empty() else {"pass": False, "error": f"crashed (exit {proc.exitcode})"}
    return {**row, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=FAMILIES)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--no-peer", action="store_true", help="skip Torch-Pruning")
    ap.add_argument("--update", action="store_true",
                    help="rerun only --models and replace their rows in the committed result (and its section)")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "timm_zoo.json"
    if args.update:
        saved = json.loads(out.read_text())
        for name in args.models:
            row = next(r for r in saved["rows"] if r["model"] == name)
            row["gnnrl"] = isolated("gnnrl", name, saved["side"], args.timeout)
            print(json.dumps(row), flush=True)
            tmp = out.with_suffix(".tmp")  # after every model: a killed update keeps what it finished
            tmp.write_text(json.dumps(saved, indent=2) + "\n")
            tmp.replace(out)
        from kit import write_section

        write_section("timm zoo", markdown(saved["rows"], argparse.Namespace(side=saved["side"],
                                                                         timm=saved.get("timm"))))
        return
    rows = []
    for name in args.models:
        row = {"model": name, "gnnrl": isolated("gnnrl", name, args.side, args.timeout)}
        if not args.no_peer:
            row["torch_pruning"] = isolated("tp", name, args.side, args.timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.models == FAMILIES:  # the whole list: the committed result; a few --models only print
        import timm
        from kit import write_section

        out.write_text(json.dumps({"side": args.side, "timm": timm.__version__, "rows": rows}, indent=2) + "\n")
        args.timm = timm.__version__
        write_section("timm zoo", markdown(rows, args))
    print(markdown(rows, args))


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The pass-rate table for docs/benchmarks.md."""
    ok = sum(r["gnnrl"].get("pass", False) for r in rows)
    peer = [r for r in rows if "torch_pruning" in r]
    tp_ok = sum(r["torch_pruning"].get("pass", False) for r in peer)
    lines = [f"## timm zoo: gnnrl prunes {ok}/{len(rows)} families exactly"
             + (f", Torch-Pruning {tp_ok}/{len(peer)}" if peer else ""), "",
             f"`python benchmarks/timm_zoo.py` — random init, input {args.side}×{args.side} (vgg11: 224, see "
             "`SIDES`), 30% of every prunable group, one run on one machine"
             + (f" (timm {args.timm})" if getattr(args, "timm", None) else "") + ". gnnrl passes when the network "
             "cut from a float64 copy equals the masked original to 1e-9 (relative), MACs fall, analytic cost = "
             "FlopCounterMode before and after the cut, and ONNX Runtime's output equals PyTorch's; Torch-Pruning "
             "(MagnitudePruner, classifier ignored) when its network runs with fewer MACs.", "",
             "| model | gnnrl | MACs kept | prunable groups | Torch-Pruning | why not (gnnrl) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        g, t = r["gnnrl"], r.get("torch_pruning", {})
        pinned = "; ".join(x for x in g.get("pinned_reasons", []) if x not in ("network input", "network output"))
        why = "" if g.get("pass") else "; ".join(x for x in (g.get("error"), pinned) if x)
        if not g.get("pass") and not g.get("error"):
            failed = ", ".join(k for k in ("exact", "count_ok", "pruned_count_ok", "onnx_ok") if not g.get(k))
            why = "; ".join(x for x in (f"failed: {failed}" if failed else "", f"pinned: {pinned}" if pinned else "")
                            if x)
        lines.append(f"| {r['model']} | {'✓' if g.get('pass') else '✗'} | "
                     f"{g['macs_ratio']:.2f} | " if "macs_ratio" in g else f"| {r['model']} | ✗ | — | ")
        lines[-1] += (f"{g.get('prunable', '—')}/{g.get('groups', '—')} | "
                      f"{'✓' if t.get('pass') else ('✗' if t else '—')} | {why.replace('|', '/')[:160]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
