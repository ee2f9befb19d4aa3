"""The op registry: layers it newly prunes (exactly), a custom layer taught through `register_op`, the README
example, and where op knowledge lives."""

from __future__ import annotations

import ast
import copy
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pruning_reference import check_exact, masked_reference
from torch import nn

import gnnrl
from gnnrl import channel_groups, cost_after, count_flops, trace
from gnnrl.export import export_onnx
from gnnrl.groups import analyze, min_cost_assignment
from gnnrl.ops import MODULE_OPS, creates, module_op
from gnnrl.prune import apply_plan, make_plan
from gnnrl.trace import LEAF_MODULES

ROOT = Path(__file__).resolve().parents[1]


def _randomise(model: nn.Module) -> nn.Module:
    """Non-trivial per-channel parameters, so that a wrongly kept or dropped channel changes the output."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.GroupNorm, nn.InstanceNorm2d, nn.PReLU)):
            for p in m.parameters():
                p.data.uniform_(0.2, 1.5, generator=g)
    return model


class GroupNormNet(nn.Module):  # GN with 4 and 2 groups, a residual add across two GN outputs
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16))
        self.mid = nn.Sequential(nn.Conv2d(16, 12, 1), nn.GroupNorm(2, 12), nn.ReLU())
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.mid(F.relu(x + self.block(x))))


def instance_norm_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.InstanceNorm2d(16, affine=True), nn.ReLU(),
                         nn.Conv2d(16, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def prelu_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.PReLU(16), nn.Conv2d(16, 8, 1), nn.PReLU(),
                         nn.Conv2d(8, 4, 1))


def conv_transpose_net() -> nn.Module:  # a decoder: downsample, then upsample with transposed convs
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.ConvTranspose2d(16, 12, 2, stride=2), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.ConvTranspose2d(12, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 4, 1))


def video_net() -> nn.Module:  # 3-D convolutions and BatchNorm3d, pooled into a classifier
    return nn.Sequential(nn.Conv3d(3, 16, 3, padding=1), nn.BatchNorm3d(16), nn.ReLU(), nn.MaxPool3d(2),
                         nn.Conv3d(16, 12, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(12), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(12, 5))


@pytest.mark.parametrize("make", [GroupNormNet, instance_norm_net, prelu_net, conv_transpose_net],
                         ids=["groupnorm", "instancenorm", "prelu", "convtranspose"])
def test_newly_supported_layers_prune_exactly(make) -> None:  # type: ignore[no-untyped-def]
    model = _randomise(make())
    assert [g for g in channel_groups(trace(model, torch.randn(1, 3, 16, 16))) if g.prunable]
    check_exact(model, side=16)


def test_3d_convolutions_prune_exactly() -> None:
    check_exact(video_net(), input_shape=(2, 3, 4, 16, 16))


class _StdConv(nn.Conv2d):
    """A weight-standardised conv (BiT, NF-ResNet): a Conv2d subclass whose `forward` computes something else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_subclasses_of_registered_layers() -> None:
    """A subclass that keeps its base's forward is the same op (torchvision's Conv3DSimple in r3d_18 prunes
    exactly); a weight-standardised conv overrides forward and does not prune like a conv: pinned, still costed."""
    tv = pytest.importorskip("torchvision")
    r3d = tv.models.video.r3d_18(num_classes=10)
    assert "Conv3DSimple" in {type(m).__name__ for m in r3d.modules()}
    check_exact(r3d, input_shape=(2, 3, 4, 16, 16))
    net = nn.Sequential(_StdConv(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    graph = trace(net, torch.randn(1, 3, 16, 16))
    groups = channel_groups(graph)
    assert [g.members for g in groups if g.prunable] == [("3",)]  # the standardised conv's channels: pinned
    assert any("_StdConv overrides Conv2d.forward and does not prune like it" in g.reason for g in groups)
    assert count_flops(net, (1, 3, 16, 16)).macs == (8 * 27 + 8 * 72) * 256 + 4 * 8 * 256


def _timm_std_net() -> nn.Module:
    """NF-ResNet / NFNet / BiT convs in small: plain, scaled, and scaled with input-dependent 'same' padding."""
    layers = pytest.importorskip("timm.layers")
    return nn.Sequential(layers.StdConv2d(3, 8, 3), nn.ReLU(), layers.ScaledStdConv2d(8, 12, 3),
                         nn.SiLU(), layers.ScaledStdConv2dSame(12, 10, 3, stride=2), nn.ReLU(),
                         layers.ScaledStdConv2d(10, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3)).eval()


def test_timm_weight_standardised_convs_are_folded_when_cut(tmp_path: Path) -> None:
    """timm's weight-standardised convs prune exactly (in float64 to the last digits): each cut one becomes the
    plain conv it computes, Conv2dSame where it pads by the input; the cut network exports and reloads."""
    torch.manual_seed(0)
    net = _timm_std_net()
    check_exact(net, side=15, seed=3)  # an odd side: the dynamic 'same' padding is asymmetric there
    x = torch.randn(2, 3, 15, 15, dtype=torch.float64)
    wide = copy.deepcopy(net).double()
    graph = trace(wide, x)
    assert sum(g.prunable for g in channel_groups(graph)) == 4
    plan = make_plan(graph, {g.id: 0.4 for g in channel_groups(graph) if g.prunable})
    pruned = apply_plan(graph, plan)
    with torch.no_grad():
        assert (pruned(x) - masked_reference(graph, plan)(x)).abs().max() < 1e-12
    kinds = [type(m).__name__ for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert kinds == ["Conv2d", "Conv2d", "Conv2dSame", "Conv2d"]
    assert not any("gain" in name for name, _ in pruned.named_parameters())
    small = gnnrl.prune(net, x.float(), 0.4)
    assert export_onnx(small.module, tmp_path / "m.onnx", x.float()).max_abs_diff < 1e-5
    gnnrl.save(small, tmp_path / "m.safetensors")
    with torch.no_grad():
        again = gnnrl.load(tmp_path / "m.safetensors", model=_timm_std_net())
        assert torch.equal(again.eval()(x.float()), small.module.eval()(x.float()))


class _BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d in small: a BatchNorm2d subclass whose own forward calls F.batch_norm, then an act."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum or 0.0, self.eps)
        return F.silu(x)


class _MixingNorm(nn.BatchNorm2d):
    """A BatchNorm2d subclass whose forward mixes channels: it must not be cut like a BatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x.mean(1, keepdim=True)


class _CastLinear(nn.Linear):
    """timm's Linear: an nn.Linear subclass whose forward only casts the weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _override_net(norm: type[nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), _CastLinear(12, 6), nn.ReLU(),
                         nn.Linear(6, 3))


def test_subclasses_that_override_forward_are_checked_not_trusted() -> None:
    """A norm + activation subclass prunes exactly as a BatchNorm (checked on the layer), and so does a Linear whose
    forward only casts; one whose forward mixes channels is pinned, with the reason."""
    fused = _override_net(_BatchNormAct)
    assert {g.members[0] for g in channel_groups(trace(fused, torch.randn(1, 3, 8, 8))) if g.prunable} == \
        {"0", "2", "7"}
    check_exact(fused, side=8)
    wide = trace(copy.deepcopy(fused).double(), torch.randn(1, 3, 8, 8, dtype=torch.float64))  # checked in float64
    assert {g.members[0] for g in channel_groups(wide) if g.prunable} == {"0", "2", "7"}
    mixing = channel_groups(trace(_override_net(_MixingNorm), torch.randn(1, 3, 8, 8)))
    pinned = next(g for g in mixing if "0" in g.members)
    assert not pinned.prunable and "_MixingNorm overrides BatchNorm2d.forward and does not prune like it" in \
        pinned.reason
    # in training mode the fused norm still uses (and updates) its own statistics: it was kept whole, not baked
    pruned = gnnrl.prune(fused, torch.zeros(1, 3, 8, 8), ratios=0.5).module.train()
    norm = next(m for m in pruned.modules() if isinstance(m, _BatchNormAct))
    before = norm.running_mean.clone()
    pruned(torch.randn(4, 3, 8, 8))
    assert norm.running_mean.shape == (4,) and not torch.equal(norm.running_mean, before)


class _SelectiveKernel(nn.Module):
    """timm's selective-kernel block in small: two paths stacked, summed, and re-weighted per path by a softmax
    over the path dimension; the head ends in a softmax and a spatial-attention mean over channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.p0 = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.p1 = nn.Sequential(nn.Conv2d(8, 12, 5, padding=2), nn.BatchNorm2d(12), nn.ReLU())
        self.reduce, self.select = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 24, 1)
        self.head = nn.Conv2d(12, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        paths = torch.stack([self.p0(x), self.p1(x)], 1)
        a = self.select(torch.relu(self.reduce(paths.sum(1).mean((2, 3), keepdim=True))))
        b, c, h, w = a.shape
        a = torch.softmax(a.view(b, 2, c // 2, h, w), dim=1)
        return torch.softmax(self.head((paths * a).sum(1)), 1) + x.mean(1, keepdim=True)


def test_split_attention_couples_its_paths_and_prunes_exactly() -> None:
    """A sum and a softmax over a dimension that holds channels while the result still does (the paths) make
    those channels one unit; reducing or normalising over the only channel dimension pins, with the reason."""
    groups = channel_groups(trace(_SelectiveKernel().eval(), torch.randn(1, 3, 8, 8)))
    by_member = {m: g for g in groups for m in g.members}
    assert by_member["p0.0"] is by_member["p1.0"] is by_member["select"] and by_member["p0.0"].prunable
    assert by_member["p0.0"].size == 12  # channel c of both paths and both of its path weights: one unit
    assert not by_member["stem"].prunable and "mean reduces across channels" in by_member["stem"].reason
    assert not by_member["head"].prunable and "softmax normalises across channels" in by_member["head"].reason
    for seed in range(3):
        check_exact(_SelectiveKernel(), side=8, seed=seed)


class _FunctionalBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, 3, 3) * 0.2)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, padding=1, groups=self.groups))


class _FunctionalNet(nn.Module):
    """Convs and a linear written functionally from the model's own parameters (and a blur from a buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.3)
        self.block, self.dw = _FunctionalBlock(8, 12), _FunctionalBlock(12, 12, groups=12)
        self.register_buffer("blur", torch.full((12, 1, 3, 3), 1 / 9))
        self.fc_w, self.fc_b = nn.Parameter(torch.randn(5, 12) * 0.3), nn.Parameter(torch.zeros(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.conv2d(x, self.w0, stride=1, padding=1))
        x = F.conv2d(self.dw(self.block(x)), self.blur, padding=1, groups=12)
        return F.linear(x.mean((2, 3)), self.fc_w, self.fc_b)


def test_functional_layers_reading_parameters_are_cut_like_modules(tmp_path: Path) -> None:
    """F.conv2d / F.linear on the model's own parameters prune exactly (depthwise included); a conv on a buffer
    stays a function (counted, pinned); the user's model keeps its parameters; the cut network saves, reloads on
    a fresh instance and exports."""
    torch.manual_seed(0)
    model = _FunctionalNet().eval()
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 3, 8, 8)
    graph = trace(model, x)
    assert [n for n, _ in model.named_parameters()] == names  # the user's model is untouched
    assert torch.equal(graph.module(x), model(x))
    groups = {g.members: g for g in channel_groups(graph)}
    assert groups[("w0_conv",)].prunable and not groups[("block_weight_conv", "dw_weight_conv")].prunable
    assert "conv2d" in groups[("block_weight_conv", "dw_weight_conv")].reason  # the blur on a buffer pins
    assert [n.target.__name__ for n in graph.nodes if n.meta.get("uncosted")] == ["conv2d"]
    for seed in range(3):
        check_exact(_FunctionalNet(), side=8, seed=seed)
    pruned = gnnrl.prune(graph, ratios=0.4)
    assert pruned.module.get_submodule("w0_conv").out_channels == 5
    gnnrl.save(pruned, tmp_path / "f.safetensors")
    again = gnnrl.load(tmp_path / "f.safetensors", model=_FunctionalNet())
    with torch.no_grad():
        assert torch.equal(again.eval()(x), pruned.module.eval()(x))
    assert export_onnx(pruned.module, tmp_path / "f.onnx", x).max_abs_diff < 1e-5


def test_group_norm_loses_whole_groups() -> None:
    model = _randomise(GroupNormNet()).eval()
    graph = trace(model, torch.randn(1, 3, 16, 16))
    stream = next(g for g in channel_groups(graph) if "stem.0" in g.members)
    assert stream.size == 4, "16 channels in 4 GroupNorm groups: 4 units"
    pruned = apply_plan(graph, make_plan(graph, {stream.id: 0.5}))
    gn = pruned.get_submodule("stem.1")
    assert (gn.num_groups, gn.num_channels) == (2, 8)


def test_grouped_transposed_conv_is_kept_whole() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 8, 2, groups=2), nn.Conv2d(8, 4, 1))
    groups = channel_groups(trace(model, torch.randn(1, 3, 16, 16)))
    assert not any(g.prunable for g in groups)
    assert any("grouped ConvTranspose2d" in g.reason for g in groups)


