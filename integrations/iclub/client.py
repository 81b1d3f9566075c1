"""iClub, through the REST contract TecPet PROPOSED to the vendor (no public iClub API exists).

Nothing here has met a real iClub system: the product keeps every feature off while
`contract_pending` is True. Once iClub answers, only settings and `mapping.py` should need to change.

The contract, as implemented (and as the sandbox enforces):
- base URL per tenant (`https://<tenant-host>/api/v1`), JSON UTF-8, money as "0.00" strings, CPF/CNPJ/CEP
  as digits (alphanumeric CNPJ kept), ISO-8601 timestamps with offset;
- auth chosen in `auth_style`: "bearer" (`Authorization: Bearer <api_token>`, the default), "api_key"
  (`X-Api-Key`), or "client_credentials" (`POST /oauth/token` -> access_token with `expires_in`; renewed
  once per account under a lock, before expiry or after a 401). A static token that stops working is an
  AuthError: support must issue a new one;
- lists `?pagina&por_pagina&alterado_desde` (inclusive) -> `{dados, pagina, por_pagina, total, tem_mais}`
  ordered by (alterado_em, id);
- errors `{"erro": {"codigo", "mensagem", "campos": [{"campo", "mensagem"}]}}`: 422 VALIDACAO, 404,
  409 CONFLITO, 401, 403, 429 LIMITE with Retry-After, 503 INDISPONIVEL;
- writes carry `Idempotency-Key` (a replay returns the first result) and `codigo_externo` (our id);
- webhooks signed with HMAC-SHA256 of the body in `X-Assinatura`.

Limits: none known. We propose 10 requests per second and 300 per minute per tenant; the sandbox
enforces the same by default.
"""
from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from typing import Any

from ..base import (AuthError, Capability, Connector, CredentialField, CustomerRecord, FinancialResult, FiscalResult,
                    InvoiceRecord, PermanentError, PullPage, PushResult, RateLimit,
                    RecordRequirement, RemoteCustomer, SettingField, TransientError)
from . import mapping

