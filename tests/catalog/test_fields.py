"""Secrets the app must read back are stored encrypted, and read back as they were."""

from __future__ import annotations

import pytest
from django.db import connection

from catalog.fields import secret_decrypt, secret_encrypt

# A receiver on loopback (allowed below): name resolution is not what is tested here.
URL = "http://127.0.0.1:9/services/T000/B000/XXXXXXXXXXXXXXXX"


@pytest.fixture
def subscriber(django_user_model):
    return django_user_model.objects.create_user(username="sam", password="pw")


def test_a_slack_url_is_not_in_the_table_but_reads_back_whole(subscriber, settings):
    settings.NOTIFY_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    from notifications import services
    from notifications.models import Preference

    services.preference_update(user=subscriber, slack_webhook_url=URL)

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT slack_webhook_url FROM {Preference._meta.db_table} WHERE user_id = %s",
            [subscriber.pk],
        )
        [(stored,)] = cursor.fetchall()
    assert URL not in stored and "T000/B000" not in stored
    assert Preference.objects.get(user=subscriber).slack_webhook_url == URL


def test_equal_secrets_are_stored_differently():
    assert secret_encrypt(URL) != secret_encrypt(URL)
    assert secret_decrypt(secret_encrypt(URL)) == URL


def test_a_value_sealed_under_another_secret_key_reads_as_empty(settings, caplog):
    sealed = secret_encrypt(URL)
    settings.SECRET_KEY = "another-" + "k" * 50

    assert secret_decrypt(sealed) == ""
    assert "SECRET_KEY changed" in caplog.text
