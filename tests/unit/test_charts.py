"""Trend charts: valid PNGs of a sane size, titled on the chart and in the file's metadata."""

from __future__ import annotations

import io
from datetime import date, timedelta

from PIL import Image

from bot.reports.charts import trend_png
from workflows.reports import Period, Trend

WEEKS = tuple(date(2026, 1, 5) + timedelta(weeks=i) for i in range(8))


def _open(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()  # the whole file is read and its chunks checked
    return Image.open(io.BytesIO(png))


def test_a_trend_renders_as_a_titled_png() -> None:
    trend = Trend(
        title="Incidents by type per week",
        period=Period.WEEK,
        periods=WEEKS,
        series={
            "screen": (1, 0, 3, 2, 0, 1, 4, 2),
            "physical_damage": (0, 2, 1, 0, 0, 3, 1, 1),
        },
        unit="incidents",
    )
    png = trend_png(trend, title="Incidents by Type, Lincoln Middle")
    image = _open(png)
    assert image.format == "PNG"
    assert 600 <= image.width <= 2000 and 300 <= image.height <= 1200
    assert image.info["Title"] == "Incidents by Type, Lincoln Middle"
    # The same trend gives the same bytes: nothing time-dependent is written.
    assert trend_png(trend, title="Incidents by Type, Lincoln Middle") == png


def test_gaps_and_long_ranges_render() -> None:
    days = tuple(date(2025, 7, 1) + timedelta(days=i) for i in range(400))
    nan = float("nan")
    trend = Trend(
        title="Average hours to closure per day",
        period=Period.DAY,
        periods=days,
        series={"All incidents": tuple(nan if i % 3 else float(i % 50) for i in range(400))},
        unit="hours",
    )
    image = _open(trend_png(trend, title="Average Hours to Closure"))
    assert image.info["Title"] == "Average Hours to Closure"


def test_an_empty_trend_still_renders() -> None:
    for periods in ((), WEEKS):
        trend = Trend(
            title="Nothing", period=Period.MONTH, periods=periods, series={}, unit="hours"
        )
        image = _open(trend_png(trend, title="Nothing happened"))
        assert image.info["Title"] == "Nothing happened"
        assert image.width > 0 and image.height > 0
