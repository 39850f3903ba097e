"""The five channels: one small transport class each, with one `send` method.

A transport either returns (the message is out) or raises `TransportError`, which says
whether trying again could help (`permanent=False`: a timeout, a 500, a dropped SMTP
connection) or not (`permanent=True`: a refused address, a 410, an unsafe URL). The
delivery service decides what to do with that; transports know nothing of the queue.

`open()` and `close()` bracket a batch, so email sends a batch over one SMTP connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import smtplib
import time
from dataclasses import dataclass, field
from typing import ClassVar

import urllib3
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.module_loading import import_string

from notifications import outbound, signing
from notifications.models import InboxItem, WebhookEndpoint

logger = logging.getLogger(__name__)


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None):
        super().__init__(message)
        self.message, self.permanent, self.status = message, permanent, status


@dataclass
class Message:
    """One message to one recipient on one channel, already rendered."""

    key: str
    message_id: str
    user_id: int
    notification_type: str
    subject: str
    body: str
    html: str = ""
    data: dict = field(default_factory=dict)
    event_type: str = ""
    address: str = ""
    endpoint: WebhookEndpoint | None = None
    dataset_id: int | None = None
    unsubscribe_url: str = ""


class Transport:
    channel: ClassVar[str]

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, message: Message) -> int | None:
        """Sends `message`; returns the receiver's HTTP status where there is one."""
        raise NotImplementedError


