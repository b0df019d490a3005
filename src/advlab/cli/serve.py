"""``advlab serve``: the offline web demo (FastAPI + uvicorn; ``pip install 'advlab[serve]'``).

On first start it trains the demo models (plain, fast-AT, PGD-AT, distilled LeNets and MagNet
in front of the plain one; about a minute and a half of CPU time for MNIST) and caches them in
``--models-dir``; later starts load them in seconds. Defense-GAN is opt-in: ``--models
...,defense-gan`` trains a demo-quality GAN at first start (about 2 more minutes), or
``--defense-gan-checkpoint DIR`` serves one made by ``advlab train --defense defense-gan``.
MNIST comes from ``--data-dir`` / ``$ADVLAB_DATA`` / ``~/.cache/advlab`` (downloaded
unless ``--offline``); when it cannot be had, the bundled 8x8 scikit-learn digits are used.
Then it precomputes each model's accuracy-vs-eps curve and serves the page and the JSON API
(``docs/serve.md``) on ``http://HOST:PORT/``, by default on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import time
from pathlib import Path

from advlab import data as aldata
from advlab.cli.common import CLIError, add_common
from advlab.cli.demo import _load as load_mnist_or_digits

logger = logging.getLogger("advlab")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="web demo: attack small MNIST models in the browser (needs advlab[serve])"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; the demo has no "
        "authentication, so expose it with care)",
    )
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="cache of the trained demo models (default: <data root>/serve-models, i.e. "
        "$ADVLAB_DATA/serve-models or ~/.cache/advlab/serve-models)",
    )
    p.add_argument(
        "--data",
        choices=("mnist", "digits"),
        default="mnist",
        help="mnist (default; falls back to digits when MNIST is missing) or digits (8x8)",
    )
    p.add_argument(
        "--offline", action="store_true", help="never download MNIST; use digits if it is missing"
    )
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated demo models (default: plain,fast-at,pgd-at,distilled,magnet; "
        "add defense-gan to train a demo-quality Defense-GAN at first start, ~2 min on a CPU)",
    )
    p.add_argument(
        "--defense-gan-checkpoint",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve the Defense-GAN checkpoint in DIR (made by advlab train --defense "
        "defense-gan for the same dataset) as the defense-gan model, instead of training one",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny training budget (seconds; for smoke tests, the models are weak)",
    )
    p.add_argument(
        "--no-curves",
        action="store_true",
        help="do not precompute the accuracy-vs-eps curves at start (they are then computed "
        "on first request)",
    )
    add_common(p)
    p.set_defaults(run=run)


def _check_host(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise CLIError(f"--port must be in [0, 65535]; got {port}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        logger.warning(
            "serving on %s: reachable from other machines; the demo has no authentication",
            host,
        )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from advlab.serve.app import create_app
    except ImportError as e:
        raise CLIError(
            f"advlab serve needs FastAPI and uvicorn ({e}); install them with "
            "pip install 'advlab[serve]'"
        ) from None
    from advlab.serve.curves import CurveConfig, cached_curve
    from advlab.serve.models import (
        DEFAULT_MODELS,
        default_models_dir,
        load_defense_gan_checkpoint,
        load_zoo,
    )

    _check_host(args.host, args.port)
    t0 = time.perf_counter()
    seed = 0 if args.seed is None else args.seed
    if args.data == "digits":
        train_data, test = aldata.load("digits", "train"), aldata.load("digits", "test")
    else:
        train_data, test = load_mnist_or_digits(args.data_dir, args.offline)
    names = list(DEFAULT_MODELS)
    if args.models is not None:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    checkpoint = args.defense_gan_checkpoint
    if checkpoint is not None:
        if not checkpoint.is_dir():
            raise CLIError(f"--defense-gan-checkpoint {checkpoint}: no such folder")
        if "defense-gan" not in names:
            names.append("defense-gan")
    models_dir = args.models_dir or default_models_dir()
    device = args.device or "cpu"  # one image at a time: the CPU answers fastest
    print(f"advlab serve: {train_data.name} ({len(train_data)} training images); models in "
          f"{models_dir}", flush=True)  # fmt: skip
    try:
        dg = None
        if checkpoint is not None:  # first: a wrong folder fails before any training
            dg = load_defense_gan_checkpoint(
                checkpoint, train_data, test, models_dir, quick=args.quick, device=device
            )
        zoo = load_zoo(
            train_data,
            test,
            models_dir,
            names=[n for n in names if not (dg is not None and n == "defense-gan")],
            quick=args.quick,
            seed=seed,
            device=device,
        )
        if dg is not None:
            zoo = {n: (dg if n == "defense-gan" else zoo[n]) for n in names}
    except ValueError as e:
        raise CLIError(str(e)) from None
    curve = CurveConfig(n=100, adaptive_steps=10) if args.quick else CurveConfig()
    if not args.no_curves:
        for m in zoo.values():
            print(f"accuracy-vs-eps curve for {m.name}...", flush=True)
            cached_curve(m, test, curve)
    app = create_app(zoo, test, curve=curve)
    print(
        f"ready in {time.perf_counter() - t0:.0f} s: open http://{args.host}:{args.port}/ "
        "(Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
