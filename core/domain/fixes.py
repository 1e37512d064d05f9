"""Which side of a discrepancy is wrong, and the fix that closes it there (DESIGN.md "Fixing").

An adjustment writes a ledger row *and* moves the balance, so it never closes a discrepancy: each cause
gets the fix on the side that is wrong. A fix is offered only where applying it leaves the user's
check reconciled for what it covers: the finding it answers explains the whole gap on its side.
Pure: the balance and findings come from the check, the rows a fix writes are planned in
core.domain.fix_plans.
"""

from __future__ import annotations

from enum import StrEnum

from core.domain.models import Balance, Finding, FindingKind, Frozen


class Cause(StrEnum):
    """A discrepancy's cause as commands name it (`/tokens discrepancies [min] [cause]`)."""

    FAILED_CHARGED = "failed-charged"
    UNCHARGED = "uncharged"
    DUPLICATES = "duplicates"
    UNLOGGED_GRANT = "unlogged-grant"
    BEFORE_TRACKING = "before-tracking"
    COST_DRIFT = "cost-drift"
    NEGATIVE = "negative"
    UNEXPLAINED = "unexplained"


CAUSE_OF: dict[FindingKind, Cause] = {
    FindingKind.FAILED_CHARGED: Cause.FAILED_CHARGED,
    FindingKind.USAGE_NOT_CHARGED: Cause.UNCHARGED,
    FindingKind.DUPLICATES: Cause.DUPLICATES,
    FindingKind.DUPLICATE_GRANT: Cause.DUPLICATES,
    FindingKind.UNLOGGED_GRANT: Cause.UNLOGGED_GRANT,
    FindingKind.USAGE_BEFORE_TRACKING: Cause.BEFORE_TRACKING,
    FindingKind.COST_DRIFT: Cause.COST_DRIFT,
    FindingKind.NEGATIVE_BALANCE: Cause.NEGATIVE,
}


class FixKind(StrEnum):
    PROFILE_CORRECTION = "profile_correction"
    LEDGER_REVERSAL = "ledger_reversal"
    LEDGER_BACKFILL = "ledger_backfill"
    ADJUSTMENT = "adjustment"


class WrongSide(StrEnum):
    PROFILE = "profile"
    LEDGER = "ledger"
    ENTITLEMENT = "entitlement"


class FixOption(Frozen):
    """One fix the check can offer: the finding it answers, the side it changes and by how much."""

    finding: FindingKind
    cause: Cause
    kind: FixKind
    side: WrongSide
    tokens: int
    summary: str
    recommended: bool = False


class Unfixable(Frozen):
    """A finding the bot will not fix by itself, and why (shown instead of a button)."""

    finding: FindingKind
    cause: Cause
    why: str


def primary_cause(findings: list[Finding]) -> Cause:
    """The cause a discrepant user is grouped under: their largest finding's (findings come largest first)."""
    return CAUSE_OF[findings[0].kind] if findings else Cause.UNEXPLAINED


def fix_options(balance: Balance, findings: list[Finding]) -> tuple[list[FixOption], list[Unfixable]]:
    """Every fix the findings allow, the first one recommended, and the findings that have none."""
    options: list[FixOption] = []
    refused: list[Unfixable] = []
    for finding in findings:
        outcome = _fix_for(balance, finding)
        if isinstance(outcome, FixOption):
            options.append(outcome)
        else:
            refused.append(outcome)
    ranked = sorted(options, key=lambda o: o.kind is FixKind.ADJUSTMENT)
    return [o.model_copy(update={"recommended": i == 0}) for i, o in enumerate(ranked)], refused


def _fix(
    finding: Finding, kind: FixKind, side: WrongSide, summary: str, tokens: int | None = None
) -> FixOption:
    """The fix for `finding`, moving its tokens unless told otherwise."""
    return FixOption(
        finding=finding.kind,
        cause=CAUSE_OF[finding.kind],
        kind=kind,
        side=side,
        tokens=finding.tokens if tokens is None else tokens,
        summary=summary,
    )


def _unfixable(finding: Finding, why: str) -> Unfixable:
    return Unfixable(finding=finding.kind, cause=CAUSE_OF[finding.kind], why=why)


