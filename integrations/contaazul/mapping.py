"""Pure translations between TecPet's canonical records and Conta Azul's payloads.

Conta Azul names the same thing differently on write and read (`cpf`/`cnpj` vs `documento`,
`detalhe_valor` vs `composicao_valor` vs `valor_composicao`), spells enum values as human labels
(`Física`, `Cliente`, `À vista`) and reports errors in several shapes. Everything that knows those
spellings lives here, without I/O, so it can be read and tested on its own.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, ROUND_HALF_UP
from typing import Any

from ..base import (CustomerRecord, FieldError, FiscalResult, FiscalState, InvoiceRecord, PermanentError, PosSale,
                    Receipt, RemoteCustomer)

# --------------------------------------------------------------------------- enum spellings
PERSON_TYPE_TO_ERP = {"PF": "Física", "PJ": "Jurídica"}
PERSON_TYPE_FROM_ERP = {"Física": "PF", "Jurídica": "PJ", "Estrangeira": "PF"}
CUSTOMER_PROFILE = "Cliente"
CASH_OPTION = "À vista"

# TecPet's pt-BR payment names (accent/case-insensitive) -> the enum value shared by the sale's
# `tipo_pagamento`, the receivable's and the baixa's `metodo_pagamento`.
_PAYMENT_TO_ERP = {
    "dinheiro": "DINHEIRO",
    "pix": "PIX_PAGAMENTO_INSTANTANEO",
    "boleto": "BOLETO_BANCARIO",
    "boleto bancario": "BOLETO_BANCARIO",
    "cartao de credito": "CARTAO_CREDITO",
    "cartao de debito": "CARTAO_DEBITO",
    "transferencia": "TRANSFERENCIA_BANCARIA",
    "transferencia bancaria": "TRANSFERENCIA_BANCARIA",
    "deposito": "DEPOSITO_BANCARIO",
    "deposito bancario": "DEPOSITO_BANCARIO",
    "cheque": "CHEQUE",
    "carteira digital": "CARTEIRA_DIGITAL",
    "credito loja": "CREDITO_LOJA",
    "credito na loja": "CREDITO_LOJA",
}
_PAYMENT_FROM_ERP = {
    "DINHEIRO": "Dinheiro",
    "PIX_PAGAMENTO_INSTANTANEO": "PIX",
    "PIX_COBRANCA": "PIX",
    "COBRANCA_PIX": "PIX",
    "BOLETO_BANCARIO": "Boleto",
    "CARTAO_CREDITO": "Cartão de Crédito",
    "CARTAO_CREDITO_VIA_LINK": "Cartão de Crédito",
    "CARTAO_DEBITO": "Cartão de Débito",
    "TRANSFERENCIA_BANCARIA": "Transferência",
    "DEPOSITO_BANCARIO": "Depósito",
    "CHEQUE": "Cheque",
    "CARTEIRA_DIGITAL": "Carteira Digital",
    "CREDITO_LOJA": "Crédito Loja",
}

# NFS-e statuses as Conta Azul lists them -> the issuing outcome TecPet shows.
_NFSE_STATE = {
    "EMITIDA": FiscalState.ISSUED,
    "CORRIGIDA_SUCESSO": FiscalState.ISSUED,
    "AGUARDANDO_CORRECAO": FiscalState.ISSUED,   # issued; a correction letter is on its way
    "FALHA_CORRECAO": FiscalState.ISSUED,        # issued; only the correction failed
    "FALHA_CANCELAMENTO": FiscalState.ISSUED,    # still valid: the cancellation failed
    "CANCELADA": FiscalState.CANCELLED,
    "CANCELAMENTO_MANUAL": FiscalState.CANCELLED,
    "FALHA": FiscalState.REJECTED,
    "DENEGADA": FiscalState.REJECTED,
}

# Marker written into the sale's notes / the receivable's description: the only field Conta Azul
# keeps verbatim that lets a retry find what an earlier attempt created (no idempotency keys).
TECPET_MARK = "tecpet:"
TECPET_SETTLEMENT_NOTE = "Registrado pelo TecPet"


def fold(text: str) -> str:
    """Accent- and case-insensitive form used to compare labels and names."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def tax_id_key(value: str) -> str:
    """CPF/CNPJ as compared and searched: letters and digits only, upper case (alphanumeric CNPJ)."""
    return re.sub(r"[^0-9A-Za-z]", "", value or "").upper()


