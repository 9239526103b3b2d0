"""Everything ``mirror/`` raises, as one tree (httpx's ``_exceptions.py`` habit).

::

    MirrorError                 str() is one sentence a person can read (see RegistryError)
    ├── InvalidReference        not an image reference ``docker pull`` would accept
    ├── InvalidPlatform         not ``os/arch[/variant]`` nor ``all``
    ├── NameConflict            two sources would land on one target
    ├── ChartUnreadable         a Helm chart's archive cannot be read safely (size, links, paths)
    ├── EngineUnavailable       an engine cannot work at all right now
    ├── Cancelled               somebody cancelled the job
    ├── StoreError              the store could not read or write right now
    │   └── StoreUnusable       MIRROR_DB cannot be this bot's database (configuration)
    ├── CopyFailed              a copy started and did not finish (``transient``: redo it whole)
    │   ├── SourceMissing       the tag or repository is not there: worth a look for the nearest
    │   ├── PlatformMissing     the source has no image for that platform
    │   └── PullLimitReached    the source's pull limit is used up until ``lifts_at``
    ├── RegistryError           how a registry conversation ended, inside the engines; the
    │   │                       faults module turns it into a CopyFailed before anyone reads it
    │   ├── Transient           worth another try of the same unit (the engine's one loop)
    │   │   ├── Unreachable     refused, reset, DNS, dropped mid-transfer
    │   │   ├── TimedOut        no answer within the timeout
    │   │   ├── TooManyRequests 429 with a short (or no) Retry-After
    │   │   ├── ServerError     5xx
    │   │   └── TokenRejected   401 on a streamed body that cannot be replayed
    │   └── Final               another try gives the same answer
    │       ├── NotFound        404, *_UNKNOWN
    │       ├── AccessDenied    401/403 after auth, DENIED
    │       ├── Refused         any other 4xx
    │       ├── Forbidden       our egress guard refused the destination
    │       ├── Untrusted       the registry's TLS certificate is not signed by a CA we trust
    │       ├── DigestMismatch  content did not hash to its digest
    │       ├── PlainHttp       HTTPS spoken to a plain-HTTP registry (configuration)
    │       └── PullLimited     429 with a long Retry-After: a pull limit until ``lifts_at``
    ├── OverBudget              (mirror.quota) a copy does not fit before it starts
    │   ├── QuotaExceeded       a person's MIRROR_QUOTA rule, until its window renews
    │   └── CapacityReached     MIRROR_TARGET_MAX_REPOS: one repository too many
    ├── EgressDenied            a connection to an internal address nobody allowed (also an
    │                           OSError: aiohttp's resolver passes only those on)
    └── _WorkerStopped          (mirror.queue.worker, private) procrastinate's worker ended by
                                itself; retried there, never shown

Every failure that reaches a person is a ``MirrorError`` whose ``str()`` is the sentence, so
adapters and the CLI show it verbatim without ever leaking a traceback or a credential. The
``RegistryError`` branch is the exception: its ``str()`` is ``registry: detail`` for the log,
and :func:`mirror.engines.faults.explain` words it for people.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from mirror.text import Text
from mirror.units import utc_clock

if TYPE_CHECKING:
    from mirror.reference import ImageRef


class MirrorError(Exception):
    """Base class: ``str(self)`` is a complete, human sentence."""


class InvalidReference(MirrorError):
    """The text is not an image reference ``docker pull`` would accept."""


class InvalidPlatform(MirrorError):
    """The text is not ``os/arch[/variant]`` nor ``all``."""


class NameConflict(MirrorError):
    """Two different sources would land on the same target."""


class ChartUnreadable(MirrorError):
    """A Helm chart's archive cannot be read safely: too large, a link, a path outside it, or
    no chart at all (:mod:`mirror.charts`)."""


class EngineUnavailable(MirrorError):
    """The engine cannot work at all right now (e.g. the Docker daemon does not answer)."""


class Cancelled(MirrorError):
    """Somebody cancelled the job."""


JOB_CANCELLED = Text("The job was cancelled.")


# -- the store -----------------------------------------------------------------------------------


class StoreError(MirrorError):
    """The store could not read or write right now; the cause is chained for the log."""


class StoreUnusable(StoreError):
    """``MIRROR_DB`` cannot be this bot's database (a configuration error, found at start)."""


