"""Bad input to the product commands: one clear line, a non-zero exit, and nothing already written is lost.

Add a case here for every new command. Most cases call the CLI's `main` in-process (fast); a few run the real
console script as a subprocess to check what a user's shell sees.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gnnrl
from gnnrl.cli import main
from gnnrl.paths import default_weights


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny search run folder (what a user must never lose)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["search", "--model", "resnet20", "--episodes", "3", "--warmup", "1", "--val-size", "50",
                 "--bn-recal", "32", "--max-steps", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _fails(argv: list[str], message: str, capsys: pytest.CaptureFixture[str], code: int = 2) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "gnnrl: error:" in err and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("budget", ["1.5", "0", "-0.2", "1"])
def test_budget_outside_0_1(budget: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["compress", "--model", "resnet20", "--budget", budget, "--out", str(tmp_path / "r"), "--quiet"],
           "must be a fraction in (0, 1)", capsys)
    assert not (tmp_path / "r").exists(), "refused before anything was written"


@pytest.mark.parametrize(("flags", "message"), [(["--workers", "0"], "--workers and --cpus-per-worker"),
                                               (["--round-size", "0"], "--round-size (0) must be at least 1"),
                                               (["--ray-address", "nowhere"], "not 'auto' or HOST:PORT"),
                                               (["--latency-batch-sizes", "0"], "must be positive"),
                                               (["--round-to", "eight"], "--round-to must be 'auto' or a positive"),
                                               (["--round-to", "0"], "--round-to must be 'auto' or a positive"),
                                               (["--metric", "latency", "--latency-threads", "0"],
                                                "--latency-batch and --latency-threads must be at least 1"),
                                               (["--agent-actor-lr", "0"], "--agent-actor-lr 0.0 (> 0)"),
                                               (["--candidates", "0", "--agent-discount", "2"],
                                                "--candidates 0 (at least 1); --agent-discount 2.0")])
def test_bad_parallel_settings_are_refused_before_any_work(flags: list[str], message: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["compress", "--model", "resnet20", "--quick", *flags, "--out", str(tmp_path / "r"), "--quiet"],
           message, capsys)
    assert not (tmp_path / "r").exists(), "refused before the run folder was made"


@pytest.mark.parametrize(("flag", "value", "message"), [("--ft-epochs", "-1", "must be positive"),
                                                     ("--lr", "0", "must be positive"),
                                                     ("--kd-weight", "1.5", "--kd-weight")])
def test_bad_finetune_settings_are_refused_before_the_search(flag: str, value: str, message: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["compress", "--model", "resnet20", "--quick", flag, value, "--out", str(tmp_path / "r"), "--quiet"],
           message, capsys)
    assert not (tmp_path / "r").exists(), "refused before the run folder was made"


def test_unreachable_budget_is_refused_before_anything_is_written(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["compress", "--model", "resnet20", "--budget", "0.001", "--out", str(tmp_path / "r"), "--quiet"],
           "cannot be met", capsys)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_missing_and_foreign_policies(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "p.safetensors")
    _fails(["prune", "--model", "resnet20", "--policy", str(tmp_path / "none.json"), "--out", out], "not found", capsys)
    _fails(["prune", "--model", "resnet32", "--policy", str(finished / "policy.json"), "--out", out],
           "another model", capsys)
    _fails(["prune", "--model", "resnet20", "--weights", "none", "--policy", str(finished), "--out", out],
           "other weights", capsys)
    assert not Path(out).exists()
    assert main(["prune", "--model", "resnet20", "--policy", str(finished), "--out", out]) == 0
    before = Path(out).read_bytes()
    _fails(["prune", "--model", "resnet20", "--ratio", "0.3", "--out", out], "--overwrite", capsys)
    assert Path(out).read_bytes() == before


def test_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.th"
    bad.write_bytes(bytes(range(256)) * 10)
    _fails(["prune", "--model", "resnet20", "--weights", str(bad), "--ratio", "0.5", "--out",
            str(tmp_path / "p.safetensors")], "corrupt", capsys)
    _fails(["finetune", "--pruned", str(bad), "--out", str(tmp_path / "ft"), "--quiet"], "", capsys)


def test_unwritable_out_is_refused_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(["compress", "--model", "resnet20", "--quick", "--out", str(blocker / "run"), "--quiet"], "is a file",
           capsys)
    _fails(["compress", "--model", "resnet20", "--quick", "--out", str(blocker), "--quiet"], "is a file", capsys)
    _fails(["prune", "--model", "resnet20", "--ratio", "0.5", "--out", str(blocker / "p.safetensors")], "is a file",
           capsys)
    _fails(["prune", "--model", "resnet20", "--ratio", "0.5", "--out", str(tmp_path)], "must end in .safetensors",
           capsys)
    assert blocker.read_text() == "x"
    if Path("/proc/self").is_dir():  # a folder whose permission bits allow writing (as root) but that takes no files
        _fails(["info", "--model", "resnet20", "--json", "/proc/gnnrl-x.json"], "cannot write in /proc", capsys)
        _fails(["compress", "--model", "resnet20", "--quick", "--out", "/proc/gnnrl-run", "--quiet"],
               "cannot write in /proc", capsys)


def test_a_finished_run_is_never_overwritten(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _digest(finished)
    _fails(["search", "--model", "resnet20", "--episodes", "3", "--out", str(finished), "--quiet"], "--resume", capsys)
    _fails(["compress", "--model", "resnet20", "--quick", "--out", str(finished), "--quiet"], "--resume", capsys)
    _fails(["compress", "--model", "resnet20", "--quick", "--out", str(finished), "--resume", "--quiet"],
           "not a gnnrl compress run", capsys)
    _fails(["report", str(finished)], "not a gnnrl compress run", capsys)
    assert _digest(finished) == before


def test_bad_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r")
    _fails(["search", "--model", "resnet20", "--episodes", "-2", "--out", out, "--quiet"], "--episodes", capsys)
    _fails(["search", "--model", "resnet20", "--episodes", "10", "--warmup", "-1", "--out", out, "--quiet"],
           "--warmup", capsys)
    _fails(["prune", "--model", "resnet20", "--ratio", "1.2", "--out", out + ".safetensors"], "--ratio", capsys)
    pruned = gnnrl.save(gnnrl.prune(gnnrl.create("resnet20", weights=default_weights("resnet20")),
                                    torch.zeros(1, 3, 32, 32), ratios=0.5), tmp_path / "p.safetensors")
    _fails(["finetune", "--pruned", str(pruned), "--epochs", "0", "--out", out, "--quiet"], "must be positive", capsys)
    _fails(["finetune", "--pruned", str(pruned), "--kd-weight", "2", "--out", out, "--quiet"], "--kd-weight", capsys)


def test_console_script_exit_code_and_single_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "gnnrl.cli", "compress", "--model", "resnet20", "--budget", "2",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gnnrl: error:"), res.stderr
    res = subprocess.run([sys.executable, "-m", "gnnrl.cli", "--debug", "report", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" in res.stderr  # --debug shows where it came from


def test_report_rebuilds_from_files(tmp_path: Path) -> None:
    """`gnnrl report` on a folder with only run.json and eval.json still writes a report."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": {"name": "resnet20"}, "budget": 0.5, "metric": "macs"}))
    (run / "eval.json").write_text(json.dumps({"original": {"val": 91.0, "test_rest": 92.0, "test": 91.5}}))
    assert main(["report", str(run), "--json"]) == 0
    assert "| top-1 test % | 91.50 |" in (run / "report.md").read_text()  # no image counts recorded: none claimed


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Truncated, random, text and pickled-object files in the places a user puts checkpoints."""
    root = tmp_path_factory.mktemp("bad")
    real = default_weights("resnet20").read_bytes()
    files = {"truncated": real[:30], "random": bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
             "text": b"hello world\n"}
    out = {}
    for name, data in files.items():
        (root / f"{name}.th").write_bytes(data)
        out[name] = root / f"{name}.th"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "obj": _Blocked()}, root / "pickled.th")
    out["pickled"] = root / "pickled.th"
    return out


class _Blocked:
    """A class torch's safe loader refuses (any non-allow-listed global)."""


