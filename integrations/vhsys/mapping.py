"""Pure translations between TecPet's canonical records and VHSYS API v2 payloads.

No I/O here: the client sends what these functions build, and reads back through them.
VHSYS quirks handled here (see /work/shared/erp/vhsys.md):
- money travels as strings with a dot ("10.00"), dates as YYYY-MM-DD, empty dates as 0000-00-00;
- timestamps (data_mod_*) are Brasília wall-clock time without a zone suffix;
- CPF/CNPJ is stored formatted, so comparisons are made on digits/letters only;
- error bodies are either {code, status, data: "<message>"} or {code, mensagem, erros: [...]}.
"""
from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from ..base import (CustomerRecord, FieldError, FiscalResult, FiscalState, InvoiceItem, InvoiceRecord,
                    Installment, PermanentError, PosSale, Receipt, RemoteCustomer)

# Brazil has had no daylight saving time since 2019, so Brasília time is a fixed UTC-3.
BRASILIA = timezone(timedelta(hours=-3), "BRT")

# VHSYS customer field -> canonical field, used both for payloads and for error messages.
CUSTOMER_FIELDS: dict[str, str] = {
    "razao_cliente": "name",
    "tipo_pessoa": "person_type",
    "cnpj_cliente": "tax_id",
    "insc_estadual_cliente": "state_registration",
    "email_cliente": "email",
    "celular_cliente": "phone",
    "fone_cliente": "phone",
    "cep_cliente": "zip_code",
    "endereco_cliente": "street",
    "numero_cliente": "number",
    "complemento_cliente": "complement",
    "bairro_cliente": "district",
    "cidade_cliente": "city",
    "uf_cliente": "state",
}

# Payment methods VHSYS accepts in parcelas and receivables (forma_pagamento enum).
PAYMENT_METHODS = (
    "Dinheiro", "PIX", "Cheque", "Permuta", "Cartão de Crédito", "Cartão de Débito", "Boleto",
    "Transferência", "Ted", "Depósito Identificado", "Depósito em C/C", "Duplicata Mercantil", "Faturado",
    "Faturar", "Débito Automático", "Lotérica", "Banco", "DDA", "Pagamento online", "BNDES", "Outros",
    "DP Descontada", "CH Descontado", "Vale Alimentação", "Vale Refeição", "Vale Presente", "Vale Combustível",
)

NOME_CONTA_MAX = 45
N_DOCUMENTO_MAX = 45


# --------------------------------------------------------------------------- small formatters
def alnum(value: Any) -> str:
    """Digits and letters only, upper case: how tax IDs are compared (alphanumeric CNPJ included)."""
    return re.sub(r"[^0-9A-Za-z]", "", str(value or "")).upper()


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def format_tax_id(tax_id: str) -> str:
    """VHSYS stores CPF/CNPJ masked (000.000.000-00 / 00.000.000/0000-00); send it the same way."""
    raw = alnum(tax_id)
    if len(raw) == 11:
        return f"{raw[:3]}.{raw[3:6]}.{raw[6:9]}-{raw[9:]}"
    if len(raw) == 14:
        return f"{raw[:2]}.{raw[2:5]}.{raw[5:8]}/{raw[8:12]}-{raw[12:]}"
    return raw


def format_zip(zip_code: str) -> str:
    """The API example masks the CEP as 00.000-000; other lengths go through untouched."""
    raw = digits(zip_code)
    return f"{raw[:2]}.{raw[2:5]}-{raw[5:]}" if len(raw) == 8 else raw


def money(value: Decimal | int | float | str) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


def quantity(value: Decimal) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.0001'))}"


def to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value).replace(",", ".")) if value not in (None, "") else Decimal("0")
    except InvalidOperation:
        return Decimal("0")


def parse_date(value: Any) -> date | None:
    """YYYY-MM-DD (or a timestamp); the 0000-00-00 placeholder means no date."""
    text = str(value or "")[:10]
    if not text or text.startswith("0000"):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """VHSYS timestamps are Brasília wall-clock time; return them as aware datetimes."""
    text = str(value or "").strip()
    if not text or text.startswith("0000"):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:19], fmt).replace(tzinfo=BRASILIA)
        except ValueError:
            continue
    return None


