"""mirrorkit's benchmarks: our figures beside peer tools' on the same work, as ratios.

    python bench/run.py            # best of 3 runs per cell (about 1-2 minutes on 2 cores)
    python bench/run.py --quick    # one run per cell (well under a minute)

Everything runs on loopback in a temporary directory that is removed at the end: a
synthetic outlet written straight into a store and built into a signed bundle, moto's
standalone S3 server (``moto_server``) in its own process, and the sample outlet with a
fixed latency per response.  See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import boto3

from fetch import sample_outlet
from mirrorkit.build import Bundle, write_archive
from mirrorkit.config import Config, from_dict
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    media_type,
    read_entries,
)
from mirrorkit.models import MEDIA_SCHEME, Article, article_id
from mirrorkit.pipeline import run_build, run_fetch, run_publish
from mirrorkit.publish.stage import PublishResult
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import load_public_key, write_keypair
from mirrorkit.store import Store, iter_files
from mirrorkit.verify import DirectoryTarget, verify_target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# -- the work ---------------------------------------------------------------------------

ARTICLES = 400          # synthetic articles in the bundle that is published and verified
IMAGES = 200            # distinct images, 20-150 kB each, two per article
FETCH_LATENCY = 0.020   # seconds the sample outlet waits before every response
FETCH_EXTRA = 90        # articles added to the sample outlet's 30 for the fetch row
BIG_FETCH = 5000        # articles of the one-run fetch against a slow origin (full runs)
BIG_FETCH_LATENCY = 0.050
MOTO_KEY = "testing"
MOTO_REGION = "us-east-1"
LOCAL, S3 = "local", "s3"

_LOREM_TEXT = (
    "The council met on Thursday to discuss the budget for the coming year, and members "
    "of the public filled the gallery to hear the debate on transport, housing and the "
    "future of the river embankment, which has been closed since the spring floods."
)
_LOREM = _LOREM_TEXT.split()


@dataclass(frozen=True)
class Row:
    work: str
    ours: float
    peer: str
    theirs: float | None  # None: the peer could not run here (see the counts column)
    counts: str

    @property
    def ratio(self) -> str:
        if self.theirs is None or self.ours <= 0:
            return "-"
        return f"{self.theirs / self.ours:.2f}x"


@dataclass(frozen=True)
class Tree:
    """What a publish moves: the file count and bytes of one mirror's site tree."""

    path: Path
    files: int
    size: int

    @classmethod
    def of(cls, path: Path) -> Tree:
        files = list(iter_files(path))
        return cls(path, len(files), sum(f.stat().st_size for f in files))

    @property
    def label(self) -> str:
        return f"{self.files} files, {self.size / 1e6:.1f} MB"


