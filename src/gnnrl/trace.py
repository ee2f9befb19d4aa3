"""Tracing a model into a torch.fx graph, with one shape pass that records facts in `node.meta`.

Keys written by the shape pass (one `fx.Interpreter` run on the example input, as in torch.fx's ShapeProp):
  * ``node.meta["value"]``: the output for non-tensor results (sizes, ints), which later passes reuse;
  * ``node.meta["shape"]``: the output tensor's shape (tensor results only);
  * ``node.meta["macs"]`` / ``node.meta["params"]``: cost (per sample) of module calls whose op entry has one.

Analyses of a traced model (channel groups, costs, the computational graph, hierarchies) are cached on it, in
one typed `GraphCache`, because the search asks for them thousands of times.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from .errors import GnnrlError
from .functional import modules_for_functional_layers
from .ops import module_op

# Modules kept whole by the tracer beyond torch.nn's own. Their channels are pinned by the grouping pass.
LEAF_MODULES: set[type[nn.Module]] = set()
# Functions kept as single graph nodes instead of being traced through.
AUTOWRAP_FUNCTIONS: set[Callable[..., Any]] = set()


class TraceError(GnnrlError):
    """A model could not be traced by torch.fx."""


def register_leaf(cls: type[nn.Module]) -> type[nn.Module]:
    """Keep modules of this class whole when tracing (usable as a class decorator)."""
    LEAF_MODULES.add(cls)
    return cls


@dataclass
class GraphCache:
    """What has been computed from one traced model; each field is filled, and typed, by the module that owns it
    (those modules build on this one, so it names none of their types: nothing here reaches up)."""

    analysis: Any = None  # gnnrl.groups.Analysis, by gnnrl.groups.analyze
    channels: Any = None  # gnnrl.prune.Channels (the analysis with its plans, costs and cuts), by gnnrl.prune.channels
    comp_graph: Any = None  # gnnrl.graph.CompGraph, by gnnrl.graph.build
    hierarchies: dict[int, Any] = field(default_factory=dict)  # gnnrl.hierarchy.Hierarchy by levels


@dataclass
class TracedModel:
    """A traced model: the fx `GraphModule` (sharing the model's parameters), its example input, and the
    analyses computed from it (`cache`). Not the computational graph of the paper: that is `gnnrl.graph.CompGraph`,
    built from this."""

    module: fx.GraphModule
    example_input: torch.Tensor
    cache: GraphCache = field(default_factory=GraphCache, repr=False, compare=False)
    untraced: dict[str, str] = field(default_factory=dict)
    """submodules kept whole because torch.fx could not trace them: qualified name -> why (file:line, error)"""

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.module.graph.nodes)

    def submodule(self, node: fx.Node) -> nn.Module:
        """The module a `call_module` node calls."""
        return self.module.get_submodule(str(node.target))


class _Tracer(fx.Tracer):
    def __init__(self, leaves: Iterable[type[nn.Module]], autowrap: Iterable[Callable[..., Any]],
                 kept: Iterable[str] = ()) -> None:
        super().__init__(autowrap_functions=tuple(autowrap))
        self.leaves = tuple(leaves)
        self.kept = frozenset(kept)  # qualified names of submodules that did not trace: kept whole

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (module_qualified_name in self.kept or isinstance(m, self.leaves) or _registered(type(m))
                or super().is_leaf_module(m, module_qualified_name))


def _registered(cls: type[nn.Module]) -> bool:
    """A registered layer, or a subclass of one (torchvision's Conv3DSimple, timm's BatchNormAct2d), is kept whole
    and understood by its registry entry (its forward may be untraceable); a subclass that overrides `forward` is
    checked by the channel analysis (`gnnrl.ops.registry.prunes_like_its_base`) and pinned when it does not prune
    like its base."""
    return module_op(cls) is not None


def trace(
    model: nn.Module,
    example_input: torch.Tensor,
    leaf_modules: Iterable[type[nn.Module]] = (),
    autowrap_functions: Iterable[Callable[..., Any]] = (),
) -> TracedModel:
    """Symbolically trace `model` and run one shape pass on the first sample of `example_input`.

    A submodule whose forward torch.fx cannot trace (Python control flow on a tensor or a shape) is kept whole,
    with a warning: it runs as it is, is costed by what PyTorch counts, and its channels are pinned with the
    reason (`TracedModel.untraced`). Only a failure in the model's own forward raises `TraceError`. A functional
    conv or linear reading the model's own parameters becomes a module (`gnnrl.functional`), and so is cut.
    """
    tracer, untraced = _trace_keeping_untraceable(model, [*LEAF_MODULES, *leaf_modules],
                                                  [*AUTOWRAP_FUNCTIONS, *autowrap_functions])
    graph = tracer.graph
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    for attr in ("gnnrl_spec", "gnnrl_lineage"):  # how the model was built / pruned: save and re-prune need it
        if hasattr(model, attr):
            setattr(gm, attr, getattr(model, attr))
    modules_for_functional_layers(gm)  # a functional conv on self.weight → a conv module holding that parameter
    # Batch 1: shapes and per-sample MACs are what the later passes need, and id maps stay small.
    example = example_input[:1]
    # The graph module shares its submodules with `model`: a shape pass in train mode would move BatchNorm
    # running statistics towards this one example image. Run it in eval mode, then restore every module's mode.
    modes = [(m, m.training) for m in gm.modules()]
    try:
        gm.eval()
        with torch.no_grad():
            _ShapePass(gm).run(example)
    except (RuntimeError, ValueError, IndexError) as e:  # the model's own error for an input that does not fit it
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TraceError(f"the example input of shape {tuple(example_input.shape)} does not fit {type(model).__name__}"
                         f": {first[:300]}") from e
    finally:
        for m, training in modes:
            m.training = training
    return TracedModel(gm, example, untraced=untraced)


_MAX_UNTRACED = 64  # a model with more untraceable submodules than this is not worth pruning by parts


def _trace_keeping_untraceable(model: nn.Module, leaves: list[type[nn.Module]],
                               autowrap: list[Callable[..., Any]]) -> tuple[_Tracer, dict[str, str]]:
    """Trace, and on each failure inside a submodule trace again with that submodule kept whole."""
    untraced: dict[str, str] = {}
    while True:
        tracer = _Tracer(leaves, autowrap, untraced)
        try:
            tracer.graph = tracer.trace(model)
            break
        except Exception as e:  # fx raises many types (TraceError, TypeError, AttributeError…): all "untraceable"
            path, cls = _failing_module(model, tracer)
            if not path or path in untraced or len(untraced) >= _MAX_UNTRACED:
                raise TraceError(_explain(model, tracer, e)) from e
            first = (str(e).splitlines() or [type(e).__name__])[0][:120]
            untraced[path] = f"module '{path}' ({cls.__name__}) cannot be traced{_where(e)}: {first}; kept whole"
    for why in untraced.values():
        warnings.warn(f"{why}, its channels are not pruned (gnnrl.register_op teaches gnnrl such a layer; "
                      f"see the README)", stacklevel=3)
    return tracer, untraced


def _failing_module(model: nn.Module, tracer: _Tracer) -> tuple[str, type[nn.Module]]:
    """The innermost submodule torch.fx was tracing when it failed ("" for the model's own forward)."""
    for name, _entry in reversed(list(getattr(tracer, "module_stack", {}).items())):
        if name:
            return name, type(model.get_submodule(name))
    return "", type(model)


def _where(e: Exception) -> str:
    """' at FILE:LINE (source)' of the user's code where an exception was raised, outside torch."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/torch/" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    name = frames[-1].filename.replace("\\", "/").split("site-packages/")[-1]  # timm/layers/mlp.py, not the venv
    return f" at {name}:{frames[-1].lineno} ({frames[-1].line})"


def _explain(model: nn.Module, tracer: _Tracer, e: Exception) -> str:
    """Name the failing source line and module, and say how to mark it as a leaf."""
    where = _where(e)
    path, cls = _failing_module(model, tracer)
    first = (str(e).splitlines() or [type(e).__name__])[0]
    if not path:  # the model's own forward: there is no smaller part to keep whole
        return (f"cannot trace {type(model).__name__}'s own forward{where}: {first}. Data-dependent Python control "
                f"flow cannot be traced; move it into a submodule (gnnrl then keeps that submodule whole) or wrap "
                f"the model in one that calls it without the branch.")
    return (f"cannot trace {type(model).__name__} inside module '{path}' ({cls.__name__}){where}: {first}. "
            f"Data-dependent Python control flow cannot be traced; mark the module as a leaf to keep it whole (its "
            f"channels are then not pruned): gnnrl.trace(model, x, leaf_modules=[{cls.__name__}]) or "
            f"gnnrl.register_leaf({cls.__name__}).")


class _ShapePass(fx.Interpreter):
    """Records shapes, non-tensor values and the cost of every node into `node.meta`.

    A module whose op entry has a cost rule is costed by it (the rule also prices a cut of the layer); every other
    node is costed by what PyTorch's `FlopCounterMode` counts while it runs, so a functional conv, a matmul or an
    unregistered layer is never counted as free (its node gets ``meta["uncosted"]``: an op gnnrl cannot cut).
    """

    def run(self, *args: Any, **kwargs: Any) -> Any:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as self._flops:
            return super().run(*args, **kwargs)

    def run_node(self, n: fx.Node) -> Any:
        before = self._flops.get_total_flops()
        out = super().run_node(n)
        measured = (self._flops.get_total_flops() - before) // 2  # FlopCounterMode counts a multiply-add as 2
        if isinstance(out, torch.Tensor):
            n.meta["shape"] = tuple(out.shape)
        elif not isinstance(out, (list, tuple)) or not any(isinstance(o, torch.Tensor) for o in out):
            n.meta["value"] = out
        if n.op == "call_module" and isinstance(out, torch.Tensor):
            m = self.module.get_submodule(str(n.target))
            op = module_op(type(m))
            x = self.env.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
            if op is not None and op.cost is not None and isinstance(x, torch.Tensor):
                n.meta["macs"], n.meta["params"] = op.full_cost(m, tuple(x.shape), tuple(out.shape))
                return out
        if measured:
            n.meta["macs"], n.meta["uncosted"] = int(measured), True
        return out