def _fix_for(b: Balance, finding: Finding) -> FixOption | Unfixable:
    match finding.kind:
        case FindingKind.FAILED_CHARGED | FindingKind.USAGE_NOT_CHARGED:
            return _profile_correction(b, finding)
        case FindingKind.DUPLICATES:
            gap = -b.used_discrepancy
            if gap < finding.tokens:
                return _unfixable(
                    finding,
                    (
                        f"the profile counts {max(gap, 0):,} fewer tokens than the ledger, not the"
                        f" {finding.tokens:,} the duplicates carry: it charged them too. If they were one"
                        " operation, the user was charged twice: refunding them changes what they are owed"
                        " (/tokens adjust)."
                    ),
                )
            return _fix(
                finding,
                FixKind.LEDGER_REVERSAL,
                WrongSide.LEDGER,
                (
                    f"Reverse the {finding.rows:,} duplicated usage rows in the ledger ({finding.tokens:,} tokens),"
                    " each by a row that takes its tokens and cost back; the balance is not touched."
                ),
            )
        case FindingKind.DUPLICATE_GRANT:
            gap = -b.remaining_discrepancy
            if gap < finding.tokens:
                return _unfixable(
                    finding,
                    (
                        "the balance holds these grants too, so reversing them in the ledger would open a"
                        " gap; taking them back from the user is a deduction (/tokens adjust)."
                    ),
                )
            return _fix(
                finding,
                FixKind.LEDGER_REVERSAL,
                WrongSide.LEDGER,
                (
                    f"Reverse the {finding.rows:,} repeated grant rows ({finding.tokens:,} tokens) with a deduction"
                    " row each, linked to the row it reverses; the balance is not touched."
                ),
            )
        case FindingKind.UNLOGGED_GRANT:
            return _fix(
                finding,
                FixKind.LEDGER_BACKFILL,
                WrongSide.LEDGER,
                (
                    f"Backfill the missing grant: one grant row of {finding.tokens:,} tokens, marked as a"
                    " backfill; the balance is not touched."
                ),
            )
        case FindingKind.USAGE_BEFORE_TRACKING:
            if b.remaining_discrepancy != -b.used_discrepancy:
                return _unfixable(
                    finding,
                    (
                        "the balance is not short by the same tokens the untracked usage explains, so a"
                        " backfill of that usage would not reconcile it."
                    ),
                )
            return _fix(
                finding,
                FixKind.LEDGER_BACKFILL,
                WrongSide.LEDGER,
                (
                    f"Backfill the usage the ledger never saw: one usage row of {b.used_discrepancy:,} tokens"
                    " (and its cost), marked as a backfill; the balance is not touched."
                ),
                tokens=b.used_discrepancy,
            )
        case FindingKind.NEGATIVE_BALANCE:
            return _fix(
                finding,
                FixKind.ADJUSTMENT,
                WrongSide.ENTITLEMENT,
                (
                    f"Grant {finding.tokens:,} tokens to bring the balance to zero: a real change of what the"
                    " user has, logged as a grant; it closes no discrepancy."
                ),
            )
        case _:
            return _unfixable(
                finding,
                (
                    "the tokens are right; the cost was recorded at an old price. Fix the price table or"
                    " the product's pricing; no balance is wrong."
                ),
            )


def _profile_correction(b: Balance, finding: Finding) -> FixOption | Unfixable:
    """The profile is wrong: set it to the ledger, but only where this cause explains the whole gap."""
    explains_all = (
        finding.tokens == abs(b.used_discrepancy) and b.remaining_discrepancy == -b.used_discrepancy
    )
    if not explains_all:
        return _unfixable(
            finding,
            (
                f"it explains {finding.tokens:,} tokens, but the profile is off by {b.used_discrepancy:+,} used"
                f" and {b.remaining_discrepancy:+,} remaining: setting it to the ledger would also change what"
                " this cause does not explain. Look at the ledger (/tokens reconcile) before correcting."
            ),
        )
    if b.expected_remaining < 0:
        return _unfixable(
            finding,
            f"the ledger says the balance should be {b.expected_remaining:,}, and a correction never sets one below zero.",
        )
    return _fix(
        finding,
        FixKind.PROFILE_CORRECTION,
        WrongSide.PROFILE,
        (
            f"Correct the profile to the ledger: remaining {b.current_remaining:,} → {b.expected_remaining:,},"
            f" used {b.current_used:,} → {b.calculated_used:,}; the ledger is not touched."
        ),
    )
