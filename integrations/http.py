"""One HTTP client for every connector.

- timeouts on every call, retries with exponential backoff and jitter for transient failures,
  Retry-After honoured on 429/503;
- a rate limiter per ERP account kept in Redis, so any number of workers on any number of
  machines share one budget (sliding-window log per window, atomic in a Lua script);
- an optional cap on requests in flight per account (a Redis semaphore);
- secrets redacted from every log line this module (or a connector through it) writes.
Requests are prepared and sent by transport.py (urllib3's pool, no requests.Session).
"""
from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import requests

from .base import AuthError, PermanentError, RateLimit, RateLimitedError, TransientError
from .transport import Transport

log = logging.getLogger("integrations.http")

SECRET_HEADERS = {"authorization", "access-token", "secret-access-token", "x-token", "partner-token",
                  "app_key", "app_secret", "appkey", "appsecret", "token", "secret-access-token", "cookie"}


# --------------------------------------------------------------------------- redaction
class SecretRegistry:
    """Values that must never reach a log line (credentials, tokens). Process-wide."""

    _lock = threading.Lock()
    _values: set[str] = set()

    @classmethod
    def add(cls, *values: str) -> None:
        with cls._lock:
            cls._values.update(v for v in values if v and len(v) >= 4)

    @classmethod
    def redact(cls, text: str) -> str:
        if not text:
            return text
        for v in sorted(cls._values, key=len, reverse=True):
            if v in text:
                text = text.replace(v, "***")
        return _TOKENISH.sub(lambda m: m.group(1) + "***", text)


_TOKENISH = re.compile(r"((?:access[_-]?token|secret[_-]?access[_-]?token|refresh_token|client_secret|app_secret|"
                       r"app_key|password|Bearer)[\"']?\s*[:= ]\s*[\"']?)[^\s\"'&,}]+", re.I)


