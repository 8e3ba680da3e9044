"""Prometheus metrics of the last run, as a text file for node_exporter's textfile
collector (``[metrics] textfile``).

The file is replaced atomically after each ``sync`` or ``publish`` (a temporary file of
an unguessable name, made with O_EXCL in the same folder, then renamed over it), so the
collector never reads half of it, and a symlink planted in a shared textfile folder
cannot turn the write onto another file.  What must outlive one run (a mirror's last
success, its live version, its failure count) is carried over from the file the run
before wrote.

Per mirror (label ``mirror``):

- ``mirrorkit_mirror_last_success_timestamp_seconds``  when it last published and checked
- ``mirrorkit_mirror_live_version``                    the version it serves since then
- ``mirrorkit_mirror_uploaded_objects``                objects uploaded by the last run
- ``mirrorkit_mirror_uploaded_bytes``                  bytes uploaded by the last run
- ``mirrorkit_mirror_failures_total``                  runs in which it failed, ever

Per run:

- ``mirrorkit_run_articles{result="new"|"updated"|"failed"}``  articles of the last fetch
- ``mirrorkit_run_stage_duration_seconds{stage=...}``          fetch, build, publish, check
- ``mirrorkit_run_timestamp_seconds``                          when the last run ended
- ``mirrorkit_run_exit_code``                                  its exit code
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from mirrorkit.fetch import FetchReport
    from mirrorkit.pipeline import MirrorOutcome

# Carried over from the previous file for mirrors this run did not bring up to date.
_KEPT = ("mirrorkit_mirror_last_success_timestamp_seconds", "mirrorkit_mirror_live_version",
         "mirrorkit_mirror_failures_total")


def previous(path: Path) -> dict[str, dict[str, float]]:
    """The carried-over metrics of the last file, by name and mirror; {} if none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return {}
    out: dict[str, dict[str, float]] = {name: {} for name in _KEPT}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in out and "mirror" in sample.labels:
                    out[sample.name][sample.labels["mirror"]] = sample.value
    except ValueError:
        return {}  # a damaged file starts the counts again rather than stop the run
    return out


def write_textfile(path: Path, outcomes: Sequence[MirrorOutcome], durations: dict[str, float],
                   report: FetchReport | None, exit_code: int,
                   now: float | None = None) -> None:
    now = time.time() if now is None else now
    before = previous(path)
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labelnames=labels, registry=registry)

    success = gauge(_KEPT[0], "Unix time the mirror last published and checked fine.",
                    ["mirror"])
    live = gauge(_KEPT[1], "Version the mirror serves since its last success.", ["mirror"])
    # A counter (so rate() and increase() read it), carried over from the last file; the
    # client adds the ``_total`` suffix.
    failures = Counter(_KEPT[2].removesuffix("_total"), "Runs in which the mirror failed.",
                       labelnames=["mirror"], registry=registry)
    objects = gauge("mirrorkit_mirror_uploaded_objects",
                    "Objects uploaded to the mirror by the last run.", ["mirror"])
    sent = gauge("mirrorkit_mirror_uploaded_bytes",
                 "Bytes uploaded to the mirror by the last run.", ["mirror"])
    for name, values in before.items():
        for mirror, value in values.items():
            if name == _KEPT[2]:
                failures.labels(mirror=mirror).inc(max(value, 0))
            else:
                {_KEPT[0]: success, _KEPT[1]: live}[name].labels(mirror=mirror).set(value)
    for o in outcomes:
        p = o.published
        objects.labels(mirror=o.mirror).set(p.uploaded if p else 0)
        sent.labels(mirror=o.mirror).set(p.bytes_uploaded if p else 0)
        failures.labels(mirror=o.mirror).inc(0 if o.ok else 1)
        if o.ok and p is not None:
            success.labels(mirror=o.mirror).set(now)
            live.labels(mirror=o.mirror).set(p.version)

    if report is not None:
        articles = gauge("mirrorkit_run_articles", "Articles of the last run's fetch.",
                         ["result"])
        articles.labels(result="new").set(report.new)
        articles.labels(result="updated").set(report.changed)
        articles.labels(result="failed").set(sum(s.failed_articles for s in report.sources))
    stages = gauge("mirrorkit_run_stage_duration_seconds",
                   "Seconds each stage of the last run took.", ["stage"])
    for stage, seconds in durations.items():
        stages.labels(stage=stage).set(seconds)
    gauge("mirrorkit_run_timestamp_seconds", "Unix time the last run ended.").set(now)
    gauge("mirrorkit_run_exit_code", "Exit code of the last run.").set(exit_code)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, generate_latest(registry))


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.  Not prometheus_client's write_to_textfile:
    its temporary file has a guessable name (PATH.PID.THREAD) and is opened following
    symlinks.  mkstemp opens a new file exclusively; the name does not end in .prom, so
    the collector skips it."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # node_exporter runs as another user
            f.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
