"""The fault proxy itself: it forwards, refuses, resets and blackholes when told, and a
timed outage ends on its own. Plain sockets and short timeouts keep these fast."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from fault_proxy import FaultProxy


def _get(endpoint: str, timeout: float = 1.0) -> bytes:
    host, port = endpoint.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(64)


def test_modes_and_timed_outage(fault_proxy):
    assert _get(fault_proxy.endpoint).startswith(b"HTTP/1.1 ")

    fault_proxy.set_mode("refuse")
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        _get(fault_proxy.endpoint)

    fault_proxy.set_mode("reset")
    time.sleep(0.1)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        data = _get(fault_proxy.endpoint)
        if not data:  # the reset can land as an empty read on some kernels
            raise ConnectionResetError
    fault_proxy.set_mode("blackhole")
    with pytest.raises(socket.timeout):
        _get(fault_proxy.endpoint, timeout=0.3)
    assert fault_proxy.stats["accepted_blackhole"] == 1 and fault_proxy.stats["bytes_swallowed"] > 0

    fault_proxy.schedule([("refuse", 0.4), ("blackhole", 0.4)])
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        _get(fault_proxy.endpoint)
    time.sleep(0.4)
    with pytest.raises(socket.timeout):
        _get(fault_proxy.endpoint, timeout=0.2)
    fault_proxy.wait(2)
    assert fault_proxy.mode == "pass"
    assert _get(fault_proxy.endpoint).startswith(b"HTTP/1.1 ")


@pytest.fixture
def echo_server():
    """A TCP echo server on 127.0.0.1 (keeps connections open, unlike the S3 server)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn):
        with conn, contextlib.suppress(OSError):  # the proxy may reset it
            while data := conn.recv(1024):
                conn.sendall(data)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield "127.0.0.1:%d" % listener.getsockname()[1]
    listener.close()


def test_open_connection_meets_blackhole_then_reset(echo_server):
    with FaultProxy(echo_server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"  # an open connection, then the outage
            proxy.set_mode("blackhole")
            time.sleep(0.15)
            s.sendall(b"ping")
            with pytest.raises(socket.timeout):
                s.recv(4)
            proxy.set_mode("pass")  # a connection that met the blackhole stays dead
            s.sendall(b"ping")
            with pytest.raises(socket.timeout):
                s.recv(4)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            proxy.set_mode("refuse")  # open connections are reset
            time.sleep(0.15)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                s.sendall(b"ping")
                if not s.recv(4):
                    raise ConnectionResetError


def test_s3fs_through_the_proxy(fault_proxy, s3_bucket):
    from raymix.io.storage import filesystem

    fs, path = filesystem(f"{s3_bucket}/a.txt", fault_proxy.storage_options)
    fs.pipe_file(path, b"hello")
    assert fs.cat_file(path) == b"hello"
    assert fault_proxy.stats["bytes_up"] > 0 and fault_proxy.stats["bytes_down"] > 0
