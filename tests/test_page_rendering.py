"""What pages do to stay fast at a large account's size, checked for what they show: the long
tables' rows rendered in Python (webapp/table_rows.py: links, labels, escaping, the retry form only
where a retry is possible) and the dashboard's cached 30-day counts (fresh when a run ends)."""
from __future__ import annotations

from datetime import datetime, timedelta

from webapp.models import Customer, Integration, SyncRecord, SyncRun


def _run(db_session, clinic, **kw):
    integ = Integration(clinic_id=clinic.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add(integ)
    db_session.flush()
    run = SyncRun(clinic_id=clinic.id, integration_id=integ.id, erp="vhsys", direction="push", entity="customer",
                  trigger="event", **kw)
    db_session.add(run)
    db_session.flush()
    return run


def test_record_rows_escape_and_offer_retry_only_on_finished_push_runs(world, web, db_session):
    a = world["clinic_a"]
    c = Customer(clinic_id=a.id, external_id="c1", name="Ana", person_type="PF")
    db_session.add(c)
    db_session.flush()
    now = datetime.utcnow()
    run = _run(db_session, a, status="partial", started_at=now - timedelta(seconds=75), finished_at=now,
               total=2, done=2, failed=1, created=1)
    db_session.add_all([
        SyncRecord(run_id=run.id, entity="customer", local_id=c.id, label="Ana & <Bia>", outcome="failed",
                   message="<b>CPF inválido</b>", remote_id=""),
        SyncRecord(run_id=run.id, entity="customer", local_id=None, label="Removed one", outcome="created",
                   message="", remote_id="77")])
    db_session.commit()
    owner = web("owner-a@test")
    page = owner.get(f"/c/{a.id}/runs/{run.id}").get_data(as_text=True)
    assert f'<a href="/c/{a.id}/customers/{c.id}">Ana &amp; &lt;Bia&gt;</a>' in page
    assert "&lt;b&gt;CPF inválido&lt;/b&gt;" in page and "<b>CPF" not in page
    assert page.count('name="record_id"') == 1 and 'aria-label="Retrying' not in page
    failed_id = db_session.query(SyncRecord.id).filter_by(run_id=run.id, outcome="failed").scalar()
    assert f'name="record_id" value="{failed_id}"' in page and 'name="csrf_token" value="' in page
    assert "<td>Removed one</td>" in page  # no local record: no link
    history = owner.get(f"/c/{a.id}/runs").get_data(as_text=True)
    assert f'<a href="/c/{a.id}/runs/{run.id}">#{run.id}</a>' in history
    assert '<td class="num fail">1</td>' in history and "1\u00a0min 15\u00a0s" in history

    run.finished_at, run.status = None, "running"  # still running: nothing to retry yet
    db_session.commit()
    assert 'name="record_id"' not in owner.get(f"/c/{a.id}/runs/{run.id}").get_data(as_text=True)


def test_warning_rows_escape_what_the_record_holds(world, web, db_session):
    a = world["clinic_a"]
    bad = Customer(clinic_id=a.id, external_id="x<1>", name="Zé <script>", person_type="PF", tax_id="",
                   health_errors=1, health_problems=[{"code": "tax_id.missing", "field": "tax_id", "severity": "error",
                                                      "message": "The CPF/CNPJ is empty"}])
    db_session.add(bad)
    db_session.commit()
    owner = web("owner-a@test")
    owner.get(f"/c/{a.id}/customers/warnings?lang=en")  # the switch answers with a redirect
    page = owner.get(f"/c/{a.id}/customers/warnings").get_data(as_text=True)
    assert "Zé &lt;script&gt;" in page and "<script>" not in page.split("<tbody>")[1]
    assert "x&lt;1&gt;" in page and "The CPF/CNPJ is empty" in page and 'class="badge b-error"' in page
    assert f'href="/c/{a.id}/customers/{bad.id}"' in page


def test_dashboard_chart_counts_a_run_as_soon_as_it_ends(world, web, db_session):
    """The 30-day counts are cached between dashboards and dropped when a run ends."""
    from webapp.sync import runs
    from webapp.views import daily_counts
    a = world["clinic_a"]
    run = _run(db_session, a, status="running", started_at=datetime.utcnow(), total=1)
    db_session.add(SyncRecord(run_id=run.id, entity="customer", local_id=None, label="x", outcome="created",
                              message="", remote_id="1"))
    db_session.commit()
    owner = web("owner-a@test")
    assert owner.get(f"/c/{a.id}/").status_code == 200
    assert sum(d["created"] for d in daily_counts(a.id)) == 0  # cached while the run was running
    runs.finish(run)
    db_session.commit()
    assert sum(d["created"] for d in daily_counts(a.id)) == 1
