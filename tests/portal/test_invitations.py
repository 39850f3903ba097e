"""Invitations: a steward invites by email; the link lets the person choose a password and
join with the role; every bad link and bad input gets a clear answer."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput
from catalog.invitations import invitation_create, invitation_digest
from catalog.models import AuditEntry, Invitation, Membership

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://testserver(/invitations/[^/\s]+/)")


def _invite(steward, org, email="nina@example.com", role="viewer"):
    return invitation_create(
        organization=org,
        email=email,
        role=role,
        actor=Actor(user=steward, via="admin"),
        link_for=lambda secret: f"http://testserver/invitations/{secret}/",
    )


def test_a_steward_invites_by_email_and_only_the_digest_is_stored(steward, acme, mailoutbox):
    sent = _invite(steward, acme, email="Nina@Example.com ")

    invitation = Invitation.objects.get()
    assert sent.emailed and invitation.email == "nina@example.com"
    assert invitation.digest == invitation_digest(sent.secret)
    assert sent.secret not in str(Invitation.objects.values().get())
    assert sent.link in mailoutbox[0].body and mailoutbox[0].to == ["nina@example.com"]
    assert "Join Acme" in mailoutbox[0].subject
    assert AuditEntry.objects.filter(action="invitation.create").exists()


def test_the_link_lets_the_person_choose_a_password_and_join_with_the_role(
    client, steward, acme, mailoutbox
):
    _invite(steward, acme, role="steward")
    path = LINK.search(mailoutbox[0].body).group(1)

    form = client.get(path)
    joined = client.post(
        path, {"username": "nina", "password1": "a long secret 42", "password2": "a long secret 42"}
    )

    assert "Join Acme" in form.content.decode()
    assert joined.status_code == 302 and joined["Location"] == "/"
    nina = get_user_model().objects.get(username="nina")
    assert nina.email == "nina@example.com" and nina.is_staff
    assert Membership.objects.get(user=nina).role == "steward"
    assert client.get("/").context["user"] == nina
    again = client.get(path)
    assert again.status_code == 404 and "already been accepted" in again.content.decode()


def test_a_signed_in_user_joins_with_their_account(client, steward, outsider, acme, mailoutbox):
    sent = _invite(steward, acme, email="oscar@example.com")
    client.force_login(outsider)

    client.post(f"/invitations/{sent.secret}/")

    assert Membership.objects.get(user=outsider, organization=acme).role == "viewer"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"username": "", "password1": "a long secret 42", "password2": "a long secret 42"},
            "This field is required.",
        ),
        ({"username": "nina", "password1": "short", "password2": "short"}, "too short"),
        (
            {"username": "nina", "password1": "a long secret 42", "password2": "another 42 one"},
            "The two passwords differ.",
        ),
        (
            {
                "username": "stella",
                "password1": "a long secret 42",
                "password2": "a long secret 42",
            },
            "is taken",
        ),
    ],
)
def test_bad_choices_on_the_join_form_are_named_and_nobody_joins(
    client, steward, acme, fields, message
):
    sent = _invite(steward, acme)

    answer = client.post(f"/invitations/{sent.secret}/", fields)

    assert answer.status_code == 400 and message in answer.content.decode()
    assert not Invitation.objects.filter(accepted_at__isnull=False).exists()


def test_an_address_that_has_an_account_is_asked_to_sign_in_first(
    client, steward, acme, django_user_model
):
    django_user_model.objects.create_user(username="nina1", email="nina@example.com", password="x")
    sent = _invite(steward, acme)

    answer = client.post(
        f"/invitations/{sent.secret}/",
        {"username": "nina2", "password1": "a long secret 42", "password2": "a long secret 42"},
    )

    assert "sign in, then open the invitation link again" in answer.content.decode()


def test_unknown_expired_and_replaced_links_say_so(client, steward, acme):
    first = _invite(steward, acme)
    second = _invite(steward, acme)
    expired = _invite(steward, acme, email="old@example.com")
    Invitation.objects.filter(pk=expired.invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    answers = {
        name: client.get(f"/invitations/{secret}/")
        for name, secret in (
            ("unknown", "nope"),
            ("replaced", first.secret),
            ("expired", expired.secret),
            ("current", second.secret),
        )
    }

    assert "not valid" in answers["unknown"].content.decode()
    assert "replaced by a newer one" in answers["replaced"].content.decode()
    assert "has expired" in answers["expired"].content.decode()
    assert [a.status_code for a in answers.values()] == [404, 404, 404, 200]


def test_only_stewards_invite_and_bad_addresses_or_members_are_refused(viewer, steward, acme):
    with pytest.raises(Forbidden):
        _invite(viewer, acme)
    with pytest.raises(InvalidInput, match="not an email address"):
        _invite(steward, acme, email="nina at example")
    with pytest.raises(InvalidInput, match="Unknown role"):
        _invite(steward, acme, role="owner")
    steward.email = "stella@example.com"
    steward.save()
    with pytest.raises(InvalidInput, match="already a member"):
        _invite(steward, acme, email="stella@example.com")


def test_a_mail_server_that_is_down_keeps_the_invitation_and_shows_the_link_once(
    client, steward, acme, settings, free_tcp_port
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_tcp_port, 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    client.force_login(steward)

    answer = client.post(
        reverse("admin:catalog_invitation_add"),
        {"email": "nina@example.com", "organization": acme.pk, "role": "viewer"},
        follow=True,
    )

    html = answer.content.decode()
    assert "could not be sent" in html and "/invitations/" in html
    assert Invitation.objects.get().email == "nina@example.com"


def test_the_admin_lists_invitations_with_their_state_and_withdraws_them(
    client, steward, acme, mailoutbox
):
    client.force_login(steward)
    client.post(
        reverse("admin:catalog_invitation_add"),
        {"email": "nina@example.com", "organization": acme.pk, "role": "viewer"},
    )
    invitation = Invitation.objects.get()

    listed = client.get(reverse("admin:catalog_invitation_changelist")).content.decode()
    client.post(
        reverse("admin:catalog_invitation_changelist"),
        {"action": "revoke", "_selected_action": [invitation.pk]},
    )

    assert "nina@example.com" in listed and "pending" in listed
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None and len(mailoutbox) == 1
