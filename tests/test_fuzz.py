"""R4 of the chaos suite, also in the normal suite: property-based fuzzing of the events API and
of every form. Whatever arrives: no 500, a clear 4xx, and nothing half-written."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from webapp.models import Binding, Customer, Integration, Invoice, OutboxEvent, SyncRecord, SyncRun

from .helpers import VALID_CUSTOMERS, invoice_event
from .test_security import report

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20)
customer_fields = list(VALID_CUSTOMERS[0]) + ["state_registration", "complement"]
near_customers = st.fixed_dictionaries({}, optional={f: json_values | st.text(max_size=300) for f in customer_fields})
near_invoices = st.builds(lambda patch, base: {**base, **patch},
                          st.dictionaries(st.sampled_from(["id", "number", "customer_id", "issue_date", "kind", "items",
                                                           "installments", "notes"]), json_values, max_size=4),
                          st.just(invoice_event("f-fuzz", VALID_CUSTOMERS[0]["id"])["invoice"]))
events = st.one_of(
    json_values,
    st.builds(lambda c: {"type": "customer.upserted", "customer": c}, near_customers),
    st.builds(lambda i: {"type": "invoice.billed", "invoice": i}, near_invoices),
    st.builds(lambda evs: {"events": evs}, st.lists(st.builds(lambda c: {"type": "customer.upserted", "customer": c},
                                                              near_customers), max_size=3)),
)


def counts(db_session):
    return tuple(db_session.scalar(select(func.count()).select_from(m)) for m in (Customer, Invoice, OutboxEvent))


def test_r4_events_api_never_fails_and_never_half_writes(world, api, db_session):
    seen = {"202": 0, "4xx": 0}
    from .helpers import customer_event, post_events
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[0]))

    @FUZZ
    @given(events)
    def check(body):
        before = counts(db_session)
        resp = api.post("/api/v1/events", json=body, headers={"Authorization": f"Bearer {world['token_a']}"})
        assert resp.status_code in (202, 400, 422), (resp.status_code, body)
        after = counts(db_session)
        if resp.status_code == 202:
            seen["202"] += 1
        else:
            seen["4xx"] += 1
            assert resp.json.get("error"), body
            assert after == before, ("a refused event wrote something", body)

    check()
    report("R4-api", {"examples": sum(seen.values()), "accepted": seen["202"], "refused_4xx": seen["4xx"], "5xx": 0})


def test_r4_every_form_survives_garbage(world, web, ids_for_forms, db_session):
    support, owner = web("support@test"), web("owner-a@test")
    cid = world["clinic_a"].id
    posts = [
        (support, f"/c/{cid}/integration/setup?erp=vhsys"),
        (support, f"/c/{cid}/integration/test?erp=vhsys"),
        (support, f"/c/{cid}/integration/{ids_for_forms['integration_id']}/state"),
        (owner, f"/c/{cid}/runs/{ids_for_forms['run_id']}/retry"),
        (owner, f"/c/{cid}/customers/{ids_for_forms['customer_id']}/resolve"),
    ]
    form_values = st.dictionaries(
        st.sampled_from(["erp", "action", "record_id", "cred_access_token", "cred_secret_access_token",
                         "set_base_url", "set_page_size", "feat_sync_customers", "email", "password", "zzz"]),
        st.text(max_size=60) | st.sampled_from(["", "0", "-1", "99999999999999999999", "save_enabled", "disable",
                                               "push_tecpet", "take_erp", "http://127.0.0.1:9/x"]), max_size=6)
    seen = {"n": 0}

    @FUZZ
    @given(st.sampled_from(range(len(posts))), form_values)
    def check(which, data):
        client, url = posts[which]
        before = counts(db_session)
        resp = client.post(url, data)
        assert resp.status_code < 500, (url, data, resp.status_code)
        if resp.status_code >= 400:
            assert counts(db_session) == before
        seen["n"] += 1

    check()

    @FUZZ
    @given(st.text(max_size=300), st.text(max_size=300))
    def login(email, password):
        resp = web().post("/login", {"email": email, "password": password})
        assert resp.status_code in (400, 401, 429), resp.status_code

    login()
    report("R4-forms", {"examples": seen["n"], "5xx": 0})


def test_r4_numbers_beyond_a_row_id_are_refused_not_crashed(world, web, ids_for_forms, db_session):
    """Found by R4 at 500 examples: record_id=2**63 reached the database driver (OverflowError, a 500)."""
    owner, cid, rid = web("owner-a@test"), world["clinic_a"].id, ids_for_forms["run_id"]
    huge = str(2 ** 63)
    before = counts(db_session)
    assert owner.get(f"/c/{cid}/runs/{huge}").status_code == 404
    assert owner.get(f"/c/{cid}/customers/{huge}").status_code == 404
    assert owner.get(f"/c/{cid}/runs?after={huge}").status_code == 200  # an unusable cursor is ignored
    assert owner.get(f"/c/{cid}/runs/{rid}?after=-{huge}").status_code == 200
    for bad in (huge, "-1", "abc"):  # never widened to "retry all failed records"
        resp = owner.post(f"/c/{cid}/runs/{rid}/retry", {"record_id": bad})
        assert resp.status_code == 400 and "not a record of this run" in resp.get_data(as_text=True)
    assert counts(db_session) == before


@pytest.fixture
def ids_for_forms(world, db_session):
    """A bound customer and a run with a failed record, so every form has something to act on."""
    a = world["clinic_a"]
    c = Customer(clinic_id=a.id, external_id="c-fz", name="Ana", person_type="PF")
    db_session.add(c)
    db_session.flush()
    integ = Integration(clinic_id=a.id, erp="vhsys", enabled=False, features=["sync_customers"])
    db_session.add(integ)
    db_session.flush()
    db_session.add(Binding(integration_id=integ.id, entity="customer", local_id=c.id, remote_id="1", state="bound"))
    run = SyncRun(clinic_id=a.id, integration_id=integ.id, direction="push", entity="customer", trigger="event",
                  status="partial", failed=1, total=1, done=1)
    db_session.add(run)
    db_session.flush()
    db_session.add(SyncRecord(run_id=run.id, entity="customer", local_id=c.id, outcome="failed", message="x"))
    db_session.commit()
    return {"integration_id": integ.id, "run_id": run.id, "customer_id": c.id}
