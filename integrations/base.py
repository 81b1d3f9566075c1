"""The connector interface: the only thing the rest of the product knows about an ERP.

A connector is built from a ConnectorContext (credentials, settings, the shared HTTP client)
and speaks in canonical records. Errors are typed so the sync layer can decide what to do
(retry later, back off, ask support to fix credentials, or tell the owner what to fix).
"""
from __future__ import annotations

import enum
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable


# --------------------------------------------------------------------------- capabilities
class Capability(str, enum.Enum):
    """What a connector can do; the owner's "what changes" panel is generated from these."""

    PUSH_CUSTOMERS = "push_customers"          # create/update customers in the ERP
    PULL_CUSTOMERS = "pull_customers"          # customers changed in the ERP come back
    GENERATE_FINANCIAL = "generate_financial"  # order + installments + receivables from an invoice
    ISSUE_INVOICE = "issue_invoice"            # request NFS-e / NF-e issuing through the API
    TRACK_INVOICE = "track_invoice"            # read back the issuing outcome (issued / rejected)
    PULL_POS_SALES = "pull_pos_sales"          # counter (POS) sales come back
    PULL_RECEIPTS = "pull_receipts"            # receipts of receivables come back
    SETTLE_RECEIVABLE = "settle_receivable"    # mark a receivable paid in the ERP (baixa)
    WEBHOOKS = "webhooks"                      # the ERP notifies changes


CAPABILITY_TEXT: dict[Capability, tuple[str, str]] = {
    # capability: (what happens when supported, what the owner must know when it is not)
    Capability.PUSH_CUSTOMERS: ("Customers registered in TecPet are created and updated in the ERP.",
                                "Customers are not sent to the ERP."),
    Capability.PULL_CUSTOMERS: ("Customers changed in the ERP come back into TecPet.",
                                "Customers changed in the ERP do not come back."),
    Capability.GENERATE_FINANCIAL: ("Each billed invoice becomes an order with installments and receivables in the ERP.",
                                    "Orders and receivables are not created in the ERP."),
    Capability.ISSUE_INVOICE: ("The invoice (NFS-e / NF-e) is issued automatically when billing.",
                               "Invoices are issued inside the ERP, not by TecPet."),
    Capability.TRACK_INVOICE: ("The issuing outcome (issued or rejected, with the reason) comes back to the invoice.",
                               "The issuing outcome is not brought back."),
    Capability.PULL_POS_SALES: ("Counter (POS) sales made in the ERP come back into TecPet.",
                                "Counter sales made in the ERP do not come back."),
    Capability.PULL_RECEIPTS: ("Receipts of receivables come back into TecPet.",
                               "Receipts registered in the ERP do not come back."),
    Capability.SETTLE_RECEIVABLE: ("Payments registered in TecPet settle the receivable in the ERP.",
                                   "Payments must be settled inside the ERP."),
    Capability.WEBHOOKS: ("The ERP notifies changes as they happen.",
                          "Changes are fetched periodically."),
}


class Feature(str, enum.Enum):
    """What support switches on for an integration; each needs some capabilities."""

    SYNC_CUSTOMERS = "sync_customers"
    GENERATE_FINANCIAL = "generate_financial"
    ISSUE_INVOICE = "issue_invoice"
    PULL_BACK = "pull_back"


FEATURE_NEEDS: dict[Feature, tuple[Capability, ...]] = {
    Feature.SYNC_CUSTOMERS: (Capability.PUSH_CUSTOMERS,),
    Feature.GENERATE_FINANCIAL: (Capability.GENERATE_FINANCIAL,),
    Feature.ISSUE_INVOICE: (Capability.ISSUE_INVOICE,),
    # pull back is offered when the connector can bring anything back
    Feature.PULL_BACK: (Capability.PULL_CUSTOMERS, Capability.PULL_POS_SALES, Capability.PULL_RECEIPTS),
}

FEATURE_LABELS = {
    Feature.SYNC_CUSTOMERS: "Sync customers",
    Feature.GENERATE_FINANCIAL: "Generate financial (order, installments, receivables)",
    Feature.ISSUE_INVOICE: "Issue invoice (NFS-e / NF-e)",
    Feature.PULL_BACK: "Pull back (customers, counter sales, receipts)",
}


