"""The one chart helper: descriptions from rows, and Chart.js drawing them in Chromium."""

from __future__ import annotations

from datetime import date

import pytest
from django.template import Context, Template

from catalog.charts import chart, chart_from_rows

ROWS = [
    {"day": date(2026, 11, 2), "region": "eu-west-1", "mb": 5},
    {"day": date(2026, 11, 1), "region": "ap-southeast-1", "mb": 7},
    {"day": date(2026, 11, 2), "region": "ap-southeast-1", "mb": 2},
]


def test_rows_grouped_by_a_field_give_one_series_each_with_zeros_for_missing_days():
    config = chart_from_rows(
        ROWS,
        x="day",
        y="mb",
        group_by="region",
        labels=[date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)],
        title="Copied",
    )

    assert config.labels == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert config.series == {"eu-west-1": [0, 5, 0], "ap-southeast-1": [7, 2, 0]}


def test_several_fields_give_one_series_each_along_the_values_that_occur():
    rows = [{"day": "b", "p50": 10, "p95": 90}, {"day": "a", "p50": 12, "p95": 80}]

    config = chart_from_rows(rows, x="day", y=["p50", "p95"], title="Response ms")

    assert config.labels == ["a", "b"]
    assert config.series == {"p50": [12, 10], "p95": [80, 90]}
    assert [d["label"] for d in config.config()["data"]["datasets"]] == ["p50", "p95"]


def test_a_series_of_the_wrong_length_and_an_unknown_kind_are_refused():
    with pytest.raises(ValueError, match="has 1 values for 2 labels"):
        chart(title="t", labels=["a", "b"], series={"s": [1]})
    with pytest.raises(ValueError, match="Unknown chart kind 'radar'"):
        chart(title="t", labels=["a"], series={"s": [1]}, kind="radar")


def test_a_chart_without_data_renders_its_empty_text_and_no_canvas():
    html = Template("{% load charts %}{% chart c %}").render(
        Context({"c": chart(title="Downloads", labels=[], series={}, empty_text="None yet.")})
    )

    assert "Downloads: None yet." in html
    assert "<canvas" not in html


@pytest.mark.django_db
def test_chromium_draws_the_chart_from_our_own_static_files(page, live_server):
    config = chart(title="Copies", labels=["a", "b"], series={"eu": [1, 3]}, kind="bar")
    body = Template("{% load charts %}{% chart_scripts %}{% chart c %}").render(
        Context({"c": config})
    )
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/healthz")
    page.set_content(f"<!doctype html><html><body>{body}</body></html>")

    page.wait_for_selector(f"#{config.element_id}[data-drawn=true]")
    points = page.evaluate(
        f"document.getElementById('{config.element_id}').chart.data.datasets[0].data"
    )
    assert points == [1, 3]
    assert requested and all(url.startswith(live_server.url) for url in requested)
