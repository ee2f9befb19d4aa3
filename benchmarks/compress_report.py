"""Publish a finished `gnnrl compress` run: its report.json to benchmarks/results, its table to docs/benchmarks.md.

    .venv/bin/python benchmarks/compress_report.py runs/r56-ft --name r56 --command "gnnrl compress …" [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from kit import ROOT, write_section

from gnnrl.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", required=True, help="the command that made the run (quoted in the docs)")
    ap.add_argument("--wall-min", type=float, help="wall time of the run in minutes (from its log)")
    ap.add_argument("--note", default="", help="one paragraph on the conditions of the run")
    args = ap.parse_args()
    run = Path(args.run)
    rep = write_report(run)
    results = ROOT / "benchmarks" / "results"
    shutil.copyfile(run / "report.json", results / f"compress_{args.name}.json")
    for png in ("ratios.png", "finetune.png"):
        if (run / png).is_file():
            shutil.copyfile(run / png, ROOT / "docs" / f"compress_{args.name}_{png}")
    body = (run / "report.md").read_text().split("\n", 2)[2]  # without the report's own title
    title = f"Compress {args.name}"
    wall = f" Wall time {args.wall_min:.0f} min." if args.wall_min else ""
    metric = {"macs": "MACs", "params": "parameters"}.get(rep["run"]["metric"], rep["run"]["metric"])
    text = (f"## {title} ({rep['run']['model']['name']}, {rep['run']['budget']:.0%} of the {metric})\n\n"
            f"`{args.command}`.{wall} {args.note}\n\n{body}\n"
            f"![kept channels per layer](compress_{args.name}_ratios.png)\n")
    write_section(title, text)
    print(json.dumps(rep.get("eval", {}), indent=1))


if __name__ == "__main__":
    main()
