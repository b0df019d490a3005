"""Name -> object registries used by the CLI, config files and tests (DESIGN §3)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class UnknownNameError(ValueError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named collection of factories (classes or functions returning ``T``).

    ``register(name)`` is a decorator; registering a name twice raises ``ValueError``.
    ``build(name, **kw)`` calls the factory; ``get(name)`` returns it; ``names()`` lists them.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    @overload
    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]: ...
    @overload
    def register(self, name: str, factory: Callable[..., T]) -> Callable[..., T]: ...

    def register(self, name: str, factory: Callable[..., T] | None = None) -> Any:
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty word; got {name!r}")

        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> T:
        """Call the factory (positional ``args``, e.g. the base models of a defense, pass
        through); a keyword it does not take raises ``ValueError`` naming the ones it takes
        (factories that accept ``**kwargs`` check their own)."""
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            known = [
                k
                for k, p in params.items()
                if k != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            unknown = sorted(set(kwargs) - set(known))
            if unknown:
                raise ValueError(
                    f"{self.kind} {name} has no hyperparameter {', '.join(map(repr, unknown))}; "
                    f"its hyperparameters: {', '.join(known) or '(none)'}"
                )
        return factory(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
