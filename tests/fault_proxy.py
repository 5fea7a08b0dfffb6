"""A TCP proxy on 127.0.0.1 that can fail on demand, for storage fault-injection tests.

Put it in front of the local S3 server and point a job's storage at it
(``storage_options={"endpoint_url": proxy.endpoint}`` or, for s3fs directly,
``client_kwargs={"endpoint_url": proxy.endpoint}``); then switch its mode while the job runs:

- ``"pass"``: forward bytes both ways;
- ``"refuse"``: stop listening, so new connections fail with "connection refused" (the
  port stays reserved by nobody for the window; it is bound again when the mode leaves
  ``"refuse"``), and reset the connections already open;
- ``"reset"``: accept new connections and reset them at once (counted, unlike refusals);
- ``"blackhole"``: accept connections and never answer: bytes sent on new or open
  connections are swallowed, nothing is forwarded; a connection that met the blackhole
  stays dead even after the window (its request is lost, as on a real network partition).

``proxy.outage("refuse", seconds=3)`` fails for a window, then passes again;
``proxy.schedule([("refuse", 3), ("blackhole", 5)])`` chains windows. Both return at once
(a timer thread switches the modes); ``proxy.wait()`` blocks until the schedule is over.
``proxy.stats`` counts connections per mode and forwarded bytes, so tests can check that
the outage really met the traffic.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import threading
import time

import pytest

MODES = ("pass", "refuse", "reset", "blackhole")
_POLL_S = 0.05


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (linger 0) rather than an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """A threaded TCP proxy from ``127.0.0.1:port`` to ``upstream`` (``"host:port"`` or
    ``"http://host:port"``) whose mode is switched at run time."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0):
        target = upstream.split("://", 1)[-1].rstrip("/")
        up_host, _, up_port = target.rpartition(":")
        self.upstream = (up_host, int(up_port))
        self.host = host
        self.port = port
        self.stats: collections.Counter = collections.Counter()
        self._mode = "pass"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._timer: threading.Thread | None = None
        self._schedule_id = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._listen()
        accept = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def stop(self) -> None:
        self._closing.set()
        self._schedule_id += 1
        for t in list(self._threads):
            t.join(timeout=2)
        self._close_listener()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs options that route a filesystem through the proxy."""
        return {"endpoint_url": self.endpoint}

    # -- modes -----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch now; cancels a running :meth:`outage`/:meth:`schedule`."""
        self._schedule_id += 1
        self._set(mode)

    def _set(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            self._mode = mode
            self.stats[f"switch_{mode}"] += 1

    def outage(self, mode: str, seconds: float, then: str = "pass") -> None:
        """``mode`` for ``seconds`` from now, then ``then``; returns at once."""
        self.schedule([(mode, seconds)], then=then)

    def schedule(self, steps, then: str = "pass") -> None:
        """Run ``[(mode, seconds), ...]`` in order from now, then ``then``; returns at once.
        A later call (or :meth:`set_mode`) cancels the rest. Start with ``("pass", s)``
        to begin the outage ``s`` seconds from now."""
        steps = list(steps)
        for mode, _ in [*steps, (then, 0)]:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self._schedule_id += 1
        me = self._schedule_id

        def cancelled() -> bool:
            return me != self._schedule_id or self._closing.is_set()

        def run():
            for mode, seconds in steps:
                if cancelled():
                    return
                self._set(mode)
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if cancelled():
                        return
                    time.sleep(min(_POLL_S, max(0.0, end - time.monotonic())))
            if not cancelled():
                self._set(then)

        self._timer = threading.Thread(target=run, name="fault-proxy-schedule", daemon=True)
        self._timer.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running schedule (if any) is over."""
        if self._timer is not None:
            self._timer.join(timeout)

    # -- plumbing --------------------------------------------------------------------
    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            mode = self._mode
            if mode == "refuse":
                self._close_listener()
                time.sleep(_POLL_S)
                continue
            if self._listener is None:
                try:
                    self._listen()
                except OSError:  # the port is briefly unavailable: try again
                    time.sleep(_POLL_S)
                    continue
            ready, _, _ = select.select([self._listener], [], [], _POLL_S)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            mode = self._mode
            self.stats[f"accepted_{mode}"] += 1
            if mode in ("reset", "refuse"):
                _reset(client)
                continue
            t = threading.Thread(target=self._serve, args=(client, mode == "blackhole"),
                                 name="fault-proxy-conn", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, client: socket.socket, blackholed: bool) -> None:
        upstream = None
        close = _reset  # an outage or an error resets; an orderly end closes
        try:
            if not blackholed:
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    _reset(client)
                    return
            while not self._closing.is_set():
                mode = self._mode
                if mode in ("refuse", "reset"):
                    self.stats["reset_open"] += 1
                    return
                if mode == "blackhole" and not blackholed:
                    blackholed = True
                    self.stats["blackholed_open"] += 1
                socks = [client] if upstream is None else [client, upstream]
                ready, _, _ = select.select(socks, [], [], _POLL_S)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        close = _close
                        return
                    if blackholed:
                        self.stats["bytes_swallowed"] += len(data)
                        continue
                    other = upstream if sock is client else client
                    try:
                        other.sendall(data)
                    except OSError:
                        return
                    self.stats["bytes_up" if sock is client else "bytes_down"] += len(data)
        finally:
            close(client)
            if upstream is not None:
                close(upstream)


@pytest.fixture
def fault_proxy(s3_server):
    """A :class:`FaultProxy` in front of the session's S3 server, in ``"pass"`` mode.

    Route a filesystem through it with ``storage_options=fault_proxy.storage_options``
    (or s3fs ``client_kwargs={"endpoint_url": fault_proxy.endpoint}``); the AWS
    environment still points every other client straight at the server."""
    with FaultProxy(s3_server) as proxy:
        yield proxy
