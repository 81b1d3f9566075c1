"""Conta Azul connector (public API "api-v2", OAuth2 authorization code).

What shapes this adapter:
- Tokens last an hour and every refresh rotates the refresh token: refreshes are serialized per
  company with the shared Redis lock, and a refresh token known to be rotated by another worker
  is never sent again (that would be refused and force the clinic to reconnect).
- No idempotency keys anywhere: every create is preceded or followed by a lookup (CPF/CNPJ for
  people, a marker in the sale's notes / the receivable's description for documents), and a
  create whose answer was lost is reconciled before it is retried.
- Receivables created on their own are asynchronous: the API answers with a protocol that is
  polled until it succeeds or fails.
- Invoices cannot be issued through the API; the issued NFS-e / NF-e is found again in the
  read-only lists, which only answer for windows of at most 15 days.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from ..base import (COMPARED_CUSTOMER_FIELDS, AuthError, Capability, Connector, ConnectorError, CredentialField,
                    CustomerRecord, FieldError, FinancialResult, FiscalResult, FiscalState, InvoiceItem,
                    InvoiceRecord, NotFoundError, PermanentError, PullPage, PushResult, RateLimit, RateLimitedError,
                    RecordRequirement, RemoteCustomer, SettingField, TransientError)
from . import mapping

PRODUCTION_API = "https://api-v2.contaazul.com"
PRODUCTION_AUTH = "https://auth.contaazul.com"
SCOPE = "openid profile aws.cognito.signin.user.admin"
TOKEN_MARGIN_SECONDS = 60            # refresh a little before the hour is up
ROTATED_MEMORY_SECONDS = 30 * 86400  # how long a rotated refresh token is remembered as dead
PEOPLE_PAGE_SIZES = (10, 20, 50, 100, 200, 500, 1000)
INVOICE_PAGE_SIZE = 100              # the invoice lists accept 10, 20, 50 or 100
INVOICE_WINDOW_DAYS = 15
CHANGE_WINDOW_DAYS = 365             # data_alteracao filters are capped at a year
SAO_PAULO_OFFSET = timedelta(hours=-3)  # Brazil has no daylight saving time since 2019
# Conta Azul counts requests when they arrive; the shared limiter counts them when they leave.
# Between the two sit thread scheduling and the network, measured here at up to ~60 ms under
# load, so each window is widened by this much on top of the limiter's own small safety margin.
ARRIVAL_JITTER_SECONDS = 0.15


def now_sao_paulo() -> datetime:
    """Conta Azul reads date-time filters as São Paulo time, written without an offset."""
    return (datetime.now(timezone.utc) + SAO_PAULO_OFFSET).replace(microsecond=0, tzinfo=None)


def erp_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _body(resp) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _digest(secret: str) -> str:
    """An irreversible name for a token, safe to keep in Redis."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


@dataclass
class IssuedInvoice:
    """An invoice Conta Azul issued for a sale, as brought back by `pull_invoices`."""

    order_remote_id: str     # the sale's uuid (FinancialResult.order_remote_id)
    order_number: str
    kind: str                # "nfse" | "nfe"
    fiscal: FiscalResult
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class _PullPass:
    """Where a changed-since pull stands. A pass reads [since, until] page by page; the next pass
    starts `overlap` seconds before `until` (clocks and commit delays), and the fingerprints of
    the previous pass keep that overlap from delivering anything twice."""

    since: str
    until: str | None = None
    page: int = 1
    previous: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: str | None, first_since: str) -> "_PullPass":
        if not cursor:
            return cls(since=first_since)
        data = json.loads(cursor)
        return cls(since=data["since"], until=data.get("until"), page=int(data.get("page") or 1),
                   previous=dict(data.get("previous") or {}), current=dict(data.get("current") or {}))

    def dump(self) -> str:
        return json.dumps({"since": self.since, "until": self.until, "page": self.page,
                           "previous": self.previous, "current": self.current}, separators=(",", ":"))

    def is_new(self, key: str, print_: str) -> bool:
        return self.previous.get(key) != print_ and self.current.get(key) != print_

    def next_page(self) -> "_PullPass":
        return _PullPass(self.since, self.until, self.page + 1, self.previous, self.current)

    def next_pass(self, overlap_seconds: int) -> "_PullPass":
        until = datetime.fromisoformat(self.until or self.since)
        return _PullPass(since=erp_datetime(until - timedelta(seconds=overlap_seconds)), previous=self.current)


