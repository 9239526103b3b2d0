"""A target registry's refusal of a push, as the one thing to create or grant (issue 12).

Registries refuse a push in their own words: Harbor answers ``NOT_FOUND`` "project NAME not
found" when the project was never created (it creates none on push), Aliyun ACR refuses a
namespace nobody created, and every registry says "denied" or "unauthorized" both when nobody
logged in and when the account lacks the right. Both engines hand the registry's words here
(the registry engine from the error body, the docker engine from the daemon's message); pure.
"""

from __future__ import annotations

import re

from mirror.reference import ImageRef
from mirror.text import Text

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
    names = {"registry": target.registry, "image": target.familiar}
    namespace = _namespace(target)
    harbor = _HARBOR_PROJECT_RE.search(message)
    if harbor:
        return Text(
            "The Harbor project `{project}` does not exist on `{registry}`: create it "
            "(Projects, New project) or point MIRROR_TARGET at an existing one.",
            project=harbor.group(1),
            registry=target.registry,
        )
    text = message.lower()
    if not denied:
        acr = is_acr(target.registry) and "namespace" in text
        return (
            Text(
                "The target registry `{registry}` refused the push of `{image}`: the ACR "
                "namespace `{namespace}` does not exist; create it.",
                namespace=namespace,
                **names,
            )
            if acr
            else None
        )
    if not logged_in:
        return Text(
            "The target registry `{registry}` refused the push of `{image}`: it wants a login; "
            "set MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD (or run `docker login` on "
            "the bot's machine).",
            **names,
        )
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
    if any(w in text for w in _NO_RIGHT):
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
    return None