def money(value: Decimal | float | int) -> float:
    """Conta Azul takes JSON numbers; round to cents here so sums stay exact."""
    return float(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def fingerprint(data: Any) -> str:
    """Short stable digest of a payload: lets a pull tell 'seen unchanged' from 'changed'."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def invoice_mark(invoice: InvoiceRecord) -> str:
    return f"[{TECPET_MARK}{invoice.id}]"


def has_invoice_mark(text: str | None, invoice_id: str | None = None) -> bool:
    text = text or ""
    if invoice_id is None:
        return f"[{TECPET_MARK}" in text
    return f"[{TECPET_MARK}{invoice_id}]" in text


# --------------------------------------------------------------------------- customers
def _phone_fields(customer: CustomerRecord) -> dict[str, str]:
    """A Brazilian mobile has 11 digits with a 9 after the area code; everything else is a landline."""
    digits = re.sub(r"\D", "", customer.phone or "")
    if not digits:
        return {}
    is_mobile = len(digits) == 11 and digits[2] == "9"
    return {"telefone_celular" if is_mobile else "telefone_comercial": digits}


def _address(customer: CustomerRecord) -> list[dict[str, str]]:
    parts = {
        "cep": re.sub(r"\D", "", customer.zip_code or ""),
        "logradouro": customer.street,
        "numero": customer.number,
        "complemento": customer.complement,
        "bairro": customer.district,
        "cidade": customer.city,
        "estado": (customer.state or "").upper(),
    }
    kept = {k: v for k, v in parts.items() if v}
    return [kept] if kept else []


def _registrations(customer: CustomerRecord) -> list[dict[str, str]]:
    """State registration (IE) is what the NF-e needs for companies; individuals get none."""
    ie = (customer.state_registration or "").strip()
    if customer.person_type != "PJ" and not ie:
        return []
    if not ie:
        return [{"indicador_inscricao_estadual": "NAO CONTRIBUINTE"}]
    if fold(ie) == "isento":
        return [{"indicador_inscricao_estadual": "ISENTO"}]
    return [{"indicador_inscricao_estadual": "CONTRIBUINTE", "inscricao_estadual": ie}]


def customer_fields(customer: CustomerRecord) -> dict[str, Any]:
    """The pessoa fields TecPet owns; used for both create and PATCH."""
    payload: dict[str, Any] = {
        "nome": customer.name.strip(),
        "tipo_pessoa": PERSON_TYPE_TO_ERP.get(customer.person_type, "Física"),
    }
    tax_id = tax_id_key(customer.tax_id)
    if tax_id:
        payload["cnpj" if customer.person_type == "PJ" else "cpf"] = tax_id
    if customer.email:
        payload["email"] = customer.email.strip()
    payload.update(_phone_fields(customer))
    address = _address(customer)
    if address:
        payload["enderecos"] = address
    registrations = _registrations(customer)
    if registrations:
        payload["inscricoes"] = registrations
    return payload


def customer_create_payload(customer: CustomerRecord, *, integration_code: bool) -> dict[str, Any]:
    """POST body: the owned fields plus the customer profile, and TecPet's id as `codigo` when enabled."""
    payload = customer_fields(customer)
    payload["perfis"] = [{"tipo_perfil": CUSTOMER_PROFILE}]
    if integration_code and customer.id:
        payload["codigo"] = str(customer.id)
    return payload


def customer_patch_payload(customer: CustomerRecord) -> dict[str, Any]:
    """PATCH body: owned fields only, so profiles and the clinic's own `codigo` stay as they are."""
    return customer_fields(customer)


def _first_address(raw: dict[str, Any]) -> dict[str, Any]:
    addresses = raw.get("enderecos") or []
    if isinstance(addresses, list) and addresses:
        return addresses[0] or {}
    single = raw.get("endereco")
    return single if isinstance(single, dict) else {}


def _state_registration(raw: dict[str, Any]) -> str:
    for item in raw.get("inscricoes") or []:
        if item.get("inscricao_estadual"):
            return str(item["inscricao_estadual"])
        if item.get("indicador_inscricao_estadual") == "ISENTO":
            return "ISENTO"
    return ""


def parse_erp_datetime(value: Any) -> datetime | None:
    """Conta Azul date-times come without offset (São Paulo time); keep them naive."""
    if not value:
        return None
    text = str(value).replace("Z", "")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)


