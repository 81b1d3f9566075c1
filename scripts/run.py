"""`make run`: the whole product on one machine with embedded defaults.

Picks Redis (REDIS_URL, else a Redis answering on 127.0.0.1:6379, else an embedded
Redis-protocol server started here), keeps generated keys in var/, migrates the database,
seeds the demo, starts the ERP sandboxes, one RQ worker and the web server, and prints the
URL and the demo logins. Ctrl-C stops everything."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


def _persisted(name: str, make) -> str:
    path = VAR / name
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def choose_redis(probe_port: int = 6379, workdir: Path = VAR):
    """Returns (url, what to stop at exit or None). REDIS_URL, else a Redis answering on the probe
    port, else a private redis-server started here, else an in-process Redis-protocol server."""
    import redis
    if os.environ.get("REDIS_URL"):
        log(f"Redis: REDIS_URL from the environment ({os.environ['REDIS_URL'].split('@')[-1]})")
        return os.environ["REDIS_URL"], None
    try:
        redis.Redis(host="127.0.0.1", port=probe_port, socket_connect_timeout=1).ping()
        log(f"Redis: using the Redis server answering on 127.0.0.1:{probe_port} (database 0)")
        return f"redis://127.0.0.1:{probe_port}/0", None
    except redis.RedisError:
        pass
    port = 6390
    while not _port_free(port):
        port += 1
    binary = shutil.which("redis-server")
    if binary:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if not _port_free(port):
                break
            time.sleep(0.05)
        log(f"Redis: none answered; started a private redis-server on 127.0.0.1:{port} (stopped with the demo)")
        return f"redis://127.0.0.1:{port}/0", proc
    from fakeredis import TcpFakeServer
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    threading.Thread(target=server.serve_forever, daemon=True, name="embedded-redis").start()
    log(f"Redis: none answered and no redis-server is installed; started the embedded Redis-protocol server "
        f"(fakeredis) on 127.0.0.1:{port}. It lacks parts of RQ's scripts: delayed retries wait for the sweeper.")
    return f"redis://127.0.0.1:{port}/0?protocol=2", server


def main() -> None:
    VAR.mkdir(exist_ok=True)
    env = os.environ
    env.setdefault("TECPET_DEMO", "1")
    env.setdefault("SECRET_KEY", _persisted("secret_key", lambda: secrets.token_urlsafe(48)))
    if not env.get("TECPET_FERNET_KEY"):
        from cryptography.fernet import Fernet
        env["TECPET_FERNET_KEY"] = _persisted("fernet.key", lambda: Fernet.generate_key().decode())
        log("Credentials key: generated for the demo and kept in var/fernet.key")
    redis_url, embedded = choose_redis()
    env["REDIS_URL"] = redis_url
    port = int(env.get("PORT", "5000"))
    env.setdefault("TECPET_PUBLIC_URL", f"http://127.0.0.1:{port}")
    env.setdefault("TECPET_PULL_INTERVAL", "60")
    children: list[subprocess.Popen] = []

    # sandboxes first: their URLs go into the demo's settings
    sandboxes = subprocess.Popen([sys.executable, "-m", "integrations.sandbox_server", "--json",
                                  "--port-base", env.get("TECPET_SANDBOX_PORT_BASE", "5101")],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
    children.append(sandboxes)
    urls = json.loads(sandboxes.stdout.readline())
    env["TECPET_SANDBOX_URLS"] = json.dumps(urls)
    log("ERP sandboxes: " + ", ".join(f"{k} {v}" for k, v in urls.items()))

    from flask_migrate import upgrade
    from webapp import create_app
    from webapp.demo import seed_demo
    app = create_app()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        info = seed_demo(api_token=_persisted("demo_api_token", lambda: "tpk_demo_" + secrets.token_urlsafe(24)))
    log(f"Database: {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]} migrated and seeded")

    children.append(subprocess.Popen([sys.executable, "worker.py", "--name", f"demo-worker-{os.getpid()}"], cwd=ROOT))
    web_cmd = [sys.executable, "-m", "gunicorn", "-w", env.get("WEB_CONCURRENCY", "2"), "--threads", "4",
               "-b", f"127.0.0.1:{port}", "--access-logfile", "-", "wsgi:app"]
    children.append(subprocess.Popen(web_cmd, cwd=ROOT))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    for _ in range(100):
        if not _port_free(port):
            break
        time.sleep(0.1)
    clinic_id = info.get("clinic_id")
    token = (VAR / "demo_api_token").read_text().strip()
    print(f"""
==================================================================
 TecPet integrations is running:  http://127.0.0.1:{port}/login
   support: suporte@tecpet.demo / tecpet-demo   (sets up integrations)
   owner:   dono@bichofeliz.demo / tecpet-demo  (clinic {clinic_id})
   API token for TecPet core events: {token}
   post an event: see README "Posting events"
 Ctrl-C stops the web server, the worker and the sandboxes.
==================================================================
""", flush=True)
    try:
        while not stop.is_set():
            for c in children:
                if c.poll() is not None:
                    log(f"a process exited ({c.args[:3]}): stopping")
                    stop.set()
            stop.wait(1)
    except KeyboardInterrupt:
        pass
    for c in children:
        c.terminate()
    for c in children:
        try:
            c.wait(10)
        except subprocess.TimeoutExpired:
            c.kill()
    if isinstance(embedded, subprocess.Popen):
        embedded.terminate()
    elif embedded is not None:
        embedded.shutdown()


if __name__ == "__main__":
    main()
