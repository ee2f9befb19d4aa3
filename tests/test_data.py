"""Data: three formats agree image for image, caching and its invalidation, splits, bad input."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_png_tar

from gnnrl.data import Cifar, balanced_sample, find_source, load_cifar, write_python_batches
from gnnrl.errors import DataError


def assert_same(a: Cifar, b: Cifar) -> None:
    assert a.classes == b.classes
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_three_formats_agree_image_for_image(mini_sources: dict[str, Path]) -> None:
    loaded = {kind: load_cifar(path, cache=False, progress=False) for kind, path in mini_sources.items()}
    assert loaded["tar"].source_kind == "image-tar"
    assert loaded["imagefolder"].source_kind == "imagefolder"
    assert loaded["python"].source_kind == "python"
    assert loaded["tar"].train_images.shape == (200, 3, 32, 32)
    assert loaded["tar"].test_images.shape == (100, 3, 32, 32)
    assert_same(loaded["tar"], loaded["imagefolder"])
    assert_same(loaded["tar"], loaded["python"])
    # the parent folder of cifar-10-batches-py is found too, as torchvision users would pass it
    assert_same(loaded["python"], load_cifar(mini_sources["python"].parent, cache=False, progress=False))


def test_torchvision_reads_the_batches_we_write(mini_sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Our python-batch writer produces the real format: torchvision's own reader agrees with ours."""
    torchvision = pytest.importorskip("torchvision")
    # torchvision checks the md5 of the official files; ours hold a subset, so skip that check only.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    ours = load_cifar(mini_sources["python"], cache=False, progress=False)
    tv = torchvision.datasets.CIFAR10(str(mini_sources["python"].parent), train=False, download=False)
    assert torch.equal(torch.from_numpy(tv.data).permute(0, 3, 1, 2), ours.test_images)
    assert tv.targets == ours.test_labels.tolist()
    assert tuple(tv.classes) == ours.classes


def test_decoded_tar_matches_the_shared_images(cifar: Cifar) -> None:
    assert cifar.train_images.shape == (50000, 3, 32, 32) and cifar.test_images.shape == (10000, 3, 32, 32)
    assert cifar.classes[0] == "airplane" and cifar.classes[-1] == "truck"
    assert torch.bincount(cifar.test_labels).tolist() == [1000] * 10
    assert torch.bincount(cifar.train_labels).tolist() == [5000] * 10


def test_cache_is_used_and_rebuilt_when_the_tar_changes(cifar: Cifar, tmp_path: Path) -> None:
    tar = write_png_tar(tmp_path / "c.tar.gz", cifar, {"train": 3, "test": 2})
    cache = tmp_path / "cache"
    first = load_cifar(tar, cache_root=cache, progress=False)
    second = load_cifar(tar, cache_root=cache, progress=False)
    assert not first.from_cache and second.from_cache
    assert_same(first, second)
    assert len(list(cache.glob("*.npz"))) == 1

    # same layout, different pixels: write the tar again from other images
    shifted = Cifar(cifar.name, cifar.classes, cifar.train_images.flip(0), cifar.train_labels.flip(0),
                    cifar.test_images, cifar.test_labels, cifar.source, cifar.source_kind)
    write_png_tar(tar, shifted, {"train": 3, "test": 2})
    third = load_cifar(tar, cache_root=cache, progress=False)
    assert not third.from_cache
    assert not torch.equal(third.train_images, first.train_images)
    assert torch.equal(third.test_images, first.test_images)
    assert len(list(cache.glob("*.npz"))) == 1, "the stale cache of the same source is removed"


def test_cache_is_rebuilt_when_an_imagefolder_file_changes(mini_sources: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "tree"
    shutil.copytree(mini_sources["imagefolder"], folder)
    cache = tmp_path / "cache"
    before = load_cifar(folder, cache_root=cache, progress=False)
    assert load_cifar(folder, cache_root=cache, progress=False).from_cache
    victim = sorted((folder / "test" / "cat").iterdir())[0]
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(victim)
    after = load_cifar(folder, cache_root=cache, progress=False)
    assert not after.from_cache
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32)
    assert any(torch.equal(im, red) for im in after.test_images)
    assert not any(torch.equal(im, red) for im in before.test_images)


