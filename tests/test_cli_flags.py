"""Flags made from the config dataclasses: every config field is a flag (with its type, choices, default and
docstring) without a line in the CLI, what a flag sets reaches the run, and the shared conventions (global flags
after the subcommand, one meaning of --json, defaults in --help)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import pytest

from gnnrl.cli import build_parser, main
from gnnrl.cli.flags import add_config_flags, config_from, field_docs
from gnnrl.config import DDPGConfig, EnvConfig, SearchConfig
from gnnrl.finetune import FINETUNE
from gnnrl.train import TrainConfig


@dataclass(frozen=True)
class NewConfig:
    """A config with one field of every kind a flag carries, as a contributor would add them."""

    width: int = 8
    """how wide"""
    rate: float = 0.5
    mode: Literal["fast", "exact"] = "exact"
    """which way"""
    on: bool = True
    cap: int | None = None
    sizes: tuple[int, ...] = (1, 2)


def parse(*argv: str) -> NewConfig:
    p = argparse.ArgumentParser()
    add_config_flags(p, NewConfig, prefix="new_")
    return config_from(p.parse_args(argv), NewConfig(), prefix="new_")


def test_a_new_config_field_is_a_flag_with_no_cli_code() -> None:
    assert parse() == NewConfig()
    assert parse("--new-width", "3", "--new-rate", "0.25", "--new-mode", "fast", "--no-new-on", "--new-cap", "7",
                 "--new-sizes", "4", "5", "6") == NewConfig(3, 0.25, "fast", False, 7, (4, 5, 6))
    with pytest.raises(SystemExit):  # a Literal's choices are enforced by argparse
        parse("--new-mode", "slow")
    p = argparse.ArgumentParser()
    add_config_flags(p, NewConfig)
    text = p.format_help()
    assert "how wide" in text and "which way" in text and "{fast,exact}" in text
    assert field_docs(NewConfig) == {"width": "how wide", "mode": "which way"}


def _dests(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", ["search", "compress"])
def test_every_search_setting_has_a_flag(command: str) -> None:
    dests = _dests(command)
    for cls, prefix in ((EnvConfig, ""), (SearchConfig, ""), (DDPGConfig, "agent_")):
        for f in fields(cls):
            if f.name not in ("env", "agent"):
                assert prefix + f.name in dests, (cls.__name__, f.name)


@pytest.mark.parametrize("command", ["finetune", "compress"])
def test_every_finetune_setting_has_a_flag(command: str) -> None:
    dests = _dests(command)
    assert {f.name for f in fields(TrainConfig)} - {"val_from"} <= dests


def test_flags_reach_the_stored_settings(tmp_path: Path) -> None:
    """A flag made from a field sets that field of the run (read back from policy.json)."""
    out = tmp_path / "run"
    code = main(["search", "--model", "resnet20", "--method", "uniform-internal", "--episodes", "2", "--val-size",
                 "50", "--bn-recal", "32", "--tolerance", "0.03", "--importance", "l2", "--agent-hidden", "17",
                 "--candidates", "3", "--out", str(out), "--quiet"])
    assert code == 0
    config = SearchConfig.from_dict(json.loads((out / "policy.json").read_text())["config"])
    assert config.env.tolerance == 0.03 and config.env.importance == "l2" and config.val_size == 50
    assert config.agent.hidden == 17 and config.agent.candidates == 3
    assert config.agent.batch_size == DDPGConfig().batch_size  # --agent-batch-size, not the fine-tune's


def test_finetune_defaults_are_the_finetune_schedule() -> None:
    args = build_parser().parse_args(["finetune", "--pruned", "p.safetensors", "--out", "o"])
    assert (args.lr, args.kd_weight, args.epochs) == (FINETUNE.lr, FINETUNE.kd_weight, FINETUNE.epochs)
    args = build_parser().parse_args(["compress", "--model", "resnet20", "--out", "o", "--epochs", "3"])
    assert args.epochs == 3  # --epochs is compress's --ft-epochs too: one name for fine-tuning epochs


def test_global_flags_may_follow_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["models", "--threads", "1", "--debug"])
    assert args.threads == 1 and args.debug
    args = build_parser().parse_args(["--threads", "2", "models"])
    assert args.threads == 2 and not args.debug
    assert main(["models", "--threads", "1"]) == 0
    assert "resnet20" in capsys.readouterr().out


def test_json_alone_prints_it_and_with_a_file_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "resnet20", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # the JSON alone on stdout: no table
    assert printed["model"] == "resnet20" and len(printed["groups"]) > 1
    assert main(["info", "--model", "resnet20", "--json", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text()) == printed
    assert "channel groups" in capsys.readouterr().out  # and the table is shown


def test_help_shows_defaults() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["search"].format_help()
    assert "(default: 0.5)" in text and "(default: 500)" in text and "(default: 0.02)" in text


def test_compress_takes_every_compress_setting_and_the_baseline_method() -> None:
    from gnnrl.compress import CompressConfig

    dests = _dests("compress")
    made_by_hand = {"latency_batches": "latency_batch_sizes", "latency_rounds": None}  # named apart / from --quick
    for f in fields(CompressConfig):
        if f.name not in ("search", "finetune") and f.name not in made_by_hand:
            assert f.name in dests, f.name
    args = build_parser().parse_args(["compress", "--model", "resnet20", "--out", "o", "--baseline-method", "uniform"])
    assert config_from(args, CompressConfig()).baseline_method == "uniform"


def test_the_report_names_the_baseline_it_ran(tmp_path: Path) -> None:
    from gnnrl.report import collect, markdown

    run = {"model": {"name": "resnet20"}, "budget": 0.3, "metric": "macs",
           "identity": {"config": {"baseline_method": "uniform"}}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    split = {"val": 80.0, "test_rest": 80.0, "test": 80.0}
    (tmp_path / "eval.json").write_text(json.dumps({"original": split, "pruned_before_ft": split,
                                                     "pruned_after_ft": split, "baseline_before_ft": split,
                                                     "baseline_after_ft": split}))
    text = markdown(collect(tmp_path))
    assert "| uniform, before | uniform, after |" in text and "uniform-internal" not in text
