"""Charts: one library (Chart.js, served from our static files) behind one helper.

Every dashboard describes its charts with `chart()` (or `chart_from_rows()` for a
queryset's `.values()`), puts the result in its context and renders it with
`{% load charts %}{% chart config %}`. The tag writes a `<canvas>` and the chart's data as
a `json_script` block; `catalog/charts.js` draws every canvas on the page. No inline
script, so the pages keep a strict Content-Security-Policy, and a page without data shows
its empty-state text instead of an empty frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS = ("line", "bar", "doughnut", "pie")

# Colour-blind-safe (Okabe-Ito), in the order series get them.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)

_ids = itertools.count(1)


@dataclass
class Chart:
    """A chart's description, turned into Chart.js's configuration by `config()`."""

    title: str
    labels: list[str]
    series: dict[str, list[float | int | None]]
    kind: str = "line"
    y_label: str = ""
    stacked: bool = False
    empty_text: str = "No data yet."
    element_id: str = field(default_factory=lambda: f"chart-{next(_ids)}")

    @property
    def is_empty(self) -> bool:
        return not self.labels or all(
            all(v in (None, 0) for v in values) for values in self.series.values()
        )

    def config(self) -> dict[str, Any]:
        round_kind = self.kind in ("doughnut", "pie")
        datasets = []
        for index, (label, values) in enumerate(self.series.items()):
            colour = PALETTE[index % len(PALETTE)]
            dataset: dict[str, Any] = {"label": label, "data": values}
            if round_kind:
                dataset["backgroundColor"] = [PALETTE[i % len(PALETTE)] for i in range(len(values))]
            else:
                dataset.update(borderColor=colour, backgroundColor=colour, fill=False)
            datasets.append(dataset)
        options: dict[str, Any] = {
            "responsive": True,
            "maintainAspectRatio": False,
            "animation": False,
            "plugins": {"title": {"display": bool(self.title), "text": self.title}},
        }
        if not round_kind:
            options["scales"] = {
                "x": {"stacked": self.stacked},
                "y": {
                    "stacked": self.stacked,
                    "beginAtZero": True,
                    "title": {"display": bool(self.y_label), "text": self.y_label},
                },
            }
        return {
            "type": self.kind,
            "data": {"labels": self.labels, "datasets": datasets},
            "options": options,
        }


def chart(
    *,
    title: str,
    labels: Sequence[Any],
    series: Mapping[str, Sequence[float | int | None]],
    kind: str = "line",
    y_label: str = "",
    stacked: bool = False,
    empty_text: str = "No data yet.",
) -> Chart:
    """Describes a chart: `series` maps each line's (or bar's) label to one value per label."""
    if kind not in KINDS:
        raise ValueError(f"Unknown chart kind {kind!r}; expected one of {', '.join(KINDS)}.")
    labels = [_label(x) for x in labels]
    for name, values in series.items():
        if len(values) != len(labels):
            raise ValueError(f"Series {name!r} has {len(values)} values for {len(labels)} labels.")
    return Chart(
        title=title,
        labels=labels,
        series={name: [_number(v) for v in values] for name, values in series.items()},
        kind=kind,
        y_label=y_label,
        stacked=stacked,
        empty_text=empty_text,
    )


def chart_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    x: str,
    y: str | Sequence[str],
    group_by: str | None = None,
    labels: Sequence[Any] | None = None,
    **options: Any,
) -> Chart:
    """A chart from a queryset's `.values()` (or any rows of dicts).

    `x` names the field along the axis and `y` the measured field(s). With `group_by`, one
    series per value of that field (one line per region, say) and `y` must be one field.
    `labels` fixes the axis (every day of a window, so days without rows show as 0);
    otherwise it is the sorted values of `x` that occur.
    """
    rows = list(rows)
    fields = [y] if isinstance(y, str) else list(y)
    axis = list(labels) if labels is not None else sorted({row[x] for row in rows})
    position = {value: i for i, value in enumerate(axis)}
    series: dict[str, list[float | int | None]] = {}
    if group_by is not None:
        if len(fields) != 1:
            raise ValueError("group_by takes exactly one y field.")
        for row in rows:
            values = series.setdefault(str(row[group_by]), [0] * len(axis))
            if row[x] in position:
                values[position[row[x]]] = row[fields[0]]
    else:
        for name in fields:
            series[name] = [0] * len(axis)
        for row in rows:
            if row[x] in position:
                for name in fields:
                    series[name][position[row[x]]] = row[name]
    return chart(labels=axis, series=series, **options)


def _label(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, int | float):
        return value
    return float(value)  # Decimal from the database