class RedactingFilter(logging.Filter):
    """Attach to handlers: rewrites the formatted message with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - a broken format string should still log
            msg = str(record.msg)
        record.msg = SecretRegistry.redact(msg)
        record.args = ()
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the redacting filter to every handler of the root logger (idempotent)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


# what requests.Session would add to every request
SESSION_HEADERS = {"Accept-Encoding": "gzip, deflate", "Accept": "*/*", "Connection": "keep-alive"}


# --------------------------------------------------------------------------- rate limiting
_RESERVE = """
-- KEYS: one sorted set per window, then the account's pacing key.
-- ARGV: member, spacing_ms, horizon_ms, wanted, then (limit, window_ms) pairs.
-- The clock is Redis's own, read inside the script: every worker on every machine agrees on it,
-- and no time can go stale between reading it and recording the request.
-- Requests are paced evenly over the shortest window (a burst queues at the ERP, and its last
-- requests arrive late, next to the following window's first ones), and no window may overflow.
-- The earliest send time that respects all of that is computed and, when it is within the horizon,
-- reserved for the caller, who sleeps until then and sends: no slot is lost to callers polling, and
-- reservations are served in the order they were made. Up to `wanted` consecutive send times are
-- reserved this way in one call. Answer: {0, milliseconds until the first free time} when even
-- the first is beyond the horizon, else {1, milliseconds from now of each reserved time...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local member = ARGV[1]
local spacing = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local pace = KEYS[#KEYS]
local windows = #KEYS - 1
for i = 1, windows do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - tonumber(ARGV[i * 2 + 4]))
end
local nxt = tonumber(redis.call('GET', pace) or '0')
local out = {1}
for k = 1, wanted do
  local at = now
  if nxt > at then at = nxt end
  for i = 1, windows do
    local limit = tonumber(ARGV[i * 2 + 3])
    local window = tonumber(ARGV[i * 2 + 4])
    local count = redis.call('ZCARD', KEYS[i])
    if count >= limit then
      local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
      local free = tonumber(oldest[2]) + window
      if free > at then at = free end
    end
  end
  local delay = at - now
  if delay > horizon then
    if k == 1 then return {0, tostring(delay)} end
    break
  end
  for i = 1, windows do
    redis.call('ZADD', KEYS[i], at, member .. ':' .. k)
    redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[i * 2 + 4]) + delay) + 1000)
  end
  nxt = at + spacing
  out[#out + 1] = tostring(delay)
end
if spacing > 0 then
  redis.call('SET', pace, tostring(nxt), 'PX', math.ceil(nxt - now) + 1000)
end
return out
"""


class RedisRateLimiter:
    """Sliding-window limiter shared by every process that talks to the same Redis.

    `safety` widens each window a little: requests leave here and arrive at the ERP with
    network jitter, and the ERP counts by arrival, so a window of exactly 1 s would sometimes
    let one request too many land inside the ERP's second.
    A caller reserves its send time (at most `horizon` seconds ahead) and sleeps until then.

    When an account's pace leaves less than BLOCK_SPAN between two requests, a round trip to
    Redis per request would cost more than the pace allows: one call then reserves the next
    send times that fall within BLOCK_SPAN (at most BLOCK_MAX), and this process's threads use
    them in order. A reserved time is used at most LATE late; one later than that is dropped
    (it stays counted, so a window is never overrun), and so are those a process no longer needs.
    At any pace of 100 requests a second or slower, every request reserves its own time.
    """

    BLOCK_SPAN = 0.010
    BLOCK_MAX = 32
    LATE = 0.010

    def __init__(self, redis, prefix: str = "tecpet:ratelimit", safety: float = 0.04, horizon: float = 2.0):
        self.redis = redis
        self.prefix = prefix
        self.safety = safety
        self.horizon = horizon
        self._script = redis.register_script(_RESERVE)
        self._kept: dict[tuple, deque[float]] = {}
        self._kept_lock = threading.Lock()

    def _plan(self, account_key: str, limit: RateLimit) -> tuple[list[str], list, int]:
        safety = self.safety if limit.safety is None else limit.safety
        shortest = min(limit.windows, key=lambda w: w[1])
        spacing = shortest[1] * (1 + safety) / shortest[0]
        block = max(1, min(self.BLOCK_MAX, int(self.BLOCK_SPAN / spacing))) if spacing > 0 else self.BLOCK_MAX
        keys, args = [], [uuid.uuid4().hex, spacing * 1000.0, self.horizon * 1000.0, block]
        for count, seconds in limit.windows:
            keys.append(f"{self.prefix}:{account_key}:{count}/{seconds}")
            args += [count, seconds * 1000.0 * (1 + safety)]
        keys.append(f"{self.prefix}:{account_key}:pace")
        return keys, args, block

    def reserve(self, account_key: str, limit: RateLimit) -> tuple[bool, float]:
        """(True, seconds until the reserved send time); or, when the earliest free time is further
        away than the horizon, (False, seconds until then) and nothing reserved. At a fast pace one
        call reserves a block: its other times are kept for this process's next calls."""
        if not limit.windows:
            return True, 0.0  # only an in-flight cap, no rate
        keys, args, _ = self._plan(account_key, limit)
        answer = self._script(keys=keys, args=args)
        delays = [max(0.0, float(d)) / 1000.0 for d in answer[1:]]
        reserved = bool(int(answer[0]))
        if reserved and len(delays) > 1:
            now = time.monotonic()
            with self._kept_lock:
                self._kept.setdefault((account_key, limit), deque()).extend(now + d for d in delays[1:])
        return reserved, delays[0]

    def _take_kept(self, key: tuple) -> float | None:
        """The earliest send time this process holds for `key` that is not too late, or None."""
        with self._kept_lock:
            kept = self._kept.get(key)
            if not kept:
                return None
            now = time.monotonic()
            while kept and kept[0] < now - self.LATE:
                kept.popleft()
            if not kept:
                del self._kept[key]
                return None
            return kept.popleft()

    def acquire(self, account_key: str, limit: RateLimit, max_wait: float = 120.0) -> None:
        """Return at this request's send time: reserve it (or take one this process reserved in
        a block), then sleep until it comes."""
        at = self._take_kept((account_key, limit))
        if at is not None:
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            return
        deadline = time.monotonic() + max_wait
        while True:
            reserved, delay = self.reserve(account_key, limit)
            if reserved:  # counted from now on: sent at its time, never given back
                if delay > 0:
                    time.sleep(delay)
                return
            if time.monotonic() + delay > deadline:
                raise RateLimitedError("Our own request budget for this ERP account is used up",
                                       retry_after=delay)
            time.sleep(min(max(delay - self.horizon / 2, 0.01), 5.0))


_HOLD = """
-- KEYS[1]: the account's in-flight set. ARGV: token, slots, lease_ms. Check-and-take in one step,
-- on Redis's clock, so two workers can never both see the last free slot.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 5000)
  return 1
end
return 0
"""


class RedisSemaphore:
    """At most N requests in flight per account across all workers (leases expire)."""

    def __init__(self, redis, prefix: str = "tecpet:inflight", lease_seconds: float = 60.0):
        self.redis = redis
        self.prefix = prefix
        self.lease = lease_seconds
        self._script = redis.register_script(_HOLD)

    def try_take(self, account_key: str, slots: int) -> str | None:
        """A slot's token now, or None when all are taken (no waiting)."""
        token = uuid.uuid4().hex
        taken = int(self._script(keys=[f"{self.prefix}:{account_key}"], args=[token, slots, int(self.lease * 1000)]))
        return token if taken else None

    def renew(self, account_key: str, token: str) -> None:
        """Restart a held slot's lease (on Redis's clock, like the take)."""
        self.redis.eval("local t = redis.call('TIME') "
                        "redis.call('ZADD', KEYS[1], 'XX', tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000, ARGV[1])",
                        1, f"{self.prefix}:{account_key}", token)

    def give_back(self, account_key: str, token: str) -> None:
        self.redis.zrem(f"{self.prefix}:{account_key}", token)

    @contextmanager
    def hold(self, account_key: str, slots: int) -> Iterator[None]:
        key = f"{self.prefix}:{account_key}"
        token = uuid.uuid4().hex
        while not int(self._script(keys=[key], args=[token, slots, int(self.lease * 1000)])):
            time.sleep(0.005 + random.uniform(0, 0.01))
        try:
            yield
        finally:
            self.redis.zrem(key, token)


# --------------------------------------------------------------------------- the client
class HttpClient:
    """The shared session. Connectors call `request`; it returns a `requests.Response`.

    It raises TransientError after exhausting retries on network errors and 5xx,
    RateLimitedError after exhausting retries on 429. Other statuses are returned for the
    connector to interpret (ERPs put their error details in the body).
    """

    def __init__(self, redis=None, *, timeout: float = 20.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 20.0, user_agent: str = "TecPet-Integrations/1.0"):
        # no cookies, proxies or netrc: one transport serves every clinic's ERP account, and nothing
        # of one account's answers may ride along on another's requests (see transport.py)
        self.transport = Transport(pool_connections=32, pool_maxsize=64)
        self.redis = redis
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.user_agent = user_agent
        self.limiter = RedisRateLimiter(redis) if redis is not None else None
        self.inflight = RedisSemaphore(redis) if redis is not None else None
        self.sleep = time.sleep
        # Called with a plain description of every ERP failure that is being retried, so the
        # sync layer can show it on the run page while it lasts.
        self.listeners: list = []

    def close(self) -> None:
        self.transport.close()

    def _notify(self, what: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(what)
            except Exception:  # a display hook never breaks a request
                log.debug("retry listener failed", exc_info=True)

    # -- coordination helpers connectors may use
    @contextmanager
    def lock(self, name: str, timeout: float = 60.0, wait: float = 60.0) -> Iterator[None]:
        """A lock shared by every worker (token refresh per account, for instance)."""
        if self.redis is None:
            yield
            return
        lock = self.redis.lock(f"tecpet:lock:{name}", timeout=timeout, blocking_timeout=wait)
        if not lock.acquire():
            raise TransientError(f"Could not take the lock {name!r} in {wait:.0f}s")
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # lease expired: someone else may hold it now
                log.warning("lock %s expired before release", name)

    @contextmanager
    def _in_flight(self, account_key: str | None, rate_limit: RateLimit | None) -> Iterator[None]:
        if rate_limit is not None and rate_limit.max_concurrency and account_key and self.inflight is not None:
            with self.inflight.hold(account_key, rate_limit.max_concurrency):
                yield
        else:
            yield

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff) + random.uniform(0, 0.05)
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return random.uniform(base / 2, base)

    def request(self, method: str, url: str, *, account_key: str | None = None,
                rate_limit: RateLimit | None = None, headers: dict[str, str] | None = None,
                secrets: Iterable[str] = (), retry_statuses: Iterable[int] = (500, 502, 503, 504),
                timeout: float | None = None, retries: int | None = None, params: Any = None, json: Any = None,
                **kwargs: Any) -> requests.Response:
        SecretRegistry.add(*secrets)
        hdrs = {**SESSION_HEADERS, "User-Agent": self.user_agent}
        hdrs.update(headers or {})
        attempts = (self.retries if retries is None else retries) + 1
        last_error: Exception | None = None
        retry_statuses = set(retry_statuses)
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                # the in-flight slot first, then the rate slot: a request never waits for a
                # concurrency slot after being counted against the rate
                with self._in_flight(account_key, rate_limit):
                    if rate_limit is not None and account_key and self.limiter is not None:
                        self.limiter.acquire(account_key, rate_limit)
                    prepared = self.transport.prepare(method, url, hdrs, params=params, json_body=json, **kwargs)
                    resp = self.transport.send(prepared, timeout=timeout or self.timeout)
            except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                    requests.exceptions.InvalidURL) as exc:
                raise PermanentError(f"The ERP address is not a valid URL ({_safe_url(url)}): check the "
                                     "integration's API address setting") from exc
            except (UnicodeError, requests.exceptions.InvalidHeader) as exc:
                # a credential or setting sent in a header holds characters HTTP cannot carry
                raise PermanentError("A credential or setting of this integration holds characters that cannot be "
                                     "sent to the ERP (accents, emoji or line breaks): enter it again exactly "
                                     "as the ERP shows it") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = TransientError(f"Could not reach the ERP ({type(exc).__name__})")
                self._notify(last_error.message)
                log.info("%s %s failed: %s (attempt %d/%d)", method, _safe_url(url), type(exc).__name__, attempt + 1, attempts)
                if attempt + 1 < attempts:
                    self.sleep(self.backoff_delay(attempt))
                continue
            elapsed = (time.monotonic() - started) * 1000
            log.debug("%s %s -> %s in %.0f ms", method, _safe_url(url), resp.status_code, elapsed)
            if resp.status_code == 429:
                retry_after = _retry_after(resp)
                last_error = RateLimitedError(retry_after=retry_after or 1.0, status=429, raw=_body(resp))
                self._notify("The ERP asked us to slow down (HTTP 429)")
                if attempt + 1 < attempts:
                    self.sleep(self.backoff_delay(attempt, retry_after if retry_after is not None else 1.0 * (attempt + 1)))
                continue
            if resp.status_code in retry_statuses:
                last_error = TransientError(f"The ERP answered HTTP {resp.status_code}", status=resp.status_code,
                                            raw=_body(resp))
                self._notify(last_error.message)
                if attempt + 1 < attempts:
                    self.sleep(self.backoff_delay(attempt, _retry_after(resp)))
                continue
            return resp
        assert last_error is not None
        raise last_error


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:500]


def _safe_url(url: str) -> str:
    return SecretRegistry.redact(url)


def raise_for_auth(resp: requests.Response, message: str = "The ERP rejected the credentials") -> None:
    if resp.status_code in (401,):
        raise AuthError(message, status=resp.status_code, raw=_body(resp))
