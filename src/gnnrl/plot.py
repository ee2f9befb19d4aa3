"""Plots (matplotlib), each written atomically as a PNG: the hierarchical graph (its top level and one instance of
every motif type), a search's rewards per episode, and a compress run's report figures (kept channels per layer,
the search's trade-off, the fine-tune's curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write
from .hierarchy import Hierarchy, SubGraph


def _layers(n: int, edges: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """x = longest-path depth from the source, y = spread of the nodes sharing a depth."""
    depth = [0] * n
    for _ in range(n):  # small graphs: relax until stable
        changed = False
        for s, d in edges:
            if depth[d] < depth[s] + 1:
                depth[d], changed = depth[s] + 1, True
        if not changed:
            break
    pos: list[tuple[float, float]] = [(0.0, 0.0)] * n
    by_depth: dict[int, list[int]] = {}
    for v in range(n):
        by_depth.setdefault(depth[v], []).append(v)
    for x in sorted(by_depth):
        vs = by_depth[x]
        # barycentre ordering: place a node near its predecessors, which avoids most crossings
        preds = {v: [pos[s][1] for s, d in edges if d == v] for v in vs}
        vs.sort(key=lambda v: sum(preds[v]) / len(preds[v]) if preds[v] else 0.0)
        for i, v in enumerate(vs):
            pos[v] = (float(x), (i - (len(vs) - 1) / 2) * 1.2)
    return pos


def _draw(ax, g: SubGraph, labels: list[str], colors: list[str], title: str) -> None:  # type: ignore[no-untyped-def]
    pos = _layers(len(g.nodes), g.edges)
    for (s, d), label, color in zip(g.edges, labels, colors, strict=True):
        (x0, y0), (x1, y1) = pos[s], pos[d]
        rad = 0.35 if abs(x1 - x0) > 1 or (y0 == y1 and x1 == x0) else 0.0
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6,
                                "connectionstyle": f"arc3,rad={rad}", "shrinkA": 6, "shrinkB": 6})
        if label:  # arc3 bends to the right of the direction of travel: put the label on the bulge
            bulge = -rad * abs(x1 - x0) / 2
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + bulge + (0.15 if bulge >= 0 else -0.3), label, fontsize=7,
                    ha="center", color=color)
    xs, ys = [p[0] for p in pos], [p[1] for p in pos]
    ax.scatter(xs, ys, s=22, color="black", zorder=3)
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.axis("off")


def draw_hierarchy(h: Hierarchy, path: str | Path, title: str = "") -> Path:
    """Save a figure: the top graph with edges coloured by motif type, then one panel per motif type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    motifs = h.levels[-2]
    counts = h.motif_counts(len(h.levels) - 2)
    types = [k for k, _ in counts.most_common()]
    palette = plt.get_cmap("tab10")
    color = {k: matplotlib.colors.to_hex(palette(i % 10)) for i, k in enumerate(types)}
    fig = plt.figure(figsize=(max(10.0, len(h.top.nodes) * 0.45), 2.6 + 2.2 * len(types)))
    grid = fig.add_gridspec(1 + len(types), 1)
    top = fig.add_subplot(grid[0])
    top_colors = [color[motifs[c[1]].motif] for c in h.top.children]
    _draw(top, h.top, [""] * len(h.top.edges), top_colors,
          f"{title} top level: {len(h.top.nodes)} feature maps, {len(h.top.edges)} motif edges")
    for row, key in enumerate(types, start=1):
        ax = fig.add_subplot(grid[row])
        example = next(g for g in motifs if g.motif == key)
        labels = [h.comp.edges[c[1]].op if c[0] == "edge" else "motif" for c in example.children]
        _draw(ax, example, labels, [color[key]] * len(labels),
              f"motif {key[:6]} × {counts[key]}: {h.motif_names.get(key, '')[:120]}")
    fig.tight_layout()
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format=fmt))
    plt.close(fig)
    return path


