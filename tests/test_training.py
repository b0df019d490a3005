"""The training loop: learns, resumes exactly, checkpoints, schedules, RNG hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from _helpers import InterruptAt
from advlab import data, models
from advlab.defenses.training import Recipe, Standard, TrainConfig, train
from advlab.defenses.training.optim import lr_factor
from advlab.models import Classifier


def _data() -> tuple[data.TensorData, data.TensorData]:
    full = data.load("synthetic", "train", n=384, num_classes=3, seed=1)
    return data.train_val_split(full, 0.25, seed=0)


def _model(name: str = "mlp") -> Classifier:
    torch.manual_seed(0)
    return models.build(name, input_shape=(1, 8, 8), num_classes=3)


CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu", seed=3)


def test_learns_synthetic_data_and_leaves_eval_mode() -> None:
    tr, va = _data()
    clf = _model()
    res = train(clf, tr, va, CFG)
    assert len(res.history) == 3
    assert res.last["val_acc"] > 0.9
    assert not clf.training
    assert res.best["val_acc"] == max(r["val_acc"] for r in res.history)


@pytest.mark.parametrize("schedule", ["cosine", "cyclic"])
def test_resume_after_interrupt_reaches_the_same_weights(tmp_path: Path, schedule: str) -> None:
    tr, va = _data()
    cfg = TrainConfig(**{**CFG.to_dict(), "schedule": schedule, "optimizer": "sgd", "lr": 0.05})
    ref = _model("maxout")  # dropout: the resumed run must replay the same masks
    train(ref, tr, va, cfg)

    clf = _model("maxout")
    with pytest.raises(KeyboardInterrupt):
        train(clf, tr, va, cfg, recipe=InterruptAt(Standard(), 15), out=tmp_path)  # 9 batches/epoch
    assert torch.load(tmp_path / "train_state.pt", weights_only=True)["epoch"] == 1
    resumed = _model("maxout")
    res = train(resumed, tr, va, cfg, out=tmp_path, resume=True)
    assert [r["epoch"] for r in res.history] == [1.0, 2.0, 3.0]
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    back = models.load(tmp_path)  # the checkpoint holds the final weights
    for k, v in back.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_existing_run_is_not_overwritten_and_settings_must_match(tmp_path: Path) -> None:
    tr, va = _data()
    train(_model(), tr, va, TrainConfig(**{**CFG.to_dict(), "epochs": 1}), out=tmp_path)
    with pytest.raises(ValueError, match="already holds a training run"):
        train(_model(), tr, va, CFG, out=tmp_path)
    with pytest.raises(ValueError, match=r"lr: saved 0\.003, now 0\.1"):
        train(
            _model(), tr, va, TrainConfig(**{**CFG.to_dict(), "lr": 0.1}), out=tmp_path, resume=True
        )
    res = train(_model(), tr, va, CFG, out=tmp_path, resume=True)  # more epochs is fine
    assert len(res.history) == 3
    assert (tmp_path / "best" / "weights.safetensors").exists()


def test_global_rng_is_untouched() -> None:
    tr, va = _data()
    state = torch.get_rng_state()
    train(_model(), tr, va, TrainConfig(**{**CFG.to_dict(), "epochs": 1}))
    assert torch.equal(state, torch.get_rng_state())


class _LeakyRecipe(Standard):
    """Leaves huge parameter gradients behind while 'crafting'; they must not be applied."""

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        (model.logits(x, check=False).sum() * 1e6).backward()
        return super().loss(model, x, y)


def test_crafting_gradients_never_leak_into_the_update() -> None:
    tr, va = _data()
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 1})
    a, b = _model(), _model()
    train(a, tr, va, cfg)
    train(b, tr, va, cfg, recipe=_LeakyRecipe())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_early_stopping_on_a_recipe_metric() -> None:
    class Worse(Standard):
        def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
            return {"adv_err": float(F.cross_entropy(model.logits(x, check=False), y).detach())}

    tr, va = _data()
    calls = TrainConfig(
        **{
            **CFG.to_dict(),
            "epochs": 6,
            "monitor": "val_adv_err",
            "monitor_mode": "min",
            "patience": 1,
            "lr": 1.0,
            "optimizer": "sgd",
        }
    )
    res = train(_model(), tr, va, calls, recipe=Worse())
    assert "val_adv_err" in res.last
    assert res.stopped_early or len(res.history) == 6


def test_schedules() -> None:
    steps = 10
    cos = lr_factor(TrainConfig(epochs=2, schedule="cosine"), steps)
    assert cos(0) == 1.0 and cos(20) == pytest.approx(0.0)
    step = lr_factor(TrainConfig(epochs=3, schedule="step", milestones=[1, 2], gamma=0.1), steps)
    assert step(9) == 1.0 and step(10) == pytest.approx(0.1) and step(25) == pytest.approx(0.01)
    cyc = lr_factor(TrainConfig(epochs=1, schedule="cyclic", warmup=0.5), steps)
    assert cyc(4) == 1.0 and cyc(0) == pytest.approx(0.2) and cyc(9) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"patience": 0}, "patience"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 1})


def test_bad_data_and_model() -> None:
    tr, va = _data()
    with pytest.raises(TypeError, match="Classifier"):
        train(torch.nn.Linear(2, 2), tr, va, CFG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bounds"):
        train(_model(), (tr.x * 3, tr.y), None, CFG)


class _Abstract(Recipe):
    pass


def test_recipe_must_define_loss() -> None:
    with pytest.raises(TypeError):
        _Abstract()  # type: ignore[abstract]
