"""The command line: parse, call the library, render results, map errors to exit codes.

Exit codes: 0 done and valid; 1 failed (verify: invalid, tampered, expired, rolled back,
wrong key); 2 usage or configuration error; 3 partial (some mirrors or sources failed),
or for verify, target unreachable or unreadable.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mirrorkit import __version__, logs
from mirrorkit.config import DEFAULT_CONFIG, Config, load, parse_duration
from mirrorkit.errors import (
    ConfigError,
    MirrorkitError,
    TargetUnreachableError,
    UsageError,
)

# Commands import what they need when they run (boto3, aiohttp, trafilatura, jinja2 and
# rich take most of a second together): 'mirrorkit --version', 'status' and 'verify'
# start fast.  tests/test_ops.py checks which modules a command loads.
if TYPE_CHECKING:
    from mirrorkit.fetch import FetchReport
    from mirrorkit.models import Article
    from mirrorkit.pipeline import MirrorOutcome, SyncResult
    from mirrorkit.store import Store
    from mirrorkit.verify import Report

log = logging.getLogger("mirrorkit")
F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config: Config | None = None
        self.credentials = True
        self.quiet = False

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(Path(self.config_path or DEFAULT_CONFIG),
                                credentials=self.credentials)
        return self._config

    def without_credentials(self) -> Context:
        """For commands that open no mirror: storage credentials may be unset."""
        self.credentials = False
        return self

    def publishing_config(self) -> Config:
        """The config, refused while it is the untouched example 'mirrorkit init' wrote:
        publishing it would sign and spread an empty site of example.com."""
        config = self.config
        if config.outlet.origin == EXAMPLE_ORIGIN:
            raise ConfigError(
                f"outlet.origin is still the example's {EXAMPLE_ORIGIN}", where=str(config.path),
                hint="edit [outlet] (id, name, origin) and [[sources]] url to your outlet's, "
                     "then run again")
        return config

    def store(self, *, exclusive: bool = True) -> AbstractContextManager[Store]:
        """The store, under the state's lease when it is kept in object storage."""
        if self.config.state is not None and self.config.state.url:
            from mirrorkit.state import open_store  # boto3: only for a state in a bucket

            if not self.credentials:
                # Mirrors stay closed, but the state's bucket is opened: an unset
                # credential of [state] is named, as for any command that opens a store.
                self._config = load(Path(self.config_path or DEFAULT_CONFIG),
                                    credentials=False, state_credentials=True)

            return open_store(self.config, exclusive=exclusive)
        from mirrorkit.store import Store

        return Store(self.config.state_dir, exclusive=exclusive)


EXAMPLE_ORIGIN = "https://www.example.com/"


