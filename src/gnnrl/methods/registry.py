"""The search methods by name: one `register_method` call makes a method known to `search`, `compress`, the CLI's
`--method` choices, the resume check and the plots, so that a new method is one new file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import GnnrlError

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..env import DNNGraphEnv
    from .base import Method

Builder = Callable[["DNNGraphEnv", "SearchConfig"], "Method"]


@dataclass(frozen=True)
class MethodSpec:
    """What the search loop needs to know of a method besides its `Method` object."""

    name: str
    build: Builder
    """(env, config) -> the method, built once per search"""
    one_shot: bool = False
    """one deterministic episode (a heuristic) instead of `config.episodes`"""
    warmup: bool = False
    """the first `config.warmup` episodes are random (the learning methods): checked shorter than the search,
    shaded in the plots"""
    agent_fields: frozenset[str] | None = None
    """the `DDPGConfig` fields the method reads (None: none). A resumed run is refused only when one of these
    changed, not for an agent setting the method never reads"""
    help: str = ""

    def reads(self, config: dict[str, Any]) -> dict[str, Any]:
        """The part of stored settings (`asdict(SearchConfig)`) this method reads."""
        if self.agent_fields is None:
            return {k: v for k, v in config.items() if k != "agent"}
        return {**config, "agent": {k: v for k, v in config.get("agent", {}).items() if k in self.agent_fields}}


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, one_shot: bool = False, warmup: bool = False,
                    agent_fields: frozenset[str] | None = None, help: str = "") -> Callable[[Builder], Builder]:
    """Decorator: make `build(env, config) -> Method` (a class or a function) the search method `name`."""

    def add(build: Builder) -> Builder:
        if name in _METHODS and _METHODS[name].build is not build:
            raise GnnrlError(f"a search method named {name!r} is registered already; choose another name")
        _METHODS[name] = MethodSpec(name, build, one_shot, warmup, agent_fields, help)
        return build

    return add


def unregister_method(name: str) -> None:
    """Forget the method `name` (tests, and a user replacing a method of their own)."""
    _METHODS.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every registered method, in registration order (the built-ins first)."""
    return tuple(_METHODS)


def method_spec(name: str) -> MethodSpec:
    """The registered method `name`; one clear error naming the choices otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise GnnrlError(f"unknown search method {name!r}; choose one of {', '.join(_METHODS)}") from None