def materialize(bundle: Bundle, mirror: str, dest: Path) -> Tree:
    """One mirror's whole site as a plain directory, for the peer tools to copy: the
    bundle keeps files as blobs in the store, so the peers get what ``write_archive``
    packs (files, parts, root and signature), unpacked.  Untimed set-up."""
    archive = dest.with_name(f"{dest.name}.zip")
    write_archive(bundle, mirror, archive)
    shutil.rmtree(dest, ignore_errors=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(dest)
    archive.unlink()
    return Tree.of(dest)


def best_of(runs: int, work: Callable[[], object],
            before: Callable[[], object] | None = None) -> float:
    """Fastest of ``runs`` timings of ``work``; ``before`` runs untimed ahead of each."""
    best = float("inf")
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def run_quiet(argv: list[str], *, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> None:
    """Run a peer tool; its output is dropped unless it fails."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace")[-1500:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {done.returncode}: {tail}")


def emptied(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- setup: keys, config, a synthetic store and its bundle ---------------------------------

def make_config(root: Path, s3_endpoint: str, bucket: str, *,
                sources: Sequence[str] = ()) -> Config:
    """A config with one local and one S3 mirror (and ``sources`` for fetching)."""
    if not (root / "keys" / "outlet.key").exists():
        write_keypair(root / "keys" / "outlet")
    raw: dict[str, Any] = {
        "outlet": {"id": "bench-outlet", "name": "The Bench Gazette",
                   "origin": "https://gazette.example/"},
        "state": {"dir": "state"},
        "signing": {"secret_key": "keys/outlet.key", "public_key": "keys/outlet.pub"},
        "fetch": {"allow_private_addresses": True},
        "sources": [{"url": url} for url in sources],
        "mirrors": [
            {"name": LOCAL, "type": "local", "path": "mirror-local",
             "public_url": "http://127.0.0.1:8731/"},
            {"name": S3, "type": "s3", "bucket": bucket, "endpoint_url": s3_endpoint,
             "access_key_id": MOTO_KEY, "secret_access_key": MOTO_KEY,
             "public_url": f"{s3_endpoint}/{bucket}/"},
        ],
    }
    return from_dict(raw, root / "mirrorkit.toml")


def fill_store(store: Store, articles: int, images: int) -> None:
    """Synthetic articles with incompressible, photo-sized images, written straight in."""
    rng = random.Random(20261101)
    media = [store.put_media(rng.randbytes(rng.randint(20_000, 150_000)), "image/jpeg")
             for _ in range(images)]
    start = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    for i in range(articles):
        pictures = [media[(2 * i) % images], media[(2 * i + 1) % images]]
        paragraphs = [" ".join(rng.choices(_LOREM, k=rng.randint(60, 140)))
                      for _ in range(rng.randint(4, 9))]
        figures = [f'<figure><img src="{MEDIA_SCHEME}{m.name}" alt="Picture {n}">'
                   f"<figcaption>Picture {n} of story {i}.</figcaption></figure>"
                   for n, m in enumerate(pictures)]
        body = [f"<p>{html.escape(p)}</p>" for p in paragraphs]
        body.insert(1, figures[0])
        body.append(figures[1])
        url = f"https://gazette.example/news/{i:04d}-story.html"
        store.save_article(Article(
            id=article_id(url), url=url, source="bench", title=f"Story number {i}",
            authors=("Bench Newsroom",), published=start + timedelta(hours=i), updated=None,
            language="en", text="\n\n".join(paragraphs), html="\n".join(body),
            media=tuple(m.name for m in pictures), summary=paragraphs[0][:200],
        ))


# -- moto_server ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Start moto's standalone S3 server on loopback; yields its endpoint URL."""
    exe = shutil.which("moto_server")
    if exe is None:
        raise SystemExit("moto_server is not on PATH: pip install -e '.[test]'")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with (log_dir / "moto_server.log").open("wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"moto_server did not start; see {log_dir}")
                try:
                    # Loopback URL built above from a fixed scheme.
                    with urllib.request.urlopen(endpoint + "/", timeout=1):  # noqa: S310
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.1)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def s3_client(endpoint: str) -> S3Client:
    client: S3Client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=MOTO_REGION,
        aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_KEY,
    )
    return client


def new_bucket(client: S3Client) -> str:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return bucket


def empty_bucket(client: S3Client, bucket: str) -> None:
    keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket) for obj in page.get("Contents", [])]
    for first in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in keys[first:first + 1000]], "Quiet": True})


def count_objects(client: S3Client, bucket: str) -> int:
    return sum(page.get("KeyCount", 0) for page in
               client.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def naive_s3_upload(endpoint: str, bucket: str, tree: Path, limit: int | None = None
                    ) -> None:
    """The peer: one client, one put_object per file, one after another."""
    client = s3_client(endpoint)
    try:
        for file in list(iter_files(tree))[:limit]:
            key = file.relative_to(tree).as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=file.read_bytes(),
                              ContentType=media_type(key))
    finally:
        client.close()


# -- the benchmarks --------------------------------------------------------------------------

