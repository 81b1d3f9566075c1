"""Builders for events as TecPet core sends them (valid by default; tests break what they test)."""
from __future__ import annotations

from datetime import date, timedelta

VALID_CUSTOMERS = [
    # CPF / CNPJ vectors of record-rules.md, real cities with their IBGE codes and CEPs
    {"id": "c-ana", "person_type": "PF", "name": "Ana Conceição d'Ávila", "tax_id": "529.982.247-25",
     "email": "ana@example.com.br", "phone": "(11) 98888-7777", "zip_code": "01310-100",
     "street": "Avenida Paulista", "number": "1000", "district": "Bela Vista", "city": "São Paulo",
     "city_ibge_code": "3550308", "state": "SP"},
    {"id": "c-pet", "person_type": "PJ", "name": "Pet Shop Exemplo Ltda", "tax_id": "11.222.333/0001-81",
     "state_registration": "ISENTO", "email": "contato@petshop.com.br", "zip_code": "20040-002",
     "street": "Rua da Assembleia", "number": "10", "district": "Centro", "city": "Rio de Janeiro",
     "city_ibge_code": "3304557", "state": "RJ"},
    {"id": "c-alfa", "person_type": "PJ", "name": "Clínica Alfa Numérica SA", "tax_id": "12.ABC.345/01DE-35",
     "state_registration": "ISENTO", "email": "fiscal@alfa.com.br", "zip_code": "30130-010",
     "street": "Avenida Afonso Pena", "number": "S/N", "district": "Centro", "city": "Belo Horizonte",
     "city_ibge_code": "3106200", "state": "MG"},
]

INVALID_CUSTOMER = {"id": "c-bad", "person_type": "PF", "name": "Bruno Sem Documento", "tax_id": "529.982.247-24",
                    "zip_code": "", "street": "", "number": "", "district": "", "city": "Curitiba",
                    "city_ibge_code": "4106902", "state": "PR"}


def customer_event(customer: dict) -> dict:
    return {"type": "customer.upserted", "customer": customer}


def invoice_event(invoice_id: str, customer_id: str, amount: str = "250.00", installments: int = 2) -> dict:
    today = date(2026, 11, 20)
    from decimal import Decimal
    total = Decimal(amount)
    part = (total / installments).quantize(Decimal("0.01"))
    parts = [part] * (installments - 1) + [total - part * (installments - 1)]
    return {"type": "invoice.billed", "invoice": {
        "id": invoice_id, "number": invoice_id.upper(), "customer_id": customer_id, "issue_date": today.isoformat(),
        "kind": "service",
        "items": [{"description": "Consulta veterinária", "quantity": "1", "unit_price": amount, "service_code": "05.08"}],
        "installments": [{"number": i + 1, "due_date": (today + timedelta(days=30 * (i + 1))).isoformat(),
                          "amount": str(p), "payment_method": "PIX"} for i, p in enumerate(parts)],
    }}


def post_events(client, token: str, *events: dict):
    body = events[0] if len(events) == 1 else {"events": list(events)}
    return client.post("/api/v1/events", json=body, headers={"Authorization": f"Bearer {token}"})


def erp_call(method: str, url: str, **kwargs):
    """A call made "inside the ERP" by a test (as the clinic would), sharing the account's limit
    with the workers: wait and retry when the ERP says 429, as any client must."""
    import time

    import requests
    for _ in range(10):
        resp = requests.request(method, url, timeout=10, **kwargs)
        if resp.status_code != 429:
            return resp
        time.sleep(float(resp.headers.get("Retry-After") or 1))
    return resp
