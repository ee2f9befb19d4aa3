"""The benchmarks' shared kit: a doc section is replaced by its exact title, never one with a longer name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import kit  # noqa: E402  (benchmarks/ is not a package: scripts import it by path too)


def test_write_section_replaces_only_its_own_title(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## Search r56-180: 86.1 %\n\nold\n\n## Search r56-180-recal250\n\nkeep\n")
    kit.write_section("Search r56-180", "## Search r56-180: 86.4 %\n\nnew\n", doc)
    text = doc.read_text()
    assert "old" not in text and "new" in text and "## Search r56-180-recal250\n\nkeep" in text
    assert text.startswith("# Benchmarks\n\nintro")
    kit.write_section("Other", "## Other\n\nx\n", doc)
    assert doc.read_text().endswith("## Other\n\nx\n") and "new" in doc.read_text()


def test_write_result_is_whole_json(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(kit, "RESULTS", tmp_path)
    path = kit.write_result("r.json", {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_sections_keep_the_docs_order(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## timm zoo: 49/50\n\nzoo\n\n## Evaluation speed (r56)\n\nfast\n")
    kit.write_section("Summary", "## Summary\n\nall\n", doc)  # the summary goes first, wherever it was written
    kit.write_section("Method comparison: resnet20", "## Method comparison: resnet20 (50%)\n\nm\n", doc)
    titles = [kit.section_title(p) for p in doc.read_text().split("\n## ")[1:]]
    assert titles == ["Summary", "Method comparison: resnet20 (50%)", "timm zoo: 49/50", "Evaluation speed (r56)"]
    assert doc.read_text().startswith("# Benchmarks\n\nintro\n\n## Summary\n\nall\n\n## Method")


def test_a_regenerated_section_keeps_its_hand_written_notes(tmp_path: Path) -> None:
    """A Reading written into a generated section survives the script rewriting the section (before "Commands:")."""
    doc = tmp_path / "benchmarks.md"
    reading = f"{kit.NOTES[0]}\nReading: gnnrl leads by 0.96.\n{kit.NOTES[1]}"
    doc.write_text(f"# Benchmarks\n\n## Cmp: r8\n\n| old table |\n\n{reading}\n\nCommands: `old`\n\n## Next\n\nn\n")
    kit.write_section("Cmp: r8", "## Cmp: r8\n\n| new table |\n\nCommands: `new`\n", doc)
    text = doc.read_text()
    assert "old table" not in text and f"| new table |\n\n{reading}\n\nCommands: `new`" in text
    kit.write_section("Cmp: r8", "## Cmp: r8\n\n| newer |\n", doc)  # no Commands line: the notes go last
    assert f"| newer |\n\n{reading}\n" in doc.read_text() and doc.read_text().count("Reading:") == 1
    assert "## Next\n\nn" in doc.read_text()


def test_paired_differences_pair_by_fine_tune_seed_and_count_a_shared_policy_once() -> None:
    rows = [{"method": "uniform-internal", "policy_sha": "u", "ft": {"0": 90.0, "1": 89.0, "2": 89.5}},
            {"method": "gnnrl", "policy_sha": "a", "ft": {"0": 90.5, "1": 89.25}},   # +0.5, +0.25
            {"method": "gnnrl", "policy_sha": "a", "ft": {"0": 90.5, "1": 89.25}},   # the same policy: once
            {"method": "gnnrl", "policy_sha": "b", "ft": {0: 89.0, 3: 95.0}},        # -1.0; seed 3 has no pair
            {"method": "amc", "policy_sha": "c", "ft": {"5": 91.0}}]
    d = kit.paired_differences(rows, "gnnrl")
    assert d is not None and d["n"] == 3
    assert abs(d["mean"] - (0.5 + 0.25 - 1.0) / 3) < 1e-12
    assert abs(d["se"] - d["std"] / 3 ** 0.5) < 1e-12
    assert kit.paired_differences(rows, "amc") is None  # no seed shared with the reference