# --------------------------------------------------------------------------- canonical records
@dataclass
class CustomerRecord:
    """A TecPet customer as every connector sees it. Tax IDs are text (alphanumeric CNPJ)."""

    id: str                       # TecPet's id (for ERPs with an integration-code field)
    person_type: str              # "PF" | "PJ"
    name: str
    tax_id: str = ""              # digits/letters only, upper case
    state_registration: str = ""
    email: str = ""
    phone: str = ""
    zip_code: str = ""            # 8 digits
    street: str = ""
    number: str = ""
    complement: str = ""
    district: str = ""
    city: str = ""
    city_ibge_code: str = ""
    state: str = ""

    def to_dict(self) -> dict[str, Any]:
        # every field is text: a flat copy (dataclasses.asdict deep-copies each value, once per push)
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CustomerRecord":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: ("" if v is None else str(v)) for k, v in data.items() if k in names})


COMPARED_CUSTOMER_FIELDS = (
    "person_type", "name", "tax_id", "state_registration", "email", "phone", "zip_code",
    "street", "number", "complement", "district", "city", "state",
)


@dataclass
class InvoiceItem:
    description: str
    quantity: Decimal
    unit_price: Decimal
    service_code: str = ""        # municipal service-list code where the ERP needs it
    kind: str = "service"         # "service" | "product"

    @property
    def total(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(Decimal("0.01"))


@dataclass
class Installment:
    number: int
    due_date: date
    amount: Decimal
    payment_method: str = "Boleto"  # canonical pt-BR names (Dinheiro, PIX, Boleto, Cartão de Crédito ...)


@dataclass
class InvoiceRecord:
    """A billed TecPet invoice: becomes order + installments + receivables (+ NFS-e/NF-e)."""

    id: str
    number: str
    customer: CustomerRecord
    issue_date: date
    items: list[InvoiceItem]
    installments: list[Installment]
    kind: str = "service"         # "service" -> NFS-e, "product" -> NF-e
    notes: str = ""

    @property
    def total(self) -> Decimal:
        return sum((i.total for i in self.items), Decimal("0.00"))


@dataclass
class RemoteCustomer:
    """A customer as read from the ERP (pull or verify)."""

    remote_id: str
    record: CustomerRecord
    modified_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class PosSale:
    remote_id: str
    sold_at: datetime
    total: Decimal
    customer_remote_id: str = ""
    customer_name: str = ""
    payment_method: str = ""
    status: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Receipt:
    remote_id: str                 # the ERP's receivable / receipt id
    amount: Decimal
    paid_at: date | None
    receivable_remote_id: str = ""
    origin: str = ""               # the ERP's link to the document (e.g. "OS_123")
    customer_remote_id: str = ""
    payment_method: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- results
@dataclass
class PushResult:
    remote_id: str
    created: bool                  # False when an existing ERP record was updated/adopted
    remote_copy: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinancialResult:
    """What an invoice became in the ERP."""

    order_remote_id: str
    order_number: str = ""
    receivable_remote_ids: list[str] = field(default_factory=list)


class FiscalState(str, enum.Enum):
    PENDING = "pending"      # requested, waiting for the tax authority
    ISSUED = "issued"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass
class FiscalResult:
    state: FiscalState
    remote_id: str = ""
    number: str = ""
    message: str = ""          # the ERP's / authority's reason, in plain words
    access_key: str = ""


@dataclass
class PullPage:
    """A page of records brought back; `cursor` is stored and passed to the next pull."""

    items: list[Any]
    cursor: str | None
    more: bool = False


# --------------------------------------------------------------------------- errors
@dataclass
class FieldError:
    field: str          # canonical field name where known ("tax_id"), else the ERP's
    message: str


class ConnectorError(Exception):
    """Base of every error a connector raises. `message` is meant for people."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, raw: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.raw = raw

    def plain(self) -> str:
        return self.message


class PermanentError(ConnectorError):
    """The ERP refused the data: retrying the same payload fails the same way."""

    def __init__(self, message: str, *, field_errors: Iterable[FieldError] = (), **kw):
        super().__init__(message, **kw)
        self.field_errors = list(field_errors)

    def plain(self) -> str:
        if not self.field_errors:
            return self.message
        details = "; ".join(f"{fe.field}: {fe.message}" if fe.field else fe.message for fe in self.field_errors)
        return f"{self.message} ({details})" if self.message else details


class NotFoundError(PermanentError):
    """The ERP does not know the record (e.g. deleted there)."""


class RateLimitedError(ConnectorError):
    retryable = True

    def __init__(self, message: str = "The ERP asked us to slow down", *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """Network trouble, timeouts, 5xx: worth retrying later."""

    retryable = True


class AuthError(ConnectorError):
    """Credentials rejected or expired beyond refresh: support must act."""


class NotSupported(ConnectorError):
    """The ERP's API cannot do this."""


# --------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = True
    required: bool = True
    help: str = ""


@dataclass(frozen=True)
class SettingField:
    name: str
    label: str
    default: str = ""
    help: str = ""


@dataclass(frozen=True)
class RateLimit:
    """Requests allowed per ERP account: (count, seconds) windows, all enforced at once."""

    windows: tuple[tuple[int, float], ...]
    max_concurrency: int = 0     # 0 = no cap on requests in flight
    # Share by which each window is widened (None: the shared limiter's default). ERPs count by
    # arrival; a request admitted early can arrive late, so a busier path wants a wider margin.
    safety: float | None = None


@dataclass(frozen=True)
class RecordRequirement:
    """One customer rule an ERP adds to the generic Brazilian rules."""

    field: str
    code: str
    severity: str               # "error" | "warning"
    message: str
    max_length: int | None = None
    required: bool = False
    person_type: str | None = None  # only for "PF" or "PJ" records


@dataclass
class ConnectorContext:
    """Everything a connector gets from the outside world."""

    credentials: dict[str, str]
    settings: dict[str, str]
    http: Any                          # integrations.http.HttpClient
    account_key: str                   # identifies the ERP account for limits and locks
    save_credentials: Callable[[dict[str, str]], None] | None = None
    # Re-reads the stored credentials (another worker may have rotated a token meanwhile).
    load_credentials: Callable[[], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.save_credentials is None or self.load_credentials is None:
            # Without a store (a probe, a unit test): this context's own copy is the store.
            store = {"creds": dict(self.credentials)}
            if self.save_credentials is None:
                self.save_credentials = lambda creds: store.update(creds=dict(creds))
            if self.load_credentials is None:
                self.load_credentials = lambda: dict(store["creds"])


class Connector:
    """Base class of every ERP connector. Subclasses declare, then implement what they declare."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    two_way: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    setting_fields: ClassVar[tuple[SettingField, ...]] = ()
    auth_kind: ClassVar[str] = "static"          # "static" | "oauth2"
    rate_limit: ClassVar[RateLimit] = RateLimit(windows=((5, 1.0),))
    record_requirements: ClassVar[tuple[RecordRequirement, ...]] = ()
    batch_size: ClassVar[int] = 50
    # Customers the default upsert_customers sends at once (threads); every request still passes the
    # account's shared limiter and in-flight cap. 1 for connectors whose client keeps per-instance
    # state that a token refresh rewrites (OAuth2); static-credential ERPs may overlap their calls.
    push_concurrency: ClassVar[int] = 1
    contract_pending: ClassVar[bool] = False     # capabilities known only from a proposed contract
    notes: ClassVar[tuple[str, ...]] = ()        # plain-words notes for the capability panel

    def __init__(self, ctx: ConnectorContext):
        self.ctx = ctx
        self.settings = {f.name: f.default for f in self.setting_fields}
        self.settings.update({k: v for k, v in (ctx.settings or {}).items() if v not in (None, "")})
        # Sandboxes and benchmarks scale an ERP's documented limits up so runs stay short;
        # production never sets this.
        scale = float(self.settings.get("rate_limit_scale") or 1)
        self.limit = RateLimit(windows=tuple((max(1, int(n * scale)), s) for n, s in self.rate_limit.windows),
                               max_concurrency=self.rate_limit.max_concurrency, safety=self.rate_limit.safety)
        try:
            concurrency = int(self.settings.get("push_concurrency") or self.push_concurrency)
        except (TypeError, ValueError):
            concurrency = self.push_concurrency
        if self.limit.max_concurrency:
            concurrency = min(concurrency, self.limit.max_concurrency)
        self.concurrency = max(1, min(concurrency, 8))

    def http(self, method: str, url: str, **kwargs: Any):
        """Send one request through the shared client, inside this ERP account's limits."""
        secrets = [v for v in self.ctx.credentials.values() if isinstance(v, str)]
        return self.ctx.http.request(method, url, account_key=self.ctx.account_key, rate_limit=self.limit,
                                     secrets=secrets, **kwargs)

    # -- helpers
    @classmethod
    def supports(cls, cap: Capability) -> bool:
        return cap in cls.capabilities

    @classmethod
    def offers(cls, feature: Feature) -> bool:
        return any(c in cls.capabilities for c in FEATURE_NEEDS[feature])

    def _unsupported(self, what: str):
        raise NotSupported(f"{self.label} does not offer {what} through its API")

    # -- connection
    def test_connection(self) -> str:
        """Make one cheap authenticated call; return a plain description (e.g. company name)."""
        raise NotSupported("test connection")

    # -- OAuth2 (auth_kind == "oauth2")
    def authorize_url(self, redirect_uri: str, state: str) -> str:
        self._unsupported("OAuth authorization")

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, str]:
        """Return the credential dict (tokens included) to store."""
        self._unsupported("OAuth authorization")

    # -- customers
    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """Find the ERP's copy by the strongest key it has (integration code, CPF/CNPJ)."""
        self._unsupported("customer search")

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        self._unsupported("customer creation")

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        self._unsupported("customer update")

    def upsert_customers(self, batch: list[tuple[CustomerRecord, str | None]]) -> list[PushResult | ConnectorError]:
        """Push many customers; (record, hint) in, one outcome per record out. The hint is the
        ERP id when known, "" when the caller knows the ERP does not have it (create without a
        search), None when unknown (search first, then update or create).

        The default sends them one by one, `self.concurrency` at a time (results in the batch's
        order); ERPs with batch calls override it. A transient, rate-limit or auth error stops the
        batch (calls not yet started are cancelled) and is raised once the calls in flight end:
        the caller's intents make a retry safe.
        """
        if self.concurrency <= 1 or len(batch) <= 1:
            return [self._upsert_one(record, hint) for record, hint in batch]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch)),
                                thread_name_prefix=f"{self.name}-push") as pool:
            futures = [pool.submit(self._upsert_one, record, hint) for record, hint in batch]
            out: list[PushResult | ConnectorError] = []
            failure: BaseException | None = None
            for future in futures:
                if failure is not None:
                    future.cancel()
                    continue
                try:
                    out.append(future.result())
                except BaseException as exc:  # re-raised below, after the calls in flight end
                    failure = exc
        if failure is not None:
            raise failure
        return out

    def _upsert_one(self, record: CustomerRecord, remote_id: str | None) -> PushResult | ConnectorError:
        try:
            if remote_id:
                return self.update_customer(remote_id, record)
            if remote_id == "":
                return self.create_customer(record)
            found = self.find_customer(record)
            if found:
                return PushResult(self.update_customer(found.remote_id, record).remote_id, created=False)
            return self.create_customer(record)
        except (PermanentError, NotSupported) as exc:
            return exc

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        self._unsupported("reading customers back")

    # -- invoices
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        self._unsupported("orders and receivables")

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        """Find an order created earlier for this invoice (crash recovery); None when absent."""
        return None

    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult, customer_remote_id: str) -> FiscalResult:
        self._unsupported("invoice issuing")

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        self._unsupported("invoice status")

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        self._unsupported("settling receivables")

    # -- pulls (cursor is opaque to the caller; None = from the beginning)
    def pull_customers(self, cursor: str | None) -> PullPage:
        self._unsupported("pulling customers")

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        self._unsupported("pulling counter sales")

    def acknowledge_pos_sales(self, remote_ids: list[str]) -> None:
        """Called after pulled sales are stored (ERPs that need acknowledgement)."""
        return None

    def pull_receipts(self, cursor: str | None) -> PullPage:
        self._unsupported("pulling receipts")

    # -- webhooks
    def verify_webhook(self, headers: dict[str, str], body: bytes) -> bool:
        return False

    def webhook_changes(self, body: bytes) -> list[tuple[str, str]]:
        """(entity, remote id) pairs a verified delivery announces; the sync layer pulls them."""
        return []


def capability_panel(connector_cls: type[Connector]) -> list[dict[str, Any]]:
    """Rows for the owner's "what changes with this integration" panel, from declarations only."""
    rows = []
    for cap in Capability:
        yes, no = CAPABILITY_TEXT[cap]
        supported = cap in connector_cls.capabilities
        rows.append({"capability": cap.value, "supported": supported, "text": yes if supported else no})
    return rows
