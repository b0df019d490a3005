"""Request and response bodies of the JSON API (pydantic: validation, JSON schema, OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from advlab.serve.images import MAX_PNG_CHARS, MAX_SIDE

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_STEPS = 5000

Row = Annotated[list[float], Field(min_length=1, max_length=MAX_SIDE)]
Grid = Annotated[list[Row], Field(min_length=1, max_length=MAX_SIDE)]
Png = Annotated[str, Field(min_length=1, max_length=MAX_PNG_CHARS)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]


class AttackRequest(BaseModel):
    """``POST /api/attack``. Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image": [[0.0] * 28] * 28, "model": "plain", "attack": "fgsm", "eps": 0.25}
            ]
        },
    )

    image: Grid | Png = Field(
        description="grayscale image, 0 = background, 1 = ink: rows of floats in [0, 1], or a "
        "base64 PNG (optionally a data: URL); the model's size, 28x28 or 280x280 (reduced to "
        "the model's size by area averaging)"
    )
    model: Name = Field(description="a name from GET /api/models")
    attack: Name = Field(description="a name from GET /api/attacks")
    eps: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Linf budget in pixel units; at most the model's eps.max",
    )
    steps: int = Field(
        default=20,
        ge=1,
        le=MAX_STEPS,
        description="iterations (or queries); each attack has its own range, see /api/attacks",
    )
    target: int | None = Field(
        default=None,
        ge=0,
        le=999,
        description="target class for a targeted attack; null = untargeted",
    )
    adaptive: StrictBool = Field(
        default=False,
        description="defended models only: craft the attack on the defense's adaptive view "
        "(detection-aware for MagNet, BPDA for Defense-GAN) instead of the classifier alone "
        "(naive); true on an undefended model is refused",
    )


class ClassProb(BaseModel):
    cls: int = Field(description="class index")
    label: str
    prob: float


class Rejected(BaseModel):
    clean: bool = Field(
        description="the detector rejected the input itself (for a clean digit: a false positive)"
    )
    adversarial: bool = Field(
        description="the detector rejected the adversarial input: it counts as defended"
    )


class AttackResponse(BaseModel):
    model: str
    attack: str
    config: dict[str, Any] = Field(description="the attack's resolved hyperparameters")
    x: list[list[float]] = Field(description="the input as the model saw it (model size)")
    x_adv: list[list[float]]
    perturbation: list[list[float]] = Field(description="x_adv - x")
    pred_before: int
    pred_after: int
    top3_before: list[ClassProb]
    top3_after: list[ClassProb]
    success: bool = Field(
        description="prediction changed (untargeted) / equals target; for a model with a "
        "detector, also: the adversarial input was accepted"
    )
    target: int | None
    linf: float
    l2: float
    gradients: int = Field(description="backward passes the attack spent")
    queries: int = Field(description="forward passes the attack spent")
    ms: float = Field(description="server time for prediction + attack, milliseconds")
    adaptive: bool = Field(description="the request's adaptive flag")
    view: str = Field(
        description="what the attack was crafted on: 'model' (an undefended model itself), "
        "'naive' (a defended model's classifier alone) or 'adaptive' (its adaptive view); "
        "predictions are always the served model's"
    )
    defense: str | None = Field(description="the model's defense (magnet, defense-gan) or null")
    rejected: Rejected | None = Field(
        description="the detector's verdicts, for models with a detector (MagNet); null for "
        "the others"
    )


class Sample(BaseModel):
    index: int = Field(description="index in the test split")
    label: int
    image: list[list[float]]


class SamplesResponse(BaseModel):
    dataset: str
    shape: list[int]
    class_names: list[str]
    samples: list[Sample]


class CurveResponse(BaseModel):
    model: str
    eps: list[float]
    curves: dict[str, list[float]] = Field(
        description="accuracy (fraction) per eps: fgsm, pgd and pgd-margin (undefended "
        "models) or fgsm, pgd (naive) and pgd-adaptive (defended models)"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="legend of each curve")
    note: str | None = Field(
        default=None, description="how the curves count (defended models: rejections)"
    )
    n: int
    pgd_steps: int
    seconds: float


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, str]] | None = None
