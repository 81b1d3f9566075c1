"""The shared HTTP client: one session serves every clinic's ERP account, so nothing of one
account's answers (cookies) may ride along on another account's requests."""
from __future__ import annotations

from werkzeug.wrappers import Request, Response

from integrations.http import HttpClient
from integrations.sandbox_kit import SandboxServer


def test_a_cookie_set_by_one_accounts_erp_never_reaches_the_next_request(redis_client):
    seen = []

    @Request.application
    def erp(request):
        seen.append((request.path, request.headers.get("Cookie"), request.headers.get("User-Agent"),
                     request.headers.get("Accept-Encoding")))
        resp = Response("{}", content_type="application/json")
        resp.set_cookie("session", f"clinic-{request.args.get('clinic')}")
        return resp

    server = SandboxServer(erp).start()
    try:
        client = HttpClient(redis_client, timeout=5, retries=0)
        assert client.request("GET", server.url + "/a?clinic=A").status_code == 200
        assert client.request("GET", server.url + "/b?clinic=B", headers={"X-Extra": "1"}).status_code == 200
    finally:
        server.stop()
    assert [cookie for _, cookie, _, _ in seen] == [None, None]
    assert all(ua == "TecPet-Integrations/1.0" and "gzip" in enc for _, _, ua, enc in seen)
