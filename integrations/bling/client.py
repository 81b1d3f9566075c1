"""Bling ERP (API v3) connector.

Bling is OAuth2-only: the clinic authorizes TecPet's app once, then every call carries a 6-hour
bearer token, and every refresh rotates the refresh token. Losing a rotated refresh token loses the
clinic's authorization, so refreshes are serialized per Bling account with the shared Redis lock,
and the newest token set is kept in Redis for the other workers (see `_refresh`).

Limits are per Bling account and shared with every other app installed on it: 3 requests/s and
120,000/day. Error storms get the whole IP blocked (all clinics), so nothing here retries a 4xx.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping
from urllib.parse import urlencode

from ..base import (AuthError, Capability, Connector, ConnectorError, CredentialField, CustomerRecord, FieldError,
                    FinancialResult, FiscalResult, InvoiceRecord, NotFoundError, PermanentError, PullPage, PushResult,
                    RateLimit, Receipt, RecordRequirement, RemoteCustomer, SettingField, TransientError)
from . import mapping

PRODUCTION_BASE_URL = "https://api.bling.com.br/Api/v3"
PRODUCTION_OAUTH_URL = "https://www.bling.com.br/Api/v3/oauth"
ACCESS_TOKEN_SECONDS = 21_600
REFRESH_TOKEN_SECONDS = 30 * 86_400
ARRIVAL_MARGIN = 1.10              # see _arrival_margin
REFRESH_WHEN_LEFT = 0.2            # refresh once less than 20 % of the token's life is left
PAGE_LIMIT = 100                   # Bling's maximum `limite`
MAX_WINDOW = timedelta(days=365)   # Bling refuses date windows longer than a year
JOURNAL_SECONDS = 90 * 86_400
DEAD_GRANT_SECONDS = 30 * 86_400
# Bling blocks the calling IP for an hour past 20 token calls a minute; every TecPet worker counts
# against one budget kept below that, whichever clinic the call is for.
TOKEN_CALL_BUDGET = RateLimit(windows=((15, 60.0),))
TOKEN_BUDGET_KEY = "bling:oauth-token-endpoint"
CONTACTS_PULL = {"criterio": 1}    # 1 = all contacts (the default 3 lists only the latest included)

WEBHOOK_ENTITIES = {
    "contact": "customer", "contato": "customer", "order": "order", "pedido": "order",
    "invoice": "invoice", "nfe": "invoice", "consumer_invoice": "consumer_invoice", "nfce": "consumer_invoice",
    "service_invoice": "service_invoice", "nfse": "service_invoice", "product": "product", "stock": "stock",
}


class BlingConnector(Connector):
    name = "bling"
    label = "Bling"
    two_way = True
    auth_kind = "oauth2"
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_RECEIPTS,
        Capability.SETTLE_RECEIVABLE, Capability.WEBHOOKS,
    })
    credential_fields = (
        CredentialField("client_id", "Client ID of TecPet's Bling app", secret=False,
                        help="From Bling's developer area (Central de Extensões > Área do Integrador)."),
        CredentialField("client_secret", "Client secret of TecPet's Bling app",
                        help="Also signs the webhooks Bling sends."),
    )
    setting_fields = (
        SettingField("base_url", "API base URL", PRODUCTION_BASE_URL),
        SettingField("oauth_url", "OAuth base URL", "",
                     help=f"Empty: {PRODUCTION_OAUTH_URL} in production, base URL + /oauth elsewhere."),
        SettingField("jwt_tokens", "Ask for JWT access tokens (enable-jwt header)", "1",
                     help="Bling is migrating to JWT tokens; 0 keeps the short opaque tokens while they last."),
        SettingField("settle_portador_id", "Bling account (portador) id for receipts", "",
                     help="Empty: the receivable's own portador."),
        SettingField("settle_categoria_id", "Bling category id for receipts", "",
                     help="Empty: the receivable's own category."),
        SettingField("nfse_service_code", "Municipal service code for NFS-e", "",
                     help="Used when an invoice item has none; empty: the default tax of Bling's NFS-e setup."),
        SettingField("pull_lag_seconds", "Seconds a change must age before it is pulled", "30",
                     help="Covers clock differences between TecPet and Bling."),
        SettingField("receipts_lookback_days", "Days back a receipt's payment date may be", "7"),
        SettingField("page_size", "Records per list page", str(PAGE_LIMIT)),
        SettingField("rate_limit_scale", "Rate limit scale (tests and benchmarks only)", "1"),
    )
    rate_limit = RateLimit(windows=((3, 1.0), (120_000, 86_400.0)))
    record_requirements = (
        RecordRequirement("name", "bling.name_required", "error", "Bling does not save a contact without a name.",
                          required=True),
        RecordRequirement("email", "bling.email_for_nfse", "warning",
                          "The NFS-e goes to the customer's e-mail; without one the municipality may refuse it.",
                          required=True),
        RecordRequirement("zip_code", "bling.zip_for_invoice", "warning",
                          "Without a CEP the NFS-e and the NF-e are refused.", required=True),
        RecordRequirement("district", "bling.district_for_nfse", "warning",
                          "Bling requires the district (bairro) of the NFS-e customer.", required=True),
        RecordRequirement("city", "bling.city_for_nfse", "warning",
                          "Bling requires the city (município) of the NFS-e customer.", required=True),
        RecordRequirement("street", "bling.street_for_nfe", "warning",
                          "SEFAZ refuses an NF-e whose customer has no street address.", required=True),
    )
    batch_size = 50
    notes = (
        "Bling has no service-order resource: each invoice becomes a sales order (pedido de venda) whose "
        "installments become the receivables.",
        "Installment payment methods must exist in Bling (Cadastros > Formas de pagamento); they are matched by "
        "name, then by fiscal payment type.",
        "Counter (POS) sales are not brought back: Bling has no POS resource in its API.",
        "Bling allows 3 requests per second per account, shared with other apps on the same account, so large "
        "first syncs take a while.",
        "If TecPet does not reach Bling for about 30 days the authorization lapses and the clinic must approve "
        "TecPet in Bling again.",
        "Webhooks are set up once in TecPet's app on Bling's developer area (not per clinic).",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.limit = _arrival_margin(self.limit)
        self._payment_methods_cache: list[dict[str, Any]] | None = None

    # ================================================================== OAuth2
    def authorize_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode({"response_type": "code", "client_id": self.ctx.credentials.get("client_id", ""),
                           "state": state, "redirect_uri": redirect_uri})
        return f"{self._oauth_url()}/authorize?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, str]:
        """Trade the one-minute, single-use code for tokens; never retried with the same code
        (re-using a code is reported to revoke the grant)."""
        tokens = self._token_call({"grant_type": "authorization_code", "code": code}, retries=0)
        with self._refresh_lock():
            self._store(tokens)
        return dict(self.ctx.credentials)

    def _oauth_url(self) -> str:
        explicit = self.settings.get("oauth_url", "").rstrip("/")
        if explicit:
            return explicit
        base = self.settings["base_url"].rstrip("/")
        return PRODUCTION_OAUTH_URL if base == PRODUCTION_BASE_URL else f"{base}/oauth"

    def _refresh_lock(self):
        return self.ctx.http.lock(f"oauth:{self.name}:{self.ctx.account_key}", timeout=60.0, wait=60.0)

    def _token_call(self, form: dict[str, str], retries: int | None = None) -> dict[str, str]:
        """POST /oauth/token with HTTP Basic client authentication; 400/401 mean the grant or the
        app credentials are no longer good, which only a person can fix."""
        creds = self.ctx.credentials
        basic = base64.b64encode(f"{creds.get('client_id', '')}:{creds.get('client_secret', '')}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        if self.settings.get("jwt_tokens", "1") == "1":
            headers["enable-jwt"] = "1"
        kwargs = {} if retries is None else {"retries": retries}
        limiter = getattr(self.ctx.http, "limiter", None)
        if limiter is not None:
            limiter.acquire(TOKEN_BUDGET_KEY, TOKEN_CALL_BUDGET)
        resp = self.http("POST", f"{self._oauth_url()}/token", data=form, headers=headers, **kwargs)
        if resp.status_code in (400, 401, 403):
            raise AuthError(self._auth_failure_text(_json(resp)), status=resp.status_code, raw=_json(resp))
        if resp.status_code >= 300:
            raise TransientError(f"Bling's token service answered HTTP {resp.status_code}", status=resp.status_code)
        return self._token_fields(_json(resp))

    @staticmethod
    def _auth_failure_text(body: Any) -> str:
        error = body.get("error") if isinstance(body, dict) else None
        kind = error.get("type") if isinstance(error, dict) else error
        detail = (error.get("description") if isinstance(error, dict) else None) or \
            (body.get("error_description") if isinstance(body, dict) else "") or ""
        if kind == "invalid_client":
            return f"Bling rejected TecPet's app credentials (client id / secret): {detail}".strip()
        return ("Bling no longer accepts this clinic's authorization; the clinic must approve TecPet in Bling "
                f"again ({kind or 'refused'}: {detail})").strip()

    @staticmethod
    def _token_fields(payload: Mapping[str, Any]) -> dict[str, str]:
        now = time.time()
        lifetime = int(payload.get("expires_in") or ACCESS_TOKEN_SECONDS)
        return {"access_token": str(payload["access_token"]), "refresh_token": str(payload["refresh_token"]),
                "token_type": str(payload.get("token_type") or "Bearer"), "scope": str(payload.get("scope") or ""),
                "expires_in": str(lifetime), "expires_at": str(int(now + lifetime)), "issued_at": f"{now:.6f}"}

    # -- the stored tokens: what the guide's "re-read the stored token" needs
    def _redis(self):
        return getattr(self.ctx.http, "redis", None)

    def _read_shared(self) -> dict[str, str] | None:
        """The tokens as stored now (another worker may have rotated them since we loaded ours)."""
        return self.ctx.load_credentials() or None

    def _store(self, tokens: dict[str, str]) -> None:
        """Adopt a new token set and persist it encrypted (call under the lock)."""
        self.ctx.credentials.update(tokens)
        self.ctx.save_credentials(dict(self.ctx.credentials))

    @staticmethod
    def _issued(tokens: Mapping[str, str] | None) -> float:
        return float((tokens or {}).get("issued_at") or 0)

    @staticmethod
    def _expiring(tokens: Mapping[str, str]) -> bool:
        lifetime = float(tokens.get("expires_in") or ACCESS_TOKEN_SECONDS)
        return float(tokens.get("expires_at") or 0) - time.time() < lifetime * REFRESH_WHEN_LEFT

    def _bearer(self) -> str:
        """The access token to use now: a newer one another worker stored, else ours, refreshed ahead
        of expiry."""
        shared = self._read_shared()
        if shared and self._issued(shared) > self._issued(self.ctx.credentials):
            self.ctx.credentials.update(shared)
        creds = self.ctx.credentials
        if not creds.get("access_token") or self._expiring(creds):
            self._refresh(creds.get("access_token", ""))
        return self.ctx.credentials["access_token"]

    def _refresh(self, failed_token: str) -> None:
        """Refresh under the per-account lock. After taking it, re-read the shared store: when another
        worker already rotated the tokens, use theirs instead of spending (and killing) the grant."""
        with self._refresh_lock():
            shared = self._read_shared()
            if shared and shared.get("access_token") != failed_token and not self._expiring(shared):
                self.ctx.credentials.update(shared)
                return
            latest = shared if self._issued(shared) >= self._issued(self.ctx.credentials) and shared else \
                self.ctx.credentials
            refresh_token = latest.get("refresh_token")
            if not refresh_token:
                raise AuthError("TecPet is not authorized in this clinic's Bling account yet; "
                                "the clinic must approve TecPet in Bling.")
            self._store(self._spend_refresh_token(refresh_token))

    def _spend_refresh_token(self, refresh_token: str) -> dict[str, str]:
        """A refresh token Bling refused once is remembered as dead, so later calls fail at once
        instead of knocking on the token endpoint again (too many token calls block the IP). The app
        credentials are part of the fingerprint: fixing a wrong client secret tries again."""
        creds = self.ctx.credentials
        attempt = f"{creds.get('client_id', '')}:{creds.get('client_secret', '')}:{refresh_token}"
        redis, fingerprint = self._redis(), hashlib.sha256(attempt.encode()).hexdigest()
        dead_key = f"tecpet:bling:dead-grant:{self.ctx.account_key}"
        if redis is not None and redis.get(dead_key) == fingerprint.encode():
            raise AuthError(self._auth_failure_text({"error": {"type": "invalid_grant",
                                                               "description": "refused earlier"}}))
        try:
            return self._token_call({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except AuthError:
            if redis is not None:
                redis.set(dead_key, fingerprint, ex=DEAD_GRANT_SECONDS)
            raise

    # ================================================================== API calls
    def _api(self, method: str, path: str, *, subject: str, params: Any = None, body: Any = None,
             fields: Mapping[str, str] = mapping.CONTACT_FIELDS) -> dict[str, Any]:
        """One Bling call: bearer token, one refresh-and-retry on 401, errors typed for the sync layer."""
        url = self.settings["base_url"].rstrip("/") + path
        # a token may expire again right after a refresh (another worker rotated it, or Bling aged
        # it): each refresh that succeeds earns another try, up to a few
        for attempt in range(4):
            token = self._bearer()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            resp = self.http(method, url, params=params, json=body, headers=headers)
            if resp.status_code != 401:
                return self._interpret(resp, subject, fields)
            if attempt < 3:
                self._refresh(token)  # an AuthError here: the grant itself is gone
        # every refresh worked, yet each new token was refused again (tokens aged out as fast as they
        # came): the authorization is fine, so this is worth retrying later, not a reason to re-approve
        raise TransientError("Bling refused several freshly refreshed access tokens in a row; retrying later",
                             status=401, raw=_json(resp))

    def _interpret(self, resp, subject: str, fields: Mapping[str, str]) -> dict[str, Any]:
        if 200 <= resp.status_code < 300:
            return _json(resp) if resp.content else {}
        body = _json(resp)
        if resp.status_code == 403:
            reason = mapping.error_from_body(body, 403, subject).message
            raise AuthError(f"Bling denied access; TecPet's app may lack a permission (scope). {reason}",
                            status=403, raw=body)
        if resp.status_code >= 500:
            raise TransientError(f"Bling answered HTTP {resp.status_code}", status=resp.status_code, raw=body)
        raise mapping.error_from_body(body, resp.status_code, subject, fields)

    def _page_size(self) -> int:
        return max(1, min(PAGE_LIMIT, int(self.settings.get("page_size") or PAGE_LIMIT)))

    def _list_page(self, path: str, params: Mapping[str, Any], page: int, *, subject: str,
                   limit: int | None = None) -> list[dict[str, Any]]:
        query = dict(params, pagina=page, limite=limit or self._page_size())
        return list(self._api("GET", path, params=query, subject=subject).get("data") or [])

    def _list_all(self, path: str, params: Mapping[str, Any], *, subject: str) -> list[dict[str, Any]]:
        """Every page: Bling gives no totals, so read until a page comes back short."""
        rows, page, limit = [], 1, self._page_size()
        while True:
            batch = self._list_page(path, params, page, subject=subject, limit=limit)
            rows.extend(batch)
            if len(batch) < limit:
                return rows
            page += 1

    # ================================================================== connection
    def test_connection(self) -> str:
        data = self._api("GET", "/empresas/me/dados-basicos", subject="connection test").get("data") or {}
        cnpj = mapping.alnum(data.get("cnpj"))
        return f"Connected to the Bling account of {data.get('nome', '?')}" + (f" (CNPJ {cnpj})" if cnpj else "")

    # ================================================================== customers
    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """By CPF/CNPJ (Bling's numeroDocumento filter, compared digits/letters only); customers
        without one by TecPet's id kept in the contact's code."""
        tax_id = mapping.alnum(customer.tax_id)
        if tax_id:
            rows = self._list_all("/contatos", {**CONTACTS_PULL, "numeroDocumento": tax_id}, subject="customer search")
            matches = [r for r in rows if mapping.alnum(r.get("numeroDocumento")) == tax_id]
        else:
            rows = self._list_all("/contatos", {**CONTACTS_PULL, "pesquisa": customer.id}, subject="customer search")
            matches = [r for r in rows if str(r.get("codigo") or "") == customer.id]
        matches = [r for r in matches if r.get("situacao") != "E"]
        if not matches:
            return None
        return self.get_customer(str(min(int(r["id"]) for r in matches)))

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        data = self._api("GET", f"/contatos/{int(remote_id)}", subject="customer")["data"]
        return mapping.remote_customer(data)

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        body = mapping.contact_payload(customer)
        data = self._api("POST", "/contatos", body=body, subject="customer")["data"]
        return PushResult(remote_id=str(data["id"]), created=True, remote_copy=body)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        return self._update_from(self.get_customer(remote_id), customer)

    def _update_from(self, current: RemoteCustomer, customer: CustomerRecord) -> PushResult:
        """PUT replaces the whole contact, so the new body starts from what Bling holds; nothing is
        sent when nothing TecPet manages changed."""
        if mapping.same_customer(customer, current.raw):
            return PushResult(remote_id=current.remote_id, created=False, remote_copy=current.raw)
        body = mapping.contact_payload(customer, current.raw)
        self._api("PUT", f"/contatos/{int(current.remote_id)}", body=body, subject="customer")
        return PushResult(remote_id=current.remote_id, created=False, remote_copy=body)

    def upsert_customers(self, batch: list[tuple[CustomerRecord, str | None]]) -> list[PushResult | ConnectorError]:
        """One by one (Bling has no batch write); the record found by CPF/CNPJ is reused for the
        update instead of being read twice."""
        out: list[PushResult | ConnectorError] = []
        for record, remote_id in batch:
            try:
                current = self.get_customer(remote_id) if remote_id else self.find_customer(record)
                out.append(self._update_from(current, record) if current else self.create_customer(record))
            except PermanentError as exc:
                out.append(exc)
        return out

    # ================================================================== orders and receivables
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """Order (pedido de venda) -> lancar-contas -> receivables. Each step first looks for what an
        earlier, interrupted attempt already made, because Bling has no idempotency key."""
        order = self._order_for(invoice)
        if order is None:
            body = mapping.order_payload(invoice, customer_remote_id, self._payment_ids(invoice))
            created = self._api("POST", "/pedidos/vendas", body=body, subject="order",
                                fields=mapping.INVOICE_FIELDS)["data"]
            order = self._api("GET", f"/pedidos/vendas/{int(created['id'])}", subject="order")["data"]
        receivables = self._order_receivables(order)
        if not receivables and invoice.installments:
            self._api("POST", f"/pedidos/vendas/{int(order['id'])}/lancar-contas", subject="receivables",
                      fields=mapping.INVOICE_FIELDS)
            receivables = self._order_receivables(order)
        return self._financial(order, receivables)

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        order = self._order_for(invoice)
        return self._financial(order, self._order_receivables(order)) if order else None

    @staticmethod
    def _financial(order: Mapping[str, Any], receivables: list[dict[str, Any]]) -> FinancialResult:
        return FinancialResult(order_remote_id=str(order["id"]), order_number=str(order.get("numero") or ""),
                               receivable_remote_ids=[str(r["id"]) for r in receivables])

    def _order_for(self, invoice: InvoiceRecord) -> dict[str, Any] | None:
        reference = mapping.order_reference(invoice)
        rows = self._list_all("/pedidos/vendas", {"numerosLojas[]": reference}, subject="order search")
        rows = [r for r in rows if r.get("numeroLoja") == reference]
        return min(rows, key=lambda r: int(r["id"])) if rows else None

    def _order_receivables(self, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The receivables whose origin is this order (there is no origin filter on /contas/receber:
        the customer and the issue-date window narrow the list)."""
        issued = date.fromisoformat(str(order["data"]))
        params = {"idContato": int(order["contato"]["id"]), "tipoFiltroData": "E",
                  "dataInicial": issued.isoformat(), "dataFinal": max(issued, self._erp_today()).isoformat()}
        rows = self._list_all("/contas/receber", params, subject="receivables search")
        mine = [r for r in rows if str((r.get("origem") or {}).get("id")) == str(order["id"])]
        return sorted(mine, key=lambda r: (str(r.get("vencimento")), int(r["id"])))

    def _payment_methods(self) -> list[dict[str, Any]]:
        if self._payment_methods_cache is None:
            self._payment_methods_cache = self._list_all("/formas-pagamentos", {}, subject="payment methods")
        return self._payment_methods_cache

    def _payment_ids(self, invoice: InvoiceRecord) -> dict[str, int]:
        """Bling wants the id of one of the account's own payment methods on every installment."""
        ids: dict[str, int] = {}
        for name in {inst.payment_method for inst in invoice.installments}:
            found = mapping.payment_method_id(name, self._payment_methods())
            if found is None:
                raise PermanentError(
                    f"Bling has no payment method called '{name}'. Register it in Bling "
                    "(Cadastros > Formas de pagamento) and bill again.",
                    field_errors=[FieldError("installments.payment_method", f"'{name}' does not exist in Bling")])
            ids[name] = found
        return ids

    # ================================================================== invoice issuing
    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult,
                      customer_remote_id: str) -> FiscalResult:
        """NFS-e for services (created, then sent to the municipality); NF-e for products (generated
        from the order, then sent to SEFAZ). Refusals come back as REJECTED with the reason."""
        if invoice.kind == "product":
            return self._issue_nfe(invoice, financial)
        return self._issue_nfse(invoice, customer_remote_id)

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        kind, _, remote_id = fiscal_remote_id.partition(":")
        if kind == "nfe":
            return mapping.nfe_result(self._api("GET", f"/nfe/{int(remote_id)}", subject="NF-e")["data"])
        return mapping.nfse_result(self._api("GET", f"/nfse/{int(remote_id or kind)}", subject="NFS-e")["data"])

    def _issue_nfse(self, invoice: InvoiceRecord, customer_remote_id: str) -> FiscalResult:
        entry = self._draft_nfse(invoice, customer_remote_id)
        if entry["sent"]:
            return self.invoice_status(f"nfse:{entry['id']}")
        try:
            sent = self._api("POST", f"/nfse/{entry['id']}/enviar", subject="service invoice (NFS-e)",
                             fields=mapping.CONTACT_FIELDS)["data"]
        except NotFoundError:
            self._journal_drop("nfse", invoice.id)
            raise
        except PermanentError as refused:
            self._discard_nfse(invoice, entry["id"])
            return mapping.rejection_result("nfse", str(entry["id"]), refused)
        self._journal_put("nfse", invoice.id, {"id": entry["id"], "sent": True})
        return mapping.nfse_result(sent)

    def _draft_nfse(self, invoice: InvoiceRecord, customer_remote_id: str) -> dict[str, Any]:
        """Create the NFS-e once per invoice. The RPS number comes from Bling's NFS-e setup, so two
        workers must not read it at the same time: the journal and the number share one lock."""
        with self.ctx.http.lock(f"bling:nfse:{self.ctx.account_key}", timeout=60.0, wait=60.0):
            entry = self._journal_get("nfse", invoice.id)
            if entry:
                return entry
            setup = self._api("GET", "/nfse/configuracoes", subject="NFS-e setup")["data"]
            numbering = ((setup.get("controle") or {}).get("numeracaoRPS") or {})
            body = mapping.nfse_payload(invoice, customer_remote_id, int(numbering.get("numero") or 1),
                                        str(numbering.get("serie") or "1"), self._service_code(setup),
                                        self._payment_ids(invoice))
            created = self._api("POST", "/nfse", body=body, subject="service invoice (NFS-e)",
                                fields=mapping.INVOICE_FIELDS)["data"]
            entry = {"id": int(created["id"]), "sent": False}
            self._journal_put("nfse", invoice.id, entry)
            return entry

    def _service_code(self, setup: Mapping[str, Any]) -> str:
        if self.settings.get("nfse_service_code"):
            return self.settings["nfse_service_code"]
        taxes = ((setup.get("ISS") or {}).get("tributos") or [])
        default = next((t for t in taxes if t.get("padrao")), taxes[0] if taxes else {})
        return str(((default.get("codigo") or {}).get("listaServico")) or "")

    def _discard_nfse(self, invoice: InvoiceRecord, note_id: int) -> None:
        """A refused draft holds the customer data as it was; remove it so the next attempt, after the
        data is fixed, creates a fresh one."""
        try:
            self._api("DELETE", f"/nfse/{note_id}", subject="service invoice (NFS-e)")
        except NotFoundError:
            pass
        self._journal_drop("nfse", invoice.id)

    def _issue_nfe(self, invoice: InvoiceRecord, financial: FinancialResult) -> FiscalResult:
        entry = self._journal_get("nfe", invoice.id)
        if entry is None:
            created = self._api("POST", f"/pedidos/vendas/{int(financial.order_remote_id)}/gerar-nfe",
                                subject="NF-e", fields=mapping.INVOICE_FIELDS)
            note_id = (created.get("data") or created)["idNotaFiscal"]
            entry = {"id": int(note_id), "sent": False}
            self._journal_put("nfe", invoice.id, entry)
        if not entry["sent"]:
            try:
                self._api("POST", f"/nfe/{entry['id']}/enviar", params={"enviarEmail": "false"}, subject="NF-e",
                          fields=mapping.CONTACT_FIELDS)
            except NotFoundError:
                self._journal_drop("nfe", invoice.id)
                raise
            except PermanentError as refused:
                # An NF-e refused by SEFAZ is fixed and re-sent inside Bling; the draft stays.
                return mapping.rejection_result("nfe", str(entry["id"]), refused)
            self._journal_put("nfe", invoice.id, {"id": entry["id"], "sent": True})
        return self.invoice_status(f"nfe:{entry['id']}")

    # -- crash journal: what was created for an invoice, so a retry continues instead of duplicating
    def _journal_key(self, kind: str, key: str) -> str:
        return f"tecpet:bling:journal:{self.ctx.account_key}:{kind}:{key}"

    def _journal_get(self, kind: str, key: str) -> dict[str, Any] | None:
        redis = self._redis()
        raw = redis.get(self._journal_key(kind, key)) if redis is not None else None
        return json.loads(raw) if raw else None

    def _journal_put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        redis = self._redis()
        if redis is not None:
            redis.set(self._journal_key(kind, key), json.dumps(value), ex=JOURNAL_SECONDS)

    def _journal_drop(self, kind: str, key: str) -> None:
        redis = self._redis()
        if redis is not None:
            redis.delete(self._journal_key(kind, key))

    # ================================================================== settling
    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """POST /contas/receber/{id}/baixar. A receivable already paid is left alone, and the same
        payment (receivable, date, amount) is never sent twice, so retries cannot pay twice."""
        payment_key = f"{receivable_remote_id}:{paid_on.isoformat()}:{Decimal(amount):.2f}"
        if self._journal_get("settle", payment_key):
            return
        path = f"/contas/receber/{int(receivable_remote_id)}"
        item = self._api("GET", path, subject="receivable")["data"]
        if int(item.get("situacao") or 1) == 2 or Decimal(str(item.get("saldo", 1))) <= 0:
            return
        if int(item.get("situacao") or 1) in (4, 5, 6):
            raise PermanentError("This receivable was cancelled or returned in Bling, so it cannot be settled.")
        body = {"data": paid_on.isoformat(), "usarDataVencimento": False,
                "portador": {"id": self._settle_id("settle_portador_id", item, "portador")},
                "categoria": {"id": self._settle_id("settle_categoria_id", item, "categoria")},
                "historico": "Recebimento registrado pelo TecPet", "valorRecebido": mapping.money(amount)}
        self._api("POST", f"{path}/baixar", body=body, subject="payment", fields=mapping.INVOICE_FIELDS)
        self._journal_put("settle", payment_key, {"done": True})

    def _settle_id(self, setting: str, item: Mapping[str, Any], field: str) -> int:
        chosen = self.settings.get(setting) or ((item.get(field) or {}).get("id"))
        if not chosen:
            words = {"portador": "bank/cash account (portador)", "categoria": "income category"}[field]
            raise PermanentError(f"Bling needs a {words} to register the payment; set it on the receivable in "
                                 f"Bling or in this integration's settings.")
        return int(chosen)

    # ================================================================== pulls
    def _erp_now(self) -> datetime:
        return datetime.now(mapping.BRASILIA).replace(tzinfo=None, microsecond=0)

    def _erp_today(self) -> date:
        return self._erp_now().date()

    def pull_customers(self, cursor: str | None) -> PullPage:
        """Contacts changed in Bling, window by window on dataAlteracao.

        Windows never overlap (nothing is delivered twice) and end a little in the past, so no
        contact can still enter a window once it is read. A window is listed whole in one call
        (list pages are cheap) and its ids wait in the cursor; each call then reads at most a page of
        full records, so a first sync of thousands of contacts is spread over many calls."""
        state = json.loads(cursor) if cursor else {}
        pending: list[str] = list(state.get("pending") or [])
        settled = self._erp_now() - timedelta(seconds=max(1, int(self.settings.get("pull_lag_seconds") or 0)))
        next_from = mapping.from_stamp(state["from"]) if state.get("from") else settled - MAX_WINDOW
        if not pending and next_from <= settled:
            end = min(settled, next_from + MAX_WINDOW)
            pending = self._changed_contact_ids(next_from, end)
            next_from = end + timedelta(seconds=1)
        batch, pending = pending[:self._page_size()], pending[self._page_size():]
        items = [found for found in (self._customer_if_any(rid) for rid in batch) if found]
        cursor_out = {"from": mapping.to_stamp(next_from), "pending": pending}
        return PullPage(items=items, cursor=json.dumps(cursor_out), more=bool(pending) or next_from <= settled)

    def _customer_if_any(self, remote_id: str) -> RemoteCustomer | None:
        """A contact deleted between the listing and now is simply not delivered."""
        try:
            return self.get_customer(remote_id)
        except NotFoundError:
            return None

    def _changed_contact_ids(self, start: datetime, end: datetime) -> list[str]:
        """Ids of contacts changed within [start, end], read page by page.

        Paging has one trap: a contact changed again while the pages are read leaves the window,
        the later pages shift up by one, and the contact at the page boundary is never seen. The
        window lies in the past, so contacts can only leave it; re-reading the last page tells
        whether any did, and then the window is read again (ids already found are kept)."""
        params = {**CONTACTS_PULL, "dataAlteracaoInicial": mapping.to_stamp(start),
                  "dataAlteracaoFinal": mapping.to_stamp(end)}
        limit = self._page_size()
        found: dict[str, None] = {}
        for _ in range(3):
            rows = self._list_all("/contatos", params, subject="changed customers")
            found.update((str(r["id"]), None) for r in rows)
            last_page = max(1, -(-len(rows) // limit))
            expected = len(rows) - (last_page - 1) * limit
            if len(rows) < limit or len(self._list_page("/contatos", params, last_page, subject="changed customers",
                                                        limit=limit)) == expected:
                break
        return list(found)

    def pull_receipts(self, cursor: str | None) -> PullPage:
        """Receipts (borderôs) by payment date (tipoFiltroData=R), which has day precision only: the
        window re-reads the last days and the cursor remembers what was delivered. Payments recorded
        in Bling with a date older than `receipts_lookback_days` are not seen."""
        state = json.loads(cursor) if cursor else {}
        today = self._erp_today()
        start = date.fromisoformat(state["from"]) if state.get("from") else today - MAX_WINDOW + timedelta(days=1)
        seen: dict[str, str] = dict(state.get("seen") or {})
        done: dict[str, str] = dict(state.get("done") or {})
        # One day ahead: a payment dated by a clock a few hours ahead of Brasília is still found.
        params = {"tipoFiltroData": "R", "dataInicial": start.isoformat(),
                  "dataFinal": (today + timedelta(days=1)).isoformat(), "situacoes[]": [2, 3]}
        listed = self._list_all("/contas/receber", params, subject="receipts")
        # A pass visits each receivable once, in id order, a page per call (`after` resumes it).
        after = int(state.get("after") or 0)
        todo = sorted((r for r in listed if str(r["id"]) not in done and int(r["id"]) > after),
                      key=lambda r: int(r["id"]))
        batch = todo[:self._page_size()]
        items: list[Receipt] = []
        for row in batch:
            items.extend(self._new_receipts(row, start, seen, done))
        more = len(todo) > len(batch)
        if not more:
            start = max(start, today - timedelta(days=int(self.settings.get("receipts_lookback_days") or 7)))
        keep = start.isoformat()
        cursor_out = {"from": keep, "after": int(batch[-1]["id"]) if more else 0,
                      "seen": {k: v for k, v in seen.items() if v >= keep},
                      "done": {k: v for k, v in done.items() if v >= keep}}
        return PullPage(items=items, cursor=json.dumps(cursor_out, sort_keys=True), more=more)

    def _new_receipts(self, row: Mapping[str, Any], start: date, seen: dict[str, str],
                      done: dict[str, str]) -> list[Receipt]:
        receivable = self._api("GET", f"/contas/receber/{int(row['id'])}", subject="receivable")["data"]
        method = self._method_name(receivable)
        out, last_day = [], start.isoformat()
        for bordero_id in receivable.get("borderos") or []:
            bordero = self._api("GET", f"/borderos/{int(bordero_id)}", subject="receipt")["data"]
            receipt = mapping.receipt_from(receivable, bordero, method)
            day = str(bordero.get("data") or last_day)
            last_day = max(last_day, day)
            if receipt.remote_id in seen or day < start.isoformat():
                continue
            seen[receipt.remote_id] = day
            out.append(receipt)
        if int(receivable.get("situacao") or 0) == 2:  # fully received: nothing more can come
            done[str(receivable["id"])] = last_day
        return out

    def _method_name(self, receivable: Mapping[str, Any]) -> str:
        wanted = (receivable.get("formaPagamento") or {}).get("id")
        return next((str(m.get("descricao")) for m in self._payment_methods() if m.get("id") == wanted), "")

    # ================================================================== webhooks
    def verify_webhook(self, headers: dict[str, str], body: bytes) -> bool:
        """X-Bling-Signature-256: sha256=<hex HMAC-SHA256 of the raw body keyed with the app's
        client secret>, compared in constant time."""
        secret = self.ctx.credentials.get("client_secret", "")
        signature = next((v for k, v in (headers or {}).items() if k.lower() == "x-bling-signature-256"), "")
        if not secret or not signature:
            return False
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.strip().lower())

    def webhook_changes(self, body: bytes) -> list[tuple[str, str]]:
        """(entity, remote id) pairs named in a webhook delivery, each once; unknown resources keep
        Bling's name so nothing is silently dropped."""
        try:
            payload = json.loads(body)
        except ValueError:
            return []
        events = payload if isinstance(payload, list) else [payload]
        changes: list[tuple[str, str]] = []
        for event in events:
            change = _webhook_change(event)
            if change and change not in changes:
                changes.append(change)
        return changes


def _arrival_margin(limit: RateLimit) -> RateLimit:
    """Bling counts requests as they arrive, and a request can leave here late (a busy worker, a
    slow connection) and land next to the following one. Short windows get a further 10 % on top of
    the shared limiter's own margin: a 429 costs a second of back-off and counts towards the error
    storm that gets the IP blocked. The daily window keeps its full budget."""
    return RateLimit(windows=tuple((n, s * ARRIVAL_MARGIN if s < 3600 else s) for n, s in limit.windows),
                     max_concurrency=limit.max_concurrency)


def _webhook_change(event: Any) -> tuple[str, str] | None:
    if not isinstance(event, dict):
        return None
    resource = str(event.get("event") or "").split(".")[0]
    remote_id = (event.get("data") or {}).get("id") if isinstance(event.get("data"), dict) else None
    if not resource or remote_id in (None, ""):
        return None
    return WEBHOOK_ENTITIES.get(resource, resource), str(remote_id)


def _json(resp) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:500]
