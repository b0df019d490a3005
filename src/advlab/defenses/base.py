"""Defended models: a defense in front of one or more Classifiers is itself a Classifier.

Every defense states its *gradient story* (``Defended.gradient``):

- ``"exact"``: the defense is differentiable and its autograd gradient is the honest one
  (Gaussian blur, model ensembles);
- ``"bpda"``: a step is non-differentiable or has a useless gradient (JPEG, bit-depth
  reduction, an inner optimization); adaptive attacks use Backward Pass Differentiable
  Approximation (Athalye, Carlini & Wagner 2018): the real step forward, a surrogate
  (identity or a smooth approximation) backward;
- ``"eot"``: the defense is randomized; adaptive attacks average gradients over its randomness
  (Expectation over Transformation);
- ``"bpda+eot"``: both.

Three views of a defended model serve the evaluation (``advlab.evaluate`` runs the suite through
the first two and scores every adversarial input on the defended model itself):

- ``naive()``: what an attacker who ignores the defense would differentiate: the defended model
  with autograd as it comes (zero or missing gradients through non-differentiable steps), or,
  where the paper's threat model is "attacks crafted on the classifier alone" (MagNet,
  Defense-GAN), the undefended classifier;
- ``adaptive()``: the model an informed attacker differentiates: BPDA through non-differentiable
  steps, detector-aware logits for detectors (:func:`detection_aware`), EOT for randomized
  defenses (the evaluation adds EOT itself only when a randomized defense's ``adaptive()`` is
  the model unchanged);
- ``reject(x)``: for detectors, a boolean mask of inputs the defense refuses. A rejected
  adversarial input counts as defended; a rejected clean input counts as an error (a false
  positive), as in Meng & Chen 2017.

Checkpoints: :func:`advlab.models.checkpoint.save` writes a defended model as its whole state
(base weights included) plus ``defense_spec()``; ``load`` rebuilds it through the ``defenses``
registry (factories take the base Classifier(s) positionally and the spec's keyword arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from advlab.models.checkpoint import set_defense_hooks
from advlab.models.classifier import Classifier
from advlab.registry import Registry

if TYPE_CHECKING:
    from advlab.attacks import Attack

GradientStory = Literal["exact", "bpda", "eot", "bpda+eot"]
GRADIENT_STORIES: tuple[str, ...] = ("exact", "bpda", "eot", "bpda+eot")

defenses: Registry[Classifier] = Registry("defense")


def bpda(forward: Tensor, surrogate: Tensor) -> Tensor:
    """The value of ``forward`` with the gradient of ``surrogate`` (same shape): the BPDA
    straight-through trick ``surrogate + (forward - surrogate).detach()``."""
    if forward.shape != surrogate.shape:
        raise ValueError(
            f"BPDA needs the forward and surrogate outputs to have one shape; got "
            f"{tuple(forward.shape)} and {tuple(surrogate.shape)}"
        )
    return surrogate + (forward - surrogate).detach()


class Defended(Classifier):
    """Base class of defenses: a :class:`Classifier` whose ``net`` runs the defense and the base.

    Subclasses set ``name`` (their ``defenses`` registry name) and ``gradient``, build their
    pipeline module (anything mapping pixel-unit inputs to logits; it must call the base with
    ``base.logits(x, check=False)``), and override ``reject``, ``naive``, ``adaptive`` and
    ``defense_args`` as their defense needs. Bounds, classes and input shape are the first
    base's; normalization belongs to the bases.
    """

    name: ClassVar[str] = "defended"
    gradient: ClassVar[GradientStory] = "exact"
    detects: ClassVar[bool] = False

    def __init__(self, pipeline: nn.Module, bases: Sequence[Classifier]) -> None:
        if not bases or not all(isinstance(b, Classifier) for b in bases):
            raise TypeError("a defense needs one or more advlab Classifiers as its base")
        first = bases[0]
        super().__init__(
            pipeline,
            bounds=(first.low, first.high),
            num_classes=first.num_classes,
            input_shape=first.input_shape,
        )
        self.preset = self.name
        self._bases = list(bases)

    @property
    def bases(self) -> list[Classifier]:
        return list(self._bases)

    @property
    def base(self) -> Classifier:
        return self._bases[0]

    @property
    def randomized(self) -> bool:
        return self.gradient in ("eot", "bpda+eot")

    def reject(self, x: Tensor) -> Tensor:
        """Boolean mask ``(N,)`` of inputs the defense refuses (all False unless it detects)."""
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def naive(self) -> Classifier:
        """The model a defense-unaware attacker differentiates (default: this model as is)."""
        return self

    def adaptive(self) -> Classifier:
        """The model an informed attacker differentiates (default: this model as is)."""
        return self

    def adaptive_attacks(self) -> tuple[type[Attack], ...]:
        """The defense's own attacks, beyond any suite's, that ``advlab.evaluate`` also runs on
        the ``adaptive()`` view of this model (default none). Each is an attack class with a
        ``name`` and ``norms``, built with the evaluation's norm, eps and seed; one whose
        ``norms`` lack the evaluation's norm is skipped."""
        return ()

    def defense_args(self) -> dict[str, Any]:
        """JSON-ready keyword arguments that rebuild this defense around its bases."""
        return {}

    def defense_spec(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.defense_args(), "gradient": self.gradient}

    def extra_repr(self) -> str:
        return f"defense={self.name!r}, gradient={self.gradient!r}, " + super().extra_repr()


