"""Faults -> one sentence for a person: the one translator every engine's failures go through.

A copy ends in a fault the bot met itself (a :class:`~mirror.errors.RegistryError` of the
registry client) or one the Docker daemon passes on in its own words (``unauthorized: ...``,
``manifest unknown``, ``dial tcp ...: connection refused``). Both become a :class:`Fault` of
one :class:`Kind` (:func:`of_registry`, :func:`of_daemon`), and :func:`explain` words it from
one table. The daemon keeps its own wording only where the fix differs (its own
insecure-registries) or where it tells less (it does not say whether a connection dropped, nor
when a pull limit lifts); its network faults are the only ones worth redoing a whole copy for
(``transient``): the registry engine has already retried each unit, so its faults never are.

A target's refusal of a push is read first, as the one thing to create or grant (issue 12).
Registries refuse a push in their own words: Harbor answers ``NOT_FOUND`` "project NAME not
found" when the project was never created (it creates none on push), Aliyun ACR refuses a
namespace nobody created, and every registry says "denied" or "unauthorized" both when nobody
logged in and when the account lacks the right. Pure: no I/O.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto

from mirror.errors import (
    AccessDenied,
    CopyFailed,
    DigestMismatch,
    Forbidden,
    MirrorError,
    NotFound,
    PlainHttp,
    PlatformMissing,
    PullLimited,
    PullLimitReached,
    Refused,
    RegistryError,
    ServerError,
    SourceMissing,
    TimedOut,
    TokenRejected,
    TooManyRequests,
    Unreachable,
    Untrusted,
)
from mirror.reference import ImageRef
from mirror.text import N_, Text


class Kind(Enum):
    """What went wrong, whoever noticed it."""

    PULL_LIMITED = auto()  # used up, lifting at a known time
    PULL_LIMIT = auto()  # used up, and nobody said until when (the daemon)
    UNTRUSTED = auto()
    PLAIN_HTTP = auto()
    DIGEST_MISMATCH = auto()
    TOO_MANY_REQUESTS = auto()
    SERVER_ERROR = auto()
    TIMED_OUT = auto()
    UNREACHABLE = auto()
    ACCESS_DENIED = auto()
    NOT_FOUND = auto()
    FORBIDDEN = auto()
    REFUSED = auto()
    NO_PLATFORM = auto()
    OTHER = auto()


@dataclass(frozen=True)
class Fault:
    """One fault, as the table reads it."""

    kind: Kind
    registry: str
    words: str | None = None
    """The registry's own words, when it said some: a push refusal is read from them."""
    denied: bool = False
    """The registry refused access (401/403, ``DENIED``), rather than not finding something."""
    detail: str = ""
    """The address (``FORBIDDEN``), the client's sentence (``UNTRUSTED``), the platform
    (``NO_PLATFORM``) or the daemon's first line (``OTHER``)."""
    status: int | None = None
    lifts_at: datetime | None = None
    limit: int | None = None
    daemon: bool = False
    """Passed on by the Docker daemon (its wording where it differs; see the module)."""


# -- the table ----------------------------------------------------------------------------------

_SOURCE, _TARGET = "source", "target"