def handle_errors(func: F) -> F:
    """Turn mirrorkit errors into one line on stderr and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MirrorkitError as e:
            logs.fatal(str(e), e.exit_code)
            sys.exit(e.exit_code)
        except BrokenPipeError:
            # The reader went away ('export | head -1'): what it wanted it has.  Point
            # stdout at nothing, so that flushing at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:
            # A file or socket problem not foreseen below: still one line, no traceback.
            where = f"{e.filename}: " if e.filename else ""
            logs.fatal(f"{where}{e.strerror or e}", 1)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar="MIRRORKIT_CONFIG",
              help=f"Config file [default: ./{DEFAULT_CONFIG}; env MIRRORKIT_CONFIG].")
@click.option("-v", "--verbose", is_flag=True, help="Also print debugging detail.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines on stderr as text or JSON objects.")
@click.version_option(__version__, prog_name="mirrorkit")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, quiet: bool,
        log_format: str) -> None:
    """Keep a news outlet readable where it is blocked: fetch its articles, build a
    signed static site with feeds, publish identical copies to mirrors, verify them.

    Start with 'mirrorkit demo' for an offline run on a sample outlet, or
    'mirrorkit init DIR' for a config of your own.
    """
    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    logs.setup(1 if verbose else -1 if quiet else 0, log_format)
    ctx.obj = Context(config_path)
    ctx.obj.quiet = quiet


pass_context = click.make_pass_decorator(Context)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing config (never keys).")
@handle_errors
def init(directory: Path, force: bool) -> None:
    """Write a commented config and a new key pair into DIRECTORY."""
    from mirrorkit.sign import PASSPHRASE_ENV, write_keypair

    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / DEFAULT_CONFIG
    if config_path.exists() and not force:
        raise ConfigError("already exists; use --force to overwrite", where=str(config_path))
    key_prefix = directory / "keys" / "outlet"
    if not key_prefix.with_suffix(".key").exists():
        write_keypair(key_prefix, os.environ.get(PASSPHRASE_ENV) or None)
    config_path.write_text(init_config_text(), encoding="utf-8")
    click.echo(f"wrote {config_path} and keys in {key_prefix.parent}/")
    click.echo(f"next: edit {config_path}, then run 'mirrorkit --config {config_path} sync'")


def init_config_text() -> str:
    """The example config, with its S3 mirror commented out and a local one in DIR."""
    from mirrorkit.resources import example_config

    text = example_config()
    block = re.search(r"^#>s3\n(.*?)^#<s3\n", text, flags=re.S | re.M)
    if block:
        commented = "".join(
            ("# " + line if line.strip() else line) + "\n"
            for line in block.group(1).splitlines()
        )
        text = text[: block.start()] + commented + text[block.end():]
    return text.replace('path = "/srv/mirror"', 'path = "mirror"')


@cli.command()
@click.option("--out", "prefix", required=True, metavar="PREFIX",
              type=click.Path(path_type=Path),
              help="Writes PREFIX.key (secret, mode 0600) and PREFIX.pub.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@handle_errors
def keygen(prefix: Path, force: bool) -> None:
    """Write a new Ed25519 key pair in minisign's formats.

    The secret key is encrypted with MIRRORKIT_PASSPHRASE when that is set, and written
    unencrypted (mode 0600) otherwise, as unattended signers need.
    """
    from mirrorkit.sign import PASSPHRASE_ENV, write_keypair

    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    public = write_keypair(prefix, passphrase, force=force)
    state = "encrypted" if passphrase else "unencrypted, mode 0600"
    click.echo(f"wrote {prefix}.key ({state}) and {prefix}.pub (key id {public.key_id_hex})")


@cli.command("fetch")
@pass_context
@handle_errors
def fetch_cmd(ctx: Context) -> None:
    """Gather new and changed articles into the store."""
    from mirrorkit import pipeline

    with ctx.store() as store:
        report = pipeline.run_fetch(ctx.config, store)
    sys.exit(_fetch_exit(report))


def _fetch_exit(report: FetchReport) -> int:
    from mirrorkit.pipeline import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL

    # Some sources failed: partial, the rest is stored.  All failed: nothing was done.
    if report.all_failed:
        return EXIT_FAILED
    return EXIT_PARTIAL if report.any_failed else EXIT_OK


@cli.command("build")
@click.option("--full", is_flag=True,
              help="Render every page, not only what changed (after repairing the state).")
@pass_context
@handle_errors
def build_cmd(ctx: Context, full: bool) -> None:
    """Render what changed, write feeds, sitemaps and manifest, sign; print the bundle path.

    Pages are rendered again only when what they show changed: an article, the
    templates, or a config value that shows on pages.
    """
    from mirrorkit import pipeline

    config = ctx.publishing_config()
    with ctx.store() as store:
        bundle = pipeline.run_build(config, store, full=full)
    click.echo(str(bundle.path))


REPAIR_HELP = ("Then read each mirror whole (listing and hashes) and send again every "
               "file that differs from the signed version; delete unnamed files.")


@cli.command("publish")
@click.option("--mirror", "names", multiple=True, metavar="NAME",
              help="Publish to this mirror only (repeatable). Default: all mirrors.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: exit_code and each mirror's result.")
@click.option("--repair", is_flag=True, help=REPAIR_HELP)
@pass_context
@handle_errors
def publish_cmd(ctx: Context, names: tuple[str, ...], dry_run: bool, as_json: bool,
                repair: bool) -> None:
    """Bring mirrors to the latest built version (new files first, manifest last)."""
    import time

    from mirrorkit import pipeline

    config = ctx.publishing_config()
    started = time.monotonic()
    with _stopped_run(config, as_json, {"dry_run": dry_run, "durations": {}},
                      metrics=not dry_run), ctx.store() as store:
        outcomes = pipeline.run_publish(config, store, names, dry_run=dry_run,
                                        repair=repair)
    code = pipeline.exit_for(sum(1 for o in outcomes if not o.ok), len(outcomes))
    durations = {"publish": round(time.monotonic() - started, 3)}
    if not dry_run:
        _write_metrics(config, outcomes, durations, None, code)
    if as_json:
        click.echo(json.dumps({"exit_code": code, "dry_run": dry_run,
                               "mirrors": [_mirror_json(o) for o in outcomes],
                               "durations": durations}, sort_keys=True))
        sys.exit(code)
    if not (ctx.quiet and code == 0):
        for o in outcomes:
            click.echo(_mirror_line(o, dry_run=dry_run))
        click.echo(_summary("publish", outcomes, durations))
    sys.exit(code)


def _mirror_line(o: MirrorOutcome, *, dry_run: bool = False) -> str:
    """One mirror's result; its error was logged once already, so it is not repeated."""
    from mirrorkit.pipeline import plural

    p = o.published
    if not o.ok or p is None:
        return f"{o.mirror}: FAILED"
    verb = "to upload" if dry_run else "uploaded"
    gone = "to delete" if dry_run else "deleted"
    # Files changed on the mirror behind mirrorkit's back (found by --repair or the check)
    # are named apart: they are why a run with nothing new uploads anything.
    repaired = f", {plural(o.repaired, 'file')} repaired" if o.repaired else ""
    return (f"{o.mirror}: {'ok, ' if not dry_run else ''}version {p.version}, "
            f"{plural(p.uploaded, 'object')} {verb}, {plural(p.skipped, 'file')} unchanged, "
            f"{plural(p.deleted, 'object')} {gone}{repaired}")


