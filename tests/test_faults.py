"""Faults that used to give silently wrong results: non-finite weights, half-read policies, shared run folders,
mismatched data, damaged caches and logs, signals. Each asserts the one-line message, the exit code where a
command is involved, and that files written before are intact.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import gnnrl
from gnnrl import report as report_mod
from gnnrl.cli import main
from gnnrl.data import DataError, balanced_sample, load_cifar
from gnnrl.errors import GnnrlError, WeightsError
from gnnrl.files import prepare_run_dir, release_run_dir
from gnnrl.finetune import finetune, finetune_config
from gnnrl.paths import default_weights
from gnnrl.policy import PolicyError, apply_policy, policy_for_ratios
from gnnrl.prune import PruneError

SRC = Path(__file__).resolve().parents[1] / "src"


def r20() -> torch.nn.Module:
    return gnnrl.create("resnet20", weights=default_weights("resnet20"))


def _poison(path: Path, key: str | None = None) -> Path:
    """Rewrite a safetensors file with one NaN in `key` (default: its first floating tensor), metadata kept."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    key = key or next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(path), metadata=meta)
    return path


# ------------------------------------------------------------------------------------------------ non-finite

def test_non_finite_weights_are_refused_on_load(tmp_path: Path) -> None:
    state = dict(r20().state_dict())
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].clone()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save({"state_dict": state}, tmp_path / "inf.pth")
    with pytest.raises(WeightsError, match=r"non-finite values \(NaN or inf\) in layer1.0.conv1.weight"):
        gnnrl.create("resnet20", weights=tmp_path / "inf.pth")

    pruned = gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.3)
    gnnrl.save(pruned, tmp_path / "p.safetensors")
    gnnrl.load(tmp_path / "p.safetensors")  # the clean file loads
    _poison(tmp_path / "p.safetensors")
    with pytest.raises(WeightsError, match="non-finite"):
        gnnrl.load(tmp_path / "p.safetensors")


