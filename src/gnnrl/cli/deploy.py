"""Commands on results: `gnnrl export` (a pruned file to ONNX) and `gnnrl report` (a compress run's report)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import GnnrlError
from .common import add_json_arg, check_input_size, emit_json, out, output_file, print_report


def cmd_export(args: argparse.Namespace) -> int:
    """Write a pruned (or any gnnrl-saved) model to ONNX, checked against PyTorch with onnxruntime."""
    import torch

    from ..export import export_onnx
    from ..saving import load, read_lineage

    target = output_file(args.out, ".onnx", args.overwrite)
    check_input_size(args.input_size)
    lineage = read_lineage(args.pruned)
    module = load(args.pruned).eval()
    shape = ((1, 3, args.input_size, args.input_size) if args.input_size else
             tuple(lineage.input_shape) or (1, 3, 32, 32))
    try:
        with torch.no_grad():
            module(torch.zeros(*shape))  # an input the network cannot take fails here, in one line, before any file
    except RuntimeError as e:
        raise GnnrlError(f"input {tuple(shape)} does not fit this model ({str(e).splitlines()[0][:200]}); "
                         "give the --input-size it was made for") from e
    done = export_onnx(module, target, torch.zeros(*shape))  # checks onnxruntime against PyTorch itself
    out.print(f"{target}: input {tuple(shape)}, ONNX Runtime vs PyTorch max |difference| {done.max_abs_diff:.2e} "
              f"on {done.check_batch} random images")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a compress run's report from its files."""
    from ..report import write_report

    rep = write_report(args.run)
    emit_json(args.json, rep)
    if args.json != "-":
        print_report(Path(args.run))
    return 0


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add `export` and `report` to the subcommands."""
    p = sub.add_parser("export", parents=[parent], help="write a pruned model file to ONNX (checked with onnxruntime)")
    p.add_argument("pruned", help="a .safetensors file from gnnrl prune / compress / gnnrl.save")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--input-size", type=int, help="image side (default: the size the model was pruned at)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", parents=[parent], help="rebuild report.md/json and the plots of a compress run from "
                       "its files")
    p.add_argument("run", help="the run folder")
    add_json_arg(p, "report.json")
    p.set_defaults(func=cmd_report)
