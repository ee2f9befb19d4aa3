"""A user's files are sacred: atomic writes, run folders that are never silently reused, early path checks."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import GnnrlError


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (a kill leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        try:
            write(Path(tmp))
        except OSError as e:  # named by the file the user knows, not by its temporary
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        except Exception as e:
            # torch.save and safetensors report a full disk as their own errors ("unexpected pos", IoError)
            if _disk_full(e, path.parent):
                raise OSError(errno.ENOSPC, "No space left on device", str(path)) from e
            raise
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a result should get the user's usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _disk_full(e: BaseException, folder: Path) -> bool:
    """Whether a writer's failure `e` means the disk under `folder` is full (said in its text, or no space left)."""
    text = f"{e} {e.__cause__ or ''}".lower()
    if "no space left" in text or "os error 28" in text or "errno 28" in text:
        return True
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def torch_save(obj: Any, path: str | Path) -> Path:
    """Atomically `torch.save` a checkpoint (a kill mid-write never leaves the only checkpoint unreadable)."""
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Check a run folder before any slow work: writable, and not a finished or foreign run unless asked.

    A non-empty folder is refused unless `resume` (continue it) or `overwrite` (start over in it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GnnrlError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        raise GnnrlError(f"--out {out} already holds a run; pass --resume to continue it, --overwrite to start over, "
                         "or choose another --out")
    _check_creatable(out)
    out.mkdir(parents=True, exist_ok=True)
    lock_run_dir(out)
    if resume:
        remove_stale_temporaries(out)  # ours alone now: any temporary file in it is from a writer that died
    return out


def claim_run_dir(out: str | Path | None, what: str, markers: tuple[str, ...], resume: bool, overwrite: bool,
                  lock: bool = True) -> Path | None:
    """The run folder of an API call (None: no files), refused when it already holds a `what` (any of `markers`)
    unless `resume` or `overwrite`; made and locked for this process (`lock`: False on a torchrun rank that writes
    nothing). The one check search and train/fine-tune make, and so every compress stage that runs them (the CLI
    checked the whole folder before any slow work with `prepare_run_dir`)."""
    if out is None:
        return None
    out = Path(out)
    if not resume and not overwrite and any((out / m).exists() for m in markers):
        raise GnnrlError(f"{out} already holds a {what}; resume it (--resume), start over (--overwrite), or choose "
                         "another folder")
    if lock:
        out.mkdir(parents=True, exist_ok=True)
        lock_run_dir(out)  # one writer per folder, from the API as from the CLI
    return out


_HELD: dict[Path, int] = {}
"""run folders this process holds (resolved path → open descriptor with the lock)"""


def lock_run_dir(out: str | Path) -> None:
    """Hold an exclusive lock on the folder `out` for this process's life; another process is refused in one line.

    The lock is the kernel's (`flock` on the folder itself): it leaves no file behind and dies with its process, so a
    killed run never leaves a stale lock, and a second process can never share the folder.
    """
    out = Path(out).resolve()
    if out in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the folder checks above still apply
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise GnnrlError(f"--out {out} is in use by another gnnrl process (a run folder has one writer at a time); "
                         "wait for it to finish, stop it, or choose another --out") from e
    _HELD[out] = fd


def release_run_dir(out: str | Path) -> None:
    """Let another process use the run folder `out` (a no-op if this process does not hold it)."""
    fd = _HELD.pop(Path(out).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


_TEMPORARY = re.compile(r"^\.(.+)\.[a-z0-9_]{8}(\.[^.]+)?$")
"""`atomic_write`'s temporary names: .TARGET.XXXXXXXX plus TARGET's suffix"""


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete `atomic_write` temporaries under `folder` (call only while holding its lock); returns what went."""
    gone = []
    for path in Path(folder).rglob(".*"):
        m = _TEMPORARY.match(path.name)
        if m and path.is_file() and (m.group(2) or "") == Path(m.group(1)).suffix:
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def check_writable(path: str | Path) -> Path:
    """Fail now, with one line, if the file `path` cannot be created (checked before the slow work that writes it)."""
    path = Path(path)
    if path.is_dir():
        raise GnnrlError(f"{path} is a folder; give a file name")
    _check_creatable(path.parent)
    return path


def _check_creatable(folder: Path) -> None:
    """The folder exists or can be made: no file in the way, and its nearest existing ancestor is writable."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise GnnrlError(f"cannot create {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GnnrlError(f"cannot write in {existing} (permission denied); choose another output path")
    try:  # the permission bits do not tell everything (root, a read-only mount, /proc): create a file and see
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gnnrl-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GnnrlError(f"cannot write in {existing} ({e.strerror or e}); choose another output path") from e
