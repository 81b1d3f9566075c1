"""One step of a bulk customer push: a batch of a run's records, under their locks.

1. Read each pending record with its customer and binding, in one query.
2. Health-check each customer. Skip the ones that are unchanged. Write the intents of the rest
   (pending bindings) and commit: intents are durable before any remote create.
3. Push the batch. Record the outcomes and bindings, and commit once.

The writes are bulk statements, one per kind of row, with the run's counters moved by the number
of outcomes of each kind. Every record read here is "pending" and locked, so nothing else changes
it meanwhile. A binding is written by its natural key (integration, entity, local id), which its
unique index serves, so a new intent needs no id read back.
"""
from __future__ import annotations

from collections import Counter

from sqlalchemy import and_, bindparam, insert, select, update

from integrations.base import ConnectorError, PushResult

from ..extensions import db
from ..health import check_customer
from ..models import Binding, Customer, Integration, SyncRecord, SyncRun, utcnow
from ..record_health import records_differ
from . import runs
from .erp_index import ErpIndex
from .locks import record_locks
from .push import error_summary
from .records import customer_record

_BINDINGS = Binding.__table__
_RECORDS = SyncRecord.__table__

_INSERT_BINDING = insert(_BINDINGS)
_BIND = {  # the ERP's copy is kept when the ERP sent one
    with_copy: update(_BINDINGS).where(
        _BINDINGS.c.local_id == bindparam("b_local_id"), _BINDINGS.c.integration_id == bindparam("b_integration_id"),
        _BINDINGS.c.entity == "customer",
    ).values(remote_id=bindparam("b_remote_id"), state="bound", payload_hash=bindparam("b_payload_hash"),
             updated_at=bindparam("b_now"),
             **({"remote_copy": bindparam("b_remote_copy"), "remote_seen_at": bindparam("b_now")} if with_copy else {}))
    for with_copy in (True, False)
}
_OUTCOME = update(_RECORDS).where(_RECORDS.c.id == bindparam("r_id")).values(
    outcome=bindparam("r_outcome"), message=bindparam("r_message"), attempts=bindparam("r_attempts"),
    remote_id=bindparam("r_remote_id"), finished_at=bindparam("r_now"))


def push_customer_chunk(run: SyncRun, integration: Integration, connector, record_ids: list[int]) -> None:
    local_ids = list(db.session.scalars(select(SyncRecord.local_id).where(SyncRecord.id.in_(record_ids))))
    with record_locks(integration.id, "customer", local_ids):
        _CustomerStep(run, integration, connector).push(record_ids)


