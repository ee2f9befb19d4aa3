"""What every command shares: the consoles, the flags for data, weights, models and run folders, the global flags
(accepted after the subcommand too), and the checks made before any slow work."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import GnnrlError, WeightsError
from ..files import check_writable, write_json

console = Console(stderr=True)
out = Console()


def global_flags(top: bool) -> argparse.ArgumentParser:
    """--debug and --threads: on the top parser with their defaults, and on every subparser (default: whatever the
    top parser got) so that they may also follow the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    keep = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error", **keep)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: all usable cores)", **keep)
    return p


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append '(default: …)' to the help of every option of `parser` that has a default worth showing."""
    for a in parser._actions:
        # identity, not equality: a default of 0 is worth showing, a store_true's False is not
        if (not a.option_strings or a.default is None or a.default is False or a.default is argparse.SUPPRESS
                or a.help == argparse.SUPPRESS or "default" in (a.help or "")):
            continue
        a.help = ((a.help + " ") if a.help else "") + "(default: %(default)s)"


def add_json_arg(p: argparse.ArgumentParser, what: str) -> None:
    """--json [FILE], one meaning everywhere: the command's result as JSON, to FILE or, alone, to stdout."""
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help=f"{what} as JSON: to FILE, or to stdout (no table, no progress) when given alone")


def emit_json(target: str | None, obj: Any) -> None:
    """Write `obj` where --json asked: stdout for '-', else the file (atomically)."""
    if target == "-":
        print(json.dumps(obj, indent=2))
    elif target:
        write_json(target, obj)
        console.print(f"wrote {target}")


def check_json_target(target: str | None) -> None:
    """A --json FILE is checked writable before any work."""
    if target and target != "-":
        check_writable(target)


def add_data_args(p: argparse.ArgumentParser, val_from: str = "test") -> None:
    """--data, --dataset and --val-from: where the images come from and where validation is carved from."""
    p.add_argument("--data", help="CIFAR source: PNG tarball, ImageFolder tree or python batches folder "
                   "(default: $GNNRL_DATA, else ../shared/data); or an ImageNet-style folder (train/<class>/, "
                   "val/<class>/, images of any size), which is streamed")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100", "imagefolder"),
                   help="imagefolder: stream --data's images (resize 256 / crop 224), never loading them whole; "
                   "chosen by itself for a folder with train/ and val/")
    p.add_argument("--val-from", default=val_from, choices=("test", "train"),
                   help=f"carve the 5k validation split out of test (paper protocol) or train (default: {val_from})")


def add_weights_args(p: argparse.ArgumentParser) -> None:
    """--allow-pickle: what loading a checkpoint may do."""
    p.add_argument("--allow-pickle", action="store_true",
                   help="load checkpoints that contain pickled Python objects (only for files you trust)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model and --weights (and --allow-pickle): the network a command starts from."""
    p.add_argument("--model", required=True, help="zoo or torchvision model name, e.g. resnet56")
    p.add_argument("--weights", help="checkpoint (default: the shared pre-trained weights for that name; 'none': "
                   "random init)")
    add_weights_args(p)


def add_run_folder_args(p: argparse.ArgumentParser, resume: str = "continue a killed run from OUT/checkpoint.pt",
                        overwrite: str = "start over in a folder that holds a run") -> None:
    """--resume, --overwrite and --quiet: what every command that writes a run folder takes."""
    p.add_argument("--resume", action="store_true", help=resume)
    p.add_argument("--overwrite", action="store_true", help=overwrite)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_weights(name: str, given: str | None, dataset: str) -> Path | None:
    """The given weights path, or the shared default checkpoint for `name`; 'none' means random init."""
    from ..paths import default_weights

    if given is not None:
        return None if given.lower() == "none" else Path(given)
    found = default_weights(name, dataset)
    if found is None:
        raise WeightsError(f"no --weights given and no default checkpoint for {name} (looked in $GNNRL_MODELS and "
                           f"../shared/models/{dataset}/). Pass --weights FILE, or --weights none for random init.")
    return found


def check_input_size(side: int | None) -> None:
    """A given --input-size is a positive number of pixels."""
    if side is not None and side < 1:
        raise GnnrlError(f"--input-size {side} must be a positive number of pixels")


def check_budget(budget: float) -> None:
    """--budget is a fraction in (0, 1), said in the one message every entry point uses."""
    from ..config import check_budget as check

    check(budget, name="--budget")


def classes_hint(args: argparse.Namespace) -> int:
    """The class count of the data named by --data/--dataset, known without loading it (to check weights early)."""
    from ..folder import is_image_folder, streams

    if args.data and streams(args.data, args.dataset) and is_image_folder(args.data):
        return sum(1 for d in (Path(args.data) / "train").iterdir() if d.is_dir())
    return 100 if args.dataset == "cifar100" else 10


def load_model(args: argparse.Namespace, num_classes: int = 10) -> Any:
    """The --model with its --weights (the shared checkpoint by default)."""
    from ..models import canonical_name, create

    name = canonical_name(args.model)
    weights = resolve_weights(name, args.weights, getattr(args, "dataset", "cifar10"))
    return create(name, num_classes=num_classes, weights=weights, allow_pickle=args.allow_pickle)


def output_file(path: str, suffix: str, overwrite: bool) -> Path:
    """The --out file of a command, checked before the work: its suffix, never replaced unasked, writable."""
    target = Path(path)
    if target.suffix != suffix:
        raise GnnrlError(f"--out {target} must end in {suffix}")
    if target.exists() and not overwrite:
        raise GnnrlError(f"{target} exists; pass --overwrite to replace it, or choose another --out")
    return check_writable(target)


def print_report(run: Path) -> None:
    """A compress run's report.md on the terminal, and where its files are."""
    from rich.markdown import Markdown

    out.print(Markdown((run / "report.md").read_text()))
    console.print(f"report: {run / 'report.md'} · model: {run / 'model.safetensors'} · ONNX: {run / 'model.onnx'}")