def test_a_torn_cache_file_is_decoded_again(mini_sources: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_cifar(mini_sources["tar"], cache_root=cache, progress=False)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(b"not a zip")
    again = load_cifar(mini_sources["tar"], cache_root=cache, progress=False)
    assert not again.from_cache and again.train_images.shape == (200, 3, 32, 32)


def test_splits_follow_the_paper_protocol(cifar: Cifar) -> None:
    val, rest, test = cifar.split("val"), cifar.split("test_rest"), cifar.split("test")
    assert (len(cifar.split("train")), len(test), len(val), len(rest)) == (50000, 10000, 5000, 5000)
    assert torch.bincount(val.labels).tolist() == [500] * 10
    # val and test_rest partition test exactly
    merged = torch.cat([val.images, rest.images]).flatten(1)
    assert torch.equal(torch.unique(merged, dim=0), torch.unique(test.images.flatten(1), dim=0))
    assert torch.equal(cifar.split("val").images, val.images), "fixed seed ⇒ same split"
    assert not torch.equal(cifar.split("val", seed=1).images, val.images)


def test_val_from_train_holds_out_5k_of_train(cifar: Cifar) -> None:
    train, val = cifar.split("train", val_from="train"), cifar.split("val", val_from="train")
    assert (len(train), len(val)) == (45000, 5000)
    assert torch.bincount(val.labels).tolist() == [500] * 10
    assert len(cifar.split("test_rest", val_from="train")) == 10000
    idx = balanced_sample(cifar.train_labels.numpy(), 5000, 0)
    keep = np.setdiff1d(np.arange(50000), idx)
    assert torch.equal(train.images, cifar.train_images[torch.from_numpy(keep)])


def test_cifar100_python_format(cifar: Cifar, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"class{i:03d}" for i in range(100)]
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("test", 200)):
        x = cifar.train_images[:n].reshape(n, -1).numpy()
        with open(folder / split, "wb") as f:
            pickle.dump({b"data": x, b"fine_labels": rng.permutation(np.arange(n) % 100).tolist(),  # every class
                         b"coarse_labels": [0] * n}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [n.encode() for n in names]}, f)
    data = load_cifar(tmp_path, "cifar100", cache=False, progress=False)
    assert data.num_classes == 100 and data.source_kind == "python"
    assert data.train_images.shape == (300, 3, 32, 32)


@pytest.mark.parametrize("bad", ["missing", "empty", "not-a-tar", "truncated"])
def test_bad_data_gives_one_clear_error(bad: str, mini_sources: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / bad
    if bad == "empty":
        path.mkdir()
    elif bad == "not-a-tar":
        path.write_bytes(b"hello")
    elif bad == "truncated":
        data = mini_sources["tar"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        load_cifar(path, cache=False, progress=False)
    assert "--data" in str(e.value) or "corrupt" in str(e.value)


def test_no_data_anywhere_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("gnnrl.data.default_data_root", lambda: None)
    with pytest.raises(DataError, match="GNNRL_DATA"):
        find_source(None, "cifar10")


def test_malicious_batch_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing"):
        load_cifar(folder, cache=False, progress=False)
    assert not marker.exists()


def test_mixed_image_sizes_are_refused(mini_sources: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "tree"
    shutil.copytree(mini_sources["imagefolder"], folder)
    from PIL import Image

    Image.new("RGB", (40, 40)).save(sorted((folder / "train" / "dog").iterdir())[0])
    with pytest.raises(DataError, match="differ in size"):
        load_cifar(folder, cache=False, progress=False)


@pytest.mark.slow
def test_full_dataset_three_formats_agree(cifar: Cifar, tmp_path: Path) -> None:
    """All 60k images: the shared tarball, its extraction and python batches decode identically."""
    with tarfile.open(cifar.source) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    folder = load_cifar(tmp_path / "x" / "cifar10", cache=False, progress=False)
    assert_same(cifar, folder)
    batches = load_cifar(write_python_batches(cifar, tmp_path / "py"), cache=False, progress=False)
    assert_same(cifar, batches)
