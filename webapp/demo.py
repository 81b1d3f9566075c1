"""Demo data: one clinic with an owner, a support user, ~50 customers (some incomplete or
invalid, as real clinics have) and a few invoices. Idempotent: running it twice adds nothing."""
from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import select

from integrations import brazil

from .events import bill_invoice, upsert_customer
from .extensions import db
from .models import ApiToken, Clinic, User

DEMO_CLINIC = "Clínica Veterinária Bicho Feliz"
OWNER_EMAIL = "dono@bichofeliz.demo"
SUPPORT_EMAIL = "suporte@tecpet.demo"
OTHER_OWNER_EMAIL = "dona@gatoalegre.demo"
DEMO_PASSWORD = "tecpet-demo"

FIRST = ["Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João",
         "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael", "Sofia", "Tiago", "Vitória", "Wagner"]
LAST = ["Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Carvalho", "Ferreira", "Rodrigues", "Almeida",
        "Conceição", "d'Ávila", "Gonçalves", "Araújo"]
PLACES = [  # (city, IBGE code, UF, CEP prefix range, district, street)
    ("São Paulo", "3550308", "SP", (1000, 5999), "Pinheiros", "Rua dos Pinheiros"),
    ("Campinas", "3509502", "SP", (13000, 13139), "Cambuí", "Rua Coronel Quirino"),
    ("Rio de Janeiro", "3304557", "RJ", (20000, 23799), "Botafogo", "Rua Voluntários da Pátria"),
    ("Belo Horizonte", "3106200", "MG", (30000, 31999), "Savassi", "Rua Pernambuco"),
    ("Curitiba", "4106902", "PR", (80000, 82999), "Batel", "Avenida do Batel"),
    ("Porto Alegre", "4314902", "RS", (90000, 91999), "Moinhos de Vento", "Rua Padre Chagas"),
    ("Brasília", "5300108", "DF", (70000, 72799), "Asa Sul", "SQS 308 Bloco C"),
]


def make_cpf(rng: random.Random) -> str:
    base = "".join(str(rng.randint(0, 9)) for _ in range(9))
    return base + brazil.cpf_check_digits(base)


def make_cnpj(rng: random.Random, alphanumeric: bool = False) -> str:
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" if alphanumeric else "0123456789"
    base = "".join(rng.choice(chars) for _ in range(8)) + "0001"
    return base + brazil.cnpj_check_digits(base)


def valid_customer(rng: random.Random, n: int) -> dict:
    city, code, uf, (lo, hi), district, street = PLACES[n % len(PLACES)]
    company = n % 6 == 0
    name = (f"Pet Shop {LAST[n % len(LAST)]} Ltda" if company
            else f"{FIRST[n % len(FIRST)]} {LAST[(n * 7) % len(LAST)]}")
    return {
        "id": f"cli-{n:04d}", "person_type": "PJ" if company else "PF", "name": name,
        "tax_id": make_cnpj(rng, alphanumeric=n % 12 == 0) if company else make_cpf(rng),
        "state_registration": "ISENTO" if company else "",
        "email": f"cliente{n}@exemplo.com.br", "phone": f"(11) 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
        "zip_code": f"{rng.randint(lo, hi):05d}{rng.randint(0, 999):03d}", "street": street,
        "number": str(rng.randint(1, 2000)), "complement": "", "district": district, "city": city,
        "city_ibge_code": code, "state": uf,
    }


BROKEN = [  # what goes wrong in real clinics' records
    lambda c: c.update(tax_id=c["tax_id"][:-1] + str((int(c["tax_id"][-1]) + 1) % 10)),  # wrong check digit
    lambda c: c.update(tax_id=""),
    lambda c: c.update(zip_code="", street=""),
    lambda c: c.update(name=" "),
    lambda c: c.update(person_type="PJ") if c["person_type"] == "PF" else c.update(person_type="PF"),
    lambda c: c.update(city_ibge_code="3304557") if c["state"] != "RJ" else c.update(city_ibge_code="3550308"),
    lambda c: c.update(number="", district=""),  # warnings only
    lambda c: c.update(email="cliente@@exemplo"),  # warning only
]


def seed_demo(customers: int = 50, seed: int = 7, api_token: str | None = None) -> dict:
    clinic = db.session.scalar(select(Clinic).where(Clinic.name == DEMO_CLINIC))
    if clinic is not None:
        return {"clinic_id": clinic.id, "note": "demo data already present"}
    rng = random.Random(seed)
    clinic = Clinic(name=DEMO_CLINIC)
    other = Clinic(name="Clínica Gato Alegre")
    db.session.add_all([clinic, other])
    db.session.flush()
    for email, role, clinic_id in ((OWNER_EMAIL, "owner", clinic.id), (SUPPORT_EMAIL, "support", None),
                                   (OTHER_OWNER_EMAIL, "owner", other.id)):
        u = User(email=email, role=role, clinic_id=clinic_id, name=email.split("@")[0])
        u.set_password(DEMO_PASSWORD)
        db.session.add(u)
    token_row, token = ApiToken.issue(clinic.id, api_token)
    db.session.add(token_row)
    for n in range(1, customers + 1):
        c = valid_customer(rng, n)
        if n % 5 == 0:
            BROKEN[(n // 5) % len(BROKEN)](c)
        upsert_customer(clinic.id, c)
    db.session.flush()
    today = date.today()
    for k, n in enumerate((1, 2, 3, 5, 10)):
        amount = 150 + 35 * k
        bill_invoice(clinic.id, {
            "id": f"fat-{k + 1:04d}", "number": f"{1000 + k}", "customer_id": f"cli-{n:04d}",
            "issue_date": (today - timedelta(days=k)).isoformat(), "kind": "service",
            "items": [{"description": "Consulta veterinária", "quantity": "1", "unit_price": f"{amount}.00",
                       "service_code": "05.08"},
                      {"description": "Vacina V10", "quantity": "1", "unit_price": "90.00", "service_code": "05.08"}],
            "installments": [{"number": 1, "due_date": (today + timedelta(days=30)).isoformat(),
                              "amount": f"{amount + 90}.00", "payment_method": "PIX"}],
        })
    db.session.commit()
    return {"clinic_id": clinic.id, "owner": f"{OWNER_EMAIL} / {DEMO_PASSWORD}",
            "support": f"{SUPPORT_EMAIL} / {DEMO_PASSWORD}", "api_token": token}
