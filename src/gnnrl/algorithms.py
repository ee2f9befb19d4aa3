"""Two textbook algorithms the channel analysis needs: disjoint sets (which channels go together) and a
least-cost perfect matching (which positions of a grouped conv's groups correspond)."""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets over 0…n−1 with path halving; the smaller root wins, so classes keep their first member."""

    def __init__(self, n: int = 0) -> None:
        self.parent = list(range(n))

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, n: int) -> int:
        """Append `n` singletons; returns the first new index."""
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return start

    def find(self, a: int) -> int:
        """The root of `a`'s class."""
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(self, a: int, b: int) -> None:
        """Merge the classes of `a` and `b`."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def join_pairs(self, a: np.ndarray, b: np.ndarray) -> None:
        """Merge a[i] with b[i] for every i (negative entries ignored)."""
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        ok = (a >= 0) & (b >= 0) & (a != b)
        if not ok.any():
            return
        # Activations repeat each pair over every spatial position: dedupe on one int64 key first.
        pairs = np.unique(a[ok] * (1 << 31) + b[ok])
        for x, y in zip((pairs >> 31).tolist(), (pairs & ((1 << 31) - 1)).tolist(), strict=True):
            self.join(x, y)

    def roots(self) -> np.ndarray:
        """The root of every element."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


def min_cost_assignment(cost: np.ndarray) -> list[int]:
    """The column of each row in a perfect matching of least total cost (Hungarian method, O(n³); infinite cost:
    no edge, and a matching of finite cost must exist)."""
    n = len(cost)
    big = np.where(np.isfinite(cost), cost, 0.0).sum() * 2 + 1.0  # dearer than any finite matching
    c = np.where(np.isfinite(cost), cost, big)
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # match[column] = row (1-based; 0: free)
    for row in range(1, n + 1):
        match[0], col = row, 0
        best = np.full(n + 1, np.inf)
        prev = np.zeros(n + 1, dtype=np.int64)
        used = np.zeros(n + 1, dtype=bool)
        while match[col]:
            used[col] = True
            r, delta, nxt = match[col], np.inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    reduced = c[r - 1, j - 1] - u[r] - v[j]
                    if reduced < best[j]:
                        best[j], prev[j] = reduced, col
                    if best[j] < delta:
                        delta, nxt = best[j], j
            u[match[used]] += delta
            v[used] -= delta
            best[~used] -= delta
            col = nxt
        while col:
            match[col] = match[prev[col]]
            col = prev[col]
    out = [0] * n
    for j in range(1, n + 1):
        out[match[j] - 1] = j - 1
    return out
