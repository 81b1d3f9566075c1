"""How one request reaches an ERP: prepared, then sent over urllib3's connection pool (what
`requests` itself runs on), and answered as a `requests.Response`.

A `requests.Session` spends about as much CPU per call as a loopback round trip takes: it merges
its settings into the request, reads and writes a cookie jar twice, runs hooks and a redirect
generator. The shared client uses none of that. It keeps no cookies, so nothing of one clinic's
ERP account can ride along on another's requests. It reads no proxy or netrc settings from the
environment. So it sends here directly.

Requests with a JSON body (or none) and query parameters are prepared the short way: the URL is
parsed and requoted by `requests` once per address and kept. Anything else (a form body, raw
bytes, files, an auth object) is prepared by `requests` itself. Either way the headers are checked
as `requests` checks them. urllib3's errors are raised as the `requests` exceptions they would have
been, so callers keep catching `requests.ConnectionError`, `requests.Timeout`,
`requests.exceptions.InvalidURL` and `InvalidHeader`.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import certifi
import requests
import urllib3
from requests.models import PreparedRequest, RequestEncodingMixin
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_encoding_from_headers
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, LocationValueError, MaxRetryError, NewConnectionError,
                                ProxyError, ReadTimeoutError, SSLError)

# connection errors are not retried here (the client retries them, with backoff); redirects are
# followed, as a Session follows them, and the last one is answered as it is
_RETRY = urllib3.Retry(total=None, connect=0, read=False, status=0, other=0, redirect=5,
                       raise_on_redirect=False, raise_on_status=False)
_PREPARED_URLS_MAX = 1024


class Transport:
    """Thread-safe: one per HttpClient, shared by every thread of a worker."""

    def __init__(self, *, pool_connections: int = 32, pool_maxsize: int = 64):
        self.pool = urllib3.PoolManager(num_pools=pool_connections, maxsize=pool_maxsize, block=False,
                                        ca_certs=certifi.where(), retries=_RETRY)
        self._urls: dict[str, str] = {}
        self._urls_lock = threading.Lock()

    # -- preparing
    def prepare(self, method: str, url: str, headers: dict[str, str], *, params: Any = None,
                json_body: Any = None, **other: Any) -> PreparedRequest:
        """The request as `requests` would prepare it (URL, headers, body, Content-Length)."""
        if other or "#" in url or (params is not None and not isinstance(params, dict)):
            return requests.Request(method, url, headers=headers, params=params, json=json_body, **other).prepare()
        p = PreparedRequest()
        p.method = method.upper()
        p.url = self._url(url, params)
        h = CaseInsensitiveDict()
        for header in headers.items():
            check_header_validity(header)
            h[header[0]] = header[1]
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            if "content-type" not in h:
                h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
            p.body = body
        else:
            p.body = None
            if p.method not in ("GET", "HEAD") and "content-length" not in h:
                h["Content-Length"] = "0"
        p.headers = h
        p._cookies = None
        p.hooks = {"response": []}
        return p

    def _url(self, url: str, params: dict | None) -> str:
        base = self._urls.get(url)
        if base is None:
            probe = PreparedRequest()
            probe.prepare_url(url, None)
            base = probe.url
            with self._urls_lock:
                if len(self._urls) >= _PREPARED_URLS_MAX:
                    self._urls.clear()
                self._urls[url] = base
        if not params:
            return base
        query = RequestEncodingMixin._encode_params(params)
        if not query:
            return base
        return f"{base}&{query}" if "?" in base else f"{base}?{query}"

    # -- sending
    def send(self, prepared: PreparedRequest, timeout: float) -> requests.Response:
        started = time.monotonic()
        try:
            raw = self.pool.urlopen(prepared.method, prepared.url, body=prepared.body, headers=dict(prepared.headers),
                                    timeout=urllib3.Timeout(connect=timeout, read=timeout), preload_content=True,
                                    decode_content=True)
        except LocationValueError as exc:
            raise requests.exceptions.InvalidURL(str(exc), request=prepared) from exc
        except MaxRetryError as exc:
            raise _as_requests_error(exc.reason or exc, prepared) from exc
        except HTTPError as exc:
            raise _as_requests_error(exc, prepared) from exc
        resp = requests.Response()
        resp.status_code = raw.status
        resp.headers = CaseInsensitiveDict(raw.headers)
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp.reason = raw.reason
        resp.raw = raw
        resp.url = raw.url or prepared.url
        resp.request = prepared
        resp._content = raw.data
        resp._content_consumed = True
        resp.elapsed = timedelta(seconds=time.monotonic() - started)
        return resp

    def close(self) -> None:
        self.pool.clear()


def _as_requests_error(exc: BaseException, prepared: PreparedRequest) -> requests.RequestException:
    if isinstance(exc, NewConnectionError):  # a ConnectTimeoutError to urllib3, refused or unresolvable to us
        return requests.ConnectionError(exc, request=prepared)
    if isinstance(exc, ConnectTimeoutError):
        return requests.exceptions.ConnectTimeout(exc, request=prepared)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc, request=prepared)
    if isinstance(exc, SSLError):
        return requests.exceptions.SSLError(exc, request=prepared)
    if isinstance(exc, ProxyError):
        return requests.exceptions.ProxyError(exc, request=prepared)
    return requests.ConnectionError(exc, request=prepared)
