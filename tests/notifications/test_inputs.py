"""Every bad input the issue names gets a clear refusal."""

from __future__ import annotations

import socket
from datetime import time

import pytest

from catalog.exceptions import InvalidInput
from notifications import outbound, rendering, services
from notifications.models import Template

pytestmark = pytest.mark.django_db


def test_an_unknown_time_zone_is_refused_by_name(subscriber):
    with pytest.raises(InvalidInput, match="'Mars/Olympus' is not a known IANA time zone"):
        services.preference_update(user=subscriber, time_zone="Mars/Olympus")


def test_quiet_hours_that_start_and_end_at_the_same_time_are_refused(subscriber):
    with pytest.raises(InvalidInput, match="start and end at the same time"):
        services.preference_update(user=subscriber, quiet_start=time(22), quiet_end=time(22))


def test_quiet_hours_need_both_ends(subscriber):
    with pytest.raises(InvalidInput, match="both a start and an end"):
        services.preference_update(user=subscriber, quiet_start=time(22))


@pytest.mark.parametrize("phone", ["12345", "+1 555", "+999123456789", "call me", "+33 1"])
def test_an_invalid_phone_number_is_refused(subscriber, phone):
    with pytest.raises(InvalidInput, match="is not a valid phone number"):
        services.preference_update(user=subscriber, phone=phone)


def test_a_valid_phone_number_is_kept_in_e164(subscriber):
    pref = services.preference_update(user=subscriber, phone="+44 20 7946 0958")
    assert pref.phone == "+442079460958"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]/hook", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://localhost:8080/hook", "loopback"),
    ],
)
def test_webhook_urls_to_internal_addresses_are_refused(subscriber, url, why):
    with pytest.raises(InvalidInput, match=why):
        services.webhook_endpoint_create(user=subscriber, url=url)


def test_a_name_that_resolves_to_a_private_address_is_refused(subscriber, monkeypatch):
    # The name's DNS answer is what matters; this stands in for a resolver we cannot run.
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "intranet.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(InvalidInput, match=r"resolves to a private address \(10.1.2.3\)"):
        services.webhook_endpoint_create(user=subscriber, url="http://intranet.example.com/h")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:secret@hooks.example.com/h", "must not carry credentials"),
        ("ftp://hooks.example.com/h", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("http:///nohost", "names no host"),
    ],
)
def test_urls_with_credentials_or_other_schemes_are_refused(subscriber, url, message):
    with pytest.raises(InvalidInput, match=message):
        services.webhook_endpoint_create(user=subscriber, url=url)


def test_the_slack_url_follows_the_same_rules(subscriber):
    with pytest.raises(InvalidInput, match="slack_webhook_url: .*loopback"):
        services.preference_update(user=subscriber, slack_webhook_url="http://127.0.0.1/x")


def test_allowed_private_hosts_let_a_development_receiver_through(settings):
    settings.NOTIFY_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    target = outbound.url_check("http://127.0.0.1:9/hook?x=1")
    assert (target.address, target.port, target.path) == ("127.0.0.1", 9, "/hook?x=1")
    with pytest.raises(outbound.UnsafeUrl):
        outbound.url_check("http://10.0.0.1/")


def test_a_template_with_a_syntax_error_is_refused_with_its_line():
    with pytest.raises(
        rendering.TemplateInvalid, match="body has a template syntax error on line 3"
    ):
        rendering.template_check("Hello\n{{ dataset }}\n{% if breaking %}oops", field="body")


def test_templates_cannot_load_tag_libraries_or_include_files():
    with pytest.raises(rendering.TemplateInvalid):
        rendering.template_check("{% load humanize %}{{ 1|intcomma }}", field="body")
    with pytest.raises(Exception):  # noqa: B017 - no loader: nothing to include from
        rendering.render_string('{% include "admin/base.html" %}', {})


def test_a_subscription_to_a_dataset_the_user_may_not_see_is_not_found(published, stranger):
    from catalog.exceptions import NotFound

    with pytest.raises(NotFound, match="No dataset 'gold/txn_daily'"):
        services.subscription_create(user=stranger, dataset="gold/txn_daily", types=["new_version"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"types": []}, "name at least one notification type"),
        ({"types": ["gossip"]}, "unknown notification type 'gossip'"),
        ({"types": ["new_version"], "channels": ["pigeon"]}, "unknown channel 'pigeon'"),
        ({"types": ["new_version"], "threshold": 5}, "only a subscription to usage_threshold"),
        ({"types": ["new_version"], "pattern": "acme/gold"}, "glob over <org>/<layer>/<name>"),
    ],
)
def test_bad_subscriptions_are_refused(subscriber, published, fields, message):
    fields = {"dataset": None if "pattern" in fields else "gold/txn_daily", **fields}
    with pytest.raises(InvalidInput, match=message):
        services.subscription_create(user=subscriber, **fields)


def test_default_templates_exist_for_every_type_and_channel():
    from notifications.models import Channel, NotificationType

    assert Template.objects.count() == len(NotificationType.values) * len(Channel.values)
    new_version = Template.objects.get(notification_type="new_version", channel="email")
    assert new_version.subject.startswith("New version of")
    assert "<h2>" in new_version.html
