"""An RQ worker on the project's queues (events before pulls before bulk) and a periodic tick
(outbox dispatch, sweeper, due postponed runs, scheduled pulls) that only one worker at a time
performs. Postponements live in the database, not in RQ's scheduler: a killed worker's scheduler
lock would otherwise hold delayed runs back. Run any number of these, on any number of machines.

It is RQ's SimpleWorker: jobs run in this process, one at a time. A job is a bounded slice of a
run, so nothing accumulates, and no process is forked while the tick thread may hold a lock
(SQLite's, SQLAlchemy's): forking a threaded process is how a work horse hangs forever. A
worker that dies is restarted by its supervisor; the sweeper resumes what it was doing."""
from __future__ import annotations

import argparse
import logging
import os
import threading

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from sqlalchemy.orm import configure_mappers

from webapp import create_app
from webapp.queues import QUEUE_NAMES
from webapp.sync.jobs import use_app

log = logging.getLogger("worker")


class TecPetWorker(SimpleWorker):
    """RQ's SimpleWorker; tolerates a Redis-protocol server without CLIENT INFO (the embedded one
    `make run` starts when no Redis answers)."""

    def _set_ip_address(self, connection) -> None:
        try:
            super()._set_ip_address(connection)
        except Exception:
            self.ip_address = "unknown"


def start_ticker(app, redis: Redis, every: float, stop: threading.Event) -> threading.Thread:
    from webapp.sync.jobs import tick

    def loop():
        while not stop.wait(every):
            try:
                # one tick per interval across every worker
                if not redis.set("tecpet:tick", os.getpid(), nx=True, ex=max(1, int(every))):
                    continue
                with app.app_context():
                    result = tick()
                if any(result.values()):
                    log.info("tick: %s", result)
            except RedisError as exc:
                log.warning("tick skipped: Redis unavailable (%s)", type(exc).__name__)
            except Exception:  # keep ticking: the next tick retries whatever failed
                log.exception("tick failed")

    t = threading.Thread(target=loop, name="tecpet-tick", daemon=True)
    t.start()
    return t


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--tick", type=float, default=float(os.environ.get("TECPET_TICK_SECONDS", "5")),
                        help="seconds between periodic ticks (0 disables)")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    app = create_app(PG_PREPARE_THRESHOLD=None)  # see Config: plans made for the tables as they are
    configure_mappers()  # once, before any thread starts
    use_app(app)         # jobs and the tick share this app, its engine and its HTTP client
    redis = Redis.from_url(app.config["REDIS_URL"])
    queues = [Queue(n, connection=redis) for n in QUEUE_NAMES]
    stop = threading.Event()
    if args.tick > 0:
        start_ticker(app, redis, args.tick, stop)
    worker = TecPetWorker(queues, connection=redis, name=args.name)
    try:
        worker.work(burst=args.burst, with_scheduler=False, logging_level="INFO")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
