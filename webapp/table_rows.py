"""The rows of the long tables (sync history, a run's records, record warnings) rendered in Python.

A 50-row table cost about half of its page in Jinja (a dozen template calls, attribute lookups and
escapes per row); here a row is one f-string over escaped values. The templates keep the table's
frame, headings and empty state, and these functions use the same labels, badges and formats.
"""
from __future__ import annotations

from flask import url_for
from markupsafe import Markup, escape
from sqlalchemy import DateTime, Text, cast

from .csrf_tokens import csrf_token
from .formatting import br_date, duration, number, row_urls, tax_id
from .i18n import badge, current_lang, gettext, label, problem_text
from .json_values import loads
from .models import Customer, SyncRecord, SyncRun, utcnow

DASH = "—"

# what each function reads of a row, and all views.keyset(columns=...) fetches for it
RUN_COLUMNS = tuple(getattr(SyncRun, name) for name in (
    "id", "direction", "entity", "trigger", "erp", "status", "started_at", "finished_at", "created", "updated",
    "skipped", "failed"))
RECORD_COLUMNS = tuple(getattr(SyncRecord, name) for name in (
    "id", "entity", "local_id", "label", "outcome", "remote_id", "message"))
# a problem's sentence quotes the field it is about (problem_text): every field of the record, not the
# timestamps, the clinic or the health counts (a column more costs each row and the query's setup);
# the problem list as its JSON text, parsed only when the row's HTML is not kept (warning_rows)
WARNING_COLUMNS = tuple(cast(c, Text).label(c.key) if c.key == "health_problems" else c
                        for c in Customer.__table__.columns if not isinstance(c.type, DateTime)
                        and c.key not in ("clinic_id", "health_errors", "health_warnings"))


def _per_table(render):
    """render() kept for the length of one table: a column holds a handful of distinct values
    (a direction, a status), each looked up and escaped once instead of once per row."""
    seen = {}

    def shown(*key):
        text = seen.get(key)
        if text is None:
            text = seen[key] = render(*key)
        return text
    return shown


def run_rows(runs, clinic_id: int) -> Markup:
    """<tr> per run for partials/runs_table.html; runs are rows of RUN_COLUMNS, in that order."""
    run_url = row_urls("history.run", "run_id", clinic_id=clinic_id)
    word = _per_table(lambda kind, value: escape(label(kind, value)))
    status_badge = _per_table(lambda value: badge("run", value))
    now = utcnow()
    out = []
    for rid, direction, entity, trigger, erp, status, started_at, finished_at, created, updated, skipped, failed in runs:
        if started_at is not None:
            started = escape(br_date(started_at))
            took = escape(duration(((finished_at or now) - started_at).total_seconds()))
        else:
            started = took = DASH
        out.append(
            f'<tr>\n  <td><a href="{run_url(rid)}">#{rid}</a></td>\n'
            f'  <td><span class="what">{word("direction", direction)}</span> '
            f'<span class="muted">{word("entity", entity)}</span></td>'
            f'<td>{word("trigger", trigger)}</td><td>{escape((erp or "").upper())}</td>\n'
            f'  <td class="nowrap">{started}</td><td>{took}</td>\n'
            f'  <td>{status_badge(status)}</td>\n'
            f'  <td class="num">{number(created)}</td><td class="num">{number(updated)}</td>'
            f'<td class="num">{number(skipped)}</td>'
            f'<td class="num{" fail" if failed else ""}">{number(failed)}</td>\n</tr>\n')
    return Markup("".join(out))