@pytest.mark.parametrize(("kind", "message"), [("truncated", "is corrupt or not a PyTorch checkpoint"),
                                               ("random", "is corrupt or not a PyTorch checkpoint"),
                                               ("text", "is corrupt or not a PyTorch checkpoint"),
                                               ("pickled", "contains pickled Python objects")])
def test_weights_messages(kind: str, message: str, bad_checkpoints: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["prune", "--model", "resnet20", "--weights", str(bad_checkpoints[kind]), "--ratio", "0.5", "--out",
            str(tmp_path / "p.safetensors")], message, capsys)
    assert not (tmp_path / "p.safetensors").exists()


def test_weights_messages_never_invite_an_unsafe_load(bad_checkpoints: dict[str, Path]) -> None:
    from gnnrl.weights import read_state_dict

    for path in bad_checkpoints.values():
        with pytest.raises(gnnrl.WeightsError) as info:
            read_state_dict(path)
        assert "weights_only=False" not in str(info.value) and "will likely succeed" not in str(info.value)


def test_api_gaps_raise_typed_errors(tmp_path: Path) -> None:
    model = gnnrl.create("resnet20")
    graph = gnnrl.trace(model, torch.zeros(1, 3, 32, 32))
    with pytest.raises(gnnrl.PruneError, match="ratios must be"):
        gnnrl.prune(graph, ratios="half")  # type: ignore[arg-type]
    with pytest.raises(gnnrl.PruneError, match="round_to"):
        gnnrl.prune(graph, ratios=0.5, round_to=0)
    with pytest.raises(gnnrl.TraceError, match="does not fit"):
        gnnrl.trace(model, torch.zeros(1, 5, 32, 32))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"), metadata={"gnnrl": "{broken"})
    with pytest.raises(gnnrl.WeightsError, match="damaged gnnrl metadata"):
        gnnrl.load(tmp_path / "m.safetensors")


def test_output_paths_are_checked_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["eval", "--model", "resnet20", "--json", str(tmp_path), "--quiet"], "is a folder", capsys)
    _fails(["graph", "--model", "resnet20", "--out", str(tmp_path / "g.xyz")], ".png, .svg or .pdf", capsys)
    assert main(["info", "--model", "resnet20", "--json", str(tmp_path / "new" / "dir" / "i.json")]) == 0
    assert json.loads((tmp_path / "new" / "dir" / "i.json").read_text())["model"] == "resnet20"