def parse_erp_date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def customer_from_erp(raw: dict[str, Any]) -> RemoteCustomer:
    """A pessoa as read (`documento`, `enderecos[0]`) -> the canonical record."""
    address = _first_address(raw)
    phone = raw.get("telefone_celular") or raw.get("telefone_comercial") or raw.get("telefone") or ""
    record = CustomerRecord(
        id=str(raw.get("codigo") or ""),
        person_type=PERSON_TYPE_FROM_ERP.get(raw.get("tipo_pessoa") or "", "PF"),
        name=str(raw.get("nome") or ""),
        tax_id=tax_id_key(str(raw.get("documento") or raw.get("cpf") or raw.get("cnpj") or "")),
        state_registration=_state_registration(raw),
        email=str(raw.get("email") or ""),
        phone=re.sub(r"\D", "", str(phone)),
        zip_code=re.sub(r"\D", "", str(address.get("cep") or "")),
        street=str(address.get("logradouro") or ""),
        number=str(address.get("numero") or ""),
        complement=str(address.get("complemento") or ""),
        district=str(address.get("bairro") or ""),
        city=str(address.get("cidade") or ""),
        state=str(address.get("estado") or "").upper(),
    )
    return RemoteCustomer(remote_id=str(raw.get("id") or ""), record=record,
                          modified_at=parse_erp_datetime(raw.get("data_alteracao")), raw=raw)


# --------------------------------------------------------------------------- sale and receivables
def payment_type(method: str) -> str:
    """TecPet's payment name -> Conta Azul's enum; unknown names become OUTRO rather than failing."""
    return _PAYMENT_TO_ERP.get(fold(method), "OUTRO")


def payment_name(erp_value: str | None) -> str:
    return _PAYMENT_FROM_ERP.get(erp_value or "", (erp_value or "").replace("_", " ").title())


def installments_total(invoice: InvoiceRecord) -> Decimal:
    return sum((Decimal(str(i.amount)) for i in invoice.installments), Decimal("0.00")).quantize(Decimal("0.01"))


def check_installments(invoice: InvoiceRecord) -> None:
    """Conta Azul expects installments to add up to the items; refuse before sending, in plain words."""
    if not invoice.items:
        raise PermanentError(f"Invoice {invoice.number} has no items to send to Conta Azul",
                             field_errors=[FieldError("items", "at least one item is needed")])
    if not invoice.installments:
        raise PermanentError(f"Invoice {invoice.number} has no installments to send to Conta Azul",
                             field_errors=[FieldError("installments", "at least one installment is needed")])
    total, parts = invoice.total, installments_total(invoice)
    if total != parts:
        raise PermanentError(
            f"Invoice {invoice.number}: the installments add up to {parts} but the items total {total}",
            field_errors=[FieldError("installments", f"must add up to {total}")])


def payment_condition_option(invoice: InvoiceRecord) -> str:
    """`À vista` for one installment due on the sale date; otherwise the day offsets ("30,60")."""
    installments = sorted(invoice.installments, key=lambda i: i.number)
    offsets = [(i.due_date - invoice.issue_date).days for i in installments]
    if len(offsets) == 1 and offsets[0] <= 0:
        return CASH_OPTION
    return ",".join(str(max(0, d)) for d in offsets)


def _installment_label(number: int, count: int) -> str:
    return f"Parcela {number}/{count}"


def sale_notes(invoice: InvoiceRecord) -> str:
    lines = [f"Fatura TecPet {invoice.number} {invoice_mark(invoice)}"]
    if invoice.notes:
        lines.append(invoice.notes.strip())
    return "\n".join(lines)


