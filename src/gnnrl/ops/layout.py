"""Data movement (flatten, view, transpose, cat, chunk, split, indexing) and shape queries: run on the id maps."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

from .idmap import Ids, raw, varies, wrap
from .registry import Call, ChannelPass, register_op


def moves(p: ChannelPass, call: Call) -> Any:
    """Pure data movement (flatten, transpose, permute, cat, stack…): the op itself is run on the id maps."""
    node = call.node
    args, kwargs = raw(call.args), raw(call.kwargs)
    if call.module is not None:
        return wrap(call.module(*args, **kwargs))
    if node.op == "call_function":
        return wrap(node.target(*args, **kwargs))  # type: ignore[operator]
    return wrap(getattr(args[0], str(node.target))(*args[1:], **kwargs))


def union_along(p: ChannelPass, t: torch.Tensor, dim: int, pieces: int | None = None) -> None:
    """Tie together the ids that face each other along `dim` (split into `pieces` equal parts, or per element)."""
    moved = t.movedim(dim, -1)
    if pieces is not None:  # chunk-like: piece j position k ↔ piece 0 position k
        moved = moved.reshape(*moved.shape[:-1], pieces, -1).transpose(-1, -2)
    rows = moved.reshape(-1, moved.shape[-1])
    for j in range(1, rows.shape[1]):
        p.union(rows[:, 0].numpy(), rows[:, j].numpy())


def reshapes(p: ChannelPass, call: Call) -> Any:
    """view / reshape: literal sizes stay fixed after pruning, so ids spread along such a dim are tied. A channel
    shuffle (`shuffle_nodes`) is tied too — it then keeps its order — unless that breaks the balance of a grouped
    conv (ShuffleNet-v1): it is then a plain reordering, which the pruned network does with a gather."""
    x = call.args[0].t
    sizes = call.node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = tuple(sizes[0])
    out = x.reshape(call.node.meta["shape"])
    shuffle = shuffle_nodes(call.node)
    if shuffle is not None:
        p.shuffles += 1
        if p.untie_shuffles:
            p.permutes(call.node.args[0], shuffle)  # type: ignore[arg-type]
            return Ids(out)
    for d, s in enumerate(sizes):
        if isinstance(s, int) and s not in (-1, 1) and d < out.dim() and varies(out, d):
            union_along(p, out, d)
    return Ids(out)


def shuffle_nodes(view: fx.Node) -> list[fx.Node] | None:
    """[view, transpose, (contiguous,) reshape] when `view` starts a channel shuffle — it splits dim 1 into
    (g, C/g), its one user swaps those two dims, and the next merges them back to the input's shape — else None."""
    source = view.args[0]
    if not isinstance(source, fx.Node) or len(view.users) != 1:
        return None
    in_shape, shape = source.meta.get("shape"), view.meta.get("shape")
    if in_shape is None or shape is None or len(shape) != len(in_shape) + 1 or len(in_shape) < 2 \
            or (shape[0], shape[1] * shape[2], *shape[3:]) != tuple(in_shape):
        return None
    (swap,) = view.users
    dims = swap.args[1:] if swap.target in (torch.transpose, "transpose") else ()
    if sorted(d % len(shape) for d in dims if isinstance(d, int)) != [1, 2] or len(swap.users) != 1:
        return None
    chain = [view, swap]
    (merge,) = swap.users
    if merge.target == "contiguous" and len(merge.users) == 1:  # torchvision's shuffle: transpose().contiguous()
        chain.append(merge)
        (merge,) = merge.users
    if merge.target not in (torch.reshape, "view", "reshape", torch.flatten, "flatten") \
            or tuple(merge.meta.get("shape", ())) != tuple(in_shape):
        return None
    return [*chain, merge]


def chunks(p: ChannelPass, call: Call) -> Any:
    """chunk(n, dim): pruned parts must stay equal, so position k of every chunk is tied."""
    args, kwargs = call.args, call.kwargs
    x = args[0].t
    n = args[1] if len(args) > 1 else kwargs["chunks"]
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if varies(x, dim):
        if x.shape[dim] % n:
            p.pin(x, "chunk of a channel dimension into unequal parts")
        else:
            union_along(p, x, dim, pieces=n)
    return wrap(torch.chunk(x, n, dim))


def splits(p: ChannelPass, call: Call) -> Any:
    """split with constant sizes: the sizes would no longer fit a pruned dimension."""
    args, kwargs = call.args, call.kwargs
    x = args[0].t
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if varies(x, dim):
        p.pin(x, "split of a channel dimension into constant sizes")
    return wrap(torch.split(x, args[1], dim))


def indexes(p: ChannelPass, call: Call) -> Any:
    """Indexing: on tuples it selects; on an id map, slicing a channel-carrying dim pins it."""
    obj, index = call.args
    if not isinstance(obj, Ids):
        return obj[index]
    x = obj.t
    idx = index if isinstance(index, tuple) else (index,)
    dims: list[int] = []
    d = 0
    for i, item in enumerate(idx):
        if item is Ellipsis:
            d = x.dim() - (len(idx) - i - 1 - sum(1 for j in idx[i + 1 :] if j is None))
            continue
        if item is None:
            continue
        if not (isinstance(item, slice) and item == slice(None)):
            dims.append(d)
        d += 1
    # a channel shuffle that pruning turned into a gather (see groups.Permutation)
    if len(idx) == 2 and idx[0] == slice(None) and _is_permutation(idx[1], x.shape[1]):
        p.permutes(call.node.args[0], [call.node])  # type: ignore[arg-type]
        return Ids(x[index])
    for d in dims:
        if d < x.dim() and varies(x, d):
            p.pin(x, "indexing a channel dimension with constant bounds")
    return Ids(x[index])


def _is_permutation(item: Any, n: int) -> bool:
    """`item` lists every index of a dimension of size `n` once."""
    return (isinstance(item, (list, tuple)) and all(type(i) is int for i in item)
            and sorted(item) == list(range(n)) and n > 0)


def queries(p: ChannelPass, call: Call) -> Any:
    """Shape queries (x.size(), x.dim(), x.shape): the value recorded by the shape pass."""
    return call.node.meta.get("value")


register_op(nn.Flatten, torch.flatten, ".flatten", torch.transpose, ".transpose", torch.permute, ".permute",
            ".squeeze", ".unsqueeze", name="layout", channels=moves, label="reshape")
register_op(torch.cat, torch.concat, torch.stack, name="concat", channels=moves, label="concat")
register_op(torch.squeeze, torch.unsqueeze, ".expand", torch.movedim, ".movedim", ".expand_as", name="expand",
            channels=moves)
register_op(torch.reshape, ".view", ".reshape", name="reshape", channels=reshapes, label="reshape")
register_op(torch.chunk, ".chunk", name="chunk", channels=chunks, label="reshape")
register_op(torch.split, ".split", name="split", channels=splits, label="reshape")
register_op(operator.getitem, name="getitem", channels=indexes, label="reshape")
register_op(".size", ".dim", ".numel", getattr, name="query", channels=queries)
