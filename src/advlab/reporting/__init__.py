"""Reporting: figures and tables rendered from saved results (never runs attacks)."""

from advlab.reporting.plots import plot_adversarial_grid, plot_transfer_matrix
from advlab.reporting.report import load_report, render

__all__ = ["load_report", "plot_adversarial_grid", "plot_transfer_matrix", "render"]
