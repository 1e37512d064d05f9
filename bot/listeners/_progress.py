"""Answering in time: a "working…" note when a reply is slow (fleet scans), then the reply in its place."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import Respond

from bot.render.common import Reply, message, render_unexpected_error
from bot.routes import ActionReply

log = logging.getLogger(__name__)

# Slack users see nothing between their command and our reply; past this, say that work is under way.
# Any reply may be slow (a fleet scan, a chart, a busy database), so the note names none of them.
WORKING_NOTE_AFTER_SECONDS = 1.5
WORKING_NOTE = message(":hourglass_flowing_sand: Working on it… the answer will replace this note.")
# Note deadlines are rounded up to this step, so the notes of a burst's replies fall due together: the
# waiting thread wakes once a step, not once a reply (each reply's entry, cancelled or not, used to wake
# it at its own time, a thread switch per reply under a burst). A note is at most this much later.
DEADLINE_STEP_SECONDS = 0.1


class _Deadlines:
    """One thread per process waits for every reply's note deadline; a thread started per reply cost
    about as much CPU as the check's own queries. A note that falls due runs in a thread of its own,
    so a slow Slack delays no other note."""

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """A forked worker starts with no deadlines and no waiting thread (it has not inherited one)."""
        self._ready = threading.Condition()
        self._pending: list[list[Any]] = []
        self._keys = itertools.count()
        self._waiter: threading.Thread | None = None

    def call_later(self, delay: float, action: Callable[[], None]) -> list[Any]:
        due = math.ceil((time.monotonic() + delay) / DEADLINE_STEP_SECONDS) * DEADLINE_STEP_SECONDS
        entry = [due, next(self._keys), action]
        with self._ready:
            heapq.heappush(self._pending, entry)
            if self._waiter is None:
                self._waiter = threading.Thread(target=self._wait, name="working-notes", daemon=True)
                self._waiter.start()
            elif self._pending[0] is entry:
                self._ready.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """The entry stays queued until its time, then is dropped: cheaper than taking it out now."""
        entry[2] = None

    def _wait(self) -> None:
        while True:
            with self._ready:
                while not self._pending or self._pending[0][0] > time.monotonic():
                    self._ready.wait(self._pending[0][0] - time.monotonic() if self._pending else None)
                now = time.monotonic()
                due: list[Callable[[], None] | None] = []
                while self._pending and self._pending[0][0] <= now:
                    due.append(heapq.heappop(self._pending)[2])
            for action in due:
                if action is not None:
                    threading.Thread(target=action, name="working-note", daemon=True).start()


_NOTES = _Deadlines()


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

    pending = _NOTES.call_later(after, note)
    try:
        reply = compute()
    finally:
        _NOTES.cancel(pending)
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
