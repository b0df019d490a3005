"""The web demo's FastAPI application: ``create_app(models, data)`` serves the page and the
JSON API. See ``docs/serve.md`` for the API, the limits and the design choices.

Endpoints: ``GET /`` (the page), ``GET /static/*``, ``GET /api/models``, ``GET /api/attacks``,
``GET /api/samples``, ``GET /api/curve?model=``, ``POST /api/attack``, and FastAPI's
``/openapi.json`` and ``/docs``.

Defended models (MagNet, Defense-GAN: :class:`advlab.defenses.Defended`) are attacked through
their naive view (the classifier alone) or, with ``"adaptive": true``, their adaptive view;
predictions and the detector's verdicts (``rejected``) are the defended model's.

Every error is a JSON object ``{"detail": "<one readable message>"}`` (validation errors add
``errors``: up to 10 ``{"loc", "msg"}``); a failing attack answers 500 and the server keeps
running. Model computations are serialized by one lock: the models are shared, attacks toggle
their ``requires_grad`` flags, and on a small CPU box parallel attacks would only compete.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from advlab._version import __version__
from advlab.attacks import BudgetAttack
from advlab.data import TensorData
from advlab.serve.attacks import MENU, AttackSpec
from advlab.serve.curves import CurveConfig, cached_curve
from advlab.serve.images import ImageError, grid_to_tensor, png_to_tensor, to_grid, to_model_input
from advlab.serve.models import DemoModel
from advlab.serve.schemas import (
    AttackRequest,
    AttackResponse,
    ClassProb,
    CurveResponse,
    ErrorResponse,
    Rejected,
    SamplesResponse,
)

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a 280x280 float grid with long decimals is ~1.5 MB
N_SAMPLES = 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, by Content-Length
    before reading and by counting while reading (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._refuse(send, 400, "Content-Length must be a non-negative integer")
                return
            if int(length) > limit:
                await self._refuse(
                    send, 413, f"request body is {int(length)} bytes; the limit is {limit}"
                )
                return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # answer now; the app then sees the client gone
                    refused = True
                    if not started:
                        await self._refuse(
                            send, 413, f"request body is over the limit of {limit} bytes"
                        )
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; drop whatever the app answers
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not refused:
                raise


def _error(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(status_code=status, content=body)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """One line from pydantic's errors (never echoing the input, which may be a whole image)."""
    errors: list[dict[str, str]] = []
    for e in exc.errors()[:10]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "json_invalid":
            loc, msg = "body", f"body is not valid JSON ({e.get('ctx', {}).get('error', msg)})"
        errors.append({"loc": loc, "msg": msg})
    more = len(exc.errors()) - len(errors)
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:3])
    if len(exc.errors()) > 3:
        detail += f" (and {len(exc.errors()) - 3} more)"
    if more > 0:
        errors.append({"loc": "", "msg": f"{more} more errors not shown"})
    return detail, errors


def _top3(logits: torch.Tensor, names: list[str]) -> list[ClassProb]:
    p = torch.softmax(logits.float().reshape(-1), 0)
    k = min(3, p.numel())
    values, idx = p.topk(k)
    return [
        ClassProb(
            cls=int(i), label=names[int(i)] if int(i) < len(names) else str(int(i)), prob=float(v)
        )
        for v, i in zip(values.tolist(), idx.tolist(), strict=True)
    ]


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if v is None or isinstance(v, bool | int | float | str)}


