"""Reporting: figures and tables. Reports and plots are rendered from saved results; the
``visualize`` figures come as ``compute_*`` (runs the model, and for the attack figures an
attack, returning plain data) + ``plot_*`` (draws saved data) pairs."""

from advlab.reporting import visualize
from advlab.reporting.plots import plot_adversarial_grid, plot_transfer_matrix
from advlab.reporting.report import load_report, render

__all__ = ["load_report", "plot_adversarial_grid", "plot_transfer_matrix", "render", "visualize"]
