"""Defense-GAN (issue 7): WGAN-GP training, the projection, the views, the latent attack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advlab import data, models
from advlab.attacks import attacks
from advlab.data import TensorData
from advlab.defenses.base import defenses
from advlab.defenses.defense_gan import (
    DefenseGAN,
    LatentAttackResult,
    Projector,
    latent_attack,
    reconstruct,
)
from advlab.defenses.gan import Critic, Generator, size_chain, train_gan
from advlab.models import Classifier, checkpoint

# a tiny, quickly trained GAN for 8x8 digits (the paper's settings are latent 128, width 64,
# lr 1e-4, n_critic 5 and many more iterations). 400 iterations (13 s on one thread): after 200
# the projection's clean accuracy on the first 40 test digits was 25-30% and depended on the
# CPU's floating-point path; after 400 it is 65%
GAN_ITERATIONS = 400
TINY = {"latent_dim": 16, "width": 16}


@pytest.fixture(scope="module")
def gan() -> Generator:
    train_set = data.load("digits", "train")
    return train_gan(
        train_set,
        iterations=GAN_ITERATIONS,
        n_critic=2,
        lr=1e-3,
        batch_size=64,
        seed=0,
        device="cpu",
        progress=False,
        **TINY,
    )


@pytest.fixture(scope="module")
def dgan(gan: Generator, digits_model: tuple[Classifier, TensorData]) -> DefenseGAN:
    clf, _ = digits_model
    return DefenseGAN(clf, gan, iterations=30, restarts=4, seed=0)


@pytest.fixture(scope="module")
def batch(digits_model: tuple[Classifier, TensorData]) -> tuple[torch.Tensor, torch.Tensor]:
    _, test = digits_model
    return test.x[:60].clone(), test.y[:60].clone()


# ------------------------------------------------------------------------------------- the GAN


def test_architecture_sizes() -> None:
    assert size_chain(28) == (4, 7, 14, 28)
    assert size_chain(8) == (1, 2, 4, 8)
    for s in (8, 28, 13):
        g, d = Generator(8, s, 1, 4), Critic(s, 1, 4)
        with torch.no_grad():
            img = g(torch.randn(3, 8))
        assert img.shape == (3, 1, s, s)
        assert float(img.min()) >= 0 and float(img.max()) <= 1
        assert d(img).shape == (3,)
    assert Generator().image_shape == (1, 28, 28) and Generator().latent_dim == 128


def test_trained_generator(gan: Generator) -> None:
    assert bool(gan.fitted) and not gan.training
    h = gan.history
    assert h is not None and h.iterations_done == GAN_ITERATIONS and not h.stopped_by_time
    assert len(h.iteration) == len(h.wasserstein) == len(h.generator_loss) >= 2
    json.dumps(h.to_dict())
    assert all(p.grad is None for p in gan.parameters())
    with torch.no_grad():
        s = gan(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)))
    assert s.shape == (64, 1, 8, 8) and float(s.std(0).mean()) > 0.02  # not a single image


def test_train_gan_seeded_and_global_rng_untouched() -> None:
    x = data.load("digits", "train").x[:200]
    state = torch.get_rng_state()
    kw = {"iterations": 2, "latent_dim": 4, "width": 2, "n_critic": 1, "progress": False}
    a = train_gan(x, seed=3, device="cpu", **kw)  # type: ignore[arg-type]
    b = train_gan(x, seed=3, device="cpu", **kw)  # type: ignore[arg-type]
    assert torch.equal(state, torch.get_rng_state())
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    t = train_gan(x, time_limit=1e-9, seed=0, device="cpu", latent_dim=4, width=2, progress=False)
    assert t.history is not None and t.history.iterations_done == 1
    assert t.history.stopped_by_time


def test_train_gan_bad_arguments() -> None:
    x = data.load("digits", "train").x[:50]
    with pytest.raises(ValueError, match="iterations, epochs or time_limit"):
        train_gan(x)
    with pytest.raises(ValueError, match="iterations must be"):
        train_gan(x, iterations=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_gan(x * 2, iterations=1)
    with pytest.raises(ValueError, match="square images"):
        train_gan(torch.rand(10, 1, 8, 6), iterations=1)
    with pytest.raises(ValueError, match="n_critic"):
        train_gan(x, iterations=1, n_critic=0)
    with pytest.raises(ValueError, match="image_size"):
        Generator(image_size=0)


# ------------------------------------------------------------------------------ the projection


def test_reconstruction_error_falls_with_iterations(
    gan: Generator, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = batch
    errs = [
        float(Projector(gan, iterations=L, restarts=4).project(x)[2].mean()) for L in (0, 10, 50)
    ]
    assert errs[0] > errs[1] > errs[2], errs
    # more restarts never hurt at L = 0 (the first R draws are shared)
    e1 = float(Projector(gan, iterations=0, restarts=1).project(x)[2].mean())
    assert e1 >= errs[0]


def test_projection_deterministic_batched_and_in_bounds(
    gan: Generator, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = batch
    x0 = x.clone()
    p = Projector(gan, iterations=20, restarts=3, seed=5, batch_size=64)
    rec, z, mse = p.project(x)
    assert torch.equal(x, x0)  # input not mutated
    assert rec.shape == x.shape and z.shape == (60, 16) and mse.shape == (60,)
    assert float(rec.min()) >= 0 and float(rec.max()) <= 1
    assert not rec.requires_grad
    assert torch.equal(rec, p.project(x)[0])  # same x -> same output
    # per sample, in another order, in other chunk sizes: the same projection
    one = Projector(gan, iterations=20, restarts=3, seed=5, batch_size=1)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:12]
    rec_one = torch.cat([one.project(x[i : i + 1])[0] for i in perm.tolist()])
    torch.testing.assert_close(rec_one, rec[perm], atol=1e-5, rtol=0)
    other_seed = Projector(gan, iterations=0, restarts=3, seed=6).project(x)[0]
    assert not torch.equal(other_seed, Projector(gan, iterations=0, restarts=3, seed=5)(x))
    # all restarts: the chosen one is the best
    _, z_all, mse_all = p.project(x, return_all=True)
    assert z_all.shape == (60, 3, 16) and mse_all.shape == (60, 3)
    torch.testing.assert_close(mse_all.min(1).values, mse)


def test_defended_model_gradients_modes_and_views(
    dgan: DefenseGAN, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    x = x[:20]
    assert dgan.name == "defense-gan" and dgan.gradient == "bpda"
    assert dgan.naive() is dgan.base
    gen, base = dgan.generator, dgan.base
    was = (gen.training, base.training)
    gen.train()  # the projection must run in eval mode and give the flag back
    try:
        xr = x.clone().requires_grad_(True)
        logits = dgan.logits(xr)
        assert logits.shape == (20, 10)
        (g_naive,) = torch.autograd.grad(logits.sum(), xr)
        assert float(g_naive.abs().max()) == 0.0  # masked (zero), not crashing
        assert gen.training
        xa = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(dgan.adaptive()(xa), y[:20])
        loss.backward()  # a full backward: the generator still gets nothing
        assert xa.grad is not None and float(xa.grad.abs().sum()) > 0  # BPDA: identity backward
        assert gen.training
    finally:
        gen.train(was[0])
        base.train(was[1])
        base.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in gen.parameters())  # nothing leaked into the generator
    # the BPDA view's forward is the defended model's
    torch.testing.assert_close(dgan.adaptive()(x), dgan.logits(x))
    torch.testing.assert_close(dgan.logits(x), base.logits(dgan.project(x)))
    # predict works under no_grad (the projection enables grad for its own inner loop)
    assert dgan.predict(x).shape == (20,)


def test_naive_vs_adaptive(dgan: DefenseGAN, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    x, y = x[:40], y[:40]
    clean = float((dgan.predict(x) == y).float().mean())
    assert clean > 0.3  # far above chance (0.1) even with a tiny GAN and L = 30
    pgd = attacks.build("pgd", eps=0.2, steps=10, step_size=0.05, seed=0)
    naive = pgd(dgan.naive(), x, y)  # the paper's white-box setting: crafted on the classifier
    adaptive = pgd(dgan.adaptive(), x, y)  # BPDA through the projection
    for res in (naive, adaptive):
        assert float((res.x_adv - x).abs().max()) <= 0.2 + 1e-6
        assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    acc_naive = float((dgan.predict(naive.x_adv) == y).float().mean())
    acc_adaptive = float((dgan.predict(adaptive.x_adv) == y).float().mean())
    assert naive.accuracy < 0.2  # the attack does break the undefended classifier
    # BPDA is at least as strong as crafting on the classifier alone; a tiny GAN removes little
    # of either perturbation, so the two are close: allow one sample of noise
    assert acc_adaptive <= acc_naive + 1 / len(y), (clean, acc_naive, acc_adaptive)
    assert acc_adaptive < clean / 2, (clean, acc_adaptive)


def test_latent_attack(dgan: DefenseGAN, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    x, y = x[:20], y[:20]
    res = latent_attack(dgan, x, y, max_mse=0.05, steps=30, search_steps=2)
    assert isinstance(res, LatentAttackResult)
    assert res.x_adv.shape == x.shape
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert bool((res.mse <= 0.05).all())
    assert bool((res.pred[res.success] != y[res.success]).all())
    assert res.success_rate > 0
    assert torch.equal(res.pred, dgan.predict(res.x_adv))
    assert res.accuracy <= float((dgan.predict(x) == y).float().mean())
    mse = (res.x_adv - x).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(mse[res.success], res.mse[res.success])
    assert all(p.grad is None for p in dgan.parameters())
    with pytest.raises(ValueError, match="max_mse"):
        latent_attack(dgan, x, y, max_mse=0)
    with pytest.raises(ValueError, match="y must"):
        latent_attack(dgan, x, y[:3])


# ------------------------------------------------------------------- errors, registry, helpers


def test_bad_parameters(gan: Generator, digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    with pytest.raises(ValueError, match=r"iterations \(L\)"):
        DefenseGAN(clf, gan, iterations=-1)
    with pytest.raises(ValueError, match=r"restarts \(R\)"):
        DefenseGAN(clf, gan, restarts=0)
    with pytest.raises(ValueError, match="lr"):
        DefenseGAN(clf, gan, lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        DefenseGAN(clf, gan, momentum=1.0)
    with pytest.raises(ValueError, match="variant"):
        DefenseGAN(clf, gan, variant="both")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        DefenseGAN(clf, torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        DefenseGAN(clf, Generator(16, 28, 1, 4))
    untrained = DefenseGAN(clf, Generator(**TINY, image_size=8))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="untrained"):
        untrained.predict(test.x[:2])
    d = DefenseGAN(clf, gan, iterations=0, restarts=1)
    with pytest.raises(ValueError, match="outside the model's bounds"):
        d.predict(test.x[:2] + 2)
    with pytest.raises(ValueError, match="shape"):
        d.project(torch.rand(2, 1, 9, 9))


def test_registry_and_checkpoint_round_trip(
    dgan: DefenseGAN, digits_model: tuple[Classifier, TensorData], tmp_path: Path
) -> None:
    _, test = digits_model
    args = dgan.defense_args()
    assert json.loads(json.dumps(args)) == args
    assert args["variant"] == "orig" and args["iterations"] == 30 and args["restarts"] == 4
    assert dgan.defense_spec()["gradient"] == "bpda"
    base = models.build("lenet", input_shape=(1, 8, 8), num_classes=10)
    rebuilt = defenses.build("defense-gan", base, **args)
    assert isinstance(rebuilt, DefenseGAN) and not rebuilt.fitted
    with pytest.raises(RuntimeError, match="untrained"):
        rebuilt.predict(test.x[:2])
    rebuilt.load_state_dict(dgan.state_dict())
    rebuilt.eval()
    assert rebuilt.fitted
    x = test.x[:16]
    torch.testing.assert_close(rebuilt.logits(x), dgan.logits(x))
    loaded = checkpoint.load(checkpoint.save(dgan, tmp_path / "dgan"))
    assert isinstance(loaded, DefenseGAN) and loaded.fitted and not loaded.generator.training
    torch.testing.assert_close(loaded.logits(x), dgan.logits(x))
    with pytest.raises(ValueError, match="image_size"):
        defenses.build("defense-gan", Classifier(torch.nn.Flatten()))


def test_reconstruct(dgan: DefenseGAN, digits_model: tuple[Classifier, TensorData]) -> None:
    _, test = digits_model
    small = test.subset(slice(0, 24))
    rec = reconstruct(dgan, small, 10)
    assert isinstance(rec, TensorData)
    assert rec.name.endswith("-rec") and torch.equal(rec.y, small.y)
    torch.testing.assert_close(rec.x, dgan.project(small.x))
    tensor_rec = reconstruct(dgan.projector, small.x, 7)
    assert isinstance(tensor_rec, torch.Tensor)
    torch.testing.assert_close(tensor_rec, rec.x)
    rec_variant = DefenseGAN(dgan.base, dgan.generator, variant="rec")
    assert rec_variant.defense_args()["variant"] == "rec"
    with pytest.raises(TypeError, match="DefenseGAN, Projector or Generator"):
        reconstruct(dgan.base, small)  # type: ignore[arg-type]
