"""An RQ worker on the project's queues (events before pulls before bulk), with RQ's scheduler
for delayed retries and a periodic tick (outbox dispatch, sweeper, scheduled pulls) that only
one worker at a time performs. Run any number of these, on any number of machines."""
from __future__ import annotations

import argparse
import logging
import os
import threading

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from sqlalchemy.orm import configure_mappers

from webapp import create_app
from webapp.queues import QUEUE_NAMES

log = logging.getLogger("worker")


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
    app = create_app()
    # Configure the ORM now, in the main thread: a work horse is forked while the tick thread may be
    # running, and a fork taken while that thread held SQLAlchemy's configure lock would hang forever.
    configure_mappers()
    redis = Redis.from_url(app.config["REDIS_URL"])
    queues = [Queue(n, connection=redis) for n in QUEUE_NAMES]
    stop = threading.Event()
    if args.tick > 0:
        start_ticker(app, redis, args.tick, stop)
    worker = Worker(queues, connection=redis, name=args.name)
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
