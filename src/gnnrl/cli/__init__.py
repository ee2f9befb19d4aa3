"""`gnnrl` command line: a thin layer over the Python API (every command is a few API calls).

One module per group of commands (`evaluation`: eval, info, graph, models; `training`: train, finetune; `search`:
search, prune, compress; `deploy`: export, report), the flags they share in `common`, and the flags made from the
config dataclasses in `flags`. Global flags (--debug, --threads) may come before or after the subcommand.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.text import Text

from .. import __version__
from ..errors import GnnrlError
from . import deploy, evaluation, search, training
from .common import console, global_flags, show_defaults


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(prog="gnnrl", description=__doc__.split("\n\n")[0], parents=[global_flags(True)])
    parser.add_argument("--version", action="version", version=f"gnnrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parent = global_flags(False)
    for group in (evaluation, training, search, deploy):
        group.register(sub, parent)
    for p in sub.choices.values():
        show_defaults(p)
    return parser


_default_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, *rest: Any,
                  **kw: Any) -> None:
    """gnnrl's own warnings as one line on stderr (they are advice to a user, not a developer's source pointer)."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        console.print(Text.assemble(("gnnrl: warning: ", "bold yellow"), str(message)), soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, *rest, **kw)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is (a BaseException: no `except Exception` swallows it)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gnnrl` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        os.environ["GNNRL_THREADS"] = str(args.threads)  # read by use_all_cores() in every command
        from ..evaluate import available_cores

        if args.threads > (cores := available_cores()):
            console.print(Text.assemble(("gnnrl: warning: ", "bold yellow"), f"--threads {args.threads} is more than "
                                        f"the {cores} cores this process may use; oversubscribed threads run several "
                                        f"times slower (use --threads {cores} or fewer)"), soft_wrap=True)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    handler = None
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except GnnrlError as e:
        if args.debug:
            raise
        console.print(Text.assemble(("gnnrl: error: ", "bold red"), str(e)), soft_wrap=True)
        return 2
    except OSError as e:  # disk full, permission denied, read-only place: say which file, not a traceback
        if args.debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        console.print(Text.assemble(("gnnrl: error: ", "bold red"), f"{e.strerror or e}{where}"), soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; what was written is intact (a run folder continues with --resume)", soft_wrap=True)
        return 130
    except _Terminated:
        console.print("terminated (SIGTERM); what was written is intact (a run folder continues with --resume)",
                      soft_wrap=True)
        return 143
    finally:
        warnings.showwarning = shown
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
