"""Attacks (DESIGN §3): budget and minimum-norm base classes, norm strategies, losses, and the
white-box algorithms, all registered in ``attacks``.

    atk = advlab.attacks.build("pgd", norm="linf", eps=0.3, steps=40, step_size=0.01)
    res = atk(clf, x, y)            # AttackResult: x_adv, success, norms, logits_adv, queries
"""

from typing import Any

from advlab.attacks.apgd import APGDCE, APGDDLR, APGDT
from advlab.attacks.base import Attack, BudgetAttack, MinNormAttack, attack_mode
from advlab.attacks.cw import CWL0, CWL2, CWLinf
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.fab import FAB, FABT
from advlab.attacks.hsja import HopSkipJump
from advlab.attacks.jsma import JSMA
from advlab.attacks.norms import L0, L1, L2, Linf, LpNorm, get_norm
from advlab.attacks.one_pixel import OnePixel
from advlab.attacks.pgd import BIM, FGM, FGSM, ILLC, MIFGSM, PGD, NoiseFooling, RandFGSM
from advlab.attacks.physical import (
    JPEG,
    ColorShift,
    DefocusBlur,
    Exposure,
    MotionBlur,
    Perspective,
    PrintPhoto,
    Resample,
    SensorNoise,
    destruction_rate,
    photographed,
)
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.attacks.result import AttackResult
from advlab.attacks.spatial import Lighting, Spatial
from advlab.attacks.square import Square
from advlab.attacks.transfer import TransferAttack
from advlab.attacks.universal import UniversalPerturbation


def build(name: str, **kwargs: Any) -> Attack:
    """Build a registered attack by name with keyword hyperparameters; an unknown name or
    hyperparameter raises ``ValueError`` listing the known ones."""
    return attacks.build(name, **kwargs)


def names() -> list[str]:
    return attacks.names()


__all__ = [
    "APGDCE",
    "APGDDLR",
    "APGDT",
    "BIM",
    "CWL0",
    "CWL2",
    "FAB",
    "FABT",
    "FGM",
    "FGSM",
    "ILLC",
    "JPEG",
    "JSMA",
    "L0",
    "L1",
    "L2",
    "MIFGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "BudgetAttack",
    "CWLinf",
    "ColorShift",
    "DeepFool",
    "DefocusBlur",
    "Exposure",
    "HopSkipJump",
    "Lighting",
    "Linf",
    "LpNorm",
    "MinNormAttack",
    "MotionBlur",
    "NoiseFooling",
    "OnePixel",
    "Perspective",
    "PrintPhoto",
    "Problem",
    "RandFGSM",
    "Resample",
    "SensorNoise",
    "Spatial",
    "Square",
    "TransferAttack",
    "UniversalPerturbation",
    "attack_mode",
    "attacks",
    "build",
    "destruction_rate",
    "get_norm",
    "names",
    "photographed",
]
