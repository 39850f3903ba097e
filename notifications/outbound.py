"""Outbound HTTP to addresses that users give us (webhooks, Slack, an SMS provider).

A URL typed by a user must never make the server talk to itself or its neighbours
(server-side request forgery). So every request:

- accepts only http and https, and no credentials in the URL;
- resolves the host once, refuses it if any address is loopback, private, link-local,
  CGNAT (100.64/10), multicast, reserved, unspecified or a cloud metadata address;
  addresses written as a decimal, hex or octal number, or as IPv4-mapped IPv6, are
  resolved to what they mean first, so they are judged as the address they are;
- connects to the address it checked (no second lookup a DNS rebinding could change),
  sending the original host name in `Host` and for TLS (SNI and certificate checks);
- over https, checks the certificate against the system's authorities (or
  `NOTIFY_CA_BUNDLE`'s) and the host name;
- follows no redirects and times out.

`NOTIFY_ALLOW_PRIVATE_HOSTS` lists host names or addresses that may be private anyway:
a development setup's receivers on loopback, the tests'.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

from catalog.exceptions import InvalidInput

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


class UnsafeUrl(InvalidInput):
    code = "unsafe_url"


@dataclass(frozen=True)
class Target:
    """A URL checked for sending: where to connect and what to say the host is."""

    scheme: str
    host: str
    port: int
    address: str
    path: str


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private address"
    return None


def _allowed_private(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.NOTIFY_ALLOW_PRIVATE_HOSTS}


def url_check(url: str, *, resolve: bool = True) -> Target:
    """Checks `url` by the rules above; raises UnsafeUrl saying why it is refused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The URL is malformed: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Only http and https URLs are accepted.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("The URL must not carry credentials (user:password@).")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("The URL names no host.")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not resolve:
        return Target(parts.scheme, host, port, "", path)
    try:
        # getaddrinfo reads 2130706433, 0x7f000001 and 0177.0.0.1 as the IPv4 they mean.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"The host {host!r} cannot be resolved.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not _allowed_private(host):
        for ip in addresses:
            why = _refused(ip)
            if why:
                raise UnsafeUrl(f"The host {host!r} resolves to {why} ({ip}), which is refused.")
    return Target(parts.scheme, host, port, str(addresses[0]), path)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> Response:
    """POSTs `body` to a checked `url`; raises UnsafeUrl, or urllib3's errors on failure."""
    target = url_check(url)
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.NOTIFY_CA_BUNDLE or None,
            retries=False,
            timeout=timeout,
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, retries=False, timeout=timeout, maxsize=1
        )
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    try:
        answer = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host_header, "User-Agent": settings.NOTIFY_USER_AGENT},
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(total=timeout),
        )
        try:
            # Only the start of an answer matters; a receiver cannot make us read forever.
            content = answer.read(4096)
        finally:
            answer.release_conn()
        return Response(answer.status, content, dict(answer.headers))
    finally:
        pool.close()
