"""HTML fragments that depend on a handful of values only (the page header, a page's filter form,
an ERP's capability panel), rendered once per set of values and kept in the process.

The key is every value the fragment reads, so a kept fragment is always the one that would be
rendered now: `fragment()` passes a partial its values as keyword arguments, and such a partial
reads nothing else but translations (`_`, `label`) and `url_for`, which the language and the
script root in the key settle. A process keeps at most MAX_KEPT fragments and starts over when
full (distinct query strings could otherwise grow the store)."""
from __future__ import annotations

from typing import Callable, Hashable

from flask import render_template, request
from markupsafe import Markup

from .i18n import current_lang

MAX_KEPT = 1024
_KEPT: dict[Hashable, Markup] = {}


def kept(key: Hashable, render: Callable[[], str], store: dict | None = None, limit: int | None = None) -> Markup:
    """The kept HTML for `key`, rendered now if absent. `store` and `limit`: another bounded store
    than this module's (MAX_KEPT), for fragments that should not evict these."""
    store = _KEPT if store is None else store
    html = store.get(key)
    if html is None:
        if len(store) >= (MAX_KEPT if limit is None else limit):
            store.clear()
        html = store[key] = Markup(render())
    return html


def fragment(template: str, **values: Hashable) -> Markup:
    """A partial rendered with these values only (see above), kept per language and values."""
    key = (template, current_lang(), request.script_root, tuple(sorted(values.items())))
    return kept(key, lambda: render_template(template, **values))


def install(app) -> None:
    app.jinja_env.globals["fragment"] = fragment
