"""One look for every progress bar in gnnrl (rich), disabled with `enabled=False` (--quiet)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True, counts: bool = False, transient: bool = False) -> Progress:
    """A rich `Progress` with description, bar, percent (or n/total), a free `info` field and ETA."""
    done = MofNCompleteColumn() if counts else TaskProgressColumn()
    return Progress(TextColumn("{task.description}"), BarColumn(), done, TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), disable=not enabled, transient=transient)
