"""The ``attacks`` registry: name -> attack class (built with keyword hyperparameters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from advlab.attacks.base import Attack
from advlab.registry import Registry


class _AttackRegistry(Registry[Attack]):
    """A registry that also stamps the registry name on the class (``Attack.name``), so
    results and reports name the attack exactly as users build it."""

    def register(self, name: str, factory: Callable[..., Attack] | None = None) -> Any:
        add = super().register(name)

        def stamp(obj: Callable[..., Attack]) -> Callable[..., Attack]:
            if isinstance(obj, type) and issubclass(obj, Attack):
                obj.name = name
            return add(obj)

        return stamp(factory) if factory is not None else stamp


attacks: Registry[Attack] = _AttackRegistry("attack")
