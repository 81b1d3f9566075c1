"""iClub shapes, per the REST contract TecPet proposed (iClub has not confirmed any of it).

Pure functions: canonical records <-> the contract's JSON, the contract's error body -> typed errors,
the change cursor and the webhook signature. No I/O.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from ..base import (AuthError, ConnectorError, CustomerRecord, FieldError, FinancialResult, FiscalResult, FiscalState,
                    InvoiceRecord, NotFoundError, PermanentError, PosSale, Receipt, RemoteCustomer, TransientError)

CENT = Decimal("0.01")

# contract field -> canonical field (also how validation errors name their fields)
CUSTOMER_FIELDS: dict[str, str] = {
    "codigo_externo": "id", "tipo_pessoa": "person_type", "cpf_cnpj": "tax_id", "nome": "name",
    "razao_social": "name", "inscricao_estadual": "state_registration", "email": "email", "telefone": "phone",
    "endereco.cep": "zip_code", "endereco.logradouro": "street", "endereco.numero": "number",
    "endereco.complemento": "complement", "endereco.bairro": "district", "endereco.cidade": "city",
    "endereco.codigo_ibge": "city_ibge_code", "endereco.uf": "state",
    "cep": "zip_code", "logradouro": "street", "numero": "number", "complemento": "complement",
    "bairro": "district", "cidade": "city", "codigo_ibge": "city_ibge_code", "uf": "state",
}


def money(value: Decimal) -> str:
    """Money travels as a decimal string with two places."""
    return str(Decimal(value).quantize(CENT))


def to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(CENT)
    except InvalidOperation:
        return Decimal(0).quantize(CENT)


def tax_id_key(value: str) -> str:
    """CPF/CNPJ as letters and digits, upper case (the alphanumeric CNPJ keeps its letters)."""
    return re.sub(r"[^0-9A-Za-z]", "", value or "").upper()


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- customers
def customer_to_cliente(customer: CustomerRecord) -> dict[str, Any]:
    """POST/PATCH /clientes body."""
    company = customer.person_type == "PJ"
    return {
        "codigo_externo": customer.id,
        "tipo_pessoa": "J" if company else "F",
        "cpf_cnpj": tax_id_key(customer.tax_id),
        "nome": customer.name.strip(),
        "razao_social": customer.name.strip() if company else "",
        "inscricao_estadual": customer.state_registration.strip(),
        "email": customer.email.strip(),
        "telefone": digits(customer.phone),
        "endereco": {
            "cep": digits(customer.zip_code), "logradouro": customer.street.strip(), "numero": customer.number.strip(),
            "complemento": customer.complement.strip(), "bairro": customer.district.strip(),
            "cidade": customer.city.strip(), "codigo_ibge": digits(customer.city_ibge_code),
            "uf": customer.state.strip().upper(),
        },
    }


def payload_fingerprint(payload: dict[str, Any]) -> str:
    """Short stable hash of a body: part of an Idempotency-Key, so a changed body is a new request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cliente_to_remote(data: dict[str, Any]) -> RemoteCustomer:
    address = data.get("endereco") or {}
    text = lambda source, key: str(source.get(key) or "").strip()  # noqa: E731 - a tiny reader
    record = CustomerRecord(
        id=text(data, "codigo_externo"), person_type="PJ" if text(data, "tipo_pessoa") == "J" else "PF",
        name=text(data, "nome") or text(data, "razao_social"), tax_id=tax_id_key(text(data, "cpf_cnpj")),
        state_registration=text(data, "inscricao_estadual"), email=text(data, "email"), phone=text(data, "telefone"),
        zip_code=digits(text(address, "cep")), street=text(address, "logradouro"), number=text(address, "numero"),
        complement=text(address, "complemento"), district=text(address, "bairro"), city=text(address, "cidade"),
        city_ibge_code=digits(text(address, "codigo_ibge")), state=text(address, "uf").upper())
    return RemoteCustomer(remote_id=str(data["id"]), record=record, modified_at=parse_timestamp(data.get("alterado_em")),
                          raw=dict(data))


