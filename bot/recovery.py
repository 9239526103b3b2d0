"""After a restart: every unfinished job resumes in the thread that asked, or fails saying why.

A job's and a watch's ``reply_ref`` (``adapter:opaque``) is how the bot finds its thread again:
the adapter that posted it turns it back into a conversation and a message (``reopen``).
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.chat import ChatAdapter, Conversation, Reply
from bot.following import JobFollower
from bot.languages import Languages
from mirror.jobs import JobService
from mirror.text import Text

INTERRUPTED = Text("The bot restarted during this job and could not reach its chat to resume it.")


async def reopen(
    adapters: Mapping[str, ChatAdapter], reply_ref: str | None
) -> tuple[str, Conversation, Reply] | None:
    """The adapter, thread and message behind a stored ``adapter:opaque`` reply handle
    (a job's or a watch's), or None when that adapter is not running or lost the thread."""
    platform, _, ref = (reply_ref or "").partition(":")
    adapter = adapters.get(platform)
    reopened = await adapter.reopen(ref) if adapter is not None and ref else None
    if reopened is None:
        return None
    conversation, reply = reopened
    return platform, conversation, reply


async def recover(
    service: JobService,
    follower: JobFollower,
    languages: Languages,
    adapters: Mapping[str, ChatAdapter],
) -> int:
    """Resume jobs a restart interrupted, in the thread that asked; fail the orphans.
    Returns how many resumed."""
    resumed = 0
    for job in await service.store.unfinished_jobs():
        if job.reply_ref is None:  # stored, never acknowledged: it never started
            await follower.fail_unacknowledged(job)
            continue
        reopened = await reopen(adapters, job.reply_ref)
        if reopened is None:
            await service.fail_interrupted(job, INTERRUPTED)
            continue
        platform, conversation, reply = reopened
        choice = await languages.choice_of(job.requester)
        follower.resume(
            platform, conversation, reply, job, choice.language, choice.readers(conversation)
        )
        resumed += 1
    return resumed