class EmailTransport(Transport):
    """Django's email backend: SMTP in the services mode, files under ./var/ embedded."""

    channel = "email"

    def __init__(self) -> None:
        self.connection = None

    def open(self) -> None:
        self.connection = get_connection(fail_silently=False)
        # One connection for the batch. If the server is unreachable now, each send tries
        # again itself and fails as a temporary error.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.connection.open()

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # a failed QUIT loses nothing
                self.connection.close()
            self.connection = None

    def send(self, message: Message) -> None:
        if not message.address:
            raise TransportError("The user has no email address.", permanent=True)
        headers = {"X-Notification-Id": message.message_id}
        if message.unsubscribe_url:
            # RFC 8058: a mail client may POST to this address to unsubscribe in one click.
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            to=[message.address],
            headers=headers,
            connection=self.connection,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(
                f"The mail server refused the address: {exc}", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            # The connection may be half-dead: the next message opens a new one.
            self.close()
            self.open()
            raise TransportError(f"Could not send the email: {exc or type(exc).__name__}") from None


def _http_post(url: str, *, body: bytes, headers: dict[str, str]) -> outbound.Response:
    try:
        return outbound.post(url, body=body, headers=headers, timeout=settings.NOTIFY_HTTP_TIMEOUT)
    except outbound.UnsafeUrl as exc:
        raise TransportError(exc.message, permanent=True) from None
    except urllib3.exceptions.NewConnectionError:
        # Before the timeouts: urllib3 counts a refused connection as a connect timeout.
        raise TransportError("Could not reach the receiver: the connection failed.") from None
    except (TimeoutError, urllib3.exceptions.TimeoutError):
        raise TransportError(
            f"The receiver did not answer within {settings.NOTIFY_HTTP_TIMEOUT} s."
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransportError(f"Could not reach the receiver: {type(exc).__name__}") from None


def _check_status(response: outbound.Response) -> int:
    status = response.status
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise TransportError(
            f"The receiver answered {status} (a redirect); redirects are not followed.",
            status=status,
        )
    text = response.body[:200].decode("utf-8", "replace")
    raise TransportError(
        f"The receiver answered {status}: {text}", permanent=status == 410, status=status
    )


class WebhookTransport(Transport):
    """Standard Webhooks: a JSON body signed with the endpoint's secret(s)."""

    channel = "webhook"

    def send(self, message: Message) -> int:
        endpoint = message.endpoint
        if endpoint is None or not endpoint.is_active:
            raise TransportError("The webhook endpoint is disabled.", permanent=True)
        now = int(time.time())
        body = json.dumps(
            {
                "type": message.event_type,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "data": {**message.data, "subject": message.subject, "text": message.body},
            },
            separators=(",", ":"),
            default=str,
        ).encode()
        headers = signing.headers_sign(
            secrets_=endpoint_secrets(endpoint),
            message_id=message.message_id,
            timestamp=now,
            body=body,
        )
        headers["Content-Type"] = "application/json"
        return _check_status(_http_post(endpoint.url, body=body, headers=headers))


def endpoint_secrets(endpoint: WebhookEndpoint) -> list[str]:
    """The secrets that sign now: the current one, and the previous during a rotation."""
    from django.utils import timezone

    found = [signing.secret_from_seed(endpoint.secret_seed)]
    if (
        endpoint.previous_secret_seed
        and endpoint.previous_expires_at
        and endpoint.previous_expires_at > timezone.now()
    ):
        found.append(signing.secret_from_seed(endpoint.previous_secret_seed))
    return found


class SlackTransport(Transport):
    """Slack incoming webhooks: text, plus blocks for clients that show them."""

    channel = "slack"

    def send(self, message: Message) -> int:
        if not message.address:
            raise TransportError("The user has no Slack webhook URL.", permanent=True)
        payload = {
            "text": f"{message.subject}\n{message.body}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": message.body[:3000]}},
            ],
        }
        response = _http_post(
            message.address,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        if response.status in (400, 403, 404):
            # invalid_payload, no_service, channel_not_found: trying again will not help.
            text = response.body[:200].decode("utf-8", "replace")
            raise TransportError(
                f"Slack answered {response.status}: {text}", permanent=True, status=response.status
            )
        return _check_status(response)


# --- SMS ------------------------------------------------------------------------------


class SmsBackend:
    def send(self, *, to: str, text: str) -> int | None:
        raise NotImplementedError


def _masked(number: str) -> str:
    return f"…{number[-4:]}" if len(number) > 4 else "…"


class LogSmsBackend(SmsBackend):
    """The embedded mode's SMS: written to the log (the number masked), sent nowhere."""

    def send(self, *, to: str, text: str) -> None:
        logger.info("SMS to %s: %s", _masked(to), text)


class HttpSmsBackend(SmsBackend):
    """A Twilio-style provider: a form POST of From, To and Body with HTTP Basic auth."""

    def send(self, *, to: str, text: str) -> int:
        import base64
        from urllib.parse import urlencode

        credentials = f"{settings.NOTIFY_SMS_ACCOUNT}:{settings.NOTIFY_SMS_TOKEN}"
        response = _http_post(
            settings.NOTIFY_SMS_URL,
            body=urlencode({"From": settings.NOTIFY_SMS_FROM, "To": to, "Body": text}).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            },
        )
        if response.status == 400:
            text = response.body[:200].decode("utf-8", "replace")
            raise TransportError(f"The SMS provider refused the message: {text}", permanent=True)
        return _check_status(response)


class SmsTransport(Transport):
    channel = "sms"

    def __init__(self) -> None:
        self.backend: SmsBackend = import_string(settings.NOTIFY_SMS_BACKEND)()

    def send(self, message: Message) -> int | None:
        if not message.address:
            raise TransportError("The user has no phone number.", permanent=True)
        return self.backend.send(to=message.address, text=message.body[:640])


class InAppTransport(Transport):
    """The inbox: a row per message; its key makes a second send of it a no-op."""

    channel = "inapp"

    def send(self, message: Message) -> None:
        InboxItem.objects.bulk_create(
            [
                InboxItem(
                    key=message.key,
                    user_id=message.user_id,
                    dataset_id=message.dataset_id,
                    notification_type=message.notification_type,
                    title=message.subject,
                    body=message.body,
                )
            ],
            ignore_conflicts=True,
        )


TRANSPORTS: dict[str, type[Transport]] = {
    t.channel: t
    for t in (EmailTransport, WebhookTransport, SlackTransport, SmsTransport, InAppTransport)
}
