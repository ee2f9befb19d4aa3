"""Streamed ImageFolder data (ImageNet layout, images of any size): splits, transforms, and the whole product."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnrl.cli import main
from gnnrl.data import load_dataset
from gnnrl.errors import DataError
from gnnrl.folder import FolderDataset, load_image_folder

pytest.importorskip("torchvision")

CLASSES = ("n01440764", "n01443537", "n01484850")


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageNet-layout tree: 3 classes, 8 train and 6 val images each, JPEG and PNG of mixed sizes,
    each class a different mean colour (so that a network can learn something)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 6)):
        for c, wnid in enumerate(CLASSES):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(40, 160)), int(rng.integers(40, 160))
                pixels = rng.integers(0, 90, (h, w, 3)) + np.eye(3, dtype=np.int64)[c] * 160
                suffix = ".JPEG" if i % 2 else ".png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{wnid}_{i}{suffix}")
    return root


def test_splits_follow_the_cifar_rules_and_stream_224_crops(imagenet_like: Path) -> None:
    data = load_dataset(imagenet_like)  # train/ + val/: streamed without being asked
    assert isinstance(data, FolderDataset) and data.classes == CLASSES and data.image_shape == (3, 224, 224)
    val, rest, test = (data.split(s, val_size=9) for s in ("val", "test_rest", "test"))
    assert len(val) == 9 and len(rest) == 9 and len(test) == 18
    assert set(val.files).isdisjoint(rest.files) and set(val.files) | set(rest.files) == set(test.files)
    assert np.bincount(val.labels.numpy()).tolist() == [3, 3, 3]  # class-balanced
    assert val.fingerprint() == data.split("val", val_size=9).fingerprint() != rest.fingerprint()
    batches = list(val.batches(4))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 224, 224), (4, 3, 224, 224), (1, 3, 224, 224)]
    assert torch.equal(torch.cat([y for _, y in batches]), val.labels)
    assert torch.allclose(torch.cat([x for x, _ in batches]), val.normalized)  # the small-split path agrees
    copy = pickle.loads(pickle.dumps(val))  # with live loaders and decoded images, as Ray ships it: files only
    assert copy.files == val.files and "images" not in copy.__dict__ and "_eval_loaders" not in copy.__dict__
    # training batches: random-resized crops and flips, replayed exactly by the same generator
    train = data.split("train")
    a = list(train.train_batches(8, torch.Generator().manual_seed(1)))
    b = list(train.train_batches(8, torch.Generator().manual_seed(1)))
    c = list(train.train_batches(8, torch.Generator().manual_seed(2)))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(train.labels.tolist())  # one epoch, each once


def test_a_broken_tree_is_one_clear_error(imagenet_like: Path, tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="has no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="not an ImageFolder tree"):
        load_image_folder(tmp_path / "train")
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"not a png")
    (tmp_path / "val" / "a" / "y.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode image"):
        next(load_image_folder(tmp_path, workers=0).split("test").batches(2))


def test_compress_a_torchvision_model_with_a_weights_file_on_streamed_images(imagenet_like: Path,
                                                                              tmp_path: Path) -> None:
    from gnnrl import create

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(create("resnet18", num_classes=3).state_dict(), weights)  # a user's own weights file
    out = tmp_path / "run"
    code = main(["compress", "--model", "resnet18", "--weights", str(weights), "--data", str(imagenet_like),
                 "--budget", "0.5", "--episodes", "3", "--warmup", "1", "--ft-epochs", "1", "--batch-size", "8",
                 "--val-size", "9", "--bn-recal", "6", "--latency-batch-sizes", "1", "--finalists", "1",
                 "--finalist-steps", "2", "--finalist-batch", "4", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    assert ev["images"] == {"val": 9, "test_rest": 9}
    assert 0.45 <= ev["cost"]["macs_ratio"] <= 0.5
    assert (out / "model.onnx").stat().st_size > 0 and report
    assert json.loads((out / "select" / "policy.json").read_text())["selection"]["finalists"]  # streamed images too
    history = json.loads((out / "finetune" / "train.json").read_text())["history"]
    assert len(history) == 1 and 0 <= history[0]["val/top1"] <= 100


def test_ray_workers_stream_the_folder_and_agree_with_one_process(imagenet_like: Path) -> None:
    pytest.importorskip("ray")
    from gnnrl import create
    from gnnrl.agent import DDPGConfig
    from gnnrl.env import EnvConfig
    from gnnrl.parallel import ParallelConfig
    from gnnrl.search import SearchConfig, search

    data = load_dataset(imagenet_like)
    config = SearchConfig(episodes=4, warmup=2, val_size=9, round_size=2, env=EnvConfig(bn_recal=6, max_steps=2),
                          agent=DDPGConfig(channels=16, hidden=32, batch_size=4))
    torch.manual_seed(0)
    model = create("resnet18", num_classes=3)
    local = search(model, data, config, progress=False)
    remote = search(model, data, config, progress=False, parallel=ParallelConfig(workers=2))
    keep = ("removed", "val_top1", "reward")
    assert [{k: h[k] for k in keep} for h in remote.history] == [{k: h[k] for k in keep} for h in local.history]
    assert "local" not in {h.get("worker") for h in remote.history}


def test_an_imagenet_tree_with_an_unlabelled_test_folder_is_still_streamed(imagenet_like: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "imagenet"
    shutil.copytree(imagenet_like, root)
    (root / "test").mkdir()  # ImageNet's test/ holds unlabelled images, no class folders
    shutil.copy(next((root / "val").rglob("*.png")), root / "test" / "ILSVRC2012_test_00000001.png")
    data = load_dataset(root)
    assert isinstance(data, FolderDataset) and len(data.split("test")) == 18  # val/ is the held-out folder
