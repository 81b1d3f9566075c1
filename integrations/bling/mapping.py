"""Pure translations between TecPet's canonical records and Bling API v3 payloads (no I/O).

Bling facts these functions encode (see /work/shared/erp/bling.md and the official spec):
- CPF/CNPJ travel without punctuation; Bling's filter ignores punctuation, so we compare digits/letters;
- a contact PUT replaces the whole record, so updates start from the record Bling holds;
- read-only properties (the record's own `id`) must not be sent back;
- money and quantities are JSON numbers, dates YYYY-MM-DD, date-time filters "YYYY-MM-DD HH:MM:SS"
  in Brasília time;
- errors are {"error": {type, message, description, fields[{code, msg, element, namespace,
  collection[{index, ...}]}]}}, and become PermanentError with canonical field names.
"""
from __future__ import annotations

import copy
import re
import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from ..base import (CustomerRecord, FieldError, FiscalResult, FiscalState, InvoiceRecord, NotFoundError,
                    PermanentError, Receipt, RemoteCustomer)

# Brazil has had no daylight saving time since 2019: Brasília time is UTC-3 all year.
BRASILIA = timezone(timedelta(hours=-3), "BRT")
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
ORDER_REF_PREFIX = "TP-"

# Bling contact field -> canonical customer field (payloads and error messages).
CONTACT_FIELDS: dict[str, str] = {
    "nome": "name", "numeroDocumento": "tax_id", "tipo": "person_type", "ie": "state_registration",
    "indicadorIe": "state_registration", "email": "email", "emailNotaFiscal": "email", "telefone": "phone",
    "celular": "phone", "cep": "zip_code", "endereco": "street", "numero": "number", "complemento": "complement",
    "bairro": "district", "municipio": "city", "uf": "state", "codigo": "id", "contato": "customer",
}

# Bling order / NFS-e fields -> canonical invoice words, for errors about invoices.
INVOICE_FIELDS: dict[str, str] = {
    "contato": "customer", "data": "issue_date", "dataSaida": "issue_date", "dataPrevista": "issue_date",
    "itens": "items", "servicos": "items", "parcelas": "installments", "dataVencimento": "due_date",
    "valor": "amount", "quantidade": "quantity", "descricao": "description", "codigo": "service_code",
    "formaPagamento": "payment_method", "numeroLoja": "id", "numeroRPS": "rps_number", "serie": "rps_series",
    "valorRecebido": "amount", "situacao": "status",
}

# Canonical payment method names -> the fiscal payment type (tPag) Bling stores as tipoPagamento.
PAYMENT_TYPES: dict[str, tuple[int, ...]] = {
    "dinheiro": (1,), "cheque": (2,), "cartao de credito": (3,), "cartao de debito": (4,),
    "credito loja": (5,), "vale alimentacao": (10,), "vale refeicao": (11,), "vale presente": (12,),
    "vale combustivel": (13,), "duplicata mercantil": (14,), "boleto": (15,), "boleto bancario": (15,),
    "deposito bancario": (16,), "pix": (17, 20), "transferencia": (18,), "outros": (99,),
}

# NFS-e situacao: 0 Pendente, 1 Emitida, 2 Disponível para consulta, 3 Cancelada.
NFSE_STATES: dict[int, FiscalState] = {0: FiscalState.PENDING, 1: FiscalState.ISSUED, 2: FiscalState.PENDING,
                                       3: FiscalState.CANCELLED}
# NF-e situacao (1..11) as the spec lists them.
NFE_STATES: dict[int, FiscalState] = {
    1: FiscalState.PENDING, 2: FiscalState.CANCELLED, 3: FiscalState.PENDING, 4: FiscalState.REJECTED,
    5: FiscalState.ISSUED, 6: FiscalState.ISSUED, 7: FiscalState.ISSUED, 8: FiscalState.PENDING,
    9: FiscalState.REJECTED, 10: FiscalState.PENDING, 11: FiscalState.REJECTED,
}


# --------------------------------------------------------------------------- small formatters
def alnum(value: Any) -> str:
    """Digits and letters only, upper case: how tax IDs are compared (alphanumeric CNPJ included)."""
    return re.sub(r"[^0-9A-Za-z]", "", str(value or "")).upper()


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def plain_key(text: str) -> str:
    """Lower case without accents or extra spaces, to match names people typed differently."""
    folded = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    return " ".join(folded.lower().split())