def test_eval_of_a_nan_file_exits_2_instead_of_reporting_chance(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    save_file({k: v.contiguous() for k, v in r20().state_dict().items()}, str(tmp_path / "w.safetensors"))
    _poison(tmp_path / "w.safetensors", "linear.weight")
    assert main(["eval", "--model", "resnet20", "--weights", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "linear.weight" in err and "non-finite" in err and "Traceback" not in err


def test_non_finite_outputs_stop_an_evaluation(cifar: gnnrl.data.Cifar) -> None:
    model = r20()
    with torch.no_grad():
        model.bn1.running_var.fill_(float("nan"))  # damaged statistics: argmax would read as class 0, i.e. 10 %
    with pytest.raises(GnnrlError, match="not finite"):
        gnnrl.evaluate(model, cifar.split("val").subset(64))


def test_a_diverging_fine_tune_stops_before_writing_nan_weights(cifar: gnnrl.data.Cifar, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def student() -> torch.nn.Module:
        return gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.3).module

    config = finetune_config(epochs=2, subset=200, lr=0.05)
    teacher = r20()
    finetune(student(), cifar, config, teacher=teacher, out_dir=tmp_path / "ft", progress=False,
             on_epoch_end=lambda r: True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ft").iterdir()}
    real_step = torch.optim.SGD.step

    def diverge(self: torch.optim.SGD, *a: object, **k: object) -> object:  # the weights blow up in epoch 2
        result = real_step(self, *a, **k)
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", diverge)
    with pytest.raises(GnnrlError, match=r"loss became nan in epoch 2.*still holds the last good epoch"):
        finetune(student(), cifar, config, teacher=teacher, out_dir=tmp_path / "ft", resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ft").iterdir()} == before  # nothing NaN was written


# ------------------------------------------------------------------------------------------------ policies

@pytest.fixture(scope="module")
def policy() -> dict:
    model = r20().eval()
    graph = gnnrl.trace(model, torch.zeros(1, 3, 32, 32))
    return policy_for_ratios(graph, model, gnnrl.ratios_for_budget(graph, 0.6))


def _edited(policy: dict, edit: object) -> dict:
    p = json.loads(json.dumps(policy))
    edit(p)  # type: ignore[operator]
    return p


def _first(p: dict) -> str:
    return next(iter(p["removed"]))


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["ratios"].update({_first(p): 0.9}), "'ratios' and 'removed' disagree"),
    (lambda p: p["ratios"].update({_first(p): 1.5}), "not a number in [0, 1)"),
    (lambda p: p["ratios"].update({_first(p): -0.2}), "not a number in [0, 1)"),
    (lambda p: p["removed"].update({_first(p): 3.7}), "whole numbers"),
    (lambda p: p["removed"].update({_first(p): "5"}), "whole numbers"),
    (lambda p: p["removed"].update({_first(p): None}), "whole numbers"),
    (lambda p: p["removed"].update({_first(p): "abc"}), "whole numbers"),
    (lambda p: p["removed"].update({"x1": 2}), "group id 'x1'"),
    (lambda p: p["removed"].update({_first(p): -1}) or p.pop("ratios"), "negative count"),
    (lambda p: p.pop("weights_sha256"), "lacks weights_sha256"),
    (lambda p: p.pop("model"), "lacks model"),
    (lambda p: p.update({"model": None}), "not built by gnnrl.create"),
])
def test_a_hand_edited_policy_is_read_whole_or_refused(policy: dict, edit: object, message: str) -> None:
    with pytest.raises(PolicyError, match=None) as e:
        apply_policy(r20(), _edited(policy, edit))
    assert message in str(e.value), str(e.value)


def test_editing_removed_alone_is_replayed(policy: dict) -> None:
    g = _first(policy)
    p = _edited(policy, lambda p: (p["removed"].update({g: policy["removed"][g] + 1}), p.pop("ratios")))
    base = apply_policy(r20(), policy).cost.macs
    assert apply_policy(r20(), p).cost.macs < base  # the edit is what was replayed


def test_a_policy_from_an_unfinished_search_says_so(policy: dict) -> None:
    p = _edited(policy, lambda p: p.update({"episodes_run": 1, "config": {"episodes": 3, "env": {}}}))
    with pytest.warns(UserWarning, match="stopped after 1 of 3 episodes"):
        apply_policy(r20(), p)


def test_the_cli_prints_gnnrl_warnings_as_one_line(policy: dict, tmp_path: Path) -> None:
    p = _edited(policy, lambda p: p.update({"episodes_run": 1, "config": {"episodes": 3, "env": {}}}))
    (tmp_path / "policy.json").write_text(json.dumps(p))
    res = subprocess.run([sys.executable, "-m", "gnnrl.cli", "prune", "--model", "resnet20", "--policy",
                          str(tmp_path / "policy.json"), "--out", str(tmp_path / "p.safetensors")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    warning = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1 and warning[0].startswith("gnnrl: warning: this policy comes from a search that "
                                                       "stopped after 1 of 3 episodes"), res.stderr


# ------------------------------------------------------------------------------------------------ run folders

_HOLD = """
import sys, time
sys.path.insert(0, {src!r})
from gnnrl.files import prepare_run_dir
prepare_run_dir(sys.argv[1], resume=True)
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_folder_has_one_writer_and_a_dead_one_leaves_no_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD.format(src=str(SRC)), str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(GnnrlError, match="in use by another gnnrl process"):
            prepare_run_dir(out, resume=True)
        assert main(["search", "--model", "resnet20", "--out", str(out), "--resume", "--quiet"]) == 2
    finally:
        holder.kill()  # SIGKILL: no chance to clean up, as after a crash
        holder.wait()
    prepare_run_dir(out, resume=True)  # the kernel dropped the dead process's lock
    release_run_dir(out)


def test_resume_removes_temporaries_a_killed_writer_left(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "search").mkdir(parents=True)
    (out / "run.json").write_text("{}")
    stale = [out / ".run.json.k3n_ufnr.json", out / "search" / ".checkpoint.pt.abcdefgh.pt"]
    kept = [out / ".hidden", out / "search" / ".notes.txt.keepme"]
    for p in stale + kept:
        p.write_text("x")
    prepare_run_dir(out, resume=True)
    release_run_dir(out)
    assert [p.exists() for p in stale] == [False, False] and all(p.exists() for p in kept)
    assert (out / "run.json").read_text() == "{}"


def test_sigterm_ends_in_one_line_and_exit_143(tmp_path: Path) -> None:
    code = ("import os, signal, sys, time\nimport gnnrl.cli as c\n"
            "c.evaluation.cmd_models = lambda a: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(60))\n"
            "sys.exit(c.main(['models']))\n")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 143 and time.perf_counter() - t < 60
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("terminated (SIGTERM)"), res.stderr


def test_more_threads_than_cores_is_warned(capsys: pytest.CaptureFixture[str]) -> None:
    from gnnrl.evaluate import available_cores

    assert main(["--threads", str(available_cores() + 1), "models"]) == 0
    assert "gnnrl: warning: --threads" in capsys.readouterr().err
    os.environ.pop("GNNRL_THREADS", None)


# ------------------------------------------------------------------------------------------------ data

def _png(size: int = 8, seed: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """split → class → image count (0: an empty class folder)."""
    for split, classes in layout.items():
        for c, n in classes.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / c / f"{i}.png").write_bytes(_png(seed=hash((split, c, i)) % 1000))
    return root


def test_splits_must_share_their_classes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1, "c": 1}})
    with pytest.raises(DataError, match="'c' only in test"):
        load_cifar(root, cache=False, progress=False)


def test_empty_class_folders_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"train": {"a": 2, "b": 0}, "test": {"a": 1, "b": 1}})
    with pytest.raises(DataError, match=r"class folder b in train/ holds no images"):
        load_cifar(root, cache=False, progress=False)
    import tarfile

    with tarfile.open(tmp_path / "t.tar", "w") as tf:
        tf.add(root, arcname="cifar10")
    with pytest.raises(DataError, match="b in train/ holds no images"):
        load_cifar(tmp_path / "t.tar", cache=False, progress=False)


def test_a_corrupt_image_is_named_not_a_bytesio(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (root / "train" / "b" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as e:
        load_cifar(root, cache=False, progress=False)
    assert "train/b/1.png" in str(e.value) and "BytesIO" not in str(e.value)


def test_imagefolder_checks_and_names_a_corrupt_image_in_one_line(tmp_path: Path) -> None:
    from gnnrl.folder import load_image_folder

    root = _tree(tmp_path / "inet", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 0}})
    with pytest.raises(DataError, match="b has no images there"):
        load_image_folder(root)
    (root / "val" / "b" / "0.png").write_bytes(_png())
    (root / "val" / "a" / "0.png").write_bytes(b"not a png")
    data = load_image_folder(root, image_size=8, resize=8, workers=1)
    with pytest.raises(DataError) as e:
        list(data.split("test").batches(2))
    assert str(e.value).startswith("cannot decode image") and "val/a/0.png" in str(e.value)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_balanced_draw_names_the_class_and_the_limit() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(DataError, match=r"class 'cat' has only 1 image in split 'val'.*ask for at most 3"):
        balanced_sample(labels, 6, 0, ("ant", "bee", "cat"), "split 'val'")


@pytest.mark.parametrize("damage", ["zero", "truncated", "crc"])
def test_a_damaged_data_cache_heals_itself(damage: str, tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    cache = tmp_path / "cache"
    first = load_cifar(root, cache_root=cache, progress=False)
    (file,) = cache.glob("*.npz")
    raw = bytearray(file.read_bytes())
    if damage == "zero":
        raw = bytearray()
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 3] ^= 0xFF  # one flipped byte inside the arrays: the zip's CRC catches it
    file.write_bytes(bytes(raw))
    again = load_cifar(root, cache_root=cache, progress=False)
    assert not again.from_cache and torch.equal(again.train_images, first.train_images)
    assert load_cifar(root, cache_root=cache, progress=False).from_cache  # rebuilt

    file.write_bytes(b"")
    cache.chmod(0o555)  # a read-only cache folder: decode anyway, never fatal
    try:
        assert torch.equal(load_cifar(root, cache_root=cache, progress=False).train_images, first.train_images)
    finally:
        cache.chmod(0o755)


def test_a_full_disk_under_the_data_cache_leaves_no_partial_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{'cifar10'}-deadbeef-0123.tmp999999999.npz").write_bytes(b"left by a killed writer")

    def full(path: Path, **arrays: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    data = load_cifar(root, cache_root=cache, progress=False)
    assert data.num_classes == 2 and list(cache.iterdir()) == [cache / "cifar10-deadbeef-0123.tmp999999999.npz"]
    monkeypatch.undo()
    load_cifar(root, cache_root=cache, progress=False)
    assert [p.name.endswith(".tmp999999999.npz") for p in cache.iterdir()].count(True) <= 1


# ------------------------------------------------------------------------------------------------ logs, metadata

def test_a_truncated_log_is_reported_not_a_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": {"name": "resnet20"}, "budget": 0.5, "metric": "macs"}))
    (run / "search" / "policy.json").write_text(json.dumps({"episodes_run": 4, "val_top1": 80.0, "episode": 3,
                                                                     "uniform_val_top1": 75.0, "macs_ratio": 0.5}))
    lines = [json.dumps({"episode": i, "val_top1": 70.0 + i, "macs_ratio": 0.5}) for i in range(4)]
    (run / "search" / "history.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:9])
    rep = report_mod.collect(run)
    assert rep["warnings"] == ["search/history.jsonl: line 4 is damaged; shown are the 3 records before it"]
    (run / "search" / "history.jsonl").write_text("\n".join(lines[:3]) + "\n")
    assert "holds 3 of the 4 records" in report_mod.collect(run)["warnings"][0]
    assert main(["report", str(run)]) == 0
    assert "> ⚠ search/history.jsonl holds 3 of the 4" in (run / "report.md").read_text()


@pytest.mark.parametrize("edit, error, message", [
    (lambda m: m.pop("rounds"), WeightsError, "damaged gnnrl metadata"),
    (lambda m: m.update({"input_shape": "1x3x32x32"}), WeightsError, "damaged gnnrl metadata"),
    (lambda m: m["rounds"][0].append(10 ** 6), PruneError, "keeps channel units [1000000]"),
])
def test_damaged_pruned_file_metadata(edit: object, error: type, message: str, tmp_path: Path) -> None:
    from safetensors import safe_open

    path = tmp_path / "p.safetensors"
    gnnrl.save(gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.3), path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["gnnrl"])
    edit(meta)  # type: ignore[operator]
    save_file(load_file(str(path)), str(path), metadata={"gnnrl": json.dumps(meta)})
    with pytest.raises(error) as e:
        gnnrl.load(path)
    assert message in str(e.value)


def test_create_says_where_pretrained_weights_come_from() -> None:
    model = gnnrl.create("resnet20", weights="pretrained")
    assert torch.equal(model.linear.weight, r20().linear.weight)
    with pytest.raises(gnnrl.errors.ModelError, match="no pre-trained checkpoint"):
        gnnrl.create("vgg16", weights="pretrained")



@pytest.mark.parametrize("failure", [RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0"),
                                     RuntimeError("IoError(Os { code: 28, kind: StorageFull, message: \"No space left "
                                                  "on device\" })"),
                                     OSError(28, "No space left on device")])
def test_a_full_disk_names_the_file_and_keeps_the_old_one(failure: Exception, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    from collections import namedtuple

    from gnnrl.files import atomic_write, write_text

    target = tmp_path / "checkpoint.pt"
    write_text(target, "the last good checkpoint")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 4096))

    def writer(p: Path) -> None:
        p.write_bytes(b"partial")
        raise failure

    with pytest.raises(OSError) as e:
        atomic_write(target, writer)
    assert e.value.errno == 28 and e.value.filename == str(target)
    assert target.read_text() == "the last good checkpoint" and sorted(tmp_path.iterdir()) == [target]
    monkeypatch.setattr(gnnrl.cli.evaluation, "cmd_models", lambda a: atomic_write(target, writer))
    assert main(["models"]) == 1
    assert capsys.readouterr().err.strip() == f"gnnrl: error: No space left on device ({target})"


def test_export_and_eval_accept_a_pruned_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gnnrl.saving import is_pruned_file

    pruned = gnnrl.prune(r20(), torch.zeros(1, 3, 32, 32), ratios=0.4)
    gnnrl.save(pruned, tmp_path / "p.safetensors")
    assert is_pruned_file(tmp_path / "p.safetensors") and not is_pruned_file(default_weights("resnet20"))
    assert main(["export", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "p.onnx")]) == 0
    assert "ONNX Runtime vs PyTorch max |difference|" in capsys.readouterr().out and (tmp_path / "p.onnx").is_file()
    assert main(["export", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "p.onnx")]) == 2  # kept
    for size in ("-3", "0"):
        assert main(["export", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "q.onnx"),
                     "--input-size", size]) == 2
        assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "q.onnx").exists()
    assert main(["eval", "--model", "resnet20", "--weights", str(tmp_path / "p.safetensors"), "--split", "val",
                 "--json", str(tmp_path / "e.json")]) == 0
    row = json.loads((tmp_path / "e.json").read_text())
    assert row["macs"] == pruned.cost.macs and row["total"] == 5000
