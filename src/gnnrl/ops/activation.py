"""Element-wise unary ops (activations, dropout, casts): each output element keeps its input's channel."""

from __future__ import annotations

import operator
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .idmap import Ids, flat
from .norm import channelwise, channelwise_cost, slice_channelwise
from .registry import FUNCTION_OPS, Call, ChannelPass, register_op, when_loaded


def passthrough(p: ChannelPass, call: Call) -> Any:
    """Element-wise unary ops: the output has the input's ids."""
    return next(a for a in flat(call.args) if isinstance(a, Ids))


def prelu_channels(p: ChannelPass, call: Call) -> Any:
    """PReLU: one shared slope is element-wise; one slope per channel is cut with the channels."""
    m = call.module
    assert isinstance(m, nn.PReLU)
    return channelwise(p, call) if m.num_parameters > 1 else passthrough(p, call)


# label -> (modules, functions, methods): the level-0 vocabulary of the computational graph
_UNARY: dict[str, tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, ...]]] = {
    "relu": ((nn.ReLU,), (F.relu, torch.relu), (".relu", ".relu_")),
    "relu6": ((nn.ReLU6,), (F.relu6,), ()),
    "sigmoid": ((nn.Sigmoid,), (torch.sigmoid, F.sigmoid), (".sigmoid",)),
    "hardswish": ((nn.Hardswish,), (F.hardswish,), ()),
    "silu": ((nn.SiLU,), (F.silu,), ()),
    "gelu": ((nn.GELU,), (F.gelu,), ()),
    "act_other": ((nn.Hardsigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish), (F.hardsigmoid, F.hardtanh), ()),
    "other": ((nn.SELU, nn.Hardtanh, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
               nn.AlphaDropout, nn.Identity),
              (F.leaky_relu, F.elu, F.selu, F.mish, F.softplus, F.dropout, F.dropout2d, F.alpha_dropout, torch.tanh,
               torch.clamp, torch.clone, torch.neg, torch.abs, torch.exp, F.tanh, operator.neg),
              (".sigmoid_", ".tanh", ".clamp", ".clamp_", ".clone", ".float", ".to", ".type_as",
               ".detach", ".abs", ".exp", ".neg", ".clamp_min", ".clamp_max")),
}
for _label, (_modules, _functions, _methods) in _UNARY.items():
    register_op(*_modules, *_functions, *_methods, name=_label, channels=passthrough, label=_label)
# `.contiguous` is data movement: the computational graph has always called it a reshape
register_op(".contiguous", name="contiguous", channels=passthrough, label="reshape")
register_op(nn.PReLU, name="prelu", channels=prelu_channels, label="act_other", slice=slice_channelwise,
            cost=channelwise_cost)


@when_loaded
def _register_torchvision() -> None:
    """torchvision wraps stochastic depth as one fx node: identity in eval mode, element-wise in training."""
    if "torchvision" not in sys.modules:
        return
    from torchvision.ops import stochastic_depth

    if stochastic_depth not in FUNCTION_OPS:
        register_op(stochastic_depth, name="stochastic_depth", channels=passthrough)
