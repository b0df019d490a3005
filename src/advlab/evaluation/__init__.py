"""Evaluation: clean accuracy now; robustness suites build on it."""

from advlab.evaluation.attack_run import attack_dataset, attack_summary
from advlab.evaluation.clean import CleanReport, evaluate_clean

__all__ = ["CleanReport", "attack_dataset", "attack_summary", "evaluate_clean"]