_SENTENCES: dict[tuple[Kind, str | None, bool], str] = {
    # (kind, side or None for either, said by the daemon) -> template
    (Kind.PLAIN_HTTP, None, False): N_(
        "The registry `{registry}` answers plain HTTP, not HTTPS: list it in "
        "MIRROR_INSECURE_REGISTRIES if that is intended."
    ),
    (Kind.PLAIN_HTTP, None, True): N_(
        "The registry `{registry}` answers plain HTTP, not HTTPS: list it in "
        "MIRROR_INSECURE_REGISTRIES (and in the Docker daemon's insecure-registries) "
        "if that is intended."
    ),
    (Kind.DIGEST_MISMATCH, None, False): N_(
        "Content of `{image}` arrived corrupted from `{registry}` (its sha256 did not "
        "match); nothing was tagged at the target."
    ),
    (Kind.TOO_MANY_REQUESTS, None, False): N_(
        "The registry `{registry}` is rate-limiting us; try again later."
    ),
    (Kind.PULL_LIMIT, None, True): N_(
        "{registry}'s pull limit is used up (the daemon does not say when it lifts); "
        "try again later, or give the daemon credentials for it."
    ),
    (Kind.SERVER_ERROR, None, False): N_(
        "The registry `{registry}` kept failing (HTTP {status}); try again later."
    ),
    (Kind.TIMED_OUT, None, False): N_("The registry `{registry}` stopped answering in time."),
    (Kind.UNREACHABLE, None, False): N_(
        "The registry `{registry}` could not be reached or dropped the connection."
    ),
    (Kind.UNREACHABLE, None, True): N_("The registry `{registry}` could not be reached."),
    (Kind.ACCESS_DENIED, _SOURCE, False): N_(
        "Access to `{image}` was denied: it does not exist or is private."
    ),
    (Kind.ACCESS_DENIED, _TARGET, False): N_(
        "The target registry `{registry}` refused the push of `{image}`: "
        "check MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD."
    ),
    (Kind.NOT_FOUND, _SOURCE, False): N_(
        "`{image}` was not found in `{registry}`: check the name and tag."
    ),
    (Kind.NOT_FOUND, _TARGET, False): N_(
        "The target registry `{registry}` lost part of `{image}` mid-copy."
    ),
    (Kind.NOT_FOUND, _TARGET, True): N_("The target registry `{registry}` lost part of `{image}`."),
    (Kind.FORBIDDEN, None, False): N_(
        "The copy of `{image}` was stopped: `{registry}` led to the internal address "
        "`{address}`, which only an operator can allow (MIRROR_ALLOWED_SOURCES)."
    ),
    (Kind.REFUSED, _SOURCE, False): N_(
        "The source registry `{registry}` refused `{image}` (HTTP {status})."
    ),
    (Kind.REFUSED, _TARGET, False): N_(
        "The target registry `{registry}` refused `{image}` (HTTP {status})."
    ),
    (Kind.NO_PLATFORM, None, False): N_("`{image}` has no image for {platform}."),
    (Kind.OTHER, None, False): N_("The registry `{registry}` failed on `{image}`."),
    (Kind.OTHER, None, True): N_("The Docker daemon failed on `{image}`: {message}."),
}

_SOURCE_MISSING = frozenset({Kind.ACCESS_DENIED, Kind.NOT_FOUND})
"""A source that is not there (or hidden): worth a look for the nearest real thing."""

_WORTH_A_NEW_COPY = frozenset({Kind.UNREACHABLE, Kind.TOO_MANY_REQUESTS})
"""The daemon's faults worth redoing the whole copy for (it retries nothing itself)."""


def _template(kind: Kind, side: str, daemon: bool) -> str:
    """The daemon's own wording where it has one, else the common one; one side's, else
    either side's."""
    for key in ((kind, side, daemon), (kind, None, daemon), (kind, side, False)):
        if key in _SENTENCES:
            return _SENTENCES[key]
    return _SENTENCES[(kind, None, False)]


