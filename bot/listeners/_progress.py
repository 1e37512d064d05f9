"""Answering in time: a "working…" note when a reply is slow (fleet scans), then the reply in its place."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor

from slack_bolt import Respond

from bot.render.common import Reply, message, render_unexpected_error
from bot.routes import ActionReply

log = logging.getLogger(__name__)

# Slack users see nothing between their command and our reply; past this, say that work is under way.
WORKING_NOTE_AFTER_SECONDS = 1.5
WORKING_NOTE = message(":hourglass_flowing_sand: Working on it… this scan reads the whole ledger.")


def respond_in_time(
    respond: Respond,
    compute: Callable[[], Reply | ActionReply],
    *,
    in_place: bool,
    after: float = WORKING_NOTE_AFTER_SECONDS,
) -> None:
    """Send `compute()`'s reply; when it is not ready `after` seconds in, post a working note first.

    `in_place` answers a button by replacing its message (unless its ActionReply says not to, as for a
    damaged button); otherwise (a slash command) the first message is a new ephemeral one and the reply
    replaces the note if there was one. A lock orders the note before the reply when both are ready at once.
    """
    lock = threading.Lock()
    state = {"done": False, "noted": False}

    def note() -> None:
        with lock:
            if not state["done"]:
                respond(response_type="ephemeral", replace_original=in_place, **WORKING_NOTE.as_kwargs())
                state["noted"] = True

    timer = threading.Timer(after, note)
    timer.daemon = True
    timer.start()
    try:
        reply = compute()
    finally:
        timer.cancel()
    if isinstance(reply, ActionReply):
        in_place, reply = in_place and reply.replace_original, reply.reply
    with lock:
        state["done"] = True
        replace = in_place or state["noted"]
        respond(response_type="ephemeral", replace_original=replace, **reply.as_kwargs())


def reply_later(replies: Executor, respond: Respond, work: Callable[[], None]) -> None:
    """Run `work` (compute and send a reply) on `replies`, after the listener has acked.

    The work outlives the request, so Bolt's error handler no longer sees its failures: one that
    escapes is logged and the user told, as that handler would.
    """

    def run() -> None:
        try:
            work()
        except Exception as error:
            log.error("unhandled error in a listener", exc_info=error)
            respond(response_type="ephemeral", **render_unexpected_error().as_kwargs())

    replies.submit(run)