def brasilia_text(moment: datetime | date) -> str:
    """The `data_modificacao` filter wants Brasília time with no zone suffix."""
    if isinstance(moment, datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(BRASILIA)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.isoformat()


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def payment_method(name: str) -> str:
    """Canonical pt-BR names mostly match VHSYS's enum; anything else becomes "Outros"."""
    folded = {m.casefold(): m for m in PAYMENT_METHODS}
    return folded.get((name or "").strip().casefold(), "Outros")


# --------------------------------------------------------------------------- customers
def is_mobile(phone: str) -> bool:
    """Brazilian mobiles have 11 digits with a 9 after the area code (with or without +55)."""
    raw = digits(phone)
    if raw.startswith("55") and len(raw) == 13:
        raw = raw[2:]
    return len(raw) == 11 and raw[2] == "9"


def customer_payload(customer: CustomerRecord) -> dict[str, str]:
    """Canonical customer -> body of POST/PUT /clientes.

    Empty canonical fields are left out so an update never blanks data the clinic typed in VHSYS.
    """
    phone_field = "celular_cliente" if is_mobile(customer.phone) else "fone_cliente"
    candidates = {
        "razao_cliente": customer.name.strip(),
        "tipo_pessoa": "PF" if customer.person_type == "PF" else "PJ",
        "tipo_cadastro": "Cliente",
        "cnpj_cliente": format_tax_id(customer.tax_id),
        "insc_estadual_cliente": customer.state_registration.strip(),
        "email_cliente": customer.email.strip(),
        phone_field: customer.phone.strip(),
        "cep_cliente": format_zip(customer.zip_code),
        "endereco_cliente": customer.street.strip(),
        "numero_cliente": customer.number.strip(),
        "complemento_cliente": customer.complement.strip(),
        "bairro_cliente": customer.district.strip(),
        "cidade_cliente": customer.city.strip(),
        "uf_cliente": customer.state.strip().upper(),
        "situacao_cliente": "Ativo",
    }
    return {k: v for k, v in candidates.items() if v}


def customer_from_remote(data: dict[str, Any]) -> RemoteCustomer:
    """A /clientes row -> RemoteCustomer. VHSYS has no field for TecPet's id, so `id` stays empty."""
    tax_id = alnum(data.get("cnpj_cliente"))
    person_type = str(data.get("tipo_pessoa") or ("PF" if len(tax_id) == 11 else "PJ")).upper()
    record = CustomerRecord(
        id="",
        person_type="PF" if person_type == "PF" else "PJ",
        name=str(data.get("razao_cliente") or "").strip(),
        tax_id=tax_id,
        state_registration=str(data.get("insc_estadual_cliente") or "").strip(),
        email=str(data.get("email_cliente") or "").strip(),
        phone=str(data.get("celular_cliente") or data.get("fone_cliente") or "").strip(),
        zip_code=digits(data.get("cep_cliente")),
        street=str(data.get("endereco_cliente") or "").strip(),
        number=str(data.get("numero_cliente") or "").strip(),
        complement=str(data.get("complemento_cliente") or "").strip(),
        district=str(data.get("bairro_cliente") or "").strip(),
        city=str(data.get("cidade_cliente") or "").strip(),
        city_ibge_code=digits(data.get("cidade_cliente_cod")),
        state=str(data.get("uf_cliente") or "").strip().upper(),
    )
    return RemoteCustomer(remote_id=str(data.get("id_cliente")), record=record,
                          modified_at=parse_timestamp(data.get("data_mod_cliente") or data.get("data_cad_cliente")),
                          raw=data)


# --------------------------------------------------------------------------- invoices -> OS, parcelas, receivables
def invoice_marker(invoice_id: str) -> str:
    """Written into the OS / NFS-e notes so a retried job finds what an earlier attempt created."""
    return f"[TecPet:{invoice_id}]"


def installment_document(invoice_id: str, number: int) -> str:
    """n_documento_rec (max 45) of one installment's receivable: unique per invoice and installment."""
    doc = f"TP{invoice_id}-{number}"
    if len(doc) <= N_DOCUMENTO_MAX:
        return doc
    return f"TP{hashlib.sha1(invoice_id.encode()).hexdigest()[:24]}-{number}"


def order_identification(order_id: str) -> str:
    """How VHSYS links a receivable to its service order."""
    return f"OS_{order_id}"


def service_order_payload(invoice: InvoiceRecord, customer_remote_id: str) -> dict[str, Any]:
    marker = invoice_marker(invoice.id)
    notes = f"Fatura TecPet {invoice.number} {marker}"
    if invoice.notes:
        notes = f"{invoice.notes}\n{notes}"
    return {
        "id_cliente": customer_remote_id,
        "nome_cliente": invoice.customer.name,
        "data_pedido": invoice.issue_date.isoformat(),
        "data_entrega": invoice.issue_date.isoformat(),
        "status_pedido": "Em Aberto",
        "obs_pedido": notes,
        "obs_interno_pedido": marker,
    }


def service_items_payload(items: Iterable[InvoiceItem], service_id: str = "") -> list[dict[str, str]]:
    rows = []
    for item in items:
        row = {"desc_servico": clip(item.description, 255), "horas_servico": quantity(item.quantity),
               "valor_unit_servico": money(item.unit_price)}
        if service_id:
            row["id_servico"] = service_id
        rows.append(row)
    return rows


def installments_payload(installments: Iterable[Installment], invoice_number: str) -> list[dict[str, str]]:
    count = 0
    rows = []
    installments = list(installments)
    for inst in installments:
        count += 1
        rows.append({"data_parcela": inst.due_date.isoformat(), "valor_parcela": money(inst.amount),
                     "forma_pagamento": payment_method(inst.payment_method),
                     "observacoes_parcela": f"Parcela {inst.number}/{len(installments)} da fatura {invoice_number}"})
    return rows


def receivable_payload(invoice: InvoiceRecord, installment: Installment, total_installments: int, *,
                       order_id: str, order_number: str, customer_remote_id: str, bank_id: str,
                       category_id: str = "") -> dict[str, Any]:
    """One installment -> POST /contas-receber, marked so a retry finds it instead of duplicating."""
    method = payment_method(installment.payment_method)
    body = {
        "nome_conta": clip(f"OS {order_number} parcela {installment.number}/{total_installments}", NOME_CONTA_MAX),
        "id_banco": bank_id,
        "id_cliente": customer_remote_id,
        "nome_cliente": invoice.customer.name,
        "vencimento_rec": installment.due_date.isoformat(),
        "valor_rec": money(installment.amount),
        "data_emissao": invoice.issue_date.isoformat(),
        "n_documento_rec": installment_document(invoice.id, installment.number),
        "observacoes_rec": f"Fatura TecPet {invoice.number} {invoice_marker(invoice.id)} "
                           f"parcela {installment.number}/{total_installments}",
        "identificacao": order_identification(order_id),
        "forma_pagamento": method,
        "tipo_conta": method if method in ("Boleto", "PIX") else "Conta",
        "liquidado_rec": "Nao",
    }
    if category_id:
        body["id_categoria"] = category_id
    return body


def settle_payload(receivable: dict[str, Any], amount: Decimal, paid_on: date) -> dict[str, str]:
    """PUT /contas-receber/{id}: VHSYS wants the original valor_rec sent back with the payment."""
    return {"liquidado_rec": "Sim", "valor_rec": money(to_decimal(receivable.get("valor_rec"))),
            "valor_pago": money(amount), "data_pagamento": paid_on.isoformat(),
            "obs_pagamento": "Baixa registrada pelo TecPet"}


# --------------------------------------------------------------------------- NFS-e
def service_invoice_payload(invoice: InvoiceRecord, customer_remote_id: str, settings: dict[str, str]) -> dict[str, Any]:
    """Invoice -> POST /notas-servico. Fiscal setup (series, regime, nature) comes from settings."""
    total = money(invoice.total)
    activity = settings.get("nfse_service_code") or next((i.service_code for i in invoice.items if i.service_code), "")
    body: dict[str, Any] = {
        "id_cliente": customer_remote_id,
        "nome_cliente": invoice.customer.name,
        "desc_servicos": "; ".join(f"{i.description} ({quantity(i.quantity).rstrip('0').rstrip('.')} x {money(i.unit_price)})"
                                   for i in invoice.items),
        "valor_total_servicos": total,
        "valor_base_calculo": total,
        "valor_total_nota": total,
        "local_prestacao": "0",
        "status_pedido": "Em aberto",
        "obs_pedido": f"Fatura TecPet {invoice.number} {invoice_marker(invoice.id)}",
    }
    optional = {"atividade": activity, "serie_nota": settings.get("nfse_series", ""),
                "regime_pedido": settings.get("nfse_regime", ""), "natureza_pedido": settings.get("nfse_nature", ""),
                "ambiente": settings.get("nfse_environment", "")}
    body.update({k: v for k, v in optional.items() if v})
    return body


def fiscal_state_from_words(status: str, number: str) -> FiscalState:
    """Map VHSYS's NFS-e status words (UNCONFIRMED vocabulary) by keyword, not exact match."""
    words = (status or "").casefold()
    if "cancel" in words:
        return FiscalState.CANCELLED
    if any(w in words for w in ("rejeit", "erro", "negad", "recusad")):
        return FiscalState.REJECTED
    if any(w in words for w in ("emitid", "autoriz")) or (number and number != "0"):
        return FiscalState.ISSUED
    return FiscalState.PENDING


def fiscal_result(data: dict[str, Any], settings: dict[str, str]) -> FiscalResult:
    """GET /notas-servico/{id} -> FiscalResult, reading the field names configured in settings."""
    number = str(data.get(settings["nfse_number_field"]) or "").strip()
    status = str(data.get(settings["nfse_status_field"]) or "")
    state = fiscal_state_from_words(status, number)
    message = str(data.get(settings["nfse_message_field"]) or "").strip()
    return FiscalResult(state=state, remote_id=str(data.get("id_servico") or ""),
                        number=number if state == FiscalState.ISSUED else "",
                        message=message or (status if state != FiscalState.ISSUED else ""),
                        access_key=str(data.get("codigo_verificacao") or ""))


# --------------------------------------------------------------------------- pulls
def pos_sale_from_remote(data: dict[str, Any], items: list[dict[str, Any]], modified_field: str) -> PosSale:
    sold_at = (parse_timestamp(f"{data.get('data_pedido', '')} {data.get('hora_pedido', '') or '00:00:00'}".strip())
               or parse_timestamp(data.get(modified_field)) or datetime.now(BRASILIA))
    return PosSale(
        remote_id=str(data.get("id_frente")),
        sold_at=sold_at,
        total=to_decimal(data.get("valor_total_nota")),
        customer_remote_id=str(data.get("id_cliente") or "") if str(data.get("id_cliente") or "0") != "0" else "",
        customer_name=str(data.get("nome_cliente") or ""),
        payment_method=str(data.get("forma_pagamento") or ""),
        status=str(data.get("status_pedido") or ""),
        items=[{"product_id": str(i.get("id_produto") or ""), "description": str(i.get("desc_produto") or ""),
                "quantity": to_decimal(i.get("qtde_produto")), "unit_price": to_decimal(i.get("valor_unit_produto"))}
               for i in items],
        raw=data,
    )


def receipt_from_remote(data: dict[str, Any]) -> Receipt:
    paid = to_decimal(data.get("valor_pago"))
    return Receipt(
        remote_id=str(data.get("id_conta_rec")),
        amount=paid if paid else to_decimal(data.get("valor_rec")),
        paid_at=parse_date(data.get("data_pagamento")),
        receivable_remote_id=str(data.get("id_conta_rec")),
        origin=str(data.get("identificacao") or ""),
        customer_remote_id=str(data.get("id_cliente") or ""),
        payment_method=str(data.get("forma_pagamento") or ""),
        raw=data,
    )


# --------------------------------------------------------------------------- errors
_FIELD_PATTERN = re.compile(r"\b(" + "|".join(sorted(CUSTOMER_FIELDS, key=len, reverse=True)) + r")\b")


def error_messages(body: Any) -> list[str]:
    """Every human message in a VHSYS error body, whichever of its two shapes it has."""
    if not isinstance(body, dict):
        return [str(body)[:300]] if body else []
    messages: list[str] = []
    for key in ("data", "mensagem", "message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            messages.append(value.strip())
    for item in body.get("erros") or []:
        messages.append(str(item.get("mensagem") or item) if isinstance(item, dict) else str(item))
    return messages


def field_errors(messages: Iterable[str]) -> tuple[list[FieldError], list[str]]:
    """Split ERP messages into those naming a known VHSYS field (mapped to the canonical name) and the rest."""
    attributed, general = [], []
    for message in messages:
        for part in filter(None, (p.strip() for p in message.split(";"))):
            match = _FIELD_PATTERN.search(part)
            if match:
                attributed.append(FieldError(CUSTOMER_FIELDS[match.group(1)], part))
            else:
                general.append(part)
    return attributed, general


def permanent_error(body: Any, what: str, status: int | None = None) -> PermanentError:
    """A refusal body -> PermanentError in plain words, each ERP reason verbatim exactly once.

    Reasons that name a field become field errors (plain() shows them as "tax_id: <reason>");
    the others go into the message itself.
    """
    attributed, general = field_errors(error_messages(body))
    if not attributed and not general:
        general = ["no reason given"]
    message = f"VHSYS refused {what}" + (f": {'; '.join(general)}" if general else "")
    return PermanentError(message, field_errors=attributed, status=status, raw=body)