# --------------------------------------------------------------------------- sales, receivables, invoices
def invoice_to_venda(invoice: InvoiceRecord, cliente_id: str) -> dict[str, Any]:
    """POST /vendas body: items and installments; iClub creates the receivables from `parcelas`."""
    return {
        "codigo_externo": invoice.id,
        "cliente_id": cliente_id,
        "tipo": "produto" if invoice.kind == "product" else "servico",
        "data": invoice.issue_date.isoformat(),
        "numero_documento": invoice.number,
        "itens": [{
            "codigo": item.service_code or f"ITEM-{position}", "descricao": item.description,
            "quantidade": str(item.quantity), "valor_unitario": money(item.unit_price), "desconto": "0.00",
            "tipo": "produto" if item.kind == "product" else "servico",
            **({"codigo_servico_municipal": item.service_code} if item.service_code else {}),
        } for position, item in enumerate(invoice.items, start=1)],
        "parcelas": [{"numero": i.number, "vencimento": i.due_date.isoformat(), "valor": money(i.amount),
                      "forma_pagamento": i.payment_method} for i in invoice.installments],
        "observacao": invoice.notes,
    }


def financial_result(venda: dict[str, Any], contas: list[dict[str, Any]]) -> FinancialResult:
    ordered = sorted(contas, key=lambda c: int(c.get("numero") or 0))
    return FinancialResult(order_remote_id=str(venda["id"]), order_number=str(venda.get("numero") or ""),
                           receivable_remote_ids=[str(c["id"]) for c in ordered])


INVOICE_MODELS = {"service": "nfse", "product": "nfe"}

FISCAL_STATES = {"processando": FiscalState.PENDING, "autorizada": FiscalState.ISSUED,
                 "rejeitada": FiscalState.REJECTED, "cancelada": FiscalState.CANCELLED}


def fiscal_result(nota: dict[str, Any]) -> FiscalResult:
    status = str(nota.get("status") or "processando")
    return FiscalResult(state=FISCAL_STATES.get(status, FiscalState.PENDING), remote_id=str(nota.get("id") or ""),
                        number=str(nota.get("numero") or ""), message=str(nota.get("motivo") or ""),
                        access_key=str(nota.get("chave_acesso") or ""))


def settlement(amount: Decimal, paid_on: date) -> dict[str, Any]:
    return {"data_pagamento": paid_on.isoformat(), "valor_pago": money(amount), "juros": "0.00", "multa": "0.00",
            "desconto": "0.00"}


def pos_sale(data: dict[str, Any]) -> PosSale:
    payments = data.get("pagamentos") or []
    methods = list(dict.fromkeys(str(p.get("forma") or "") for p in payments if p.get("forma")))
    items = [{"product_code": str(i.get("codigo") or ""), "description": str(i.get("descricao") or ""),
              "quantity": Decimal(str(i.get("quantidade") or "0")), "total": to_decimal(i.get("valor_total"))}
             for i in data.get("itens") or []]
    total = sum((to_decimal(p.get("valor")) for p in payments), Decimal("0.00")) if payments else \
        sum((i["total"] for i in items), Decimal("0.00"))
    sold_at = parse_timestamp(data.get("data_hora")) or parse_timestamp(data.get("alterado_em"))
    if sold_at is None:
        raise PermanentError(f"iClub sent counter sale {data.get('id')} without a readable date (data_hora)", raw=data)
    return PosSale(remote_id=str(data["id"]), sold_at=sold_at,
                   total=total, customer_remote_id=tax_id_key(str(data.get("cliente_cpf_cnpj") or "")),
                   payment_method=" + ".join(methods), status="cancelled" if data.get("cancelada") else "completed",
                   items=items, raw=dict(data))


def receipt(data: dict[str, Any]) -> Receipt:
    return Receipt(remote_id=str(data["id"]), amount=to_decimal(data.get("valor_pago")),
                   paid_at=parse_date(data.get("data_pagamento")),
                   receivable_remote_id=str(data.get("conta_receber_id") or ""),
                   origin=f"venda {data['venda_id']}" if data.get("venda_id") else "",
                   customer_remote_id=str(data.get("cliente_id") or ""),
                   payment_method=str(data.get("forma_pagamento") or ""), raw=dict(data))


