"""Gestão Click payloads <-> TecPet's canonical records, and its error bodies -> typed errors.

Pure functions only (no I/O), so every translation can be checked without a network.
Gestão Click sends ids and numbers as strings, sometimes money as "1.234,56" and dates as
"DD/MM/YYYY"; the parsers here accept every spelling seen in the wild.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from integrations.base import (
    COMPARED_CUSTOMER_FIELDS, AuthError, ConnectorError, CustomerRecord, FieldError, FiscalResult, FiscalState,
    Installment, InvoiceRecord, PermanentError, PosSale, Receipt, RemoteCustomer,
)

CENTS = Decimal("0.01")


# --------------------------------------------------------------------------- small parsers
def fold(text: Any) -> str:
    """Accent- and case-insensitive form, so "Cartão" and "cartao" name the same thing."""
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def tax_chars(value: Any) -> str:
    """CPF/CNPJ without mask, upper case (alphanumeric CNPJs keep their letters)."""
    return re.sub(r"[^0-9A-Za-z]", "", text(value)).upper()


def digits(value: Any) -> str:
    return re.sub(r"\D", "", text(value))


def parse_money(value: Any) -> Decimal:
    """"60.00", "1234.5", "1.234,56" and "1234,56" are all money the ERP may send."""
    raw = text(value).replace("R$", "").replace(" ", "")
    if not raw:
        return Decimal("0.00")
    if "," in raw and "." in raw:
        decimal_sep = "," if raw.rfind(",") > raw.rfind(".") else "."
        thousands = "." if decimal_sep == "," else ","
        raw = raw.replace(thousands, "").replace(decimal_sep, ".")
    elif "," in raw:
        raw = raw.replace(",", ".")
    try:
        return Decimal(raw).quantize(CENTS)
    except InvalidOperation:
        return Decimal("0.00")


def money(amount: Decimal) -> str:
    return str(Decimal(amount).quantize(CENTS))


def parse_datetime(value: Any) -> datetime | None:
    """ISO ("2024-05-01 10:00:00") or Brazilian ("01/05/2024") dates, with or without time."""
    raw = text(value)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
                "%d/%m/%Y"):
        try:
            return datetime.strptime(raw[:19] if "T" in raw else raw, fmt)
        except ValueError:
            continue
    return None


def parse_date(value: Any) -> date | None:
    moment = parse_datetime(value)
    return moment.date() if moment else None


def fingerprint(content: Any) -> str:
    """A short stable hash of what TecPet cares about in a record; 40 bits is plenty per record."""
    encoded = json.dumps(content, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha1(encoded).hexdigest()[:10]


# --------------------------------------------------------------------------- customers
def mask_tax_id(person_type: str, tax_id: str) -> str:
    """Send CPF/CNPJ formatted: that is how the ERP stores them and how its search matches."""
    value = tax_chars(tax_id)
    if person_type == "PF" and len(value) == 11:
        return f"{value[:3]}.{value[3:6]}.{value[6:9]}-{value[9:]}"
    if person_type == "PJ" and len(value) == 14:
        return f"{value[:2]}.{value[2:5]}.{value[5:8]}/{value[8:12]}-{value[12:]}"
    return value


def mask_zip(zip_code: str) -> str:
    value = digits(zip_code)
    return f"{value[:5]}-{value[5:]}" if len(value) == 8 else value


def address_payload(customer: CustomerRecord) -> dict[str, str]:
    return {"cep": mask_zip(customer.zip_code), "logradouro": customer.street, "numero": customer.number,
            "complemento": customer.complement, "bairro": customer.district, "nome_cidade": customer.city,
            "estado": customer.state.upper()}


def customer_payload(customer: CustomerRecord) -> dict[str, Any]:
    """The fields TecPet owns, in the ERP's names; the tax id goes to `cpf` or `cnpj` by person type."""
    tax_id = mask_tax_id(customer.person_type, customer.tax_id)
    payload: dict[str, Any] = {
        "tipo_pessoa": customer.person_type, "nome": customer.name,
        "cpf": tax_id if customer.person_type == "PF" else "",
        "cnpj": tax_id if customer.person_type == "PJ" else "",
        "razao_social": customer.name if customer.person_type == "PJ" else "",
        "inscricao_estadual": customer.state_registration, "telefone": customer.phone, "email": customer.email,
        "ativo": "1",
    }
    if any(address_payload(customer).values()):
        payload["enderecos"] = [{"endereco": address_payload(customer)}]
    return payload