class ShuffleV1Unit(nn.Module):  # ShuffleNet-v1: grouped 1×1 → channel shuffle → depthwise 3×3 → grouped 1×1
    def __init__(self, c: int = 48, mid: int = 60, g: int = 3) -> None:
        super().__init__()
        self.g = g
        self.reduce = nn.Sequential(nn.Conv2d(c, mid, 1, groups=g, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, c, 1, groups=g, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        b, ch, h, w = y.shape
        y = y.view(b, self.g, ch // self.g, h, w).transpose(1, 2).reshape(b, ch, h, w)  # channel shuffle
        return F.relu(x + self.expand(self.dw(y)))


def shufflenet_v1() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48), nn.ReLU(), ShuffleV1Unit(),
                         ShuffleV1Unit(), nn.Conv2d(48, 4, 1))


def test_grouped_convs_keep_equal_groups_not_equal_positions() -> None:
    """ResNeXt-style grouped 3×3: each of its 4 groups keeps as many channels, but which ones is chosen per group
    (tying position k of every group, the fallback, would remove the same positions everywhere)."""
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 24, 3, padding=1, groups=4),
                          nn.BatchNorm2d(24), nn.ReLU(), nn.Conv2d(24, 4, 1))
    graph = trace(_randomise(model), torch.randn(1, 3, 8, 8))
    a = analyze(graph)
    inner = next(g for g in a.groups if g.members == ("0",))
    assert inner.size == 16 and a.balance[inner.id].num_blocks == 4
    bal = a.balance[inner.id]
    steps = bal.steps(np.random.default_rng(0).random(a.num_units))
    assert steps.shape == (4, 4)  # 4 removal steps, one channel of every group each
    position = [list(bal.units[bal.block == b]).index(u) for b, u in enumerate(steps[0])]
    assert len(set(position)) > 1, "each group chooses its own least important channel"
    for seed in range(3):
        check_exact(model, side=8, seed=seed)