def publish_once(config: Config, store: Store, bundle: Bundle, mirror: str) -> PublishResult:
    """``mirrorkit publish --mirror NAME``: what the CLI runs, minus argument parsing."""
    (outcome,) = run_publish(config, store, [mirror], bundle=bundle)
    if outcome.published is None:
        raise RuntimeError(f"mirrorkit publish to {mirror} failed: {outcome.error}")
    return outcome.published


def bench_local(runs: int, config: Config, store: Store, bundle: Bundle, work: Path
                ) -> list[Row]:
    """Publish to a directory: mirrorkit vs rsync (or cp -a) and shutil.copytree."""
    tree = materialize(bundle, LOCAL, work / "tree-local")
    dest = config.mirror(LOCAL).path
    assert dest is not None
    first = best_of(runs, lambda: publish_once(config, store, bundle, LOCAL),
                    before=lambda: emptied(dest))
    result: list[PublishResult] = []
    again = best_of(runs, lambda: result.append(publish_once(config, store, bundle, LOCAL)))
    rewritten = f"{result[-1].uploaded} of {tree.files} files rewritten by mirrorkit"

    peer_dir = work / "peer-local"
    firsts: list[tuple[str, Callable[[], object]]] = []
    agains: list[tuple[str, Callable[[], object]]] = []
    rsync = shutil.which("rsync")
    if rsync:
        def rsync_run(*extra: str) -> None:
            run_quiet([rsync, "-a", "--checksum", *extra, f"{tree.path}/", f"{peer_dir}/"])

        firsts.append(("rsync -a --checksum", rsync_run))
        # mirrorkit fsyncs every file it writes; rsync >= 3.2.4 can be asked to as well.
        help_text = subprocess.run([rsync, "--help"], capture_output=True, text=True,
                                   check=False).stdout
        if "--fsync" in help_text:
            firsts.append(("rsync -a --checksum --fsync", lambda: rsync_run("--fsync")))
        agains.append(("rsync -a --checksum", rsync_run))
    else:  # the brief's fallback; apt-get install -y rsync to compare with rsync
        def cp_run() -> None:
            peer_dir.mkdir(parents=True, exist_ok=True)
            run_quiet(["cp", "-a", f"{tree.path}/.", f"{peer_dir}/"])

        firsts.append(("cp -a (rsync not installed)", cp_run))
        agains.append(("cp -a (rsync not installed; copies all)", cp_run))
    firsts.append(("shutil.copytree", lambda: shutil.copytree(tree.path, peer_dir)))
    agains.append(("shutil.copytree (copies all)",
                   lambda: shutil.copytree(tree.path, peer_dir, dirs_exist_ok=True)))

    key = load_public_key(config.signing.public_key)
    rows: list[Row] = []
    for peer, run in firsts:
        t = best_of(runs, run, before=lambda: emptied(peer_dir))
        # Same work: the peer's copy must be the same site, by mirrorkit's own verifier.
        if not verify_target(DirectoryTarget(peer_dir), key).ok:
            raise RuntimeError(f"the copy made by {peer} does not verify")
        rows.append(Row("local dir: first publish", first, peer, t, tree.label))
    for peer, run in agains:
        emptied(peer_dir)
        run()  # an up-to-date copy to start from, untimed
        t = best_of(runs, run)
        rows.append(Row("local dir: re-publish, no change", again, peer, t, rewritten))
    emptied(peer_dir)
    return rows


