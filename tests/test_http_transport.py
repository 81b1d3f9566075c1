"""The transport under the shared HTTP client: requests prepared exactly as `requests` prepares
them, sent over urllib3's pool, and urllib3's failures turned into the errors the client handles."""
from __future__ import annotations

import gzip
import json
import socket
import time

import pytest
import requests
from werkzeug.wrappers import Request, Response

from integrations.base import PermanentError, TransientError
from integrations.http import HttpClient
from integrations.transport import Transport

HEADERS = {"Accept": "*/*", "User-Agent": "TecPet-Integrations/1.0", "access-token": "tok"}


@pytest.mark.parametrize("method,url,params,body", [
    ("GET", "https://api.vhsys.com/v2/clientes", {"cnpj_cliente": "123.456.789-09", "limit": 1}, None),
    ("GET", "https://api.example.com/v1/items?page=2", {"q": "São Paulo & Rio", "tags": ["a", "b"], "gone": None}, None),
    ("GET", "http://127.0.0.1:5101/path with space/ç", None, None),
    ("POST", "https://api.example.com/clientes", None, {"razao_cliente": "Tutor Ação", "valor": 10.5, "itens": [1, 2]}),
    ("POST", "https://api.example.com/acao", None, None),
    ("PUT", "https://api.example.com/clientes/9", {"x": ""}, {"a": None}),
    ("DELETE", "https://api.example.com/clientes/9", None, None),
])
def test_requests_are_prepared_as_requests_prepares_them(method, url, params, body):
    ours = Transport().prepare(method, url, dict(HEADERS), params=params, json_body=body)
    theirs = requests.Request(method, url, headers=dict(HEADERS), params=params, json=body).prepare()
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)


def test_a_form_or_raw_body_is_prepared_by_requests_itself():
    t = Transport()
    form = t.prepare("POST", "https://erp.example.com/token", dict(HEADERS), data={"grant_type": "refresh", "x": "é"})
    assert form.body == "grant_type=refresh&x=%C3%A9"
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    raw = t.prepare("POST", "https://erp.example.com/soap", dict(HEADERS), data="<envelope/>".encode())
    assert raw.body == b"<envelope/>" and raw.headers["Content-Length"] == "11"


def test_a_header_requests_would_refuse_is_refused_before_anything_is_sent():
    with pytest.raises(requests.exceptions.InvalidHeader):
        Transport().prepare("GET", "https://erp.example.com/x", {"access-token": "abc\r\nX-Injected: 1"})


def test_redirects_are_followed_and_compressed_answers_decoded(serve_sandbox, redis_client):
    seen = []

    @Request.application
    def erp(request):
        seen.append((request.method, request.path, request.headers.get("access-token")))
        if request.path == "/old":
            return Response(status=302, headers={"Location": "/new?page=2"})
        body = gzip.compress(json.dumps({"ok": True, "page": request.args.get("page")}).encode())
        return Response(body, content_type="application/json", headers={"Content-Encoding": "gzip"})

    server = serve_sandbox(erp)
    client = HttpClient(redis_client, timeout=5, retries=0)
    resp = client.request("GET", server.url + "/old", headers={"access-token": "tok"})
    client.close()
    assert resp.status_code == 200 and resp.json() == {"ok": True, "page": "2"}
    assert resp.url.endswith("/new?page=2") and resp.headers["content-type"] == "application/json"
    assert seen == [("GET", "/old", "tok"), ("GET", "/new", "tok")]


def test_a_port_nobody_listens_on_is_a_transient_error_after_the_retries(redis_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    client = HttpClient(redis_client, timeout=2, retries=1, backoff=0.01, max_backoff=0.02)
    trouble = []
    client.listeners.append(trouble.append)
    with pytest.raises(TransientError) as failed:
        client.request("GET", f"http://127.0.0.1:{port}/clientes")
    assert "Could not reach the ERP (ConnectionError)" in failed.value.plain()
    assert len(trouble) == 2  # the first attempt and its retry


def test_an_answer_slower_than_the_timeout_is_a_transient_timeout(serve_sandbox, redis_client):
    @Request.application
    def slow(request):
        time.sleep(0.6)
        return Response("{}", content_type="application/json")

    server = serve_sandbox(slow)
    client = HttpClient(redis_client, timeout=0.2, retries=0)
    with pytest.raises(TransientError) as failed:
        client.request("POST", server.url + "/clientes", json={"a": 1})
    assert "ReadTimeout" in failed.value.plain()


@pytest.mark.parametrize("url", ["http://", "ftp://erp.example.com/x", "http://[not-a-host/x"])
def test_an_address_that_is_not_a_url_is_a_permanent_error_naming_the_setting(url, redis_client):
    client = HttpClient(redis_client, timeout=1, retries=3)
    with pytest.raises(PermanentError) as failed:
        client.request("GET", url)
    assert "check the integration's API address setting" in failed.value.plain()
