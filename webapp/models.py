"""The database holds the truth: clinics, people, TecPet's records, integrations, bindings,
sync runs with per-record outcomes, and the outbox. Redis only carries jobs."""
from __future__ import annotations

import hashlib
import json
import secrets
from datetime import date, datetime, timezone
from decimal import Decimal

from flask_login import UserMixin
from sqlalchemy import (JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Clinic(db.Model):
    __tablename__ = "clinics"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))          # "owner" | "support"
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id"), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(256))

    clinic = relationship(Clinic)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_support(self) -> bool:
        return self.role == "support"


class ApiToken(db.Model):
    """Per-clinic token TecPet core uses to post events. Only its hash is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, clinic_id: int, token: str | None = None) -> tuple["ApiToken", str]:
        token = token or "tpk_" + secrets.token_urlsafe(32)
        return cls(clinic_id=clinic_id, token_hash=cls.hash(token)), token


class Customer(db.Model):
    """TecPet's customer as last received from TecPet core (or taken from the ERP)."""

    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("clinic_id", "external_id"),
        Index("ix_customers_clinic_health", "clinic_id", "health_errors", "id"),
        # a clinic's customers by id (a step's `id IN (...)`) stays an index search when the
        # planner's statistics predate the clinic's import
        Index("ix_customers_clinic", "clinic_id", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    external_id: Mapped[str] = mapped_column(String(64))   # TecPet core's id
    person_type: Mapped[str] = mapped_column(String(2), default="PF")
    name: Mapped[str] = mapped_column(String(255), default="")
    tax_id: Mapped[str] = mapped_column(String(20), default="")
    state_registration: Mapped[str] = mapped_column(String(30), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(30), default="")
    zip_code: Mapped[str] = mapped_column(String(10), default="")
    street: Mapped[str] = mapped_column(String(255), default="")
    number: Mapped[str] = mapped_column(String(60), default="")
    complement: Mapped[str] = mapped_column(String(120), default="")
    district: Mapped[str] = mapped_column(String(120), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    city_ibge_code: Mapped[str] = mapped_column(String(7), default="")
    state: Mapped[str] = mapped_column(String(2), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Cached result of the health rules (recomputed on every change): counts and the problem list.
    health_errors: Mapped[int] = mapped_column(Integer, default=0)
    health_warnings: Mapped[int] = mapped_column(Integer, default=0)
    health_problems: Mapped[list] = mapped_column(JSON, default=list)

    FIELDS = ("person_type", "name", "tax_id", "state_registration", "email", "phone", "zip_code", "street",
              "number", "complement", "district", "city", "city_ibge_code", "state")


class CustomerProblem(db.Model):
    """One health problem of a customer, indexed for counts and filters at 100k customers."""

    __tablename__ = "customer_problems"
    __table_args__ = (
        Index("ix_customer_problems_clinic_code", "clinic_id", "code", "customer_id"),
        Index("ix_customer_problems_customer", "customer_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(60))
    severity: Mapped[str] = mapped_column(String(10))


class Invoice(db.Model):
    """A billed TecPet invoice and what became of it in the ERP."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("clinic_id", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(40), default="")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="service")
    issue_date: Mapped[date] = mapped_column(Date)
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    items: Mapped[list] = mapped_column(JSON, default=list)
    installments: Mapped[list] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    # billed -> queued -> sent (financial created) -> issuing -> issued | rejected ; or blocked / failed
    status: Mapped[str] = mapped_column(String(20), default="billed")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    order_remote_id: Mapped[str] = mapped_column(String(64), default="")
    order_number: Mapped[str] = mapped_column(String(64), default="")
    receivable_remote_ids: Mapped[list] = mapped_column(JSON, default=list)
    fiscal_state: Mapped[str] = mapped_column(String(20), default="")
    fiscal_remote_id: Mapped[str] = mapped_column(String(64), default="")
    fiscal_number: Mapped[str] = mapped_column(String(64), default="")
    fiscal_message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    customer = relationship(Customer)


class InvoiceReceivable(db.Model):
    """Which TecPet invoice an ERP receivable belongs to (receipts pulled back find it here)."""

    __tablename__ = "invoice_receivables"
    __table_args__ = (UniqueConstraint("integration_id", "remote_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(Integer)
    remote_id: Mapped[str] = mapped_column(String(64))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)


class Integration(db.Model):
    """A clinic's link to its ERP. Credentials are Fernet-encrypted; never rendered or logged."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("clinic_id", "erp"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    erp: Mapped[str] = mapped_column(String(30))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    features: Mapped[list] = mapped_column(JSON, default=list)
    credentials_encrypted: Mapped[str] = mapped_column(Text, default="")
    credential_hints: Mapped[dict] = mapped_column(JSON, default=dict)  # masked hints, e.g. "••••a1b2"
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    cursors: Mapped[dict] = mapped_column(JSON, default=dict)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    last_pull_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    clinic = relationship(Clinic)

    @property
    def paused(self) -> bool:
        return bool(self.paused_reason)


class Binding(db.Model):
    """Local record <-> ERP id for one integration, with the hash of the last payload sent
    and the last copy seen from the ERP."""

    __tablename__ = "bindings"
    __table_args__ = (
        # Both lead with the id they are searched by (bindings are only ever searched by equality).
        # With (integration_id, entity) first, a step's `local_id IN (...)` was planned as a scan
        # of the integration's bindings whenever the statistics predated them (a new integration's
        # first sync), a step costing more with every step before autovacuum's next look.
        UniqueConstraint("local_id", "integration_id", "entity", name="uq_bindings_local"),
        Index("ix_bindings_remote", "remote_id", "integration_id", "entity"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    entity: Mapped[str] = mapped_column(String(20))          # "customer" | "invoice"
    local_id: Mapped[int] = mapped_column(Integer)
    remote_id: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending (intent recorded) | bound
    payload_hash: Mapped[str] = mapped_column(String(64), default="")
    remote_copy: Mapped[dict] = mapped_column(JSON, default=dict)
    remote_seen_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @staticmethod
    def hash_payload(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class OutboxEvent(db.Model):
    """Written in the same transaction as the change it announces; turned into sync runs."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "processed_at", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    topic: Mapped[str] = mapped_column(String(40))     # customer.upserted | invoice.billed | sync.initial | pull.requested
    subject_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    integration_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    trigger: Mapped[str] = mapped_column(String(20), default="event")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SyncRun(db.Model):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_runs_clinic_id", "clinic_id", "id"),
        Index("ix_runs_clinic_queued", "clinic_id", "queued_at"),
        Index("ix_runs_status", "status", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"), index=True)
    erp: Mapped[str] = mapped_column(String(30), default="")
    direction: Mapped[str] = mapped_column(String(4))        # push | pull
    entity: Mapped[str] = mapped_column(String(20))          # customer | invoice | all (pull)
    trigger: Mapped[str] = mapped_column(String(20))         # initial | event | schedule | manual | retry
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued running succeeded partial failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    queued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[str] = mapped_column(String(64), default="")   # the RQ job carrying it now
    retry_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # postponed until
    enqueues: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "partial", "failed")

    @property
    def progress_pct(self) -> int:
        if self.finished:
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


class SyncRecord(db.Model):
    """One record's outcome in a run. Created "pending" when the run is planned."""

    __tablename__ = "sync_records"
    __table_args__ = (
        Index("ix_sync_records_run", "run_id", "id"),
        Index("ix_sync_records_run_outcome", "run_id", "outcome", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"))
    entity: Mapped[str] = mapped_column(String(20))
    local_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_id: Mapped[str] = mapped_column(String(64), default="")
    label: Mapped[str] = mapped_column(String(255), default="")
    # pending | created | updated | unchanged | skipped | failed
    outcome: Mapped[str] = mapped_column(String(10), default="pending")
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class PosSale(db.Model):
    __tablename__ = "pos_sales"
    __table_args__ = (UniqueConstraint("integration_id", "remote_id"), Index("ix_pos_clinic", "clinic_id", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    remote_id: Mapped[str] = mapped_column(String(64))
    sold_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    customer_name: Mapped[str] = mapped_column(String(255), default="")
    customer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payment_method: Mapped[str] = mapped_column(String(60), default="")
    status: Mapped[str] = mapped_column(String(40), default="")
    items: Mapped[list] = mapped_column(JSON, default=list)


class Receipt(db.Model):
    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("integration_id", "remote_id"), Index("ix_receipts_clinic", "clinic_id", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    remote_id: Mapped[str] = mapped_column(String(64))
    receivable_remote_id: Mapped[str] = mapped_column(String(64), default="")
    invoice_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    paid_at: Mapped[date | None] = mapped_column(Date, nullable=True)
    payment_method: Mapped[str] = mapped_column(String(60), default="")
    origin: Mapped[str] = mapped_column(String(64), default="")


class AuditLog(db.Model):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user_email: Mapped[str] = mapped_column(String(254), default="")
    clinic_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[str] = mapped_column(Text, default="")


class Notification(db.Model):
    """In-app notices for support (an integration paused after repeated failures)."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    clinic_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    audience: Mapped[str] = mapped_column(String(20), default="support")
    message: Mapped[str] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
