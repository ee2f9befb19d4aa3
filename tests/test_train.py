"""Training: augmentation is a true crop/flip, training learns, checkpoints resume to identical weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gnnrl import create, evaluate
from gnnrl.data import Cifar, random_crop_flip
from gnnrl.errors import GnnrlError
from gnnrl.train import TrainConfig, train


def test_random_crop_flip_is_a_window_of_the_padded_image() -> None:
    x = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert not torch.equal(out, x)


def test_training_learns_and_resumes_identically(cifar: Cifar, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, subset=640, seed=3)
    torch.manual_seed(0)
    straight = create("resnet20")
    before = evaluate(straight, cifar.split("val", val_from="train").balanced_subset(500))
    result = train(straight, cifar, config, out_dir=tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "checkpoint.pt").is_file() and result.weights_path is not None
    assert result.val_top1 > before.top1 + 5, "two epochs on 640 images beat the untrained net"

    # 1 epoch, 'killed', then resumed for the second: same weights as the uninterrupted run
    torch.manual_seed(0)
    halted = create("resnet20")
    train(halted, cifar, config, out_dir=tmp_path / "b", progress=False, on_epoch_end=lambda m: m["epoch"] == 1)
    resumed = create("resnet20")  # its fresh weights are replaced by the checkpoint's
    train(resumed, cifar, config, out_dir=tmp_path / "b", resume=True, progress=False)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k

    loaded = create("resnet20", weights=result.weights_path)
    assert torch.equal(loaded.conv1.weight, straight.conv1.weight)


def test_resume_refuses_other_settings(cifar: Cifar, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=64, subset=128)
    train(create("resnet20"), cifar, config, out_dir=tmp_path, progress=False)
    with pytest.raises(GnnrlError, match="other settings"):
        train(create("resnet20"), cifar, replace(config, lr=0.3), out_dir=tmp_path, resume=True, progress=False)
