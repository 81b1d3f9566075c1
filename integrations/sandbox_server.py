"""Serve every registered ERP sandbox on loopback, one port each (demo mode, manual testing).

    python -m integrations.sandbox_server --port-base 5101
prints one line per ERP: "<erp> http://127.0.0.1:<port>" and serves until interrupted."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .registry import CONNECTORS, sandbox_class
from .sandbox_kit import SandboxServer


def start_all(host: str = "127.0.0.1", port_base: int = 0, names=None) -> dict[str, SandboxServer]:
    servers = {}
    for i, name in enumerate(names or CONNECTORS):
        app = sandbox_class(name)()
        servers[name] = SandboxServer(app, host=host, port=(port_base + i) if port_base else 0).start()
    return servers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-base", type=int, default=5101)
    parser.add_argument("--json", action="store_true", help="print one JSON object {erp: url}")
    args = parser.parse_args(argv)
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns the demo's log
    servers = start_all(args.host, args.port_base)
    urls = {name: s.url for name, s in servers.items()}
    if args.json:
        print(json.dumps(urls), flush=True)
    else:
        for name, url in urls.items():
            print(f"{name} {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for s in servers.values():
        s.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