def _mirror_json(o: MirrorOutcome) -> dict[str, Any]:
    p = o.published
    error = o.error or o.check_error or ("; ".join(
        f.line() for f in o.check.findings if f.fatal) if o.check and not o.check.ok else None)
    return {"name": o.mirror, "ok": o.ok, "version": p.version if p else None,
            "uploaded": p.uploaded if p else 0, "deleted": p.deleted if p else 0,
            "bytes_uploaded": p.bytes_uploaded if p else 0, "repaired": o.repaired,
            "error": error}


def _summary(command: str, outcomes: Sequence[MirrorOutcome], durations: dict[str, float],
             report: FetchReport | None = None) -> str:
    """The final line of a run: what it fetched, what mirrors got, how long it took."""
    from mirrorkit.pipeline import plural

    ok = sum(1 for o in outcomes if o.ok)
    parts = []
    if report is not None:
        failed = sum(1 for s in report.sources if not s.ok)
        parts.append(f"{plural(report.new, 'new article')}, {report.changed} changed"
                     + (f", {plural(failed, 'source')} failed" if failed else ""))
    parts.append(f"{ok} of {plural(len(outcomes), 'mirror')} ok" if outcomes
                 else "nothing to publish yet")
    return f"{command}: " + "; ".join(parts) + f" ({sum(durations.values()):.1f} s)"


@contextlib.contextmanager
def _stopped_run(config: Config, as_json: bool, empty: dict[str, Any], *,
                 metrics: bool = True) -> Iterator[None]:
    """A run stopped by an error (the lease is held, the key or the state bucket is
    missing) still leaves what unattended callers read: the metrics file records its exit
    code, and --json prints its one object.  The error line itself is handle_errors'."""
    try:
        yield
    except MirrorkitError as e:
        if metrics:
            try:
                _write_metrics(config, [], {}, None, e.exit_code)
            except OSError as failed:  # the run's own error is the one to report
                log.warning("cannot write the metrics file: %s", failed)
        if as_json:
            click.echo(json.dumps({**empty, "exit_code": e.exit_code, "error": str(e),
                                   "mirrors": []}, sort_keys=True))
        raise


