"""LocalRedis: real servers on loopback for the tests, the soak script and the benchmarks."""

from __future__ import annotations

import socket

import pytest

from dv365.stores import redis_local
from dv365.stores.redis_local import LocalRedis, RedisServerMissing


def test_a_missing_redis_server_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerMissing, match="apt-get install -y redis-server"):
        LocalRedis().start()


def test_the_password_stays_off_the_command_line_and_the_folder_goes(tmp_path):
    server = LocalRedis(password="not-on-argv")
    with server:
        folder = server.folder
        argv = open(f"/proc/{server.process.pid}/cmdline", "rb").read()
        assert b"not-on-argv" not in argv and server.cli("ping").strip() == "PONG"
        assert server.uri() == f"redis://:not-on-argv@127.0.0.1:{server.port}/0"
    assert not folder.exists() and not server.alive


def test_kill_and_restart_keep_the_data_with_persistence():
    with LocalRedis(persist=True) as server:
        server.cli("set", "k", "v")
        port = server.port
        server.kill()
        assert not server.alive
        server.restart()
        assert server.port == port and server.cli("get", "k").strip() == "v"


def test_a_port_taken_before_the_server_binds_it_is_picked_again(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = redis_local.free_port
        monkeypatch.setattr(redis_local, "free_port", lambda **kw: next(ports, None) or real())
        with LocalRedis() as server:
            assert server.port != taken.getsockname()[1] and server.cli("ping").strip() == "PONG"