def bench_s3(runs: int, config: Config, store: Store, bundle: Bundle, endpoint: str,
             work: Path) -> tuple[list[Row], list[str]]:
    """Publish to moto_server: mirrorkit vs a sequential boto3 loop and aws s3 sync."""
    tree = materialize(bundle, S3, work / "tree-s3")
    bucket = config.mirror(S3).bucket
    assert bucket is not None
    admin = s3_client(endpoint)
    try:
        # moto answers its first requests of a kind slowly; let nobody's timing pay that.
        scratch = new_bucket(admin)
        naive_s3_upload(endpoint, scratch, tree.path, limit=50)
        empty_bucket(admin, scratch)

        first = best_of(runs, lambda: publish_once(config, store, bundle, S3),
                        before=lambda: empty_bucket(admin, bucket))
        result: list[PublishResult] = []
        again = best_of(runs, lambda: result.append(publish_once(config, store, bundle, S3)))
        rewritten = f"{result[-1].uploaded} of {tree.files} objects rewritten by mirrorkit"

        notes: list[str] = []
        peers: list[tuple[str, str, Callable[[], object]]] = [
            ("boto3 put_object loop", scratch,
             lambda: naive_s3_upload(endpoint, scratch, tree.path)),
        ]
        aws = shutil.which("aws")
        if aws:  # only if already installed; the benchmark never installs it
            env = {**os.environ, "AWS_ACCESS_KEY_ID": MOTO_KEY,
                   "AWS_SECRET_ACCESS_KEY": MOTO_KEY, "AWS_DEFAULT_REGION": MOTO_REGION,
                   "AWS_CONFIG_FILE": str(work / "no-aws-config"),
                   "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials")}
            aws_bucket = new_bucket(admin)
            peers.append(("aws s3 sync", aws_bucket, lambda: run_quiet(
                [aws, "--endpoint-url", endpoint, "s3", "sync", str(tree.path),
                 f"s3://{aws_bucket}/", "--only-show-errors"], env=env)))
            startup = best_of(runs, lambda: run_quiet([aws, "--version"], env=env))
            notes.append(f"aws CLI start-up alone (aws --version): {startup:.2f} s; "
                         "it is part of the aws s3 sync rows.")
        else:
            notes.append("aws s3 sync: not run, awscli is not installed (the benchmark "
                         "does not install it).")

        firsts: list[Row] = []
        agains: list[Row] = []
        for peer, peer_bucket, run in peers:
            t: float | None
            try:
                t = best_of(runs, run, before=partial(empty_bucket, admin, peer_bucket))
                if count_objects(admin, peer_bucket) != tree.files:
                    raise RuntimeError(f"{peer} did not upload every file")
                t_again: float | None = best_of(runs, run)  # the bucket is up to date now
            except RuntimeError as e:  # a peer failing is reported, not fatal
                notes.append(f"{peer} failed: {e}")
                t = t_again = None
            firsts.append(Row("S3: first publish", first, peer, t, tree.label))
            if peer.startswith("boto3"):
                peer += " (uploads all)"
            agains.append(Row("S3: re-publish, no change", again, peer, t_again, rewritten))
    finally:
        admin.close()
    return firsts + agains, notes


def signed_entries(site: Path, root: Manifest) -> list[FileEntry]:
    """What a verifier hashes in a site directory: every live file the signed root names
    through its parts, and the parts themselves (retired files are optional, so left out
    of a checksum list that must not fail on them)."""
    parts = {ref.path: (site / ref.path).read_bytes() for ref in root.parts}
    entries, problems = read_entries(root, parts)
    if problems:
        raise RuntimeError(f"the manifest parts in {site} do not read: {problems[:3]}")
    return ([e for e in entries.values() if e.retired is None]
            + [ref.entry() for ref in root.parts])


def write_checksums(out: Path, entries: Sequence[FileEntry]) -> None:
    """A ``sha256sum -c`` list of ``entries`` (made untimed, from the signed manifest)."""
    out.write_text("".join(f"{e.sha256}  {e.path}\n" for e in entries), encoding="utf-8")