def sale_payload(invoice: InvoiceRecord, *, customer_id: str, number: int, item_ids: list[str],
                 situation: str, account_id: str) -> dict[str, Any]:
    """POST /v1/venda body. `item_ids[i]` is the catalog uuid of `invoice.items[i]`."""
    installments = sorted(invoice.installments, key=lambda i: i.number)
    condition: dict[str, Any] = {
        "opcao_condicao_pagamento": payment_condition_option(invoice),
        "tipo_pagamento": payment_type(installments[0].payment_method),
        "parcelas": [{"data_vencimento": i.due_date.isoformat(), "valor": money(i.amount),
                      "descricao": _installment_label(n, len(installments))}
                     for n, i in enumerate(installments, start=1)],
    }
    if account_id:
        condition["id_conta_financeira"] = account_id
    return {
        "id_cliente": customer_id,
        "numero": int(number),
        "situacao": situation,
        "data_venda": invoice.issue_date.isoformat(),
        "itens": [{"id": item_id, "descricao": item.description, "quantidade": float(item.quantity),
                   "valor": money(item.unit_price)} for item, item_id in zip(invoice.items, item_ids)],
        "condicao_pagamento": condition,
        "observacoes": sale_notes(invoice),
    }


def receivable_description(invoice: InvoiceRecord) -> str:
    return f"Fatura TecPet {invoice.number} {invoice_mark(invoice)}"


def receivable_payload(invoice: InvoiceRecord, *, customer_id: str, account_id: str,
                       sale_number: str = "") -> dict[str, Any]:
    """POST contas-a-receber body with every field the official spec marks required."""
    installments = sorted(invoice.installments, key=lambda i: i.number)
    reference = f"Venda {sale_number}" if sale_number else f"Fatura {invoice.number}"
    return {
        "data_competencia": invoice.issue_date.isoformat(),
        "valor": money(invoice.total),
        "descricao": receivable_description(invoice),
        "observacao": f"{reference} enviada pelo TecPet",
        "contato": customer_id,
        "conta_financeira": account_id,
        "condicao_pagamento": {"parcelas": [{
            "descricao": _installment_label(n, len(installments)),
            "data_vencimento": i.due_date.isoformat(),
            "nota": str(invoice.number),
            "conta_financeira": account_id,
            "detalhe_valor": {"valor_bruto": money(i.amount), "valor_liquido": money(i.amount)},
            "metodo_pagamento": payment_type(i.payment_method),
        } for n, i in enumerate(installments, start=1)]},
    }


def settlement_payload(amount: Decimal, paid_on: date, account_id: str, method: str = "") -> dict[str, Any]:
    """POST baixa body. The note marks it as TecPet's so the receipts pull does not echo it back."""
    payload: dict[str, Any] = {
        "data_pagamento": paid_on.isoformat(),
        "conta_financeira": account_id,
        "composicao_valor": {"valor_bruto": money(amount)},
        "observacao": TECPET_SETTLEMENT_NOTE,
    }
    if method:
        payload["metodo_pagamento"] = method
    return payload


def settlement_matches(baixa: dict[str, Any], amount: Decimal, paid_on: date) -> bool:
    """A baixa already recording this payment (same day and amount): re-sending would pay twice."""
    value = (baixa.get("valor_composicao") or baixa.get("composicao_valor") or {}).get("valor_bruto")
    return (str(baixa.get("data_pagamento") or "")[:10] == paid_on.isoformat()
            and value is not None and abs(Decimal(str(value)) - Decimal(str(amount))) < Decimal("0.005"))


# --------------------------------------------------------------------------- reads: receipts, sales, invoices
def received_amount(composition: dict[str, Any]) -> Decimal:
    """What the payer handed over: gross plus fine and interest, minus discount (the bank fee is ours)."""
    def part(key: str) -> Decimal:
        return Decimal(str(composition.get(key) or 0))
    return (part("valor_bruto") + part("multa") + part("juros") - part("desconto")).quantize(Decimal("0.01"))


def receipt_from_erp(baixa: dict[str, Any], parcela: dict[str, Any]) -> Receipt:
    """One baixa of an installment -> a canonical receipt (`parcela` is the receivables-search row)."""
    customer = parcela.get("cliente") or {}
    return Receipt(
        remote_id=str(baixa.get("id") or ""),
        amount=received_amount(baixa.get("valor_composicao") or baixa.get("composicao_valor") or {}),
        paid_at=parse_erp_date(baixa.get("data_pagamento")),
        receivable_remote_id=str(baixa.get("id_parcela") or parcela.get("id") or ""),
        origin=str(parcela.get("descricao") or ""),
        customer_remote_id=str(customer.get("id") or ""),
        payment_method=payment_name(baixa.get("metodo_pagamento")),
        raw={"baixa": baixa, "parcela": parcela},
    )


