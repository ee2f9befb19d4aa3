"""Evaluation speed on CIFAR-10 test (10k): plain eager vs folded-BN + channels-last, by batch size.

All variants run interleaved in one process on the same machine, so the ratios are meaningful even on
noisy machines; absolute seconds are this run's. Writes benchmarks/results/eval_speed.json and the
"Evaluation speed" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/eval_speed.py [--model resnet56] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from kit import (
    ROOT,
    write_section,
)

import gnnrl
from gnnrl.data import load_cifar
from gnnrl.evaluate import available_cores, inference_copy, use_all_cores
from gnnrl.paths import default_weights


def timed(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int) -> tuple[float, int]:
    start, correct = time.perf_counter(), 0
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            correct += int((model(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum())
    return time.perf_counter() - start, correct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    use_all_cores()
    t = time.perf_counter()
    data = load_cifar(progress=False)
    load_s = time.perf_counter() - t
    test = data.split("test")
    x, y = test.normalized, test.labels
    xc = x.contiguous(memory_format=torch.channels_last)
    plain = gnnrl.create(args.model, weights=default_weights(args.model)).eval()
    fast = inference_copy(plain, x[:1])
    variants = [("plain", plain, x, bs) for bs in (32, 128, 512)]
    variants += [("fused+cl+inplace", fast, xc, bs) for bs in (16, 32, 64, 128)]
    timed(fast, xc[:640], y[:640], 32)  # warm-up
    runs: dict[str, list[float]] = {}
    correct: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, model, inp, bs in variants:
            secs, c = timed(model, inp, y, bs)
            runs.setdefault(f"{name} bs{bs}", []).append(round(secs, 2))
            correct[f"{name} bs{bs}"] = c
    best = {k: min(v) for k, v in runs.items()}
    ref = best["plain bs128"]
    result = {
        "model": args.model, "images": len(x), "cache_load_s": round(load_s, 2), "from_cache": data.from_cache,
        "threads": torch.get_num_threads(), "cores": available_cores(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(), "seconds": runs, "correct": correct,
        "speedup_vs_plain_bs128": {k: round(ref / v, 2) for k, v in best.items()},
    }
    out = ROOT / "benchmarks" / "results" / "eval_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"## Evaluation speed ({args.model}, CIFAR-10 test, {len(x)} images)", "",
             f"`python benchmarks/eval_speed.py --model {args.model}` — {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; dataset load from cache {load_s:.2f} s. "
             f"Best of {args.repeats} interleaved runs.", "",
             "| variant | seconds (runs) | correct | speed-up vs plain bs128 |", "|---|---|---|---|"]
    for k, v in runs.items():
        lines.append(f"| {k} | {min(v):.2f} ({', '.join(map(str, v))}) | {correct[k]} | "
                     f"{result['speedup_vs_plain_bs128'][k]:.2f}× |")
    write_section("Evaluation speed", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
