"""Model zoo: every model runs and reports MACs; the MAC counter is exact on hand-countable nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnnrl import count_flops, create, list_models
from gnnrl.errors import ModelError
from gnnrl.models import CIFAR_MODELS, channel_shuffle
from gnnrl.prune import original_cost


@pytest.mark.parametrize("name", list(CIFAR_MODELS))
def test_cifar_zoo_forward_and_cost(name: str) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=10).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    cost = count_flops(model)
    assert cost.macs > 1e6
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert create(name, num_classes=100)(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_resnet_costs_match_the_paper() -> None:
    # ResNet-56 ≈ 125.5 M MACs / 0.853 M params, ResNet-20 ≈ 40.6 M / 0.270 M (thop / fvcore convention)
    r56, r20 = count_flops(create("resnet56")), count_flops(create("resnet20"))
    assert round(r56.macs / 1e6, 1) == 125.5 and round(r56.params / 1e6, 3) == 0.853
    assert round(r20.macs / 1e6, 1) == 40.6 and round(r20.params / 1e6, 3) == 0.270


def test_mac_counter_is_exact_on_a_hand_counted_net() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),          # 8·32·32 outputs × 3·9      = 221,184
        nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # 8·16·16 × 1·9 = 18,432
        nn.Conv2d(8, 16, 1, groups=2),           # 16·16·16 × 4·1             = 16,384
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),                       # 10 × 16                    = 160
    )
    cost = count_flops(net, (4, 3, 32, 32))
    assert cost.macs == 221_184 + 18_432 + 16_384 + 160
    assert cost.params == (8 * 27 + 8) + 16 + (8 * 9 + 8) + (16 * 4 + 16) + (160 + 10)


def test_option_a_shortcut_pads_zeros_and_subsamples() -> None:
    block = create("resnet20").layer2[0].eval()
    x = torch.randn(1, 16, 32, 32)
    with torch.inference_mode():
        for m in (block.conv1, block.conv2):
            m.weight.zero_()
        block.bn2.bias.zero_()
        block.bn2.running_mean.zero_()
        y = block(x)  # the residual branch is exactly zero, so y = relu(shortcut)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, :8], torch.zeros(1, 8, 16, 16)) and torch.equal(y[:, 24:], torch.zeros(1, 8, 16, 16))
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2].relu())


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ModelError, match="resnet56"):
        create("resnet55")
    with pytest.raises(ModelError, match="gnnrl models"):
        create("no-such-net")


def test_torchvision_models_by_name() -> None:
    pytest.importorskip("torchvision")
    names = list_models()
    assert {"resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "resnet56"} <= set(names)
    cost = count_flops(create("resnet18", num_classes=1000), (1, 3, 224, 224))
    assert round(cost.macs / 1e9, 3) == 1.814  # fvcore's count for ResNet-18 (conv + linear)
    assert cost.params == 11_689_512  # torchvision's documented parameter count
    model = create("resnet18", num_classes=10).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if n not in CIFAR_MODELS])
def test_every_torchvision_classifier_runs_and_counts(name: str) -> None:
    model = create(name, num_classes=10).eval()
    side = 299 if name == "inception_v3" else 224
    with torch.inference_mode():
        assert model(torch.randn(1, 3, side, side)).shape == (1, 10)
    assert count_flops(model, (1, 3, side, side)).macs > 0


def _flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """PyTorch's own count (FlopCounterMode: conv, linear, matmul…), as MACs per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as flops:
        model.eval()(torch.zeros(shape))
    return flops.get_total_flops() // 2 // shape[0]


class _FunctionalNet(nn.Module):
    """Cost the registry cannot see: a conv called functionally from a parameter, and a matmul attention."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 3, 3, 3))
        self.bn = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.relu(self.bn(torch.nn.functional.conv2d(x, self.weight, padding=1))))
        a = x.flatten(2)
        x = x + (torch.softmax(a @ a.transpose(1, 2), -1) @ a).view_as(x)
        return self.fc(x.mean((2, 3)))


_COUNTED = [("resnet20", 32), ("resnet56", 32), ("vgg16", 32), ("mobilenet_v2", 64), ("shufflenet_v2_x1_0", 64),
            ("efficientnet_b0", 64), ("regnet_y_400mf", 64), ("convnext_tiny", 64), ("densenet121", 64),
            ("r3d_18", 0), ("functional", 32)]


@pytest.mark.parametrize("name, side", _COUNTED)
def test_counted_cost_agrees_with_flop_counter_mode_before_and_after_pruning(name: str, side: int) -> None:
    """No op is ever counted as free: count_flops, the traced analytic cost and the pruned network's analytic cost
    all equal PyTorch's FlopCounterMode (unknown layers included, whether or not gnnrl can cut them)."""
    import gnnrl

    torch.manual_seed(0)
    if name == "functional":
        model, shape = _FunctionalNet(), (1, 3, side, side)
    elif name == "r3d_18":  # a Conv3d subclass (Conv3DSimple), video input
        tv = pytest.importorskip("torchvision")
        model, shape = tv.models.video.r3d_18(num_classes=10), (1, 3, 4, 32, 32)
    else:
        model, shape = create(name, num_classes=10).eval(), (1, 3, side, side)
    model.eval()
    truth = _flop_counter_macs(model, shape)
    assert count_flops(model, shape).macs == truth
    graph = gnnrl.trace(model, torch.zeros(shape))
    assert original_cost(graph).macs == truth
    uncosted = {getattr(n.target, "__name__", str(n.target)) for n in graph.nodes if n.meta.get("uncosted")}
    # the functional conv reads the model's own parameter: it becomes a conv module (gnnrl.functional); the
    # matmul attention stays a function, counted and never free
    assert (uncosted == {"matmul"}) if name == "functional" else not uncosted, uncosted
    pruned = gnnrl.prune(graph, ratios=0.3)
    assert pruned.cost.macs == _flop_counter_macs(pruned.module, shape) == count_flops(pruned.module, shape).macs
