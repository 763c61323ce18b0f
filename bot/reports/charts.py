"""Trend charts as PNG images, uploaded to Slack next to a report's CSV.

Rendered with matplotlib's Agg backend (no display). One figure is reused under a lock, cleared
between charts, so rendering many reports doesn't grow memory. The output is deterministic for
the same trend: no timestamps or software versions are written into the file.
"""

from __future__ import annotations

import io
import math
import threading
from datetime import date

import matplotlib

from workflows.i18n import _

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402 - the backend is chosen first

from workflows.reports import Period, Trend  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 9.0, 4.5, 110  # about 990 x 495 px: readable in a Slack preview
MAX_TICKS = 12
_AXIS = {Period.DAY: "Day", Period.WEEK: "Week starting", Period.MONTH: "Month"}

_lock = threading.Lock()
_figure: Figure | None = None


def _label(day: date, period: Period) -> str:
    if period is Period.MONTH:
        return day.strftime("%b %Y")
    return f"{day:%b} {day.day}"


def _tick_positions(count: int) -> list[int]:
    if count <= MAX_TICKS:
        return list(range(count))
    step = math.ceil(count / MAX_TICKS)
    return list(range(0, count, step))


def trend_png(trend: Trend, *, title: str) -> bytes:
    """The trend as a line chart: one line per series over the periods, titled `title` on the
    chart and in the PNG's Title metadata."""
    global _figure
    with _lock:
        if _figure is None:
            _figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        fig = _figure
        fig.clear()
        try:
            ax = fig.add_subplot()
            xs = list(range(len(trend.periods)))
            for label, values in trend.series.items():
                # NaN (a period with no value, e.g. no closures) leaves a gap in the line.
                ax.plot(xs, list(values), marker="o", markersize=3, linewidth=1.8, label=label)
            ticks = _tick_positions(len(trend.periods))
            ax.set_xticks(ticks)
            ax.set_xticklabels([_label(trend.periods[i], trend.period) for i in ticks])
            ax.set_xlabel(_AXIS[trend.period])
            ax.set_ylabel(_(trend.unit).capitalize())
            ax.set_title(title)
            ax.set_ylim(bottom=0)
            if not trend.series or not trend.periods:
                ax.text(
                    0.5,
                    0.5,
                    "No data in this range",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    color="gray",
                )
            ax.grid(True, alpha=0.3)
            if trend.series:
                ax.legend(loc="upper left", fontsize="small", frameon=False)
            fig.tight_layout()
            out = io.BytesIO()
            # Only the title: no Software or creation-time chunks, so the same trend gives
            # the same bytes.
            fig.savefig(out, format="png", metadata={"Title": title, "Software": None})
            return out.getvalue()
        finally:
            fig.clear()
