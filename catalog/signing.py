"""Presigned S3 GETs (AWS Signature Version 4, query-string form) without botocore's
per-call machinery.

botocore's `generate_presigned_url` resolves the endpoint from its rule set, builds an
AWSRequest, runs its event hooks and derives the signing key again on every call: about
0.7 ms of a signed-URL request that otherwise costs a few hundred microseconds. What it
computes depends only on the key, the time and the expiry once the endpoint and the
credentials are known, so `QuerySigner` does exactly that: one canonical request, one
HMAC with a signing key derived once a day (the key depends on the date, the region,
the service and the secret only).

The endpoint (scheme, host, the bucket's place in the path or the host name), the
region and the access key are not worked out here: they are read from one URL botocore
presigns for a probe key (`signer_for`), and the signer is used only if it produces that
very URL for the same inputs and time. Anything it would sign differently (another
endpoint rule, a checksum mode, credentials that rotate) is found then, and botocore
keeps signing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

logger = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
_PROBE_KEY = "probe/signing check ü+~.csv"
_PROBE_DISPOSITION = 'attachment; filename="signing check ü.csv"'


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class QuerySigner:
    """Presigns GETs of one bucket's objects, as botocore would for the same inputs."""

    def __init__(
        self,
        *,
        base: str,
        host: str,
        prefix: str,
        region: str,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
    ) -> None:
        self.base = base  # scheme://netloc
        self.host = host  # the Host header as signed
        self.prefix = prefix  # the path before the object key: "/bucket/" or "/"
        self.region = region
        self.access_key = access_key
        self.session_token = session_token
        self._secret = ("AWS4" + secret_key).encode()
        self._day_keys: tuple[str, bytes] | None = None

    def _signing_key(self, day: str) -> bytes:
        cached = self._day_keys
        if cached is not None and cached[0] == day:
            return cached[1]
        key = _hmac(_hmac(_hmac(_hmac(self._secret, day), self.region), "s3"), "aws4_request")
        self._day_keys = (day, key)
        return key

    def presign_get(
        self, key: str, *, expires_in: int, signed_at: datetime, disposition: str | None = None
    ) -> str:
        """The URL of a GET of `key` valid `expires_in` seconds from `signed_at` (UTC,
        whole seconds), with `response-content-disposition` when given."""
        stamp = signed_at.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        credential = f"{self.access_key}/{day}/{self.region}/s3/aws4_request"
        params = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", credential),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires_in)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if self.session_token:
            params.append(("X-Amz-Security-Token", self.session_token))
        if disposition:
            params.insert(0, ("response-content-disposition", disposition))
        encoded = [(_quote(name), _quote(value)) for name, value in params]
        query = "&".join(f"{name}={value}" for name, value in encoded)
        canonical_query = "&".join(f"{name}={value}" for name, value in sorted(encoded))
        path = self.prefix + quote(key, safe="/~")
        canonical = f"GET\n{path}\n{canonical_query}\nhost:{self.host}\n\nhost\nUNSIGNED-PAYLOAD"
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.base}{path}?{query}&X-Amz-Signature={signature}"


def _signed_host(scheme: str, netloc: str) -> str:
    host, _, port = netloc.rpartition(":")
    if host and port == {"http": "80", "https": "443"}.get(scheme):
        return host
    return netloc


def signer_from_botocore(client, bucket: str, *, secret_key: str, session_token: str | None):
    """A QuerySigner for `bucket` that signs exactly as `client` does, or None when it
    would not (checked on a probe URL signed by both at the same second)."""
    expected = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": _PROBE_KEY,
            "ResponseContentDisposition": _PROBE_DISPOSITION,
        },
        ExpiresIn=60,
    )
    parts = urlsplit(expected)
    query = dict(parse_qsl(parts.query))
    encoded_key = quote(_PROBE_KEY, safe="/~")
    try:
        access_key, _, region, service, _ = query["X-Amz-Credential"].split("/")
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError):
        return None
    if service != "s3" or not parts.path.endswith(encoded_key):
        return None
    signer = QuerySigner(
        base=f"{parts.scheme}://{parts.netloc}",
        host=_signed_host(parts.scheme, parts.netloc),
        prefix=parts.path[: -len(encoded_key)],
        region=region,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
    )
    ours = signer.presign_get(
        _PROBE_KEY, expires_in=60, signed_at=signed_at, disposition=_PROBE_DISPOSITION
    )
    if ours != expected:
        logger.warning("Presigned URLs are left to botocore: its URL differs from ours.")
        return None
    return signer


_signers: dict[tuple, tuple[object, QuerySigner | None]] = {}
_lock = threading.Lock()


def signer_for(client, bucket: str, *, access_key, secret_key, session_token=None):
    """The checked signer of `client`'s `bucket` (made once per client and bucket), or
    None: without static credentials (botocore's chain may rotate them), or when the
    check fails."""
    if not access_key or not secret_key:
        return None
    key = (id(client), bucket, access_key, secret_key, session_token)
    found = _signers.get(key)
    if found is not None and found[0] is client:
        return found[1]
    with _lock:
        found = _signers.get(key)
        if found is not None and found[0] is client:
            return found[1]
        signer = signer_from_botocore(
            client, bucket, secret_key=secret_key, session_token=session_token
        )
        _signers[key] = (client, signer)
        return signer
