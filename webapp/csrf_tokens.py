"""The CSRF token a page carries (its meta tag, the header's log-out form, the retry forms): Flask-WTF's
generate_csrf, with the signed token reused for a minute per session.

generate_csrf signs the session's raw token again on every request (a new serializer, its key
derived, an HMAC over a fresh timestamp): 2-3% of a page. Reusing the signed token of the same raw
token for up to REUSE_SECONDS only makes the tokens a page carries up to a minute older; they are
checked exactly as before (the same signature, WTF_CSRF_TIME_LIMIT from when they were signed).
"""
from __future__ import annotations

import time

from flask import current_app, g, session
from flask_wtf.csrf import generate_csrf

REUSE_SECONDS = 60.0
MAX_KEPT = 4096
_SIGNED: dict[tuple, tuple[float, str]] = {}  # (secret, field, raw token) -> (signed at, signed token)


def csrf_token() -> str:
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    token = g.get(field)
    if token is not None:
        return token
    raw = session.get(field)
    key = (current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key, field, raw)
    now = time.monotonic()
    if raw is not None:
        hit = _SIGNED.get(key)
        if hit is not None and now - hit[0] < REUSE_SECONDS:
            setattr(g, field, hit[1])  # Flask-WTF's own calls in this request answer the same
            return hit[1]
    token = generate_csrf()
    raw = session.get(field)
    if len(_SIGNED) >= MAX_KEPT:
        _SIGNED.clear()
    _SIGNED[key[:2] + (raw,)] = (now, token)
    return token


def install(app) -> None:
    """`csrf_token()` in templates: Flask-WTF puts its own in every template's context (a context
    processor, which a global cannot override), so this one goes in the same way, after it."""
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.context_processor(lambda: _CONTEXT)


_CONTEXT = {"csrf_token": csrf_token}
