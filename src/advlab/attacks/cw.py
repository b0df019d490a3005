"""Carlini-Wagner attacks (Carlini & Wagner 2017, "Towards evaluating the robustness of neural
networks"): ``cw-l2`` (:class:`CWL2`), ``cw-linf`` (:class:`CWLinf`), ``cw-l0`` (:class:`CWL0`).
Importing this module registers all three; each lives in its own module."""

from advlab.attacks.cw_l0 import CWL0
from advlab.attacks.cw_l2 import CWL2
from advlab.attacks.cw_linf import CWLinf

__all__ = ["CWL0", "CWL2", "CWLinf"]
