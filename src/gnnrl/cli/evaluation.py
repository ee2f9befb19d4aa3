"""Commands that look at a model: `gnnrl eval`, `info`, `graph` and `models`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import GnnrlError
from ..evaluate import DEFAULT_BATCH_SIZE
from ..files import check_writable
from .common import (
    add_data_args,
    add_json_arg,
    add_weights_args,
    check_input_size,
    check_json_target,
    console,
    emit_json,
    out,
    resolve_weights,
)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one or more models on a split and print accuracy, MACs and params."""
    from ..cost import count_flops
    from ..data import load_dataset
    from ..evaluate import evaluate, use_all_cores
    from ..models import canonical_name, create
    from ..saving import is_pruned_file, load

    if args.weights and len(args.weights) != len(args.model):
        raise GnnrlError(f"got {len(args.model)} --model names but {len(args.weights)} --weights; give one each")
    # Check names and weights before the (possibly slow) data load, so mistakes surface at once.
    check_json_target(args.json)
    names = [canonical_name(n) for n in args.model]
    paths = [resolve_weights(n, args.weights[i] if args.weights else None, args.dataset) for i, n in enumerate(names)]
    use_all_cores()
    data = load_dataset(args.data, args.dataset, progress=not (args.quiet or args.json == "-"))
    split = data.split(args.split, val_from=args.val_from)
    rows = []
    for name, weights in zip(names, paths, strict=True):
        if weights is not None and is_pruned_file(weights):  # a pruned file rebuilds its own (smaller) architecture
            model = load(weights)
        else:
            model = create(name, num_classes=data.num_classes, weights=weights, allow_pickle=args.allow_pickle)
        cost = count_flops(model, (1, *split.image_shape))
        result = evaluate(model, split, batch_size=args.batch_size)
        rows.append({
            "model": name, "weights": str(weights) if weights else None, "dataset": data.name,
            "split": split.name, "val_from": args.val_from, "correct": result.correct, "total": result.total,
            "top1": round(result.top1, 4), "macs": cost.macs, "params": cost.params,
            "seconds": round(result.seconds, 3), "batch_size": args.batch_size,
        })
    table = Table(title=f"{data.name} · split {split.name} ({len(split)} images, source: {data.source})")
    for col in ("model", "top-1 %", "correct", "MACs (M)", "params (M)", "eval s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['top1']:.2f}", f"{r['correct']}/{r['total']}", f"{r['macs'] / 1e6:.2f}",
                      f"{r['params'] / 1e6:.3f}", f"{r['seconds']:.1f}")
    if args.json != "-":
        out.print(table)
    emit_json(args.json, rows if len(rows) > 1 else rows[0])
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the model names `--model` accepts."""
    from ..models import CIFAR_MODELS, list_models

    names = list_models()
    out.print("[bold]CIFAR zoo[/] (32×32): " + ", ".join(CIFAR_MODELS))
    tv = [n for n in names if n not in CIFAR_MODELS]
    out.print("[bold]torchvision[/]: " + (", ".join(tv) if tv else "(install torchvision for these)"))
    try:
        import timm  # noqa: F401
        have = "installed"
    except ImportError:
        have = "pip install 'gnnrl-compress[timm]'"
    out.print(f"[bold]timm[/] ({have}): any model as timm/<name>, e.g. timm/efficientnet_b0; the CNN families "
              "measured to prune exactly are listed in docs/benchmarks.md, section 'timm zoo'")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the channel groups of a model: members, channels, MACs share, prunable or why not."""
    import torch

    from ..groups import channel_groups
    from ..models import create, input_size
    from ..prune import original_cost
    from ..trace import trace

    check_json_target(args.json)
    if (args.pruned is None) == (args.model is None):
        raise GnnrlError("gnnrl info takes a --model name or a pruned .safetensors file (gnnrl info FILE)"
                         + (", not both" if args.pruned else ""))
    check_input_size(args.input_size)
    if args.pruned is not None:  # what is left to prune in a pruned network, at the size it was pruned at
        from ..saving import load, read_lineage

        lineage = read_lineage(args.pruned)
        model, name = load(args.pruned).eval(), str(args.pruned)
        shape = lineage.input_shape or (1, 3, 32, 32)
        side = args.input_size or shape[-1]
        example = torch.zeros(1, *shape[1:-2], side, side)
    else:
        model, name = create(args.model, num_classes=args.num_classes).eval(), args.model
        side = args.input_size or input_size(args.model)
        example = torch.zeros(1, 3, side, side)
    graph = trace(model, example)
    groups = channel_groups(graph)
    total = original_cost(graph)
    uncosted = {str(n.target): int(n.meta["macs"]) for n in graph.nodes if n.meta.get("uncosted")}
    if args.json != "-":
        out.print(_groups_table(f"{name}: {len(groups)} channel groups, {sum(g.prunable for g in groups)} prunable "
                                f"({total}, input {side}×{side})", groups, total.macs))
    # counted (by FlopCounterMode), never free, but no registry entry prices a cut of them
    if uncosted and args.json != "-":
        names = ", ".join(f"{k} ({v / 1e6:.2f} M)" for k, v in list(uncosted.items())[:5])
        out.print(f"{100 * sum(uncosted.values()) / total.macs:.1f} % of the MACs are in ops gnnrl counts with "
                  f"PyTorch's FlopCounterMode but cannot cut: {names}" + (" …" if len(uncosted) > 5 else ""))
    if args.json:
        from dataclasses import asdict

        emit_json(args.json, {"model": name, "input_size": side, "macs": total.macs, "params": total.params,
                              "uncosted_macs": uncosted, "groups": [asdict(g) for g in groups]})
    return 0


