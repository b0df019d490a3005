"""The contenders of the attack benchmark: advlab and its peers, each as ``run(x, y) -> x_adv``.

Every contender gets the same model (the advlab ``Classifier``, an ``nn.Module`` that takes
inputs in [0, 1]) and the same images, and is configured with the same attack settings
(:class:`Settings`) in its own vocabulary. A peer that cannot be imported, or an attack it
lacks, becomes an :class:`Entry` with ``error`` set: the benchmark prints that reason as one
line of its table and goes on.

Peers: torchattacks, Foolbox 3 (with eagerpy) and the Adversarial Robustness Toolbox (ART).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import advlab.attacks
from advlab.attacks import AttackResult
from advlab.models import Classifier

RunFn = Callable[[Tensor, Tensor], Tensor]
"""``run(x (B, C, H, W) in [0, 1], y (B,)) -> x_adv (B, C, H, W)``, all on the model's device."""

BUDGET = ("pgd", "fgsm")  # fixed-eps attacks; the others are minimum-norm (L2) attacks
PEERS = ("torchattacks", "foolbox", "art")


@dataclass(frozen=True)
class Settings:
    """One attack configuration shared by every library (pixel units, [0, 1] images)."""

    eps: float = 0.3  # Linf budget of PGD and FGSM
    pgd_steps: int = 40
    pgd_step: float = 0.01
    cw_steps: int = 100  # optimizer steps per binary-search step
    cw_search: int = 5  # binary-search steps over the constant c
    cw_lr: float = 0.01
    cw_c0: float = 1e-3  # initial constant
    cw_c_torchattacks: float = 1.0  # torchattacks' CW has no binary search: one fixed c
    df_steps: int = 50
    df_overshoot: float = 0.02
    df_candidates: int = 10

    def passes(self, attack: str) -> int:
        """Forward+backward passes of the textbook budget attack (the floor's ``k``)."""
        return {"pgd": self.pgd_steps, "fgsm": 1}[attack]


@dataclass
class Entry:
    """One row of an attack's table: a library (and setting) and how to run it."""

    library: str
    run: RunFn | None = None
    note: str = ""
    error: str | None = None
    comparable: bool = True  # False: not the same algorithm/budget; not a "fastest peer"
    last: dict[str, Any] = field(default_factory=dict)  # advlab: counters of the last result


# --------------------------------------------------------------------------------- imports
class _Stub(types.ModuleType):
    """A do-nothing stand-in for torchvision: any attribute is another stub, calling one
    raises. Some torchattacks releases import torchvision at module level for dataset helpers
    the attacks never use; the benchmark must not pull torchvision (and its multi-GB CUDA
    wheels) into the environment just for that. Only used when the import fails without it."""

    def __getattr__(self, name: str) -> _Stub:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.__name__} is a benchmark stub (torchvision is not installed)")


def _stub_torchvision() -> None:
    for sub in ("", ".datasets", ".transforms", ".models", ".utils"):
        sys.modules.setdefault(f"torchvision{sub}", _Stub(f"torchvision{sub}"))


def import_peer(name: str) -> tuple[types.ModuleType | None, str]:
    """``(module, version note)`` or ``(None, reason)`` for peer ``name``."""
    module = {"torchattacks": "torchattacks", "foolbox": "foolbox", "art": "art"}[name]
    try:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if name != "torchattacks" or not (e.name or "").startswith("torchvision"):
                raise
            _stub_torchvision()  # see _Stub
            mod = importlib.import_module(module)
        if name == "art":  # the submodules pull optional dependencies of their own
            importlib.import_module("art.attacks.evasion")
            importlib.import_module("art.estimators.classification")
    except Exception as e:  # any import failure skips the peer, never the benchmark
        return None, f"cannot import {module}: {type(e).__name__}: {e}"
    stubbed = " (torchvision stubbed)" if isinstance(sys.modules.get("torchvision"), _Stub) else ""
    return mod, f"{module} {getattr(mod, '__version__', '?')}{stubbed}"


def register_all_attacks() -> list[str]:
    """Import every module of ``advlab.attacks`` (registering attacks that the package's
    ``__init__`` does not import yet) and return the registered names."""
    for info in pkgutil.iter_modules(advlab.attacks.__path__):
        try:
            importlib.import_module(f"advlab.attacks.{info.name}")
        except Exception as e:  # a module being written right now may not import yet
            print(f"note: advlab.attacks.{info.name} does not import ({type(e).__name__}: {e})")
    return advlab.attacks.names()


