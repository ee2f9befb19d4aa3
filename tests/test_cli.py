"""The `gnnrl` command line: results as JSON, one clear message and exit code 2 for user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gnnrl.cli import main


def test_eval_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "resnet20", "--split", "val", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "resnet20" and result["split"] == "val" and result["total"] == 5000
    assert result["macs"] == 40_551_040 and result["params"] == 269_722
    assert 85 < result["top1"] < 100
    assert "resnet20" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--model", "resnet55"], "Did you mean"),
        (["eval", "--model", "resnet20", "--data", "/nonexistent/cifar"], "does not exist"),
        (["eval", "--model", "resnet20", "--weights", "/nonexistent.th"], "not found"),
        (["eval", "--model", "resnet20", "resnet56", "--weights", "a.th"], "one each"),
        (["eval", "--model", "cifar_vgg16_bn"], "no default checkpoint"),
    ],
)
def test_user_errors_exit_2_with_one_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "gnnrl: error:" in err and message in err
    assert "Traceback" not in err


def test_console_script_reports_wrong_architecture_without_traceback(weights: Callable[[str], Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gnnrl.cli", "eval", "--model", "resnet32", "--weights", str(weights("resnet20")),
         "--quiet"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "does not fit model 'resnet32'" in proc.stderr and "fits: resnet20" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_models_lists_the_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet56" in out and "cifar_shufflenet_v2" in out


def test_info_lists_groups_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.json"
    assert main(["info", "--model", "resnet20", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 channel groups, 10 prunable" in text and "network output" in text
    groups = json.loads(out.read_text())["groups"]
    assert len(groups) == 12 and groups[1]["size"] == 64


def test_info_reads_a_pruned_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gnnrl info FILE` shows what is left to prune in a pruned network, at the size it was pruned at."""
    import gnnrl

    pruned, out = tmp_path / "p.safetensors", tmp_path / "g.json"
    assert main(["prune", "--model", "resnet20", "--weights", "none", "--ratio", "0.4", "--out", str(pruned)]) == 0
    assert main(["info", str(pruned), "--json", str(out)]) == 0
    assert "10 prunable" in capsys.readouterr().out
    info = json.loads(out.read_text())
    assert info["input_size"] == 32 and info["macs"] == gnnrl.count_flops(gnnrl.load(pruned), (1, 3, 32, 32)).macs
    assert info["groups"][1]["size"] == 64 - 26  # the stem group's 64 channel ids, 40 % of them (25.6) removed
    assert main(["info"]) == 2 and "a --model name or a pruned .safetensors file" in capsys.readouterr().err
    assert main(["info", str(pruned), "--model", "resnet20"]) == 2 and "not both" in capsys.readouterr().err


def test_info_unknown_model_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "resnet55"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_graph_prints_motifs_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "g.png"
    assert main(["graph", "--model", "resnet20", "--out", str(png)]) == 0
    text = capsys.readouterr().out
    assert "11 motif instances" in text and "conv3x3-bn-relu-conv3x3-bn-add-relu" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