def money(value: Decimal) -> float:
    """Bling wants JSON numbers with two decimals."""
    return float(Decimal(value).quantize(Decimal("0.01")))


def quantity(value: Decimal) -> float:
    return float(Decimal(value).quantize(Decimal("0.0001")))


def to_stamp(moment: datetime) -> str:
    """A date-time filter value: Brasília wall-clock time, no zone suffix."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(BRASILIA).replace(tzinfo=None)
    return moment.strftime(STAMP_FORMAT)


def from_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT)


def order_reference(invoice: InvoiceRecord) -> str:
    """The order's numeroLoja: TecPet's invoice id, so a retried push finds the order it made."""
    return f"{ORDER_REF_PREFIX}{invoice.id}"


def is_mobile(phone: str) -> bool:
    """Brazilian mobile numbers have 11 digits with a 9 after the area code."""
    number = digits(phone)
    if number.startswith("55") and len(number) == 13:
        number = number[2:]
    return len(number) == 11 and number[2] == "9"


# --------------------------------------------------------------------------- customers
def contact_payload(record: CustomerRecord, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full contact body for POST (no current) or PUT (current = what Bling holds now).

    PUT replaces the whole record, so everything Bling holds that TecPet does not manage (seller,
    credit limit, contact types, billing address...) is carried over unchanged.
    """
    body = copy.deepcopy(dict(current or {}))
    body.pop("id", None)  # read-only: the spec refuses it in a request
    body["nome"] = record.name.strip()
    body["tipo"] = "J" if record.person_type == "PJ" else "F"
    body["numeroDocumento"] = alnum(record.tax_id)
    body["situacao"] = body.get("situacao") if body.get("situacao") in ("A", "I", "S") else "A"
    body["codigo"] = body.get("codigo") or record.id
    body.update(_state_registration(record))
    body["email"] = record.email.strip()
    body.update(_phones(record.phone))
    addresses = dict(body.get("endereco") or {})
    addresses["geral"] = {
        "endereco": record.street.strip(), "numero": record.number.strip(), "complemento": record.complement.strip(),
        "bairro": record.district.strip(), "cep": digits(record.zip_code), "municipio": record.city.strip(),
        "uf": record.state.strip().upper(),
    }
    body["endereco"] = addresses
    return body


def _state_registration(record: CustomerRecord) -> dict[str, Any]:
    """indicadorIe: 1 ICMS taxpayer (has an IE), 2 exempt ("ISENTO"), 9 not a taxpayer (people)."""
    registration = record.state_registration.strip()
    if record.person_type != "PJ" or not registration:
        return {"indicadorIe": 9, "ie": ""}
    if plain_key(registration) == "isento":
        return {"indicadorIe": 2, "ie": ""}
    return {"indicadorIe": 1, "ie": alnum(registration)}


def _phones(phone: str) -> dict[str, str]:
    """Mobile numbers go to celular, landlines to telefone; the other slot keeps what Bling has."""
    number = phone.strip()
    if not number:
        return {}
    return {"celular": number} if is_mobile(number) else {"telefone": number}


def contact_to_customer(data: Mapping[str, Any]) -> CustomerRecord:
    """What Bling holds, in canonical form (Bling has no IBGE code on addresses)."""
    address = (data.get("endereco") or {}).get("geral") or {}
    return CustomerRecord(
        id=str(data.get("codigo") or ""),
        person_type="PJ" if data.get("tipo") == "J" else "PF",
        name=str(data.get("nome") or "").strip(),
        tax_id=alnum(data.get("numeroDocumento")),
        state_registration="ISENTO" if data.get("indicadorIe") == 2 else alnum(data.get("ie")),
        email=str(data.get("email") or "").strip(),
        phone=str(data.get("celular") or data.get("telefone") or "").strip(),
        zip_code=digits(address.get("cep")),
        street=str(address.get("endereco") or "").strip(),
        number=str(address.get("numero") or "").strip(),
        complement=str(address.get("complemento") or "").strip(),
        district=str(address.get("bairro") or "").strip(),
        city=str(address.get("municipio") or "").strip(),
        state=str(address.get("uf") or "").strip().upper(),
    )


def remote_customer(data: Mapping[str, Any], modified_at: datetime | None = None) -> RemoteCustomer:
    return RemoteCustomer(remote_id=str(data["id"]), record=contact_to_customer(data), modified_at=modified_at,
                          raw=dict(data))


