"""Visualizations of models and attacks (issue 9): every figure is a ``compute_*`` that returns
plain data (a dict of tensors, numbers, strings; save it with :func:`save_data`) and a
``plot_*`` that turns that data into a matplotlib ``Figure`` (save it with
:func:`advlab.reporting.plots.save_figure`), so a figure can be redrawn without re-running
anything. Figures read in grayscale: grey colormaps for images, line styles and markers for
series, a diverging map only for signed quantities and always with a labelled colorbar.

Network internals (:mod:`advlab.reporting.visualize_net`): first-layer filters, activations of
every layer, saliency (gradient, gradient × input, SmoothGrad), layer-by-layer shift caused by a
perturbation. Attacks (:mod:`advlab.reporting.visualize_attack`): the x + δ = x_adv triptych,
grids over eps, fooling images from noise, Goodfellow et al.'s linearity picture, robustness
curves of several models. See ``docs/visualize.md`` and ``advlab visualize``.
"""

from advlab.reporting.visualize_attack import (
    compute_eps_grid,
    compute_fooling_images,
    compute_linearity,
    compute_robustness_curves,
    compute_triptych,
    plot_eps_grid,
    plot_fooling_images,
    plot_linearity,
    plot_robustness_curves,
    plot_triptych,
)
from advlab.reporting.visualize_common import load_data, save_data
from advlab.reporting.visualize_net import (
    compute_activations,
    compute_filters,
    compute_layer_shift,
    compute_saliency,
    plot_activations,
    plot_filters,
    plot_layer_shift,
    plot_saliency,
    plot_shift_maps,
)

__all__ = [
    "compute_activations",
    "compute_eps_grid",
    "compute_filters",
    "compute_fooling_images",
    "compute_layer_shift",
    "compute_linearity",
    "compute_robustness_curves",
    "compute_saliency",
    "compute_triptych",
    "load_data",
    "plot_activations",
    "plot_eps_grid",
    "plot_filters",
    "plot_fooling_images",
    "plot_layer_shift",
    "plot_linearity",
    "plot_robustness_curves",
    "plot_saliency",
    "plot_shift_maps",
    "plot_triptych",
    "save_data",
]
