"""Short-lived per-clinic figures, so pages at 100,000 customers and 10,000 runs do not recompute
them on every request: record health counts (dropped whenever a customer's health changes), the
dashboard's 30-day sync counts and its integration status (both dropped by the commit that changes
an integration or a run's state, see install()).

They live in Redis for TTL_SECONDS, shared by every process. A web process also keeps what it
read for a few seconds (webapp/local_copies.py), so a page under load does not ask Redis each time
(a Redis round trip cost the dashboard a seventh of its throughput under P4's load); forget()
deletes a figure from Redis and drops every process's copy in the same round trip.
"""
from __future__ import annotations

import json
import logging
from itertools import chain
from typing import Any, Callable

from redis.exceptions import RedisError
from sqlalchemy import event, inspect

from .local_copies import copies, drop_everywhere
from .queues import redis_connection

log = logging.getLogger(__name__)
TTL_SECONDS = 30


def _key(name: str, clinic_id: int) -> str:
    return f"tecpet:cache:{name}:{clinic_id}"


def cached(name: str, clinic_id: int, compute: Callable[[], Any]) -> Any:
    return cached_many(clinic_id, {name: compute})[name]


def _compute_and_keep(key: str, compute: Callable[[], Any], generation: int) -> Any:
    value = compute()
    try:
        redis_connection().set(key, json.dumps(value), ex=TTL_SECONDS)
    except RedisError:
        log.debug("cache write skipped")
        return value
    copies.keep(key, value, generation)
    return value


def cached_many(clinic_id: int, computes: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Several figures of one page: this process's copies, then one Redis round trip for the rest."""
    copies.ensure_listener()
    out: dict[str, Any] = {}
    missing = []
    for name in computes:
        hit = copies.get(_key(name, clinic_id))
        if hit is not None:
            out[name] = hit[1]
        else:
            missing.append(name)
    if not missing:
        return out
    generation = copies.generation
    keys = [_key(name, clinic_id) for name in missing]
    try:
        raws = redis_connection().mget(keys)
    except RedisError:
        return {**out, **{name: computes[name]() for name in missing}}  # Redis down: slower, not wrong
    for name, key, raw in zip(missing, keys, raws):
        if raw is None:
            out[name] = _compute_and_keep(key, computes[name], generation)
        else:
            out[name] = value = json.loads(raw)
            copies.keep(key, value, generation)
    return out


def forget_health(clinic_id: int) -> None:
    forget(clinic_id, "health", "problems")


def forget(clinic_id: int, *names: str) -> None:
    forget_many((clinic_id,), *names)


def forget_many(clinic_ids, *names: str) -> None:
    keys = [_key(name, clinic_id) for clinic_id in sorted(clinic_ids) for name in names]
    if keys:
        drop_everywhere(keys, also_delete=True)


# --------------------------------------------------------------------------- drops on commit
# What the dashboard reads of the integration (which one, enabled, paused) and of its runs (the last
# finished ones, the 30-day counts) changes only when an Integration row does or a run's state does.
# The session notes those clinics when it flushes and drops their figures once the commit is done:
# a page that recomputes before then reads what was committed, and a rollback drops nothing.
RUN_FIGURES = ("status", "daily")
_PENDING = "tecpet_page_cache_drops"


def _note_changes(session, _flush_context, _instances) -> None:
    from .models import Integration, SyncRun
    clinics = None
    for obj in chain(session.new, session.dirty, session.deleted):
        if isinstance(obj, Integration) or (isinstance(obj, SyncRun) and (
                obj in session.new or obj in session.deleted or _state_changed(obj))):
            if clinics is None:
                clinics = session.info.setdefault(_PENDING, set())
            clinics.add(obj.clinic_id)


def _state_changed(run) -> bool:
    attrs = inspect(run).attrs
    return attrs.status.history.has_changes() or attrs.finished_at.history.has_changes()


def _drop_committed(session) -> None:
    clinics = session.info.pop(_PENDING, None)
    if clinics:
        forget_many(clinics, *RUN_FIGURES)


def _discard(session) -> None:
    session.info.pop(_PENDING, None)


def install(session_class) -> None:
    """Listen on the application's session class (once per process, however many apps it makes)."""
    for name, fn in (("before_flush", _note_changes), ("after_commit", _drop_committed),
                     ("after_rollback", _discard)):
        if not event.contains(session_class, name, fn):
            event.listen(session_class, name, fn)
