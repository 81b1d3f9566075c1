"""Template filters: Brazilian money, dates and Tax ID masks."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal


def money(value) -> str:
    if value is None or value == "":
        return ""
    q = Decimal(str(value)).quantize(Decimal("0.01"))
    whole, cents = f"{abs(q):,.2f}".split(".")
    return f"{'-' if q < 0 else ''}R$ {whole.replace(',', '.')},{cents}"


def br_date(value) -> str:
    if not value:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def tax_id(value: str) -> str:
    v = (value or "").strip()
    if len(v) == 11:
        return f"{v[:3]}.{v[3:6]}.{v[6:9]}-{v[9:]}"
    if len(v) == 14:
        return f"{v[:2]}.{v[2:5]}.{v[5:8]}/{v[8:12]}-{v[12:]}"
    return v


def duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m {seconds % 60:02d}s"


def register_filters(app) -> None:
    app.jinja_env.filters.update(money=money, br_date=br_date, tax_id=tax_id, duration=duration)
