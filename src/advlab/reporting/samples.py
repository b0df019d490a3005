"""The per-sample table: one CSV row per sample per eps."""

from __future__ import annotations

import csv
import io

from advlab.reporting.fmt import Report, items, table

COLUMNS = (
    "index",
    "label",
    "clean_pred",
    "clean_confidence",
    "eps",
    "adv_pred",
    "adv_confidence",
    "broken_by",
    "linf",
    "l2",
    "l1",
    "l0",
)
PER_SAMPLE = COLUMNS[:4]  # from ``samples``
PER_EPS = COLUMNS[5:]  # from ``samples.per_eps[k]``


def _at(values: list[object], i: int) -> object:
    return values[i] if i < len(values) else None


def samples_csv(report: Report) -> str:
    """``samples`` as CSV text with header ``COLUMNS``, rows grouped by sample (data order),
    then eps (report order). Null values are empty cells; a report without samples gives the
    header alone."""
    samples = table(report.get("samples"))
    per_sample = {c: items(samples.get(c)) for c in PER_SAMPLE}
    per_eps = items(samples.get("per_eps"))
    columns = [{c: items(entry.get(c)) for c in PER_EPS} for entry in per_eps]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in range(len(per_sample["index"])):
        head = [_at(per_sample[c], i) for c in PER_SAMPLE]
        for entry, cols in zip(per_eps, columns, strict=True):
            writer.writerow([*head, entry.get("eps"), *(_at(cols[c], i) for c in PER_EPS)])
    return buf.getvalue()
