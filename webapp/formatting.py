"""Template filters and helpers: Brazilian money, dates and CPF/CNPJ masks, durations, a run's pace,
and the geometry of the dashboard's 30-day chart (rendered as SVG by the template, no script).

Money (R$ 1.234,56), dates (dd/mm/aaaa, Brasília time) and CPF/CNPJ masks are Brazilian whatever the
page's language: they are the clinic's business data. Plain counts and rates follow the page's language.
"""
from __future__ import annotations

import functools
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from babel.numbers import format_decimal

from integrations.brazil import format_tax_id

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        BRAZIL_TZ = ZoneInfo("America/Sao_Paulo")
    except ZoneInfoNotFoundError:  # a machine without tz data: Brasília has had no DST since 2019
        BRAZIL_TZ = timezone(timedelta(hours=-3), "BRT")
except ImportError:  # pragma: no cover
    BRAZIL_TZ = timezone(timedelta(hours=-3), "BRT")


def money(value) -> str:
    """R$ 1.234,56 (negative: -R$ 1.234,56)."""
    if value is None or value == "":
        return ""
    try:
        q = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return str(value)
    whole, cents = f"{abs(q):,.2f}".split(".")
    return f"{'-' if q < 0 else ''}R$ {whole.replace(',', '.')},{cents}"


def to_brazil(value: datetime, stored_as_utc: bool = True) -> datetime:
    """A stored timestamp in Brasília time. Naive timestamps are UTC (models.utcnow), unless said otherwise."""
    if value.tzinfo is None:
        if not stored_as_utc:
            return value
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(BRAZIL_TZ)


def br_date(value, utc: bool = True) -> str:
    """dd/mm/aaaa for dates (and ISO date strings), dd/mm/aaaa hh:mm in Brasília time for timestamps."""
    if not value:
        return ""
    if isinstance(value, datetime):
        d = to_brazil(value, utc)  # fields, not strftime: a table of runs shows 50 of them
        return f"{d.day:02d}/{d.month:02d}/{d.year:04d} {d.hour:02d}:{d.minute:02d}"
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).strftime("%d/%m/%Y") if len(value) == 10 else value
        except ValueError:
            return value
    return str(value)


def quantity(value) -> str:
    """An item quantity without trailing zeros, Brazilian decimal comma: 1 / 1,5 / 1.250."""
    try:
        q = Decimal(str(value)).normalize()
    except InvalidOperation:
        return str(value or "")
    whole, _, frac = f"{abs(q):,f}".partition(".")
    text = whole.replace(",", ".") + ("," + frac if frac else "")
    return ("-" if q < 0 else "") + text


def tax_id(value) -> str:
    """CPF 000.000.000-00; CNPJ 00.000.000/0000-00, alphanumeric too (12.ABC.345/01DE-35); anything
    else unmasked (a mask over a wrong number would make it look right)."""
    return format_tax_id(str(value or "").strip())


def duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(round(float(seconds))))
    nb = "\u00a0"  # a number never wraps away from its unit
    if seconds < 60:
        return f"{seconds}{nb}s"
    if seconds < 3600:
        return f"{seconds // 60}{nb}min {seconds % 60:02d}{nb}s"
    return f"{seconds // 3600}{nb}h {(seconds % 3600) // 60:02d}{nb}min"


def _locale() -> str:
    from .i18n import current_lang
    try:
        return current_lang()
    except RuntimeError:  # no application context
        return "pt_BR"


def number(value, digits: int = 0) -> str:
    """A count or a rate in the page's language (1.234 / 1,234)."""
    if value is None:
        return ""
    if not digits and type(value) is int and -1000 < value < 1000:
        return str(value)  # no separator in any language: most counts on a page
    return _number(value, digits, str(_locale()))


@functools.lru_cache(maxsize=4096)
def _number(value, digits: int, locale: str) -> str:
    fmt = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=fmt, locale=locale)


def percent(value) -> str:
    """98,5% / 98.5% (value already in percent); whole numbers without decimals."""
    if value is None:
        return ""
    v = float(value)
    return number(v, 0 if v == int(v) else 1) + "%"


def run_pace(run, now: datetime | None = None) -> dict:
    """How fast a run goes: records per second and the time left at that pace (None when unknown)."""
    from .models import utcnow
    now = now or utcnow()
    total, done = run.total or 0, run.done or 0
    pace = {"rate": None, "left": None, "elapsed": None, "remaining": max(0, total - done)}
    if not run.started_at:
        return pace
    end = run.finished_at if run.finished and run.finished_at else now
    elapsed = max(0.0, (end - run.started_at).total_seconds())
    pace["elapsed"] = elapsed
    if done and elapsed >= 0.5:
        rate = done / elapsed
        pace["rate"] = rate
        if not run.finished and pace["remaining"]:
            pace["left"] = pace["remaining"] / rate
    return pace


