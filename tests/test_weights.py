"""Checkpoints: the shared format, safetensors, prefixes, and every way a file can be wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gnnrl import create
from gnnrl.errors import WeightsError
from gnnrl.weights import read_state_dict


class Custom:  # a pickled object that weights_only loading refuses
    def __init__(self) -> None:
        self.note = "arbitrary object"


def test_shared_checkpoint_loads_without_prefix(weights: Callable[[str], Path]) -> None:
    state = read_state_dict(weights("resnet20"))
    assert "conv1.weight" in state and not any(k.startswith("module.") for k in state)
    model = create("resnet20", weights=weights("resnet20"))
    assert torch.equal(model.conv1.weight, state["conv1.weight"])


def test_safetensors_and_plain_state_dict_round_trip(tmp_path: Path, weights: Callable[[str], Path]) -> None:
    model = create("resnet20", weights=weights("resnet20"))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    torch.save({"model": {f"_orig_mod.{k}": v for k, v in state.items()}}, tmp_path / "m.pt")
    for f in ("m.safetensors", "m.pt"):
        again = create("resnet20", weights=tmp_path / f)
        assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), state.values(), strict=True))


def test_wrong_architecture_names_keys_and_the_model_that_fits(weights: Callable[[str], Path]) -> None:
    with pytest.raises(WeightsError) as e:
        create("resnet56", weights=weights("resnet20"))
    msg = str(e.value)
    assert "missing" in msg and "layer1.3.conv1.weight" in msg
    assert "fits: resnet20" in msg


def test_wrong_class_count_is_a_shape_mismatch(weights: Callable[[str], Path]) -> None:
    with pytest.raises(WeightsError, match=r"linear.weight \(10, 64\) vs \(100, 64\)"):
        create("resnet20", num_classes=100, weights=weights("resnet20"))


def test_pickle_only_checkpoint_is_refused_unless_allowed(tmp_path: Path, weights: Callable[[str], Path]) -> None:
    state = create("resnet20", weights=weights("resnet20")).state_dict()
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "extra": Custom()}, path)
    with pytest.raises(WeightsError, match="allow-pickle"):
        create("resnet20", weights=path)
    model = create("resnet20", weights=path, allow_pickle=True)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])


@pytest.mark.parametrize("kind", ["garbage", "truncated", "missing", "empty-dict", "bad-safetensors"])
def test_unreadable_checkpoints(kind: str, tmp_path: Path, weights: Callable[[str], Path]) -> None:
    path = tmp_path / ("w.safetensors" if kind == "bad-safetensors" else "w.th")
    if kind in ("garbage", "bad-safetensors"):
        path.write_bytes(b"definitely not a checkpoint" * 20)
    elif kind == "truncated":
        data = weights("resnet20").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty-dict":
        torch.save({"epoch": 3}, path)
    with pytest.raises(WeightsError, match=str(path.name)):
        create("resnet20", weights=path)