def _write_metrics(config: Config, outcomes: Sequence[MirrorOutcome],
                   durations: dict[str, float], report: FetchReport | None,
                   code: int) -> None:
    if config.metrics.textfile is not None:
        from mirrorkit.metrics import write_textfile

        write_textfile(config.metrics.textfile, outcomes, durations, report, code)


@cli.command("archive")
@click.option("--mirror", "name", metavar="NAME",
              help="Whose copy (its feeds link to that mirror) [default: the first mirror].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The zip to write [default: OUTLET-vVERSION.zip here].")
@pass_context
@handle_errors
def archive_cmd(ctx: Context, name: str | None, out: Path | None) -> None:
    """Write the latest build as one zip that opens offline from file:// and that
    'mirrorkit verify ARCHIVE.zip' checks; print its path."""
    from mirrorkit.build import latest_bundle, load_signer, write_archive

    with ctx.store(exclusive=False) as store:
        bundle = latest_bundle(store)
        if bundle is None or not bundle.mirrors:
            raise MirrorkitError("nothing built yet", hint="run 'mirrorkit build' first")
        mirror = ctx.config.mirror(name).name if name else bundle.mirrors[0]
        if mirror not in bundle.mirrors:
            raise MirrorkitError(f"mirror {mirror} is not in build {bundle.version}",
                                 hint="run 'mirrorkit build' again")
        out = out or Path(f"{ctx.config.outlet.id}-v{bundle.version}.zip")
        click.echo(str(write_archive(bundle, mirror, out, load_signer(ctx.config))))


@cli.command("sync")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: exit_code, fetch counts and each mirror's result.")
@click.option("--repair", is_flag=True, help=REPAIR_HELP)
@pass_context
@handle_errors
def sync_cmd(ctx: Context, as_json: bool, repair: bool) -> None:
    """Fetch, build if anything changed, publish to every mirror, check each mirror.

    The key pair is checked before anything else: a missing or mismatched key stops the
    run before anything is uploaded."""
    from mirrorkit import pipeline

    config = ctx.publishing_config()
    with _stopped_run(config, as_json, {"fetch": None, "built": False, "version": None,
                                        "durations": {}}), ctx.store() as store:
        result = pipeline.sync(config, store, repair=repair)
    _write_metrics(config, result.mirrors, result.durations, result.fetch, result.exit_code)
    if as_json:
        click.echo(json.dumps(_sync_json(result), sort_keys=True))
        sys.exit(result.exit_code)
    # -q (cron mails whatever a job prints): the results only when something failed.
    if not (ctx.quiet and result.exit_code == 0):
        for o in result.mirrors:
            click.echo(_mirror_line(o))
        click.echo(_summary("sync", result.mirrors, result.durations, result.fetch))
    sys.exit(result.exit_code)


def _sync_json(result: SyncResult) -> dict[str, Any]:
    report = result.fetch
    return {
        "exit_code": result.exit_code,
        "fetch": {
            "new": report.new, "changed": report.changed,
            "failed_sources": sum(1 for s in report.sources if not s.ok),
            "failed_articles": sum(s.failed_articles for s in report.sources),
            "deferred": report.deferred,
            "sources": [{"name": s.source, "ok": s.ok, "new": s.new, "changed": s.changed,
                         "error": s.error} for s in report.sources],
        },
        "built": result.built,
        "version": result.bundle.version if result.bundle else None,
        "mirrors": [_mirror_json(o) for o in result.mirrors],
        "durations": result.durations,
    }


def default_trust_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "mirrorkit" / "trust.json"


@cli.command("verify")
@click.argument("target")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The outlet's minisign public key [default: the config's public_key].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--trust-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where versions seen before are kept, to detect rollback "
                   "[default: $XDG_STATE_HOME/mirrorkit/trust.json].")
