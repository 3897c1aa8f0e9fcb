"""The throwaway servers of sandbox/servers.py: real redis-server and PostgreSQL clusters that a
test stops, crashes and restarts without touching the shared services of `make test`."""

from __future__ import annotations

import os
import pwd
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.servers import PostgresCluster, RedisServer


def redis_client(url: str) -> redis.Redis:
    # No retries: a refused connection must fail at once, not after redis-py's back-off.
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2, socket_timeout=2)


def pg_connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2, autocommit=True
    )


@contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Something else listening on the loopback port a server was going to use."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


# --- Redis ---------------------------------------------------------------------------------


def test_redis_restart_without_persistence_loses_data_on_the_same_port(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    port = server.port
    assert server.url(3) == f"redis://127.0.0.1:{port}/3"
    with server:
        assert server.running
        client = redis_client(server.url())
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.set("key", "value")
        server.restart()
        assert server.running and server.port == port
        assert client.get("key") is None
        client.close()
    assert not server.running
    assert not list(tmp_path.glob("*.rdb")) and not (tmp_path / "appendonlydir").exists()


def test_redis_persistence_keeps_data_across_restarts(tmp_path: Path) -> None:
    with RedisServer(tmp_path, persistence=True) as server:
        client = redis_client(server.url())
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("key", "kept")
        server.restart(down_for=0.2)
        assert client.get("key") == b"kept"
        client.close()
    assert (tmp_path / "appendonlydir").is_dir()
    with RedisServer(tmp_path, persistence=True) as again:  # a new server on the same directory
        assert redis_client(again.url()).get("key") == b"kept"


def test_redis_kill_then_start(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        port = server.port
        client = redis_client(server.url())
        client.set("key", "value")
        server.kill()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        assert client.ping() and client.get("key") is None
        client.close()


def test_redis_stopped_refuses_connections_and_stop_is_idempotent(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.stop()  # never started: nothing to do
    server.start()
    server.start()  # already running: nothing to do
    client = redis_client(server.url())
    assert client.ping()
    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises(redis.ConnectionError):
        client.ping()
    began = time.monotonic()
    server.restart(down_for=0.3)
    assert time.monotonic() - began >= 0.3
    assert client.ping()
    client.close()
    server.stop()


def test_redis_port_taken_is_a_readable_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    with port_taken(server.port), pytest.raises(RuntimeError) as error:
        server.start()
    message = str(error.value)
    assert "exited with status" in message
    assert str(tmp_path / "redis.log") in message
    assert "Address already in use" in message
    assert not server.running
    with server:  # the port is free again: the same object starts fine
        assert redis_client(server.url()).ping()


def test_redis_another_redis_on_the_port_is_not_taken_for_ours(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as first:
        redis_client(first.url()).set("owner", "first")
        second = RedisServer(tmp_path / "b")
        second.port = first.port
        with pytest.raises(RuntimeError, match="Address already in use"):
            second.start()
        assert not second.running
        assert redis_client(first.url()).get("owner") == b"first"


# --- PostgreSQL ----------------------------------------------------------------------------


def test_postgres_row_survives_fast_and_immediate_stops(tmp_path: Path) -> None:
    cluster = PostgresCluster(tmp_path)
    port = cluster.port
    with cluster:
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres").pw_uid
            assert cluster.data.stat().st_uid == postgres
            assert cluster.sockets.stat().st_uid == postgres
        url = cluster.create_database("app")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/app"
        with pg_connect(url) as connection:
            assert connection.execute("SHOW fsync").fetchone() == ("off",)
            assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            connection.execute("CREATE TABLE runs (id int PRIMARY KEY, state text)")
            connection.execute("INSERT INTO runs VALUES (1, 'queued')")
        for mode in ("fast", "immediate"):
            cluster.stop(mode)
            assert not cluster.running
            with pytest.raises(psycopg.OperationalError):
                pg_connect(url)
            cluster.start()
            assert cluster.running and cluster.port == port
            with pg_connect(url) as connection:
                assert connection.execute("SELECT state FROM runs").fetchall() == [("queued",)]
        began = time.monotonic()
        cluster.restart(down_for=0.2, mode="immediate")
        assert time.monotonic() - began >= 0.2
        with pg_connect(url) as connection:
            assert connection.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    assert not cluster.running
    assert "database system was interrupted" in cluster.log.read_text()  # recovery after immediate


def test_two_clusters_side_by_side_do_not_interfere(tmp_path: Path) -> None:
    with PostgresCluster(tmp_path / "a") as first, PostgresCluster(tmp_path / "b") as second:
        assert first.port != second.port
        url_a, url_b = first.create_database("app"), second.create_database("app")
        with pg_connect(url_a) as connection:
            connection.execute("CREATE TABLE only_in_a (id int)")
        first.stop("immediate")
        with pg_connect(url_b) as connection:
            found = connection.execute("SELECT to_regclass('only_in_a')").fetchone()
            assert found == (None,)
        assert second.running
        first.start()
        with pg_connect(url_a) as connection:
            assert connection.execute("SELECT to_regclass('only_in_a')").fetchone() == ("only_in_a",)


def test_postgres_stop_is_idempotent_and_modes_are_checked(tmp_path: Path) -> None:
    cluster = PostgresCluster(tmp_path)
    cluster.stop()  # never started
    with cluster:
        cluster.start()  # already running
        with pytest.raises(ValueError, match="fast"):
            cluster.stop("smart")  # type: ignore[arg-type]
        assert cluster.running
    cluster.stop("immediate")
    assert not cluster.running


def test_postgres_port_taken_is_a_readable_error(tmp_path: Path) -> None:
    cluster = PostgresCluster(tmp_path)
    with port_taken(cluster.port), pytest.raises(RuntimeError) as error:
        cluster.start()
    message = str(error.value)
    assert "pg_ctl start" in message
    assert str(cluster.log) in message
    assert "Address already in use" in message
    assert not cluster.running
    with cluster:  # initdb is kept; the port is free again
        assert cluster.create_database("later").endswith("/later")


def test_postgres_directory_too_long_for_its_socket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long for a Unix socket"):
        PostgresCluster(tmp_path / ("x" * 120))
