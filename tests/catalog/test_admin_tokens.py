"""API tokens in the steward admin: scoped to the steward's organisations, revocable,
never showing the secret."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.audit import Actor
from catalog.tokens import token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(steward, viewer, outsider, dataset):
    made = {}
    for user, name in ((viewer, "victor-laptop"), (outsider, "oscar-ci")):
        made[name] = token_create(user=user, name=name, scopes=["read"], actor=Actor(user=user))
    made["pi-042"] = token_create(
        user=steward, name="pi-042", dataset=dataset, actor=Actor(user=steward)
    )
    return made


def test_a_steward_sees_their_organisations_tokens_without_the_secret(client, steward, tokens):
    client.force_login(steward)

    html = client.get(reverse("admin:catalog_apitoken_changelist")).content.decode()

    assert "victor-laptop" in html and "pi-042" in html and "oscar-ci" not in html
    for token, secret in tokens.values():
        assert secret not in html and token.digest not in html
    assert "acme: gold/txn_daily" in html


def test_a_steward_revokes_a_members_token_from_the_list(client, steward, tokens):
    client.force_login(steward)
    token, _ = tokens["victor-laptop"]
    other, _ = tokens["oscar-ci"]

    client.post(
        reverse("admin:catalog_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk, other.pk]},
    )

    token.refresh_from_db()
    other.refresh_from_db()
    assert token.revoked_at is not None and other.revoked_at is None


def test_a_viewer_has_no_token_admin(client, viewer, tokens):
    client.force_login(viewer)

    assert client.get(reverse("admin:catalog_apitoken_changelist")).status_code == 403
