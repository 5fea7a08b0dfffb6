"""Retry storage calls that fail for a moment: network errors, timeouts, 5xx and throttling.

Object stores fail transiently all the time at scale (a connection refused while a load
balancer restarts, a request that times out, ``503 SlowDown``). s3fs retries some of these
itself for about two seconds; an outage longer than that reaches the caller.
:class:`RetryPolicy` waits it out with exponential backoff and jitter, retrying only what
can succeed later (:func:`is_transient`); a missing file, a denied permission or a bad
request fail at once.

Every call retried this way must be idempotent: the writers write deterministic names
(:mod:`raymix.io.writers`), so writing a file again after a failure that may or may not
have committed it is harmless.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import random
import re
import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["RetryPolicy", "is_transient", "DEFAULT_POLICY"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.EAGAIN, errno.EBUSY,
    getattr(errno, "EREMOTEIO", errno.EIO),
}
# Exception classes (by name, so that no client library need be installed) raised by
# botocore, aiohttp, urllib3 and fsspec for network failures and timeouts.
_TRANSIENT_CLASSES = {
    "HTTPClientError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "ResponseStreamingError", "IncompleteReadError", "IncompleteRead", "ResponseParserError",
    "ClientConnectionError", "ClientOSError", "ServerDisconnectedError", "ServerTimeoutError", "ClientPayloadError",
    "FSTimeoutError", "ProtocolError", "NewConnectionError",
}
_THROTTLING_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "RequestThrottled", "RequestTimeout", "RequestTimeoutException",
    "ServiceUnavailable", "InternalError", "InternalFailure", "BandwidthLimitExceeded",
}
_THROTTLING_TEXT = re.compile(r"SlowDown|Throttl|reduce your request rate|Too Many Requests|ServiceUnavailable")
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _http_status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    status = getattr(err, "status", None) or getattr(err, "code", None)
    return status if isinstance(status, int) else None


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) may go away if the call is repeated:
    connection refused or reset, timeouts, HTTP 5xx, 429 and throttling answers."""
    for e in _chain(err):
        if isinstance(e, _PERMANENT):
            return False
        if isinstance(e, (ConnectionError, TimeoutError, socket.timeout)):
            return True
        if any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(e).__mro__):
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in _THROTTLING_CODES:
            return True
        status = _http_status(e)
        if status is not None and (status >= 500 or status == 429):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        if _THROTTLING_TEXT.search(str(e)):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retry a call that raises a transient error: the ``n``-th wait is
    ``min(max_delay, first_delay * 2**n)`` scaled by a random factor in [0.5, 1] (so that
    many tasks hit by one outage do not retry in step), for at most ``attempts`` calls and
    ``deadline`` seconds from the first. The defaults ride out an outage of about two
    minutes (ten calls over waits of 0.5, 1, 2, ... 30 s)."""

    attempts: int = 10
    first_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 600.0

    def call(self, fn: Callable[..., T], *args, what: str = "", **kwargs) -> T:
        """``fn(*args, **kwargs)``, retried while it raises a transient error."""
        start = time.monotonic()
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - classified below, re-raised when permanent
                wait = min(self.max_delay, self.first_delay * 2**attempt) * random.uniform(0.5, 1.0)
                last = attempt + 1 >= self.attempts or time.monotonic() - start + wait > self.deadline
                if last or not is_transient(err):
                    raise
                log.warning("%s failed (%s: %s); retry %d/%d in %.1f s", what or getattr(fn, "__name__", "call"),
                            type(err).__name__, err, attempt + 1, self.attempts - 1, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")


DEFAULT_POLICY = RetryPolicy()
