"""Serve one ERP sandbox on loopback in this process: `python -m bench.sandbox_proc vhsys '{"rate_limit": [[5, 1.0]]}'`.

Prints one JSON line {"url": ...} when listening, then serves until terminated."""
from __future__ import annotations

import importlib
import json
import signal
import sys
import threading


def main(argv: list[str]) -> None:
    erp = argv[0]
    kwargs = json.loads(argv[1]) if len(argv) > 1 else {}
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log: it would cost the sandbox CPU
    from integrations.sandbox_kit import SandboxServer
    sandbox_cls = getattr(importlib.import_module(f"integrations.{erp}.sandbox"), "Sandbox")
    server = SandboxServer(sandbox_cls(**kwargs)).start()
    print(json.dumps({"url": server.url}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