class _CustomerStep:
    def __init__(self, run: SyncRun, integration: Integration, connector):
        self.run = run
        self.integration_id = integration.id
        self.clinic_id = integration.clinic_id
        self.connector = connector
        self.now = utcnow()
        self.intended: set[int] = set()  # customers given a binding by this step
        self._gather()

    def _gather(self) -> None:
        """Start gathering the next write's rows."""
        self.outcomes: list[dict] = []
        self.counts: Counter[str] = Counter()
        self.new_bindings: list[dict] = []
        self.binds: dict[bool, list[dict]] = {True: [], False: []}

    def push(self, record_ids: list[int]) -> None:
        to_push = self._intents(self._rows(record_ids))
        self._write()  # intents are durable before any remote create
        if not to_push:
            return
        results = self.connector.upsert_customers([(record, hint) for _, record, _, hint in to_push])
        if len(results) != len(to_push):
            raise ConnectorError(f"The connector answered {len(results)} outcomes for {len(to_push)} customers")
        self.now = utcnow()
        for (row, record, payload_hash, _), result in zip(to_push, results):
            if isinstance(result, PushResult):
                self._bind(row.local_id, result.remote_id, payload_hash, result.remote_copy or None)
                self._outcome(row, "created" if result.created else "updated", "", result.remote_id)
            else:
                self._outcome(row, "failed", result.plain() if isinstance(result, ConnectorError) else str(result))
        self._write()

    def _rows(self, record_ids: list[int]):
        """The step's records still pending (re-read under the locks: another worker may have
        finished some meanwhile), each with its customer of this clinic and its binding."""
        return db.session.execute(
            select(SyncRecord.id, SyncRecord.local_id, SyncRecord.attempts, SyncRecord.remote_id, Customer,
                   Binding.id.label("binding_id"), Binding.state.label("binding_state"),
                   Binding.remote_id.label("binding_remote_id"), Binding.payload_hash.label("binding_hash"))
            .select_from(SyncRecord)
            .outerjoin(Customer, and_(Customer.id == SyncRecord.local_id, Customer.clinic_id == self.clinic_id))
            .outerjoin(Binding, and_(Binding.local_id == SyncRecord.local_id,
                                     Binding.integration_id == self.integration_id, Binding.entity == "customer"))
            .where(SyncRecord.id.in_(record_ids), SyncRecord.outcome == "pending")
            .order_by(SyncRecord.id)).all()

    def _intents(self, rows) -> list[tuple]:
        requirements = type(self.connector).record_requirements
        index = ErpIndex.for_run(self.run, self.connector)
        to_push = []
        for row in rows:
            if row.Customer is None:
                self._outcome(row, "skipped", "The customer no longer exists in TecPet")
                continue
            record = customer_record(row.Customer)
            errors = error_summary(check_customer(record, requirements))
            if errors:
                self._outcome(row, "skipped", f"Not sent: fix the customer record first ({errors})")
                continue
            payload_hash = Binding.hash_payload(record.to_dict())
            bound = row.binding_state == "bound"
            if bound and row.binding_hash == payload_hash:
                self._outcome(row, "unchanged", "Already up to date in the ERP", row.binding_remote_id)
                continue
            hint = row.binding_remote_id if bound else None
            if row.binding_id is None and row.local_id in self.intended:
                hint = None  # the same customer twice in one step: the second searches first
            elif row.binding_id is None:  # no earlier attempt: the ERP index may answer for the search
                if index is not None:
                    hint, remote = index.hint(record)
                    if remote is not None and not records_differ(record, remote.record):
                        self._new_binding(row.local_id, "bound", remote.remote_id, payload_hash,
                                          remote.record.to_dict())
                        self._outcome(row, "unchanged", "Already in the ERP: linked", remote.remote_id)
                        continue
                self._new_binding(row.local_id, "pending")
            to_push.append((row, record, payload_hash, hint))
        return to_push

    # -- what the step writes, gathered, then written in bulk
    def _outcome(self, row, outcome: str, message: str, remote_id: str = "") -> None:
        self.outcomes.append({"r_id": row.id, "r_outcome": outcome, "r_message": message,
                              "r_attempts": (row.attempts or 0) + 1, "r_remote_id": remote_id or row.remote_id,
                              "r_now": self.now})
        self.counts[outcome] += 1

    def _new_binding(self, local_id: int, state: str, remote_id: str = "", payload_hash: str = "",
                     remote_copy: dict | None = None) -> None:
        self.intended.add(local_id)
        self.new_bindings.append({
            "integration_id": self.integration_id, "entity": "customer", "local_id": local_id,
            "remote_id": str(remote_id), "state": state, "payload_hash": payload_hash,
            "remote_copy": remote_copy or {}, "remote_seen_at": self.now if remote_copy else None,
            "updated_at": self.now})

    def _bind(self, local_id: int, remote_id: str, payload_hash: str, remote_copy: dict | None) -> None:
        row = {"b_local_id": local_id, "b_integration_id": self.integration_id, "b_remote_id": str(remote_id),
               "b_payload_hash": payload_hash, "b_now": self.now}
        if remote_copy:
            row["b_remote_copy"] = remote_copy
        self.binds[bool(remote_copy)].append(row)

    def _write(self) -> None:
        session = db.session
        if self.new_bindings:
            session.execute(_INSERT_BINDING, self.new_bindings)
        for with_copy, rows in self.binds.items():
            if rows:
                session.execute(_BIND[with_copy], rows)
        if self.outcomes:
            session.execute(_OUTCOME, self.outcomes)
            session.refresh(self.run)  # its counters move with every step, whichever job made it
            runs.count_outcomes(self.run, self.counts, self.now)
        session.commit()
        self._gather()

