"""The summary at the top of docs/benchmarks.md: every method comparison's accuracy after fine-tuning, beside the
paper's numbers, with a plain verdict per comparison, and the doc's contents grouped by question.

    .venv/bin/python benchmarks/summary.py

Reads the committed results (benchmarks/results/compare_*.json, latency_compare_*.json); runs nothing. Each
comparison script rewrites its own section; run this after them to refresh the summary.
"""

from __future__ import annotations

import json
from typing import Any

from kit import DOC, ORDER, RESULTS, paired_differences, section_title, write_section

PAPER = {  # Table 1 of the paper: test top-1 % after its fine-tune, at (about) 50 % of the FLOPs
    "resnet20": {"gnnrl": 91.31, "amc": 86.4, "uniform": 84.0},
    "resnet56": {"gnnrl": 93.49, "amc": 90.2, "uniform": 87.5},
}
METHODS = ("gnnrl", "gnnrl+tuned", "gnnrl+select", "amc", "random", "uniform", "uniform-internal")
OURS = ("gnnrl", "gnnrl+tuned", "gnnrl+select")
"""the variants judged against the best of the other methods"""


def comparisons() -> list[dict[str, Any]]:
    """One entry per committed comparison: what was compared, and each method's accuracy after fine-tuning."""
    found = []
    for path in sorted(RESULTS.glob("compare_*.json")):
        if "ablation" in path.name:
            continue
        d = json.loads(path.read_text())
        rows = {s["method"]: (s["ft_test_rest"], s["ft_test_rest_std"], s["ft_seeds"]) for s in d["summary"]
                if s.get("ft_test_rest") is not None}
        found.append({"model": d["model"], "budget": f"{d['budget']:.0%} of the MACs", "ft": d["ft_epochs"],
                      "searches": len(d["seeds"]), "rows": rows, "source": path.name,
                      "section": f"Method comparison: {path.stem.removeprefix('compare_')}"})
    for path in sorted(RESULTS.glob("latency_compare_*.json")):
        d = json.loads(path.read_text())
        for budget in sorted({s["budget"] for s in d["summary"]}, reverse=True):
            rows = {s["method"]: (s["ft_test_rest"]["mean"], s["ft_test_rest"]["std"], s["ft_test_rest"]["n"])
                    for s in d["summary"] if s["budget"] == budget and s.get("ft_test_rest")}
            if not rows:  # searched, not fine-tuned yet
                continue
            widths = f", widths ×{d['round_to']}" if d.get("round_to") else ""
            # the span the policies measure at: a landing on a busy machine has left them over a budget they "met"
            lat = [r["measured_b1"] for r in d["rows"]
                   if r["budget"] == budget and r.get("measured_b1") and r.get("ft")]
            span = f", fine-tuned policies measure {min(lat):.3f}–{max(lat):.3f} of the latency" if lat else ""
            what = (f"{budget:g} of the {d['engine']} latency (batch 1{widths}{span}, {d['cpu']})"
                    if d["metric"] == "latency" else f"{budget:.0%} of the MACs{widths}{span}")
            if d.get("runs", f"{d['model']}_{d['metric']}") != f"{d['model']}_{d['metric']}":  # a second experiment
                what += f" [{d['tag']}]"
            here = [r for r in d["rows"] if r["budget"] == budget]
            best = strongest_other(rows)
            paired = {m: p for m in OURS if best and (p := paired_differences(here, m, best))}
            found.append({"model": d["model"], "budget": what, "ft": d["ft_epochs"], "searches": len(d["seeds"]),
                          "rows": rows, "paired": paired, "source": path.name,
                          "section": f"Equal-latency comparison: {d.get('tag', d['model'] + '_' + d['metric'])}"})
    return found


def strongest_other(rows: dict[str, tuple[float, float, int]]) -> str | None:
    """The method gnnrl is judged against: the best mean after fine-tuning among the others (None: no other)."""
    others = [m for m in rows if m not in OURS]
    return max(others, key=lambda m: rows[m][0]) if others else None


def verdict(rows: dict[str, tuple[float, float, int]], paired: dict[str, dict[str, float]] | None = None) -> str:
    """Each gnnrl variant against the strongest other method: a lead or a loss only when it exceeds both
    spreads, and no verdict from a single fine-tune; with `paired`, also its difference from that method
    fine-tune seed by seed (mean ± standard error over policies × seeds)."""
    best = strongest_other(rows)
    if best is None:
        return "–"
    b, bs, bn = rows[best]
    words = []
    for ours in (m for m in OURS if m in rows):
        g, gs, gn = rows[ours]
        d = g - b
        if min(gn, bn) < 2:
            words.append(f"{ours}: too few fine-tunes to tell ({d:+.2f} vs {best})")
            continue
        word = "wins" if d > max(gs, bs) else "loses" if -d > max(gs, bs) else "ties"
        p = (paired or {}).get(ours)
        seedwise = f"; {p['mean']:+.2f} ± {p['se']:.2f} seed by seed" if p and p["n"] > 1 else ""
        words.append(f"{ours} {word} ({d:+.2f} vs {best}{seedwise})")
    return "; ".join(words) or "–"


def cell(row: tuple[float, float, int] | None) -> str:
    return "–" if row is None else f"{row[0]:.2f} ± {row[1]:.2f} ({row[2]})"


def contents() -> list[str]:
    """The doc's sections, grouped by the question each part answers (`kit.ORDER`)."""
    titles = [section_title(p) for p in DOC.read_text().split("\n## ")[1:]]
    lines = []
    for question, prefixes in ORDER[1:]:
        mine = [t for t in titles if t.startswith(prefixes)]
        if mine:
            lines.append(f"- **{question}** " + " · ".join(mine))
    return lines


def main() -> None:
    found = comparisons()
    lines = ["## Summary", "",
             "Top-1 % on test_rest (the 5,000 test images the search never saw) after the same distilled fine-tune "
             "for every method, mean ± std over search seeds × fine-tune seeds (count in brackets), all on one "
             "CPU machine per comparison. The paper's column is its Table 1 (10k test images, its own longer "
             "fine-tune from its own baselines), for orientation only.", "",
             "| model | budget | fine-tune | " + " | ".join(METHODS) + " | paper (gnnrl / AMC / uniform) | verdict |",
             "|---|---|---|" + "---|" * len(METHODS) + "---|---|"]
    for c in found:
        paper = PAPER.get(c["model"], {})
        ref = " / ".join(f"{paper[k]:.2f}" for k in ("gnnrl", "amc", "uniform")) if paper and "MACs" in c[
            "budget"] and c["budget"].startswith("50") else "–"
        lines.append(f"| {c['model']} | {c['budget']} | {c['ft']} epoch{'s' * (c['ft'] != 1)} | "
                     + " | ".join(cell(c["rows"].get(m)) for m in METHODS)
                     + f" | {ref} | {verdict(c['rows'], c.get('paired'))} |")
    lines += ["", "Verdict: gnnrl against the best other method; a lead or a loss counts only when it exceeds both "
              "methods' spreads. \"Seed by seed\" (equal-latency comparisons): gnnrl's accuracy minus that method's "
              "fine-tuned with the same seed (same data order and augmentation), mean ± standard error over "
              "policies × seeds. Sections: "
              + ", ".join(dict.fromkeys(f"'{c['section']}'" for c in found)) + ".",
              "",
              "Contents, by the question each section answers:", "", *contents(), "",
              "Command: `.venv/bin/python benchmarks/summary.py` (reads benchmarks/results; runs nothing)."]
    write_section("Summary", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
