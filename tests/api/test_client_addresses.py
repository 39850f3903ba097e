"""X-Forwarded-For counts only when one of our own proxies sent it (TRUSTED_PROXIES):
for rate limits, the audit log and lock-outs alike."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from catalog.addresses import client_ip
from catalog.models import AuditEntry, Visibility
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"


def address(remote: str, forwarded: str | None = None) -> str | None:
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **meta))


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert address("203.0.113.9", "198.51.100.1") == "203.0.113.9"


def test_a_trusted_proxys_header_names_the_client_read_from_the_right(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert address(PROXY, "198.51.100.1") == "198.51.100.1"
    # The client wrote the leftmost entry itself; our proxy appended the real address.
    assert address(PROXY, "1.2.3.4, 198.51.100.1") == "198.51.100.1"
    # Several of our own proxies in a row are skipped.
    assert address(PROXY, "198.51.100.1, 10.0.0.7") == "198.51.100.1"
    # An untrusted connection's header is still ignored.
    assert address("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    # Garbage ends the walk at the last address our proxies vouched for.
    assert address(PROXY, "not-an-ip") == PROXY
    assert address(PROXY, "[2001:db8::1]:443") == "2001:db8::1"


def test_anonymous_callers_cannot_escape_the_signed_url_limit_by_forging_the_header(
    published, api, settings
):
    settings.API_RATES = {"api": "1000/min", "signed_url": "2/min"}
    settings.TRUSTED_PROXIES = []
    published.visibility = Visibility.PUBLIC
    published.save()
    url = "/api/v1/datasets/gold/txn_daily/download/"
    answers = [
        api.get(url, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}", REMOTE_ADDR="203.0.113.9")
        for i in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert error_of(answers[2])["code"] == "throttled"


def test_clients_behind_a_trusted_proxy_are_limited_one_by_one(published, api, settings):
    settings.API_RATES = {"api": "1000/min", "signed_url": "2/min"}
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    published.visibility = Visibility.PUBLIC
    published.save()
    url = "/api/v1/datasets/gold/txn_daily/download/"

    def get(client_address: str) -> int:
        return api.get(url, HTTP_X_FORWARDED_FOR=client_address, REMOTE_ADDR=PROXY).status_code

    assert [get("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert get("198.51.100.2") == 200


def test_the_audit_log_keeps_the_real_address_not_the_forged_one(dataset, steward, as_user):
    response = as_user(steward).patch(
        "/api/v1/datasets/gold/txn_daily/",
        {"title": "Renamed"},
        format="json",
        HTTP_X_FORWARDED_FOR="192.0.2.66",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get(action="dataset.update")
    assert entry.ip_address == "203.0.113.9"


def test_the_audit_log_records_the_client_a_trusted_proxy_names(
    dataset, steward, as_user, settings
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    as_user(steward).patch(
        "/api/v1/datasets/gold/txn_daily/",
        {"title": "Renamed"},
        format="json",
        HTTP_X_FORWARDED_FOR="192.0.2.66",
        REMOTE_ADDR=PROXY,
    )
    assert AuditEntry.objects.get(action="dataset.update").ip_address == "192.0.2.66"


def test_a_lockout_holds_whatever_address_the_client_claims(steward, client, settings):
    settings.TRUSTED_PROXIES = []
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            "/admin/login/",
            {"username": "stella", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
    response = client.post(
        "/admin/login/",
        {"username": "stella", "password": "pw-stella"},
        HTTP_X_FORWARDED_FOR="198.51.100.200",
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
