"""Shared fixtures: the real CIFAR-10 from ../shared, and a small copy of it in all three formats."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from gnnrl.data import Cifar, load_cifar, write_python_batches
from gnnrl.paths import default_weights


@pytest.fixture(scope="session")
def cifar() -> Cifar:
    """The full CIFAR-10 from the default location (decoded once, then cached)."""
    return load_cifar(progress=False)


@pytest.fixture(scope="session")
def weights():
    """Path of a shared pre-trained checkpoint by zoo name."""

    def get(name: str) -> Path:
        path = default_weights(name)
        assert path is not None, f"shared weights for {name} not found beside the repository"
        return path

    return get


def write_png_tar(path: Path, data: Cifar, per_class: dict[str, int], top: str = "cifar10") -> Path:
    """Write the first `per_class[split]` images of each class as PNGs in `top/{split}/{class}/{i}.png`."""
    from PIL import Image

    with tarfile.open(path, "w:gz") as tf:
        arrays = (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels))
        for split, x, y in arrays:
            for c, name in enumerate(data.classes):
                idx = torch.nonzero(y == c).flatten()[: per_class[split]]
                for i in idx.tolist():
                    buf = io.BytesIO()
                    Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(buf, format="PNG")
                    info = tarfile.TarInfo(f"{top}/{split}/{name}/{i:05d}.png")
                    info.size = buf.tell()
                    buf.seek(0)
                    tf.addfile(info, buf)
    return path


@pytest.fixture(scope="session")
def mini_sources(cifar: Cifar, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 200/100-image CIFAR-10 as a PNG tarball, an extracted ImageFolder tree and python batches."""
    root = tmp_path_factory.mktemp("mini")
    tar = write_png_tar(root / "mini-png.tar.gz", cifar, {"train": 20, "test": 10})
    with tarfile.open(tar) as tf:
        tf.extractall(root / "extracted", filter="data")
    mini = load_cifar(tar, cache=False, progress=False)
    batches = write_python_batches(mini, root / "py" / "cifar-10-batches-py")
    return {"tar": tar, "imagefolder": root / "extracted" / "cifar10", "python": batches}
