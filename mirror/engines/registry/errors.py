"""What a registry conversation can end in, as a tree (httpx's ``_exceptions.py`` habit).

::

    RegistryError
    ├── Transient                 worth another try of the same unit (the engine's one loop)
    │   ├── Unreachable           refused, reset, DNS, dropped mid-transfer
    │   ├── TimedOut              no answer within the timeout
    │   ├── RateLimited           429 with a short (or no) Retry-After
    │   ├── ServerError           5xx
    │   └── TokenRejected         401 on a streamed body that cannot be replayed
    └── Final                     another try gives the same answer
        ├── NotFound              404, *_UNKNOWN
        ├── AccessDenied          401/403 after auth, DENIED
        ├── Refused               any other 4xx
        ├── Forbidden             our egress guard refused the destination
        ├── DigestMismatch        content did not hash to its digest
        ├── PlainHttp             HTTPS spoken to a plain-HTTP registry (configuration)
        └── PullLimited           429 with a long Retry-After: a pull limit until ``lifts_at``
"""

from __future__ import annotations

from datetime import datetime


class RegistryError(Exception):
    """A registry said no, or could not be asked."""

    transient = False

    def __init__(self, registry: str, detail: str = "") -> None:
        super().__init__(f"{registry}: {detail}" if detail else registry)
        self.registry = registry
        self.detail = detail


class Transient(RegistryError):
    """Worth retrying."""

    transient = True


class Final(RegistryError):
    """Not worth retrying."""


class Unreachable(Transient):
    """No answer: refused, reset, DNS, TLS, or the connection dropped mid-transfer."""


class TimedOut(Transient):
    """The registry stopped answering within the timeout."""


class RateLimited(Transient):
    """HTTP 429; ``retry_after`` seconds from the ``Retry-After`` header when it had one."""

    def __init__(self, registry: str, retry_after: float | None) -> None:
        super().__init__(registry, "too many requests")
        self.retry_after = retry_after


class ServerError(Transient):
    """HTTP 5xx."""

    def __init__(self, registry: str, status: int) -> None:
        super().__init__(registry, f"HTTP {status}")
        self.status = status


class TokenRejected(Transient):
    """A 401 on a request whose streamed body cannot be replayed: redo the whole transfer."""


class NotFound(Final):
    """The repository, manifest or blob does not exist (HTTP 404)."""


class AccessDenied(Final):
    """Authentication failed or the token lacks the scope (HTTP 401/403 after auth)."""


class Forbidden(Final):
    """We refused to connect: the destination is an internal address nobody allowed."""


class Untrusted(Final):
    """The registry's TLS certificate is not signed by a CA we trust; the detail is the
    sentence (a ``Text``) saying where its CA belongs (``/etc/docker/certs.d/HOST/ca.crt``,
    as for the docker client)."""


class DigestMismatch(Final):
    """Content did not hash to the digest that names it."""


class PlainHttp(Final):
    """We spoke HTTPS to a registry that answers plain HTTP: a configuration error."""


class Refused(Final):
    """Any other 4xx: the registry understood and refused (invalid manifest, unsupported...)."""

    def __init__(self, registry: str, status: int, detail: str) -> None:
        super().__init__(registry, f"HTTP {status} {detail}".strip())
        self.status = status


class PullLimited(Final):
    """A 429 whose ``Retry-After`` is too long to wait out inside one copy (a pull limit).

    Final for this attempt: the job can only wait for ``lifts_at`` (a UTC time).
    """

    def __init__(
        self, registry: str, lifts_at: datetime, limit: int | None, remaining: int | None
    ) -> None:
        super().__init__(registry, f"pull limit until {lifts_at.isoformat()}")
        self.lifts_at = lifts_at
        self.limit = limit
        self.remaining = remaining
