"""Log output: rich lines on a terminal, plain lines for cron mail and pipes, or JSON lines
for log collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (test runners swap it between commands)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup(verbosity: int, fmt: str) -> None:
    """verbosity: -1 quiet (warnings and errors), 0 normal, 1 debug."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler: logging.Handler
    if fmt == "json":
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        # A person at a terminal: coloured levels and times; cron mail gets plain lines.
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False,
                              rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mirrorkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
