"""Evaluation (DESIGN §6): clean accuracy, robustness under attack suites with per-sample worst
case, resumable and sharded runs, sanity checks and the gradient-masking audit, transfer."""

from advlab.evaluation.attack_run import attack_dataset, attack_summary
from advlab.evaluation.clean import CleanReport, evaluate_clean
from advlab.evaluation.flags import CODES, Flag
from advlab.evaluation.report import RobustnessReport
from advlab.evaluation.runner import evaluate
from advlab.evaluation.stats import wilson
from advlab.evaluation.substitute import split_seed, substitute_attack, train_substitute
from advlab.evaluation.suites import AttackSpec, Suite, get_suite, suite_from_config, suites
from advlab.evaluation.transfer import transfer_matrix

__all__ = [
    "CODES",
    "AttackSpec",
    "CleanReport",
    "Flag",
    "RobustnessReport",
    "Suite",
    "attack_dataset",
    "attack_summary",
    "evaluate",
    "evaluate_clean",
    "get_suite",
    "split_seed",
    "substitute_attack",
    "suite_from_config",
    "suites",
    "train_substitute",
    "transfer_matrix",
    "wilson",
]
