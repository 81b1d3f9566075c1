"""How JSON columns are read (SQLAlchemy's json_deserializer, psycopg's jsonb loader on
PostgreSQL): orjson, a few times faster than the standard library; the record warnings page reads
fifty customers' problem lists per request. What orjson refuses and the standard library reads
(NaN, integers beyond 64 bits) is still read, by the standard library."""
from __future__ import annotations

import json

import orjson


def loads(text):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
