"""Shared pieces of the ERP sandboxes: a tiny WSGI app base with routing, fault injection,
request counting, per-account rate limiting as the ERP does it, and a loopback server.

Each ERP's sandbox.py subclasses SandboxApp and adds the ERP's own endpoints and shapes.
Control endpoints (not part of any ERP) live under /__sandbox__/:
  GET  /__sandbox__/stats    -> {"requests": n, "over_limit": n, "by_route": {...}, "faults": {...}}
  POST /__sandbox__/faults   -> JSON {latency_ms, error_rate, throttle_rate, expire_tokens, rate_limit: [[n, s], ...]}
  POST /__sandbox__/reset    -> clears data and counters
  GET  /__sandbox__/state    -> the sandbox's stored records (for tests and the demo)
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0       # share of requests answered with a 5xx
    throttle_rate: float = 0.0    # share of requests answered 429 regardless of the limit
    reject_rate: float = 0.0      # share of writes refused with the ERP's validation error shape
    timeout_rate: float = 0.0     # share of requests that hang past the client's timeout
    timeout_seconds: float = 30.0
    expire_tokens: bool = False   # next authenticated call finds its token expired
    rate_limit: list[tuple[int, float]] = field(default_factory=list)  # [(count, seconds)] per account
    max_concurrency: int = 0      # requests in flight per account (0 = unlimited)
    seed: int | None = None


class SandboxApp:
    """Base WSGI app. Subclasses set `rules` (werkzeug Rules with endpoint=method name)."""

    name = "sandbox"
    rules: list[Rule] = []
    default_rate_limit: list[tuple[int, float]] = []

    def __init__(self, **faults: Any):
        self.lock = threading.RLock()
        self.url_map = Map([r.empty() for r in self.rules] + [
            Rule("/__sandbox__/stats", endpoint="_stats", methods=["GET"]),
            Rule("/__sandbox__/faults", endpoint="_faults", methods=["POST"]),
            Rule("/__sandbox__/reset", endpoint="_reset", methods=["POST"]),
            Rule("/__sandbox__/state", endpoint="_state", methods=["GET"]),
        ], strict_slashes=False)
        self.faults = Faults(rate_limit=list(self.default_rate_limit))
        self.configure(**faults)
        self.reset()

    # -- state
    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.over_limit = 0
            self.by_route: dict[str, int] = defaultdict(int)
            self._arrivals: dict[tuple[str, int], deque] = defaultdict(deque)
            self._inflight: dict[str, int] = defaultdict(int)
            self.max_inflight_seen = 0
            self.reset_data()

    def reset_data(self) -> None:
        """Subclasses clear their stored records here."""

    def state(self) -> dict[str, Any]:
        return {}

    def configure(self, **faults: Any) -> None:
        with self.lock:
            for k, v in faults.items():
                if not hasattr(self.faults, k):
                    raise ValueError(f"unknown fault setting {k}")
                if k == "rate_limit" and v is not None:
                    v = [tuple(x) for x in v]
                setattr(self.faults, k, v)
            self.rng = random.Random(self.faults.seed)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "over_limit": self.over_limit, "by_route": dict(self.by_route),
                    "max_inflight": self.max_inflight_seen}

    # -- hooks for subclasses
    def account_of(self, request: Request) -> str:
        """Which ERP account a request belongs to (for limits); override per ERP."""
        return "default"

    def throttled_response(self, request: Request, retry_after: float) -> Response:
        return self.json({"error": "too many requests"}, 429, headers={"Retry-After": f"{retry_after:.0f}"})

    def server_error_response(self, request: Request) -> Response:
        return self.json({"error": "internal error"}, 503)

    def rejected_response(self, request: Request) -> Response:
        """A validation refusal in the ERP's own shape; ERPs override it."""
        return self.json({"error": "Registro recusado pela validação do ERP (falha injetada)"}, 400)

    # -- helpers
    @staticmethod
    def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(data, ensure_ascii=False, default=str), status=status,
                        headers=headers, content_type="application/json; charset=utf-8")

    @staticmethod
    def body(request: Request) -> Any:
        if not request.data:
            return {}
        try:
            return json.loads(request.get_data(as_text=True))
        except ValueError:
            return None

    def _check_rate(self, account: str) -> float:
        """Record an arrival; return 0 when within every window, else seconds until allowed."""
        now = time.monotonic()
        wait = 0.0
        with self.lock:
            for count, seconds in self.faults.rate_limit:
                q = self._arrivals[(account, count, seconds)]
                while q and q[0] <= now - seconds:
                    q.popleft()
                if len(q) >= count:
                    wait = max(wait, q[0] + seconds - now)
            if wait > 0:
                self.over_limit += 1
                return wait
            for count, seconds in self.faults.rate_limit:
                self._arrivals[(account, count, seconds)].append(now)
        return 0.0

    # -- WSGI
    def __call__(self, environ, start_response):
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return self.not_found(request)(environ, start_response)
        except HTTPException as exc:
            return exc(environ, start_response)
        if endpoint.startswith("_"):
            return self._control(endpoint, request)(environ, start_response)
        with self.lock:
            self.requests += 1
            self.by_route[f"{request.method} {adapter.match(return_rule=True)[0].rule}"] += 1
        account = self.account_of(request)
        f = self.faults
        inflight_key = account
        with self.lock:
            self._inflight[inflight_key] += 1
            self.max_inflight_seen = max(self.max_inflight_seen, self._inflight[inflight_key])
            too_many = f.max_concurrency and self._inflight[inflight_key] > f.max_concurrency
        try:
            if f.latency_ms:
                time.sleep(f.latency_ms / 1000.0)
            if too_many:
                with self.lock:
                    self.over_limit += 1
                resp = self.concurrency_response(request)
            elif f.rate_limit and (wait := self._check_rate(account)) > 0:
                resp = self.throttled_response(request, max(wait, 1.0))
            elif f.throttle_rate and self.rng.random() < f.throttle_rate:
                resp = self.throttled_response(request, 1.0)
            elif (f.reject_rate and request.method in ("POST", "PUT", "PATCH")
                  and self.rng.random() < f.reject_rate):
                resp = self.rejected_response(request)
            elif f.error_rate and self.rng.random() < f.error_rate:
                resp = self.server_error_response(request)
            elif f.timeout_rate and self.rng.random() < f.timeout_rate:
                time.sleep(f.timeout_seconds)
                resp = self.server_error_response(request)
            else:
                try:
                    resp = getattr(self, endpoint)(request, **args)
                except HTTPException as exc:
                    resp = exc.get_response()
        finally:
            with self.lock:
                self._inflight[inflight_key] -= 1
        return resp(environ, start_response)

    def concurrency_response(self, request: Request) -> Response:
        return self.throttled_response(request, 1.0)

    def not_found(self, request: Request) -> Response:
        return self.json({"error": "not found"}, 404)

    def _control(self, endpoint: str, request: Request) -> Response:
        if endpoint == "_stats":
            return self.json(self.stats())
        if endpoint == "_faults":
            try:
                self.configure(**(self.body(request) or {}))
            except (ValueError, TypeError) as exc:
                return self.json({"error": str(exc)}, 400)
            return self.json({"ok": True})
        if endpoint == "_reset":
            self.reset()
            return self.json({"ok": True})
        with self.lock:
            return self.json(self.state())


class SandboxServer:
    """Runs a sandbox on loopback in a thread: `with SandboxServer(app) as s: s.url`."""

    def __init__(self, app: Callable, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.server = make_server(host, port, app, threaded=True)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"sandbox-{self.port}", daemon=True)

    def start(self) -> "SandboxServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class IdSequence:
    """Monotonic integer ids, like an ERP's primary keys."""

    def __init__(self, start: int = 1000):
        self._n = start
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n
