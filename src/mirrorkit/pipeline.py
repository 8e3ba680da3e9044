"""The stages put together: what ``fetch``, ``build``, ``publish``, ``sync`` and
``status`` do, passing typed values from one stage to the next.  The CLI only parses,
calls these and renders their results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mirrorkit.build import Bundle, build, inputs_fingerprint, latest_bundle, load_signer
from mirrorkit.bundle import SiteSource, bundle_entries
from mirrorkit.config import Config, MirrorConfig
from mirrorkit.errors import (
    BuildError,
    ConfigError,
    KeyFileError,
    MirrorkitError,
    PublishError,
    TargetUnreachableError,
)
from mirrorkit.fetch import FetchReport, fetch
from mirrorkit.logs import fields
from mirrorkit.manifest import MANIFEST_NAME, MAX_ROOT_SIZE
from mirrorkit.progress import Meter, meter
from mirrorkit.publish.base import cache_control
from mirrorkit.publish.registry import open_backend
from mirrorkit.publish.stage import PublishResult, publish_all
from mirrorkit.sign import PublicKey, check_key_pair, load_public_key
from mirrorkit.status import mirror_target
from mirrorkit.store import Store, StoreJournal
from mirrorkit.verify import Report, check_written, verify_target

log = logging.getLogger("mirrorkit")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def exit_for(failed: int, total: int) -> int:
    """The contract's rule for many parts: none failed 0, all failed 1, some failed 3."""
    if not failed:
        return EXIT_OK
    return EXIT_FAILED if failed == total else EXIT_PARTIAL


@dataclass(frozen=True)
class MirrorOutcome:
    mirror: str
    published: PublishResult | None = None
    error: str | None = None
    check: Report | None = None
    check_error: str | None = None
    # Files the check after publishing read back wrong and sent again.
    mended: tuple[str, ...] = ()

    @property
    def repaired(self) -> int:
        """Files found changed on the mirror and sent again, by --repair or the check."""
        return (self.published.repaired if self.published else 0) + len(self.mended)

    @property
    def ok(self) -> bool:
        return (self.error is None and self.check_error is None
                and (self.check is None or self.check.ok))


@dataclass(frozen=True)
class SyncResult:
    fetch: FetchReport
    bundle: Bundle | None
    built: bool
    mirrors: tuple[MirrorOutcome, ...]
    # Seconds each stage took: fetch, build, publish, check.
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.mirrors and not any(m.ok for m in self.mirrors):
            return EXIT_FAILED
        if not self.mirrors and self.fetch.all_failed:  # nothing to publish: nothing done
            return EXIT_FAILED
        if self.fetch.any_failed or not all(m.ok for m in self.mirrors):
            return EXIT_PARTIAL
        return EXIT_OK


