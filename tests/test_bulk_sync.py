"""An initial sync reads the ERP's customer list once: existing customers are linked (or updated),
new ones created without a search per record, and nothing is created twice."""
from __future__ import annotations

import requests
from sqlalchemy import select

from integrations import brazil
from integrations.vhsys.sandbox import DEMO_CREDENTIALS
from webapp.models import Binding, SyncRun

from .helpers import erp_call, VALID_CUSTOMERS, customer_event, post_events
from .test_walking_skeleton import sandbox_state, setup_vhsys

HEADERS = {"access-token": DEMO_CREDENTIALS["access_token"],
           "secret-access-token": DEMO_CREDENTIALS["secret_access_token"], "User-Agent": "test/1.0"}


def customer(i: int) -> dict:
    base = f"{200000000 + i * 7:09d}"
    return dict(VALID_CUSTOMERS[0], id=f"bulk-{i}", name=f"Cliente {i}", tax_id=base + brazil.cpf_check_digits(base))


def test_initial_sync_links_existing_erp_customers_and_creates_the_rest(world, web, api, work, serve_sandbox, db_session):
    from integrations.vhsys.sandbox import Sandbox
    server = serve_sandbox(Sandbox(rate_limit=[(100000, 1.0)]))
    customers = [customer(i) for i in range(60)]
    # the clinic already had 10 of them in VHSYS (one typed differently there)
    for i, c in enumerate(customers[:10]):
        body = {"razao_cliente": c["name"] if i else "CLIENTE ZERO", "tipo_pessoa": "PF",
                "cnpj_cliente": brazil.format_tax_id(c["tax_id"]), "endereco_cliente": c["street"],
                "numero_cliente": c["number"], "bairro_cliente": c["district"], "cep_cliente": c["zip_code"],
                "cidade_cliente": c["city"], "uf_cliente": c["state"], "email_cliente": c["email"],
                "celular_cliente": c["phone"]}
        assert erp_call("POST", f"{server.url}/clientes", json=body, headers=HEADERS).json()["status"] == "success"
    post_events(api, world["token_a"], *[customer_event(c) for c in customers])
    setup_vhsys(web("support@test"), world["clinic_a"].id, server, features=("sync_customers",))
    before = requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()["requests"]
    work()
    run = db_session.scalar(select(SyncRun).where(SyncRun.trigger == "initial"))
    assert run.status == "succeeded" and run.total == 60
    assert run.created == 50 and run.updated + run.unchanged == 10, (run.created, run.updated, run.unchanged)
    state = sandbox_state(server)
    assert len(state["clientes"]) == 60  # nobody twice
    assert any(c["razao_cliente"] == customers[0]["name"] for c in state["clientes"])  # the differing one updated
    requests_used = requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()["requests"] - before
    assert requests_used <= 50 + 1 + 1 + 5, requests_used  # creates + the update + a page or two of the list
    assert db_session.scalar(select(Binding).where(Binding.state != "bound")) is None
