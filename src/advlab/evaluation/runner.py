"""``advlab.evaluate``: robustness of a Classifier under an attack suite (DESIGN §6).

The data is cut into fixed batches; each batch runs every attack of the suite at every eps
(ascending: a sample broken at a smaller eps stays broken, with the same input, at every larger
one), keeps the per-sample worst case, and is written to the state folder as soon as it is done.
An interrupted run started again with the same state folder loads the finished batches and
computes only the rest. Under ``torchrun`` batch ``b`` runs on rank ``b % world_size`` and rank 0
gathers. Attack seeds depend only on the batch's position, so single-process, sharded and
resumed runs give the same numbers. Before attacking, :func:`~advlab.evaluation.flags.precheck`
looks at outputs, determinism and gradients (a randomized model is attacked through
:func:`advlab.models.eot`); after attacking, :func:`~advlab.evaluation.audit.run_audit` compares
the suite with probe attacks.
"""

from __future__ import annotations

import datetime
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advlab._version import __version__
from advlab.data import TensorData
from advlab.defenses.base import Defended
from advlab.evaluation.assemble import assemble
from advlab.evaluation.audit import AuditInput, run_audit
from advlab.evaluation.batch import ROBUST, BatchJob, run_batch
from advlab.evaluation.flags import Flag, check_bounds, precheck
from advlab.evaluation.report import KIND, SCHEMA_VERSION, RobustnessReport
from advlab.evaluation.state import EvalState, model_digest, tensor_digest
from advlab.evaluation.suites import AttackSpec, Suite, defended_suite, get_suite, suites
from advlab.evaluation.transfer import broken_by_transfer, craft
from advlab.models.classifier import Classifier
from advlab.models.eot import eot
from advlab.utils import dist
from advlab.utils.device import resolve_device
from advlab.utils.modes import restored_modes
from advlab.utils.progress import progress

DataLike = TensorData | tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]


