"""Where a page's time goes: P4's pages and P6's progress partial requested in-process (Flask test
client, logged in as the owner) under cProfile, on generated data.

    python -m bench.profile_pages [--size small|full] [--db sqlite|postgresql] [--requests 200] [--page NAME] [--sort tottime]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import time

from . import datagen
from .common import Database, flush_redis
from .pages import page_paths

BUCKETS = [  # (label, substring of the file path) for own time
    ("SQL driver + SQLAlchemy", ("sqlalchemy/", "sqlite3", "psycopg")),
    ("Jinja templates", ("jinja2/", "<template>", "templates/")),
    ("Flask/Werkzeug request handling", ("flask/", "werkzeug/", "flask_login/", "flask_wtf/", "itsdangerous/",
                                         "wtforms/")),
    ("product code (webapp/, integrations/)", ("webapp/", "integrations/")),
]


def bucket(filename: str) -> str:
    f = filename.replace("\\", "/")
    for label, needles in BUCKETS:
        if any(n in f for n in needles):
            return label
    return "other (stdlib, builtins)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--page", default="")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime, ncalls...")
    args = parser.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.WARNING)
    from webapp.extensions import db
    flush_redis()
    dbase = Database(args.db)
    dbase.create()
    try:
        app = dbase.app()
        with app.app_context():
            data = datagen.generate(db, **(datagen.FULL if args.size == "full" else datagen.SMALL))
            db.session.remove()
        paths = {"healthz": "/healthz", **page_paths(data),
                 "progress": f"/c/{data['clinic_a']}/runs/{data['a']['run_100']}/progress"}
        client = app.test_client()
        html = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
        client.post("/login", data={"email": data["owner_a"], "password": data["password"], "csrf_token": token})
        for name, path in paths.items():
            if args.page and name != args.page:
                continue
            for _ in range(10):
                client.get(path)
            t = time.perf_counter()
            for _ in range(args.requests):
                client.get(path)
            plain = (time.perf_counter() - t) / args.requests
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.requests):
                client.get(path)
            prof.disable()
            st = pstats.Stats(prof)
            total = sum(v[2] for v in st.stats.values())
            by = {}
            for (f, _, _), v in st.stats.items():
                by[bucket(f)] = by.get(bucket(f), 0.0) + v[2]
            print(f"\n== {name} {path}: {plain * 1000:.2f} ms per request (in-process, no profiler)")
            for label, secs in sorted(by.items(), key=lambda kv: -kv[1]):
                print(f"   {label:<42} {100 * secs / total:5.1f}% of own time")
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(args.sort).print_stats(args.top)
            print("\n".join(l for l in buf.getvalue().splitlines() if l.strip() and "/" in l or "ncalls" in l))
    finally:
        dbase.drop()


if __name__ == "__main__":
    main()