def _groups_table(title: str, groups: list[Any], total_macs: int) -> Table:
    """One row per channel group: members, channels, share of the MACs touched, prunable or why not."""
    table = Table(title=title)
    table.caption = ("MACs touched %: share of the model's MACs in the layers that create or read the group's "
                     "channels. A conv both reads one group and creates another, so the column sums to about 200 %.")
    for col in ("id", "members", "channels", "MACs touched %", "prunable"):
        table.add_column(col, justify="right" if col in ("id", "channels", "MACs touched %") else "left")
    for g in groups:
        names = ", ".join(g.members[:3]) + (f" … (+{len(g.members) - 3})" if len(g.members) > 3 else "")
        chans = f"{g.prunable_size}/{g.size}" if g.prunable_size != g.size else str(g.size)
        table.add_row(str(g.id), names, chans, f"{100 * g.macs / total_macs:.1f}",
                      "yes" if g.prunable else f"no: {g.reason}")
    return table


def cmd_graph(args: argparse.Namespace) -> int:
    """Build the hierarchical computational graph, print motif types with counts, optionally draw it."""
    import torch

    from ..hierarchy import build_hierarchy
    from ..models import create, input_size
    from ..trace import trace

    if args.out:
        if Path(args.out).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise GnnrlError(f"--out {args.out}: give a .png, .svg or .pdf file name")
        check_writable(args.out)
    side = args.input_size or input_size(args.model)
    graph = trace(create(args.model, num_classes=args.num_classes).eval(), torch.zeros(1, 3, side, side))
    h = build_hierarchy(graph, levels=args.levels)
    table = Table(title=f"{args.model}: {len(h.comp.nodes)} feature maps, {len(h.comp.edges)} operations → "
                  f"{len(h.levels[-2])} motif instances of {len(h.motif_counts(len(h.levels) - 2))} types → top "
                  f"graph of {len(h.top.nodes)} nodes")
    for col in ("motif", "count", "nodes", "operations"):
        table.add_column(col, justify="right" if col in ("count", "nodes") else "left")
    for level in range(len(h.levels) - 1):
        for key, count in h.motif_counts(level).most_common():
            example = next(g for g in h.levels[level] if g.motif == key)
            table.add_row(f"L{level + 1}:{key[:6]}", str(count), str(len(example.nodes)), h.motif_names.get(key, ""))
    out.print(table)
    if args.out:
        from ..plot import draw_hierarchy

        console.print(f"wrote {draw_hierarchy(h, args.out, args.model)}")
    return 0


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add `eval`, `info`, `graph` and `models` to the subcommands."""
    p = sub.add_parser("eval", parents=[parent], help="top-1 accuracy, MACs and params of models on a CIFAR split")
    p.add_argument("--model", nargs="+", required=True, help="zoo or torchvision model name(s), e.g. resnet56")
    p.add_argument("--weights", nargs="+", help="checkpoint per model (.th/.pt/.safetensors); default: the shared "
                   "pre-trained weights for that name; 'none' for random init")
    p.add_argument("--split", default="test", choices=("test", "val", "test_rest", "train"))
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    add_json_arg(p, "the results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_args(p)
    add_weights_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", parents=[parent], help="channel groups of a model: what can be pruned, and why not")
    p.add_argument("pruned", nargs="?", help="a pruned .safetensors file (from gnnrl prune / compress / gnnrl.save) "
                   "instead of --model")
    p.add_argument("--model", help="a zoo name (gnnrl models)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, help="image side for tracing (default: 32 for the CIFAR zoo, else 224)")
    add_json_arg(p, "the groups")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("graph", parents=[parent], help="hierarchical computational graph: motif types, counts and a "
                       "drawing")
    p.add_argument("--model", required=True)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, help="image side for tracing (default: 32 for the CIFAR zoo, else 224)")
    p.add_argument("--levels", type=int, default=2, choices=(2, 3))
    p.add_argument("--out", help="draw the levels to this image file (.png, .svg, .pdf)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("models", parents=[parent], help="list model names")
    p.set_defaults(func=cmd_models)
