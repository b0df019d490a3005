"""``advlab reproduce``: the seed decks' tables, our numbers beside the papers' (issue 8)."""

from advlab.reproduce import goodfellow2015 as _goodfellow2015  # noqa: F401  (registers)
from advlab.reproduce import magnet2017 as _magnet2017  # noqa: F401
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions, run

__all__ = ["Cell", "Context", "Outcome", "Reproduction", "reproductions", "run"]
