"""Evaluation reproduces the published accuracies of the shared weights exactly."""

from __future__ import annotations

import operator
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gnnrl import create, evaluate
from gnnrl.data import Cifar
from gnnrl.evaluate import inference_copy

# Top-1 on the 10k CIFAR-10 test set, as published for these checkpoints (and in the paper's Table 1).
PUBLISHED = {"resnet20": 9173, "resnet32": 9263, "resnet44": 9310, "resnet56": 9339}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_shared_weights_reproduce_published_accuracy(name: str, cifar: Cifar, weights: Callable[[str], Path]) -> None:
    result = evaluate(create(name, weights=weights(name)), cifar.split("test"))
    assert (result.correct, result.total) == (PUBLISHED[name], 10000)


def test_fast_path_matches_the_plain_module(cifar: Cifar, weights: Callable[[str], Path]) -> None:
    model = create("resnet20", weights=weights("resnet20"))
    val = cifar.split("val")
    fast, plain = evaluate(model, val), evaluate(model, val, fast=False, batch_size=500)
    assert fast.correct == plain.correct
    x = val.normalized[:64]
    copy = inference_copy(model, x)
    in_place = [n for n in copy.graph.nodes if n.target is operator.iadd or n.kwargs.get("inplace")]
    assert len(in_place) >= 9 + 19, "every residual add and every ReLU of ResNet-20 runs in place"
    x_before = x.clone()
    with torch.inference_mode():
        ref = model.eval()(x)
        out = copy(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-4)
    assert torch.equal(x, x_before), "the input is never updated in place"


def test_evaluate_leaves_the_model_as_it_was(cifar: Cifar) -> None:
    model = create("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate(model, cifar.split("val").subset(64))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