def _tensors(data: DataLike) -> tuple[Tensor, Tensor, str, list[str]]:
    if isinstance(data, TensorData):
        return data.x, data.y, data.name, list(data.class_names)
    x: Tensor
    y: Tensor
    if isinstance(data, tuple) and len(data) == 2:
        pair: tuple[Any, ...] = data
        x, y = pair
        if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
            raise TypeError("an (x, y) pair must hold two tensors")
    else:
        try:
            parts: list[Any] = list(data)  # a DataLoader or any iterable of (x, y) batches
            x = torch.cat([p[0] for p in parts])
            y = torch.cat([p[1] for p in parts])
        except (TypeError, IndexError, RuntimeError) as err:
            raise TypeError(
                "data must be a TensorData, an (x, y) pair of tensors or an iterable of (x, y) "
                f"batches ({err})"
            ) from None
    if x.ndim < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (N, ...) and y (N,); got {tuple(x.shape)}, {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices; got dtype {y.dtype}")
    return x, y.long(), "custom", []


def _eps_list(eps: float | Sequence[float]) -> list[float]:
    values = [eps] if isinstance(eps, int | float) else list(eps)
    if not values:
        raise ValueError("give at least one eps")
    for e in values:
        if isinstance(e, bool) or not isinstance(e, int | float) or not e > 0:
            raise ValueError(f"every eps must be a number > 0; got {e!r}")
    return sorted({float(e) for e in values})


def evaluate(
    model: Classifier,
    data: DataLike,
    *,
    eps: float | Sequence[float],
    suite: str | Suite | Mapping[str, Any] = "quick",
    norm: str = "linf",
    n: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    device: str | torch.device = "auto",
    state_dir: str | Path | None = None,
    audit: bool = True,
    audit_n: int = 200,
    eot_samples: int = 10,
    transfer_from: Mapping[str, Classifier] | None = None,
    n_examples: int = 8,
    model_name: str | None = None,
    data_name: str | None = None,
    split: str | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> RobustnessReport:
    """Evaluate ``model`` on ``data`` under ``suite`` at each ``eps``; see docs/report-format.md.

    Args:
        data: a ``TensorData``, an ``(x, y)`` pair or an iterable of ``(x, y)`` batches
            (e.g. a DataLoader); ``n`` keeps the first ``n`` samples.
        suite: a registered suite name (``advlab.evaluation.suites``), a custom suite mapping,
            or a ``Suite``.
        state_dir: folder for per-batch state; a run with the same state folder resumes.
        audit: run the gradient-masking audit on up to ``audit_n`` correctly classified samples.
        eot_samples: forward passes averaged per query when the model turns out randomized.
        transfer_from: source models whose adversarial inputs (the quick suite's attacks, at the
            largest eps) are also scored, giving the ``transfer`` block and its audit flag.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be an advlab Classifier; got {type(model).__name__}")
    x_all, y_all, dname, class_names = _tensors(data)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1; got {n!r}")
        x_all, y_all = x_all[:n], y_all[:n]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    eps_values = _eps_list(eps)
    the_suite = get_suite(suite, norm)
    check_bounds(model, x_all)
    dev = dist.rank_device(device) if dist.is_distributed() else resolve_device(device)
    was_training = model.training
    t0 = time.perf_counter()
    with restored_modes(model):
        model.to(dev).eval()
        with torch.no_grad():
            model.logits(x_all[:2].to(dev))  # checks outputs, fixes num_classes
        k = int(model.num_classes or 0)
        if int(y_all.min()) < 0 or int(y_all.max()) >= k:
            raise ValueError(
                f"labels must be in [0, {k}); got [{int(y_all.min())}, {int(y_all.max())}]"
            )
        probe = slice(0, min(256, x_all.shape[0]))
        pre = precheck(model, x_all[probe].to(dev), y_all[probe].to(dev), was_training=was_training)
        attacked = eot(model, eot_samples) if pre.randomized else model
        attacked.eval()
        views, reject = _defense_views(model, pre.randomized, eot_samples)
        if views:
            own = model.adaptive_attacks() if isinstance(model, Defended) else ()
            extra = [AttackSpec(c.name, factory=c) for c in own if norm in c.norms]
            the_suite = defended_suite(the_suite, detector=reject is not None, extra=extra)
        job = BatchJob(attacked, the_suite, norm, eps_values, seed, n_examples, views, reject)
        records = _run_batches(job, x_all, y_all, batch_size, dev, state_dir, model)
        doc = assemble(records, the_suite, eps_values, k, n_examples)
        flags: list[Flag] = list(pre.flags) + doc.pop("violation_flags")
        audit_block = None
        transfer_block = None
        result = [None, None]
        if dist.is_main():
            result = _after(
                attacked,
                model_name or model.preset or "model",
                norm,
                eps_values[-1],
                doc,
                x_all,
                y_all,
                the_suite,
                seed=seed,
                batch_size=batch_size,
                audit=audit,
                audit_n=audit_n,
                transfer_from=transfer_from,
                dev=dev,
            )
        if dist.is_distributed():
            torch.distributed.broadcast_object_list(result, src=0)
        audit_block, transfer_block = result[0], result[1]
        if audit_block is not None:
            flags += [Flag(**f) for f in audit_block.pop("flags")]
    config = {
        "suite": the_suite.name,
        "eps": eps_values,
        "norm": norm,
        "n": int(x_all.shape[0]),
        "batch_size": batch_size,
        "seed": seed,
        "device": str(dev),
        "audit": audit,
        "audit_n": audit_n,
        "eot_samples": eot_samples if pre.randomized else None,
        "world_size": dist.world_size(),
        **dict(extra_config or {}),
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": model_name or model.preset or type(model.net).__name__,
            "checkpoint": (extra_config or {}).get("checkpoint"),
            "num_classes": k,
            "bounds": None if model.per_feature_bounds else list(model.bounds),
            "input_shape": list(x_all.shape[1:]),
            "eot_samples": eot_samples if pre.randomized else None,
        },
        "data": {
            "name": data_name or dname,
            "split": split,
            "n": int(x_all.shape[0]),
            "class_names": class_names or [str(i) for i in range(k)],
        },
        "suite": the_suite.describe(norm),
        "norm": norm,
        "eps": eps_values,
        **doc,
        "flags": [f.to_dict() for f in flags],
        "defense": _defense_block(model, doc),
        "audit": audit_block,
        "transfer": transfer_block,
        "timing": {"seconds": time.perf_counter() - t0},
        "config": config,
        "environment": {
            "advlab_version": __version__,
            "torch_version": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "device": str(dev),
        },
    }
    return RobustnessReport(report)


def _defense_views(
    model: Classifier, randomized: bool, eot_samples: int
) -> tuple[dict[str, Classifier], Callable[[Tensor], Tensor] | None]:
    """For a defended model: its naive and adaptive views (EOT on top of the adaptive one when
    the model is randomized and the view does not average already) and its reject mask."""
    if not isinstance(model, Defended):
        return {}, None
    naive, adaptive = model.naive(), model.adaptive()
    if randomized and adaptive is model:
        adaptive = eot(model, eot_samples)
    for view in (naive, adaptive):
        view.eval()
    return {"naive": naive, "adaptive": adaptive}, (model.reject if model.detects else None)


def _defense_block(model: Classifier, doc: dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(model, Defended):
        return None
    rejected = doc["samples"]["clean_rejected"]
    n = max(len(rejected), 1)
    return {
        **model.defense_spec(),
        "detects": model.detects,
        "clean_rejected": int(sum(rejected)),
        "clean_false_positive_rate": sum(rejected) / n if model.detects else None,
        "views": {
            "naive": type(model.naive()).__name__,
            "adaptive": type(model.adaptive()).__name__,
        },
    }


def _run_batches(
    job: BatchJob,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    dev: torch.device,
    state_dir: str | Path | None,
    model: Classifier,
) -> list[dict[str, Any]]:
    state = None
    if state_dir is not None:
        fingerprint = {
            "suite": job.suite.describe(job.norm),
            "eps": job.eps,
            "norm": job.norm,
            "seed": job.seed,
            "batch_size": batch_size,
            "n_examples": job.n_examples,
            "data": tensor_digest(x, y),
            "model": model_digest(model),
            "attacked": "eot" if job.model is not model else "model",
        }
        state = EvalState(state_dir, fingerprint)
        if dist.is_main():
            state.start()
    n_batches = (x.shape[0] + batch_size - 1) // batch_size
    mine = [b for b in range(n_batches) if b % dist.world_size() == dist.rank()]
    records: list[dict[str, Any]] = []
    bar = progress(
        mine,
        desc=f"eval {job.suite.name}",
        total=len(mine),
        disable=None if dist.is_main() else True,
    )
    robust = total = 0
    for b in bar:
        record = state.load(b) if state is not None else None
        if record is None:
            sl = slice(b * batch_size, (b + 1) * batch_size)
            index = torch.arange(x.shape[0])[sl]
            record = run_batch(job, index, x[sl].to(dev), y[sl].to(dev), b)
            if state is not None:
                state.save(b, record)
        records.append(record)
        last = record["per_eps"][-1]["broken_by"]
        robust += int((last == ROBUST).sum())
        total += int(last.shape[0])
        bar.set_postfix(robust=f"{robust / max(total, 1):.1%}")
    if dist.is_distributed():
        gathered: list[list[dict[str, Any]] | None] = [None] * dist.world_size()
        torch.distributed.all_gather_object(gathered, records)
        records = [r for part in gathered if part for r in part]
    return sorted(records, key=lambda r: int(r["batch"]))


def _after(
    model: Classifier,
    name: str,
    norm: str,
    eps: float,
    doc: dict[str, Any],
    x: Tensor,
    y: Tensor,
    suite: Suite,
    *,
    seed: int,
    batch_size: int,
    audit: bool,
    audit_n: int,
    transfer_from: Mapping[str, Classifier] | None,
    dev: torch.device,
) -> list[Any]:
    """Transfer block and audit (rank 0): ``[audit_block_with_flags | None, transfer | None]``."""
    samples = doc["samples"]
    last = samples["per_eps"][-1]
    correct = torch.tensor(samples["clean_pred"]) == torch.tensor(samples["label"])
    correct &= ~torch.tensor(samples["clean_rejected"], dtype=torch.bool)
    broken_by = last["broken_by"]
    whitebox_titles = {a.title for a in suite.attacks if a.name != "square"}
    suite_broken = torch.tensor([b not in ("", "clean") for b in broken_by])
    whitebox_broken = torch.tensor([b in whitebox_titles for b in broken_by])
    transfer_block = None
    transfer_broken = None
    if transfer_from:
        quick = suites.build("quick", norm=norm)
        xd, yd = x.to(dev), y.to(dev)
        rows = []
        broken_any = torch.zeros_like(correct)
        for source in transfer_from.values():
            crafted = craft(
                source.to(dev).eval(), quick, norm, eps, xd, yd, seed=seed, batch_size=batch_size
            )
            hit = broken_by_transfer(model, crafted, yd).cpu()
            broken_any |= hit
            rows.append([1.0 - float(hit.float().mean())])
        transfer_block = {
            "attack": " + ".join(a.title for a in quick.attacks),
            "eps": eps,
            "n": int(y.shape[0]),
            "sources": list(transfer_from),
            "targets": [name],
            "accuracy": rows,
        }
        transfer_broken = broken_any
    if not audit:
        return [None, transfer_block]
    pick = correct.nonzero().squeeze(1)[:audit_n]
    a = AuditInput(
        x=x[pick].to(dev),
        y=y[pick].to(dev),
        suite_broken=suite_broken[pick].to(dev),
        whitebox_broken=whitebox_broken[pick].to(dev),
        eps=eps,
        transfer_broken=transfer_broken[pick].to(dev) if transfer_broken is not None else None,
    )
    block, flags = run_audit(model, norm, a, seed=seed, batch_size=batch_size)
    block["flags"] = [{"code": f.code, "message": f.message, "evidence": f.evidence} for f in flags]
    return [block, transfer_block]