# --------------------------------------------------------------------------- errors
def error_of(body: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """(codigo, mensagem, campos) of the contract's `{"erro": {...}}` body; blanks when absent."""
    erro = body.get("erro") if isinstance(body, dict) else None
    if not isinstance(erro, dict):
        return "", "", []
    campos = [c for c in erro.get("campos") or [] if isinstance(c, dict)]
    return str(erro.get("codigo") or ""), str(erro.get("mensagem") or ""), campos


def error_for(status: int, body: Any, doing: str) -> ConnectorError:
    """A non-2xx answer as the typed error the sync layer acts on; the ERP's words stay in the message."""
    code, message, campos = error_of(body)
    reason = message or f"HTTP {status}"
    if status == 401:
        return AuthError(f"iClub refused the credentials: {reason}", status=status, raw=body)
    if status == 403:
        return AuthError(f"iClub denied access while {doing}: {reason}", status=status, raw=body)
    if status == 404:
        return NotFoundError(f"iClub could not find it while {doing}: {reason}", status=status, raw=body)
    if status in (400, 409, 422):
        field_errors = [FieldError(CUSTOMER_FIELDS.get(str(c.get("campo")), str(c.get("campo") or "")),
                                   str(c.get("mensagem") or "")) for c in campos]
        label = f" [{code}]" if code else ""
        return PermanentError(f"iClub refused {doing}: {reason}{label}", field_errors=field_errors, status=status,
                              raw=body)
    return TransientError(f"iClub answered HTTP {status} while {doing}: {reason}", status=status, raw=body)


# --------------------------------------------------------------------------- change cursor
@dataclass
class ChangeCursor:
    """Position in a change feed ordered by (alterado_em, id).

    `alterado_desde` is inclusive in the contract, so what was already handed over at exactly `since`
    is remembered in `seen` and skipped: nothing is handed over twice, and nothing sharing a timestamp
    across a page boundary is lost. Timestamps have one-second resolution, so a record changed again
    within that second keeps its timestamp: `seen` holds id AND content, and the new version passes.
    """

    since: str | None = None
    seen: list[str] = field(default_factory=list)

    def dump(self) -> str:
        return json.dumps({"since": self.since, "seen": self.seen}, separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None) -> "ChangeCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data.get("since"), [str(i) for i in data.get("seen") or []])

    @staticmethod
    def version(row: dict[str, Any]) -> str:
        return f"{row.get('id')}:{payload_fingerprint(row)}"

    def is_seen(self, row: dict[str, Any]) -> bool:
        return self.since is not None and _same_moment(row.get("alterado_em"), self.since) and \
            self.version(row) in self.seen

    def after(self, rows: list[dict[str, Any]]) -> "ChangeCursor":
        """The cursor once `rows` (in feed order) are handed over."""
        if not rows:
            return self
        last = str(rows[-1].get("alterado_em"))
        carried = self.seen if self.since is not None and _same_moment(last, self.since) else []
        at_last = [self.version(r) for r in rows if _same_moment(r.get("alterado_em"), last)]
        return ChangeCursor(last, list(dict.fromkeys(carried + at_last)))


def _same_moment(a: Any, b: Any) -> bool:
    left, right = parse_timestamp(a), parse_timestamp(b)
    return left is not None and right is not None and left == right


def page_rows(body: Any) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(body, dict):
        return [], False
    return [r for r in body.get("dados") or [] if isinstance(r, dict)], bool(body.get("tem_mais"))


Converter = Callable[[dict[str, Any]], Any]


# --------------------------------------------------------------------------- webhooks
SIGNATURE_HEADER = "X-Assinatura"


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the raw body, hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, header_value: str, body: bytes) -> bool:
    """Accepts the bare hex digest and the common "sha256=<hex>" form (the exact format is unconfirmed)."""
    given = (header_value or "").strip()
    given = given.split("=", 1)[1] if given.lower().startswith("sha256=") else given
    return bool(secret) and bool(given) and hmac.compare_digest(given.lower(), signature(secret, body))
