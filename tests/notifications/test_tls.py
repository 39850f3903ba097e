"""Webhooks over HTTPS, to a real TLS receiver on loopback whose certificate comes from a
throwaway certificate authority (trustme): the certificate and the host name are checked
although the connection goes to the address that was resolved and checked."""

from __future__ import annotations

import ssl

import pytest
import trustme
import urllib3

from notifications import outbound
from notifications.models import Delivery, DeliveryStatus
from tests.notifications.conftest import Receiver, serving, verify
from tests.notifications.test_channels import promoted, send_all, webhook_subscriber

pytestmark = pytest.mark.django_db


@pytest.fixture
def authority(tmp_path, settings):
    """A certificate authority the outbound requests trust (NOTIFY_CA_BUNDLE)."""
    ca = trustme.CA()
    bundle = tmp_path / "receivers-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings.NOTIFY_CA_BUNDLE = str(bundle)
    settings.NOTIFY_ALLOW_PRIVATE_HOSTS = ["localhost"]
    return ca


def https_receiver(ca: trustme.CA, *names: str):
    """A receiver at https://localhost:<port>/ whose certificate `ca` issued for `names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return serving(Receiver(port=0, scheme="https", host="localhost"), tls=context)


def test_a_receiver_with_a_trusted_certificate_for_its_name_gets_the_post(authority):
    with https_receiver(authority, "localhost") as receiver:
        answer = outbound.post(
            receiver.url(),
            body=b'{"ok": true}',
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert answer.status == 200
        [hit] = receiver.at("/hook")
        assert hit.body == b'{"ok": true}'
        assert hit.headers["host"] == f"localhost:{receiver.port}"


def test_a_certificate_for_another_name_is_refused_before_anything_is_sent(authority):
    with https_receiver(authority, "elsewhere.example") as receiver:
        with pytest.raises(urllib3.exceptions.SSLError, match="match|hostname"):
            outbound.post(receiver.url(), body=b"secret", headers={}, timeout=5)
        assert receiver.received == []


def test_a_certificate_from_an_authority_nobody_trusts_is_refused(authority, settings):
    settings.NOTIFY_CA_BUNDLE = ""  # the system's authorities, which never signed this one
    with https_receiver(authority, "localhost") as receiver:
        with pytest.raises(urllib3.exceptions.SSLError, match="certificate verify failed"):
            outbound.post(receiver.url(), body=b"secret", headers={}, timeout=5)
        assert receiver.received == []


def test_a_webhook_delivery_over_https_is_signed_and_marked_sent(authority, published, subscriber):
    with https_receiver(authority, "localhost") as receiver:
        endpoint, secret = webhook_subscriber(subscriber, published, receiver.url())
        promoted(published)
        assert send_all() == 1
        [hit] = receiver.at("/hook")
        assert verify(secret, hit)["data"]["version"] == "1.1.0"
        assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_a_webhook_to_a_receiver_with_a_bad_certificate_is_retried_not_sent(
    authority, published, subscriber
):
    with https_receiver(authority, "elsewhere.example") as receiver:
        webhook_subscriber(subscriber, published, receiver.url())
        promoted(published)
        send_all()
        delivery = Delivery.objects.get()
        assert delivery.status != DeliveryStatus.SENT
        assert "SSLError" in delivery.last_error
        assert receiver.received == []
