"""The list pages' filters and paging select the right rows: sync history (direction, status,
period, ERP), a run's records (outcome), record warnings (severity, problem kind, search by name or
CPF/CNPJ) and its CSV export. Their statements are prepared once per set of filters with the values
as bindparams (views.prepared), so each set is checked with values that must and must not match,
and twice, so a statement kept from the first request answers the second one's values."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from webapp.models import Customer, CustomerProblem, Integration, SyncRecord, SyncRun


def _ids(page: str, pattern: str) -> list[int]:
    return [int(x) for x in re.findall(pattern, page)]


def _runs(db_session, clinic):
    integ = Integration(clinic_id=clinic.id, erp="vhsys", enabled=True, features=["sync_customers"])
    db_session.add(integ)
    db_session.flush()
    now = datetime.utcnow()
    spec = [("push", "succeeded", "vhsys", 1), ("pull", "succeeded", "vhsys", 2), ("push", "failed", "bling", 3),
            ("push", "partial", "vhsys", 40), ("pull", "failed", "vhsys", 100)]
    runs = []
    for direction, status, erp, days in spec:
        run = SyncRun(clinic_id=clinic.id, integration_id=integ.id, erp=erp, direction=direction,
                      entity="customer" if direction == "push" else "all", trigger="event", status=status,
                      queued_at=now - timedelta(days=days), started_at=now - timedelta(days=days),
                      finished_at=now - timedelta(days=days) + timedelta(seconds=5))
        db_session.add(run)
        runs.append(run)
    db_session.commit()
    return runs


def test_sync_history_filters_each_alone_and_together(world, web, db_session):
    a, b = world["clinic_a"], world["clinic_b"]
    ok_push, ok_pull, failed_bling, partial_old, failed_older = _runs(db_session, a)
    other = _runs(db_session, b)
    owner = web("owner-a@test")

    def shown(query: str) -> set[int]:
        page = owner.get(f"/c/{a.id}/runs{query}").get_data(as_text=True)
        return set(_ids(page, rf'<a href="/c/{a.id}/runs/(\d+)">#'))

    everything = {r.id for r in (ok_push, ok_pull, failed_bling, partial_old, failed_older)}
    for _ in range(2):
        assert shown("") == everything and not shown("").intersection(r.id for r in other)
        assert shown("?direction=push") == {ok_push.id, failed_bling.id, partial_old.id}
        assert shown("?direction=pull") == {ok_pull.id, failed_older.id}
        assert shown("?status=failed") == {failed_bling.id, failed_older.id}
        assert shown("?status=nonsense") == set()
        assert shown("?erp=bling") == {failed_bling.id}
        assert shown("?period=7d") == {ok_push.id, ok_pull.id, failed_bling.id}
        assert shown("?period=90d") == everything - {failed_older.id}
        assert shown("?direction=push&status=failed&period=7d&erp=bling") == {failed_bling.id}
        assert shown("?direction=pull&status=failed&period=7d") == set()
        # values a form does not offer are ignored, as before: not an error, not an empty page
        assert shown("?direction=sideways&erp=nope&period=1y") == everything


def test_sync_history_and_run_records_page_by_id(world, web, db_session, monkeypatch):
    from webapp.blueprints import history
    monkeypatch.setattr(history, "PER_PAGE", 2)
    a = world["clinic_a"]
    runs = _runs(db_session, a)
    owner = web("owner-a@test")
    newest_first = sorted((r.id for r in runs), reverse=True)
    seen, query = [], ""
    while True:
        page = owner.get(f"/c/{a.id}/runs{query}").get_data(as_text=True)
        seen += _ids(page, rf'<a href="/c/{a.id}/runs/(\d+)">#')
        more = re.search(r'class="pager".*?href="[^"?]*\?([^"]*)"', page, re.S)
        if not more:
            break
        query = "?" + more.group(1).replace("&amp;", "&")
    assert seen == newest_first

    run = runs[0]
    outcomes = ["created", "failed", "created", "updated", "failed", "created"]
    db_session.add_all([SyncRecord(run_id=run.id, entity="customer", label=f"rec{i}", outcome=o, message="")
                        for i, o in enumerate(outcomes)])
    db_session.add(SyncRecord(run_id=runs[1].id, entity="customer", label="someone else's", outcome="failed"))
    db_session.commit()

    def labels(query: str) -> list[str]:
        got, q = [], query
        while True:
            page = owner.get(f"/c/{a.id}/runs/{run.id}{q}").get_data(as_text=True)
            got += re.findall(r"<td>(rec\d+|someone else's)</td>", page)
            more = re.search(r'class="pager".*?href="[^"?]*\?([^"]*)"', page, re.S)
            if not more:
                return got
            q = "?" + more.group(1).replace("&amp;", "&")

    assert labels("") == [f"rec{i}" for i in range(6)]
    assert labels("?outcome=failed") == ["rec1", "rec4"]
    assert labels("?outcome=created") == ["rec0", "rec2", "rec5"]
    assert labels("?outcome=skipped") == []
    assert owner.get(f"/c/{a.id}/runs/{run.id + 10_000}").status_code == 404
    other = _runs(db_session, world["clinic_b"])[0]
    assert owner.get(f"/c/{a.id}/runs/{other.id}").status_code == 404  # another clinic's run


def _customers(db_session, clinic):
    def problem(code, severity, field="tax_id"):
        return {"code": code, "field": field, "severity": severity, "message": code}
    rows = {
        "ana": Customer(clinic_id=clinic.id, external_id="1", name="Ana Souza", person_type="PF", tax_id="52998224725",
                        health_errors=0, health_warnings=0, health_problems=[]),
        "bia": Customer(clinic_id=clinic.id, external_id="2", name="Bia Lima", person_type="PF", tax_id="11111111111",
                        health_errors=1, health_warnings=0,
                        health_problems=[problem("tax_id.invalid_cpf", "error")]),
        "caio": Customer(clinic_id=clinic.id, external_id="3", name="Caio Souza", person_type="PF", tax_id="",
                         health_errors=0, health_warnings=1,
                         health_problems=[problem("email.missing", "warning", "email")]),
        "duda": Customer(clinic_id=clinic.id, external_id="4", name="Duda Rocha", person_type="PJ",
                         tax_id="11222333000181", health_errors=1, health_warnings=1,
                         health_problems=[problem("zip_code.missing", "error", "zip_code"),
                                          problem("email.missing", "warning", "email")]),
    }
    db_session.add_all(rows.values())
    db_session.flush()
    db_session.add_all([CustomerProblem(clinic_id=clinic.id, customer_id=c.id, field=p["field"], code=p["code"],
                                        severity=p["severity"]) for c in rows.values() for p in c.health_problems])
    db_session.commit()
    return {name: c.id for name, c in rows.items()}


def test_record_warnings_filters_and_search(world, web, db_session):
    a, b = world["clinic_a"], world["clinic_b"]
    ids = _customers(db_session, a)
    theirs = _customers(db_session, b)
    owner = web("owner-a@test")

    def shown(query: str) -> set[str]:
        page = owner.get(f"/c/{a.id}/customers/warnings{query}").get_data(as_text=True)
        found = set(_ids(page, rf'<a href="/c/{a.id}/customers/(\d+)">'))
        assert not found.intersection(theirs.values())
        return {name for name, cid in ids.items() if cid in found}

    for _ in range(2):
        assert shown("") == {"bia", "caio", "duda"}
        assert shown("?severity=problems") == {"bia", "caio", "duda"}
        assert shown("?severity=errors") == {"bia", "duda"}
        assert shown("?severity=warnings") == {"caio"}
        assert shown("?severity=all") == {"ana", "bia", "caio", "duda"}
        assert shown("?severity=errors&code=tax_id.invalid_cpf") == {"bia"}
        assert shown("?severity=all&code=email.missing") == {"caio", "duda"}
        assert shown("?severity=all&code=nothing.like.this") == set()
        assert shown("?severity=all&q=souza") == {"ana", "caio"}
        assert shown("?severity=all&q=529.982.247-25") == {"ana"}  # a masked CPF finds its record
        assert shown("?severity=all&q=11.222.333/0001-81") == {"duda"}
        assert shown("?severity=problems&q=souza") == {"caio"}
        assert shown("?severity=all&q=souza&code=email.missing") == {"caio"}
        assert shown("?q=nobody") == set()


def test_record_warnings_csv_streams_every_problem_of_the_filtered_records(world, web, db_session):
    """The export's body is written after the view returns: it still reads the database (it did not:
    the generator ran outside the request's context and the download stopped after its header)."""
    a = world["clinic_a"]
    _customers(db_session, a)
    owner = web("owner-a@test")
    # buffered: the body is read where the request ran (a context of its own, as a server's), not
    # later in the test's, which holds an app context a server does not
    resp = owner.get(f"/c/{a.id}/customers/warnings.csv?severity=errors", buffered=True)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).strip().splitlines()
    assert lines[0] == "customer_id,name,tax_id,field,code,severity,message"
    assert sorted(line.split(",")[4] for line in lines[1:]) == ["email.missing", "tax_id.invalid_cpf", "zip_code.missing"]
    only = owner.get(f"/c/{a.id}/customers/warnings.csv?severity=all&q=caio", buffered=True).get_data(as_text=True).strip().splitlines()
    assert [line.split(",")[1] for line in only[1:]] == ["Caio Souza"]
