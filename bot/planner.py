"""From what a user typed to the items of a job: names, policy and conflicts, no network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum

from bot.paste import Reading
from bot.policy import Denied, Policy, Refused, Verdict
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.models import Item, ItemStatus
from mirror.naming import ImageSpec, TargetBase, check_unique_targets, parse_target_base, target_for
from mirror.platform import Platform, parse_platform
from mirror.reference import ImageRef
from mirror.text import Text


class NotConfigured(MirrorError):
    """The operator has not set something the request needs."""


class Asked(Enum):
    """What becomes of an image whose source an admin must approve (``Verdict.ASK``)."""

    REFUSE = "refuse"
    """Refused, as without approvals (a script, a lookup)."""
    HOLD = "hold"
    """Planned ``AWAITING_APPROVAL``: nothing reaches the source until an admin says yes
    (or :func:`grant` says an admin asked, or approved it already)."""


def grant(items: Sequence[Item], by: str) -> None:
    """Let held images go as approved by ``by``: an admin's own request, or a watch an admin
    approved once (its copies need no further approval)."""
    for item in items:
        if item.status is ItemStatus.AWAITING_APPROVAL:
            item.status, item.approved_by = ItemStatus.QUEUED, by


class Planner:
    def __init__(self, settings: Settings, policy: Policy) -> None:
        self._policy = policy
        self._target = settings.mirror_target
        self.default_platform: Platform | None = parse_platform(settings.mirror_default_platform)

    def _base(self) -> TargetBase:
        if not self._target:
            raise NotConfigured(
                Text(
                    "MIRROR_TARGET is not set, so there is nowhere to copy to; the operator must "
                    "set it (e.g. docker.io/yourname)."
                )
            )
        return parse_target_base(self._target)

    def _refusal(self, source: ImageRef) -> Denied:
        """Why ``source`` is refused: as without approvals, or, with them on, that nobody may
        approve an internal address the operator did not name."""
        if self._policy.asks and not self._policy.approvable(source):
            return Denied(
                Text(
                    "`{registry}` is an internal address the operator did not name, so nobody "
                    "can approve it.",
                    registry=source.registry,
                )
            )
        try:
            self._policy.check_source(source)
        except Denied as exc:
            return exc
        return Denied(
            Text("`{registry}` is not an allowed source registry.", registry=source.registry)
        )

    def plan(
        self,
        images: Sequence[ImageSpec],
        platform: Platform | None,
        *,
        explicit: bool,
        readings: Sequence[Reading] = (),
        asked: Asked = Asked.REFUSE,
    ) -> list[Item]:
        """Items for a job; raises a MirrorError sentence for the first refused image (a
        source the policy refuses: :class:`Refused`, carrying every image planned, each
        ``REFUSED``, for the record).

        ``explicit`` says the user chose the platform. A digest reference without one copies
        every platform: the pinned digest (often an index) must exist at the mirror.
        ``readings`` (in the order of ``images``, or empty) say how each was read; a pasted
        pull line's own ``--platform`` is that image's choice. ``asked``: what becomes of an
        image an admin must approve first.
        """
        base = self._base()
        items = []
        refusal: Denied | None = None
        as_typed = [Reading(spec.text) for spec in images]
        for spec, reading in zip(images, readings or as_typed, strict=True):
            verdict = self._policy.judge(spec.source)
            if verdict is Verdict.REFUSED or (verdict is Verdict.ASK and asked is Asked.REFUSE):
                refusal = refusal or self._refusal(spec.source)
            if reading.platform is not None:
                chosen = parse_platform(reading.platform)
            else:
                chosen = None if spec.source.digest and not explicit else platform
            target = target_for(spec, base, chosen, self.default_platform)
            items.append(
                Item(
                    spec=spec.text,
                    source=spec.source,
                    target=target,
                    platform=chosen,
                    corrected_from=reading.typed,
                    status=ItemStatus.AWAITING_APPROVAL
                    if verdict is Verdict.ASK
                    else ItemStatus.QUEUED,
                )
            )
        if refusal is not None:
            sentence = refusal.args[0]
            refused = [replace(i, status=ItemStatus.REFUSED, error=sentence) for i in items]
            raise Refused(sentence, refused)
        check_unique_targets((i.source, i.platform, i.target) for i in items)
        return items