def same_customer(record: CustomerRecord, current: Mapping[str, Any]) -> bool:
    """True when a PUT would change nothing TecPet manages (saves a request and a webhook)."""
    return contact_payload(record, current) == {k: v for k, v in current.items() if k != "id"}


# --------------------------------------------------------------------------- payment methods
def payment_method_id(name: str, methods: Iterable[Mapping[str, Any]]) -> int | None:
    """The account's payment method for a canonical name: same description first, then the same
    fiscal payment type; inactive methods never."""
    active = [m for m in methods if m.get("situacao", 1) == 1]
    wanted = plain_key(name)
    for method in active:
        if plain_key(str(method.get("descricao", ""))) == wanted:
            return int(method["id"])
    kinds = PAYMENT_TYPES.get(wanted, ())
    for kind in kinds:
        candidates = sorted((m for m in active if m.get("tipoPagamento") == kind),
                            key=lambda m: (-(m.get("padrao") or 0), m["id"]))
        if candidates:
            return int(candidates[0]["id"])
    return None


# --------------------------------------------------------------------------- invoices -> order
def order_payload(invoice: InvoiceRecord, contact_id: str, payment_ids: Mapping[str, int]) -> dict[str, Any]:
    """A sales order (pedido de venda) for a billed invoice, with one item per invoice item and one
    installment (parcela) per invoice installment."""
    issued = invoice.issue_date.isoformat()
    return {
        "numeroLoja": order_reference(invoice),
        "data": issued, "dataSaida": issued, "dataPrevista": issued,
        "contato": {"id": int(contact_id)},
        "itens": [{"codigo": item.service_code, "unidade": "UN", "quantidade": quantity(item.quantity),
                   "valor": money(item.unit_price), "valorLista": money(item.unit_price), "desconto": 0,
                   "descricao": item.description} for item in invoice.items],
        # The spec marks the installment id as required on create; 0 stands for "new installment".
        "parcelas": [{"id": 0, "dataVencimento": inst.due_date.isoformat(), "valor": money(inst.amount),
                      "observacoes": f"Parcela {inst.number}",
                      "formaPagamento": {"id": payment_ids[inst.payment_method]}} for inst in invoice.installments],
        "observacoes": invoice.notes,
        "observacoesInternas": f"TecPet invoice {invoice.number}",
    }


# --------------------------------------------------------------------------- NFS-e
def nfse_payload(invoice: InvoiceRecord, contact_id: str, rps_number: int, series: str,
                 default_service_code: str, payment_ids: Mapping[str, int]) -> dict[str, Any]:
    """A service invoice (NFS-e) with the customer's data inline, as the municipality needs it."""
    customer = invoice.customer
    return {
        "numeroRPS": str(rps_number), "serie": str(series), "data": invoice.issue_date.isoformat(),
        "contato": {
            "id": int(contact_id), "nome": customer.name, "numeroDocumento": alnum(customer.tax_id),
            "email": customer.email, "telefone": customer.phone,
            "ie": "" if plain_key(customer.state_registration) == "isento" else alnum(customer.state_registration),
            "endereco": {"endereco": customer.street, "numero": customer.number, "complemento": customer.complement,
                         "bairro": customer.district, "cep": digits(customer.zip_code), "municipio": customer.city,
                         "uf": customer.state.upper()},
        },
        "servicos": [{"codigo": item.service_code or default_service_code,
                      "descricao": _service_text(item.description, item.quantity), "valor": money(item.total)}
                     for item in invoice.items],
        "parcelas": [{"data": inst.due_date.isoformat(), "valor": money(inst.amount),
                      "observacoes": f"Parcela {inst.number}",
                      "formaPagamento": {"id": payment_ids[inst.payment_method]}} for inst in invoice.installments],
    }


def _service_text(description: str, amount: Decimal) -> str:
    return description if Decimal(amount) == 1 else f"{quantity(amount):g} x {description}"


def nfse_result(data: Mapping[str, Any]) -> FiscalResult:
    """Situation 2 ("available for consultation") counts as issued only once the municipality's
    number is there; before that the note is still being processed."""
    situation = int(data.get("situacao") or 0)
    number = str(data.get("numero") or "")
    state = NFSE_STATES.get(situation, FiscalState.PENDING)
    if situation == 2 and number:
        state = FiscalState.ISSUED
    message = {FiscalState.PENDING: "Waiting for the municipality to issue the NFS-e.",
               FiscalState.ISSUED: f"NFS-e {number} issued.",
               FiscalState.CANCELLED: "The NFS-e was cancelled in Bling."}.get(state, "")
    return FiscalResult(state=state, remote_id=f"nfse:{data['id']}", number=number, message=message,
                        access_key=str(data.get("codigoVerificacao") or ""))


