"""Functional layers in a traced graph: `F.conv2d(x, self.weight, …)` and `F.linear(x, self.weight, self.bias)`
whose weights are the model's own parameters become modules, so the registry's conv and linear entries cut them.

The new module (an `nn.Conv2d`, `nn.Linear`, …) holds the very same `nn.Parameter` objects and the call's
stride, padding, dilation and groups, so it computes exactly what the call did; the parameter's old attribute on
the graph module is removed (the graph module owns it; the user's model is never changed). Only calls whose
every hyper-parameter is a constant and whose parameters are used by nothing else are rewritten: anything else
stays a function, counted by `FlopCounterMode` and pinned.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

_CONVS: dict[Any, type[nn.modules.conv._ConvNd]] = {
    F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d,
    torch.conv1d: nn.Conv1d, torch.conv2d: nn.Conv2d, torch.conv3d: nn.Conv3d,
}
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_LINEARS = (F.linear, torch.nn.functional.linear)


def modules_for_functional_layers(gm: fx.GraphModule) -> list[str]:
    """Rewrite eligible functional conv / linear calls of `gm` into modules (in place); their new names."""
    made = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or (node.target not in _CONVS and node.target not in _LINEARS):
            continue
        args = _bind(node)
        if args is None:
            continue
        weight, bias = _own_parameter(gm, args.get("weight")), _own_parameter(gm, args.get("bias"))
        if weight is None or (args.get("bias") is not None and bias is None):
            continue
        module = _build(node.target, weight[1], bias[1] if bias else None, args)
        if module is None:
            continue
        name = _free_name(gm, f"{weight[0].replace('.', '_')}_{'conv' if node.target in _CONVS else 'linear'}")
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (args["input"],))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        for ref in (weight, bias):
            if ref is not None:
                gm.graph.erase_node(ref[2])
                _delete_attr(gm, ref[0])
        made.append(name)
    if made:
        gm.recompile()
    return made


def _bind(node: fx.Node) -> dict[str, Any] | None:
    """The call's arguments by name; None when a hyper-parameter is not a constant."""
    names = _CONV_ARGS if node.target in _CONVS else ("input", "weight", "bias")
    if len(node.args) > len(names) or any(k not in names for k in node.kwargs):
        return None
    args = {**dict(zip(names, node.args, strict=False)), **node.kwargs}
    if not isinstance(args.get("input"), fx.Node):
        return None
    if any(isinstance(v, fx.Node) for k, v in args.items() if k not in ("input", "weight", "bias")):
        return None
    return args


def _own_parameter(gm: fx.GraphModule, arg: Any) -> tuple[str, nn.Parameter, fx.Node] | None:
    """(attribute path, parameter, get_attr node) when `arg` reads one of the model's parameters, used only here."""
    if not isinstance(arg, fx.Node) or arg.op != "get_attr" or len(arg.users) != 1:
        return None
    owner_path, _, field = str(arg.target).rpartition(".")
    try:
        owner = gm.get_submodule(owner_path) if owner_path else gm
    except AttributeError:
        return None
    value = getattr(owner, field, None)
    # the owner must be the graph module or a container fx made for it, never one of the user's modules
    if not isinstance(value, nn.Parameter) or (owner is not gm and type(owner) is not nn.Module):
        return None
    return str(arg.target), value, arg


def _build(target: Any, weight: nn.Parameter, bias: nn.Parameter | None, args: dict[str, Any]) -> nn.Module | None:
    """The module computing what the call computes, holding its parameters."""
    if target in _LINEARS:
        if weight.dim() != 2:
            return None
        module: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    else:
        cls = _CONVS[target]
        groups = int(args.get("groups", 1))
        if weight.dim() != {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}[cls]:
            return None
        try:
            module = cls(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=args.get("stride", 1), padding=args.get("padding", 0),
                         dilation=args.get("dilation", 1), groups=groups, bias=bias is not None, device="meta")
        except (TypeError, ValueError):
            return None
    module.weight = weight
    if bias is not None:
        module.bias = bias
    return module


def _free_name(gm: fx.GraphModule, base: str) -> str:
    name, k = base, 1
    while hasattr(gm, name):
        name, k = f"{base}{k}", k + 1
    return name


def _delete_attr(gm: fx.GraphModule, path: str) -> None:
    owner_path, _, field = path.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    delattr(owner, field)
