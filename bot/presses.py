"""A button pressed: which stored command it stands for, and whether this presser may run it.

A button's meaning is stored (:mod:`bot.actions`) before the message carrying it is sent; a
press is looked up here and, when allowed, run as if its presser typed the command (once).
Anything that stops it is told to the presser alone; the chat sees nothing.
"""

from __future__ import annotations

import logging
import time

from bot import actions
from bot.chat import Incoming
from bot.i18n import _, localize
from bot.policy import Denied, Policy
from mirror.models import StoredAction
from mirror.store import Store, StoreError
from mirror.text import text_of

log = logging.getLogger(__name__)


async def pressed(incoming: Incoming, store: Store, policy: Policy) -> str | None:
    """The command the press stands for, or None when it must not run (the presser was told
    why, privately)."""
    assert incoming.press is not None
    press = incoming.press
    requester = f"{incoming.platform}:{incoming.user_id}"
    action = None
    try:
        policy.check_user(incoming)
        action = await store.get_action(press.action_id)
        refusal = await _refusal(incoming, action, store, policy)
    except Denied as exc:
        refusal = text_of(exc)
    except StoreError as exc:
        log.error("the store failed: %s", exc.__cause__ or exc)
        refusal = text_of(exc)
    if refusal is not None or action is None:
        try:
            await press.answer_privately(localize(refusal) or _(actions.UNKNOWN))
        except Exception as exc:  # the chat's trouble: the presser can press again
            log.error("could not answer a %s button: %s", incoming.platform, exc)
        return None
    log.info("button %s pressed by %s", press.action_id, requester)
    return action.command


async def _refusal(
    incoming: Incoming, action: StoredAction | None, store: Store, policy: Policy
) -> str | None:
    """Why this press does nothing (unknown, expired, someone else's, used), or None; a
    press that may run is used up here."""
    here = f"{incoming.platform}:{incoming.chat_id}"
    if action is None or action.chat not in (here, actions.ANYWHERE):
        return actions.UNKNOWN
    if time.time() - action.created > actions.MAX_AGE_SECONDS:
        return actions.EXPIRED
    others = action.owner != f"{incoming.platform}:{incoming.user_id}"
    if others and not policy.is_admin(incoming):
        return actions.not_yours(action.owner)
    if not await store.use_action(action.id):
        return actions.USED
    return None