def test_resume_checks_what_it_resumes(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    base = ["search", "--model", "resnet20", "--episodes", "3", "--warmup", "1", "--val-size", "50", "--bn-recal",
            "32", "--max-steps", "2", "--out", str(run), "--quiet", "--resume"]
    before = _digest(run)
    _fails([*base, "--weights", "none"], "weights_sha256", capsys)  # random init instead of the searched weights
    _fails([*base[:-1], "--seed", "3", "--resume"], "seed: 0 → 3", capsys)  # the differing key, not the config
    assert _digest(run) == before
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])  # a kill mid-write (old code)
    _fails(base, "is unreadable", capsys)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    _fails(base, "is unreadable", capsys)


def test_atomic_writes_replace_whole_files_with_the_usual_mode(tmp_path: Path) -> None:
    import os

    from gnnrl.files import atomic_write, write_json

    path = write_json(tmp_path / "a" / "x.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask

    def broken(p: Path) -> None:
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}  # the old file survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # and no temporary is left behind


def test_overwrite_never_empties_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    _fails(["compress", "--model", "resnet20", "--quick", "--out", str(mine), "--overwrite", "--quiet"],
           "not a gnnrl compress run folder", capsys)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


def test_train_refuses_bad_settings_before_making_its_folder(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["train", "--model", "resnet20", "--lr", "0", "--out", str(tmp_path / "r"), "--quiet"],
           "lr (0.0) must be positive", capsys)
    assert not (tmp_path / "r").exists(), "refused before the run folder was made (and before the data was read)"