def pick_samples(data: TensorData, n: int = N_SAMPLES) -> list[int]:
    """Indices of ``n`` test images, cycling over the classes (first images of each class)."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(data.y.tolist()):
        by_class.setdefault(int(label), []).append(i)
    out: list[int] = []
    round_ = 0
    while len(out) < min(n, len(data)):
        for c in sorted(by_class):
            if round_ < len(by_class[c]) and len(out) < n:
                out.append(by_class[c][round_])
        round_ += 1
    return out


def create_app(
    models: Mapping[str, DemoModel],
    data: TensorData,
    *,
    curve: CurveConfig | None = None,
    attacks: Mapping[str, AttackSpec] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The app serving ``models`` (``{name: DemoModel}``, in menu order) and sample digits
    from ``data`` (the test split; its images must have the models' input shape ``(1, H, W)``).

    ``curve`` configures the accuracy-vs-eps curves (computed lazily per model, cached);
    ``attacks`` replaces the attack menu (default :data:`advlab.serve.attacks.MENU`).
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    shape = tuple(data.input_shape)
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"the demo serves grayscale (1, H, W) images; the data has {shape}")
    for name, m in models.items():
        if m.input_shape != shape:
            raise ValueError(f"model {name!r} takes {m.input_shape}; the data's images are {shape}")
    menu = dict(MENU if attacks is None else attacks)
    curve_cfg = curve or CurveConfig()
    names = list(data.class_names) or [str(i) for i in range(data.num_classes)]
    model_hw = (int(shape[1]), int(shape[2]))
    sample_idx = pick_samples(data)
    lock = threading.Lock()
    curves: dict[str, dict[str, Any]] = {}

    app = FastAPI(
        title="advlab web demo",
        version=__version__,
        description="Attack small MNIST classifiers in the browser. Images are grayscale, "
        "0 = background, 1 = ink; eps is a Linf budget in pixel units.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.models = models
    app.state.lock = lock

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_message(exc)
        return _error(422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    errors_doc: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (404, 413, 422, 500)
    }

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/models")
    def list_models() -> dict[str, Any]:
        """The models, in menu order: name, label, description, input shape, eps range, clean
        accuracy, whether a detector rejects inputs (``detects``) and the defense (``null``
        when undefended: its name, gradient story, naive and adaptive views, settings)."""
        return {"dataset": data.name, "models": [m.info() for m in models.values()]}

    @app.get("/api/attacks")
    def list_attacks() -> dict[str, Any]:
        """The attack menu: name, label, description, whether eps is used, steps range."""
        return {"attacks": [a.info() for a in menu.values()]}

    @app.get("/api/samples", response_model=SamplesResponse)
    def samples(n: int = Query(N_SAMPLES, ge=1, le=100)) -> SamplesResponse:
        """``n`` test digits (cycling over the classes) as rows of floats, with labels."""
        idx = sample_idx if n <= len(sample_idx) else pick_samples(data, n)
        return SamplesResponse.model_validate(
            {
                "dataset": data.name,
                "shape": list(model_hw),
                "class_names": names,
                "samples": [
                    {"index": i, "label": int(data.y[i]), "image": to_grid(data.x[i], 3)}
                    for i in idx[:n]
                ],
            }
        )

    def get_model(name: str, status: int) -> DemoModel:
        if name not in models:
            raise HTTPException(status, f"unknown model {name!r}; known: {', '.join(models)}")
        return models[name]

    @app.get("/api/curve", response_model=CurveResponse, responses=errors_doc)
    def get_curve(model: str = Query(..., min_length=1, max_length=64)) -> CurveResponse:
        """Accuracy vs eps (FGSM, PGD, PGD with margin loss; defended models: FGSM and PGD
        naive, PGD adaptive, a rejected adversarial input counting as defended) on a fixed
        test subset; computed on first request per model (seconds), then cached."""
        m = get_model(model, 404)
        with lock:
            if model not in curves:
                curves[model] = cached_curve(m, data, curve_cfg)
        return CurveResponse.model_validate(curves[model])

    @app.post("/api/attack", response_model=AttackResponse, responses=errors_doc)
    def attack(req: AttackRequest) -> AttackResponse | JSONResponse:
        """Attack one image; answers predictions before/after, the adversarial image and the
        perturbation (model size), their Linf and L2 sizes and the server time. On a defended
        model the attack is crafted on its naive or (``adaptive: true``) adaptive view and
        scored on the defended model; ``rejected`` gives a detector's verdicts."""
        m = get_model(req.model, 422)
        if req.attack not in menu:
            raise HTTPException(422, f"unknown attack {req.attack!r}; known: {', '.join(menu)}")
        spec = menu[req.attack]
        if spec.uses_eps and req.eps > m.eps_max:
            raise HTTPException(
                422, f"eps must be in [0, {m.eps_max:g}] for model {m.name}; got {req.eps:g}"
            )
        if spec.steps is not None and not spec.steps[0] <= req.steps <= spec.steps[1]:
            lo, hi, _ = spec.steps
            raise HTTPException(
                422,
                f"steps must be in [{lo}, {hi}] for {spec.name} ({spec.steps_label}); "
                f"got {req.steps}",
            )
        defense = m.defense
        if req.adaptive and defense is None:
            raise HTTPException(
                422,
                f"adaptive applies to defended models only; model {m.name} has no defense "
                "(send adaptive: false)",
            )
        limit = m.adaptive_max_steps
        if req.adaptive and limit is not None and spec.steps is not None and req.steps > limit:
            raise HTTPException(
                422,
                f"steps must be at most {limit} for an adaptive attack on {m.name} (every "
                f"step or query costs a pass through the defense); got {req.steps}",
            )
        k = int(m.clf.num_classes or len(names))
        if req.target is not None:
            if req.target >= k:
                raise HTTPException(422, f"target must be in [0, {k}); got {req.target}")
            if not spec.targeted:
                raise HTTPException(422, f"{spec.name} is untargeted; send target: null")
        try:
            img = (
                png_to_tensor(req.image, model_hw)
                if isinstance(req.image, str)
                else grid_to_tensor(req.image, model_hw)
            )
            steps = req.steps if spec.steps is not None else 1
            atk = spec.build(req.eps, steps)
            if req.adaptive and m.detects and isinstance(atk, BudgetAttack) and not atk.early_stop:
                # keep each image's first adversarial *and undetected* iterate: a later one is
                # often detected again (docs/serve.md, "Defended models")
                atk = spec.build(req.eps, steps, early_stop=True)
        except (ImageError, ValueError) as e:
            raise HTTPException(422, str(e)) from None
        clf = m.clf
        x = to_model_input(img, model_hw).to(clf.device)  # (1, 1, H, W)
        t0 = time.perf_counter()
        rejected: Rejected | None = None
        with lock:
            try:
                view = m.view(req.adaptive)  # clf itself when undefended
                with torch.no_grad():
                    logits0 = clf.logits(x)  # (1, K)
                pred0 = logits0.argmax(1)  # (1,)
                target = None if req.target is None else torch.tensor([req.target], device=x.device)
                res = atk(view, x, pred0, target=target)
                logits1 = res.logits_adv
                if defense is not None:  # crafted on a view: predictions are the defended model's
                    with torch.no_grad():
                        logits1 = clf.logits(res.x_adv)
                    if defense.detects:
                        rej = defense.reject(torch.cat([x, res.x_adv]))
                        rejected = Rejected(clean=bool(rej[0]), adversarial=bool(rej[1]))
            except Exception as e:
                logger.exception("attack %s on model %s failed", spec.name, m.name)
                return _error(500, f"attack {spec.name} failed: {type(e).__name__}: {e}")
        ms = 1000 * (time.perf_counter() - t0)
        delta = (res.x_adv - x).reshape(-1)
        pred1 = int(logits1.argmax(1))
        if defense is None:
            success = bool(res.success[0])
        else:
            fooled = pred1 == req.target if req.target is not None else pred1 != int(pred0)
            success = fooled and not (rejected is not None and rejected.adversarial)
        return AttackResponse(
            model=m.name,
            attack=spec.name,
            config=_jsonable(atk.config()),
            x=to_grid(x),
            x_adv=to_grid(res.x_adv),
            perturbation=to_grid(res.x_adv - x),
            pred_before=int(pred0),
            pred_after=pred1,
            top3_before=_top3(logits0, names),
            top3_after=_top3(logits1, names),
            success=success,
            target=req.target,
            linf=float(delta.abs().max()),
            l2=float(delta.norm()),
            gradients=int(res.gradients[0]),
            queries=int(res.queries[0]),
            ms=round(ms, 2),
            adaptive=req.adaptive,
            view="model" if defense is None else ("adaptive" if req.adaptive else "naive"),
            defense=None if defense is None else defense.name,
            rejected=rejected,
        )

    return app
