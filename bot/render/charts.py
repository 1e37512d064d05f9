"""The two pictures: a user's days of usage and balance, and the fleet's digests over time, as PNG bytes.

People read a trend off a picture faster than off a table of 90 rows, so these draw what core.domain.charts
computed and nothing more: every amount arrives as an exact integer, stacks and gaps are summed as integers,
and only the final coordinates become floats for matplotlib.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure list), at
900 by 600 px with large type so a phone shows it whole. One lock serialises drawing: matplotlib's font cache
and rcParams are shared by the reply threads, and a chart is rare enough that waiting costs nothing.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: a server has no display

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from core.domain.charts import FleetTrend, UsageChart, UsageDay
from core.domain.models import Verdict

WIDTH_PX, HEIGHT_PX, DPI = 900, 600, 100
_LOCK = threading.Lock()
_STYLE: dict[str, Any] = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 10.5,
    "figure.titlesize": 16,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_VERDICT = {Verdict.RECONCILED: "Reconciled", Verdict.MINOR: "Minor drift", Verdict.PROBLEM: "Problem"}
_VERDICT_COLOUR = {Verdict.RECONCILED: "#2e7d32", Verdict.MINOR: "#f9a825", Verdict.PROBLEM: "#c62828"}
# Series colours, largest first; "other" (the rest grouped by the core) is always grey.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
_OTHER = "#9e9e9e"
_FAILED = "#d32f2f"


def usage_chart_png(chart: UsageChart) -> bytes:
    """A user's last days: usage stacked by series with failures apart, and the ledger's remaining balance
    ending beside the profile's, so a gap between them is seen at once."""
    with _drawing() as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
        verdict = _VERDICT[chart.verdict]
        fig.suptitle(f"{verdict}: {_plain(chart.user.label, 60)}", color=_VERDICT_COLOUR[chart.verdict])
        if not chart.days:
            _nothing(top, "No days to show")
            return _png(fig)
        _remaining(top, chart)
        _usage(bottom, chart)
        _dates(bottom, [d.day for d in chart.days], f"UTC day (last {len(chart.days)} days)")
        return _png(fig)


def fleet_trend_png(trend: FleetTrend) -> bytes:
    """The channel's digests over time (open, new and resolved discrepancies, low and negative balances)
    above the fleet's daily consumption."""
    with _drawing() as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        fig.suptitle(f"Fleet trend — digests in {_plain(trend.channel, 40)}")
        if trend.digests:
            at = _x([p.at for p in trend.digests])
            series: list[tuple[str, list[int], str, str]] = [
                ("open discrepancies", [p.discrepant for p in trend.digests], "#c62828", "o"),
                ("new", [p.new for p in trend.digests], "#ef6c00", "^"),
                ("resolved", [p.resolved for p in trend.digests], "#2e7d32", "v"),
                ("low balances", [p.low_balances for p in trend.digests], "#1565c0", "s"),
                ("negative balances", [p.negative for p in trend.digests], "#6a1b9a", "D"),
            ]
            for label, values, colour, marker in series:
                width = 2.6 if label == "open discrepancies" else 1.6
                top.plot(at, _floats(values), label=label, color=colour, marker=marker, lw=width, ms=5)
            highest = max(max(values) for _, values, _, _ in series)
            top.set_ylim(0, max(highest, 1) * 1.4)  # headroom: the legend sits over empty space
            top.legend(loc="upper left", ncol=3, frameon=False)
        else:
            _nothing(top, "No digests in this channel yet")
        top.set_ylabel("users")
        top.yaxis.set_major_formatter(FuncFormatter(_count))
        if trend.consumption:
            days = _x([d for d, _ in trend.consumption])
            bottom.bar(days, _floats([t for _, t in trend.consumption]), width=0.8, color="#546e7a")
        bottom.set_ylabel("tokens used / day")
        bottom.yaxis.set_major_formatter(FuncFormatter(_tokens))
        bottom.set_ylim(bottom=0)
        _dates(bottom, [p.at for p in trend.digests] or [d for d, _ in trend.consumption], "UTC day")
        return _png(fig)


