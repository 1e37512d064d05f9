"""The guide's "Common Scenarios" as findings: each cause of drift the ledger can show, with its tokens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core.domain.models import Balance, Finding, FindingKind


def diagnose(balance: Balance, signals: dict[str, Any], known: dict[str, int]) -> list[Finding]:
    """Turn the balance and ledger signals into findings, largest explanations first.

    `known` names amounts a balance may hold without a ledger row (core.store.tiers.known_amounts).
    """
    duplicates = _duplicates(signals)
    findings = [
        finding
        for finding in (
            _failed_charged(balance, signals),
            duplicates,
            _usage_not_charged(balance, duplicates.tokens if duplicates else 0),
            _duplicate_grants(signals),
            _unlogged_grant(balance, known),
            _usage_before_tracking(balance, signals),
            _cost_drift(signals),
            _negative_balance(balance),
        )
        if finding is not None
    ]
    return sorted(findings, key=lambda f: -f.tokens)


def _failed_charged(balance: Balance, signals: dict[str, Any]) -> Finding | None:
    failed_tokens = int(signals["failed_tokens"])
    excess = balance.used_discrepancy
    if failed_tokens <= 0 or excess <= 0:
        return None
    explained = min(failed_tokens, excess)
    fit = "exactly the" if failed_tokens == excess else f"{explained:,} of the {excess:,}"
    return Finding(
        kind=FindingKind.FAILED_CHARGED,
        tokens=explained,
        rows=int(signals["failed_rows"]),
        summary=(
            f"{int(signals['failed_rows']):,} failed operations carry {failed_tokens:,} tokens, which explain"
            f" {fit} tokens the profile counts as used beyond the ledger. Failed operations must not"
            " deduct tokens. The profile is what is wrong: correct it to the ledger (/tokens reconcile, then"
            " Propose correction); a grant would move the ledger too and leave the gap."
        ),
    )


def _duplicates(signals: dict[str, Any]) -> Finding | None:
    rows = int(signals["duplicate_rows"])
    if rows == 0:
        return None
    tokens = int(signals["duplicate_tokens"])
    return Finding(
        kind=FindingKind.DUPLICATES,
        tokens=tokens,
        rows=rows,
        summary=(
            f"{rows:,} likely duplicate entries ({tokens:,} tokens): same action, model and token counts"
            " seconds apart, or a repeated request id. If the profile charged them once, the ledger is what is"
            " wrong: correcting the profile to the ledger would charge the user twice."
        ),
    )


def _usage_not_charged(balance: Balance, duplicated: int) -> Finding | None:
    """The profile counts less usage than the ledger and holds that much more: usage it never subtracted.

    What doubled ledger rows explain is theirs (the same signature, but the ledger is wrong there).
    """
    missed = -balance.used_discrepancy - duplicated
    if missed <= 0 or balance.remaining_discrepancy != -balance.used_discrepancy:
        return None
    return Finding(
        kind=FindingKind.USAGE_NOT_CHARGED,
        tokens=missed,
        summary=(
            f"The profile never subtracted {missed:,} tokens of logged, successful usage: its used total is"
            " that much below the ledger and its balance that much above. The profile is wrong; correct it"
            " to the ledger."
        ),
    )


def _duplicate_grants(signals: dict[str, Any]) -> Finding | None:
    rows = int(signals["duplicate_grant_rows"])
    if rows == 0:
        return None
    tokens = int(signals["duplicate_grant_tokens"])
    return Finding(
        kind=FindingKind.DUPLICATE_GRANT,
        tokens=tokens,
        rows=rows,
        summary=(
            f"{rows:,} grant rows ({tokens:,} tokens) repeat an earlier grant of the same type and amount"
            " seconds apart, or its request id: a grant (or a backfill) logged twice. If the balance"
            " counted it once, the ledger is what is wrong."
        ),
    )


def _unlogged_grant(balance: Balance, known: dict[str, int]) -> Finding | None:
    """The balance is above the ledger while usage agrees: a grant given but never logged.

    A logged deduction the profile never applied looks the same, so a gap equal to the deductions is
    not called a grant. A gap that is a known amount (a tier's grant, the profile's default start) is
    named.
    """
    gap = balance.remaining_discrepancy
    if gap <= 0 or balance.used_discrepancy != 0 or gap == balance.admin_deductions:
        return None
    named = next(
        (
            (label, amount, gap // amount)
            for label, amount in sorted(known.items(), key=lambda item: -item[1])
            if amount > 0 and gap % amount == 0 and gap // amount <= 12
        ),
        None,
    )
    if named is None:
        what = "a grant given but never logged (for example before tracking began)"
    else:
        label, amount, times = named
        what = f"exactly {label} ({amount:,})" if times == 1 else f"exactly {times} × {label} ({amount:,})"
    return Finding(
        kind=FindingKind.UNLOGGED_GRANT,
        tokens=gap,
        summary=(
            f"The balance is {gap:,} tokens above the ledger while usage agrees: {what}."
            " The ledger is missing a grant row; the profile is right, so do not correct it to the ledger."
        ),
    )


def _usage_before_tracking(balance: Balance, signals: dict[str, Any]) -> Finding | None:
    if int(signals["consumption_rows"]) > 0 or balance.current_used <= 0:
        return None
    return Finding(
        kind=FindingKind.USAGE_BEFORE_TRACKING,
        tokens=balance.current_used,
        summary=(
            f"The profile has used {balance.current_used:,} tokens but the ledger has no usage rows:"
            " the usage likely predates token tracking. The profile is right about usage the ledger never saw:"
            " do not correct it to the ledger."
        ),
    )


def _cost_drift(signals: dict[str, Any]) -> Finding | None:
    rows = int(signals["drifted_rows"])
    if rows == 0:
        return None
    dollars = (Decimal(signals["drifted_cents"]) / 100).quantize(Decimal("0.01"))
    return Finding(
        kind=FindingKind.COST_DRIFT,
        tokens=int(signals["drifted_tokens"]),
        rows=rows,
        summary=(
            f"{rows:,} operations ({int(signals['drifted_tokens']):,} tokens) were charged a cost that no"
            f" longer matches the model price table, ${dollars:+,} in total."
        ),
    )


def _negative_balance(balance: Balance) -> Finding | None:
    if balance.current_remaining >= 0:
        return None
    return Finding(
        kind=FindingKind.NEGATIVE_BALANCE,
        tokens=-balance.current_remaining,
        summary=(
            f"The balance is negative ({balance.current_remaining:,}); the product should prevent this."
            " Grant tokens to bring it to zero or above."
        ),
    )
