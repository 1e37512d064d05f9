"""The reminder `tokens-bot tick` posts in a pending request's thread once it has waited too long.

Everything in it that came from a person or the database (the user's email, the reason, the requester's
name) is escaped, so a reason like `<!channel>` shows as typed and pings nobody. The only mentions are
the bot's own markup, made from the approver ids in the settings and never from database text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.render.approvals import SLACK_USER_ID, summary
from bot.render.common import Reply, clip, escape, section
from core.domain.approvals import ApprovalRequest, when

# Enough of the reason to recognise the request by; the whole of it is on the message just above.
MAX_REASON_SHOWN = 300
# A thread reply that pings a whole team is a nuisance, not a reminder: name at most this many approvers.
MAX_MENTIONS = 10


def waited(span: timedelta) -> str:
    """A waiting time as people say it: `5 h 12 min`, `2 days 3 h`; whole minutes, never negative."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def render_reminder(request: ApprovalRequest, now: datetime, approvers: Sequence[str]) -> Reply:
    """The thread reply: which request, what it asks, how long it has waited, who can decide it."""
    others = [a for a in approvers if a != request.requester.slack_id and SLACK_USER_ID.match(a)]
    reason = clip(escape(request.reason), MAX_REASON_SHOWN)
    text = (
        f":bell: Reminder: {summary(request)} has waited {waited(now - request.requested_at)} for a second"
        f" person's approval. Reason: {reason}\nAny approver other than the requester,"
        f" {escape(request.requester.name)}, can approve or reject it with the buttons above; it expires"
        f" at {when(request.expires_at)}."
    )
    if others:
        text += "\nApprovers: " + ", ".join(f"<@{a}>" for a in others[:MAX_MENTIONS])
    return Reply(text=text, blocks=[section(text)])
