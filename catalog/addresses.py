"""The address a request came from, for rate limits, the audit log and lock-outs alike.

`X-Forwarded-For` is a list anyone can write: a client may send any addresses it likes,
and each proxy appends the address it received the request from. So the header is read
only when the connection itself comes from one of our own proxies (`TRUSTED_PROXIES`,
addresses or networks), and then from the right: each hop that is one of our proxies is
skipped, and the first address that is not is the client. With no proxies configured
(the default) the header is ignored and the client is the connection's address.

`from_trusted_proxy` says the same of other headers a proxy sets (the usage log's
country). One function, `client_ip`, answers for the throttles, `Actor.from_request` (the audit
log) and django-axes (`AXES_CLIENT_IP_CALLABLE`), so the three can never disagree.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in configured)


@lru_cache(maxsize=4096)
def _address(text: str) -> _Address | None:
    # Every request asks of its connection's address, and clients come back: each
    # address is parsed once (the objects are immutable, so they are shared safely).
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _shown(text: str) -> str:
    # The connection's address as `client_ip` answers it (the same for every request).
    return str(_address(text))


def _trusted(address: _Address, networks: tuple[_Network, ...]) -> bool:
    return any(address in network for network in networks)


def from_trusted_proxy(request) -> bool:
    """Whether the connection itself comes from one of our own proxies, whose headers
    (the forwarded address, a country) may then be believed."""
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return remote is not None and bool(networks) and _trusted(remote, networks)


def client_ip(request) -> str | None:
    """The client's address as our own proxies saw it; never an address the client wrote
    itself. None when the connection's address is missing or malformed."""
    text = request.META.get("REMOTE_ADDR", "")
    remote = _address(text)
    if remote is None:
        return None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(remote, networks):
        return _shown(text)
    client = remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed(forwarded.split(",") if forwarded else []):
        address = _address(hop)
        if address is None:
            break  # garbage from further left is the client's own writing
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
