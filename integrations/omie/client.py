"""Omie connector: API v1, JSON-RPC calls by name posted to per-area URLs.

Omie punishes careless clients, so every call goes through one guarded path (`_call`):
- budgets: 240 requests/min per app key and method (a limiter key per method), 960/min per
  outgoing IP (one key shared by every Omie account), at most 4 requests in flight per app key;
- the 60-second rule: Omie refuses the same call with the same params twice within a minute, so
  answers are kept in Redis for that minute and an identical call gets the kept answer; a lookup
  that our own write made stale is asked in a slightly different form (page size) instead;
- the misuse block: a refused call is remembered and never sent again unchanged (a "not found"
  only until another write of ours changed the picture); if Omie blocks the app key anyway,
  every worker stops calling until the block ends;
- faults come on HTTP 500: the shared client retries only 502/503/504, and 500 is read here
  (fault 5113 is an empty page, SOAP-ENV:Server faults are Omie's own trouble and are retried);
  after a 504 or a timeout the call may have been done, so it is not resent within the minute.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from ..base import (
    AuthError,
    Capability,
    ConnectorError,
    Connector,
    CredentialField,
    CustomerRecord,
    FieldError,
    FinancialResult,
    FiscalResult,
    FiscalState,
    InvoiceRecord,
    NotFoundError,
    NotSupported,
    PermanentError,
    PullPage,
    PushResult,
    RateLimit,
    RateLimitedError,
    RecordRequirement,
    RemoteCustomer,
    SettingField,
    TransientError,
)
from . import mapping as m

SHARED_CLIENT_RETRY_STATUSES = (502, 503, 504)   # 500 carries Omie's faults: read, never blindly retried
EMPTY_PAGE: dict[str, Any] = {}


def existing_code(exc: ConnectorError) -> str | None:
    """The Omie id in "… já cadastrado para o Código de Integração [X] com o nCod [Y]"."""
    fault = m.fault_of(exc.raw) if isinstance(exc.raw, dict) else None
    return m.existing_by_integration_code(fault) if fault else None


def certainly_unprocessed(exc: ConnectorError) -> bool:
    """Failures that prove Omie did not act (429, 502/503, its own server fault); after a 504,
    a timeout or a dropped connection the call may have been done."""
    if isinstance(exc, RateLimitedError):
        return not is_redundant_refusal(exc)
    return exc.status in (502, 503) or (exc.status == 500 and isinstance(exc.raw, dict))


def is_redundant_refusal(exc: ConnectorError) -> bool:
    fault = m.fault_of(exc.raw) if isinstance(exc.raw, dict) else None
    return fault is not None and m.is_redundant(fault)


# --------------------------------------------------------------------------- call memory
class CallMemory:
    """What every worker must know about this Omie account, kept in Redis.

    Keys are per account and per credentials: new keys pasted by support start clean.
    Without Redis (a bare HttpClient) nothing is remembered and locks are no-ops.
    """

    def __init__(self, http, account_key: str, credentials_id: str, answer_seconds: float, failure_seconds: float):
        self.http = http
        self.redis = getattr(http, "redis", None)
        self.prefix = f"omie:{account_key}"
        self.credentials_id = credentials_id
        self.answer_seconds = answer_seconds
        self.failure_seconds = failure_seconds

    def fingerprint(self, call: str, param: dict[str, Any]) -> str:
        text = json.dumps(param, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(f"{self.credentials_id}|{call}|{text}".encode("utf-8")).hexdigest()

    @contextmanager
    def lock(self, fp: str) -> Iterator[None]:
        """Two workers asking the identical question would trip the 60-second rule: one at a time."""
        with self.http.lock(f"{self.prefix}:{fp[:40]}", timeout=90.0, wait=90.0):
            yield

    def generation(self) -> int:
        """Bumped on each write of ours: lookups kept from before it are stale."""
        return int(self.redis.get(f"{self.prefix}:gen") or 0) if self.redis is not None else 0

    def bump(self) -> None:
        if self.redis is not None:
            self.redis.incr(f"{self.prefix}:gen")

    def answer(self, fp: str) -> tuple[int, dict[str, Any]] | None:
        return self._load(f"{self.prefix}:ans:{fp}")

    def keep_answer(self, fp: str, generation: int, body: dict[str, Any]) -> None:
        # a little longer than Omie's window: Omie starts counting when our request arrives
        margin = min(2.0, 0.5 + self.answer_seconds / 10)
        self._store(f"{self.prefix}:ans:{fp}", generation, body, self.answer_seconds + margin)

    def failure(self, fp: str) -> tuple[int, dict[str, Any]] | None:
        return self._load(f"{self.prefix}:fail:{fp}")

    def keep_failure(self, fp: str, generation: int, fault: m.Fault) -> None:
        self._store(f"{self.prefix}:fail:{fp}", generation, fault.raw, self.failure_seconds)

    def blocked_for(self) -> float:
        if self.redis is None:
            return 0.0
        ttl = self.redis.pttl(f"{self.prefix}:blocked")
        return ttl / 1000.0 if ttl and ttl > 0 else 0.0

    def block(self, seconds: float) -> None:
        if self.redis is not None:
            self.redis.set(f"{self.prefix}:blocked", "1", px=max(1, int(seconds * 1000)))

    def rejected_credentials(self) -> dict[str, Any] | None:
        found = self._load(f"{self.prefix}:auth:{self.credentials_id}")
        return found[1] if found else None

    def reject_credentials(self, fault: m.Fault) -> None:
        self._store(f"{self.prefix}:auth:{self.credentials_id}", 0, fault.raw, self.failure_seconds)

    def _load(self, key: str) -> tuple[int, dict[str, Any]] | None:
        if self.redis is None:
            return None
        raw = self.redis.get(key)
        if raw is None:
            return None
        data = json.loads(raw)
        return int(data["gen"]), data["body"]

    def _store(self, key: str, generation: int, body: dict[str, Any], seconds: float) -> None:
        if self.redis is not None:
            self.redis.set(key, json.dumps({"gen": generation, "body": body}, default=str), px=int(seconds * 1000))


# --------------------------------------------------------------------------- pull cursors
@dataclass
class SweepCursor:
    """Where a pull stands. A sweep lists everything changed since `since` (minus an overlap)
    page by page; its newest change becomes the next sweep's `since`. `tail` holds what was
    delivered near the newest change, `last_page` what the previous page delivered, so pages
    that shift and overlapping sweeps never deliver the same version twice."""

    since: str | None = None
    until: str | None = None
    page: int = 0
    size: int = 0
    high: str | None = None
    tail: dict[str, list[str]] = field(default_factory=dict)
    last_page: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, text: str | None) -> "SweepCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))

    def already_delivered(self, key: str, digest: str) -> bool:
        return self.tail.get(key, [""])[0] == digest or self.last_page.get(key) == digest

    def note(self, key: str, digest: str, stamp: datetime | None) -> None:
        if stamp is None:
            return
        iso = stamp.isoformat()
        self.high = max(self.high or iso, iso)
        self.tail[key] = [digest, iso]

    def prune(self, overlap: timedelta) -> None:
        if self.high:
            floor = (datetime.fromisoformat(self.high) - overlap).isoformat()
            self.tail = {k: v for k, v in self.tail.items() if v[1] >= floor}

    def finish_sweep(self) -> None:
        self.since = self.high or self.since
        self.until, self.page, self.last_page = None, 0, {}


@dataclass(frozen=True)
class SweepSpec:
    """One listing Omie offers for bringing changes back."""

    area: str
    call: str
    subject: str
    list_key: str
    page_field: str
    size_field: str
    pages_field: str
    window: Callable[[date | None, date], dict[str, Any]]
    stamp: Callable[[dict[str, Any]], datetime | None]
    key: Callable[[dict[str, Any]], str]
    convert: Callable[[dict[str, Any]], Any]


def day_window(first_key: str, last_key: str, extra: dict[str, Any] | None = None):
    """Omie's list filters by day (dd/mm/aaaa); the exact moment is checked on our side."""
    def window(first: date | None, last: date) -> dict[str, Any]:
        params = dict(extra or {})
        params[last_key] = m.omie_date(last)
        if first is not None:
            params[first_key] = m.omie_date(first)
        return params
    return window


