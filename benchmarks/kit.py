"""What every benchmark script shares: where the repository, its results and its doc are, writing a result file
atomically, and replacing one section of docs/benchmarks.md, matched by its exact title.

Scripts run as `python benchmarks/NAME.py`, so this directory is on `sys.path` and `from kit import …` works.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def write_result(name: str, data: Any) -> Path:
    """Write benchmarks/results/NAME (JSON) atomically: a killed run leaves the previous file whole."""
    path = RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def section_title(part: str) -> str:
    """The title of one `## …` section: its heading up to a result that follows it (": …" or " (…)")."""
    return part.split("\n", 1)[0]


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace the `## title` section of the doc (the title itself, or it followed by ": …" / " …" — never a
    longer name such as "title-recal250"), or append it; every other section is left as it is."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    parts = text.split("\n## ")

    def same(part: str) -> bool:
        head = section_title(part)
        return head == title or head.startswith((title + ":", title + " "))

    kept = [parts[0]] + [p for p in parts[1:] if not same(p)]
    doc.write_text("\n## ".join(kept).rstrip() + "\n\n" + body)