def test_shufflenet_v1_middle_channels_are_pruned_exactly() -> None:
    """Grouped 1×1 convs around a channel shuffle: the middle channels must stay balanced over the groups of the
    conv that writes them and, through the shuffle, over those of the conv that reads them. Each removal step is
    a perfect matching (one channel per group of both convs), and the pruned network gathers the kept channels in
    shuffled order (the shuffle's own view/transpose would interleave other channels)."""
    model = shufflenet_v1()
    graph = trace(model, torch.randn(1, 3, 16, 16))
    a = analyze(graph)
    mid = [g for g in a.groups if any(m.endswith("reduce.0") for m in g.members)]
    assert len(mid) == 2 and all(g.prunable and g.size == 60 for g in mid)
    for g in mid:
        bal = a.balance[g.id]
        assert bal.num_blocks == 3 and bal.cross is not None
        steps = bal.steps(np.random.default_rng(0).random(a.num_units))
        assert steps.shape == (20, 3) and len(np.unique(steps)) == 60
        for row in steps:  # every step: one channel of every group of both convs
            picked = np.isin(bal.units, row)
            assert sorted(bal.block[picked]) == [0, 1, 2] and sorted(bal.cross[picked]) == [0, 1, 2]
    stream = next(g for g in a.groups if "0" in g.members)
    assert stream.prunable and a.balance[stream.id].num_blocks == 3 and a.balance[stream.id].cross is None
    for seed in range(3):
        check_exact(model, side=16, seed=seed)


