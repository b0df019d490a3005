"""``advlab reproduce``: the seed decks' tables, our numbers beside the papers' (issue 8)."""

from advlab.reproduce import carlini2017 as _carlini2017  # noqa: F401
from advlab.reproduce import deepfool2016 as _deepfool2016  # noqa: F401
from advlab.reproduce import defensegan2018 as _defensegan2018  # noqa: F401
from advlab.reproduce import goodfellow2015 as _goodfellow2015  # noqa: F401  (registers)
from advlab.reproduce import kurakin2017 as _kurakin2017  # noqa: F401
from advlab.reproduce import madry2018 as _madry2018  # noqa: F401
from advlab.reproduce import magnet2017 as _magnet2017  # noqa: F401
from advlab.reproduce import onepixel2019 as _onepixel2019  # noqa: F401
from advlab.reproduce import papernot2016 as _papernot2016  # noqa: F401
from advlab.reproduce import tramer2018 as _tramer2018  # noqa: F401
from advlab.reproduce import uap2017 as _uap2017  # noqa: F401
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions, run

__all__ = ["Cell", "Context", "Outcome", "Reproduction", "reproductions", "run"]
