"""Numbers taken from URLs, query strings and forms as row ids: only what a database integer holds.

A larger number (a fuzzer's 2**63) would reach the database driver and fail there; as a route
parameter it is a 404, as a query or form value it counts as absent (the view then answers 400/404).
"""
from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ROW_ID = 2 ** 63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite


def row_id(value: str) -> int:
    """`type=row_id` for request.args/form.get: an int in 0..MAX_ROW_ID, else ValueError."""
    number = int(value)
    if not 0 <= number <= MAX_ROW_ID:
        raise ValueError(f"{value!r} is not a row id")
    return number


class RowIdConverter(IntegerConverter):
    """The `int` of every route, bounded to what the database can hold."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(map, *args, **kwargs)


def install(app) -> None:
    app.url_map.converters["int"] = RowIdConverter