@click.option("--no-trust", is_flag=True, help="Neither read nor record versions seen.")
@pass_context
@handle_errors
def verify_cmd(ctx: Context, target: str, key_path: Path | None, as_json: bool,
               trust_file: Path | None, no_trust: bool) -> None:
    """Check that TARGET (a directory, a .zip archive or a mirror's base URL) is exactly
    what the outlet signed: signature, every file's hash and size, missing and extra
    files, expiry and rollback.

    Exit 0 valid (a mirror one version behind another is noted as lagging); 1 invalid,
    tampered, expired, rolled back or wrong key; 3 unreachable or unreadable.
    """
    from mirrorkit.sign import load_public_key
    from mirrorkit.verify import TrustStore, ZipTarget, open_target, verify_target

    if not target.startswith(("http://", "https://")) and not os.path.lexists(target):
        raise UsageError("no such file or directory", where=target,
                         hint="give a site directory, a .zip archive or a mirror's URL")
    if key_path is None:
        if not Path(ctx.config_path or DEFAULT_CONFIG).exists():
            raise click.UsageError("give the outlet's public key with --key PUB")
        key_path = ctx.without_credentials().config.signing.public_key
    key = load_public_key(key_path)
    trust = None if no_trust else TrustStore.load(trust_file or default_trust_file())
    try:
        opened = open_target(target)
        # An archive is a copy taken at some time, older by nature: verify_target reports
        # its version and age, and records it as no mirror's newest.
        try:
            report = verify_target(opened, key, trust=trust)
        finally:
            if isinstance(opened, ZipTarget):
                opened.close()
    except TargetUnreachableError as e:
        if as_json:
            click.echo(json.dumps({"target": target, "valid": False, "error": str(e)},
                                  ensure_ascii=False, sort_keys=True))
        raise
    _print_report(report, as_json)
    sys.exit(0 if report.ok else 1)


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, sort_keys=True))
        return
    for f in report.findings:
        click.echo(("" if f.fatal else "note: ") + f.line())
    m = report.manifest
    if report.ok and m:
        click.echo(f"valid: {report.target}: {m.outlet} version {m.version}, mirror {m.mirror},"
                   f" {report.files_checked} files, expires {m.expires:%Y-%m-%d %H:%M}Z")
    else:
        click.echo(f"INVALID: {report.target}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per mirror, a line each.")
@click.option("--deep", is_flag=True,
              help="Also read and check every file of every mirror (a full audit).")
@click.option("--max-age", metavar="DURATION", callback=lambda _c, _p, v: _duration(v),
              help="Call a mirror stale when its manifest was signed longer ago than this "
                   "(e.g. 2d) [default: only when it expired].")