def _say(template: str, **values: object) -> Text:
    """``template`` with the values it names (the catalog keeps only those)."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return Text(template, **{k: v for k, v in values.items() if k in names})


def explain(
    fault: Fault | RegistryError, ref: ImageRef, *, pushing: bool, logged_in: bool = True
) -> MirrorError:
    """One sentence for a person, as the error the job service sorts by.

    ``ref`` is the image on the side that failed (the target when ``pushing``);
    ``logged_in``: the bot has credentials for the target (a refusal reads differently).
    """
    if isinstance(fault, RegistryError):
        fault = of_registry(fault)
    if pushing and fault.words is not None:
        said = push_refusal(ref, fault.words, logged_in=logged_in, denied=fault.denied)
        if said is not None:
            return CopyFailed(said)
    if fault.kind is Kind.PULL_LIMITED:
        assert fault.lifts_at is not None  # of_registry sets it
        return PullLimitReached(fault.registry, fault.lifts_at, fault.limit)
    if fault.kind is Kind.UNTRUSTED:
        return CopyFailed(fault.detail)  # the client's sentence, a Text
    if fault.kind is Kind.NO_PLATFORM:
        return _no_platform(fault, ref)
    side = _TARGET if pushing else _SOURCE
    sentence = _say(
        _template(fault.kind, side, fault.daemon),
        registry=fault.registry,
        image=ref.familiar,
        status=fault.status,
        address=fault.detail,
        message=fault.detail,
    )
    if fault.kind in _SOURCE_MISSING and not pushing:
        return SourceMissing(sentence)
    return CopyFailed(sentence, transient=fault.daemon and fault.kind in _WORTH_A_NEW_COPY)


def _no_platform(fault: Fault, ref: ImageRef) -> PlatformMissing:
    if not fault.detail:
        return PlatformMissing(
            Text("`{image}` has no image for that platform.", image=ref.familiar), ""
        )
    sentence = _say(
        _template(Kind.NO_PLATFORM, _SOURCE, fault.daemon),
        image=ref.familiar,
        platform=fault.detail,
    )
    return PlatformMissing(sentence, fault.detail)


# -- what the registry client met ---------------------------------------------------------------

_REGISTRY_KINDS: dict[type[RegistryError], Kind] = {
    PullLimited: Kind.PULL_LIMITED,
    Untrusted: Kind.UNTRUSTED,
    PlainHttp: Kind.PLAIN_HTTP,
    DigestMismatch: Kind.DIGEST_MISMATCH,
    TooManyRequests: Kind.TOO_MANY_REQUESTS,
    ServerError: Kind.SERVER_ERROR,
    TimedOut: Kind.TIMED_OUT,
    Unreachable: Kind.UNREACHABLE,
    TokenRejected: Kind.UNREACHABLE,
    AccessDenied: Kind.ACCESS_DENIED,
    NotFound: Kind.NOT_FOUND,
    Forbidden: Kind.FORBIDDEN,
    Refused: Kind.REFUSED,
}

_WITH_WORDS = frozenset({Kind.ACCESS_DENIED, Kind.NOT_FOUND, Kind.REFUSED})
"""Answers whose body carries the registry's own words (its ``errors[0].message``)."""


def of_registry(exc: RegistryError) -> Fault:
    kind = next(
        (_REGISTRY_KINDS[cls] for cls in type(exc).__mro__ if cls in _REGISTRY_KINDS), Kind.OTHER
    )
    pull_limit = exc if isinstance(exc, PullLimited) else None
    return Fault(
        kind,
        exc.registry,
        words=exc.detail if kind in _WITH_WORDS else None,
        denied=kind is Kind.ACCESS_DENIED,
        detail=exc.detail,
        status=getattr(exc, "status", None),
        lifts_at=pull_limit.lifts_at if pull_limit else None,
        limit=pull_limit.limit if pull_limit else None,
    )


# -- what the Docker daemon passed on -----------------------------------------------------------

_DENIED_WORDS = ("unauthorized", "authentication required", "denied")

_DAEMON_WORDS: tuple[tuple[tuple[str, ...], Kind], ...] = (
    # the first that matches wins: a missing platform before a refusal, a refusal before
    # "not found" (Harbor's "unauthorized: project x not found"), a pull limit before 429s
    (("no matching manifest",), Kind.NO_PLATFORM),
    (_DENIED_WORDS, Kind.ACCESS_DENIED),
    (("manifest unknown", "not found"), Kind.NOT_FOUND),
    (("server gave http response to https client",), Kind.PLAIN_HTTP),
    (("connection refused", "no such host", "i/o timeout", "dial tcp"), Kind.UNREACHABLE),
    # Docker Hub's limit lifts hours later: redoing the copy now only spends attempts.
    (("pull rate limit",), Kind.PULL_LIMIT),
    (("toomanyrequests", "rate limit"), Kind.TOO_MANY_REQUESTS),
)

_PLATFORM_WORDS = re.compile(r"for ([\w/.-]+) in the manifest")


