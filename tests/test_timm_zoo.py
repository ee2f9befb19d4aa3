"""timm's CNN families (the list in benchmarks/timm_zoo.py), each pruned 30% at a small input: pruned ≡ masked
original, fewer MACs, analytic cost = FlopCounterMode, ONNX Runtime's output = PyTorch's. Slow: `make test-slow`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timm_zoo import FAMILIES, _gnnrl  # noqa: E402  (the benchmark's list and check: one definition)

# Families that do not prune yet, with the reason `gnnrl info` gives (docs/benchmarks.md, "timm zoo").
KNOWN_GAPS: dict[str, str] = {
    "convnextv2_atto": "LayerNorm2d and GlobalResponseNorm normalise across channels: pinned",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_timm_family_prunes_exactly(name: str) -> None:
    pytest.importorskip("timm")
    if name in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[name])
    row = _gnnrl(name, 64)
    assert row.get("pass"), row
