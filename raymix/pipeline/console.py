"""What a job prints: raymix's own lines on the terminal, Ray's output in a log folder.

:func:`session` wraps one command-line run. Unless ``verbose``:

- file descriptors 1 and 2 point at ``LOG_DIR/driver.log``, so whatever Ray's C++ core
  worker, its Python loggers (which hold the old ``sys.stdout``/``sys.stderr``) and its
  shutdown print lands there; Python's ``sys.stdout``/``sys.stderr`` are re-opened on the
  terminal, so raymix's own lines, warnings and tracebacks still reach the user;
- :func:`raymix.pipeline.runtime.init_ray` starts Ray with ``log_to_driver=False`` (worker
  output stays in Ray's session logs) and Ray Data's progress bars off;
- Ray is shut down before the terminal is given back, so its exit noise goes to the log too.

With ``json_out`` everything printed goes to stderr and :func:`emit` writes the one JSON
object to stdout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time

__all__ = ["session", "quiet", "divert_ray_logging", "log_dir_for", "emit", "Progress"]

_state = {"quiet": False, "stdout": None, "log": None}

#: Loggers whose console handlers a quiet session sends to the log file.
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _write_log(text: str) -> bool:
    """Append ``text`` to the session's log file; ``False`` when no quiet session is active."""
    log = _state["log"]
    if log is None:
        return False
    try:
        log.write(text.encode())
        log.flush()
    except Exception:  # noqa: BLE001 - a log that cannot be written must not fail the job
        pass
    return True


class _ToLog(logging.Filter):
    """On a console handler: write the record to the session's log instead of the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _write_log(logging.Formatter(LOG_FORMAT).format(record) + "\n")


_TO_LOG = _ToLog()


def divert_ray_logging() -> None:
    """In a quiet session, send the console output of Ray's Python loggers to the log file
    (Ray's handlers write to whatever ``sys.stderr`` is when they emit). Called by
    ``init_ray`` before and after ``ray.init`` (which may add handlers)."""
    if not quiet():
        return
    _divert_ray_error_messages()
    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                if _TO_LOG not in handler.filters:
                    handler.addFilter(_TO_LOG)


def quiet() -> bool:
    """Whether a quiet :func:`session` is active (read by ``init_ray``)."""
    return _state["quiet"]


def _divert_ray_error_messages() -> None:
    """The driver prints what the raylet publishes (``(raylet) WARNING: N PYTHON worker
    processes have been started ...``) with ``print_to_stdstream`` whatever ``log_to_driver``
    says; in a quiet session those lines go to the log. Failures still reach the user as
    exceptions."""
    worker = sys.modules.get("ray._private.worker")
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_raymix", False):
        return

    def print_to_stdstream(data, ignore_prefix, *args, **kwargs):
        if not _write_log("".join(f"({data.get('pid')}) {line}\n" for line in data.get("lines", ()))):
            return original(data, ignore_prefix, *args, **kwargs)
        return None

    print_to_stdstream._raymix = True
    worker.print_to_stdstream = print_to_stdstream


def log_dir_for(uri: str | None) -> str | None:
    """``URI/.raymix/logs`` for a local folder; ``None`` (a temporary folder, chosen by
    :func:`session`) for none or an object store."""
    if not uri:
        return None
    from raymix.io import storage

    fs, path = storage.filesystem(uri)
    return os.path.join(path, ".raymix", "logs") if storage.is_local(fs) else None


def emit(obj) -> None:
    """Write ``obj`` as the one JSON object of the run's stdout."""
    out = _state["stdout"] or sys.stdout
    out.write(json.dumps(obj, default=str) + "\n")
    out.flush()


@contextlib.contextmanager
def session(*, verbose: bool = False, json_out: bool = False, log_dir: str | None = None):
    """See the module docstring. Yields the log folder (``None`` when verbose). Also sets the
    log level of raymix's own records: ``RAYMIX_LOG_LEVEL``, else INFO when verbose, else
    WARNING."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_streams = (sys.stdout, sys.stderr)
    saved_fds = (os.dup(1), os.dup(2))
    term_out, own_out = _terminal(sys.stdout, 1)
    term_err, own_err = _terminal(sys.stderr, 2)
    was_initialized = _ray_initialized()
    log_file = None
    try:
        if not verbose:
            log_dir = log_dir or tempfile.mkdtemp(prefix="raymix-logs-")
            os.makedirs(log_dir, exist_ok=True)
            log_file = open(os.path.join(log_dir, "driver.log"), "ab")
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
            term_err.write(f"Ray logs: {log_dir} (--verbose shows them here)\n")
        sys.stdout = term_err if json_out else term_out
        sys.stderr = term_err
        _retarget_handlers(saved_streams, sys.stderr)
        logging.basicConfig(level=os.environ.get("RAYMIX_LOG_LEVEL", "INFO" if verbose else "WARNING"),
                            format=LOG_FORMAT)
        _state.update(quiet=not verbose, stdout=term_out, log=log_file)
        yield log_dir if not verbose else None
        if not was_initialized:
            _shutdown_ray()  # still redirected: Ray's exit noise goes to the log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _retarget_handlers((term_out, term_err), saved_streams[1])
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        _state.update(quiet=False, stdout=None, log=None)
        for f, own in ((term_out, own_out), (term_err, own_err), (log_file, True)):
            if f is not None and own:
                f.close()


def _terminal(stream, fd: int):
    """``(stream, owned)``: a new stream on a copy of ``fd`` when ``stream`` writes to it, so
    it survives the redirection of ``fd``; else ``stream`` itself (e.g. pytest's capture)."""
    try:
        if stream.fileno() == fd:
            return os.fdopen(os.dup(fd), "w", buffering=1), True
    except (AttributeError, OSError, ValueError):
        pass
    return stream, False


def _retarget_handlers(old_streams, new_stream) -> None:
    """Point the root logger's console handlers (``logging.basicConfig``) at ``new_stream``."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in old_streams:
            handler.setStream(new_stream)


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _shutdown_ray() -> None:
    if _ray_initialized():
        sys.modules["ray"].shutdown()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """One progress line for a running job: rows read so far (``read()``), their rate and,
    when the input size is known, the ETA. Redrawn in place (``\\r``) on a terminal, a
    plain line every ``every`` seconds otherwise. A context manager; stops on exit."""

    def __init__(self, read, total: int | None = None, *, label: str = "read", every: float | None = None,
                 stream=None) -> None:
        self.read, self.total, self.label = read, total, label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (1.0 if self.tty else 10.0)
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._drawn = False

    def line(self, rows: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = rows / elapsed if elapsed > 0 else 0.0
        text = f"{self.label} {rows}" + (f"/{self.total}" if self.total else "") + f" rows  {rate:.1f} rows/s"
        if self.total and rate > 0 and rows < self.total:
            text += f"  ETA {_clock((self.total - rows) / rate)}"
        return text

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                text = self.line(int(self.read()))
            except Exception:  # noqa: BLE001 - progress must never fail a job
                continue
            if self.tty:
                self.stream.write("\r" + text.ljust(70))
                self._drawn = True
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._drawn:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()
