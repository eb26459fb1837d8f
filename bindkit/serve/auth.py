"""Bearer-token authentication and the rule about which hosts need one.

With a token configured every route except the health checks (``/.well-known/live``, ``/.well-known/ready``)
requires ``Authorization: Bearer <token>`` — the OpenAI client sends exactly that from its ``api_key``.
Binding a non-loopback address without a token must be asked for explicitly (``--insecure``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os

#: Routes open to everyone (orchestrators probe them without credentials).
PUBLIC_PATHS = frozenset({"/.well-known/live", "/.well-known/ready"})

TOKEN_ENV = "BINDKIT_TOKEN"


def token_from_env() -> str | None:
    """``$BINDKIT_TOKEN`` when set and non-empty."""
    value = os.environ.get(TOKEN_ENV, "").strip()
    return value or None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` as a bearer token (constant-time compare)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