class DetectionAware(Classifier):
    """A label-conditioned view of a detector-equipped model (see :func:`detection_aware`)."""

    def __init__(
        self,
        model: Classifier,
        score: Callable[[Tensor], Tensor],
        weight: float,
        margin: float,
    ) -> None:
        super().__init__(
            _Plain(model),
            bounds=(model.low, model.high),
            num_classes=model.num_classes,
            input_shape=model.input_shape,
        )
        self.preset = model.preset
        self.train(model.training)
        self._score = score
        self.weight = weight
        self.margin = margin

    def conditioned_logits(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits with the true class ``y`` lifted by ``margin + weight * score`` where the
        detector fires (``score > 0``); attacks call this through ``Problem`` when it exists."""
        logits = self.logits(x, check=False)
        excess = self._score(x).to(logits.dtype)
        lift = torch.where(excess > 0, self.margin + self.weight * excess, torch.zeros_like(excess))
        onehot = torch.zeros_like(logits).scatter(1, y[:, None], 1.0)
        return logits + lift[:, None] * onehot


class _Plain(nn.Module):
    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.logits(x, check=False)


def detection_aware(
    model: Classifier,
    score: Callable[[Tensor], Tensor],
    *,
    weight: float = 10.0,
    margin: float = 20.0,
) -> DetectionAware:
    """A view of ``model`` whose attack objective includes the detector.

    ``score(x)`` is ``(N,)`` and positive exactly where the detector fires (e.g. reconstruction
    error minus threshold, scaled). For an attack (every attack goes through
    :class:`advlab.attacks.problem.Problem`, which calls ``conditioned_logits(x, y)`` when the
    model has it), the true class is lifted by ``margin + weight * score`` on detected inputs:
    a detected input never counts as a success, and the loss gradient there points down the
    detector's score. An untargeted (or targeted) attack on this view therefore looks for inputs
    that are misclassified *and* undetected: the detector folded into the attack loss, as in
    Carlini & Wagner 2017 ("Adversarial examples are not easily detected"; "MagNet and 'Efficient
    defenses against adversarial attacks' are not robust"). ``logits(x)`` without labels (used
    by a few min-norm attacks that build their own objective) is ``model``'s plain logits.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be an advlab Classifier; got {type(model).__name__}")
    if weight < 0 or margin < 0:
        raise ValueError(f"weight and margin must be >= 0; got {weight}, {margin}")
    return DetectionAware(model, score, weight, margin)


def defense_spec(model: Classifier) -> dict[str, Any] | None:
    """``model.defense_spec()`` for a defended model, ``None`` for a plain one."""
    return model.defense_spec() if isinstance(model, Defended) else None


set_defense_hooks(defense_spec, defenses.build)