def record_rows(run, records, clinic_id: int) -> Markup:
    """<tr> per sync record for history/run.html; a failed record of a finished push run gets its
    own retry form."""
    customer_url = row_urls("customers.detail", "customer_id", clinic_id=clinic_id)
    invoice_url = row_urls("finance.invoice", "invoice_id", clinic_id=clinic_id)
    retry_head = ""
    if run.direction == "push" and run.finished:
        retry_head = (f'<form method="post" action="{url_for("history.retry", clinic_id=clinic_id, run_id=run.id)}" '
                      f'class="inline"><input type="hidden" name="csrf_token" value="{escape(csrf_token())}">'
                      '<input type="hidden" name="record_id" value="')
        retry_word = escape(gettext("Retry"))
    out = []
    for r in records:
        shown = escape(r.label)
        if r.local_id and r.entity == "customer":
            shown = f'<a href="{customer_url(r.local_id)}">{shown}</a>'
        elif r.local_id and r.entity == "invoice":
            shown = f'<a href="{invoice_url(r.local_id)}">{shown}</a>'
        failed = r.outcome == "failed"
        form = ""
        if failed and retry_head:
            form = (f'{retry_head}{r.id}"><button type="submit" class="secondary small" '
                    f'aria-label="{escape(gettext("Retry %(label)s", label=r.label))}">{retry_word}</button></form>')
        out.append(
            f'<tr class="{"row-fail" if failed else ""}"><td>{shown}</td>\n'
            f'<td>{badge("outcome", r.outcome)}</td><td>{escape(r.remote_id)}</td>'
            f'<td class="reason">{escape(r.message)}\n{form}</td></tr>\n')
    return Markup("".join(out))


# a warning row's HTML, kept by everything it is made of: the page's language, the customer's address
# (clinic and script root) and every value of the row; a changed record is another key, so nothing
# kept is ever stale. The same first pages are read over and over; the oldest half goes when full
# (2,000 rows, 40 pages: a few MB a process).
_WARNING_ROWS: dict[tuple, str] = {}
WARNING_ROWS_KEPT = 2000


def warning_rows(customers, clinic_id: int) -> Markup:
    """<tr> per customer for customers/warnings.html: the record and what to fix in it. Rows of
    WARNING_COLUMNS (health_problems as JSON text) are kept once rendered; other rows (ORM objects,
    health_problems a list) are rendered each time."""
    customer_url = row_urls("customers.detail", "customer_id", clinic_id=clinic_id)
    lang, base = current_lang(), customer_url(0)
    render = None
    out = []
    for c in customers:
        key = (lang, base, tuple(c)) if isinstance(c.health_problems, str) else None
        html = _WARNING_ROWS.get(key) if key is not None else None
        if html is None:
            if render is None:
                render = _warning_row_renderer(customer_url)
            html = render(c)
            if key is not None:
                _keep(key, html)
        out.append(html)
    return Markup("".join(out))


def _keep(key: tuple, html: str) -> None:
    if len(_WARNING_ROWS) >= WARNING_ROWS_KEPT:
        for old in list(_WARNING_ROWS)[:WARNING_ROWS_KEPT // 2]:
            _WARNING_ROWS.pop(old, None)
    _WARNING_ROWS[key] = html


def _warning_row_renderer(customer_url):
    no_name, ready = escape(gettext("(no name)")), escape(gettext("Ready to invoice."))
    severity = _per_table(lambda value: badge("severity", value))

    def render(c) -> str:
        listed = c.health_problems
        if isinstance(listed, str):
            listed = loads(listed)
        problems = "".join([f'<li>{severity(p.get("severity"))} {escape(problem_text(p, c))}</li>'
                            for p in listed or ()]) or f'<li class="result-ok">{ready}</li>'
        return (f'<tr><td><a href="{customer_url(c.id)}">{escape(c.name) if c.name else no_name}</a>'
                f'<div class="muted small">{escape(c.external_id)}</div></td>'
                f'<td class="nowrap">{escape(tax_id(c.tax_id) or DASH)}</td>\n'
                f'<td><ul class="problems">{problems}</ul></td></tr>\n')
    return render


def install(app) -> None:
    app.jinja_env.globals.update(run_rows=run_rows, record_rows=record_rows, warning_rows=warning_rows)
