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
    """``$BINDKIT_TOKEN`` when set and not blank, as it is (:func:`token_problem` refuses stray spaces)."""
    value = os.environ.get(TOKEN_ENV, "")
    return value if value.strip() else None


def token_problem(token: str, source: str = "--token") -> str | None:
    """Why ``token`` could never match a client's ``Authorization: Bearer`` header (None when it can): HTTP
    header values are ASCII, and spaces around or inside it are lost or split by clients and by our parsing."""
    if not token:
        return f"{source} is empty; choose a token of visible ASCII characters (e.g. `openssl rand -hex 32`)"
    bad = next((c for c in token if not "!" <= c <= "~"), None)
    if bad is None:
        return None
    where = "starts or ends with" if token != token.strip() else "contains"
    what = "whitespace" if bad.isspace() else f"the non-ASCII character {bad!r}" if not bad.isascii() else \
        f"the control character {bad!r}"
    return (f"{source} {where} {what}; a bearer token must be visible ASCII characters only (letters, digits and "
            "punctuation; no spaces), or no client could ever send it: generate one with `openssl rand -hex 32`")


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