def pos_sale_from_erp(row: dict[str, Any], detail: dict[str, Any], items: list[dict[str, Any]]) -> PosSale:
    """A sale from the search list + its detail envelope + its items -> a counter sale."""
    sale = detail.get("venda") or {}
    customer = row.get("cliente") or detail.get("cliente") or {}
    condition = sale.get("condicao_pagamento") or {}
    sold_at = parse_erp_datetime(row.get("criado_em")) or parse_erp_datetime(row.get("data")) or datetime.min
    situation = (row.get("situacao") or {}).get("nome") or (sale.get("situacao") or {}).get("nome") or ""
    return PosSale(
        remote_id=str(row.get("id") or ""),
        sold_at=sold_at,
        total=Decimal(str(row.get("total") or 0)).quantize(Decimal("0.01")),
        customer_remote_id=str(customer.get("id") or customer.get("uuid") or ""),
        customer_name=str(customer.get("nome") or ""),
        payment_method=payment_name(condition.get("tipo_pagamento")),
        status=str(situation),
        items=[{"description": i.get("nome") or i.get("descricao") or "", "quantity": i.get("quantidade"),
                "unit_price": i.get("valor"), "kind": "product" if i.get("tipo") == "PRODUTO" else "service"}
               for i in items],
        raw={"row": row, "detail": detail, "items": items},
    )


def fiscal_from_nfse(item: dict[str, Any]) -> FiscalResult:
    status = str(item.get("status") or "")
    state = _NFSE_STATE.get(status, FiscalState.PENDING)
    message = ""
    if state is FiscalState.REJECTED:
        message = (f"Conta Azul reports the NFS-e as {status}; it does not expose the reason through its API. "
                   "Open the invoice in Conta Azul to see it.")
    elif state is FiscalState.PENDING:
        message = f"Conta Azul reports the NFS-e as {status}"
    return FiscalResult(state=state, remote_id=str(item.get("id") or ""),
                        number=str(item.get("numero_nfse") or ""), message=message)


def fiscal_from_nfe(item: dict[str, Any]) -> FiscalResult:
    """The NF-e list holds issued notes only (EMITIDA / CORRIGIDA_SUCESSO)."""
    key = str(item.get("chave_acesso") or item.get("chave") or "")
    return FiscalResult(state=FiscalState.ISSUED, remote_id=key,
                        number=str(item.get("numero_nota") or item.get("numero") or ""), access_key=key)


# --------------------------------------------------------------------------- errors
# Conta Azul field names (snake_case, and the Java camelCase some endpoints answer with) -> canonical.
_CUSTOMER_FIELDS = {
    "cpf": "tax_id", "cnpj": "tax_id", "documento": "tax_id", "nome": "name", "tipo_pessoa": "person_type",
    "email": "email", "telefone_celular": "phone", "telefone_comercial": "phone", "telefone": "phone",
    "cep": "zip_code", "logradouro": "street", "numero": "number", "complemento": "complement",
    "bairro": "district", "cidade": "city", "estado": "state", "uf": "state",
    "inscricao_estadual": "state_registration", "indicador_inscricao_estadual": "state_registration",
}
_DOCUMENT_FIELDS = {
    "id_cliente": "customer", "contato": "customer", "contact": "customer", "data_venda": "issue_date",
    "data_competencia": "issue_date", "competencedate": "issue_date", "itens": "items", "quantidade": "quantity",
    "valor": "amount", "value": "amount", "parcelas": "installments", "installments": "installments",
    "data_vencimento": "due_date", "duedate": "due_date", "condicao_pagamento": "installments",
    "paymentcondition": "installments", "data_pagamento": "paid_on", "valor_bruto": "amount",
    "grossvalue": "amount", "conta_financeira": "financial_account", "financialaccount": "financial_account",
    "id_conta_financeira": "financial_account",
}
# Words in a free-text reason that name a customer field ("CPF inválido", "O e-mail ...").
_CUSTOMER_WORDS = [
    (re.compile(r"\b(cpf|cnpj|documento)\b"), "tax_id"),
    (re.compile(r"\be-?mail\b"), "email"),
    (re.compile(r"\bcep\b"), "zip_code"),
    (re.compile(r"\blogradouro\b"), "street"),
    (re.compile(r"\bbairro\b"), "district"),
    (re.compile(r"\bcidade\b|\bmunicipio\b"), "city"),
    (re.compile(r"\bestado\b|\buf\b"), "state"),
    (re.compile(r"\btelefone"), "phone"),
    (re.compile(r"\binscricao estadual\b|\binscricao_estadual\b"), "state_registration"),
    (re.compile(r"\btipo_pessoa\b|\btipo de pessoa\b"), "person_type"),
    (re.compile(r"\bnome\b"), "name"),
]
# The same for documents (sale, receivable, payment) when the reason names no field.
_DOCUMENT_WORDS = [
    (re.compile(r"\bconta financeira\b"), "financial_account"),
    (re.compile(r"\bcontato\b|\bcliente\b"), "customer"),
    (re.compile(r"\bvencimento\b"), "due_date"),
    (re.compile(r"\bparcelas?\b"), "installments"),
    (re.compile(r"\bitem\b|\bitens\b"), "items"),
]
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*")
_TAGS = re.compile(r"<[^>]+>")