@pass_context
@handle_errors
def status_cmd(ctx: Context, as_json: bool, deep: bool, max_age: timedelta | None) -> None:
    """For each mirror one state: ok, stale (signed longer ago than --max-age, or
    expired), down (unreachable, or nothing published), wrong-mirror (the manifest there
    is signed for another mirror) or invalid (bad signature, tampered, or older than a
    version seen there before: verify's trust state, which status also keeps).

    Reads only each mirror's manifest and signature, unless --deep.  With -q (a watcher
    in cron), only the mirrors that are not ok are shown.  Exit 0 all ok; 1 any invalid
    or wrong-mirror; 3 any down or stale."""
    from mirrorkit.status import exit_code, status
    from mirrorkit.verify import TrustStore

    rows = status(ctx.without_credentials().config, deep=deep, max_age=max_age,
                  trust=TrustStore.load(default_trust_file()))
    for s in rows:
        if as_json:
            click.echo(json.dumps(s.to_json(), ensure_ascii=False, sort_keys=True))
            continue
        if ctx.quiet and s.state == "ok":
            continue  # cron mails whatever a job prints
        minutes = int(s.age.total_seconds() // 60) if s.age else None
        age_text = f"{minutes // 60}h{minutes % 60:02d}m" if minutes is not None else "-"
        click.echo(f"{s.mirror:<16} {s.state:<12} "
                   f"version {s.version if s.version is not None else '-':<5} age {age_text:<8} "
                   f"{s.location}")
        for line in s.problems + s.notes:
            click.echo(f"    {line}")
    sys.exit(exit_code(rows))


def _duration(value: str | None) -> timedelta | None:
    try:
        return parse_duration(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


@cli.command("doctor")
@pass_context
@handle_errors
def doctor_cmd(ctx: Context) -> None:
    """Check the setup, one line per check with the fix when it fails: the config, that
    the key pair matches, that a state kept in a bucket ([state] url) is readable and
    writable and who holds its lease, that each mirror is writable (leaving nothing
    behind) and publicly readable and that its public_url serves this mirror, and that
    the sources answer.

    Exit 0 all passed; 1 any failed; 2 the config is wrong."""
    from mirrorkit import doctor

    checks = doctor.run(ctx.config)
    for check in checks:
        click.echo(check.line())
    failed = sum(1 for c in checks if c.result == doctor.FAIL)
    click.echo(f"doctor: {len(checks) - failed} of {len(checks)} checks passed")
    sys.exit(doctor.exit_code(checks))


@cli.command("export")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line with url, title, authors, published, updated, "
                   "language, text and html.")
@pass_context
@handle_errors
def export_cmd(ctx: Context, as_json: bool) -> None:
    """Print the stored articles (newest first)."""
    ctx.without_credentials()
    with ctx.store(exclusive=False) as store:
        for a in store.iter_articles():
            _export_one(a, as_json)


def _export_one(a: Article, as_json: bool) -> None:
    from mirrorkit.models import MEDIA_SCHEME

    if not as_json:
        date = f"{a.published:%Y-%m-%d}" if a.published else "----------"
        click.echo(f"{date}  {a.language}  {a.title}  <{a.url}>")
        return
    click.echo(json.dumps({
        "id": a.id, "url": a.url, "source": a.source, "title": a.title,
        "authors": list(a.authors),
        "published": a.published.isoformat() if a.published else None,
        "updated": a.updated.isoformat() if a.updated else None,
        "language": a.language, "summary": a.summary, "text": a.text,
        # Images as paths relative to a site root, where the build puts them.
        "html": a.html.replace(MEDIA_SCHEME, "media/"),
        "media": list(a.media),
    }, ensure_ascii=False))


@cli.command("serve")
@click.argument("directory", required=False, type=click.Path(file_okay=False, exists=True,
                                                              path_type=Path))
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1.")
@pass_context
@handle_errors
def serve_cmd(ctx: Context, directory: Path | None, port: int) -> None:
    """Preview a bundle or mirror directory over HTTP on loopback.

    Without DIRECTORY, serves the first mirror's tree of the latest build.
    """
    from mirrorkit.build import latest_bundle
    from mirrorkit.serve import serve_forever

    if directory is not None:
        click.echo(f"serving {directory} at http://127.0.0.1:{port}/index.html (Ctrl-C stops)")
        serve_forever([(directory, port)])
        return
    with ctx.store(exclusive=False) as store:
        bundle = latest_bundle(store)
        if bundle is None or not bundle.mirrors:
            raise MirrorkitError("nothing built yet; give a DIRECTORY or run 'mirrorkit build'")
        click.echo(f"serving version {bundle.version} for mirror {bundle.mirrors[0]} at "
                   f"http://127.0.0.1:{port}/index.html (Ctrl-C stops)")
        serve_forever([(bundle.source(bundle.mirrors[0]), port)])


@cli.command("demo")
@click.option("--dir", "directory", default="mirrorkit-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo writes its config, keys, state and mirrors.")
@click.option("--serve", is_flag=True, help="Afterwards, serve both mirrors on loopback.")
@click.option("--port", type=click.IntRange(1, 65534), metavar="N",
              help="The first mirror's port on 127.0.0.1, the second's N+1 "
                   "[default: 8731 and 8732].")
@handle_errors
def demo_cmd(directory: Path, serve: bool, port: int | None) -> None:
    """Offline end-to-end run on a built-in sample outlet: fetch, build, sign, publish to
    two mirrors, verify both."""
    from mirrorkit.demo import run_demo

    sys.exit(run_demo(directory, serve=serve, port=port))


def main() -> None:
    cli(prog_name="mirrorkit")