@contextmanager
def timed(durations: dict[str, float], stage: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        durations[stage] = round(time.monotonic() - started, 3)


def _note(stage: str) -> Callable[[str], None]:
    """A stage's own progress lines, logged with the stage as a field."""
    def say(message: str) -> None:
        log.info("%s", message, extra=fields("note", stage=stage))

    return say


def run_fetch(config: Config, store: Store) -> FetchReport:
    if not config.sources:
        raise ConfigError("no [[sources]] configured; nothing to fetch",
                          where=str(config.path))
    started = time.monotonic()
    with meter("fetch", "articles") as m:
        report = fetch(config, store, progress=_note("fetch"), meter=m)
    # Each failed source is reported here, once.
    for s in report.sources:
        if not s.ok:
            log.error("source %s: %s", s.source, s.error,
                      extra=fields("source_failed", source=s.source, error=s.error))
    failed = sum(s.failed_articles for s in report.sources)
    log.info("fetched: %d new, %d changed%s", report.new, report.changed,
             f", {failed} failed" if failed else "",
             extra=fields("fetch_done", new=report.new, changed=report.changed, failed=failed,
                          seconds=round(time.monotonic() - started, 3)))
    return report


def run_build(config: Config, store: Store, *, full: bool = False) -> Bundle:
    with meter("build", "article pages") as m:
        return build(config, store, progress=_note("build"), full=full, meter=m)


def run_publish(config: Config, store: Store, names: Sequence[str] = (), *,
                dry_run: bool = False, bundle: Bundle | None = None,
                repair: bool = False) -> list[MirrorOutcome]:
    """Publish the latest build; ``repair``: then read each mirror whole and mend it."""
    bundle = bundle or latest_bundle(store)
    if bundle is None:
        raise BuildError("nothing built yet", where=str(store.builds_dir),
                         hint="run 'mirrorkit build' first")
    mirrors = [config.mirror(n) for n in names] if names else list(config.mirrors)
    key = load_public_key(config.signing.public_key)
    signer = None
    if not dry_run:
        try:
            signer = load_signer(config)
        except KeyFileError as e:
            # Publishing needs no secret key, only a transition root does: without one,
            # files changed in place are briefly newer than the live manifest.
            log.warning("publishing without transition roots: %s", e,
                        extra=fields("no_transition_roots", error=str(e)))
    outcomes: dict[str, MirrorOutcome] = {}
    sources: dict[str, SiteSource | Path] = {}
    backends = {}
    for m in mirrors:
        if m.name not in bundle.mirrors:
            outcomes[m.name] = _failed(m.name, f"mirror {m.name}: not in build "
                                       f"{bundle.version}; run 'mirrorkit build' again")
            continue
        try:
            backends[m.name] = open_backend(m, config.publish.concurrency)
        except MirrorkitError as e:
            outcomes[m.name] = _failed(m.name, str(e))
            continue
        sources[m.name] = bundle.source(m.name)
    log.info("publishing version %d to %s%s", bundle.version,
             ", ".join(sources) or "no mirror", " (dry run)" if dry_run else "",
             extra=fields("publish_start", version=bundle.version))
    try:
        with meter("publish", "objects uploaded") as uploads:

            def progress(message: str) -> None:
                log.debug("%s", message, extra=fields("note", stage="publish"))
                # One line per object sent, "MIRROR: uploaded PATH" (stage.py's contract).
                if message.partition(": ")[2].startswith("uploaded "):
                    uploads.advance()

            results = publish_all(sources, backends, concurrency=config.publish.concurrency,
                                  dry_run=dry_run, key=key, signer=signer,
                                  journals={m: StoreJournal(store, m) for m in backends},
                                  progress=progress, repair=repair and not dry_run)
    finally:
        for backend in backends.values():
            backend.close()
    for name, result in results.items():
        if isinstance(result, PublishError):
            outcomes[name] = _failed(name, str(result))
        else:
            if not dry_run:
                store.record_publish(name, result.version)
            log.info("mirror %s: version %d, %s %s, %s unchanged, %s %s", name,
                     result.version, plural(result.uploaded, "object"),
                     "to upload" if dry_run else "uploaded", plural(result.skipped, "file"),
                     plural(result.deleted, "object"), "to delete" if dry_run else "deleted",
                     extra=fields("mirror_published", mirror=name, version=result.version,
                                  uploaded=result.uploaded, skipped=result.skipped,
                                  deleted=result.deleted, bytes=result.bytes_uploaded))
            if result.repaired:
                log.warning("mirror %s: repaired %s that differed from the signed version",
                            name, plural(result.repaired, "file"),
                            extra=fields("mirror_repaired", mirror=name,
                                         files=result.repaired))
            outcomes[name] = MirrorOutcome(name, published=result)
    return [outcomes[m.name] for m in mirrors]


def _failed(mirror: str, error: str) -> MirrorOutcome:
    """A mirror that could not be published: logged here, once."""
    log.error("%s", error, extra=fields("mirror_failed", mirror=mirror, error=error))
    return MirrorOutcome(mirror, error=error)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_mirror(mirror: MirrorConfig, key: PublicKey) -> Report:
    """A full audit: every file the mirror's signed manifest names."""
    return verify_target(mirror_target(mirror), key, mirror=True)


def check_published(mirror: MirrorConfig, key: PublicKey, bundle: Bundle,
                    result: PublishResult, sample: int = 0) -> Report:
    """After a publish: only what it wrote, the manifest and signature (and ``sample``
    random files), so a sync's reads follow what changed."""
    root = bundle.source(mirror.name).root()
    return check_written(mirror_target(mirror), key, root, result.written, sample=sample)


def needs_build(config: Config, store: Store, report: FetchReport,
                now: datetime | None = None) -> bool:
    bundle = latest_bundle(store)
    if bundle is None or report.new or report.changed:
        return True
    if any(m.name not in bundle.mirrors for m in config.mirrors):
        return True
    created = store.build_created(bundle.version)
    inputs = store.build_inputs(bundle.version)
    if created is None or inputs is None:
        return True
    # Articles stored after the last build (a run killed between fetch and build) are
    # built now: what was fetched is never lost.  So is a changed template or config
    # value that shows in the site.
    rev, fingerprint = inputs
    if store.last_rev() > rev or fingerprint != inputs_fingerprint(config):
        return True
    now = now or datetime.now(UTC)
    # Re-sign well before verifiers would call the mirrors stale.
    return now - created > config.signing.expires_after / 2


def sync(config: Config, store: Store, *, repair: bool = False) -> SyncResult:
    """fetch + build (when something changed) + publish + check each mirror; ``repair``:
    read each mirror whole and mend it (see :func:`run_publish`).

    The key pair is checked first: a missing or mismatched key stops the run before
    anything is fetched or uploaded, even when nothing new would need signing."""
    key = check_key_pair(config.signing.secret_key, config.signing.public_key)
    durations: dict[str, float] = {}
    with timed(durations, "fetch"):
        report = run_fetch(config, store)
    built = needs_build(config, store, report)
    if report.all_failed and store.article_count() == 0 and latest_bundle(store) is None:
        # A first run whose sources all failed would sign and spread an empty site.
        log.warning("nothing to publish yet: every source failed and no article is stored",
                    extra=fields("nothing_to_publish"))
        return SyncResult(report, None, False, (), durations)
    with timed(durations, "build"):
        bundle = run_build(config, store) if built else latest_bundle(store)
    if not built:
        log.info("nothing new to build; publishing version %d",
                 bundle.version if bundle else 0,
                 extra=fields("build_skipped", version=bundle.version if bundle else 0))
    with timed(durations, "publish"):
        outcomes = run_publish(config, store, bundle=bundle, repair=repair)
    with timed(durations, "check"), meter("check", "mirrors") as m:
        checked = _check_all(config, key, bundle, outcomes, m)
    return SyncResult(report, bundle, built, tuple(checked), durations)


def _check_all(config: Config, key: PublicKey, bundle: Bundle | None,
               outcomes: Sequence[MirrorOutcome], m: Meter) -> list[MirrorOutcome]:
    checked = []
    m.add_total(len(outcomes))
    for outcome in outcomes:
        m.advance()
        if outcome.error:
            checked.append(outcome)
            continue
        mirror = config.mirror(outcome.mirror)
        assert outcome.published is not None and bundle is not None
        try:
            result = check_published(mirror, key, bundle, outcome.published,
                                     config.publish.check_sample)
            if _root_not_served(result):
                # This run has just written the root: its public_url does not serve it.
                # Sending files again cannot help; what ops must fix is named once.
                error = (f"published, but its public_url does not serve {MANIFEST_NAME} "
                         f"({mirror.public_url}): the bucket is not publicly readable, or "
                         "public_url points elsewhere ('mirrorkit doctor' tells which)")
                log.error("mirror %s: %s", mirror.name, error,
                          extra=fields("mirror_unreadable", mirror=mirror.name, error=error))
                checked.append(MirrorOutcome(mirror.name, outcome.published,
                                             check_error=error))
                continue
            damaged = _damaged(result)
            if damaged:
                # What the check found wrong (a lost race, a flaky store, tampering) is
                # sent again once, from the signed bundle, and read back.
                shown = ", ".join(damaged[:5]) + (", ..." if len(damaged) > 5 else "")
                log.warning("mirror %s: %s read back wrong (%s); sending them again",
                            mirror.name, plural(len(damaged), "file"), shown,
                            extra=fields("mirror_mending", mirror=mirror.name,
                                         files=len(damaged)))
                mend(config, bundle, mirror, damaged)
                result = check_published(mirror, key, bundle, outcome.published, 0)
        except TargetUnreachableError as e:
            log.error("mirror %s: published, but not readable back: %s", mirror.name, e,
                      extra=fields("mirror_unreadable", mirror=mirror.name, error=str(e)))
            checked.append(MirrorOutcome(mirror.name, outcome.published, check_error=str(e)))
            continue
        for finding in result.findings:
            (log.error if finding.fatal else log.debug)(
                "mirror %s: %s", mirror.name, finding.line(),
                extra=fields("mirror_finding", mirror=mirror.name, error=finding.line()))
        checked.append(MirrorOutcome(mirror.name, outcome.published, check=result,
                                     mended=tuple(damaged)))
    return checked


def _root_not_served(report: Report) -> bool:
    return any(f.fatal and f.kind == "missing" and f.path == MANIFEST_NAME
               for f in report.findings)


def _damaged(report: Report) -> list[str]:
    return [f.path for f in report.findings
            if f.fatal and f.path and f.kind in ("missing", "size", "tampered")]


def mend(config: Config, bundle: Bundle, mirror: MirrorConfig, paths: Sequence[str]) -> None:
    """Put ``paths`` back on ``mirror`` as the live version signs them."""
    source = bundle.source(mirror.name)
    entries = bundle_entries(source, paths)
    root = source.root()
    with open_backend(mirror, config.publish.concurrency) as backend, backend.publishing():
        for entry in entries:
            # Only while this version is still the live one: never under another's root.
            if backend.get(MANIFEST_NAME, limit=MAX_ROOT_SIZE) != root:
                log.warning("mirror %s: the live manifest changed; not mending", mirror.name,
                            extra=fields("mirror_not_mended", mirror=mirror.name))
                return
            backend.put(entry.path, source.read(entry), entry.type,
                        cache=cache_control(source.max_age(entry)))