# --------------------------------------------------------------------------- the connector
class OmieConnector(Connector):
    name = "omie"
    label = "Omie"
    two_way = True
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES,
        Capability.PULL_RECEIPTS, Capability.SETTLE_RECEIVABLE, Capability.WEBHOOKS,
    })
    credential_fields = (
        CredentialField("app_key", "App Key", secret=False,
                        help="From the Omie developer portal (same login as the ERP), application of this company."),
        CredentialField("app_secret", "App Secret", help="Shown next to the App Key; keep it private."),
    )
    setting_fields = (
        SettingField("base_url", "API address", default="https://app.omie.com.br/api/v1/"),
        SettingField("category_code", "Revenue category (codigo_categoria)",
                     help="Omie category for clinic services, e.g. 1.01.02 (Omie: ListarCategorias)."),
        SettingField("bank_account_id", "Bank or cash account id (nCodCC)",
                     help="Where receivables are expected and payments land (Omie: ListarContasCorrentes)."),
        SettingField("service_code_municipal", "Municipal service code (cCodServMun)",
                     help="Used for items without their own service code; must be authorised for the clinic's "
                          "municipal registration or the city hall rejects the NFS-e."),
        SettingField("service_code_lc116", "LC 116 service code (cCodServLC116)",
                     help="Veterinary medicine is item 5.01 of LC 116; the format Omie expects is per company."),
        SettingField("service_taxation", "Municipal taxation type (cTribServ)", default="01",
                     help="Omie's code for how ISS is taxed; 01 is the usual one (confirm with the accountant)."),
        SettingField("os_stage", "Stage of new service orders (cEtapa)", default="50",
                     help="50 is Omie's 'Faturar' column."),
        SettingField("list_page_size", "Rows per list page", default="500",
                     help="Omie recommends at most 500; some lists are said to cap pages at 100."),
        SettingField("pos_sales_date_filter", "Counter sales are fetched by", default="inclusao",
                     help="'inclusao' (new sales) or 'alteracao' (also cancellations, if Omie stamps them)."),
        SettingField("timezone", "Omie's clock", default="America/Sao_Paulo"),
        SettingField("egress_pool", "Outgoing IP group", default="default",
                     help="Omie's 960 requests/min are per IP: accounts served from the same IPs share them."),
        SettingField("redundancy_window_seconds", "Omie's repeat window (s)", default="60"),
        SettingField("failed_call_memory_seconds", "How long a refused call is not repeated (s)", default="600"),
        SettingField("pull_overlap_seconds", "Overlap between pulls (s)", default="5"),
    )
    auth_kind = "static"
    rate_limit = RateLimit(windows=((240, 60.0),), max_concurrency=4)   # per app key + method; 4 in flight per app key
    ip_rate_limit = RateLimit(windows=((960, 60.0),))                    # per outgoing IP, all accounts together
    record_requirements = (
        RecordRequirement("tax_id", "omie.tax_id_needed_for_invoice", "error",
                          "Omie needs the CPF/CNPJ to issue an NF-e/NFS-e.", required=True),
        RecordRequirement("email", "omie.email_needed_for_invoice", "warning",
                          "Omie asks for the customer's e-mail to issue an NF-e/NFS-e.", required=True),
        RecordRequirement("district", "omie.district_needed_for_invoice", "warning",
                          "Omie asks for the district (bairro) to issue an NF-e/NFS-e.", required=True),
        RecordRequirement("number", "omie.number_needed_for_invoice", "warning",
                          "Omie asks for the address number to issue an NF-e/NFS-e (use S/N when there is none).",
                          required=True),
        RecordRequirement("name", "omie.name_too_long", "warning",
                          "Invoices keep only the first 60 characters of the name.", max_length=60),
    )
    batch_size = 500
    notes = (
        "Customers, service orders, receivables and payments carry TecPet's own codes in Omie, so sending "
        "them again never creates duplicates.",
        "Each invoice becomes an Omie service order with its installments, and TecPet creates one receivable "
        "per installment; billing the order in Omie does not create a second set.",
        "Issuing bills the service order in Omie, which sends the NFS-e to the city hall; the city hall's "
        "answer (issued, or rejected with its reason) comes back to the invoice.",
        "Omie answers the same question only once a minute, so statuses and lists can be up to a minute old.",
        "Omie blocks an account for about half an hour after repeated failing requests; TecPet never repeats "
        "a refused request unchanged, and pauses the account if Omie blocks it.",
        "A receipt comes back when a receivable is fully received; its date is when Omie last changed it.",
        "Omie does not sign its notifications: TecPet only accepts those carrying this account's App Key and "
        "reads the record from Omie again before using it.",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        scale = float(self.settings.get("rate_limit_scale") or 1)
        self.method_limit = RateLimit(windows=self.limit.windows)
        self.ip_limit = RateLimit(windows=tuple((max(1, int(n * scale)), s) for n, s in self.ip_rate_limit.windows))
        self.in_flight_cap = RateLimit(windows=(), max_concurrency=self.limit.max_concurrency)
        self.page_size = max(1, int(self.settings.get("list_page_size") or 500))
        self.overlap = timedelta(seconds=float(self.settings.get("pull_overlap_seconds") or 0))
        self.memory = CallMemory(ctx.http, ctx.account_key, self._credentials_id(),
                                 answer_seconds=float(self.settings.get("redundancy_window_seconds") or 60),
                                 failure_seconds=float(self.settings.get("failed_call_memory_seconds") or 600))

    # ------------------------------------------------------------------ the guarded call
    def _credentials_id(self) -> str:
        creds = self.ctx.credentials or {}
        text = f"{creds.get('app_key', '')}\0{creds.get('app_secret', '')}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def _call(self, area: str, call: str, param: dict[str, Any], subject: str, *, kind: str = "lookup",
              tweak: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """One Omie call -> (answer, the param actually sent).

        kind: "write" (an identical write within the minute gets the first answer), "lookup"
        (must reflect our own writes: if only a stale kept answer exists, the `tweak` page-size
        field is lowered to ask a question Omie has not heard this minute), "sweep" (pull pages
        and polls: a kept answer up to a minute old is fine).
        """
        self._refuse_while_blocked()
        generation = self.memory.generation()
        kept = None
        for variant in self._variants(param, tweak if kind == "lookup" else None):
            fp = self.memory.fingerprint(call, variant)
            with self.memory.lock(fp):
                kept = self.memory.answer(fp)
                if kept is not None and (kind != "lookup" or kept[0] == generation):
                    return kept[1], variant
                if kept is not None:
                    continue
                self._raise_if_refused_before(fp, generation, subject)
                try:
                    body = self._send(area, call, variant, fp, generation, subject)
                except RateLimitedError as exc:
                    if not (kind == "lookup" and is_redundant_refusal(exc)):
                        raise
                    continue       # our earlier identical ask lost its answer: ask in another form
                if kind == "write":
                    self.memory.bump()
                return body, variant
        if kept is None:
            raise RateLimitedError("Omie refused every form of this lookup as a repeat; try again in a minute",
                                   retry_after=60.0)
        return kept[1], param

    def _write(self, area: str, call: str, param: dict[str, Any], subject: str) -> dict[str, Any] | None:
        """A write; None when Omie says it processed this very write within the last minute
        (our first attempt's answer was lost on the way back): the caller checks by its code."""
        try:
            return self._call(area, call, param, subject, kind="write")[0]
        except RateLimitedError as exc:
            if not is_redundant_refusal(exc):
                raise
            self.memory.bump()
            return None

    @staticmethod
    def _variants(param: dict[str, Any], tweak: str | None) -> Iterator[dict[str, Any]]:
        yield param
        if tweak and int(param.get(tweak) or 0) > 10:
            for lower_by in range(1, 10):
                yield {**param, tweak: int(param[tweak]) - lower_by}

    def _refuse_while_blocked(self) -> None:
        wait = self.memory.blocked_for()
        if wait > 0:
            raise RateLimitedError(f"Omie has blocked this account for misuse; calls resume in {wait / 60:.0f} minutes",
                                   retry_after=wait)
        rejected = self.memory.rejected_credentials()
        if rejected is not None:
            raise m.error_for(m.fault_of(rejected), "credentials")

    def _raise_if_refused_before(self, fp: str, generation: int, subject: str) -> None:
        """Never send Omie a call it already refused: repeating failures gets the app key blocked.
        Only a "not found" may have been cured by a write of ours since; other refusals stand."""
        failed = self.memory.failure(fp)
        if failed is None:
            return
        fault = m.fault_of(failed[1])
        if failed[0] == generation or not m.is_missing_record(fault):
            raise m.error_for(fault, subject)

    def _send(self, area: str, call: str, param: dict[str, Any], fp: str, generation: int, subject: str) -> dict[str, Any]:
        body, fault = self._post(area, call, param)
        if fault is None:
            self.memory.keep_answer(fp, generation, body)
            return body
        if m.is_empty_page(fault):
            self.memory.keep_answer(fp, generation, EMPTY_PAGE)
            return EMPTY_PAGE
        if m.is_misuse_block(fault):
            self.memory.block(m.seconds_in(fault, 1800.0))
        elif m.is_auth_failure(fault):
            self.memory.reject_credentials(fault)
        if not (m.is_redundant(fault) or m.is_busy(fault) or m.is_misuse_block(fault)):
            self.memory.keep_failure(fp, generation, fault)
        raise m.error_for(fault, subject)

    def _post(self, area: str, call: str, param: dict[str, Any]) -> tuple[dict[str, Any] | None, m.Fault | None]:
        """Send, retrying only what proves Omie did nothing (429, 502/503, its server faults)."""
        url = self.settings["base_url"].rstrip("/") + "/" + area
        envelope = {"call": call, "app_key": self.ctx.credentials.get("app_key", ""),
                    "app_secret": self.ctx.credentials.get("app_secret", ""), "param": [param]}
        attempts = max(1, int(getattr(self.ctx.http, "retries", 3)) + 1)
        last: ConnectorError | None = None
        for attempt in range(attempts):
            try:
                self._take_budget(call)
                resp = self.ctx.http.request("POST", url, account_key=self.ctx.account_key, rate_limit=self.in_flight_cap,
                                             secrets=self._secrets(), retries=0,
                                             retry_statuses=SHARED_CLIENT_RETRY_STATUSES, json=envelope)
                return self._answer_of(resp, area)
            except (TransientError, RateLimitedError) as exc:
                if not certainly_unprocessed(exc):
                    raise      # Omie may have done it: an identical resend within the minute would be refused
                last = exc
                if attempt + 1 < attempts:
                    self.ctx.http.sleep(self.ctx.http.backoff_delay(attempt, getattr(exc, "retry_after", None)))
        assert last is not None
        raise last

    def _take_budget(self, call: str) -> None:
        """Per-method and per-IP windows; the in-flight cap per app key is applied by the shared client."""
        limiter = getattr(self.ctx.http, "limiter", None)
        if limiter is None:
            return
        limiter.acquire(f"{self.ctx.account_key}:{call}", self.method_limit)
        limiter.acquire(f"omie:egress:{self.settings.get('egress_pool') or 'default'}", self.ip_limit)

    def _secrets(self) -> list[str]:
        return [v for v in (self.ctx.credentials or {}).values() if isinstance(v, str)]

    @staticmethod
    def _answer_of(resp, area: str) -> tuple[dict[str, Any] | None, m.Fault | None]:
        if resp.status_code in (401, 403):
            raise AuthError("Omie refused the request's credentials", status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            body = None
        fault = m.fault_of(body)
        if fault is not None:
            if m.is_server_side(fault):
                raise TransientError(f"Omie had a temporary problem: {fault.text}", status=resp.status_code, raw=body)
            return None, fault
        if resp.status_code >= 500 or not isinstance(body, dict):
            raise TransientError(f"Omie answered HTTP {resp.status_code} without details", status=resp.status_code)
        if resp.status_code >= 400:
            raise PermanentError(f"Omie answered HTTP {resp.status_code} for {area}: check the API address",
                                 status=resp.status_code)
        return body, None

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        body, _ = self._call(m.AREA_COMPANIES, "ListarEmpresas", {"pagina": 1, "registros_por_pagina": 1}, "company")
        companies = body.get("empresas_cadastro") or []
        if not companies:
            return "Connected to Omie"
        company = companies[0]
        name = company.get("razao_social") or company.get("nome_fantasia") or ""
        return f"Connected to Omie: {name} (CNPJ {company.get('cnpj', '')})".strip()

    # ------------------------------------------------------------------ customers
    def _list_customers(self, filters: dict[str, Any], *, call: str = "ListarClientes",
                        list_key: str = "clientes_cadastro") -> list[dict[str, Any]]:
        """Every page of a customer lookup, with the page size the first page settled on."""
        rows: dict[Any, dict[str, Any]] = {}
        size, page, tweak = self.page_size, 1, "registros_por_pagina"
        while True:
            param = {"pagina": page, "registros_por_pagina": size, **filters}
            body, sent = self._call(m.AREA_CUSTOMERS, call, param, "customer", tweak=tweak)
            size, tweak = int(sent["registros_por_pagina"]), None
            for row in body.get(list_key) or []:
                rows[row.get("codigo_cliente_omie") or row.get("codigo_cliente")] = row
            if page >= int(body.get("total_de_paginas") or 0):
                return list(rows.values())
            page += 1

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """By TecPet's id (codigo_cliente_integracao), then by CPF/CNPJ compared digits-only.
        An empty key is never sent: Omie would read an empty filter as "everyone"."""
        found = (self._list_customers({"clientesFiltro": {"codigo_cliente_integracao": customer.id}})
                 if customer.id else [])
        key = m.tax_id_key(customer.tax_id)
        if not found and key:
            found = [row for row in self._list_customers({"clientesFiltro": {"cnpj_cpf": m.format_tax_id(key)}})
                     if m.tax_id_key(row.get("cnpj_cpf")) == key]
        return m.remote_customer(found[0]) if found else None

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        rows = self._list_customers({"clientesPorCodigo": [{"codigo_cliente_omie": int(remote_id)}]})
        if not rows:
            raise NotFoundError(f"Omie has no customer with id {remote_id} (deleted in Omie?)")
        return m.remote_customer(rows[0])

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        try:
            status = self._write(m.AREA_CUSTOMERS, "IncluirCliente", m.customer_payload(customer), "customer")
        except PermanentError as exc:
            return self._adopt_existing_customer(exc, customer)
        if status is None:
            return self._confirm_created(customer)
        return PushResult(str(status["codigo_cliente_omie"]), created=True)

    def _confirm_created(self, customer: CustomerRecord) -> PushResult:
        found = self._list_customers({"clientesFiltro": {"codigo_cliente_integracao": customer.id}})
        if not found:
            raise TransientError(f"Omie's answer about customer {customer.name} was lost; it is checked again later")
        return PushResult(str(found[0]["codigo_cliente_omie"]), created=True, remote_copy=found[0])

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        status = self._write(m.AREA_CUSTOMERS, "AlterarCliente", m.customer_update_payload(remote_id, customer),
                             "customer")
        return PushResult(str((status or {}).get("codigo_cliente_omie") or remote_id), created=False)

    def _adopt_existing_customer(self, exc: PermanentError, customer: CustomerRecord) -> PushResult:
        """Omie already has this customer: by our code (an earlier push) or by CPF/CNPJ (typed in Omie)."""
        fault = m.fault_of(exc.raw) if isinstance(exc.raw, dict) else None
        by_code = m.existing_by_integration_code(fault) if fault else None
        if by_code:
            return self.update_customer(by_code, customer)
        by_tax_id = m.existing_by_tax_id(fault) if fault else None
        if not by_tax_id:
            raise exc
        existing = self.get_customer(by_tax_id)
        if existing.record.id and existing.record.id != customer.id:
            raise PermanentError("Omie already has this CPF/CNPJ on another TecPet customer", raw=exc.raw,
                                 field_errors=[FieldError("tax_id", f"Omie customer {by_tax_id} belongs to TecPet "
                                                                    f"customer {existing.record.id}")])
        self._write(m.AREA_CUSTOMERS, "AssociarCodIntCliente",
                    {"codigo_cliente_omie": int(by_tax_id), "codigo_cliente_integracao": customer.id}, "customer")
        return self.update_customer(by_tax_id, customer)

    def upsert_customers(self, batch: list[tuple[CustomerRecord, str | None]]) -> list[PushResult | ConnectorError]:
        """Lotes of 50 (UpsertClientesPorLote), one lookup before and one after each slice of a
        page: 1,000 customers take 24 requests. A lote Omie refuses is pushed record by record,
        so one bad customer does not hold back the other 49."""
        outcomes: list[PushResult | ConnectorError | None] = [None] * len(batch)
        for start in range(0, len(batch), self.page_size):
            self._upsert_slice(batch, list(range(start, min(start + self.page_size, len(batch)))), outcomes)
        return list(outcomes)

    def _upsert_slice(self, batch, indexes: list[int], outcomes: list) -> None:
        known_before = self._existing_codes([batch[i][0].id for i in indexes if not batch[i][1]])
        for start in range(0, len(indexes), m.LOTE_LIMIT):
            lote = indexes[start:start + m.LOTE_LIMIT]
            try:
                self._send_lote([batch[i] for i in lote])
            except (PermanentError, NotSupported):
                for i in lote:
                    outcomes[i] = self._push_one(*batch[i])
        landed = [i for i in indexes if outcomes[i] is None]
        copies = self._customers_by_code([batch[i][0].id for i in landed])
        for i in landed:
            record, remote_id = batch[i]
            copy = copies.get(record.id)
            if copy is None:
                outcomes[i] = TransientError(f"Omie accepted customer {record.name} but does not list it yet")
                continue
            created = not remote_id and record.id not in known_before
            outcomes[i] = PushResult(str(copy["codigo_cliente_omie"]), created=created, remote_copy=copy)

    def _send_lote(self, records: list[tuple[CustomerRecord, str | None]]) -> None:
        payloads = []
        for record, remote_id in records:
            payload = m.customer_payload(record)
            if remote_id:
                payload["codigo_cliente_omie"] = int(remote_id)
            payloads.append(payload)
        lote = m.lote_number([r.id for r, _ in records])
        # a lost answer needs no special care: the lookup after the lotes shows what landed
        self._write(m.AREA_CUSTOMERS, "UpsertClientesPorLote", {"lote": lote, "clientes_cadastro": payloads}, "customers")

    def _push_one(self, record: CustomerRecord, remote_id: str | None) -> PushResult | ConnectorError:
        try:
            return self.update_customer(remote_id, record) if remote_id else self.create_customer(record)
        except (PermanentError, NotSupported) as exc:
            return exc

    def _existing_codes(self, codes: list[str]) -> set[str]:
        if not codes:
            return set()
        rows = self._list_customers({"clientesPorCodigo": [{"codigo_cliente_integracao": c} for c in codes]},
                                    call="ListarClientesResumido", list_key="clientes_cadastro_resumido")
        return {str(r.get("codigo_cliente_integracao")) for r in rows}

    def _customers_by_code(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        if not codes:
            return {}
        rows = self._list_customers({"clientesPorCodigo": [{"codigo_cliente_integracao": c} for c in codes]})
        return {str(r.get("codigo_cliente_integracao")): r for r in rows}

    # ------------------------------------------------------------------ invoices
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        self._require_financial_settings()
        order_id, order_number = self._create_service_order(invoice, customer_remote_id)
        receivables = [self._create_receivable(invoice, installment, customer_remote_id, order_id)
                       for installment in invoice.installments]
        return FinancialResult(order_remote_id=order_id, order_number=order_number, receivable_remote_ids=receivables)

    def _require_financial_settings(self) -> None:
        missing = [FieldError(name, "not filled in the Omie integration settings")
                   for name in ("category_code", "bank_account_id") if not self.settings.get(name)]
        if missing:
            raise PermanentError("Omie needs this clinic's revenue category and bank account to create orders and "
                                 "receivables; support fills them in the integration settings", field_errors=missing)

    def _create_service_order(self, invoice: InvoiceRecord, customer_remote_id: str) -> tuple[str, str]:
        payload = m.service_order_payload(invoice, customer_remote_id, self.settings)
        try:
            status = self._write(m.AREA_SERVICE_ORDERS, "IncluirOS", payload, "service order")
        except PermanentError as exc:
            if not existing_code(exc):
                raise
            status = None
        if status is not None:
            return str(status["nCodOS"]), str(status.get("cNumOS") or "")
        header = self._service_order({"cCodIntOS": invoice.id}).get("Cabecalho") or {}
        return str(header.get("nCodOS") or ""), str(header.get("cNumOS") or "")

    def _create_receivable(self, invoice: InvoiceRecord, installment, customer_remote_id: str, order_id: str) -> str:
        payload = m.receivable_payload(invoice, installment, customer_remote_id, order_id, self.settings)
        try:
            status = self._write(m.AREA_RECEIVABLES, "IncluirContaReceber", payload, "receivable")
        except PermanentError as exc:
            existing = existing_code(exc)
            if not existing:
                raise
            return existing
        if status is not None:
            return str(status["codigo_lancamento_omie"])
        found, _ = self._call(m.AREA_RECEIVABLES, "ConsultarContaReceber",
                              {"codigo_lancamento_integracao": payload["codigo_lancamento_integracao"]}, "receivable")
        return str(found["codigo_lancamento_omie"])

    def _service_order(self, key: dict[str, Any]) -> dict[str, Any]:
        body, _ = self._call(m.AREA_SERVICE_ORDERS, "ConsultarOS", key, "service order")
        return body

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        """The order and every receivable, or None: push_invoice completes a partial one safely."""
        try:
            order = self._service_order({"cCodIntOS": invoice.id})
            receivables = [self._call(m.AREA_RECEIVABLES, "ConsultarContaReceber",
                                      {"codigo_lancamento_integracao": m.receivable_code(invoice, i)}, "receivable")[0]
                           for i in invoice.installments]
        except NotFoundError:
            return None
        header = order.get("Cabecalho") or {}
        return FinancialResult(order_remote_id=str(header.get("nCodOS") or ""), order_number=str(header.get("cNumOS") or ""),
                               receivable_remote_ids=[str(r.get("codigo_lancamento_omie")) for r in receivables])

    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult, customer_remote_id: str) -> FiscalResult:
        try:
            self._write(m.AREA_SERVICE_BILLING, "FaturarOS", {"nCodOS": int(financial.order_remote_id)},
                        "service order billing")
        except PermanentError as exc:
            fault = m.fault_of(exc.raw) if isinstance(exc.raw, dict) else None
            if not (fault and m.is_already_billed(fault)):
                raise
        return FiscalResult(FiscalState.PENDING, remote_id=financial.order_remote_id,
                            message="Omie billed the service order and sent the NFS-e to the city hall.")

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        body, _ = self._call(m.AREA_SERVICE_ORDERS, "StatusOS", {"nCodOS": int(fiscal_remote_id), "lMsg": True},
                             "service order", kind="sweep")
        return m.fiscal_result(body)

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        payload = m.settlement_payload(receivable_remote_id, amount, paid_on, self.settings)
        try:
            self._write(m.AREA_RECEIVABLES, "LancarRecebimento", payload, "payment")
        except PermanentError as exc:
            if not existing_code(exc):
                raise   # otherwise a baixa with this code exists: the payment is already registered

    # ------------------------------------------------------------------ pulls
    def _omie_today(self) -> date:
        return datetime.now(ZoneInfo(self.settings.get("timezone") or "America/Sao_Paulo")).date()

    def _pull(self, spec: SweepSpec, cursor: str | None) -> PullPage:
        state = SweepCursor.load(cursor)
        if state.page == 0:
            state.page, state.size, state.until = 1, self.page_size, self._omie_today().isoformat()
        lower = datetime.fromisoformat(state.since) - self.overlap if state.since else None
        param = {spec.page_field: state.page, spec.size_field: state.size,
                 **spec.window(lower.date() if lower else None, date.fromisoformat(state.until))}
        body, _ = self._call(spec.area, spec.call, param, spec.subject, kind="sweep")
        items, this_page = [], {}
        for row in body.get(spec.list_key) or []:
            key, digest, stamp = spec.key(row), m.record_digest(row), spec.stamp(row)
            if (lower and stamp and stamp < lower) or state.already_delivered(key, digest):
                continue
            items.append(spec.convert(row))
            this_page[key] = digest
            state.note(key, digest, stamp)
        state.prune(self.overlap)
        more = state.page < int(body.get(spec.pages_field) or 0)
        if more:
            state.page, state.last_page = state.page + 1, this_page
        else:
            state.finish_sweep()
        return PullPage(items=items, cursor=state.dump(), more=more)

    def pull_customers(self, cursor: str | None) -> PullPage:
        return self._pull(SweepSpec(
            area=m.AREA_CUSTOMERS, call="ListarClientes", subject="customer list", list_key="clientes_cadastro",
            page_field="pagina", size_field="registros_por_pagina", pages_field="total_de_paginas",
            window=day_window("filtrar_por_data_de", "filtrar_por_data_ate"), stamp=m.customer_changed_at,
            key=lambda row: str(row.get("codigo_cliente_omie")), convert=m.remote_customer), cursor)

    def pull_receipts(self, cursor: str | None) -> PullPage:
        return self._pull(SweepSpec(
            area=m.AREA_RECEIVABLES, call="ListarContasReceber", subject="receivable list",
            list_key="conta_receber_cadastro", page_field="pagina", size_field="registros_por_pagina",
            pages_field="total_de_paginas",
            window=day_window("filtrar_por_data_de", "filtrar_por_data_ate", {"filtrar_por_status": "RECEBIDO"}),
            stamp=m.receivable_changed_at, key=lambda row: str(row.get("codigo_lancamento_omie")),
            convert=m.receipt), cursor)

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        by = "alteracao" if self.settings.get("pos_sales_date_filter") == "alteracao" else "inclusao"
        first, last = ("dDtAlteracaoDe", "dDtAlteracaoAte") if by == "alteracao" else ("dDtInclusaoDe", "dDtInclusaoAte")
        return self._pull(SweepSpec(
            area=m.AREA_POS_SALES, call="CuponsFiscais", subject="counter sales list", list_key="cupons",
            page_field="nPagina", size_field="nRegPorPagina", pages_field="nTotPaginas",
            window=day_window(first, last), stamp=lambda row: m.pos_sale_changed_at(row, by),
            key=lambda row: str((row.get("cabecalhoCupom") or {}).get("nIdCupom")), convert=m.pos_sale), cursor)

    # ------------------------------------------------------------------ webhooks
    def verify_webhook(self, headers: dict[str, str], body: bytes) -> bool:
        """Omie does not sign notifications: accept Omie's ping, and events carrying this
        account's App Key (compared in constant time). Treat events as triggers to read again."""
        envelope = m.parse_webhook(body)
        if envelope is None:
            return False
        if m.is_ping(envelope):
            return True
        expected = str((self.ctx.credentials or {}).get("app_key") or "")
        received = str(envelope.get("appKey") or "")
        return bool(expected) and hmac.compare_digest(received, expected) and isinstance(envelope.get("topic"), str)
