"""The ``attacks`` registry: name -> attack class (built with keyword hyperparameters)."""

from __future__ import annotations

from advlab.attacks.base import Attack
from advlab.registry import Registry

attacks: Registry[Attack] = Registry("attack")
