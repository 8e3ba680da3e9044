"""Log output: rich lines on a terminal, plain lines for cron mail and pipes, or JSON lines
for log collectors.

Every record may carry structured fields through ``extra``: ``event`` (what happened, a
short snake_case name such as ``mirror_published``) and any of :data:`FIELDS`.  JSON
lines carry them as keys beside the message, so a collector filters on ``event`` and
``mirror`` instead of parsing text; a record without its own ``event`` is a ``log``.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# The structured fields a record may carry (``log.info(..., extra=fields(...))``).
FIELDS = ("event", "mirror", "source", "version", "new", "changed", "failed", "uploaded",
          "skipped", "deleted", "bytes", "files", "pages", "seconds", "stage", "error",
          "exit_code", "done", "total", "state")


def fields(event: str, **values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event's name and its structured fields."""
    unknown = set(values) - set(FIELDS)
    assert not unknown, f"undeclared log fields: {unknown}"
    return {"event": event, **values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for name in FIELDS[1:]:
            if hasattr(record, name):
                doc[name] = getattr(record, name)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The message alone, with "error: " or "warning: " before problems (cron mail)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{'error' if record.levelno >= logging.ERROR else 'warning'}: {line}"
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (test runners swap it between commands)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


_bars = False
_json = False


def bars() -> bool:
    """Whether long stages draw progress bars (a terminal and text logs), or log lines."""
    return _bars


def setup(verbosity: int, fmt: str) -> None:
    """verbosity: -1 quiet (warnings and errors), 0 normal, 1 debug."""
    global _bars, _json  # set once per command, read by progress meters and fatal()
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler: logging.Handler
    _bars = fmt == "text" and on_terminal()
    _json = fmt == "json"
    if fmt == "json":
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
    elif on_terminal():
        # A person at a terminal: coloured levels and times; cron mail gets plain lines.
        # rich is imported only then, so that a cron job's command starts fast.
        from rich.logging import RichHandler

        handler = RichHandler(console=console(), show_path=False, markup=False,
                              rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = _StderrHandler()
        handler.setFormatter(PlainFormatter("%(message)s"))
    root = logging.getLogger("mirrorkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def fatal(message: str, exit_code: int) -> None:
    """The one line a command ends with when it fails: plain, or a JSON log line."""
    if _json:
        logging.getLogger("mirrorkit").error(
            "%s", message, extra=fields("command_failed", error=message, exit_code=exit_code))
    else:
        sys.stderr.write(f"error: {message}\n")


def on_terminal() -> bool:
    return sys.stderr.isatty()


@functools.cache
def console() -> Any:
    """The one rich console on stderr that log lines and progress bars share."""
    from rich.console import Console

    return Console(stderr=True)
