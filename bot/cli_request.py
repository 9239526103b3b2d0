"""What ``mirror-bot mirror``'s text asks for, before the plan: images, pull failures, a chart.

The command line reads the same things a chat message does (:mod:`bot.paste`,
:mod:`bot.pasted_errors`, :mod:`bot.chart_request`), and keeps for each image the input texts
it answers (``--json``'s ``asked``) and, for a pull failure, what kind it was (``failure``).
A chart is read from its registry only by a real run: ``--dry-run`` touches no network, so it
plans the chart alone and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bot.paste import Reading, read_references
from bot.pasted_errors import (
    FailedPull,
    Failure,
    looks_like_pull_error,
    read_pull_errors,
    summary,
    trust_advice,
)
from mirror.errors import MirrorError
from mirror.naming import ImageSpec, parse_image_spec
from mirror.text import Text

if TYPE_CHECKING:
    from bot.chart_request import ChartAsk, ChartSource
    from bot.policy import Policy
    from bot.runtime import LazyLookups


@dataclass
class Requested:
    """The images to plan, in order, each with the texts it answers."""

    found: list[tuple[ImageSpec, Reading]] = field(default_factory=list)
    asked: list[tuple[str, ...]] = field(default_factory=list)
    """Per image of ``found``: every input text it answers."""
    failures: list[Failure | None] = field(default_factory=list)
    """Per image of ``found``: what its pull met, when it came from a pasted failure."""
    untrusted: tuple[FailedPull, ...] = ()
    """Failures on a certificate the puller does not trust: reported, never copied."""
    notes: list[Text] = field(default_factory=list)
    """What was read, said on stderr before the result."""
    chart: ChartAsk | None = None
    """A chart to read (a real run) with the images it deploys."""
    source: ChartSource | None = None
    """The chart as read: the values file after the result."""

    def add(
        self,
        spec: ImageSpec,
        reading: Reading,
        asked: tuple[str, ...],
        failure: Failure | None = None,
    ) -> None:
        """One more image, unless it is already there (then it answers ``asked`` too)."""
        for n, (known, _reading) in enumerate(self.found):
            if str(known) == str(spec):
                self.asked[n] = tuple(dict.fromkeys((*self.asked[n], *asked)))
                return
        self.found.append((spec, reading))
        self.asked.append(asked)
        self.failures.append(failure)

    @property
    def advice(self) -> list[Text]:
        return trust_advice(self.untrusted)


def read_requested(text: str) -> Requested:
    """What the text asks: pasted pull failures, a chart named alone, or images (no network)."""
    from bot.chart_request import find_chart, oci_ask

    if looks_like_pull_error(text):
        errors = read_pull_errors(text)
        if not errors.failures:
            raise MirrorError(Text("I read a pull error there, but it names no image."))
        found = Requested(untrusted=errors.untrusted, notes=[summary(errors)])
        for failed in errors.copied:
            if failed.chart and found.chart is None:
                found.chart = oci_ask(failed.lines[0], failed.image)
            elif not failed.chart:
                found.add(
                    parse_image_spec(failed.image), failed.reading, failed.lines, failed.failure
                )
        return found
    chart = find_chart(text) if "oci://" in text or "helm" in text else None
    if chart is not None:
        return Requested(chart=chart)
    found = Requested()
    for spec, reading in read_references(text):
        found.add(spec, reading, reading.asked)
    return found


def without_chart_reading(found: Requested) -> Requested:
    """A dry run: the chart is planned alone (its images are read when it is copied)."""
    if found.chart is None:
        return found
    ask = found.chart
    notes = [
        *found.notes,
        Text(
            "A dry run reads no chart: the images {chart} deploys are read when it is copied.",
            chart=ask.command,
        ),
    ]
    planned = replace(found, chart=None, notes=notes)
    if ask.oci is not None:
        spec = parse_image_spec(ask.oci)
        planned.found = [(spec, Reading(ask.oci, ask.typed)), *found.found]
        planned.asked = [(ask.typed,), *found.asked]
        planned.failures = [None, *found.failures]
    return planned


async def with_chart(found: Requested, lookups: LazyLookups, policy: Policy) -> Requested:
    """Read the chart (network) and put it first with the images it deploys."""
    from bot.chart_request import chart_plan, read_chart_ask

    if found.chart is None:
        return found
    source = await read_chart_ask(found.chart, lookups, policy)
    plan = chart_plan(source, policy)
    read = Requested(untrusted=found.untrusted, notes=[plan.origin, *found.notes], source=source)
    for reading in plan.readings:
        read.add(parse_image_spec(reading.text), reading, (found.chart.typed,))
    for (spec, reading), asked, failure in zip(
        found.found, found.asked, found.failures, strict=True
    ):
        read.add(spec, reading, asked, failure)
    return read