# -- copies --------------------------------------------------------------------------------------


class CopyFailed(MirrorError):
    """A copy started but did not finish; the sentence says why.

    ``transient`` marks a fault worth redoing the *whole* copy for (the docker daemon's network
    faults); the job service retries only those. The registry engine retries its own faults
    per request unit and never sets it, so attempts do not multiply.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SourceMissing(CopyFailed):
    """The source's tag or repository is not there (or hidden from us): worth a look for the
    nearest real thing (:mod:`mirror.lookup`)."""


class PlatformMissing(CopyFailed):
    """The source exists but has no image for ``platform``."""

    def __init__(self, message: str, platform: str) -> None:
        super().__init__(message)
        self.platform = platform


class PullLimitReached(CopyFailed):
    """``registry``'s pull limit is used up until ``lifts_at`` (UTC); retrying sooner is useless.

    ``str()`` is the sentence for an answer that ends here (``mirror-bot mirror``);
    :meth:`waiting` the one for a job that waits and continues by itself (the bot).
    """

    def __init__(self, registry: str, lifts_at: datetime, limit: int | None = None) -> None:
        self.registry = registry
        self.lifts_at = lifts_at
        self.limit = limit
        when = utc_clock(lifts_at)
        if limit is None:
            sentence = Text(
                "{registry}'s pull limit is used up; it lifts at {when}.",
                registry=registry,
                when=when,
            )
        else:
            sentence = Text(
                "{registry}'s pull limit of {limit} is used up; it lifts at {when}.",
                registry=registry,
                limit=limit,
                when=when,
            )
        super().__init__(sentence)

    def waiting(self) -> str:
        return Text(
            "{registry}'s pull limit is used up; continuing at {when}.",
            registry=self.registry,
            when=utc_clock(self.lifts_at),
        )


def too_large(source: ImageRef, size: int, limit: int, *, at_least: bool = False) -> CopyFailed:
    """MIRROR_MAX_IMAGE_BYTES refused ``source`` (``size``: compressed blob bytes)."""
    mib = 1 << 20
    size_mib, limit_mib = f"{size / mib:.1f}", f"{limit / mib:.1f}"
    if at_least:
        sentence = Text(
            "`{image}` is too large: at least {size} MiB, over the limit of {limit} MiB "
            "(MIRROR_MAX_IMAGE_BYTES).",
            image=source.familiar,
            size=size_mib,
            limit=limit_mib,
        )
    else:
        sentence = Text(
            "`{image}` is too large: {size} MiB, over the limit of {limit} MiB "
            "(MIRROR_MAX_IMAGE_BYTES).",
            image=source.familiar,
            size=size_mib,
            limit=limit_mib,
        )
    return CopyFailed(sentence)


# -- registry conversations (the engines' own; explained before anyone reads them) --------------


class RegistryError(MirrorError):
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


class TooManyRequests(Transient):
    """HTTP 429; ``retry_after`` seconds from the ``Retry-After`` header when it had one.

    (Not ``RateLimited``: that is the chat's 429, :class:`bot.chat.RateLimited`.)
    """

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


# -- egress ----------------------------------------------------------------------------------


class EgressDenied(MirrorError, OSError):
    """A connection to an internal address that nobody allowed (:mod:`mirror.egress`).

    An ``OSError`` too: aiohttp's connector passes a resolver's ``OSError`` on (as the cause
    of its ``ClientConnectorError``), where the registry client finds it.
    """

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} is an internal address")
        self.host = host
