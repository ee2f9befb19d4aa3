"""ImageNet-scale data: an ImageFolder tree of images of any size, streamed, never held whole in memory.

Layout: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (ImageNet's; ``test/`` is accepted for ``val/``).
Images are decoded by `torch.utils.data.DataLoader` workers with the standard torchvision transforms:
resize 256 / center-crop 224 for evaluation (and BatchNorm re-estimation), random-resized-crop 224 + horizontal
flip for training. The splits follow the CIFAR rules (`gnnrl.data`): the held-out folder plays CIFAR's test set,
``val`` is a class-balanced seeded subset of it (or of train with ``val_from="train"``) and ``test_rest`` the
remainder, so the search never sees the images it is finally judged on.

Only the file list (and labels) is kept; a split materialises pixels for small subsets only (the BN-recalibration
images), and `FolderSplit.batches` streams the rest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .images import IMAGE_SUFFIXES, MEAN, SPLITS, STD, VAL_SOURCES, balanced_sample, normalize

HELD_OUT = ("val", "test")
"""folder names of the held-out images, in order of preference"""


def is_image_folder(root: str | Path) -> bool:
    """Whether `root` has the ImageNet layout (train/ and val/ or test/ folders of class folders)."""
    root = Path(root)
    return (root / "train").is_dir() and any((root / h).is_dir() for h in HELD_OUT)


def streams(root: str | Path | None, dataset: str) -> bool:
    """Whether `--data root --dataset dataset` names a streamed ImageFolder: asked for, or a tree with val/ (CIFAR
    trees have train/ and test/ only; ImageNet's test/ is unlabelled, so val/ decides)."""
    if dataset == "imagefolder":
        return True
    return root is not None and (Path(root) / "val").is_dir() and is_image_folder(root)


def _transforms() -> Any:
    try:
        from torchvision import transforms
    except ImportError as e:
        raise DataError("streaming an ImageFolder needs torchvision: pip install 'gnnrl[vision]'") from e
    return transforms


def _list(folder: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Image files under folder/<class>/ (sorted) and their class indices."""
    files, labels = [], []
    for i, c in enumerate(classes):
        d = folder / c
        if not d.is_dir():
            continue
        for dirpath, dirnames, names in os.walk(d):
            dirnames.sort()
            for n in sorted(names):
                if n.lower().endswith(IMAGE_SUFFIXES):
                    files.append(os.path.join(dirpath, n))
                    labels.append(i)
    return files, np.array(labels, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class FolderDataset:
    """An ImageFolder tree (train + held-out folder), as file lists; pixels are decoded when streamed."""

    name: str
    classes: tuple[str, ...]
    train_files: tuple[str, ...]
    train_labels: np.ndarray
    test_files: tuple[str, ...]
    test_labels: np.ndarray
    source: Path
    image_size: int = 224
    resize: int = 256
    workers: int = 2
    """DataLoader worker processes that decode images"""
    source_kind: str = "imagefolder-stream"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C×H×W of the images the network sees."""
        return (3, self.image_size, self.image_size)

    def split(self, name: str, val_from: str = "test", val_size: int = 5000, seed: int = 0) -> FolderSplit:
        """One of `gnnrl.data.SPLITS`, by the same rules as `Cifar.split` (the held-out folder is 'test')."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        if val_from not in VAL_SOURCES:
            raise DataError(f"--val-from must be one of {', '.join(VAL_SOURCES)}, not {val_from!r}")
        test = (self.test_files, self.test_labels)
        train = (self.train_files, self.train_labels)
        if name == "test" or (name == "test_rest" and val_from == "train"):
            return self._make(name, *test)
        if name == "train" and val_from == "test":
            return self._make(name, *train)
        files, labels = test if val_from == "test" else train
        if val_size >= len(labels):
            raise DataError(f"--val-size {val_size} leaves none of the {len(labels)} {val_from} images for "
                            f"{'test_rest' if val_from == 'test' else 'training'}; choose fewer")
        val_idx = balanced_sample(labels, val_size, seed, self.classes, f"the {val_from} images")
        if name == "val":
            idx = val_idx
        else:
            keep = np.ones(len(labels), dtype=bool)
            keep[val_idx] = False
            idx = np.flatnonzero(keep)
        return self._make(name, tuple(files[i] for i in idx), labels[idx])

    def _make(self, name: str, files: tuple[str, ...], labels: np.ndarray) -> FolderSplit:
        return FolderSplit(name, files, torch.from_numpy(np.asarray(labels, dtype=np.int64)), self.classes,
                           image_size=self.image_size, resize=self.resize, workers=self.workers)


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """A split of image files: streamed in batches (`batches`, `train_batches`), materialised only when small."""

    name: str
    files: tuple[str, ...]
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    image_size: int = 224
    resize: int = 256
    workers: int = 2

    def __len__(self) -> int:
        return len(self.files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C×H×W of the images the network sees."""
        return (3, self.image_size, self.image_size)

    def fingerprint(self) -> str:
        """Identifies the split's images: their paths (relative to the common root), sizes and labels."""
        h = hashlib.sha256()
        root = os.path.commonpath(self.files) if self.files else ""
        for f, y in zip(self.files, self.labels.tolist(), strict=True):
            h.update(f"{os.path.relpath(f, root)}:{os.path.getsize(f)}:{y}\n".encode())
        return h.hexdigest()

    def _with(self, idx: np.ndarray) -> FolderSplit:
        return FolderSplit(self.name, tuple(self.files[i] for i in idx), self.labels[torch.from_numpy(idx)],
                           self.classes, self.mean, self.std, self.image_size, self.resize, self.workers)

    def subset(self, n: int) -> FolderSplit:
        """The first `n` images."""
        return self._with(np.arange(min(n, len(self))))

    def balanced_subset(self, n: int, seed: int = 0) -> FolderSplit:
        """`n` images drawn class-balanced with a fixed seed."""
        return self._with(balanced_sample(self.labels.numpy(), n, seed, self.classes, f"split {self.name!r}"))

    def _loader(self, batch_size: int, train: bool, order: torch.Tensor | None = None,
                gen: torch.Generator | None = None) -> Any:
        t = _transforms()
        crop = ([t.RandomResizedCrop(self.image_size), t.RandomHorizontalFlip()] if train else
                [t.Resize(self.resize), t.CenterCrop(self.image_size)])
        dataset = _Files(self.files, t.Compose([*crop, t.PILToTensor()]))
        # evaluation passes repeat (one per search episode): their decoding processes stay up between passes
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist() if order is not None
                                           else None, num_workers=self.workers, generator=gen, collate_fn=_collate,
                                           persistent_workers=not train and self.workers > 0)

    @cached_property
    def _eval_loaders(self) -> dict[int, Any]:
        return {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. into Ray's object store) without its loaders and decoded images."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_eval_loaders", "images")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def batches(self, batch_size: int, device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor,
                                                                                            torch.Tensor]]:
        """(normalised images, labels) in order, evaluation transforms, decoded as they are needed."""
        if batch_size not in self._eval_loaders:
            self._eval_loaders[batch_size] = self._loader(batch_size, train=False)
        start = 0
        for x in _checked(self._eval_loaders[batch_size]):
            y = self.labels[start : start + len(x)]
            start += len(x)
            yield normalize(x.to(device), self.mean, self.std), y.to(device)

    def train_batches(self, batch_size: int, gen: torch.Generator, device: torch.device | str = "cpu"
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented (normalised images, labels) in an order drawn from `gen`."""
        order = torch.randperm(len(self), generator=gen)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        start = 0
        for x in _checked(self._loader(batch_size, train=True, order=order,
                                       gen=torch.Generator().manual_seed(seed))):
            y = self.labels[order[start : start + len(x)]]
            start += len(x)
            yield normalize(x.to(device), self.mean, self.std), y.to(device)

    @cached_property
    def images(self) -> torch.Tensor:
        """Every image, evaluation-transformed, as uint8 N×3×H×W (small splits only: the BN-recalibration images)."""
        if len(self) > 5000:
            raise DataError(f"refusing to hold all {len(self)} images of split {self.name!r} in memory; stream it")
        loader = self._loader(256, train=False)
        return torch.cat(list(_checked(loader))) if len(self) else torch.zeros(0, *self.image_shape, dtype=torch.uint8)

    @property
    def normalized(self) -> torch.Tensor:
        """`images`, normalised (computed on each use, not kept)."""
        return normalize(self.images, self.mean, self.std)


class _Files(torch.utils.data.Dataset):
    """Image files decoded with PIL and transformed (worker processes do this in parallel)."""

    def __init__(self, files: tuple[str, ...], transform: Any) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        """The transformed image, or (for a file that does not decode) the line saying so.

        The failure travels back as a value, raised by `_collate` in the main process: an exception raised in a
        DataLoader worker would reach the user wrapped in that worker's whole traceback.
        """
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[i]) as im:
                return self.transform(im.convert("RGB"))
        except UnidentifiedImageError:
            return f"cannot decode image {self.files[i]}: not a readable image (damaged, or another kind of file)"
        except (OSError, ValueError) as e:
            return f"cannot decode image {self.files[i]}: {e}"


def _collate(items: list[torch.Tensor | str]) -> torch.Tensor | str:
    """Stack a batch of images, or pass on the first decoding failure's line (raised by `_raise_bad`)."""
    bad = next((x for x in items if isinstance(x, str)), None)
    return bad if bad is not None else torch.stack(items)  # type: ignore[arg-type]


def _checked(batches: Any) -> Iterator[torch.Tensor]:
    """The loader's batches, raising the first image that did not decode as one `DataError` line."""
    for x in batches:
        if isinstance(x, str):
            raise DataError(x + "; delete or replace it")
        yield x


def load_image_folder(root: str | Path, image_size: int = 224, resize: int = 256, workers: int | None = None
                      ) -> FolderDataset:
    """The ImageFolder tree at `root` (train/ and val/ or test/), listed but not decoded."""
    root = Path(root).expanduser()
    if not is_image_folder(root):
        raise DataError(f"{root} is not an ImageFolder tree: expected train/<class>/<image> and val/<class>/<image> "
                        "(or test/ for val/)")
    _transforms()  # torchvision is needed to stream: say so before any work
    held_out = next(root / h for h in HELD_OUT if (root / h).is_dir())
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders")
    train_files, train_labels = _list(root / "train", classes)
    test_files, test_labels = _list(held_out, classes)
    extra = sorted({d.name for d in held_out.iterdir() if d.is_dir()} - set(classes))
    if extra:
        raise DataError(f"{held_out} has classes that train/ lacks: {', '.join(extra[:5])}")
    for what, files, labels in (("train", train_files, train_labels), (held_out.name, test_files, test_labels)):
        if not files:
            raise DataError(f"{root / what} has no images ({', '.join(IMAGE_SUFFIXES)})")
        empty = [c for i, c in enumerate(classes) if not (labels == i).any()]
        if empty:
            raise DataError(f"{root / what}: class{'es' if len(empty) > 1 else ''} {', '.join(empty[:5])} "
                            f"{'have' if len(empty) > 1 else 'has'} no images there (missing or empty folder); every "
                            "class needs images in train/ and in the held-out folder")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return FolderDataset(root.name, tuple(classes), tuple(train_files), train_labels, tuple(test_files), test_labels,
                         root, image_size=image_size, resize=resize,
                         workers=workers if workers is not None else min(4, cores))
