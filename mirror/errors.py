"""Errors that carry one sentence a chat user can read.

Every failure that reaches a person goes through these classes, so adapters and the CLI can
show ``str(error)`` verbatim without ever leaking a traceback or a credential.
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


class EngineUnavailable(MirrorError):
    """The engine cannot work at all right now (e.g. the Docker daemon does not answer)."""


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


class Cancelled(MirrorError):
    """Somebody cancelled the job."""


# Sentences both engines say alike (each words the rest in its own terms).

JOB_CANCELLED = Text("The job was cancelled.")


def push_login_refused(registry: str, image: str) -> Text:
    return Text(
        "The target registry `{registry}` refused the push of `{image}`: "
        "check MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD.",
        registry=registry,
        image=image,
    )


def access_denied(image: str) -> Text:
    return Text("Access to `{image}` was denied: it does not exist or is private.", image=image)


def not_found(registry: str, image: str) -> Text:
    return Text(
        "`{image}` was not found in `{registry}`: check the name and tag.",
        registry=registry,
        image=image,
    )


def rate_limited(registry: str) -> Text:
    return Text(
        "The registry `{registry}` is rate-limiting us; try again later.", registry=registry
    )
