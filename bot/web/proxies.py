"""Whose X-Forwarded-For is believed: only a proxy listed in TRUSTED_PROXIES.

Directly on the network (the default, no proxies), the client is the connection's peer and
any X-Forwarded-For is the client's own claim, ignored. Behind a proxy, a request arriving
from a listed address has its client taken from X-Forwarded-For: the right-most address that
is not itself a trusted proxy (each proxy appends the peer it saw, so everything left of that
is whatever the client chose to send). The scheme comes from X-Forwarded-Proto the same way.

This is the only place it happens: uvicorn's own proxy handling is switched off (see
`devicecare web`), and the app applies uvicorn's ProxyHeadersMiddleware with our list, so the
rate limit and every log line see the same client whatever server runs the app.
"""

from __future__ import annotations

import ipaddress

from starlette.middleware import Middleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> list[Network]:
    """TRUSTED_PROXIES as networks (a bare address is a network of one); ValueError names
    the entry that is neither, since a silently ignored typo would trust no one or too many."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (write e.g. 10.0.0.5 or 10.0.0.0/8)"
            ) from None
    return networks


def trusted_proxy_middleware(trusted_proxies: str) -> list[Middleware]:
    """The middleware that reads forwarded headers from trusted proxies; none without any."""
    networks = parse_trusted_proxies(trusted_proxies)
    if not networks:
        return []
    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=[str(n) for n in networks])]