def merge_customer(current: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The whole record for a PUT: the ERP clears whatever a PUT leaves out, so keep its other data
    (contacts, RG, birth date, extra addresses) and overwrite only what TecPet owns."""
    merged = {k: v for k, v in current.items() if k not in ("id", "cadastrado_em", "modificado_em")}
    merged.update({k: v for k, v in ours.items() if k != "enderecos"})
    addresses = list(current.get("enderecos") or [])
    if ours.get("enderecos"):
        first = dict((addresses[0] or {}).get("endereco") or {}) if addresses else {}
        first.update(ours["enderecos"][0]["endereco"])
        addresses = [{"endereco": first}] + addresses[1:]
    merged["enderecos"] = addresses
    return merged


def first_address(raw: dict[str, Any]) -> dict[str, Any]:
    addresses = raw.get("enderecos") or []
    if not addresses or not isinstance(addresses[0], dict):
        return {}
    return addresses[0].get("endereco") or addresses[0]


def customer_from_gc(raw: dict[str, Any]) -> CustomerRecord:
    # "ES" (estrangeiro) is a person without CPF; TecPet knows only PF and PJ.
    person_type = "PJ" if text(raw.get("tipo_pessoa")) == "PJ" else "PF"
    tax_id = raw.get("cnpj") if person_type == "PJ" else raw.get("cpf")
    address = first_address(raw)
    return CustomerRecord(
        id="", person_type=person_type, name=text(raw.get("nome")), tax_id=tax_chars(tax_id),
        state_registration=text(raw.get("inscricao_estadual")), email=text(raw.get("email")),
        phone=text(raw.get("telefone") or raw.get("celular")), zip_code=digits(address.get("cep")),
        street=text(address.get("logradouro")), number=text(address.get("numero")),
        complement=text(address.get("complemento")), district=text(address.get("bairro")),
        city=text(address.get("nome_cidade")), state=text(address.get("estado")).upper(),
    )


def remote_customer(raw: dict[str, Any]) -> RemoteCustomer:
    return RemoteCustomer(remote_id=text(raw.get("id")), record=customer_from_gc(raw),
                          modified_at=parse_datetime(raw.get("modificado_em")), raw=raw)


def customer_fingerprint(raw: dict[str, Any]) -> str:
    record = customer_from_gc(raw)
    return fingerprint({name: getattr(record, name) for name in COMPARED_CUSTOMER_FIELDS})


def same_person_without_tax_id(raw: dict[str, Any], customer: CustomerRecord) -> bool:
    """Without CPF/CNPJ, the same name plus the same e-mail or phone is the only safe match."""
    theirs = customer_from_gc(raw)
    if fold(theirs.name) != fold(customer.name) or theirs.tax_id:
        return False
    same_email = customer.email and fold(theirs.email) == fold(customer.email)
    same_phone = digits(customer.phone) and digits(theirs.phone) == digits(customer.phone)
    return bool(same_email or same_phone)


# --------------------------------------------------------------------------- financial
@dataclass(frozen=True)
class FinancialSetup:
    """The account-specific ids support collects at setup (they differ per Gestão Click company)."""

    situacao_id: str
    plano_contas_id: str
    conta_bancaria_id: str
    forma_pagamento_id: str
    payment_method_ids: dict[str, str] = field(default_factory=dict)
    servico_id: str = ""
    loja_id: str = ""

    def payment_id(self, method: str) -> str:
        return self.payment_method_ids.get(fold(method), self.forma_pagamento_id)


def parse_id_map(value: str) -> dict[str, str]:
    """"Dinheiro=21; PIX=22, Boleto=23" -> {"dinheiro": "21", ...} (keys folded)."""
    pairs = [p for p in re.split(r"[;,\n]", value or "") if "=" in p]
    return {fold(k): v.strip() for k, v in (p.split("=", 1) for p in pairs) if k.strip() and v.strip()}


def order_marker(invoice_id: str) -> str:
    """Written in the order's internal notes: the ERP has no external-id field to search by."""
    return f"[TecPet:{invoice_id}]"


def receivable_marker(invoice_id: str, number: int) -> str:
    return f"[TecPet:{invoice_id}/{number}]"


def has_marker(value: Any, marker: str) -> bool:
    return marker in text(value)


def service_lines(invoice: InvoiceRecord, setup: FinancialSetup) -> list[dict[str, Any]]:
    lines = []
    for item in invoice.items:
        line = {"nome_servico": item.description, "detalhes": item.description,
                "quantidade": str(item.quantity), "valor_venda": money(item.unit_price),
                "tipo_desconto": "R$", "desconto_valor": "0.00"}
        if setup.servico_id:
            line["servico_id"] = setup.servico_id
        lines.append({"servico": line})
    return lines


def order_payload(invoice: InvoiceRecord, customer_remote_id: str, code: int, setup: FinancialSetup) -> dict[str, Any]:
    """A service order whose parcelas are the invoice's installments (the ERP checks they add up)."""
    count = len(invoice.installments)
    payload: dict[str, Any] = {
        "codigo": code, "cliente_id": customer_remote_id, "situacao_id": setup.situacao_id,
        "data": invoice.issue_date.isoformat(), "condicao_pagamento": "parcelado" if count > 1 else "a_vista",
        "servicos": service_lines(invoice, setup),
        "pagamentos": [{"pagamento": {"data_vencimento": inst.due_date.isoformat(), "valor": money(inst.amount),
                                      "forma_pagamento_id": setup.payment_id(inst.payment_method),
                                      "plano_contas_id": setup.plano_contas_id,
                                      "observacao": f"Parcela {inst.number}/{count}"}}
                       for inst in invoice.installments],
        "observacoes": invoice.notes,
        "observacoes_interna": f"Fatura TecPet nº {invoice.number} {order_marker(invoice.id)}",
    }
    if setup.loja_id:
        payload["loja_id"] = setup.loja_id
    return payload


def receivable_payload(invoice: InvoiceRecord, installment: Installment, order_code: str,
                       customer_remote_id: str, setup: FinancialSetup) -> dict[str, Any]:
    count = len(invoice.installments)
    payload: dict[str, Any] = {
        "descricao": (f"Fatura {invoice.number} - parcela {installment.number}/{count} - OS {order_code} "
                      f"{receivable_marker(invoice.id, installment.number)}"),
        "data_vencimento": installment.due_date.isoformat(), "data_competencia": invoice.issue_date.isoformat(),
        "valor": money(installment.amount), "plano_contas_id": setup.plano_contas_id,
        "forma_pagamento_id": setup.payment_id(installment.payment_method),
        "conta_bancaria_id": setup.conta_bancaria_id, "entidade": "C", "cliente_id": customer_remote_id,
    }
    if setup.loja_id:
        payload["loja_id"] = setup.loja_id
    return payload


READ_ONLY_RECEIVABLE_FIELDS = ("id", "codigo", "cadastrado_em", "modificado_em", "valor_total",
                               "nome_forma_pagamento", "nome_conta_bancaria", "nome_cliente", "nome_plano_conta",
                               "nome_centro_custo", "nome_fornecedor", "nome_transportadora", "nome_funcionario")


def settlement_payload(current: dict[str, Any], amount: Decimal, paid_on: date,
                       conta_bancaria_id: str = "") -> dict[str, Any] | None:
    """The whole receivable with liquidado=1 (the ERP has no separate "baixa" call).

    None when it is already settled. Extra paid over the open amount is recorded as interest;
    less than the open amount cannot be recorded (the API has no partial payment)."""
    if text(current.get("liquidado")) == "1":
        return None
    open_amount = parse_money(current.get("valor_total") or current.get("valor"))
    paid = Decimal(amount).quantize(CENTS)
    if paid < open_amount:
        raise PermanentError(
            f"Gestão Click cannot record a partial payment: the receivable is R$ {open_amount} and "
            f"R$ {paid} was paid. Settle it inside Gestão Click.",
            field_errors=[FieldError("amount", f"R$ {paid} is less than the open R$ {open_amount}")])
    payload = {k: v for k, v in current.items() if k not in READ_ONLY_RECEIVABLE_FIELDS}
    payload["juros"] = money(parse_money(current.get("juros")) + (paid - open_amount))
    payload.update(liquidado="1", data_liquidacao=paid_on.isoformat())
    if conta_bancaria_id:
        payload["conta_bancaria_id"] = conta_bancaria_id
    return payload


def receipt_from_gc(raw: dict[str, Any]) -> Receipt:
    return Receipt(remote_id=text(raw.get("id")), amount=parse_money(raw.get("valor_total") or raw.get("valor")),
                   paid_at=parse_date(raw.get("data_liquidacao")), receivable_remote_id=text(raw.get("id")),
                   origin=text(raw.get("descricao")), customer_remote_id=text(raw.get("cliente_id")),
                   payment_method=text(raw.get("nome_forma_pagamento")), raw=raw)


def receipt_fingerprint(raw: dict[str, Any]) -> str:
    receipt = receipt_from_gc(raw)
    return fingerprint([str(receipt.amount), str(receipt.paid_at), receipt.payment_method, text(raw.get("liquidado"))])


# --------------------------------------------------------------------------- counter sales
def sale_items(raw: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for kind, key, inner, name_key in (("product", "produtos", "produto", "nome_produto"),
                                       ("service", "servicos", "servico", "nome_servico")):
        for entry in raw.get(key) or []:
            line = (entry or {}).get(inner) or entry or {}
            items.append({"kind": kind, "description": text(line.get(name_key)),
                          "quantity": str(parse_money(line.get("quantidade"))),
                          "unit_price": str(parse_money(line.get("valor_venda")))})
    return items


def pos_sale_from_gc(raw: dict[str, Any]) -> PosSale:
    payments = raw.get("pagamentos") or []
    first = ((payments[0] or {}).get("pagamento") or {}) if payments else {}
    sold_at = parse_datetime(raw.get("cadastrado_em")) or parse_datetime(raw.get("data")) or datetime.min
    return PosSale(remote_id=text(raw.get("id")), sold_at=sold_at, total=parse_money(raw.get("valor_total")),
                   customer_remote_id=text(raw.get("cliente_id")), customer_name=text(raw.get("nome_cliente")),
                   payment_method=text(first.get("nome_forma_pagamento")), status=text(raw.get("nome_situacao")),
                   items=sale_items(raw), raw=raw)


def pos_sale_fingerprint(raw: dict[str, Any]) -> str:
    sale = pos_sale_from_gc(raw)
    return fingerprint([str(sale.total), sale.status, sale.payment_method, sale.customer_remote_id, sale.items])


# --------------------------------------------------------------------------- NFS-e
@dataclass(frozen=True)
class FiscalSetup:
    """The clinic's NFS-e parameters in Gestão Click (municipal codes differ per city)."""

    codigo_atividade: str
    codigo_natureza_operacao: str
    iss_retido: str
    cidade_incidencia: str
    estado_incidencia: str
    loja_id: str = ""


@dataclass(frozen=True)
class StatusWords:
    """How the ERP's free-text `situacao` reads (its vocabulary is not documented)."""

    issued: tuple[str, ...]
    rejected: tuple[str, ...]
    cancelled: tuple[str, ...]
    message_fields: tuple[str, ...]


def word_list(value: str) -> tuple[str, ...]:
    return tuple(fold(w) for w in (value or "").split(",") if w.strip())


def nfse_reference(invoice: InvoiceRecord) -> str:
    """Printed on the NFS-e; also how a crashed issue finds its note again."""
    return f"Fatura TecPet nº {invoice.number} (ref. {invoice.id})"


def nfse_description(invoice: InvoiceRecord) -> str:
    lines = [f"{item.quantity} x {item.description} - R$ {money(item.total)}" for item in invoice.items]
    if invoice.notes:
        lines.append(invoice.notes)
    lines.append(nfse_reference(invoice))
    return "\n".join(lines)


def nfse_payload(invoice: InvoiceRecord, customer_remote_id: str, setup: FiscalSetup) -> dict[str, Any]:
    activity = next((i.service_code for i in invoice.items if i.service_code), "") or setup.codigo_atividade
    payload: dict[str, Any] = {
        "destinatario_id_cliente": customer_remote_id, "valor_servico": money(invoice.total),
        "codigo_atividade": activity, "codigo_natureza_operacao": setup.codigo_natureza_operacao,
        "iss_retido": setup.iss_retido, "cidade_incidencia_issqn": setup.cidade_incidencia,
        "estado_incidencia_issqn": setup.estado_incidencia, "descricao": nfse_description(invoice),
    }
    if setup.loja_id:
        payload["loja_id"] = setup.loja_id
    return payload


def unwrap_nfse(data: Any) -> dict[str, Any]:
    """Notes come bare or wrapped as {"NotaFiscalServico": {...}}."""
    if isinstance(data, dict) and isinstance(data.get("NotaFiscalServico"), dict):
        return data["NotaFiscalServico"]
    return data if isinstance(data, dict) else {}


def fiscal_state(situacao: str, words: StatusWords) -> FiscalState:
    folded = fold(situacao)
    for state, vocabulary in ((FiscalState.CANCELLED, words.cancelled), (FiscalState.REJECTED, words.rejected),
                              (FiscalState.ISSUED, words.issued)):
        if any(w in folded for w in vocabulary):
            return state
    return FiscalState.PENDING


def fiscal_result(raw: dict[str, Any], words: StatusWords) -> FiscalResult:
    note = unwrap_nfse(raw)
    situacao = text(note.get("situacao"))
    state = fiscal_state(situacao, words)
    reason = next((text(note.get(f)) for f in words.message_fields if text(note.get(f))), "")
    message = f"{situacao}: {reason}" if reason else situacao
    return FiscalResult(state=state, remote_id=text(note.get("id")), number=text(note.get("numero")),
                        message=message, access_key=text(note.get("codigo_verificacao")))


# --------------------------------------------------------------------------- errors
# Which canonical field an ERP reason talks about; the more specific words come first.
FIELD_WORDS: tuple[tuple[str, str], ...] = (
    (r"cpf|cnpj|cpf_cnpj|documento", "tax_id"),
    (r"tipo_pessoa|tipo de pessoa", "person_type"),
    (r"inscricao[_ ]estadual", "state_registration"),
    (r"e-?mail", "email"),
    (r"telefone|celular", "phone"),
    (r"cep", "zip_code"),
    (r"parcelas?|numero_parcelas", "installments"),
    (r"logradouro|endereco", "street"),
    (r"numero", "number"),
    (r"complemento", "complement"),
    (r"bairro", "district"),
    (r"cidade|municipio|nome_cidade", "city"),
    (r"estado|uf", "state"),
    (r"nome|razao[_ ]social", "name"),
)


def field_for_reason(reason: str) -> str:
    folded = fold(reason)
    for pattern, canonical in FIELD_WORDS:
        if re.search(rf"\b(?:{pattern})\b", folded):
            return canonical
    return ""


def erp_reason(body: Any) -> str:
    """The ERP's own words: data.mensagem (validation), else any message it put elsewhere."""
    if not isinstance(body, dict):
        return ""
    data = body.get("data")
    if isinstance(data, dict):
        for key in ("mensagem", "message", "erro"):
            if text(data.get(key)) and text(data.get(key)) != "Not Found":
                return text(data[key])
    if isinstance(data, str):
        return data
    return text(body.get("mensagem") or body.get("message") or body.get("error"))


def error_from_response(status: int, body: Any, what: str, auth_pattern: str) -> ConnectorError:
    """Any non-success answer -> the typed error the sync layer acts on.

    A 404 is a validation refusal in this ERP (its reason is in data.mensagem), never "record
    not found"; only a reason about tokens means the credentials are bad."""
    reason = erp_reason(body)
    if status in (401, 403) or (reason and auth_pattern and re.search(auth_pattern, fold(reason))):
        detail = f" ({reason})" if reason else ""
        return AuthError("Gestão Click rejected the access tokens" + detail + ". The owner must generate new "
                         "tokens in Gestão Click (Configurações → API) and support must update the integration.",
                         status=status, raw=body)
    if not reason:
        return PermanentError(
            f"Gestão Click refused the {what} without giving a reason (HTTP {status}). A required field "
            "may be missing, or the base URL setting may be wrong.", status=status, raw=body)
    fe = [FieldError(field_for_reason(reason), reason)] if field_for_reason(reason) else []
    return PermanentError(f"Gestão Click refused the {what}: {reason}", field_errors=fe, status=status, raw=body)