# ---------------------------------------------------------------------------------- advlab
# Each shared setting, with the parameter names an advlab attack may use for it (the first one
# the attack's __init__ accepts is used; minimum-norm attacks are still being written).
_ALIASES: dict[str, dict[str, tuple[tuple[str, ...], Callable[[Settings], Any]]]] = {
    "pgd": {
        "norm": (("norm",), lambda s: "linf"),
        "eps": (("eps",), lambda s: s.eps),
        "steps": (("steps",), lambda s: s.pgd_steps),
        "step_size": (("step_size",), lambda s: s.pgd_step),
        "random_start": (("random_start",), lambda s: True),
    },
    "fgsm": {"eps": (("eps",), lambda s: s.eps)},
    "cw-l2": {
        "steps": (("steps", "max_iter", "iterations"), lambda s: s.cw_steps),
        "search": (("binary_search_steps", "search_steps", "bs_steps"), lambda s: s.cw_search),
        "lr": (("lr", "learning_rate", "step_size", "stepsize"), lambda s: s.cw_lr),
        "c0": (("initial_const", "c0", "c", "const"), lambda s: s.cw_c0),
        "confidence": (("confidence", "kappa"), lambda s: 0.0),
        "abort_early": (("abort_early",), lambda s: True),
    },
    "deepfool": {
        "norm": (("norm",), lambda s: "l2"),
        "steps": (("steps", "max_iter"), lambda s: s.df_steps),
        "overshoot": (("overshoot", "epsilon"), lambda s: s.df_overshoot),
        "candidates": (("candidates", "nb_candidates", "nb_grads"), lambda s: s.df_candidates),
    },
}


def _advlab_kwargs(attack: str, s: Settings) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for advlab's ``attack`` and the settings it has no parameter for."""
    params = inspect.signature(advlab.attacks.attacks.get(attack)).parameters
    kw: dict[str, Any] = {}
    missing: list[str] = []
    for setting, (names, value) in _ALIASES[attack].items():
        name = next((n for n in names if n in params), None)
        if name is None:
            missing.append(setting)
        else:
            kw[name] = value(s)
    return kw, missing


def advlab_entries(attack: str, model: Classifier, s: Settings) -> list[Entry]:
    """advlab's evaluation setting (``early_stop=True``) and textbook setting (off), or a
    single entry for attacks without ``early_stop``."""
    try:
        kw, missing = _advlab_kwargs(attack, s)
        params = inspect.signature(advlab.attacks.attacks.get(attack)).parameters
        modes: list[bool | None] = [True, False] if "early_stop" in params else [None]
        entries = []
        for es in modes:
            extra = {} if es is None else {"early_stop": es}
            atk = advlab.attacks.build(attack, **kw, **extra)
            label = {True: "advlab early-stop", False: "advlab textbook", None: "advlab"}[es]
            entry = Entry(label, note=("no parameter for " + ", ".join(missing)) if missing else "")
            entry.run = _advlab_run(atk, model, entry)
            entries.append(entry)
        return entries
    except Exception as e:
        return [Entry("advlab", error=f"{type(e).__name__}: {e}")]


def _advlab_run(atk: advlab.attacks.Attack, model: Classifier, entry: Entry) -> RunFn:
    def run(x: Tensor, y: Tensor) -> Tensor:
        res: AttackResult = atk(model, x, y)
        entry.last["gradients"] = res.gradients
        entry.last["queries"] = res.queries
        return res.x_adv

    return run


# ------------------------------------------------------------------------------------ peers
def peer_entry(
    peer: str,
    mod: types.ModuleType,
    attack: str,
    net: nn.Module,
    clf: Classifier,
    s: Settings,
    bs: int,
) -> Entry:
    """The peer's version of ``attack`` on ``net`` (the Classifier itself, or a view of it; see
    ``--peer-forward``) as an Entry (``error`` set if it has none). ``clf`` gives the device,
    input shape and number of classes; ``bs`` is the batch size the benchmark feeds."""
    build = {"torchattacks": _torchattacks, "foolbox": _foolbox, "art": _art}[peer]
    try:
        run, note = build(mod, attack, net, clf, s, bs)
    except Exception as e:
        return Entry(peer, error=f"{type(e).__name__}: {e}")
    return Entry(peer, run=run, note=note, comparable=not note.startswith("not comparable"))


