"""Tracing: shapes and costs in node.meta; an untraceable module gets an error that says what to do."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

import gnnrl
from gnnrl import TraceError, channel_groups, create, trace


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent Python control flow: fx cannot trace this
            return y
        return -y


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = Branchy()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_untraceable_submodule_is_kept_whole_with_the_reason() -> None:
    with pytest.warns(UserWarning, match=r"module 'body' \(Branchy\) cannot be traced at .*test_trace.py:22"):
        graph = trace(Outer(), torch.randn(1, 3, 8, 8))
    assert set(graph.untraced) == {"body"}
    assert [n.target for n in graph.nodes if n.op == "call_module"] == ["body", "head"]  # one node, run as it is
    x = torch.randn(2, 3, 8, 8)
    model = Outer().eval()
    with pytest.warns(UserWarning):
        assert torch.equal(trace(model, x).module(x), model(x))
    reasons = [g.reason for g in channel_groups(graph) if not g.prunable]
    assert any("Branchy" in r and "test_trace.py:22" in r and "kept whole" in r for r in reasons), reasons


class OwnBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # in the model's own forward: no submodule to keep whole
            return self.conv(x)
        return -self.conv(x)


def test_python_branch_in_the_models_own_forward_raises_a_clear_trace_error() -> None:
    with pytest.raises(TraceError) as e:
        trace(OwnBranch(), torch.randn(1, 3, 8, 8))
    msg = str(e.value)
    assert "OwnBranch's own forward" in msg and "test_trace.py" in msg and "move it into a submodule" in msg


class Clipped(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.abs().max() > 100:  # data-dependent
            y = y / 2
        return y


def test_untraceable_parts_of_a_network_leave_the_rest_prunable() -> None:
    """A network with one untraceable block prunes exactly everywhere else."""
    from pruning_reference import masked_reference

    from gnnrl.prune import apply_plan, make_plan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Clipped(8, 4),
                          nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2, 1)).eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="cannot be traced"):
        graph = trace(model, x)
    prunable = [g for g in channel_groups(graph) if g.prunable]
    assert [g.members for g in prunable] == [("4",)]  # the block's own input and output channels are kept
    plan = make_plan(graph, {prunable[0].id: 0.5})
    pruned = apply_plan(graph, plan)
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked_reference(graph, plan)(x), atol=1e-5)
    assert pruned.get_submodule("4").out_channels == 3


def test_leaf_module_is_kept_whole_and_pinned() -> None:
    graph = trace(Outer(), torch.randn(1, 3, 8, 8), leaf_modules=[Branchy])
    groups = channel_groups(graph)
    assert not any(g.prunable for g in groups)
    assert any("Branchy is not understood" in g.reason for g in groups)


def test_register_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    trace_module = importlib.import_module("gnnrl.trace")  # the module, not the function gnnrl.trace
    monkeypatch.setattr(trace_module, "LEAF_MODULES", set())
    gnnrl.register_leaf(Branchy)
    assert Branchy in trace_module.LEAF_MODULES
    trace(Outer(), torch.randn(1, 3, 8, 8))  # no error now


def test_shape_pass_records_shapes_and_costs() -> None:
    graph = trace(create("resnet20"), torch.randn(8, 3, 32, 32))
    assert graph.example_input.shape == (1, 3, 32, 32)
    conv1 = next(n for n in graph.nodes if n.target == "conv1")
    assert conv1.meta["shape"] == (1, 16, 32, 32)
    assert conv1.meta["macs"] == 16 * 32 * 32 * 27 and conv1.meta["params"] == 432
    assert sum(n.meta.get("macs", 0) for n in graph.nodes) == gnnrl.count_flops(create("resnet20")).macs


def test_tracing_leaves_the_model_untouched() -> None:
    """The shape pass must not update BatchNorm statistics of a model in train mode, nor change its mode."""
    from gnnrl import create

    model = create("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace(model, torch.randn(4, 3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