def bench_verify(runs: int, config: Config, work: Path) -> Row:
    """mirrorkit verify on the published local mirror vs sha256sum -c + minisign -Vm."""
    mirror = config.mirror(LOCAL).path
    assert mirror is not None
    key = load_public_key(config.signing.public_key)
    reports = []
    ours = best_of(runs, lambda: reports.append(verify_target(DirectoryTarget(mirror), key)))
    report = reports[-1]
    if not report.ok or report.manifest is None:
        raise RuntimeError(f"mirrorkit verify failed: {[f.line() for f in report.findings]}")
    sums = work / "SHA256SUMS"
    listed = signed_entries(mirror, report.manifest)
    write_checksums(sums, listed)
    sha256sum, minisign = shutil.which("sha256sum"), shutil.which("minisign")
    if sha256sum is None or minisign is None:
        return Row("verify a directory mirror", ours, "sha256sum / minisign (missing)", None,
                   f"{report.files_checked} files")

    def peer() -> None:
        run_quiet([sha256sum, "--check", "--strict", "--quiet", str(sums)], cwd=mirror)
        run_quiet([minisign, "-V", "-q", "-m", MANIFEST_NAME, "-x", SIGNATURE_NAME,
                   "-p", str(config.signing.public_key)], cwd=mirror)

    theirs = best_of(runs, peer)
    size = sum(f.size for f in listed)
    return Row("verify a directory mirror", ours, "sha256sum -c + minisign -Vm", theirs,
               f"{report.files_checked} files + {len(report.manifest.parts)} parts, "
               f"{size / 1e6:.1f} MB")


_ITEM_LINK = re.compile(r"<item>.*?<link>([^<]+)</link>", re.DOTALL)
_IMG_SRC = re.compile(rb"<img[^>]*\ssrc=\"([^\"]+)\"")


def naive_fetch(feed_url: str) -> int:
    """The peer: urllib, one request after another: feed, every page, every image once."""

    def get(url: str) -> bytes:
        # Only loopback http URLs of the sample outlet reach here.
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    feed = get(feed_url).decode("utf-8")
    pages = [html.unescape(link.strip()) for link in _ITEM_LINK.findall(feed)]
    images: dict[str, None] = {}
    for page in pages:
        for src in _IMG_SRC.findall(get(page)):
            images.setdefault(urljoin(page, html.unescape(src.decode("ascii"))))
    for image in images:
        get(image)
    return 1 + len(pages) + len(images)


def bench_fetch(runs: int, work: Path, endpoint: str) -> Row:
    with SampleOutlet(latency=FETCH_LATENCY) as outlet:
        names = sorted(outlet.images)
        for i in range(FETCH_EXTRA):
            outlet.add_article(
                f"bench-extra-{i:03d}", f"Additional report number {i}",
                [f"Paragraph {k} of additional report {i}. " * 15 for k in range(6)],
                images=[names[i % len(names)]],
            )
        articles = len(outlet.articles)
        served: list[int] = []

        def ours_once() -> None:
            root = Path(tempfile.mkdtemp(prefix="fetch-", dir=work))
            try:
                config = make_config(root, endpoint, "unused", sources=[outlet.feed_url])
                with Store(config.state_dir) as store:
                    report = run_fetch(config, store)
                if report.new != articles or report.any_failed:
                    raise RuntimeError(f"mirrorkit fetch got {report.new} of {articles}")
            finally:
                shutil.rmtree(root, ignore_errors=True)

        def theirs_once() -> None:
            naive_fetch(outlet.feed_url)

        def count(work_fn: Callable[[], None]) -> Callable[[], None]:
            def wrapped() -> None:
                outlet.reset_requests()
                work_fn()
                served.append(len(outlet.requests))
            return wrapped

        ours = best_of(runs, count(ours_once))
        ours_requests = served[-1]
        theirs = best_of(runs, count(theirs_once))
        theirs_requests = served[-1]
    counts = (f"{articles} articles, {ours_requests} requests" if ours_requests ==
              theirs_requests else f"{articles} articles, requests: "
              f"{ours_requests} ours / {theirs_requests} peer")
    return Row(f"fetch, {FETCH_LATENCY * 1000:.0f} ms per response", ours,
               "urllib, sequential", theirs, counts)


