"""Save/load of pruned models without pickle: safetensors + lineage metadata, exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gnnrl import WeightsError, create, load, prune, save


@pytest.mark.parametrize("name", ["resnet20", "cifar_mobilenet_v2", "cifar_shufflenet_v2", "mobilenet_v2",
                                  "resnet18"])
def test_round_trip(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torchvision") if name in ("mobilenet_v2", "resnet18") else None
    torch.manual_seed(0)
    side = 32 if name.startswith(("resnet2", "cifar")) else 64
    x = torch.randn(2, 3, side, side)
    pruned = prune(create(name, num_classes=10).eval(), x, ratios=0.4)
    again = prune(pruned.module, x, ratios=0.2)  # two rounds: the lineage must replay both
    path = save(again, tmp_path / "m.safetensors")
    back = load(path).eval()
    with torch.no_grad():
        assert torch.equal(back(x), again.module.eval()(x))


def test_unpruned_zoo_model_round_trips(tmp_path: Path) -> None:
    model = create("resnet20").eval()
    back = load(save(model, tmp_path / "m.safetensors")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_plain_safetensors_is_not_a_gnnrl_file(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "p.safetensors"))
    with pytest.raises(WeightsError, match=r"not written by gnnrl\.save"):
        load(tmp_path / "p.safetensors")


def test_a_foreign_model_is_saved_and_rebuilt_on_its_own_instance(tmp_path: Path) -> None:
    """Not built by gnnrl.create: the file cannot name the architecture, so load asks for the user's instance."""
    conv = torch.nn.Conv2d(3, 3, 1)
    save(conv, tmp_path / "x.safetensors")
    with pytest.raises(WeightsError, match=r"gnnrl\.load\(path, model=YourNet\(\)\)"):
        load(tmp_path / "x.safetensors")
    back = load(tmp_path / "x.safetensors", model=torch.nn.Conv2d(3, 3, 1))
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)
