"""Answering in time: a "working…" note when a reply is slow (fleet scans), then the reply in its place."""

from __future__ import annotations

import threading
from collections.abc import Callable

from slack_bolt import Respond

from bot.render.common import Reply, message

# Slack users see nothing between their command and our reply; past this, say that work is under way.
WORKING_NOTE_AFTER_SECONDS = 1.5
WORKING_NOTE = message(":hourglass_flowing_sand: Working on it… this scan reads the whole ledger.")


def respond_in_time(
    respond: Respond,
    compute: Callable[[], Reply],
    *,
    in_place: bool,
    after: float = WORKING_NOTE_AFTER_SECONDS,
) -> None:
    """Send `compute()`'s reply; when it is not ready `after` seconds in, post a working note first.

    `in_place` answers a button by replacing its message; otherwise (a slash command) the first message
    is a new ephemeral one and the reply replaces the note if there was one. A lock orders the note
    before the reply when both are ready at once.
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
    with lock:
        state["done"] = True
        replace = in_place or state["noted"]
        respond(response_type="ephemeral", replace_original=replace, **reply.as_kwargs())
