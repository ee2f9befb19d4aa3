"""What every image source shares: normalisation, split names, image suffixes, class-balanced draws.

Below `gnnrl.data` (CIFAR files, caches) and `gnnrl.folder` (ImageFolder trees), which both use it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .errors import DataError

# The shared CIFAR weights were trained with ImageNet statistics; we keep them for every CIFAR model so
# that one normalisation serves evaluation, search and training alike.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

SPLITS = ("train", "test", "val", "test_rest")
VAL_SOURCES = ("test", "train")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def normalize(images: torch.Tensor, mean: Iterable[float] = MEAN, std: Iterable[float] = STD) -> torch.Tensor:
    """uint8 N×3×H×W → float32 ((x/255 − mean)/std), on the images' device."""
    m = torch.tensor(tuple(mean), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - m).div_(s)


def balanced_sample(labels: np.ndarray, n: int, seed: int, names: tuple[str, ...] = (), source: str = "split"
                    ) -> np.ndarray:
    """Sorted indices of `n` items, an equal share from every class (the first n mod k classes get one more).

    `names` (class names by index) and `source` (what is drawn from) only word the error."""
    classes = np.unique(labels)
    if n <= 0 or n > len(labels):
        raise DataError(f"cannot draw {n} images from the {len(labels)} of {source}; ask for between 1 and "
                        f"{len(labels)}")
    counts = [int((labels == c).sum()) for c in classes]
    per, extra = divmod(n, len(classes))
    rng = np.random.default_rng(seed)
    picked = []
    for i, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        want = per + (1 if i < extra else 0)
        if want > len(members):
            name = names[int(c)] if int(c) < len(names) else str(c)
            raise DataError(f"class {name!r} has only {len(members)} image{'s' if len(members) != 1 else ''} in "
                            f"{source}, and an even draw of {n} images needs {want} of each class; ask for at most "
                            f"{min(counts) * len(classes)} (e.g. a smaller --val-size or --subset) or add images")
        picked.append(rng.permutation(members)[:want])
    return np.sort(np.concatenate(picked))
