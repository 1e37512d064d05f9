"""The fix use cases' front door: proposals in one snapshot, and each item of an approved fix applied in
a transaction of its own, so a batch of thousands resumes where any interruption left it."""

from __future__ import annotations

from datetime import timedelta

from core.domain.approvals import ApprovalRequest, Decision, Person
from core.domain.fix_batches import BatchProgress, ItemReport
from core.domain.fixes import Cause
from core.domain.models import LedgerSnapshot
from core.services import fix_apply, fixes
from core.services.base import ServiceBase
from core.store import fix_items
from core.store.requests import read_request

# An approved fix that made no progress for this long was interrupted; `tokens-bot tick` resumes it.
RESUME_AFTER = timedelta(seconds=60)


class FixUseCases(ServiceBase):
    def propose_fix(self, actor: Person, user_id: str, cause: Cause, seen: LedgerSnapshot) -> ApprovalRequest:
        """The check's "Propose fix" button: a pending fix for one user, rebuilt from the ledger they saw."""
        with self._writing("REPEATABLE READ") as conn:
            request = fixes.propose_fix(
                conn, self.shape(conn), self.settings, actor, user_id, cause, seen, self.clock()
            )
            conn.commit()
            return request

    def propose_batch(self, actor: Person, cause: Cause, minimum: int) -> ApprovalRequest:
        """ "Propose fix for all N users": one pending request, its items planned in one snapshot."""
        with self._writing("REPEATABLE READ") as conn:
            request = fixes.propose_batch(
                conn, self.shape(conn), self.settings, actor, cause, minimum, self.clock()
            )
            conn.commit()
            return request

    def apply_fix(self, request_id: int, *, limit: int) -> BatchProgress:
        """Apply up to `limit` pending items of an approved fix, each in its own transaction."""
        request = self.fix_request(request_id)
        for _ in range(limit):
            with self._writing() as conn:
                if not fix_apply.apply_next_item(
                    conn, self.shape(conn), self.settings, request, self.clock()
                ):
                    break
                conn.commit()
        return self.fix_progress(request_id)

    def finish_fix(self, request_id: int) -> tuple[Decision | None, BatchProgress]:
        """Verify and close a fix whose items are all done; no decision if it is not (or already closed)."""
        with self._writing() as conn:
            decision, progress = fix_apply.finish_fix(
                conn, self.shape(conn), self.settings, request_id, self.clock()
            )
            conn.commit()
            return decision, progress

    def fix_progress(self, request_id: int) -> BatchProgress:
        with self._reading() as conn:
            return fix_items.progress(conn, self.settings, request_id)

    def fix_request(self, request_id: int) -> ApprovalRequest:
        """A fix request as it stands: where its message is, for progress shown while it is applied."""
        with self._reading() as conn:
            return read_request(conn, self.settings, request_id, for_update=False)

    def fix_items(self, actor: str, request_id: int) -> list[ItemReport]:
        """A fix's complete list of users, for the approvers to read before they decide."""
        self.require_viewer(actor)
        with self._reading() as conn:
            return fix_items.all_items(conn, self.settings, request_id)

    def interrupted_fixes(self) -> list[int]:
        """Approved fixes with items still pending and no progress for RESUME_AFTER: what a crash, deploy
        or lost connection left (a fix some worker is applying right now makes progress, and is left to it)."""
        with self._reading() as conn:
            return fix_items.applying_requests(conn, self.settings, self.clock() - RESUME_AFTER)
