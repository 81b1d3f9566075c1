"""`make run` picks its Redis: REDIS_URL, else one answering on 6379, else a private redis-server it
starts itself (and stops when the demo stops)."""
from __future__ import annotations

import importlib.util
import socket
import subprocess

import redis

from .conftest import ROOT


def _run_module():
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_any_redis_the_demo_starts_its_own(tmp_path, monkeypatch):
    run = _run_module()
    monkeypatch.delenv("REDIS_URL", raising=False)
    url, started = run.choose_redis(probe_port=_unused_port(), workdir=tmp_path)
    try:
        assert started is not None
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("k", "v")  # a working server, not a stand-in
        assert client.get("k") == b"v"
    finally:
        if isinstance(started, subprocess.Popen):
            started.terminate()
            started.wait(10)
        else:
            started.shutdown()


def test_an_answering_redis_is_used_as_it_is(monkeypatch):
    run = _run_module()
    monkeypatch.delenv("REDIS_URL", raising=False)
    url, started = run.choose_redis(probe_port=6379)
    assert started is None and url == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    assert run.choose_redis() == ("redis://127.0.0.1:6379/3", None)
