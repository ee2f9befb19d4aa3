"""The shape of the code: no import circle among gnnrl's modules, counting every import (top level, under
TYPE_CHECKING, inside functions), so data flows one way (trace → groups → prune → … → cli)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gnnrl"


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module name -> the gnnrl modules it imports anywhere in its text."""
    files = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    edges: dict[str, set[str]] = {m: set() for m in files}
    for m, f in files.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            edges[m].update(n for n in names if n in files and n != m)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle() -> None:
    edges = import_graph()
    assert len(edges) > 40 and "gnnrl.ops.registry" in edges["gnnrl.ops.conv"]  # the graph was read
    assert circles(edges) == []


def test_import_and_cli_parser_do_not_load_pyg() -> None:
    """`import gnnrl` and building the CLI (`gnnrl --help`, `gnnrl info`) leave PyTorch Geometric unloaded: it costs
    seconds at start-up and only an agent's m-GNN needs it."""
    import subprocess
    import sys

    code = ("import sys, gnnrl, gnnrl.cli; gnnrl.cli.build_parser(); "
            "print('torch_geometric' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_config_lives_on_the_ground_floor_and_validates() -> None:
    """Each `…Config` dataclass is defined in gnnrl.config (nowhere else), its defaults pass its `validate()`, and a
    value no run can use is refused there, in one GnnrlError, before any work."""
    import dataclasses

    import pytest

    from gnnrl import config
    from gnnrl.errors import GnnrlError

    elsewhere = [f"{f.name}:{node.name}" for f in SRC.rglob("*.py") if f.name != "config.py"
                 for node in ast.walk(ast.parse(f.read_text()))
                 if isinstance(node, ast.ClassDef) and node.name.endswith("Config")]
    assert elsewhere == []
    configs = {name: cls for name, cls in vars(config).items()
               if dataclasses.is_dataclass(cls) and name.endswith("Config")}
    assert set(configs) == {"EnvConfig", "DDPGConfig", "SearchConfig", "TrainConfig", "CompressConfig",
                            "ParallelConfig"}
    bad = {"EnvConfig": {"budget": 1.0}, "DDPGConfig": {"actor_lr": 0.0}, "SearchConfig": {"round_size": 0},
           "TrainConfig": {"lr": 0.0},
           "CompressConfig": {"latency_batches": (1, 0)}, "ParallelConfig": {"workers": 0}}
    for name, changes in bad.items():
        configs[name]().validate()
        with pytest.raises(GnnrlError):
            dataclasses.replace(configs[name](), **changes).validate()
    # a nested bad setting is refused by the outer config too: compress refuses a bad fine-tune before its search
    with pytest.raises(GnnrlError, match="kd-weight"):
        config.CompressConfig(finetune=config.finetune_config(kd_weight=2.0)).validate()