def _remaining(ax: Axes, chart: UsageChart) -> None:
    """The ledger's remaining at each day's end, grants and deductions on it, and the profile's value now."""
    days = _x([d.day for d in chart.days])
    remaining = [d.remaining for d in chart.days]
    ax.step(days, _floats(remaining), where="mid", color="#37474f", lw=2.2, label="remaining (ledger)")
    grants = [d for d in chart.days if d.granted]
    deductions = [d for d in chart.days if d.deducted]
    if grants:
        ax.scatter(*_on_line(grants), marker="^", s=90, color="#2e7d32", zorder=3, label="grant")
    if deductions:
        ax.scatter(*_on_line(deductions), marker="v", s=90, color="#ef6c00", zorder=3, label="deduction")
    last, ledger_now = days[-1], remaining[-1]
    gap = chart.current_remaining - ledger_now
    ax.scatter(
        [last], [float(chart.current_remaining)], marker="*", s=320, color=_VERDICT_COLOUR[chart.verdict],
        edgecolor="black", zorder=4, label="profile now",
    )  # fmt: skip
    if gap:
        ax.plot([last, last], _floats([ledger_now, chart.current_remaining]), ls=":", color="black", lw=1.5)
    note = f"profile {chart.current_remaining:,}\nledger {ledger_now:,}\ngap {gap:+,}" if gap else "no gap"
    ax.annotate(
        note, (last, float(chart.current_remaining)), xytext=(-24, -12), textcoords="offset points",
        ha="right", va="top", fontsize=11.5, fontweight="bold",
        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": _VERDICT_COLOUR[chart.verdict], "alpha": 0.9},
    )  # fmt: skip
    ax.set_ylabel("tokens remaining")
    ax.yaxis.set_major_formatter(FuncFormatter(_tokens))
    ax.legend(loc="best", frameon=False)


def _usage(ax: Axes, chart: UsageChart) -> None:
    """Successful consumption stacked by series, and failed tokens hatched on top: shown, never charged."""
    days = _x([d.day for d in chart.days])
    base = [0] * len(days)
    for i, name in enumerate(chart.series):
        values = [d.used.get(name, 0) for d in chart.days]
        if not any(values):
            continue
        colour = _OTHER if name == "other" else _PALETTE[i % len(_PALETTE)]
        ax.bar(days, _floats(values), bottom=_floats(base), width=0.85, color=colour, label=_plain(name, 28))
        base = [b + v for b, v in zip(base, values, strict=True)]
    failed = [d.failed for d in chart.days]
    # Only the days with failures: an empty hatched bar would still draw its red outline along the axis.
    marked = [i for i, f in enumerate(failed) if f]
    if marked:
        ax.bar(
            [days[i] for i in marked], _floats([failed[i] for i in marked]),
            bottom=_floats([base[i] for i in marked]), width=0.85, color="none", edgecolor=_FAILED,
            hatch="////", lw=1.2, label="failed (not charged)",
        )  # fmt: skip
    ax.set_ylabel(f"tokens used / day\nby {chart.grouped_by}")
    ax.yaxis.set_major_formatter(FuncFormatter(_tokens))
    # Headroom above the tallest day, so the legend sits over empty space rather than over bars.
    tallest = max((b + f for b, f in zip(base, failed, strict=True)), default=0)
    ax.set_ylim(0, max(tallest, 1) * 1.45)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", ncol=3, frameon=False)
    else:
        _nothing(ax, "No usage in these days")


def _dates(ax: Axes, points: Sequence[date | datetime], label: str) -> None:
    """Date ticks that stay few and short at phone width; one point gets a day either side to scale."""
    locator = AutoDateLocator(minticks=3, maxticks=7)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel(label)
    if len(points) == 1:
        [only] = _x(points)
        ax.set_xlim(only - 1, only + 1)


def _nothing(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#757575", fontsize=14)


@contextmanager
def _drawing() -> Iterator[Figure]:
    """A fresh figure at phone size in the house style, drawn by one thread at a time."""
    with _LOCK, rc_context(_STYLE):  # type: ignore[arg-type]
        fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _floats(values: Sequence[int]) -> list[float]:
    """The one place amounts become floats: plotting coordinates, after all arithmetic was done exactly."""
    return [float(v) for v in values]


def _on_line(days: list[UsageDay]) -> tuple[list[float], list[float]]:
    """Markers for days with a grant or deduction, placed on the remaining line at that day's end."""
    return _x([d.day for d in days]), _floats([d.remaining for d in days])


def _x(points: Sequence[date | datetime]) -> list[float]:
    """Matplotlib's day numbers: a time as it is (UTC when naive), a UTC day at its noon, so its bar
    covers the day itself."""
    moments = [p if isinstance(p, datetime) else datetime.combine(p, time(12), tzinfo=UTC) for p in points]
    return [float(n) for n in date2num(moments)]  # type: ignore[no-untyped-call]


def _tokens(value: float, _position: object = None) -> str:
    """Axis ticks short enough for a phone: 1.5M, 250k, 900."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if size >= 1_000:
        return f"{value / 1_000:.3g}k"
    return f"{value:.0f}"


def _count(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value == int(value) else ""


def _plain(text: str, limit: int) -> str:
    """Database text as matplotlib shows it literally: on one line, cut, and `$` never starting mathtext."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace("$", r"\$")
