"""Query-only models (issue 6): forward queries counted, gradients refused with a clear error."""

from __future__ import annotations

import pytest
import torch

from advlab import attacks
from advlab.attacks import Problem
from advlab.data import TensorData
from advlab.models import Classifier, GradientAccessError, query_access


def test_scores_access_counts_queries_and_refuses_gradients(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    q = query_access(clf, "scores")
    x, y = test.x[:20], test.y[:20]
    with torch.no_grad():
        assert torch.allclose(q(x), clf(x))
    assert q.queries == 20
    res = attacks.build("square", eps=0.2, n_queries=100)(q, x, y)
    assert q.queries == 20 + int(res.queries.sum())
    with pytest.raises(GradientAccessError, match="query-only"):
        attacks.build("pgd", eps=0.2, steps=2)(q, x, y)
    q.reset_queries()
    assert q.queries == 0


def test_labels_access_exposes_only_the_top_label(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    q = query_access(clf, "labels")
    with torch.no_grad():
        out = q(test.x[:30])
        want = clf(test.x[:30]).argmax(1)
    assert torch.equal(out.argmax(1), want)
    assert set(out.unique().tolist()) == {0.0, -1e4}
    assert q.access == "labels"
    with pytest.raises(ValueError):
        query_access(clf, "gradients")  # type: ignore[arg-type]


def test_problem_counts_repeated_samples_once_per_listing(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    p = Problem(clf, test.x[:4], test.y[:4], None, torch.Generator().manual_seed(0))
    rows = torch.tensor([0, 0, 0, 2, 3, 3])
    p.logits(test.x[rows], rows)
    assert p.queries.tolist() == [3, 0, 1, 2]
    p.count(p.gradients, rows, 2)
    assert p.gradients.tolist() == [6, 0, 2, 4]