def bench_big_fetch(work: Path, endpoint: str, articles: int, latency: float) -> Row:
    """One run over a large sitemap on a slow origin, beside the network's ideal: every
    response waits ``latency``, and the origin gets ``per_host`` requests at once."""
    with sample_outlet(articles, latency) as base:
        root = Path(tempfile.mkdtemp(prefix="bigfetch-", dir=work))
        config = make_config(root, endpoint, "unused", sources=[base + "sitemap.xml"])
        config = replace(config, sources=tuple(replace(s, type="sitemap")
                                               for s in config.sources),
                         fetch=replace(config.fetch, max_articles_per_source=articles))
        started = time.perf_counter()
        with Store(config.state_dir) as store:
            report = run_fetch(config, store)
            saved = len(store.articles())
        took = time.perf_counter() - started
    # Pages only: the filler articles have no images.
    ideal = articles * latency / config.fetch.per_host
    return Row(f"fetch {articles} articles in one run, {latency * 1000:.0f} ms per response",
               took, f"network ideal (articles x latency / per_host {config.fetch.per_host})",
               ideal, f"{saved} of {articles} saved, {report.sources[0].failed_articles} "
               f"failed; mirrorkit / ideal = {took / ideal:.2f}x")


# -- output --------------------------------------------------------------------------------

def print_table(rows: list[Row]) -> None:
    header = ("work", "mirrorkit s", "peer", "peer s", "peer/mirrorkit", "counts")
    cells = [header] + [
        (r.work, f"{r.ours:.3f}", r.peer, "-" if r.theirs is None else f"{r.theirs:.3f}",
         r.ratio, r.counts)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    right = {1, 3, 4}

    def line(cell: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cell, widths, strict=True))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for cell in cells[1:]:
        print(line(cell))


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Report on stderr how long a group of rows took, so a slow machine shows where."""
    start = time.perf_counter()
    yield
    print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)


def tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run per cell instead of the best of three")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else 3
    began = time.perf_counter()

    rows: list[Row] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="mirrorkit-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        endpoint = stack.enter_context(moto_server(work))
        admin = s3_client(endpoint)
        stack.callback(admin.close)
        bucket = new_bucket(admin)

        config = make_config(work / "outlet", endpoint, bucket)
        store = stack.enter_context(Store(config.state_dir))
        t0 = time.perf_counter()
        fill_store(store, ARTICLES, IMAGES)
        bundle = run_build(config, store)
        print(f"set-up: {ARTICLES} articles, {IMAGES} images stored and built in "
              f"{time.perf_counter() - t0:.1f} s; best of {runs} run(s) per cell",
              file=sys.stderr)

        with stage("local publish"):
            rows += bench_local(runs, config, store, bundle, work)
        with stage("S3 publish"):
            s3_rows, s3_notes = bench_s3(runs, config, store, bundle, endpoint, work)
            rows += s3_rows
            notes += s3_notes
        with stage("verify"):
            rows.append(bench_verify(runs, config, work))
        with stage("fetch"):
            rows.append(bench_fetch(runs, work, endpoint))
        if not args.quick:
            with stage("large fetch"):
                rows.append(bench_big_fetch(work, endpoint, BIG_FETCH, BIG_FETCH_LATENCY))

    print(f"mirrorkit benchmarks: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end; best of {runs} run(s) per cell")
    print(f"peers: {tool_version(['rsync', '--version'])}; "
          f"{tool_version(['aws', '--version'])}; {tool_version(['minisign', '-v'])}; "
          f"{tool_version(['sha256sum', '--version'])}")
    print()
    print_table(rows)
    print()
    print("peer/mirrorkit > 1: mirrorkit is faster; < 1: the peer is faster.")
    for note in notes:
        print(note)
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
