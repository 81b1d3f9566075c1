"""A run's progress block, rendered in Python: the same markup wherever a run is shown (the run's
page, each of the dashboard's recent runs) and as the HTMX partial that 200 open pages poll every
second. In Jinja it was two dozen template calls (labels, numbers, translations) per block; here it
is one f-string over escaped values.

While the run is active the block carries the polling attributes (hx-get every second, swapping
itself); a finished run's block has none, so polling stops on its own.
"""
from __future__ import annotations

from flask import request, url_for
from markupsafe import Markup, escape

from .formatting import br_date, duration, number, row_urls, run_pace
from .fragments import kept
from .i18n import current_lang, gettext, label

_OUTCOMES = ("created", "updated", "unchanged", "skipped")


def _pace_text(run) -> str:
    pace = run_pace(run)
    if run.status == "queued":
        return escape(gettext("waiting for a worker"))
    rate = pace["rate"]
    if not run.finished:
        if not rate:
            return escape(gettext("starting…"))
        text = escape(gettext("%(rate)s records/s", rate=number(rate, 1)))
        if pace["left"] is not None:
            text += " · " + escape(gettext("about %(left)s left", left=duration(pace["left"])))
        return text
    if pace["elapsed"] is None:
        return ""
    text = escape(gettext("took %(time)s", time=duration(pace["elapsed"])))
    if rate:
        text += " · " + escape(gettext("%(rate)s records/s", rate=number(rate, 1)))
    return text


def run_progress(run, clinic_id: int) -> Markup:
    """The progress <div> of one run."""
    status = escape(run.status)
    pct = run.progress_pct
    poll = ""
    if not run.finished:
        poll = (f' hx-get="{url_for("jobs.progress", clinic_id=clinic_id, run_id=run.id)}"'
                ' hx-trigger="every 1s" hx-swap="outerHTML"')
    counts = " · ".join(f'{escape(label("outcome", o))} {number(getattr(run, o))}' for o in _OUTCOMES)
    failed = (f'<span class="{"fail" if run.failed else ""}">{escape(label("outcome", "failed"))} '
              f'{number(run.failed)}</span>')
    error = ""
    if run.error:
        error = f'\n  <div class="{"result-fail" if run.status == "failed" else "muted"}">{escape(run.error)}</div>'
    done_note = ""
    if run.finished and request.headers.get("HX-Request") and request.endpoint == "jobs.progress":
        see_all = escape(gettext("Finished: see every record's outcome"))
        done_note = (f'\n  <p class="done-note"><a href="{url_for("history.run", clinic_id=clinic_id, run_id=run.id)}">'
                     f'{see_all}</a></p>')
    value_text = escape(gettext("%(done)s of %(total)s records", done=run.done, total=run.total))
    bar_label = escape(gettext("Run %(id)s progress", id=run.id))
    return Markup(
        f'<div id="run-{run.id}-progress" class="run-progress s-{status}" data-status="{status}" '
        f'data-done="{run.done}" data-total="{run.total}"{poll}>\n'
        f'  <div class="progress-head">\n'
        f'    <span class="badge b-{status}">{escape(label("run", run.status))}</span>\n'
        f'    <strong class="progress-count">{number(run.done)}/{number(run.total)}</strong>\n'
        f'    <span class="muted">({pct}%)</span>\n'
        f'    <span class="progress-pace muted">{_pace_text(run)}</span>\n'
        f'  </div>\n'
        f'  <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="{pct}" '
        f'aria-valuetext="{value_text}" aria-label="{bar_label}"><div style="width:{pct}%"></div></div>\n'
        f'  <p class="counts muted">{counts} · {failed}</p>{error}{done_note}\n'
        f'</div>\n')


# what a finished run's dashboard item shows: once finished, a run's item never changes again
_ITEM_FIELDS = ("id", "status", "direction", "entity", "trigger", "total", "done", "created", "updated", "unchanged",
                "skipped", "failed", "error", "queued_at", "started_at", "finished_at")
_FINISHED_ITEMS: dict[tuple, Markup] = {}
MAX_FINISHED_ITEMS = 4096


def recent_runs(runs, clinic_id: int) -> Markup:
    """The dashboard's recent runs: each one's title line (link, what, when) and progress block.
    A finished run's item is rendered once per language and state, and kept (bounded)."""
    run_url = row_urls("history.run", "run_id", clinic_id=clinic_id)
    out = []
    for r in runs:
        if not r.finished:
            out.append(_run_item(r, clinic_id, run_url))
            continue
        key = (current_lang(), request.script_root, clinic_id, *(getattr(r, f) for f in _ITEM_FIELDS))
        out.append(kept(key, lambda: _run_item(r, clinic_id, run_url), _FINISHED_ITEMS, MAX_FINISHED_ITEMS))
    return Markup("".join(out))


def _run_item(r, clinic_id: int, run_url) -> str:
    title = escape(gettext("Run #%(id)s", id=r.id))
    return (f'<div class="run-item">\n<p class="run-title"><a href="{run_url(r.id)}">{title}</a> · '
            f'{escape(label("direction", r.direction))} · {escape(label("entity", r.entity))} · '
            f'{escape(label("trigger", r.trigger))} <span class="muted">· {escape(br_date(r.queued_at))}</span></p>\n'
            f'{run_progress(r, clinic_id)}</div>\n')


def install(app) -> None:
    app.jinja_env.globals.update(run_progress=run_progress, recent_runs=recent_runs)
