"""CIFAR-10/100 from a PNG tarball, an ImageFolder tree or the python pickle batches, decoded once.

Every source is decoded into uint8 arrays (N×3×H×W) in a *canonical order* — by label, then by a hash
of the pixels — so that the same images give the same arrays, and therefore the same validation split,
whatever format they arrived in. The decoded arrays are cached as an uncompressed `.npz` keyed by the
source's size, mtime and (for files) a content sample, so a later load reads ~180 MB instead of
decoding 60k images, and a changed source is decoded again.

Splits (see `Cifar.split`):
  * ``train``: the training images (all 50k, or 45k when ``val_from="train"``).
  * ``test``: the full test set (10k), for the paper's tables.
  * ``val``: 5k class-balanced images drawn with a fixed seed. By default from *test* (the paper's
    protocol: the shared weights were trained on all 50k training images, so a held-out piece of
    train would score ~99% and tell a search nothing), or from train with ``val_from="train"``.
  * ``test_rest``: test minus val — images the search never saw, for an honest final report.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from .errors import DataError
from .images import IMAGE_SUFFIXES, MEAN, SPLITS, STD, VAL_SOURCES, balanced_sample, normalize
from .paths import cache_dir, default_data_root
from .progress import progress_bar

if TYPE_CHECKING:
    from .folder import FolderDataset

_CACHE_VERSION = b"gnnrl-cifar-cache-v2"  # v2: class sets checked on decode

HOW_TO_GET_CIFAR = (
    "Pass --data PATH (or set GNNRL_DATA) pointing to one of: a CIFAR PNG tarball "
    "(<name>/{train,test}/<class>/*.png), an extracted ImageFolder tree with train/ and test/, or "
    "torchvision's 'cifar-10-batches-py' / 'cifar-100-python' folder. To download the latter: "
    "python -c \"import torchvision; torchvision.datasets.CIFAR10('DIR', download=True)\""
)


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: uint8 images (N×3×H×W) and int64 labels (N)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """C×H×W of the images."""
        return tuple(self.images.shape[1:])

    def fingerprint(self) -> str:
        """Identifies the split's images and labels (SHA-256 over their bytes)."""
        from .identity import tensor_fingerprint

        return tensor_fingerprint(self.images, self.labels)

    @cached_property
    def normalized(self) -> torch.Tensor:
        """All images as normalised float32 (N×3×H×W), computed once and kept for repeated evaluation."""
        return normalize(self.images, self.mean, self.std)

    def batches(self, batch_size: int, device: torch.device | str = "cpu"
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised images, labels) in order: slices of `normalized`, moved to `device` once."""
        # `normalized` is made here, not in the generator: a caller iterating under `torch.inference_mode` would
        # otherwise cache an inference tensor, which autograd later refuses
        x, y = self.normalized.to(device), self.labels.to(device)
        return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(self), batch_size))

    def train_batches(self, batch_size: int, gen: torch.Generator, device: torch.device | str = "cpu"
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented (normalised images, labels) in an order drawn from `gen`: CIFAR's pad-4 random
        crop and horizontal flip, on `device`."""
        images, labels = self.images.to(device), self.labels.to(device)
        order = torch.randperm(len(labels), generator=gen).to(device)
        for i in range(0, len(labels), batch_size):
            idx = order[i : i + batch_size]
            yield normalize(random_crop_flip(images[idx], gen), self.mean, self.std), labels[idx]

    def subset(self, n: int) -> Split:
        """The first `n` images (canonical order is class-sorted, so use `balanced_subset` for a mix)."""
        return Split(self.name, self.images[:n], self.labels[:n], self.classes, self.mean, self.std)

    def balanced_subset(self, n: int, seed: int = 0) -> Split:
        """`n` images drawn class-balanced with a fixed seed."""
        idx = torch.from_numpy(balanced_sample(self.labels.numpy(), n, seed, self.classes, f"split {self.name!r}"))
        return Split(self.name, self.images[idx], self.labels[idx], self.classes, self.mean, self.std)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a uint8 batch B×C×H×W: zero-pad by `pad`, random crop back, random h-flip."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    rows = oy + torch.arange(h, device=x.device)
    cols = ox + torch.arange(w, device=x.device)
    flip = (torch.rand(b, 1, generator=gen, device=gen.device) < 0.5).to(x.device)
    cols = torch.where(flip, cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


@dataclass(frozen=True, eq=False)
class Cifar:
    """A decoded dataset: train and test arrays in canonical order, and where they came from."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path
    source_kind: str
    from_cache: bool = field(default=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """C×H×W of the images."""
        return tuple(self.test_images.shape[1:])

    def split(self, name: str, val_from: str = "test", val_size: int = 5000, seed: int = 0) -> Split:
        """One of `SPLITS`; `val_from` says whether `val` is carved out of test (paper) or train."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        if val_from not in VAL_SOURCES:
            raise DataError(f"--val-from must be one of {', '.join(VAL_SOURCES)}, not {val_from!r}")
        if name == "test" or (name == "test_rest" and val_from == "train"):
            return self._make(name, self.test_images, self.test_labels)
        if name == "train" and val_from == "test":
            return self._make(name, self.train_images, self.train_labels)
        pool_x, pool_y = (self.test_images, self.test_labels) if val_from == "test" else (
            self.train_images, self.train_labels)
        val_idx = balanced_sample(pool_y.numpy(), val_size, seed, self.classes, f"the {val_from} images")
        if name == "val":
            idx = torch.from_numpy(val_idx)
        else:  # the pool minus val: test_rest (val from test) or train (val from train)
            keep = np.ones(len(pool_y), dtype=bool)
            keep[val_idx] = False
            idx = torch.from_numpy(np.flatnonzero(keep))
        return self._make(name, pool_x[idx], pool_y[idx])

    def _make(self, name: str, images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(name, images, labels, self.classes)


# --------------------------------------------------------------------------------------------------
# Loading


def load_split(
    split: str = "test",
    root: str | Path | None = None,
    dataset: str = "cifar10",
    val_from: str = "test",
    progress: bool = True,
) -> Split:
    """Convenience: `load_cifar(root, dataset).split(split, val_from)`."""
    return load_cifar(root, dataset, progress=progress).split(split, val_from=val_from)


def load_cifar(
    root: str | Path | None = None,
    dataset: str = "cifar10",
    *,
    cache: bool = True,
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> Cifar:
    """Load CIFAR-10/100 from `root` (file or folder; default `GNNRL_DATA` or `../shared/data`)."""
    if dataset not in ("cifar10", "cifar100"):
        raise DataError(f"unknown dataset {dataset!r}; choose cifar10 or cifar100")
    kind, path = find_source(root, dataset)
    cache_file = None
    if cache:
        folder = Path(cache_root) if cache_root is not None else cache_dir()
        path_key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        cache_file = folder / f"{dataset}-{path_key}-{_fingerprint(path)[:16]}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    return _from_arrays(dataset, dict(z), path, kind, True)
            except Exception:  # truncated, zero bytes, bad CRC, foreign: any damage means decode again
                with contextlib.suppress(OSError):  # a read-only cache folder keeps the bad file; we bypass it
                    cache_file.unlink(missing_ok=True)
    arrays = _decode(kind, path, progress)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
    return _from_arrays(dataset, arrays, path, kind, False)


def load_dataset(root: str | Path | None = None, dataset: str = "cifar10", *, progress: bool = True
                 ) -> Cifar | FolderDataset:
    """CIFAR (decoded into memory, see `load_cifar`) or, for dataset 'imagefolder' or a folder with the ImageNet
    layout (train/ and val/), a streamed ImageFolder (`gnnrl.folder`)."""
    from .folder import load_image_folder, streams

    if streams(root, dataset):
        if root is None:
            raise DataError("--dataset imagefolder needs --data ROOT (a folder with train/<class>/ and val/<class>/)")
        return load_image_folder(root)
    return load_cifar(root, dataset, progress=progress)


def find_source(root: str | Path | None, dataset: str) -> tuple[str, Path]:
    """Resolve `root` to (kind, path), kind ∈ {'image-tar', 'python-tar', 'imagefolder', 'python'}."""
    if root is None:
        root = default_data_root()
        if root is None:
            raise DataError(f"no {dataset} data found (no --data, no GNNRL_DATA, no ../shared/data). "
                            f"{HOW_TO_GET_CIFAR}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data path {root} does not exist. {HOW_TO_GET_CIFAR}")
    if root.is_file():
        if not tarfile.is_tarfile(root):
            raise DataError(f"{root} is not a tar archive. {HOW_TO_GET_CIFAR}")
        return ("python-tar" if _tar_has_python_batches(root) else "image-tar"), root
    py_name = "cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python"
    marker = "data_batch_1" if dataset == "cifar10" else "train"
    for d in (root, root / py_name):
        if (d / marker).is_file() and (d / "test_batch" if dataset == "cifar10" else d / "test").is_file():
            return "python", d
    for d in (root, root / dataset):
        if (d / "train").is_dir() and (d / "test").is_dir():
            return "imagefolder", d
    official = "cifar-10-python.tar.gz" if dataset == "cifar10" else "cifar-100-python.tar.gz"
    for t in (root / f"{dataset}-png.tar.gz", root / official):
        if t.is_file():
            return find_source(t, dataset)
    raise DataError(f"found no {dataset} data in {root}. {HOW_TO_GET_CIFAR}")


def _from_arrays(dataset: str, a: dict[str, np.ndarray], path: Path, kind: str, from_cache: bool) -> Cifar:
    return Cifar(
        name=dataset,
        classes=tuple(str(c) for c in a["classes"]),
        train_images=torch.from_numpy(a["train_x"]),
        train_labels=torch.from_numpy(a["train_y"].astype(np.int64)),
        test_images=torch.from_numpy(a["test_x"]),
        test_labels=torch.from_numpy(a["test_y"].astype(np.int64)),
        source=path,
        source_kind=kind,
        from_cache=from_cache,
    )


def _fingerprint(path: Path) -> str:
    """A key that changes when the source changes: sizes + mtimes, plus a content sample of a single file."""
    h = hashlib.sha256(_CACHE_VERSION)
    if path.is_file():
        st = path.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, st.st_size - (1 << 20)))
            h.update(f.read(1 << 20))
    else:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                st = os.stat(p)
                h.update(f"{os.path.relpath(p, path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write the cache and drop older caches of the same source; a read-only cache dir is not fatal."""
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        prefix = cache_file.name.rsplit("-", 1)[0] + "-"
        for stale in cache_file.parent.glob(prefix + "*.tmp*.npz"):  # left by a writer that was killed
            if not _alive(stale.suffixes[-2][4:]):
                stale.unlink(missing_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, cache_file)
        for old in cache_file.parent.glob(prefix + "*.npz"):
            if old != cache_file and ".tmp" not in old.name:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # caching is an optimisation: an unwritable cache folder (or a full disk) costs the next load a decode
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a full disk leaves a partial file: never keep it


def _alive(pid: str) -> bool:
    """Whether process `pid` (text from a temporary file's name) still runs on this machine."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


# --------------------------------------------------------------------------------------------------
# Decoding


def _decode(kind: str, path: Path, progress: bool) -> dict[str, np.ndarray]:
    """Decode a source into {'train_x','train_y','test_x','test_y','classes'} in canonical order."""
    if kind == "python":
        parts = _python_batches((p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file())
    elif kind == "python-tar":
        parts = _python_batches(_tar_files(path, progress, f"Reading {path.name}"))
    elif kind == "image-tar":
        parts = _images_by_split(_tar_files(path, progress, f"Decoding {path.name}"), path)
    else:
        files = sorted(
            p for split in ("train", "test") for p in (path / split).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        folders = [f"{split}/{d.name}/" for split in ("train", "test") for d in (path / split).iterdir() if d.is_dir()]
        parts = _images_by_split(_read_files(files, path, progress, folders), path)
    return _canonical(parts, path)


def _tar_files(path: Path, progress: bool, label: str) -> Iterator[tuple[str, bytes]]:
    """Stream (member name, bytes) of every regular file in a tar, with a progress bar on compressed bytes."""
    size = path.stat().st_size
    try:
        with (open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf,
              _progress(progress, label, size) as tick):
            for member in tf:
                if member.isdir():
                    yield member.name.rstrip("/") + "/", b""  # a class folder, perhaps empty: checked later
                elif member.isfile():
                    f = tf.extractfile(member)
                    if f is not None:
                        yield member.name, f.read()
                        tick(raw.tell())
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}). Re-download it, or point --data elsewhere.") from e


def _read_files(files: list[Path], root: Path, progress: bool, folders: list[str]) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of each file, after the class `folders` (names ending in '/', as a tar lists them)."""
    yield from ((f, b"") for f in folders)
    with _progress(progress, f"Decoding {root}", len(files)) as tick:
        for i, p in enumerate(files):
            yield str(p.relative_to(root)), p.read_bytes()
            tick(i + 1)


def _images_by_split(items: Iterable[tuple[str, bytes]], src: Path) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """Decode image files laid out as …/{train,test}/<class>/<file> into per-split pixel and class lists."""
    from PIL import Image, UnidentifiedImageError

    out: dict[str, tuple[list[np.ndarray], list[str]]] = {"train": ([], []), "test": ([], [])}
    folders: dict[str, set[str]] = {"train": set(), "test": set()}
    for name, data in items:
        parts = Path(name).parts
        if name.endswith("/"):  # a folder: SPLIT/<class>/ declares a class, which must then hold images
            if len(parts) >= 2 and parts[-2] in folders:
                folders[parts[-2]].add(parts[-1])
            continue
        if len(parts) < 3 or parts[-3] not in out or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGB"))
        except UnidentifiedImageError as e:
            raise DataError(f"cannot decode image {name} in {src}: not a readable image (damaged, or another kind "
                            "of file); delete or replace it") from e
        except (OSError, ValueError) as e:
            raise DataError(f"cannot decode image {name} in {src}: {e}; delete or replace it") from e
        out[parts[-3]][0].append(pixels.transpose(2, 0, 1))
        out[parts[-3]][1].append(parts[-2])
    for split, declared in folders.items():
        empty = sorted(declared - set(out[split][1]))
        if empty:
            many = len(empty) > 1
            raise DataError(f"{src}: class folder{'s' if many else ''} {', '.join(empty[:5])} in {split}/ "
                            f"{'hold' if many else 'holds'} no images; remove {'them' if many else 'it'} or add "
                            "images (every class needs images in every split)")
    return out


def _canonical(parts: dict[str, tuple[list[np.ndarray], list[str]]], src: Path) -> dict[str, np.ndarray]:
    """Stack per-split images, map class names to sorted indices, and sort by (label, pixel hash)."""
    for split in ("train", "test"):
        if not parts[split][0]:
            raise DataError(f"{src} has no {split} images (expected {split}/<class>/<image>). {HOW_TO_GET_CIFAR}")
    train, test = set(parts["train"][1]), set(parts["test"][1])
    if train != test:
        odd = ", ".join(f"{c!r} only in {'train' if c in train else 'test'}" for c in sorted(train ^ test)[:5])
        raise DataError(f"{src}: train and test have different classes ({odd}); a model trained on one class set "
                        "cannot be judged on another — give both splits the same class folders")
    classes = sorted(train)
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split in ("train", "test"):
        images, names = parts[split]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise DataError(f"{src}: {split} images differ in size ({sorted(shapes)[:3]}…); resize them to one size")
        x = np.stack(images)
        y = np.array([index[n] for n in names], dtype=np.int64)
        out[f"{split}_x"], out[f"{split}_y"] = _sort_canonical(x, y)
    return out


def _sort_canonical(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by label, then by a pixel hash: identical content gives identical arrays from any format."""
    keys = np.array([int.from_bytes(hashlib.blake2b(im.tobytes(), digest_size=8).digest(), "little") for im in x],
                    dtype=np.uint64)
    order = np.lexsort((keys, y))
    return np.ascontiguousarray(x[order]), y[order]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR python batches (dicts of bytes, lists and numpy arrays) and refuses anything else."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset batch")


def _unpickle_batch(name: str, data: bytes) -> dict[str, object]:
    try:
        d = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"CIFAR batch {name} is corrupt or not a CIFAR batch: {e}") from e
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _python_batches(items: Iterable[tuple[str, bytes]]) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """Read torchvision's cifar-10-batches-py / cifar-100-python files into per-split lists."""
    raw: dict[str, list[dict[str, object]]] = {"train": [], "test": []}
    class_names: list[str] | None = None
    for full, data in sorted(items):
        name = Path(full).name
        if name.startswith("data_batch_") or name == "train":
            raw["train"].append(_unpickle_batch(name, data))
        elif name in ("test_batch", "test"):
            raw["test"].append(_unpickle_batch(name, data))
        elif name in ("batches.meta", "meta"):
            meta = _unpickle_batch(name, data)
            names = meta.get("label_names", meta.get("fine_label_names"))
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[union-attr]
    if class_names is None:
        raise DataError("CIFAR python batches without their meta file (batches.meta / meta)")
    out: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for split, batches in raw.items():
        images: list[np.ndarray] = []
        names: list[str] = []
        for b in batches:
            x = np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = b.get("labels", b.get("fine_labels"))
            images.extend(x)
            names.extend(class_names[int(i)] for i in labels)  # type: ignore[union-attr]
        out[split] = (images, names)
    return out


def _tar_has_python_batches(path: Path) -> bool:
    try:
        with tarfile.open(path, "r|*") as tf:
            for i, member in enumerate(tf):
                if Path(member.name).name in ("data_batch_1", "batches.meta", "meta"):
                    return True
                if i > 20:
                    return False
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}). Re-download it, or point --data elsewhere.") from e
    return False


class _progress:
    """A transient progress bar as a context manager yielding `tick(completed)`."""

    def __init__(self, enabled: bool, label: str, total: float) -> None:
        self.bar = progress_bar(enabled, transient=True)
        self.task = self.bar.add_task(label, total=total, info="")

    def __enter__(self) -> Callable[[float], None]:
        self.bar.start()
        return lambda done: self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def write_python_batches(data: Cifar, folder: str | Path) -> Path:
    """Write `data` in torchvision's cifar-10-batches-py layout (5 train batches + test_batch + batches.meta)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    # The official files are Python-2 pickles whose keys and strings load as `str` under
    # encoding="latin1" (torchvision's reader indexes entry["data"]), so write str, not bytes.
    def dump(name: str, obj: dict[str, object]) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    def batch(x: torch.Tensor, y: torch.Tensor, label: str) -> dict[str, object]:
        return {"batch_label": label, "labels": [int(v) for v in y],
                "data": x.reshape(len(x), -1).numpy(), "filenames": [f"{i}.png" for i in range(len(x))]}

    for i, (xs, ys) in enumerate(zip(data.train_images.chunk(5), data.train_labels.chunk(5), strict=True), 1):
        dump(f"data_batch_{i}", batch(xs, ys, f"training batch {i} of 5"))
    dump("test_batch", batch(data.test_images, data.test_labels, "testing batch 1 of 1"))
    dump("batches.meta", {"label_names": list(data.classes), "num_cases_per_batch": 10000, "num_vis": 3072})
    return folder

