"""A tiny `gnnrl compress` run in its own process, so that tests can `kill -9` it and resume it.

    python tests/compress_child.py OUT [--resume]
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from gnnrl import create, load_cifar
from gnnrl.agent import DDPGConfig
from gnnrl.compress import CompressConfig, compress
from gnnrl.env import EnvConfig
from gnnrl.finetune import finetune_config
from gnnrl.paths import default_weights
from gnnrl.search import SearchConfig

TINY = CompressConfig(
    search=SearchConfig(episodes=6, warmup=3, val_size=200, env=EnvConfig(bn_recal=64, max_steps=3),
                        agent=DDPGConfig(channels=16, hidden=32, batch_size=8)),
    finetune=finetune_config(epochs=4, subset=640), latency_batches=(1, 4), latency_rounds=3, eval_size=200,
    finalists=2, finalist_steps=8, finalist_batch=16)


def main() -> None:
    torch.set_num_threads(1)  # the same arithmetic in every process: results are compared bit for bit
    out, resume = sys.argv[1], "--resume" in sys.argv
    model = create("resnet20", weights=default_weights("resnet20"))
    config = replace(TINY, search=replace(TINY.search, seed=int(sys.argv[sys.argv.index("--seed") + 1]))) \
        if "--seed" in sys.argv else TINY
    compress(model, load_cifar(progress=False), out, config, resume=resume, progress=False)


if __name__ == "__main__":
    main()