def of_daemon(message: str, registry: str) -> Fault:
    """The daemon's message (it passes the registry's words on) as a fault at ``registry``."""
    text = message.lower()
    kind = next((k for words, k in _DAEMON_WORDS if any(w in text for w in words)), Kind.OTHER)
    if kind is Kind.NO_PLATFORM:
        found = _PLATFORM_WORDS.search(message)
        detail = found.group(1) if found else ""
    else:
        first = message.strip().splitlines()[0] if message.strip() else "unknown error"
        detail = first[:200]
    return Fault(
        kind,
        registry,
        words=message,
        denied=any(w in text for w in _DENIED_WORDS),
        detail=detail,
        daemon=True,
    )


# -- a target's refusal of a push ---------------------------------------------------------------

_HARBOR_PROJECT_RE = re.compile(r"project ([a-z0-9][a-z0-9._-]*) not found", re.IGNORECASE)
_BAD_LOGIN = (
    "refused the credentials",
    "authentication required",
    "incorrect username",
    "unauthorized",
)
_NO_RIGHT = ("denied", "insufficient_scope", "insufficient scope", "forbidden", "not authorized")
_ACR_NAMESPACE = ("namespace", "name unknown", "name_unknown", "not found", "not exist", "denied")


def _namespace(target: ImageRef) -> str:
    return target.repository.split("/", 1)[0] if "/" in target.repository else ""


def is_acr(registry: str) -> bool:
    """Aliyun Container Registry: ``registry.cn-hangzhou.aliyuncs.com``, and Enterprise
    Edition's ``NAME-registry.cn-hangzhou.cr.aliyuncs.com``."""
    return registry.split(":", 1)[0].lower().endswith(".aliyuncs.com")


def push_refusal(
    target: ImageRef, message: str, *, logged_in: bool, denied: bool = True
) -> str | None:
    """One sentence saying what to create or grant, or None when the words are not known.

    ``denied``: the registry refused access (401/403, ``DENIED``); else it said "not found"
    or another 4xx, which names a missing project or namespace or nothing we know.
    """
    harbor = _HARBOR_PROJECT_RE.search(message)
    if harbor:
        return Text(
            "The Harbor project `{project}` does not exist on `{registry}`: create it "
            "(Projects, New project) or point MIRROR_TARGET at an existing one.",
            project=harbor.group(1),
            registry=target.registry,
        )
    if not denied:
        if is_acr(target.registry) and "namespace" in message.lower():
            return Text(
                "The target registry `{registry}` refused the push of `{image}`: the ACR "
                "namespace `{namespace}` does not exist; create it.",
                namespace=_namespace(target),
                registry=target.registry,
                image=target.familiar,
            )
        return None
    if not logged_in:
        return Text(
            "The target registry `{registry}` refused the push of `{image}`: it wants a login; "
            "set MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD (or run `docker login` on "
            "the bot's machine).",
            registry=target.registry,
            image=target.familiar,
        )
    return _denied(target, message.lower())


def _denied(target: ImageRef, text: str) -> str | None:
    """A logged-in push refused: a namespace to create, a login to fix, or a right to grant."""
    names = {"registry": target.registry, "image": target.familiar}
    namespace = _namespace(target)
    if is_acr(target.registry) and namespace and any(w in text for w in _ACR_NAMESPACE):
        return Text(
            "The target registry `{registry}` refused the push of `{image}`: the ACR namespace "
            "`{namespace}` does not exist or the account may not push to it; create it "
            "(Container Registry console, Namespaces) or grant the account push rights there.",
            namespace=namespace,
            **names,
        )
    if any(w in text for w in _BAD_LOGIN):
        return Text(
            "The target registry `{registry}` refused the push of `{image}`: it refused the "
            "login; check MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD.",
            **names,
        )
    if not any(w in text for w in _NO_RIGHT):
        return None
    if namespace:
        return Text(
            "The target registry `{registry}` refused the push of `{image}`: the account "
            "may not push to the namespace `{namespace}`; grant it push (write) rights "
            "there, or point MIRROR_TARGET at a namespace it owns.",
            namespace=namespace,
            **names,
        )
    return Text(
        "The target registry `{registry}` refused the push of `{image}`: the account may "
        "not push to `{repository}`; grant it push (write) rights there, or point "
        "MIRROR_TARGET at a namespace it owns.",
        repository=target.repository,
        **names,
    )