# --------------------------------------------------------------------------- the 30-day chart
CHART = {"width": 720, "height": 240, "left": 44, "right": 12, "top": 14, "bottom": 30}
SERIES = ("created", "updated", "failed")


def _nice_ceiling(value: int) -> int:
    """A top for the y axis: 4 whole gridline steps (1, 2, 2.5, 3 or 5 x 10^k) that reach value."""
    need = max(1, math.ceil(value / 4))
    magnitude = 10 ** int(math.floor(math.log10(need)))
    step = next(int(m * magnitude) for m in (1, 2, 2.5, 3, 5, 10)
                if m * magnitude >= need and (m * magnitude) == int(m * magnitude))
    return 4 * step


def sync_chart(daily: list[dict], days: int = 30, today: date | None = None) -> dict:
    """Stacked bars (created, updated, failed) for each of the last `days` days, oldest first.

    `daily` is webapp.views.daily_counts: one row per day that had runs, day as 'YYYY-MM-DD' (UTC)."""
    from .models import utcnow
    today = today or utcnow().date()
    by_day = {str(r["day"])[:10]: r for r in daily}
    first = today - timedelta(days=days - 1)
    w, h = CHART["width"], CHART["height"]
    plot_w = w - CHART["left"] - CHART["right"]
    plot_h = h - CHART["top"] - CHART["bottom"]
    slot = plot_w / days
    bar_w = max(2.0, slot * 0.68)
    rows = []
    for i in range(days):
        d = first + timedelta(days=i)
        r = by_day.get(d.isoformat(), {})
        rows.append((d, {s: int(r.get(s) or 0) for s in SERIES}))
    peak = max((sum(v.values()) for _, v in rows), default=0)
    top = _nice_ceiling(peak)
    scale = plot_h / top
    baseline = CHART["top"] + plot_h
    bars = []
    for i, (d, values) in enumerate(rows):
        x = CHART["left"] + i * slot + (slot - bar_w) / 2
        y = baseline
        segments = []
        for s in SERIES:
            height = values[s] * scale
            if values[s]:
                y -= height
                segments.append({"series": s, "value": values[s], "y": round(y, 2), "h": round(max(height, 1.0), 2)})
        bars.append({"day": d, "x": round(x, 2), "w": round(bar_w, 2), "counts": values, "segments": segments,
                     "total": sum(values.values()), "label": d.strftime("%d/%m"),
                     "show_label": (days - 1 - i) % 5 == 0})
    ticks = [{"value": top // 4 * k, "y": round(baseline - plot_h * k / 4, 2)} for k in range(5)]
    totals = {s: sum(v[s] for _, v in rows) for s in SERIES}
    return {"bars": bars, "ticks": ticks, "totals": totals, "has_data": any(totals.values()), "top": top,
            "first": first, "last": today, **CHART, "baseline": baseline,
            "plot_right": w - CHART["right"]}


def sync_chart_markup(daily: list[dict]):
    """The chart partial rendered once per (counts, day, language): a dashboard shows the same 30 days
    to every reload until a run adds records, and the SVG is ~200 formatted numbers."""
    from .models import utcnow
    key = tuple((str(r["day"])[:10], r.get("created"), r.get("updated"), r.get("failed")) for r in daily)
    return _chart_markup(key, utcnow().date(), _locale())


@functools.lru_cache(maxsize=256)
def _chart_markup(key: tuple, today: date, lang: str):
    from flask import render_template
    from markupsafe import Markup
    daily = [{"day": d, "created": c, "updated": u, "failed": f} for d, c, u, f in key]
    return Markup(render_template("partials/sync_chart.html", daily=daily, today=today))


_ROW_MARKER = 918273645  # an id no route has, replaced by each row's own


def row_urls(endpoint: str, key: str, **values):
    """url_for across a table's rows: the address is built once, each row puts its id in place
    (`run_url = row_urls('history.run', 'run_id', clinic_id=cid)`, then `run_url(r.id)`), instead
    of one routing build per row."""
    from flask import url_for
    head, marker, tail = url_for(endpoint, **values, **{key: _ROW_MARKER}).partition(str(_ROW_MARKER))
    if not marker:  # pragma: no cover - a route that does not show the id in its path
        return lambda row_id: url_for(endpoint, **values, **{key: row_id})
    return lambda row_id: f"{head}{int(row_id)}{tail}"


def register_filters(app) -> None:
    app.jinja_env.filters.update(money=money, br_date=br_date, tax_id=tax_id, duration=duration, number=number,
                                 percent=percent, quantity=quantity)
    app.jinja_env.globals.update(run_pace=run_pace, sync_chart=sync_chart, sync_chart_markup=sync_chart_markup)
