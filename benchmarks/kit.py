"""What every benchmark script shares: where the repository, its results and its doc are, writing a result file
atomically, replacing one section of docs/benchmarks.md, matched by its exact title and kept in the doc's fixed
order (`ORDER`: the summary first, then the sections grouped by the question they answer), and comparing two
methods' fine-tunes seed by seed (`paired_differences`).

Scripts run as `python benchmarks/NAME.py`, so this directory is on `sys.path` and `from kit import …` works.
"""

from __future__ import annotations

import json
import os
import statistics
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


ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Summary", ("Summary",)),
    ("Does the search beat the simple alternatives after fine-tuning?",
     ("Method comparison", "Equal-latency comparison", "Reward study", "Rerank", "Fine-tuning with and without")),
    ("Is the result faster where it runs?", ("Compress", "Latency predictors", "Latency model", "Pruning speed")),
    ("Which models can it prune?", ("timm zoo",)),
    ("What does the agent need?", ("Agent ablation", "Search ", "BN recalibration")),
    ("How fast is the tool itself?", ("Evaluation speed", "Engine speed", "Hierarchy and m-GNN", "Parallel search",
                                      "Scaling model", "Streamed ImageFolder")),
)
"""The doc's parts, in order: each part's question and the title prefixes of the sections it holds (a section
that matches none goes last)."""


def section_title(part: str) -> str:
    """The title of one `## …` section: its heading up to a result that follows it (": …" or " (…)")."""
    return part.split("\n", 1)[0]


NOTES = ("<!-- notes: hand-written, kept when the section is regenerated -->", "<!-- /notes -->")
"""what a person wrote into a generated section (a Reading of the numbers) goes between these two lines"""


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace the `## title` section of the doc (the title itself, or it followed by ": …" / " …" — never a
    longer name such as "title-recal250"), or add it; then order the sections by `ORDER` (stable, so sections of
    one part keep their order and a new one goes last in its part); every other section is left as it is. The old
    section's hand-written notes (between the `NOTES` lines) are carried into the new one, before its "Commands:"."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    parts = text.split("\n## ")

    def same(part: str) -> bool:
        head = section_title(part)
        return head == title or head.startswith((title + ":", title + " "))

    notes = [n for p in parts[1:] if same(p) and (n := _notes(p))]
    body = body.removeprefix("## ").rstrip() + "\n"
    if notes and notes[0] not in body:
        at = body.find("\nCommands:")
        body = body[:at + 1] + notes[0] + "\n\n" + body[at + 1:] if at >= 0 else body + "\n" + notes[0] + "\n"
    sections = [p.rstrip() + "\n" for p in parts[1:] if not same(p)] + [body.rstrip() + "\n"]
    sections.sort(key=lambda p: rank(section_title(p)))
    doc.write_text(parts[0].rstrip() + "\n\n" + "\n".join("## " + p for p in sections))


def _notes(section: str) -> str | None:
    """The hand-written block of a section (both `NOTES` lines included), if it has one."""
    start = section.find(NOTES[0])
    end = section.find(NOTES[1], start)
    return section[start:end + len(NOTES[1])] if start >= 0 and end >= 0 else None


def rank(title: str) -> tuple[int, int]:
    """A section's place in `ORDER`: its part, then the first of the part's prefixes it starts with (past the end
    when no part names it)."""
    for i, (_, prefixes) in enumerate(ORDER):
        for j, prefix in enumerate(prefixes):
            if title.startswith(prefix):
                return i, j
    return len(ORDER), 0


def paired_differences(rows: list[dict[str, Any]], method: str, reference: str = "uniform-internal"
                       ) -> dict[str, float] | None:
    """`method`'s accuracy after fine-tuning minus `reference`'s with the same fine-tune seed, one difference per
    distinct policy × seed: mean, std, n and standard error. One seed gives both the same data order and
    augmentation, and that part of the fine-tune noise cancels. `rows`: one budget's latency_compare rows
    (`method`, `policy_sha`, `ft` = {seed: test_rest}); None when no seed is shared."""
    ref: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] == reference:
            for f, v in r["ft"].items():
                ref.setdefault(str(f), []).append(v)
    diffs = {(r.get("policy_sha", id(r)), str(f)): v - statistics.fmean(ref[str(f)])
             for r in rows if r["method"] == method for f, v in r["ft"].items() if str(f) in ref}
    if not diffs:
        return None
    d = list(diffs.values())
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    return {"mean": statistics.fmean(d), "std": sd, "n": len(d), "se": sd / len(d) ** 0.5}
