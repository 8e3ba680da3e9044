"""Progress of the long stages (fetch, build, publish, check).

On a terminal (text logs, not ``-q``) a rich progress bar per stage, drawn on the same
console as the log lines so they print above it; elsewhere (cron mail, pipes, JSON logs)
a ``progress`` line every :data:`INTERVAL` seconds while a stage runs, so a long run is
never silent and a short one adds nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirrorkit import logs

log = logging.getLogger("mirrorkit")
INTERVAL = 5.0  # seconds between plain progress lines


class Meter:
    """Counts one stage's work.  This base class counts nothing (no one is watching)."""

    def add_total(self, n: int) -> None:
        """``n`` more units of work are known (negative: fewer, e.g. left for later)."""

    def advance(self, n: int = 1) -> None:
        """``n`` units are done."""


class _LineMeter(Meter):
    """Counts, and logs where the stage is every :data:`INTERVAL` seconds from a thread of
    its own: a stage that is slow between two counts (one big mirror's check) still
    says it is alive."""

    def __init__(self, stage: str, unit: str):
        self.stage, self.unit = stage, unit
        self.total = self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()  # publish counts from one thread per mirror
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"progress-{stage}",
                                       daemon=True)

    def add_total(self, n: int) -> None:
        with self.lock:
            self.total += n

    def advance(self, n: int = 1) -> None:
        with self.lock:
            self.done += n

    def _beat(self) -> None:
        while not self.stopped.wait(INTERVAL):
            with self.lock:
                done, total = self.done, self.total
            seconds = time.monotonic() - self.started
            of = f" of {total}" if total and total >= done else ""  # 0: not known yet
            log.info("%s: %d%s %s (%.0f s)", self.stage, done, of, self.unit, seconds,
                     extra=logs.fields("progress", stage=self.stage, done=done,
                                       total=total if of else None, seconds=round(seconds, 1)))


class _BarMeter(Meter):
    def __init__(self, bar: Any, task: Any):
        self.bar, self.task = bar, task
        self.total = 0
        self.lock = threading.Lock()

    def add_total(self, n: int) -> None:
        with self.lock:
            self.total += n
            self.bar.update(self.task, total=self.total or None)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)


@contextmanager
def meter(stage: str, unit: str) -> Iterator[Meter]:
    """A meter for ``stage`` while the block runs."""
    if not log.isEnabledFor(logging.INFO):
        yield Meter()
        return
    if not logs.bars():
        lines = _LineMeter(stage, unit)
        lines.thread.start()
        try:
            yield lines
        finally:
            lines.stopped.set()
            lines.thread.join()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(f"[bold]{stage}[/]", BarColumn(), MofNCompleteColumn(), unit,
                  TimeElapsedColumn(), console=logs.console(), transient=True) as bar:
        yield _BarMeter(bar, bar.add_task(stage, total=None))
