"""MagNet (Meng & Chen 2017): autoencoders, calibration, naive vs adaptive attacks, checkpoints."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from advlab import data
from advlab.attacks import attacks
from advlab.data import TensorData
from advlab.defenses.base import DetectionAware, defenses
from advlab.defenses.magnet import (
    CIFAR_DETECTORS,
    AutoEncoder,
    GrayBoxMagNet,
    MagNet,
    jsd,
    magnet,
)
from advlab.defenses.magnet_fit import fit_autoencoder, fit_autoencoders, fit_magnet
from advlab.models import Classifier

FPR = 0.05  # large enough to measure on a few hundred digits
FIT = {"epochs": 30, "lr": 1e-2, "batch_size": 64, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def split() -> tuple[TensorData, torch.Tensor]:
    """Digits train split: the first 1000 images train the autoencoders, the rest calibrate."""
    tr = data.load("digits", "train")
    return TensorData(tr.x[:1000], tr.y[:1000], 10), tr.x[1000:]


@pytest.fixture(scope="module")
def fitted(
    digits_model: tuple[Classifier, TensorData], split: tuple[TensorData, torch.Tensor]
) -> MagNet:
    clf, _ = digits_model
    train_set, x_val = split
    return fit_magnet(clf, train_set, x_val, fpr=FPR, seed=0, **FIT)  # type: ignore[arg-type]


def robust(m: MagNet, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """Defended accuracy: correct after the reformer, or rejected."""
    return float(((m.predict(x_adv) == y) | m.reject(x_adv)).float().mean())


@pytest.mark.parametrize("arch", ["I", "II"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 7, 7), (3, 32, 32)])
def test_autoencoder_shapes_and_seed(arch: str, shape: tuple[int, int, int]) -> None:
    state = torch.get_rng_state()
    ae = AutoEncoder(arch, shape[0], seed=3)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    out, activity = ae.reconstruct(x)
    assert out.shape == x.shape and activity.shape == (2,)
    assert bool(((out > 0) & (out < 1)).all())
    again = AutoEncoder(arch, shape[0], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(ae.parameters(), again.parameters(), strict=True))
    assert torch.equal(state, torch.get_rng_state())  # no global RNG use
    with pytest.raises(ValueError, match="channels"):
        ae(torch.rand(2, shape[0] + 1, *shape[1:]))


def test_fit_autoencoder_learns_and_is_seeded(split: tuple[TensorData, torch.Tensor]) -> None:
    train_set, x_val = split
    fresh = AutoEncoder("II", 1, seed=0)
    with torch.no_grad():
        before = float(((fresh(x_val) - x_val) ** 2).mean())
    kw = {"epochs": 10, "lr": 1e-2, "batch_size": 64, "seed": 1, "device": "cpu", "progress": False}
    ae = fit_autoencoder("II", train_set, **kw)  # type: ignore[arg-type]
    ae2 = fit_autoencoder("II", train_set.x, **kw)  # type: ignore[arg-type]
    assert not ae.training
    with torch.no_grad():
        after = float(((ae(x_val) - x_val) ** 2).mean())
    assert after < 0.5 * before
    assert all(torch.equal(a, b) for a, b in zip(ae.parameters(), ae2.parameters(), strict=True))
    with pytest.raises(ValueError, match="channels"):
        fit_autoencoder(AutoEncoder("I", 3), train_set, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="epochs"):
        fit_autoencoder("I", train_set, epochs=0, device="cpu")


def test_diversity_penalty_starts_after_pretraining(split: tuple[TensorData, torch.Tensor]) -> None:
    train_set, x_val = split
    kw = {"epochs": 2, "lr": 1e-2, "batch_size": 64, "device": "cpu", "progress": False}

    def pool(diversity: float, pretrain: int) -> torch.Tensor:
        aes = [AutoEncoder("II", 1, seed=s) for s in (0, 1)]
        fit_autoencoders(aes, train_set, diversity=diversity, pretrain_epochs=pretrain, **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            return torch.stack([a(x_val[:50]) for a in aes])

    plain, late, early = pool(0.0, 0), pool(5.0, 1), pool(5.0, 0)
    # the penalty changes training only in the epochs after the pre-training ones
    assert not torch.equal(late, plain) and not torch.equal(late, early)
    # and it pushes the two members' reconstructions apart
    assert float((late[0] - late[1]).abs().mean()) > float((plain[0] - plain[1]).abs().mean())
    for bad in (-1, 2, 1.5, True):
        with pytest.raises(ValueError, match="pretrain_epochs"):
            fit_autoencoders([AutoEncoder("II", 1)], train_set, pretrain_epochs=bad, **kw)  # type: ignore[arg-type]


def test_killed_training_resumes_from_its_checkpoint(
    split: tuple[TensorData, torch.Tensor],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train_set, _ = split
    kw = {"epochs": 3, "lr": 1e-2, "batch_size": 100, "seed": 2, "diversity": 0.1}
    kw |= {"device": "cpu", "progress": False}

    def pool() -> list[AutoEncoder]:
        return [AutoEncoder("II", 1, seed=s) for s in (0, 1)]

    whole = fit_autoencoders(pool(), train_set, **kw)  # type: ignore[arg-type]
    ckpt = tmp_path / "ae.pt"
    steps = {"n": 0}
    real_step = torch.optim.Adam.step

    def dies_in_epoch_two(self: torch.optim.Adam, *a: Any, **k: Any) -> Any:
        steps["n"] += 1
        if steps["n"] == 15:  # 10 batches per epoch: in the middle of the second
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit_autoencoders(pool(), train_set, checkpoint=ckpt, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert torch.load(ckpt, weights_only=True)["epochs_done"] == 1
    resumed = fit_autoencoders(pool(), train_set, checkpoint=ckpt, **kw)  # type: ignore[arg-type]
    for a, b in zip(whole, resumed, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # the finished checkpoint gives the same weights without training again
    again = fit_autoencoders(pool(), train_set, checkpoint=ckpt, **kw)  # type: ignore[arg-type]
    assert all(
        torch.equal(p, q) for p, q in zip(again[1].parameters(), whole[1].parameters(), strict=True)
    )
    with pytest.raises(ValueError, match=r"another run.*seed"):
        fit_autoencoders(pool(), train_set, checkpoint=ckpt, **{**kw, "seed": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"another run.*data"):
        fit_autoencoders(pool(), train_set.x[:500], checkpoint=ckpt, **kw)  # type: ignore[arg-type]
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        fit_autoencoders(pool(), train_set, checkpoint=ckpt, **kw)  # type: ignore[arg-type]


def test_fit_magnet_checkpoint_folder_resumes(
    digits_model: tuple[Classifier, TensorData],
    split: tuple[TensorData, torch.Tensor],
    tmp_path: Path,
) -> None:
    clf, _ = digits_model
    train_set, x_val = split
    kw = {**FIT, "epochs": 2, "fpr": FPR, "seed": 0}
    plain = fit_magnet(clf, train_set, x_val, **kw)  # type: ignore[arg-type]
    first = fit_magnet(clf, train_set, x_val, checkpoint_dir=tmp_path, **kw)  # type: ignore[arg-type]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "autoencoders-0-I.pt",
        "autoencoders-1-II.pt",
    ]
    again = fit_magnet(clf, train_set, x_val, checkpoint_dir=tmp_path, **kw)  # type: ignore[arg-type]
    for m in (first, again):
        assert all(
            torch.equal(a, b)
            for a, b in zip(plain.state_dict().values(), m.state_dict().values(), strict=True)
        )


def test_false_positive_rate_matches_target(
    fitted: MagNet,
    split: tuple[TensorData, torch.Tensor],
    digits_model: tuple[Classifier, TensorData],
) -> None:
    _, x_val = split
    n, d = x_val.shape[0], 2
    val_fpr = float(fitted.reject(x_val).float().mean())
    # each detector rejects exactly floor(n * fpr / d) validation inputs; their union <= fpr
    assert math.floor(n * FPR / d) / n <= val_fpr <= FPR
    x_test = digits_model[1].x
    test_fpr = float(fitted.reject(x_test).float().mean())
    sigma = math.sqrt(FPR * (1 - FPR) / x_test.shape[0])
    assert FPR / d - 3 * sigma <= test_fpr <= FPR + 3 * sigma
    thr = fitted.magnet.thresholds
    assert thr.shape == (1, 2) and bool(torch.isfinite(thr).all())


def test_clean_accuracy_within_margin(
    fitted: MagNet, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    base_acc = float((clf.predict(test.x) == test.y).float().mean())
    reformed = fitted.predict(test.x) == test.y
    # the 8x8 digits lose detail in autoencoder I's 4x4 bottleneck: 3-5 points here
    assert float(reformed.float().mean()) >= base_acc - 0.08
    accepted = reformed & ~fitted.reject(test.x)  # rejected clean inputs count as errors
    assert float(accepted.float().mean()) >= base_acc - 0.08 - FPR - 0.04


def test_reject_mask_and_no_mutation(
    fitted: MagNet, digits_model: tuple[Classifier, TensorData]
) -> None:
    x = digits_model[1].x[:17].clone()
    keep = x.clone()
    mask = fitted.reject(x)
    assert mask.dtype == torch.bool and mask.shape == (17,)
    assert fitted.reject(x[:0]).shape == (0,)
    assert fitted.logits(x).shape == (17, 10)
    assert torch.equal(x, keep)
    with pytest.raises(ValueError):
        fitted.reject(x * 2)  # outside the bounds


def test_naive_attacks_are_rejected_or_reformed(
    fitted: MagNet, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    x, y = test.x[:200], test.y[:200]
    assert fitted.naive() is clf and fitted.gradient == "exact" and fitted.detects
    for atk in (
        attacks.build("fgsm", eps=0.2),
        attacks.build("pgd", eps=0.2, steps=20, step_size=0.025),
    ):
        res = atk(fitted.naive(), x, y)
        undefended = float((clf.predict(res.x_adv) == y).float().mean())
        assert undefended <= 0.1
        assert robust(fitted, res.x_adv, y) >= 0.9


def test_adaptive_attack_breaks_it(
    fitted: MagNet, digits_model: tuple[Classifier, TensorData]
) -> None:
    _, test = digits_model
    x, y = test.x[:200], test.y[:200]
    view = fitted.adaptive()
    assert isinstance(view, DetectionAware)
    # the margin loss keeps the detector term's gradient (CE saturates once the lift applies);
    # no random start: a uniform Linf start is itself rejected
    kw = {"eps": 0.2, "steps": 50, "step_size": 0.02, "loss": "margin", "random_start": False}
    naive = attacks.build("pgd", **kw)(fitted.naive(), x, y)
    adaptive = attacks.build("pgd", early_stop=True, **kw)(view, x, y)
    naive_acc, adaptive_acc = robust(fitted, naive.x_adv, y), robust(fitted, adaptive.x_adv, y)
    assert naive_acc >= 0.9
    assert adaptive_acc <= 0.35 and adaptive_acc <= naive_acc - 0.5
    # the score is positive exactly on rejected inputs
    both = torch.cat([x, adaptive.x_adv, naive.x_adv])
    with torch.no_grad():
        assert torch.equal(fitted.score(both) > 0, fitted.reject(both))


def test_untrained_and_uncalibrated_raise(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    m = magnet(clf)
    with pytest.raises(RuntimeError, match=r"untrained.*fit_magnet"):
        m.predict(test.x[:4])
    with pytest.raises(RuntimeError, match="untrained"):
        m.reject(test.x[:4])
    with pytest.raises(RuntimeError, match="untrained"):
        m.adaptive()
    m.magnet.trained.fill_(True)
    m.predict(test.x[:4])  # the reformer works; the detectors need thresholds
    with pytest.raises(RuntimeError, match="not calibrated"):
        m.reject(test.x[:4])
    m.calibrate(test.x, fpr=0.1)
    assert m.reject(test.x[:4]).shape == (4,)


def test_checkpoint_round_trip(fitted: MagNet, digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    args = fitted.defense_args()
    assert json.loads(json.dumps(args)) == args
    assert fitted.defense_spec() == {"name": "magnet", "args": args, "gradient": "exact"}
    assert "magnet" in defenses
    rebuilt = defenses.get("magnet")(copy.deepcopy(clf), **args)
    assert isinstance(rebuilt, MagNet)
    with pytest.raises(RuntimeError):
        rebuilt.reject(test.x[:2])
    rebuilt.load_state_dict(fitted.state_dict())
    rebuilt.eval()
    assert torch.equal(rebuilt.logits(test.x), fitted.logits(test.x))
    assert torch.equal(rebuilt.marks(test.x), fitted.marks(test.x))
    assert torch.equal(rebuilt.reject(test.x), fitted.reject(test.x))


def test_gray_box_pool_is_seeded_random_and_attackable(
    digits_model: tuple[Classifier, TensorData], split: tuple[TensorData, torch.Tensor]
) -> None:
    clf, test = digits_model
    train_set, x_val = split
    kw = {**FIT, "epochs": 15, "lr": 2e-2}
    m = fit_magnet(clf, train_set, x_val, fpr=FPR, pool=2, seed=5, **kw)  # type: ignore[arg-type]
    assert isinstance(m, GrayBoxMagNet) and m.gradient == "eot" and m.randomized
    assert m.defense_spec()["gradient"] == "eot" and m.defense_args()["pool"] == 2
    x, y = test.x[:120], test.y[:120]
    for k in range(2):  # every member is calibrated on its own
        assert (
            float((m.marks(x_val, member=k) > m.magnet.thresholds[k]).any(1).float().mean()) <= FPR
        )
    twin = defenses.get("magnet")(copy.deepcopy(clf), **m.defense_args())
    assert isinstance(twin, GrayBoxMagNet)
    twin.load_state_dict(m.state_dict())
    state = torch.get_rng_state()
    first = [m.logits(x), m.reject(x), m.logits(x)]
    second = [twin.logits(x), twin.reject(x), twin.logits(x)]
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # same seed
    assert not torch.equal(first[0], first[2])  # fresh draws per forward
    for k in range(2):  # member views: the pool's own autoencoders and thresholds, shared
        one = m.member(k)
        assert isinstance(one, MagNet) and not isinstance(one, GrayBoxMagNet)
        assert one.magnet.ae("I", 0) is m.magnet.ae("I", k) and not one.training
        assert torch.equal(one.magnet.thresholds[0], m.magnet.thresholds[k])
        assert torch.equal(one.marks(x), m.marks(x, member=k))
        fixed = torch.full((x.shape[0],), k, dtype=torch.long)
        with torch.no_grad():
            assert torch.equal(one.logits(x), m.magnet.logits_with(x, fixed))
            assert torch.equal(one.reject(x), m.magnet.score(x, fixed) > 0)
    with pytest.raises(ValueError, match=r"member must be in \[0, 2\)"):
        m.member(2)
    with pytest.raises(TypeError, match="int"):
        m.member(True)
    view = m.adaptive()
    with torch.no_grad():
        assert torch.equal(view.logits(x), view.logits(x))  # exact expectation: deterministic
    pgd = {"eps": 0.2, "steps": 40, "step_size": 0.02, "loss": "margin", "random_start": False}
    adaptive = attacks.build("pgd", early_stop=True, **pgd)(view, x, y)
    naive = attacks.build("pgd", **pgd)(m.naive(), x, y)
    naive_acc, adaptive_acc = robust(m, naive.x_adv, y), robust(m, adaptive.x_adv, y)
    assert naive_acc >= 0.85  # measured 0.99
    # it must evade every member's detectors at once (score maximized over the pool): 0.35
    assert adaptive_acc <= 0.55 and adaptive_acc <= naive_acc - 0.35


def test_bad_arguments(digits_model: tuple[Classifier, TensorData], fitted: MagNet) -> None:
    clf, test = digits_model
    with pytest.raises(ValueError, match="unknown MagNet autoencoder"):
        AutoEncoder("III")
    with pytest.raises(ValueError, match="detector"):
        magnet(clf, detectors=["I:l3"])
    with pytest.raises(ValueError, match="autoencoder"):
        magnet(clf, detectors=["X:l1"])
    with pytest.raises(ValueError, match="temperature"):
        magnet(clf, detectors=["I:jsd@-1"])
    with pytest.raises(ValueError, match="detectors"):
        magnet(clf, detectors="I:l2")
    with pytest.raises(ValueError, match="pool"):
        magnet(clf, pool=0)
    with pytest.raises(ValueError, match="GrayBoxMagNet"):
        MagNet(clf, pool=2)
    with pytest.raises(ValueError, match="channels"):
        magnet(clf, channels=3)
    with pytest.raises(ValueError, match="fpr"):
        fitted.calibrate(test.x, fpr=1.0)
    with pytest.raises(ValueError, match="member"):
        fitted.marks(test.x[:2], member=1)
    assert fitted.member(0) is fitted
    with pytest.raises(ValueError, match="member"):
        fitted.member(1)
    with pytest.raises(TypeError):
        magnet(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_jsd_detector_and_cifar_layout(digits_model: tuple[Classifier, TensorData]) -> None:
    a, b = torch.randn(5, 10), torch.randn(5, 10)
    assert torch.allclose(jsd(a, a), torch.zeros(5), atol=1e-6)
    assert torch.allclose(jsd(a, b), jsd(b, a)) and bool((jsd(a, b) <= math.log(2) + 1e-6).all())
    clf, test = digits_model
    m = magnet(clf, reformer="II", detectors=CIFAR_DETECTORS)
    m.magnet.trained.fill_(True)
    marks = m.marks(test.x[:6])
    assert marks.shape == (6, 3) and bool((marks >= 0).all())