def plot_rewards(history: list[dict[str, Any]], path: Path, warmup: int, uniform: float) -> None:
    """Validation top-1 per episode, best so far, the uniform baseline, and the warm-up phase shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["episode"] for r in history]
    acc = [r["val_top1"] for r in history]
    fig, ax = plt.subplots(figsize=(8, 4))
    if warmup:
        ax.axvspan(0.5, min(warmup, max(ep)) + 0.5, color="0.92", label="warm-up (random actions)")
    ax.plot(ep, acc, ".", color="tab:blue", alpha=0.6, label="episode")
    ax.plot(ep, np.maximum.accumulate(acc), color="tab:red", label="best so far")
    ax.axhline(uniform, color="tab:green", ls="--", label=f"uniform L1 ({uniform:.2f} %)")
    ax.set_xlabel("episode")
    ax.set_ylabel("validation top-1 before fine-tuning (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)


def _savefig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def plot_ratios(layers: list[dict[str, Any]], path: Path, title: str) -> None:
    """Per conv/linear layer: original width and kept channels; layers sharing a coupled group are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(layers)), 4.2))
    xs = range(len(layers))
    ax.bar(xs, [x["original"] for x in layers], color="0.85", label="original width")
    colors = ["tab:orange" if x["coupled"] else "tab:blue" for x in layers]
    ax.bar(xs, [x["kept"] for x in layers], color=colors)
    ax.set_xticks(list(xs), [x["name"] for x in layers], rotation=90, fontsize=6)
    ax.set_ylabel("output channels")
    ax.set_title(title, fontsize=9)
    ax.legend(handles=[Patch(color="0.85", label="original width"), Patch(color="tab:blue", label="kept"),
                       Patch(color="tab:orange", label="kept (residual/concat-coupled group: one ratio for all)")],
              fontsize=7, loc="upper left")
    _savefig(fig, path)


def plot_pareto(history: list[dict[str, Any]], path: Path, uniform: tuple[float, float] | None,
                x_key: str = "macs_ratio") -> None:
    """Validation top-1 against the MACs (or predicted latency, `x_key`) ratio of every searched episode, with the
    best and the uniform baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = {"warmup": ("0.6", "warm-up (random)"), "agent": ("tab:blue", "agent"),
              "random": ("tab:purple", "random search"), "heuristic": ("tab:orange", "heuristic")}
    for phase, (color, label) in styles.items():
        rows = [r for r in history if r.get("phase", "agent") == phase]
        if rows:
            ax.scatter([r.get(x_key) for r in rows], [r["val_top1"] for r in rows], s=12, color=color,
                       alpha=0.7, label=label)
    best = max(history, key=lambda r: r["val_top1"])
    ax.scatter([best.get(x_key)], [best["val_top1"]], marker="*", s=160, color="tab:red",
               label=f"best ({best['val_top1']:.2f} %, episode {best['episode']})", zorder=3)
    if uniform is not None:
        ax.scatter([uniform[0]], [uniform[1]], marker="s", s=50, color="tab:green",
                   label=f"uniform L1 ({uniform[1]:.2f} %)", zorder=3)
    ax.set_xlabel("MACs of the pruned network / original" if x_key == "macs_ratio"
                  else "predicted latency of the pruned network / original")
    ax.set_ylabel("val top-1 before fine-tuning (%)")
    ax.legend(fontsize=7, loc="lower right")
    _savefig(fig, path)


def plot_finetune(history: list[dict[str, Any]], path: Path, original_val: float | None = None) -> None:
    """Training loss and validation top-1 per fine-tuning epoch; the unpruned model's val top-1 for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ep = [r["epoch"] for r in history]
    ax.plot(ep, [r["train/loss"] for r in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    ax2.plot(ep, [r["val/top1"] for r in history], "s-", color="tab:red", label="val top-1")
    if original_val is not None:
        ax2.axhline(original_val, color="tab:red", ls="--", lw=1, label=f"unpruned ({original_val:.2f} %)")
        ax2.legend(fontsize=7, loc="center right")
    ax2.set_ylabel("val top-1 (%)", color="tab:red")
    _savefig(fig, path)