def test_min_cost_assignment_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 7):
        for _ in range(30):
            cost = rng.random((n, n))
            cost[rng.random((n, n)) < 0.3] = np.inf  # no edge
            best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
            if not np.isfinite(best):
                continue
            got = min_cost_assignment(cost)
            assert sorted(got) == list(range(n)) and sum(cost[i, got[i]] for i in range(n)) == pytest.approx(best)


def test_a_pruned_shufflenet_v1_prunes_again_exports_and_reloads(tmp_path: Path) -> None:
    """The gather that replaces a pruned shuffle is itself a permutation: a second round prunes through it (as
    many groups prunable, exact), and the twice-pruned zoo model exports to ONNX and reloads from its file."""
    x = torch.randn(2, 3, 32, 32)
    model = gnnrl.create("cifar_shufflenet_v1").eval()
    once = gnnrl.prune(model, x, 0.3)
    assert "getitem" in once.module.code and ".transpose(" not in once.module.code
    again = trace(once.module, x)
    assert sum(g.prunable for g in channel_groups(again)) == sum(g.prunable for g in channel_groups(trace(model, x)))
    check_exact(once.module, side=32, seed=1)
    twice = gnnrl.prune(again, ratios=0.3)
    assert export_onnx(twice.module, tmp_path / "m.onnx", x).max_abs_diff < 1e-4
    gnnrl.save(twice, tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(gnnrl.load(tmp_path / "m.safetensors").eval()(x), twice.module.eval()(x))


# ---- a custom layer -------------------------------------------------------------------------------------


class ScaledConv(nn.Module):
    """A 3×3 conv with a learned per-channel gain, whose forward torch.fx cannot trace (Python control flow)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        self.gain = nn.Parameter(torch.rand(cout) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 64:  # data-dependent Python control flow
            x = F.avg_pool2d(x, 2)
        return F.conv2d(x, self.weight, padding=1) * self.gain.view(1, -1, 1, 1)


def slice_scaled(layer: nn.Module, kept_in: torch.Tensor, kept_out: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.detach()[kept_out][:, kept_in])
    layer.gain = nn.Parameter(layer.gain.detach()[kept_out])


def cost_scaled(layer: nn.Module, kept_in: np.ndarray, kept_out: np.ndarray, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> tuple[int, int]:
    area = out_shape[2] * out_shape[3]
    return area * len(kept_out) * len(kept_in) * 9, len(kept_out) * (len(kept_in) * 9 + 1)


def custom_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), ScaledConv(16, 24),
                         nn.ReLU(), ScaledConv(24, 12), nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 4, 1))


def test_register_op_teaches_a_custom_layer() -> None:
    torch.manual_seed(0)
    model = custom_net().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match=r"\(ScaledConv\) cannot be traced"):
        pinned = channel_groups(trace(model, x))  # untraceable today: kept whole with every channel it touches…
    assert not any(g.prunable for g in pinned)
    assert any("(ScaledConv) cannot be traced" in g.reason for g in pinned)
    pinned = channel_groups(trace(model, x, leaf_modules=[ScaledConv]))
    assert not any(g.prunable for g in pinned)  # …as is a leaf the user names
    assert any("ScaledConv is not understood" in g.reason for g in pinned)

    gnnrl.register_op(ScaledConv, channels=creates, slice=slice_scaled, cost=cost_scaled, label="conv3x3",
                      filters=lambda m: m.weight.detach().flatten(1))
    try:
        graph = trace(model, x)  # registered: kept whole by the tracer, understood by the analysis
        groups = [g for g in channel_groups(graph) if g.prunable]
        assert {g.members for g in groups} == {("0",), ("3",), ("5",)}
        rng = np.random.default_rng(0)
        plan = make_plan(graph, {g.id: float(rng.uniform(0.2, 0.7)) for g in groups})
        pruned = apply_plan(graph, plan)
        ref = _masked_custom(model, graph, plan.keep)
        with torch.no_grad():
            out, expected = pruned(x), ref(x)
        assert (out - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))
        assert pruned.get_submodule("3").weight.shape[0] < 24
        # the analytic cost equals the counted cost of the pruned network, the custom layer by its own rule
        assert cost_after(graph, plan) == count_flops(pruned, (1, 3, 16, 16))
        assert count_flops(pruned, (1, 3, 16, 16)).macs < count_flops(model, (1, 3, 16, 16)).macs
    finally:
        MODULE_OPS.pop(ScaledConv)
        LEAF_MODULES.discard(ScaledConv)


def _masked_custom(model: nn.Module, graph: gnnrl.TracedModel, keep: np.ndarray) -> nn.Module:
    """The original with every layer's weights reading a removed channel zeroed (the reference of exactness)."""
    import copy

    ref = copy.deepcopy(model)
    for m in analyze(graph).modules:
        removed = np.flatnonzero((m.in_units >= 0) & ~keep[np.maximum(m.in_units, 0)])
        if m.creates and len(removed):
            ref.get_submodule(m.target).weight.data[:, torch.from_numpy(removed)] = 0
    return ref


def test_register_op_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="both `slice` and `cost`"):
        gnnrl.register_op(ScaledConv, channels=creates, slice=slice_scaled)
    with pytest.raises(ValueError, match="at least one"):
        gnnrl.register_op(channels=creates)
    assert module_op(ScaledConv) is None


