"""Evaluation: clean accuracy now; robustness suites build on it."""

from advlab.evaluation.clean import CleanReport, evaluate_clean

__all__ = ["CleanReport", "evaluate_clean"]