class IClubConnector(Connector):
    """Every capability of the proposed contract; all off in the product until iClub confirms it."""

    name = "iclub"
    label = "iClub"
    two_way = True
    contract_pending = True
    capabilities = frozenset({
        Capability.PUSH_CUSTOMERS, Capability.PULL_CUSTOMERS, Capability.GENERATE_FINANCIAL,
        Capability.ISSUE_INVOICE, Capability.TRACK_INVOICE, Capability.PULL_POS_SALES, Capability.PULL_RECEIPTS,
        Capability.SETTLE_RECEIVABLE, Capability.WEBHOOKS,
    })
    credential_fields = (
        CredentialField("api_token", "API token", required=False, help="For the bearer and X-Api-Key styles."),
        CredentialField("client_id", "Client id", secret=False, required=False, help="For client credentials."),
        CredentialField("client_secret", "Client secret", required=False, help="For client credentials."),
        CredentialField("webhook_secret", "Webhook signing secret", required=False),
    )
    setting_fields = (
        SettingField("base_url", "API address", "https://{tenant_host}/api/v1",
                     help="iClub has published no production address; the contract proposes one per tenant."),
        SettingField("tenant_host", "Tenant host", "", help="Fills {tenant_host} in the address."),
        SettingField("auth_style", "Authentication", "bearer", help="bearer | api_key | client_credentials"),
        SettingField("token_path", "Token path (client credentials)", "/oauth/token"),
        SettingField("page_size", "Records per page", "100"),
    )
    auth_kind = "static"
    rate_limit = RateLimit(windows=((10, 1.0), (300, 60.0)), safety=0.10)
    batch_size = 50
    record_requirements = (
        RecordRequirement("tax_id", "iclub.tax_id_required", "error", "iClub requires the CPF/CNPJ (cpf_cnpj).",
                          required=True),
        RecordRequirement("zip_code", "iclub.zip_code_required", "error", "iClub requires the CEP (endereco.cep).",
                          required=True),
        RecordRequirement("city_ibge_code", "iclub.city_ibge_code_required", "error",
                          "iClub requires the IBGE city code (endereco.codigo_ibge).", required=True),
    )
    notes = (
        "Contract pending vendor confirmation: enable only after iClub confirms the API.",
        "iClub has no public API: this integration follows the contract TecPet proposed and has only run against "
        "TecPet's own test server.",
    )

    # ------------------------------------------------------------------ transport
    def _base_url(self) -> str:
        base = self.settings["base_url"].replace("{tenant_host}", self.settings.get("tenant_host", "")).rstrip("/")
        if "{" in base or base.startswith("https:///") or not base.startswith(("http://", "https://")):
            raise PermanentError("The iClub API address is not configured (set the tenant host or the address).")
        return base

    def _auth_headers(self) -> dict[str, str]:
        style = self.settings["auth_style"]
        if style == "api_key":
            return {"X-Api-Key": self.ctx.credentials.get("api_token", "")}
        if style == "client_credentials":
            return {"Authorization": f"Bearer {self._access_token()}"}
        return {"Authorization": f"Bearer {self.ctx.credentials.get('api_token', '')}"}

    def _request(self, method: str, path: str, doing: str, *, json: Any = None, params: dict[str, Any] | None = None,
                 idempotency_key: str | None = None) -> Any:
        """One API call; a 401 with client credentials renews the token once and tries again."""
        resp = self._send(method, path, json, params, idempotency_key)
        if resp.status_code == 401 and self.settings["auth_style"] == "client_credentials":
            self._renew_token(stale=self.ctx.credentials.get("access_token"))
            resp = self._send(method, path, json, params, idempotency_key)
        if resp.status_code >= 300:
            raise mapping.error_for(resp.status_code, _body(resp), doing)
        return _body(resp) if resp.content else {}

    def _send(self, method, path, json, params, idempotency_key):
        headers = {"Accept": "application/json", **self._auth_headers()}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.http(method, self._base_url() + path, json=json, params=params, headers=headers)

    # ------------------------------------------------------------------ client credentials
    def _access_token(self) -> str:
        creds = self.ctx.credentials
        expires_at = float(creds.get("access_token_expires_at") or 0)
        if creds.get("access_token") and expires_at - 60 > time.time():
            return creds["access_token"]
        return self._renew_token(stale=creds.get("access_token"))

    def _renew_token(self, stale: str | None) -> str:
        """Once per account: another worker may have renewed already (then its token is reused)."""
        with self.ctx.http.lock(f"oauth:{self.name}:{self.ctx.account_key}"):
            creds = self.ctx.credentials
            current = creds.get("access_token")
            if current and current != stale and float(creds.get("access_token_expires_at") or 0) - 60 > time.time():
                return current
            token, lifetime = self._fetch_token()
            creds.update(access_token=token, access_token_expires_at=str(int(time.time() + lifetime)))
            self.ctx.save_credentials(dict(creds))
            return token

    def _fetch_token(self) -> tuple[str, float]:
        creds = self.ctx.credentials
        resp = self.http("POST", self._base_url() + self.settings["token_path"], headers={"Accept": "application/json"},
                         data={"grant_type": "client_credentials", "client_id": creds.get("client_id", ""),
                               "client_secret": creds.get("client_secret", "")})
        body = _body(resp)
        if resp.status_code in (400, 401, 403):
            _, message, _ = mapping.error_of(body)
            raise AuthError(f"iClub refused the client credentials: {message or resp.status_code}",
                            status=resp.status_code, raw=body)
        if resp.status_code >= 300 or not isinstance(body, dict) or not body.get("access_token"):
            raise TransientError(f"iClub's token endpoint answered HTTP {resp.status_code}", status=resp.status_code)
        return str(body["access_token"]), float(body.get("expires_in") or 3600)

    # ------------------------------------------------------------------ connection
    def test_connection(self) -> str:
        body = self._request("GET", "/clientes", "checking the connection", params={"pagina": 1, "por_pagina": 1})
        return f"Connected to iClub ({body.get('total', 0)} customers)"

    # ------------------------------------------------------------------ customers
    def _customers_where(self, **filters: str) -> list[RemoteCustomer]:
        body = self._request("GET", "/clientes", "searching customers", params={**filters, "por_pagina": 10})
        rows, _ = mapping.page_rows(body)
        return [mapping.cliente_to_remote(row) for row in rows]

    def find_customer(self, customer: CustomerRecord) -> RemoteCustomer | None:
        """codigo_externo (our id) first, then the CPF/CNPJ compared as letters and digits."""
        if customer.id:
            hits = [c for c in self._customers_where(codigo_externo=customer.id) if c.record.id == customer.id]
            if hits:
                return hits[0]
        key = mapping.tax_id_key(customer.tax_id)
        if key:
            hits = [c for c in self._customers_where(cpf_cnpj=key) if c.record.tax_id == key]
            if hits:
                return hits[0]
        return None

    def get_customer(self, remote_id: str) -> RemoteCustomer:
        return mapping.cliente_to_remote(self._request("GET", f"/clientes/{remote_id}", "reading a customer"))

    def create_customer(self, customer: CustomerRecord) -> PushResult:
        """POST with an Idempotency-Key; a 409 (the CPF/CNPJ is already there) adopts that record."""
        payload = mapping.customer_to_cliente(customer)
        key = f"tecpet:cliente:{customer.id}:{mapping.payload_fingerprint(payload)}"
        try:
            data = self._request("POST", "/clientes", "creating the customer", json=payload, idempotency_key=key)
        except PermanentError as exc:
            if exc.status != 409:
                raise
            found = self.find_customer(customer)
            if found is None:
                raise
            return self.update_customer(found.remote_id, customer)
        return PushResult(str(data["id"]), created=True, remote_copy=data)

    def update_customer(self, remote_id: str, customer: CustomerRecord) -> PushResult:
        data = self._request("PATCH", f"/clientes/{remote_id}", "updating the customer",
                             json=mapping.customer_to_cliente(customer))
        return PushResult(str(data["id"]), created=False, remote_copy=data)

    # ------------------------------------------------------------------ sale, receivables, invoice
    def push_invoice(self, invoice: InvoiceRecord, customer_remote_id: str) -> FinancialResult:
        """POST /vendas (iClub makes one receivable per parcela), then read the receivables back."""
        payload = mapping.invoice_to_venda(invoice, customer_remote_id)
        try:
            venda = self._request("POST", "/vendas", "creating the sale", json=payload,
                                  idempotency_key=f"tecpet:venda:{invoice.id}")
        except PermanentError as exc:
            existing = self.find_invoice(invoice) if exc.status == 409 else None
            if existing is None:
                raise
            return existing
        return mapping.financial_result(venda, self._receivables_of(str(venda["id"])))

    def _receivables_of(self, venda_id: str) -> list[dict[str, Any]]:
        body = self._request("GET", "/contas-receber", "reading receivables", params={"venda_id": venda_id,
                                                                                     "por_pagina": 100})
        return mapping.page_rows(body)[0]

    def find_invoice(self, invoice: InvoiceRecord) -> FinancialResult | None:
        body = self._request("GET", "/vendas", "searching the sale", params={"codigo_externo": invoice.id})
        rows = [r for r in mapping.page_rows(body)[0] if str(r.get("codigo_externo")) == invoice.id]
        if not rows:
            return None
        return mapping.financial_result(rows[0], self._receivables_of(str(rows[0]["id"])))

    def issue_invoice(self, invoice: InvoiceRecord, financial: FinancialResult, customer_remote_id: str) -> FiscalResult:
        nota = self._request("POST", "/notas-fiscais", "requesting the invoice",
                             json={"venda_id": financial.order_remote_id, "modelo": mapping.INVOICE_MODELS[invoice.kind]},
                             idempotency_key=f"tecpet:nota:{invoice.id}")
        return mapping.fiscal_result(nota)

    def invoice_status(self, fiscal_remote_id: str) -> FiscalResult:
        return mapping.fiscal_result(self._request("GET", f"/notas-fiscais/{fiscal_remote_id}", "reading the invoice"))

    def settle_receivable(self, receivable_remote_id: str, amount: Decimal, paid_on: date) -> None:
        """The key is the payment itself, so a retried call never settles twice."""
        key = f"tecpet:baixa:{receivable_remote_id}:{paid_on.isoformat()}:{mapping.money(amount)}"
        self._request("POST", f"/contas-receber/{receivable_remote_id}/baixa", "settling the receivable",
                      json=mapping.settlement(amount, paid_on), idempotency_key=key)

    # ------------------------------------------------------------------ pulls
    def _pull(self, path: str, cursor: str | None, convert: mapping.Converter, doing: str) -> PullPage:
        """One page of changes since the cursor; pages on while a page holds only records already handed over."""
        state = mapping.ChangeCursor.load(cursor)
        page_number, size = 1, int(self.settings["page_size"])
        while True:
            params: dict[str, Any] = {"pagina": page_number, "por_pagina": size}
            if state.since:
                params["alterado_desde"] = state.since
            rows, more = mapping.page_rows(self._request("GET", path, doing, params=params))
            fresh = [r for r in rows if not state.is_seen(r)]
            if fresh or not more:
                return PullPage(items=[convert(r) for r in fresh], cursor=state.after(fresh).dump(), more=more)
            page_number += 1

    def pull_customers(self, cursor: str | None) -> PullPage:
        return self._pull("/clientes", cursor, mapping.cliente_to_remote, "reading changed customers")

    def pull_pos_sales(self, cursor: str | None) -> PullPage:
        return self._pull("/pdv/vendas", cursor, mapping.pos_sale, "reading counter sales")

    def pull_receipts(self, cursor: str | None) -> PullPage:
        return self._pull("/recebimentos", cursor, mapping.receipt, "reading receipts")

    # ------------------------------------------------------------------ webhooks
    def verify_webhook(self, headers: dict[str, str], body: bytes) -> bool:
        given = next((v for k, v in headers.items() if k.lower() == mapping.SIGNATURE_HEADER.lower()), "")
        return mapping.signature_matches(self.ctx.credentials.get("webhook_secret", ""), given, body)


def _body(resp) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:300]
