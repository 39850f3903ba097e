"""The replication monitor in Chromium: each region's copy of each dataset, and the
throughput and cost charts drawn from our own Chart.js."""

from __future__ import annotations

import pytest

from tests.replication.conftest import (  # noqa: F401 - the replication world
    CSV,
    copy_due,
    deliver,
    gold_rule,
    region_servers,
    regions,
    replication_settings,
)


@pytest.mark.django_db(transaction=True)
def test_the_monitor_shows_each_region_and_chromium_draws_its_charts(
    page,
    live_server,
    steward,
    dataset,
    publish,
    gold_rule,  # noqa: F811
    deliver,  # noqa: F811
    copy_due,  # noqa: F811
):
    publish(dataset, CSV)
    deliver()
    assert set(copy_due().values()) == {"verified"}

    page.goto(f"{live_server.url}/admin/login/?next=/admin/replication/replica/monitor/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", "pw-stella")
    page.click("input[type=submit]")
    page.wait_for_selector("#monitor")

    cells = page.locator("#monitor .replica-status")
    assert sorted(cells.all_inner_texts()) == ["verified", "verified"]
    assert "acme/gold/txn_daily" in page.inner_text("#monitor")
    canvas = page.locator("canvas[data-drawn=true]").first
    canvas.wait_for()
    series = page.evaluate(
        "Array.from(document.querySelectorAll('canvas[data-drawn=true]'))"
        ".map(c => c.chart.data.datasets.map(d => [d.label, d.data[d.data.length - 1]]))"
    )
    throughput = dict(series[0])
    assert set(throughput) == {"ap-southeast-1", "eu-west-1"}
    assert throughput["eu-west-1"] > 0
    cost = dict(series[1])
    assert cost["eu-west-1"] > 0