class ContaAzulConnector(Connector):
    name = "contaazul"
    label = "Conta Azul"
    two_way = True
    auth_kind = "oauth2"
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.TRACK_INVOICE, Capability.PULL_POS_SALES, Capability.PULL_RECEIPTS,
        Capability.SETTLE_RECEIVABLE,
    })
    credential_fields = (
        CredentialField("client_id", "Client ID", secret=False,
                        help="From the app registered in Conta Azul's developer portal."),
        CredentialField("client_secret", "Client secret", help="From the same app."),
        CredentialField("access_token", "Access token", required=False,
                        help="Filled in by the Connect step (valid for one hour, renewed automatically)."),
        CredentialField("refresh_token", "Refresh token", required=False,
                        help="Filled in by the Connect step; Conta Azul replaces it at every renewal."),
    )
    setting_fields = (
        SettingField("base_url", "API base URL", PRODUCTION_API),
        SettingField("auth_url", "Authorization server", "",
                     help=f"Empty: {PRODUCTION_AUTH} for the production API, otherwise the API base URL "
                          "(the sandbox serves both)."),
        SettingField("financial_account_id", "Financial account (uuid)", "",
                     help="Bank or cash account for receivables and payments; empty uses the account "
                          "marked as default in Conta Azul."),
        SettingField("sale_situation", "Situation of created sales", "APROVADO",
                     help="APROVADO or EM_ANDAMENTO. Only approved sales are expected to create their own "
                          "receivable."),
        SettingField("sale_event_wait_seconds", "Wait for the sale's receivable (s)", "6",
                     help="UNCONFIRMED whether every sale creates its financial event: after this wait "
                          "TecPet creates the receivable itself."),
        SettingField("service_id", "Catalog service for every service line (uuid)", "",
                     help="Empty: each line uses the Conta Azul service with the same description, "
                          "created when missing."),
        SettingField("product_id", "Catalog product for every product line (uuid)", "",
                     help="Empty: each line uses the product with the same name, created when missing."),
        SettingField("integration_code", "Write TecPet's id into the customer's code", "yes",
                     help="yes/no. The code lets TecPet find customers without CPF/CNPJ."),
        SettingField("pos_sale_origins", "Origins counted as counter sales", "",
                     help="Comma-separated `origem` values (UNCONFIRMED: Conta Azul does not document "
                          "them). Empty: every sale not created by TecPet."),
        SettingField("pull_start_days", "First pull reaches back (days)", "30"),
        SettingField("pull_overlap_seconds", "Overlap between pulls (s)", "120"),
        SettingField("page_size", "Page size of pulls", "50",
                     help="10, 20, 50, 100, 200, 500 or 1000."),
        SettingField("receipts_due_window_days", "Due-date window of the receipts search (days)", "1825",
                     help="The receivables search always needs a due-date window; this many days "
                          "either side of today (UNCONFIRMED whether Conta Azul caps it)."),
        SettingField("invoice_lookback_days", "Look for a sale's invoice up to (days after the sale)", "45"),
        SettingField("protocol_timeout_seconds", "Wait for an asynchronous receivable (s)", "60"),
        SettingField("max_retries", "Retries of a failed call", "5"),
    )
    rate_limit = RateLimit(windows=((10, 1.0), (600, 60.0)))
    record_requirements = (
        RecordRequirement("tax_id", "contaazul.tax_id_for_invoice", "warning",
                          "Conta Azul issues the NFS-e / NF-e from this record: without CPF/CNPJ the "
                          "invoice is refused.", required=True),
        RecordRequirement("email", "contaazul.email_for_invoice", "warning",
                          "Conta Azul e-mails the issued invoice to this address.", required=True),
        RecordRequirement("state", "contaazul.state_is_uf", "error",
                          "Conta Azul takes the state as its two-letter UF.", max_length=2),
    )
    batch_size = 50
    notes = (
        "Invoices are issued inside Conta Azul; TecPet brings the issued invoice back.",
        "Each billed invoice becomes an approved sale in Conta Azul; its installments are the receivables.",
        "Conta Azul has no webhooks: changes are fetched periodically.",
        "Counter sales are ordinary Conta Azul sales; the ones TecPet created are left out.",
    )

    def __init__(self, ctx):
        """The declared `rate_limit` is Conta Azul's documented one; what is enforced adds the arrival jitter."""
        super().__init__(ctx)
        self.limit = RateLimit(windows=tuple((count, seconds + ARRIVAL_JITTER_SECONDS)
                                             for count, seconds in self.limit.windows),
                               max_concurrency=self.limit.max_concurrency)
        self._catalog: dict[tuple[str, str], str] = {}
        self._account: str | None = None

    # ================================================================== settings
    def _base(self) -> str:
        return (self.settings.get("base_url") or PRODUCTION_API).rstrip("/")

    def _auth_base(self) -> str:
        configured = (self.settings.get("auth_url") or "").rstrip("/")
        if configured:
            return configured
        return PRODUCTION_AUTH if self._base() == PRODUCTION_API else self._base()

    def _number(self, key: str, default: float) -> float:
        try:
            return float(self.settings.get(key) or default)
        except ValueError:
            return default

    def _retries(self) -> int:
        return int(self._number("max_retries", 5))

    def _page_size(self) -> int:
        wanted = int(self._number("page_size", 50))
        return min(PEOPLE_PAGE_SIZES, key=lambda size: abs(size - wanted))

    def _pause(self, attempt: int, retry_after: float | None = None) -> None:
        self.ctx.http.sleep(self.ctx.http.backoff_delay(attempt, retry_after))

    # ================================================================== OAuth2
    def authorize_url(self, redirect_uri: str, state: str) -> str:
        client_id = self.ctx.credentials.get("client_id", "")
        if not client_id:
            raise AuthError("Fill in the Conta Azul app's client ID and secret before connecting")
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                           "state": state, "scope": SCOPE})
        return f"{self._auth_base()}/oauth2/authorize?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, str]:
        issued = self._token_request({"grant_type": "authorization_code", "code": code,
                                      "redirect_uri": redirect_uri})
        self._adopt_tokens(issued)
        return dict(self.ctx.credentials)

    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """POST to the token endpoint with the app's Basic credentials (the documented form)."""
        creds = self.ctx.credentials
        client = f"{creds.get('client_id', '')}:{creds.get('client_secret', '')}"
        headers = {"Authorization": "Basic " + base64.b64encode(client.encode()).decode(),
                   "Accept": "application/json"}
        resp = self.http("POST", f"{self._auth_base()}/oauth2/token", data=form, headers=headers,
                         retries=self._retries())
        body = _body(resp)
        if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        reason = mapping.error_reason(body) or f"HTTP {resp.status_code}"
        if resp.status_code in (400, 401):
            raise AuthError(f"Conta Azul refused TecPet's authorization ({reason}). Reconnect Conta Azul in the "
                            "integration settings.", status=resp.status_code, raw=body)
        raise TransientError(f"Conta Azul's authorization server answered HTTP {resp.status_code}",
                             status=resp.status_code, raw=body)

    def _adopt_tokens(self, issued: dict[str, Any]) -> None:
        """New tokens replace the old ones in place (connectors sharing this context see them) and
        are saved at once: losing a rotated refresh token means the clinic must reconnect."""
        creds = self.ctx.credentials
        creds["access_token"] = str(issued["access_token"])
        if issued.get("refresh_token"):
            creds["refresh_token"] = str(issued["refresh_token"])
        creds["expires_at"] = str(int(time.time() + float(issued.get("expires_in") or 3600)))
        self.ctx.save_credentials(dict(creds))

    def _expiring(self) -> bool:
        """True shortly before the stored expiry; without one the token is trusted until a 401."""
        raw = self.ctx.credentials.get("expires_at")
        if not raw:
            return False
        try:
            return float(raw) - TOKEN_MARGIN_SECONDS < time.time()
        except ValueError:
            return True

    def _access_token(self) -> str:
        token = self.ctx.credentials.get("access_token", "")
        if token and not self._expiring():
            return token
        return self._refresh(stale=token)

    def _refresh(self, stale: str) -> str:
        """Renew the access token once per company, however many workers notice the expiry."""
        with self.ctx.http.lock(f"oauth:{self.name}:{self.ctx.account_key}"):
            current = self.ctx.credentials.get("access_token", "")
            if current and current != stale and not self._expiring():
                return current          # another connector on this context renewed while we waited
            refresh_token = self.ctx.credentials.get("refresh_token", "")
            if not refresh_token:
                raise AuthError("Conta Azul is not connected: use Connect in the integration settings")
            if self._rotated_elsewhere(refresh_token):
                raise TransientError("Another TecPet worker renewed the Conta Azul authorization moments ago; "
                                     "the next attempt uses the renewed credentials")
            issued = self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})
            self._adopt_tokens(issued)
            self._remember_rotated(refresh_token)
            return self.ctx.credentials["access_token"]

    def _rotation_key(self) -> str:
        return f"tecpet:oauth-rotated:{self.name}:{self.ctx.account_key}"

    def _rotated_elsewhere(self, refresh_token: str) -> bool:
        redis = getattr(self.ctx.http, "redis", None)
        return bool(redis is not None and redis.sismember(self._rotation_key(), _digest(refresh_token)))

    def _remember_rotated(self, refresh_token: str) -> None:
        redis = getattr(self.ctx.http, "redis", None)
        if redis is not None:
            redis.sadd(self._rotation_key(), _digest(refresh_token))
            redis.expire(self._rotation_key(), ROTATED_MEMORY_SECONDS)

    # ================================================================== transport
    def _send(self, method: str, path: str, *, params: Any = None, body: Any = None, retry: bool = True):
        """One authenticated call; a 401 renews the token once and repeats the call."""
        options: dict[str, Any] = {"params": params, "json": body}
        options.update({"retries": self._retries()} if retry else {"retries": 0, "retry_statuses": ()})
        url = self._base() + path
        token = self._access_token()
        resp = self.http(method, url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                         **options)
        if resp.status_code == 401:
            token = self._refresh(stale=token)
            resp = self.http(method, url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                             **options)
        return resp

    def _check(self, resp, what: str, *, customer: bool = False) -> Any:
        """Turn Conta Azul's answer into data or the typed error the sync layer acts on."""
        status, body = resp.status_code, _body(resp)
        if status < 300:
            return body
        reason = mapping.error_reason(body) or f"HTTP {status}"
        if status == 401:
            raise AuthError("Conta Azul no longer accepts TecPet's access; reconnect Conta Azul in the integration "
                            "settings", status=status, raw=body)
        if status == 403:
            raise AuthError(f"Conta Azul refused access to this company: {reason}. Its plan must include API "
                            "access.", status=status, raw=body)
        if status == 404:
            raise NotFoundError(f"Conta Azul does not know this {what}: {reason}", status=status, raw=body)
        if status == 429:
            raise RateLimitedError(retry_after=float(resp.headers.get("Retry-After") or 1), status=status, raw=body)
        if status >= 500:
            raise TransientError(f"Conta Azul answered HTTP {status} for the {what}", status=status, raw=body)
        raise mapping.permanent_error(what, status, body, customer=customer)

    def _get(self, path: str, what: str, params: Any = None) -> Any:
        return self._check(self._send("GET", path, params=params), what)

    def _create(self, path: str, body: dict[str, Any], *, what: str, reconcile: Callable[[], Any],
                customer: bool = False) -> Any:
        """A POST Conta Azul cannot de-duplicate. A 429 means nothing was processed, so it is simply
        repeated; after a 5xx or a dropped connection `reconcile()` looks for what the attempt may
        have written, and only when it finds nothing is the POST sent again."""
        last: ConnectorError = TransientError(f"Conta Azul did not answer the {what} creation")
        for attempt in range(self._retries() + 1):
            try:
                resp = self._send("POST", path, body=body, retry=False)
            except RateLimitedError as exc:
                last = exc
                self._pause(attempt, exc.retry_after)
                continue
            except TransientError as exc:
                last = exc
            else:
                if resp.status_code < 500:
                    return self._check(resp, what, customer=customer)
                last = TransientError(f"Conta Azul answered HTTP {resp.status_code} for the {what} creation",
                                      status=resp.status_code, raw=_body(resp))
            found = reconcile()
            if found is not None:
                return found
            self._pause(attempt)
        raise last

    # ================================================================== connection
    def test_connection(self) -> str:
        company = self._get("/v1/pessoas/conta-conectada", "connected company") or {}
        name = company.get("razao_social") or company.get("nome_fantasia") or "?"
        document = company.get("documento")
        return f"Connected to Conta Azul: {name}" + (f" (CNPJ {document})" if document else "")

    # ================================================================== customers
    def _people(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        data = self._get("/v1/pessoas", "customer list", params={"pagina": 1, "tamanho_pagina": 50, **params}) or {}
        return data.get("items") or []          # `items` is null when nothing matches

    def _integration_code_on(self) -> bool:
        return mapping.fold(self.settings.get("integration_code") or "yes") in ("yes", "sim", "true", "1")

    def _find_customer_row(self, customer: CustomerRecord) -> dict[str, Any] | None:
        """CPF/CNPJ first (compared letters-and-digits only), then TecPet's id in `codigo`."""
        key = mapping.tax_id_key(customer.tax_id)
        if key:
            rows = [r for r in self._people({"documentos": key}) if mapping.tax_id_key(r.get("documento") or "") == key]
            if rows:
                return _prefer(rows, customer)
        if self._integration_code_on() and customer.id:
            rows = [r for r in self._people({"codigos_pessoa": str(customer.id)})
                    if str(r.get("codigo") or "") == str(customer.id)]
            if rows:
                return _prefer(rows, customer)
        return None

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        row = self._find_customer_row(customer)
        return self.get_customer(row["id"]) if row else None

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        return mapping.customer_from_erp(self._get(f"/v1/pessoas/{remote_id}", "customer") or {})

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        payload = mapping.customer_create_payload(customer, integration_code=self._integration_code_on())

        def reconcile() -> dict[str, Any] | None:
            row = self._find_customer_row(customer)
            return {"id": row["id"]} if row else None

        created = self._create("/v1/pessoas", payload, what="customer", reconcile=reconcile, customer=True) or {}
        remote_id = str(created.get("id") or "")
        return PushResult(remote_id=remote_id, created=True, remote_copy=self._read_back(remote_id))

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        self._check(self._send("PATCH", f"/v1/pessoas/{remote_id}", body=mapping.customer_patch_payload(customer)),
                    "customer", customer=True)
        return PushResult(remote_id=remote_id, created=False, remote_copy=self._read_back(remote_id))

    def _read_back(self, remote_id: str) -> dict[str, Any]:
        """Conta Azul drops unknown fields silently, so what it kept is read back; a failed read
        leaves the copy empty rather than failing a write that succeeded."""
        try:
            record = self.get_customer(remote_id).record
        except TransientError:
            return {}
        return {f: getattr(record, f) for f in COMPARED_CUSTOMER_FIELDS}

    # ================================================================== catalog, accounts
    def _catalog_id(self, item: InvoiceItem) -> str:
        kind = "product" if item.kind == "product" else "service"
        configured = self.settings.get(f"{kind}_id")
        if configured:
            return configured
        key = (kind, mapping.fold(item.description))
        if key not in self._catalog:
            self._catalog[key] = self._product_id(item) if kind == "product" else self._service_id(item)
        return self._catalog[key]

    def _service_id(self, item: InvoiceItem) -> str:
        def lookup() -> dict[str, Any] | None:
            data = self._get("/v1/servicos", "service list",
                             params={"busca_textual": item.description, "pagina": 1, "tamanho_pagina": 50}) or {}
            return next((s for s in data.get("itens") or []
                         if mapping.fold(s.get("descricao") or "") == mapping.fold(item.description)), None)

        found = lookup()
        if found is None:
            found = self._create("/v1/servicos", {"descricao": item.description, "status": "ATIVO",
                                                  "tipo_servico": "PRESTADO", "preco": mapping.money(item.unit_price)},
                                 what="service", reconcile=lookup)
        return str(found["id"])

    def _product_id(self, item: InvoiceItem) -> str:
        def lookup() -> dict[str, Any] | None:
            data = self._get("/v1/produto/busca", "product list",
                             params={"busca": item.description, "pagina": 1, "tamanho_pagina": 50}) or {}
            return next((p for p in data.get("itens") or []
                         if mapping.fold(p.get("nome") or "") == mapping.fold(item.description)), None)

        found = lookup()
        if found is None:
            found = self._create("/v1/produto", {"nome": item.description, "formato": "SIMPLES",
                                                 "estoque": {"valor_venda": mapping.money(item.unit_price)},
                                                 "dimensao": {}}, what="product", reconcile=lookup)
        return str(found["id"])

    def _account_id(self) -> str:
        """The configured financial account, else the one Conta Azul marks as default."""
        configured = self.settings.get("financial_account_id")
        if configured:
            return configured
        if self._account is None:
            data = self._get("/v1/conta-financeira", "financial account list",
                             params={"apenas_ativo": "true", "pagina": 1, "tamanho_pagina": 50}) or {}
            accounts = data.get("itens") or []
            chosen = next((a for a in accounts if a.get("conta_padrao")), None) or \
                next((a for a in accounts if a.get("tipo") == "CONTA_CORRENTE"), None) or \
                (accounts[0] if accounts else None)
            if chosen is None:
                raise PermanentError("Conta Azul has no active financial account to receive into; create one "
                                     "in Conta Azul or set it in the integration settings")
            self._account = str(chosen["id"])
        return self._account

    # ================================================================== invoice -> sale + receivables
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """Conta Azul has no service-order document: the invoice becomes a sale (its items point at
        catalog services/products) whose installments are the receivables."""
        mapping.check_installments(invoice)
        item_ids = [self._catalog_id(item) for item in invoice.items]
        account = self._account_id()
        sale = self._create_sale(invoice, customer_remote_id, item_ids, account)
        receivables = self._ensure_receivables(invoice, customer_remote_id, sale, account)
        return FinancialResult(order_remote_id=sale["id"], order_number=str(sale["numero"]),
                               receivable_remote_ids=receivables)

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        """Crash recovery: the sale carries the invoice's marker in its notes. A sale whose
        receivable was not created yet is completed here, so the invoice is never half sent."""
        row = self._find_customer_row(invoice.customer)
        if row is None:
            return None
        sale = self._find_sale(invoice, row["id"])
        if sale is None:
            return None
        receivables = self._ensure_receivables(invoice, row["id"], sale, self._account_id(), wait=False)
        return FinancialResult(order_remote_id=sale["id"], order_number=str(sale["numero"]),
                               receivable_remote_ids=receivables)

    def _create_sale(self, invoice: InvoiceRecord, customer_id: str, item_ids: list[str],
                     account: str) -> dict[str, Any]:
        """The next number and the POST happen under one lock, so two workers of this company never
        take the same sale number."""
        with self.ctx.http.lock(f"contaazul:sale-number:{self.ctx.account_key}"):
            number = self._get("/v1/venda/proximo-numero", "next sale number")
            payload = mapping.sale_payload(invoice, customer_id=customer_id, number=int(number), item_ids=item_ids,
                                           situation=self._sale_situation(), account_id=account)
            created = self._create("/v1/venda", payload, what="sale",
                                   reconcile=lambda: self._find_sale(invoice, customer_id))
        return {"id": str(created["id"]), "numero": created.get("numero", number)}

    def _sale_situation(self) -> str:
        situation = (self.settings.get("sale_situation") or "APROVADO").upper()
        return situation if situation in ("APROVADO", "EM_ANDAMENTO") else "APROVADO"

    def _find_sale(self, invoice: InvoiceRecord, customer_id: str) -> dict[str, Any] | None:
        """Sales of this customer on the invoice's date, then the one whose notes carry its marker."""
        day = invoice.issue_date.isoformat()
        data = self._get("/v1/venda/busca", "sale list", params={
            "ids_clientes": customer_id, "data_inicio": day, "data_fim": day, "pagina": 1, "tamanho_pagina": 50}) or {}
        for row in data.get("itens") or []:
            detail = self._get(f"/v1/venda/{row['id']}", "sale") or {}
            sale = detail.get("venda") or {}
            if sale.get("status") != "CANCELADO" and mapping.has_invoice_mark(sale.get("observacoes"), invoice.id):
                return {"id": str(row["id"]), "numero": row.get("numero") or sale.get("numero")}
        return None

    def _ensure_receivables(self, invoice: InvoiceRecord, customer_id: str, sale: dict[str, Any], account: str,
                            wait: bool = True) -> list[str]:
        """The sale's own installments when it has a financial event; otherwise a receivable created
        through the asynchronous protocol (found again first, should an earlier attempt have made it)."""
        expects_event = self._sale_situation() == "APROVADO"
        waiting = self._number("sale_event_wait_seconds", 6) if (wait and expects_event) else 0.0
        receivables = self._sale_installments(sale["id"], waiting)
        if receivables:
            return receivables
        existing = self._find_receivable(invoice)
        if existing:
            return existing
        return self._create_receivable(invoice, customer_id, account, str(sale["numero"]))

    def _sale_installments(self, sale_id: str, wait_seconds: float) -> list[str]:
        deadline = time.monotonic() + wait_seconds
        attempt = 0
        while True:
            detail = self._get(f"/v1/venda/{sale_id}", "sale") or {}
            event_id = (detail.get("evento_financeiro") or {}).get("id")
            if event_id:
                return self._event_installments(event_id)
            if time.monotonic() >= deadline:
                return []
            time.sleep(min(0.25 * (2 ** attempt), 2.0, max(0.0, deadline - time.monotonic())))
            attempt += 1

    def _event_installments(self, event_id: str) -> list[str]:
        parcels = self._get(f"/v1/financeiro/eventos-financeiros/{event_id}/parcelas", "receivable") or []
        return [str(p["id"]) for p in sorted(parcels, key=lambda p: p.get("indice") or 0)]

    def _find_receivable(self, invoice: InvoiceRecord) -> list[str]:
        dues = [i.due_date for i in invoice.installments] or [invoice.issue_date]
        data = self._get("/v1/financeiro/eventos-financeiros/contas-a-receber/buscar", "receivable list", params={
            "pagina": 1, "tamanho_pagina": 100, "descricao": mapping.invoice_mark(invoice),
            "data_vencimento_de": min(dues).isoformat(), "data_vencimento_ate": max(dues).isoformat()}) or {}
        rows = [r for r in data.get("itens") or [] if mapping.has_invoice_mark(r.get("descricao"), invoice.id)]
        return [str(r["id"]) for r in sorted(rows, key=lambda r: r.get("data_vencimento") or "")]

    def _create_receivable(self, invoice: InvoiceRecord, customer_id: str, account: str, sale_number: str) -> list[str]:
        payload = mapping.receivable_payload(invoice, customer_id=customer_id, account_id=account,
                                             sale_number=sale_number)

        def reconcile() -> dict[str, Any] | None:
            """A receivable whose answer was lost may still be queued behind its protocol: it gets
            the protocol's own time to appear before it is sent again."""
            deadline = time.monotonic() + self._number("protocol_timeout_seconds", 60)
            while True:
                found = self._find_receivable(invoice)
                if found:
                    return {"parcelas": found}
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.5)

        answer = self._create("/v1/financeiro/eventos-financeiros/contas-a-receber", payload, what="receivable",
                              reconcile=reconcile) or {}
        if "parcelas" in answer:
            return answer["parcelas"]
        return self._await_protocol(str(answer.get("protocolo") or ""), invoice)

    def _await_protocol(self, protocol_id: str, invoice: InvoiceRecord) -> list[str]:
        """Poll the protocol until Conta Azul has processed the receivable (or refused it)."""
        if not protocol_id:
            raise TransientError("Conta Azul accepted the receivable without a protocol to follow")
        deadline = time.monotonic() + self._number("protocol_timeout_seconds", 60)
        attempt = 0
        while True:
            protocol = self._get(f"/v1/protocolo/{protocol_id}", "receivable protocol") or {}
            status = protocol.get("status")
            if status == "SUCCESS" and protocol.get("evento_financeiro_id"):
                return self._event_installments(str(protocol["evento_financeiro_id"]))
            if status == "ERROR":
                raise mapping.permanent_error("receivable", 400, protocol.get("resposta") or "processing failed")
            if time.monotonic() >= deadline:
                raise TransientError(f"Conta Azul is still processing the receivable of invoice {invoice.number} "
                                     f"(protocol {protocol_id}); the next attempt checks it before creating another")
            time.sleep(min(0.2 * (2 ** attempt), 3.0))
            attempt += 1

    # ================================================================== payment (baixa)
    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """Register a payment on an installment. A baixa of the same day and amount is taken as this
        payment already recorded (Conta Azul has no idempotency key), so a retry never pays twice."""
        base = f"/v1/financeiro/eventos-financeiros/parcelas/{receivable_remote_id}"
        parcel = self._get(base, "receivable") or {}
        settled = self._get(f"{base}/baixa", "payment list") or []
        if any(mapping.settlement_matches(b, amount, paid_on) for b in settled):
            return
        open_amount = Decimal(str(parcel.get("nao_pago") if parcel.get("nao_pago") is not None else amount))
        if Decimal(str(amount)) - open_amount > Decimal("0.005"):
            raise PermanentError(f"The payment of {mapping.money(amount):.2f} is more than the {open_amount:.2f} still "
                                 "open on this receivable in Conta Azul",
                                 field_errors=[FieldError("amount", f"at most {open_amount:.2f}")])
        account = ((parcel.get("conta_financeira") or {}).get("id")) or self._account_id()
        payload = mapping.settlement_payload(amount, paid_on, account, _settlement_method(parcel))

        def reconcile() -> dict[str, Any] | None:
            rows = self._get(f"{base}/baixa", "payment list") or []
            return next((b for b in rows if mapping.settlement_matches(b, amount, paid_on)), None)

        self._create(f"{base}/baixa", payload, what="payment", reconcile=reconcile)

    # ================================================================== invoices issued in Conta Azul
    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        """`fiscal_remote_id` is the sale's uuid (FinancialResult.order_remote_id): Conta Azul issues
        from the sale, and its invoice is searched for in the lists, window by window, from the sale
        date on. While nothing final is found the result stays PENDING with the sale's id."""
        detail = self._get(f"/v1/venda/{fiscal_remote_id}", "sale") or {}
        sale = detail.get("venda") or {}
        number = str(sale.get("numero") or "")
        today = now_sao_paulo().date()
        start = mapping.parse_erp_date(sale.get("data_compromisso") or sale.get("data_venda")) or \
            today - timedelta(days=int(self._number("invoice_lookback_days", 45)))
        last = min(today, start + timedelta(days=int(self._number("invoice_lookback_days", 45))))
        pending: FiscalResult | None = None
        for first, final in _day_windows(start, last):
            found = self._invoice_in_window(fiscal_remote_id, number, first, final)
            if found is not None and found.state is not FiscalState.PENDING:
                return found
            pending = pending or found
        message = pending.message if pending else f"Conta Azul has not issued the invoice of sale {number} yet"
        return FiscalResult(state=FiscalState.PENDING, remote_id=fiscal_remote_id, message=message)

    def _invoice_in_window(self, sale_id: str, sale_number: str, first: date, final: date) -> FiscalResult | None:
        notes = self._nfse_rows(first, final, {"numero_venda": sale_number}) if sale_number else []
        notes = [n for n in notes if str(n.get("id_venda") or sale_id) == sale_id]
        if notes:
            return mapping.fiscal_from_nfse(max(notes, key=lambda n: int(n.get("numero_rps") or 0)))
        issued = self._nfe_rows(first, final, {"id_venda": sale_id})
        return mapping.fiscal_from_nfe(issued[-1]) if issued else None

    def _nfse_rows(self, first: date, final: date, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return self._invoice_pages("/v1/notas-fiscais-servico", "NFS-e list",
                                   {"data_competencia_de": first.isoformat(), "data_competencia_ate": final.isoformat(),
                                    **extra})

    def _nfe_rows(self, first: date, final: date, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return self._invoice_pages("/v1/notas-fiscais", "NF-e list",
                                   {"data_inicial": first.isoformat(), "data_final": final.isoformat(), **extra})

    def _invoice_pages(self, path: str, what: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every page of one window. The NF-e counter also counts notes it does not list, so the
        loop stops on a short page rather than trusting `total_paginas`."""
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._get(path, what, params={**params, "pagina": page, "tamanho_pagina": INVOICE_PAGE_SIZE}) or {}
            batch = data.get("itens") or []
            rows += batch
            if len(batch) < INVOICE_PAGE_SIZE:
                return rows
            page += 1

    def pull_invoices(self, cursor: str | None) -> PullPage:
        """Invoices Conta Azul issued (or failed to issue), newest status first seen only once.

        Scans the last 15 days on every call; after a long pause it first catches up, 15 days at a
        time, from where the previous scan stopped. Items are IssuedInvoice."""
        today = now_sao_paulo().date()
        state = json.loads(cursor) if cursor else {}
        sliding_start = today - timedelta(days=INVOICE_WINDOW_DAYS - 1)
        next_start = date.fromisoformat(state["next_start"]) if state.get("next_start") else sliding_start
        catching_up = next_start < sliding_start
        first = next_start if catching_up else sliding_start
        final = min(today, first + timedelta(days=INVOICE_WINDOW_DAYS - 1))
        seen: dict[str, str] = state.get("seen") or {}
        found: dict[str, str] = {}
        items: list[IssuedInvoice] = []
        for key, status, invoice in self._issued_in_window(first, final):
            found[key] = status
            if seen.get(key) != status:
                items.append(invoice)
        new_next = final + timedelta(days=1) if catching_up else today + timedelta(days=1)
        more = catching_up         # the sliding window still has to be scanned after catching up
        return PullPage(items=items, cursor=json.dumps({"next_start": new_next.isoformat(), "seen": found}), more=more)

    def _issued_in_window(self, first: date, final: date) -> Iterable[tuple[str, str, IssuedInvoice]]:
        for row in self._nfse_rows(first, final, {}):
            fiscal = mapping.fiscal_from_nfse(row)
            yield (f"nfse:{row.get('id')}", str(row.get("status")),
                   IssuedInvoice(str(row.get("id_venda") or ""), str(row.get("numero_venda") or ""), "nfse", fiscal, row))
        for row in self._nfe_rows(first, final, {}):
            fiscal = mapping.fiscal_from_nfe(row)
            yield (f"nfe:{fiscal.access_key}", str(row.get("status")),
                   IssuedInvoice(str(row.get("id_venda") or ""), "", "nfe", fiscal, row))

    # ================================================================== changed-since pulls
    def _first_since(self) -> str:
        days = min(CHANGE_WINDOW_DAYS - 1, int(self._number("pull_start_days", 30)))
        return erp_datetime(now_sao_paulo() - timedelta(days=days))

    def _pull(self, cursor: str | None, fetch: Callable[[_PullPass, int], list[dict[str, Any]]],
              expand: Callable[[dict[str, Any]], Iterable[tuple[str, str, Callable[[], Any]]]]) -> PullPage:
        """One page of a changed-since pull. `fetch` reads the page; `expand` turns each row into
        (key, fingerprint, produce) triples, and `produce()` runs only for what is new or changed."""
        state = _PullPass.load(cursor, self._first_since())
        if state.until is None:
            # a second ahead: filters are whole seconds, and the overlap of the next pass
            # covers anything written after this read
            state.until = erp_datetime(now_sao_paulo() + timedelta(seconds=1))
            oldest = datetime.fromisoformat(state.until) - timedelta(days=CHANGE_WINDOW_DAYS - 1)
            state.since = max(state.since, erp_datetime(oldest))
        size = self._page_size()
        rows = fetch(state, size)
        items = []
        for row in rows:
            for key, print_, produce in expand(row):
                fresh = state.is_new(key, print_)
                state.current[key] = print_
                if fresh:
                    item = produce()
                    if item is not None:
                        items.append(item)
        if len(rows) >= size:
            return PullPage(items=items, cursor=state.next_page().dump(), more=True)
        overlap = int(self._number("pull_overlap_seconds", 120))
        return PullPage(items=items, cursor=state.next_pass(overlap).dump(), more=False)

    # -- customers
    def pull_customers(self, cursor: str | None) -> PullPage:
        return self._pull(cursor, self._changed_people, self._expand_person)

    def _changed_people(self, state: _PullPass, size: int) -> list[dict[str, Any]]:
        data = self._get("/v1/pessoas", "customer list", params={
            "data_alteracao_de": state.since, "data_alteracao_ate": state.until,
            "pagina": state.page, "tamanho_pagina": size}) or {}
        return data.get("items") or []

    def _expand_person(self, row: dict[str, Any]) -> list[tuple[str, str, Callable[[], Any]]]:
        """The list lacks the address, so the full record is read to see what changed."""
        remote = self.get_customer(str(row["id"]))
        return [(str(row["id"]), mapping.fingerprint(remote.record.to_dict()), lambda: remote)]

    # -- counter sales
    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        return self._pull(cursor, self._changed_sales, self._expand_sale)

    def _changed_sales(self, state: _PullPass, size: int) -> list[dict[str, Any]]:
        data = self._get("/v1/venda/busca", "sale list", params={
            "data_alteracao_de": state.since, "data_alteracao_ate": state.until,
            "pagina": state.page, "tamanho_pagina": size}) or {}
        return data.get("itens") or []

    def _expand_sale(self, row: dict[str, Any]) -> list[tuple[str, str, Callable[[], Any]]]:
        return [(str(row["id"]), mapping.fingerprint(row), lambda: self._counter_sale(row))]

    def _counter_sale(self, row: dict[str, Any]):
        """None for sales that are not counter sales: TecPet's own, or origins outside the setting."""
        origins = {o.strip() for o in (self.settings.get("pos_sale_origins") or "").split(",") if o.strip()}
        if origins and str(row.get("origem") or "") not in origins:
            return None
        detail = self._get(f"/v1/venda/{row['id']}", "sale") or {}
        if mapping.has_invoice_mark((detail.get("venda") or {}).get("observacoes")):
            return None
        items = (self._get(f"/v1/venda/{row['id']}/itens", "sale items",
                           params={"pagina": 1, "tamanho_pagina": 200}) or {}).get("itens") or []
        return mapping.pos_sale_from_erp(row, detail, items)

    # -- receipts
    def pull_receipts(self, cursor: str | None) -> PullPage:
        return self._pull(cursor, self._changed_receivables, self._expand_receivable)

    def _changed_receivables(self, state: _PullPass, size: int) -> list[dict[str, Any]]:
        """Received installments changed in the window; the due-date window is mandatory, so a wide one."""
        spread = timedelta(days=int(self._number("receipts_due_window_days", 1825)))
        today = now_sao_paulo().date()
        data = self._get("/v1/financeiro/eventos-financeiros/contas-a-receber/buscar", "receivable list", params={
            "data_alteracao_de": state.since, "data_alteracao_ate": state.until,
            "data_vencimento_de": (today - spread).isoformat(), "data_vencimento_ate": (today + spread).isoformat(),
            "status": ["RECEBIDO", "RECEBIDO_PARCIAL"], "pagina": state.page, "tamanho_pagina": size}) or {}
        return data.get("itens") or []

    def _expand_receivable(self, row: dict[str, Any]) -> list[tuple[str, str, Callable[[], Any]]]:
        """One receipt per baixa; the ones TecPet registered itself are not echoed back."""
        settlements = self._get(f"/v1/financeiro/eventos-financeiros/parcelas/{row['id']}/baixa", "payment list") or []
        out = []
        for baixa in settlements:
            own = (baixa.get("observacao") or "") == mapping.TECPET_SETTLEMENT_NOTE
            out.append((str(baixa["id"]), mapping.fingerprint(baixa),
                        (lambda b=baixa, own=own: None if own else mapping.receipt_from_erp(b, row))))
        return out


# ---------------------------------------------------------------------- helpers
def _prefer(rows: list[dict[str, Any]], customer: CustomerRecord) -> dict[str, Any]:
    """Among duplicates already in Conta Azul: the one carrying TecPet's id, then an active one."""
    return sorted(rows, key=lambda r: (str(r.get("codigo") or "") != str(customer.id), not r.get("ativo", True)))[0]


_SETTLEMENT_METHODS = {"DINHEIRO", "CARTAO_CREDITO", "BOLETO_BANCARIO", "CARTAO_CREDITO_VIA_LINK", "CHEQUE",
                       "CARTAO_DEBITO", "TRANSFERENCIA_BANCARIA", "OUTRO", "CARTEIRA_DIGITAL", "CASHBACK",
                       "CREDITO_LOJA", "CREDITO_VIRTUAL", "DEPOSITO_BANCARIO", "PIX_PAGAMENTO_INSTANTANEO"}


def _settlement_method(parcel: dict[str, Any]) -> str:
    """The installment's own payment method, when the baixa's (narrower) enum has it."""
    method = str(parcel.get("metodo_pagamento") or "")
    return method if method in _SETTLEMENT_METHODS else ""


def _day_windows(start: date, last: date) -> Iterable[tuple[date, date]]:
    """[start, last] cut into the at-most-15-day windows the invoice lists accept."""
    first = start
    while first <= last:
        final = min(last, first + timedelta(days=INVOICE_WINDOW_DAYS - 1))
        yield first, final
        first = final + timedelta(days=1)
