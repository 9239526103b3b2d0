"""Which hosts are internal: one rule for the policy (names) and the egress guard (addresses).

Kept free of HTTP imports so the policy can use it without loading a client at start-up.
"""

from __future__ import annotations

import ipaddress


def is_internal_address(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return False
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
    )


def is_internal_host(host: str) -> bool:
    """True for internal IP literals and ``localhost`` names (no DNS asked)."""
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or is_internal_address(host)
