"""Reporting: figures and tables rendered from saved results (never runs attacks)."""

from advlab.reporting.plots import plot_adversarial_grid

__all__ = ["plot_adversarial_grid"]