def _strip_html(text: str) -> str:
    """Some endpoints wrap an HTML error page in the 400 body: keep its readable words only."""
    if "<" not in text or ">" not in text:
        return text.strip()
    text = re.sub(r"(?is)<(script|style|head)[^>]*>.*?</\1>", " ", text)
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub(" ", text))).strip()


def error_reason(body: Any) -> str:
    """The ERP's own words from any of its error shapes ({"error"}, {"message"}, lists, HTML)."""
    if body is None:
        return ""
    if isinstance(body, str):
        return _strip_html(body)[:500]
    if isinstance(body, list):
        return "; ".join(filter(None, (error_reason(b) for b in body)))
    if isinstance(body, dict):
        for key in ("error", "message", "mensagem", "error_description", "detail", "errors", "erros"):
            value = body.get(key)
            if value:
                reason = error_reason(value)
                if reason:
                    return reason
        return _strip_html(json.dumps(body, ensure_ascii=False))[:500]
    return str(body)[:500]


def _leaf(name: str) -> str:
    """`paymentCondition.installments[0].dueDate` -> `duedate`; `enderecos[0].cep` -> `cep`."""
    last = re.sub(r"\[\d+\]", "", name).split(".")[-1]
    return last.lower()


def _named_fields(reason: str) -> list[str]:
    """Identifiers the reason spells out (`cpf`, `enderecos[0].cep`, `paymentCondition.installments`):
    any token with an underscore, a dot or a camelCase hump; plain words are left to the word table."""
    tokens = _IDENTIFIER.findall(reason)
    return [t for t in tokens if "_" in t or "." in t or re.search(r"[a-z][A-Z]", t)]


def field_errors_from_reason(reason: str, *, customer: bool) -> list[FieldError]:
    """Map the fields an error reason mentions to canonical names (TecPet's where it has one)."""
    table = _CUSTOMER_FIELDS if customer else {**_DOCUMENT_FIELDS, **_CUSTOMER_FIELDS}
    found: list[str] = []
    for name in _named_fields(reason):
        canonical = table.get(_leaf(name)) or table.get(name.lower())
        if canonical and canonical not in found:
            found.append(canonical)
    if not found:
        folded = fold(reason)
        for pattern, canonical in (_CUSTOMER_WORDS if customer else _DOCUMENT_WORDS):
            if pattern.search(folded):
                found.append(canonical)
                break
    return [FieldError(f, "rejected by Conta Azul") for f in found]


def permanent_error(what: str, status: int, body: Any, *, customer: bool = False) -> PermanentError:
    """The ERP's validation answer -> a PermanentError whose message carries its reason verbatim."""
    reason = error_reason(body) or f"HTTP {status}"
    return PermanentError(f"Conta Azul refused the {what}: {reason}",
                          field_errors=field_errors_from_reason(reason, customer=customer), status=status, raw=body)
