"""`tokens-bot doctor`'s report as text: what the database needs, and how the product is read."""

from __future__ import annotations

from core.domain.reports import DoctorReport


def format_doctor(name: str, report: DoctorReport) -> str:
    lines = [
        f"== {name}: database {report.database} ==",
        f"server: {report.server_version}{' (read replica, in recovery)' if report.in_recovery else ''}",
    ]
    if report.pooler:
        prepared = (
            "prepared statements are off, as a transaction pooler needs"
            if report.prepared_statements_off
            else "WARNING: prepared statements are ON; add ?prepare_threshold=none to the URL"
        )
        lines.append(f"pooler: yes — {report.pooler}; {prepared}")
    else:
        where = (
            f"URL port {report.url_port}, server port {report.server_port}"
            if report.url_port or report.server_port
            else "a local socket"
        )
        lines.append(
            f"pooler: none seen ({where}); prepared statements {'off' if report.prepared_statements_off else 'on'}"
        )
    lines.append("rows (planner estimates):")
    lines += [
        f"  {table:<22} {'absent' if rows is None else f'{rows:,}'}"
        for table, rows in report.row_estimates.items()
    ]
    lines.append("indexes the bot relies on:")
    for check in report.indexes:
        where = f"{check.table} ({', '.join(check.columns)})"
        if check.present:
            lines.append(f"  ok       {where}: {check.present}")
        else:
            lines.append(f"  MISSING  {where} — {check.why}\n           {check.create_sql}")
    if not report.in_recovery:
        lines.append(f"bot schema revision: {report.bot_schema_revision or 'not migrated'}")
    lines.append("product schema, where it differs from the guide's, and what tokens-bot does about it:")
    lines += [f"  {n.subject}: {n.found} — {n.meaning}" for n in report.schema_notes] or ["  as the guide"]
    if report.odd_rows:
        lines.append("rows read by those rules (whole fleet):")
        lines += [f"  {count.rows:>12,}  {count.what}" for count in report.odd_rows]
    if report.action_types:
        lines.append("action types in the ledger (rows, successful tokens, read as):")
        for t in report.action_types:
            hint = f" — {t.hint}" if t.hint else ""
            lines.append(
                f"  {(t.action if t.action is not None else '(none)'):<32} {t.rows:>12,} {t.tokens:>16,}  {t.kind}{hint}"
            )
    if report.product_notes:
        lines.append("the product's meaning:")
        lines += [f"  {n.subject}: {n.found} — {n.meaning}" for n in report.product_notes]
    if report.suggested:
        lines.append("suggested settings (from the evidence above; check before you apply them):")
        lines += [f"  {line}" for line in report.suggested]
    return "\n".join(lines)
