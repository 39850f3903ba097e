"""A steward publishes a new version from the admin, in a real browser, through a real
worker, and watches the job page follow it to the end."""

from __future__ import annotations

import re

import pytest

from versioning.models import DatasetVersion

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

CSV = "date_key,store_id,revenue\n2024-08-12,ST0001,99.5\n2024-08-12,ST0002,12\n"


def test_a_steward_publishes_from_the_admin_and_sees_the_result(
    page, live_server, steward, dataset, start_worker, tmp_path
):
    start_worker()
    upload = tmp_path / "day.csv"
    upload.write_text(CSV)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", "pw-stella")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/catalog/dataset/")
    page.click("text=gold/txn_daily")
    page.click("text=Publish new version")
    page.set_input_files("#id_file", str(upload))
    page.fill("#id_note", "First release from the browser.")
    page.click("input[value=Publish]")

    page.wait_for_url(re.compile(r"/admin/versioning/publishjob/.+/change/"))
    # The page refreshes itself until the worker has finished.
    page.wait_for_selector("text=Succeeded", timeout=60_000)
    assert "Published gold/txn_daily 1.0.0" in page.inner_text("#job-status")
    page.screenshot(path=str(tmp_path / "job.png"))

    version = DatasetVersion.objects.get(dataset=dataset, is_current=True)
    assert version.row_count == 2
    assert version.published_by == steward