def nfe_result(data: Mapping[str, Any]) -> FiscalResult:
    situation = int(data.get("situacao") or 1)
    state = NFE_STATES.get(situation, FiscalState.PENDING)
    message = {FiscalState.PENDING: "Waiting for SEFAZ to authorize the NF-e.",
               FiscalState.ISSUED: f"NF-e {data.get('numero') or ''} authorized.".replace("  ", " "),
               FiscalState.CANCELLED: "The NF-e was cancelled in Bling.",
               FiscalState.REJECTED: "SEFAZ refused the NF-e; open it in Bling to see the reason and fix it there."}
    return FiscalResult(state=state, remote_id=f"nfe:{data['id']}", number=str(data.get("numero") or ""),
                        message=message[state], access_key=str(data.get("chaveAcesso") or ""))


def rejection_result(kind: str, remote_id: str, error: PermanentError) -> FiscalResult:
    """A refusal at send time (municipality or SEFAZ) in the owner's words, the reason verbatim."""
    return FiscalResult(state=FiscalState.REJECTED, remote_id=f"{kind}:{remote_id}", message=error.plain())


# --------------------------------------------------------------------------- receipts
def receipt_from(receivable: Mapping[str, Any], bordero: Mapping[str, Any], method_name: str) -> Receipt:
    """One receipt (borderô) of one receivable; a borderô can pay several receivables, so the
    payment with this receivable's document number is the one that counts."""
    payments = list(bordero.get("pagamentos") or [])
    mine = [p for p in payments if p.get("numeroDocumento") == receivable.get("numeroDocumento")] or payments[:1]
    amount = sum((Decimal(str(p.get("valorPago") or 0)) for p in mine), Decimal("0"))
    origin = receivable.get("origem") or {}
    paid_at = bordero.get("data")
    return Receipt(
        remote_id=f"{bordero['id']}/{receivable['id']}", amount=amount.quantize(Decimal("0.01")),
        paid_at=date.fromisoformat(paid_at) if paid_at else None, receivable_remote_id=str(receivable["id"]),
        origin=f"{origin.get('tipoOrigem')}_{origin.get('numero')}" if origin.get("tipoOrigem") else "",
        customer_remote_id=str((receivable.get("contato") or {}).get("id") or ""), payment_method=method_name,
        raw={"receivable": dict(receivable), "bordero": dict(bordero)},
    )


# --------------------------------------------------------------------------- errors
def error_from_body(body: Any, status: int, subject: str,
                    field_names: Mapping[str, str] = CONTACT_FIELDS) -> PermanentError:
    """Bling's error body -> PermanentError (NotFoundError for 404) in plain words, Bling's reason
    verbatim, each field error under the canonical field name."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else ""
        return PermanentError(f"Bling refused the {subject} (HTTP {status}). {text}".strip(), status=status, raw=body)
    reason = _reason(error)
    message = f"Bling refused the {subject}: {reason}" if reason else f"Bling refused the {subject}"
    field_errors = [fe for entry in error.get("fields") or [] for fe in _field_errors(entry, field_names)]
    cls = NotFoundError if status == 404 or error.get("type") == "RESOURCE_NOT_FOUND" else PermanentError
    return cls(message, field_errors=field_errors, status=status, raw=body)


def _reason(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "").strip()
    description = str(error.get("description") or "").strip()
    if description and description != message:
        return f"{message}. {description}" if message else description
    return message


def _field_errors(entry: Mapping[str, Any], field_names: Mapping[str, str]) -> list[FieldError]:
    element = str(entry.get("element") or "")
    collection = entry.get("collection") or []
    if not collection:
        return [FieldError(field=_canonical(element, field_names), message=str(entry.get("msg") or ""))]
    parent = _canonical(element, field_names)
    return [FieldError(field=f"{parent}[{item.get('index')}].{_canonical(str(item.get('element') or ''), field_names)}",
                       message=str(item.get("msg") or "")) for item in collection]


def _canonical(element: str, field_names: Mapping[str, str]) -> str:
    """The last path part decides ("endereco.geral.cep" -> zip_code); unknown names stay Bling's."""
    last = element.split(".")[-1] if element else ""
    return field_names.get(last, last)