def _torchattacks(
    ta: types.ModuleType,
    attack: str,
    net: nn.Module,
    clf: Classifier,
    s: Settings,
    bs: int,
) -> tuple[RunFn, str]:
    # A note starting with "not comparable" marks a different algorithm or budget.
    note = ""
    if attack == "pgd":
        atk = ta.PGD(net, eps=s.eps, alpha=s.pgd_step, steps=s.pgd_steps, random_start=True)
    elif attack == "fgsm":
        atk = ta.FGSM(net, eps=s.eps)
    elif attack == "cw-l2":
        atk = ta.CW(net, c=s.cw_c_torchattacks, kappa=0, steps=s.cw_steps, lr=s.cw_lr)
        note = f"not comparable: no binary search, one run with c={s.cw_c_torchattacks:g}"
    elif attack == "deepfool":
        atk = ta.DeepFool(net, steps=s.df_steps, overshoot=s.df_overshoot)
        note = "all classes (no candidates option), per-image Jacobian loop"
    else:
        raise NotImplementedError(f"no {attack} in torchattacks")

    def run(x: Tensor, y: Tensor) -> Tensor:
        out = atk(x, y)
        x_adv: Tensor = out[0] if isinstance(out, tuple) else out
        return x_adv.detach()

    return run, note


def _foolbox(
    fb: types.ModuleType,
    attack: str,
    net: nn.Module,
    clf: Classifier,
    s: Settings,
    bs: int,
) -> tuple[RunFn, str]:
    fmodel = fb.PyTorchModel(net.eval(), bounds=(0.0, 1.0), device=clf.device)
    eps: float | None = s.eps
    if attack == "pgd":
        atk = fb.attacks.LinfPGD(abs_stepsize=s.pgd_step, steps=s.pgd_steps, random_start=True)
    elif attack == "fgsm":
        atk = fb.attacks.FGSM()
    elif attack == "cw-l2":
        atk = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=s.cw_search,
            steps=s.cw_steps,
            stepsize=s.cw_lr,
            confidence=0,
            initial_const=s.cw_c0,
            abort_early=True,
        )
        eps = None
    elif attack == "deepfool":
        atk = fb.attacks.L2DeepFoolAttack(
            steps=s.df_steps, candidates=s.df_candidates, overshoot=s.df_overshoot
        )
        eps = None
    else:
        raise NotImplementedError(f"no {attack} in foolbox")

    def run(x: Tensor, y: Tensor) -> Tensor:
        clipped: Tensor = atk(fmodel, x, y, epsilons=eps)[1]
        return clipped.detach()

    return run, ""


def _art(
    art: types.ModuleType,
    attack: str,
    net: nn.Module,
    clf: Classifier,
    s: Settings,
    bs: int,
) -> tuple[RunFn, str]:
    from art.attacks import evasion
    from art.estimators.classification import PyTorchClassifier

    dev = clf.device
    estimator = PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(clf.input_shape or ()),
        nb_classes=int(clf.num_classes or 0),
        clip_values=(0.0, 1.0),
        device_type="gpu" if dev.type == "cuda" else "cpu",
    )
    note = ""
    if attack == "pgd":
        atk = evasion.ProjectedGradientDescentPyTorch(
            estimator,
            norm=np.inf,
            eps=s.eps,
            eps_step=s.pgd_step,
            max_iter=s.pgd_steps,
            num_random_init=1,
            batch_size=bs,
            verbose=False,
        )
    elif attack == "fgsm":
        atk = evasion.FastGradientMethod(estimator, norm=np.inf, eps=s.eps, batch_size=bs)
    elif attack == "cw-l2":
        atk = evasion.CarliniL2Method(
            estimator,
            confidence=0.0,
            learning_rate=s.cw_lr,
            binary_search_steps=s.cw_search,
            max_iter=s.cw_steps,
            initial_const=s.cw_c0,
            batch_size=bs,
            verbose=False,
        )
        note = "gradient descent with line search (not Adam)"
    elif attack == "deepfool":
        atk = evasion.DeepFool(
            estimator,
            max_iter=s.df_steps,
            epsilon=s.df_overshoot,
            nb_grads=s.df_candidates,
            batch_size=bs,
            verbose=False,
        )
    else:
        raise NotImplementedError(f"no {attack} in ART")

    def run(x: Tensor, y: Tensor) -> Tensor:
        adv = atk.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
        return torch.from_numpy(np.asarray(adv, dtype=np.float32)).to(dev)

    return run, note
