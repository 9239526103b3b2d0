"""From what a user typed to the items of a job: names, policy and conflicts, no network."""

from __future__ import annotations

from collections.abc import Sequence

from bot.paste import Reading
from bot.policy import Policy
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.models import Item
from mirror.naming import ImageSpec, TargetBase, check_unique_targets, parse_target_base, target_for
from mirror.platform import Platform, parse_platform
from mirror.text import Text


class NotConfigured(MirrorError):
    """The operator has not set something the request needs."""


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

    def plan(
        self,
        images: Sequence[ImageSpec],
        platform: Platform | None,
        *,
        explicit: bool,
        readings: Sequence[Reading] = (),
    ) -> list[Item]:
        """Items for a job; raises a MirrorError sentence for the first refused image.

        ``explicit`` says the user chose the platform. A digest reference without one copies
        every platform: the pinned digest (often an index) must exist at the mirror.
        ``readings`` (in the order of ``images``, or empty) say how each was read; a pasted
        pull line's own ``--platform`` is that image's choice.
        """
        base = self._base()
        items = []
        as_typed = [Reading(spec.text) for spec in images]
        for spec, reading in zip(images, readings or as_typed, strict=True):
            self._policy.check_source(spec.source)
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
                )
            )
        check_unique_targets((i.source, i.platform, i.target) for i in items)
        return items