def test_the_readme_custom_layer_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- custom-op example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no custom-op example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 25
    ast.parse(code)
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)  # our own README
    finally:
        for cls in [v for v in namespace.values() if isinstance(v, type) and v in MODULE_OPS]:
            MODULE_OPS.pop(cls)
    printed = capsys.readouterr().out
    assert "MACs" in printed and "exact" in printed


# ---- one place per op ---------------------------------------------------------------------------------


def test_no_op_knowledge_outside_the_registry() -> None:
    """The modules that loop over the registry name no layer class or torch function themselves."""
    pattern = re.compile(r"\bnn\.(Conv|Linear|BatchNorm|GroupNorm|LayerNorm|ReLU|MaxPool|AvgPool|Adaptive|"
                         r"InstanceNorm|PReLU|Flatten)|\bF\.\w+|isinstance\([^)]*nn\.modules")
    for name in ("groups", "prune", "cost", "graph", "latency", "trace"):
        source = (ROOT / "src" / "gnnrl" / f"{name}.py").read_text()
        found = pattern.findall(source)
        assert not found, f"gnnrl/{name}.py still describes ops itself: {found}"


def test_the_old_name_of_traced_model_still_answers_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="TracedModel"):
        assert gnnrl.Graph is gnnrl.TracedModel
    with pytest.raises(AttributeError, match="no attribute 'Grpah'"):
        gnnrl.Grpah  # noqa: B018
