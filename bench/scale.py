"""Does cost follow the news?  mirrorkit at 1,000, 10,000 and 100,000 articles.

    python bench/scale.py                          # 1k, 10k and 100k articles (many minutes)
    python bench/scale.py --quick                  # 1k and 3k, Pelican at 1k (under 90 s)
    python bench/scale.py --sizes 1000,10000       # any sizes

For each archive size, a synthetic outlet is written straight into a fresh store and
published to three mirrors (a local directory and two buckets on a ``moto_server`` of its
own), then measured: the full build beside Pelican on the same articles as Markdown, a
sync that adds 10 articles and one with nothing new (each in a subprocess, requests
counted from moto_server's request log), the signed root, ``verify`` beside
``sha256sum -c`` and the state directory beside one site.  One markdown table per size
goes to stdout, progress to stderr.  See bench/README.md (DESIGN.md invariant 9).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import html
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit.build import Bundle, build_with_stats
from mirrorkit.config import Config, from_dict
from mirrorkit.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, media_type
from mirrorkit.models import MEDIA_SCHEME, Article, Media, article_id
from mirrorkit.pipeline import run_publish
from mirrorkit.sign import load_public_key, write_keypair
from mirrorkit.store import Store, iter_files
from mirrorkit.verify import DirectoryTarget, verify_target
from run import (
    MOTO_KEY,
    moto_server,
    run_quiet,
    s3_client,
    signed_entries,
    write_checksums,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 2_000)
PELICAN_MAX = 10_000        # Pelican runs at sizes up to this (it takes minutes at 10k)
QUICK_PELICAN_MAX = 1_000
# Up to this size the S3 mirrors get the whole first version through mirrorkit publish.
# Above it (moto_server takes 100+ objects a second on 2 cores: 25 minutes for 2 x 135k)
# they get only what a later publish reads: the signed root, its signature and parts.
S3_FULL_MAX = 10_000
ADDED = 10                  # articles a "+10" sync adds
IMAGE_EVERY = 3             # one image per this many articles
LOCAL, S3_A, S3_B = "local", "s3-a", "s3-b"
BUCKETS = (S3_A, S3_B)

# The goals.
GOAL_MS_PER_PAGE = 0.5
GOAL_PELICAN_RATIO = 4.0
GOAL_FLAT = 2.0             # +10 sync at the largest size within 2x of the smallest
GOAL_BUILD_S = 1.0          # +10 build at 100k
GOAL_RSS_MB = 300
GOAL_NOOP_PUBLISH = 2       # requests per mirror
GOAL_NOOP_TOTAL = 4
GOAL_VERIFY_RATIO = 3.0
GOAL_ROOT_GZIP = 64 * 1024

_TEXT = (
    "the council met on thursday to discuss budget for coming year and members of public "
    "filled gallery hear debate transport housing future river embankment which has been "
    "closed since spring floods minister said government would review decision after "
    "protests in capital where thousands gathered outside parliament demanding answers "
    "about contracts awarded without tender journalists were denied access documents "
    "obtained by our reporters show officials knew of risks months before collapse"
)
_WORDS = _TEXT.split()
_HEADINGS = ("What happened", "Background", "What comes next", "Reactions", "The numbers")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the synthetic outlet -------------------------------------------------------------------

@dataclass(frozen=True)
class Story:
    """One synthetic article, rendered as HTML for mirrorkit and Markdown for Pelican."""

    number: int
    title: str
    published: datetime
    paragraphs: tuple[str, ...]
    heading: str
    image: int | None  # index into the outlet's images

    @property
    def url(self) -> str:
        return f"https://gazette.example/news/{self.number:06d}-story.html"

    def html(self, image: Media | None) -> str:
        body = [f"<p>{html.escape(p)}</p>" for p in self.paragraphs]
        body.insert(len(body) // 2, f"<h2>{html.escape(self.heading)}</h2>")
        if image is not None:
            body.insert(1, f'<figure><img src="{MEDIA_SCHEME}{image.name}" alt="Picture">'
                           f"<figcaption>Picture for story {self.number}.</figcaption>"
                           "</figure>")
        return "\n".join(body)

    def markdown(self, image: Media | None) -> str:
        body = list(self.paragraphs)
        body.insert(len(body) // 2, f"## {self.heading}")
        if image is not None:
            body.insert(1, f"![Picture]({{static}}/images/{image.name})\n\n"
                           f"*Picture for story {self.number}.*")
        head = (f"Title: {self.title}\nDate: {self.published:%Y-%m-%d %H:%M}\n"
                f"Author: Bench Newsroom\nCategory: News\nSlug: story-{self.number:06d}\n"
                f"Summary: {self.paragraphs[0][:200]}\n\n")
        return head + "\n\n".join(body) + "\n"


def story(number: int) -> Story:
    """Article ``number`` of the synthetic outlet: 5-8 paragraphs, about 3-6 KB of HTML."""
    rng = random.Random(number)
    paragraphs = tuple(
        " ".join(rng.choices(_WORDS, k=rng.randint(70, 110))).capitalize() + "."
        for _ in range(rng.randint(5, 8)))
    return Story(number, f"Story number {number}: {' '.join(rng.choices(_WORDS, k=5))}",
                 datetime(2020, 1, 1, 6, 0, tzinfo=UTC) + timedelta(minutes=30 * number),
                 paragraphs, rng.choice(_HEADINGS),
                 number // IMAGE_EVERY if number % IMAGE_EVERY == 0 else None)


def image_bytes(index: int) -> bytes:
    """A small image (3-12 kB of random bytes: it does not compress, like a JPEG)."""
    rng = random.Random(1_000_000 + index)
    return rng.randbytes(rng.randint(3_000, 12_000))


def add_stories(store: Store, first: int, count: int, batch: int = 2_000) -> None:
    """Stories ``first`` .. ``first + count - 1`` and their images, written straight into
    the store as if fetched (one transaction per batch, so filling 100k takes seconds)."""
    for start in range(first, first + count, batch):
        with store.transaction():
            for number in range(start, min(start + batch, first + count)):
                s = story(number)
                media = (store.put_media(image_bytes(s.image), "image/jpeg")
                         if s.image is not None else None)
                store.save_article(Article(
                    id=article_id(s.url), url=s.url, source="bench", title=s.title,
                    authors=("Bench Newsroom",), published=s.published, updated=None,
                    language="en", text="\n\n".join(s.paragraphs), html=s.html(media),
                    media=(media.name,) if media else (), summary=s.paragraphs[0][:200]))


# -- configuration --------------------------------------------------------------------------

def raw_config(endpoint: str, buckets: dict[str, str]) -> dict[str, Any]:
    return {
        "outlet": {"id": "bench-outlet", "name": "The Bench Gazette",
                   "origin": "https://gazette.example/"},
        "state": {"dir": "state"},
        "signing": {"secret_key": "keys/outlet.key", "public_key": "keys/outlet.pub"},
        "mirrors": [
            {"name": LOCAL, "type": "local", "path": "mirror-local",
             "public_url": "http://127.0.0.1:8731/"},
            *({"name": name, "type": "s3", "bucket": bucket, "endpoint_url": endpoint,
               "access_key_id": MOTO_KEY, "secret_access_key": MOTO_KEY,
               "public_url": f"{endpoint}/{bucket}/"} for name, bucket in buckets.items()),
        ],
    }


def public_bucket(client: S3Client, name: str) -> str:
    """A bucket anyone may read, as ops set one up for readers (the check after publish
    reads the mirror back over its public URL, without credentials)."""
    client.create_bucket(Bucket=name)
    client.put_bucket_policy(Bucket=name, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{name}/*"}]}))
    return name


# -- requests, counted at the server -------------------------------------------------------

_REQUEST = re.compile(r'"(?:GET|PUT|HEAD|POST|DELETE) /([^/? ]+)[^"]*" \d{3}')


def requests_by_bucket(moto_log: Path, start: int, end: int) -> Counter[str]:
    """Requests moto_server logged between two byte offsets of its log, by bucket."""
    with moto_log.open("rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8", errors="replace")
    return Counter(m.group(1) for m in _REQUEST.finditer(text))


def log_offset(moto_log: Path) -> int:
    # moto answers after it logs the request line, so once our call returns, its line is
    # in the file; a short pause covers the last response of a concurrent batch.
    time.sleep(0.05)
    return moto_log.stat().st_size


# -- a sync in its own process ---------------------------------------------------------------

def child_sync(root: Path, moto_log: Path, add: int) -> dict[str, Any]:
    """Add ``add`` articles, then run ``pipeline.sync`` with fetching left out (the
    articles are already in the store): build if needed, publish, check each mirror.
    Returns what the parent reports; log offsets mark where publish and check began."""
    from mirrorkit import pipeline
    from mirrorkit.fetch import FetchReport

    config = from_dict(json.loads((root / "config.json").read_text()), root / "mirrorkit.toml")
    built: dict[str, Any] = {}
    marks: dict[str, int] = {}
    run_publish = pipeline.run_publish

    def timed_build(config: Config, store: Store, *, full: bool = False) -> Any:
        start = time.perf_counter()
        bundle, stats = build_with_stats(config, store, full=full)
        built.update(seconds=time.perf_counter() - start, rendered=stats.rendered,
                     changed=stats.changed, parts=stats.parts, full=stats.full)
        return bundle

    def marked_publish(*args: Any, **kwargs: Any) -> Any:
        marks["publish"] = log_offset(moto_log)
        outcomes = run_publish(*args, **kwargs)
        marks["check"] = log_offset(moto_log)
        return outcomes

    # sync() looks these up in its module when it runs.
    pipeline.run_fetch = lambda config, store: FetchReport((), 0, 0)  # type: ignore[assignment]
    pipeline.run_build = timed_build  # type: ignore[assignment]
    pipeline.run_publish = marked_publish  # type: ignore[assignment]
    import tracemalloc
    if os.environ.get("MIRRORKIT_TRACE"):
        tracemalloc.start(15)
    with Store(config.state_dir, exclusive=True) as store:
        if add:
            add_stories(store, store.article_count(), add)
        marks["start"] = log_offset(moto_log)
        start = time.perf_counter()
        result = pipeline.sync(config, store)
        seconds = time.perf_counter() - start
        marks["end"] = log_offset(moto_log)
    mirrors: dict[str, Any] = {}
    for outcome in result.mirrors:
        published = outcome.published
        mirrors[outcome.mirror] = {
            "ok": outcome.ok,
            "error": outcome.error or outcome.check_error or (
                None if outcome.check is None or outcome.check.ok
                else "; ".join(f.line() for f in outcome.check.findings if f.fatal)),
            "uploaded": published.uploaded if published else None,
            "bytes": published.bytes_uploaded if published else None,
            "part_bytes": sum(e.size for e in published.written
                              if e.path.startswith("parts/")) if published else None,
            "parts": sum(e.path.startswith("parts/") for e in published.written)
            if published else None,
        }
    if os.environ.get("MIRRORKIT_TRACE"):
        print("traced peak", tracemalloc.get_traced_memory(), file=sys.stderr)
        for stat in tracemalloc.take_snapshot().statistics("traceback")[:3]:
            print(stat, "\n".join(stat.traceback.format()[-8:]), file=sys.stderr)
    assert result.bundle is not None
    root_bytes = result.bundle.source(LOCAL).root()
    return {
        "seconds": seconds, "built": built, "mirrors": mirrors, "marks": marks,
        "exit": result.exit_code, "version": result.bundle.version,
        "root": len(root_bytes), "root_gzip": len(gzip.compress(root_bytes, 9)),
        # ru_maxrss is in KiB on Linux: the peak of this whole process.
        "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


@dataclass
class SyncFigures:
    seconds: float
    built: dict[str, Any]
    mirrors: dict[str, Any]
    publish_requests: dict[str, int]
    check_requests: dict[str, int]
    rss_mib: float
    root: int
    root_gzip: int
    exit: int


def run_sync(root: Path, moto_log: Path, buckets: dict[str, str], add: int) -> SyncFigures:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-sync", str(root),
         "--moto-log", str(moto_log), "--add", str(add)],
        capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"sync subprocess exited {done.returncode}: {done.stderr[-3000:]}")
    if os.environ.get("MIRRORKIT_TRACE"):
        print(done.stderr[-4000:], file=sys.stderr)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    marks = out["marks"]
    publish = requests_by_bucket(moto_log, marks["publish"], marks["check"])
    check = requests_by_bucket(moto_log, marks["check"], marks["end"])
    for name, m in out["mirrors"].items():
        if not m["ok"]:
            raise RuntimeError(f"sync: mirror {name} failed: {m['error']}")
    return SyncFigures(
        out["seconds"], out["built"], out["mirrors"],
        {n: publish[b] for n, b in buckets.items()}, {n: check[b] for n, b in buckets.items()},
        out["rss_kib"] / 1024, out["root"], out["root_gzip"], out["exit"])


# -- Pelican ------------------------------------------------------------------------------

_PELICAN_CONF = """\
AUTHOR = "Bench Newsroom"
SITENAME = "The Bench Gazette"
SITEURL = "https://gazette.example"
PATH = "content"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
DEFAULT_PAGINATION = 100      # mirrorkit's archive pages hold 100 articles
FEED_MAX_ITEMS = 50           # mirrorkit's feeds carry 50
LOAD_CONTENT_CACHE = False
CACHE_CONTENT = False
"""

_PELICAN_RUN = """\
import json, sys, time
from pelican import Pelican
from pelican.settings import read_settings
settings = read_settings(sys.argv[1], override={"OUTPUT_PATH": sys.argv[2]})
site = Pelican(settings)
start = time.perf_counter()
site.run()
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def pelican_build(work: Path, store: Store, count: int) -> float:
    """Pelican (default theme, caches off) building the same ``count`` articles and their
    images as Markdown; returns the wall time of ``Pelican.run()`` in its own process."""
    try:
        import pelican  # noqa: F401
    except ImportError as e:
        raise SystemExit("Pelican is not installed: pip install -e '.[bench]'") from e
    site = work / "pelican"
    shutil.rmtree(site, ignore_errors=True)
    content = site / "content"
    (content / "images").mkdir(parents=True)
    for number in range(count):
        s = story(number)
        media = None
        if s.image is not None:
            media = store.put_media(image_bytes(s.image), "image/jpeg")  # already stored
            shutil.copyfile(store.blob_path(media.sha256), content / "images" / media.name)
        (content / f"story-{number:06d}.md").write_text(s.markdown(media), encoding="utf-8")
    (site / "pelicanconf.py").write_text(_PELICAN_CONF, encoding="utf-8")
    (site / "run_pelican.py").write_text(_PELICAN_RUN, encoding="utf-8")
    done = subprocess.run([sys.executable, "run_pelican.py", "pelicanconf.py", "output"],
                          cwd=site, capture_output=True, text=True, check=False, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"pelican failed: {(done.stderr or done.stdout)[-3000:]}")
    seconds = float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    pages = sum(1 for _ in (site / "output").glob("story-*.html"))
    if pages != count:
        raise RuntimeError(f"pelican wrote {pages} article pages, not {count}: "
                           f"{done.stderr[-2000:]}")
    shutil.rmtree(site, ignore_errors=True)
    return seconds


# -- verify, sizes -------------------------------------------------------------------------

def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_verify(config: Config, work: Path) -> tuple[float, float | None, int, int]:
    """verify_target on the local mirror, and sha256sum -c + minisign -Vm on the same
    files (best of 2 each, so both read from a warm page cache)."""
    mirror = config.mirror(LOCAL).path
    assert mirror is not None
    key = load_public_key(config.signing.public_key)
    reports = []
    ours = best(2, lambda: reports.append(verify_target(DirectoryTarget(mirror), key)))
    report = reports[-1]
    if not report.ok or report.manifest is None:
        raise RuntimeError(f"verify failed: {[f.line() for f in report.findings][:5]}")
    listed = signed_entries(mirror, report.manifest)
    sums = work / "SHA256SUMS"
    write_checksums(sums, listed)
    sha256sum, minisign = shutil.which("sha256sum"), shutil.which("minisign")
    theirs = None
    if sha256sum and minisign:
        def peer() -> None:
            run_quiet([sha256sum, "--check", "--strict", "--quiet", str(sums)], cwd=mirror)
            run_quiet([minisign, "-V", "-q", "-m", MANIFEST_NAME, "-x", SIGNATURE_NAME,
                       "-p", str(config.signing.public_key)], cwd=mirror)
        theirs = best(2, peer)
    return ours, theirs, len(listed), sum(e.size for e in listed)


def tree_size(path: Path) -> tuple[int, int]:
    """Files and bytes (apparent sizes) under ``path``."""
    sizes = [p.lstat().st_size for p in iter_files(path)]
    return len(sizes), sum(sizes)


def disk_usage(path: Path) -> int:
    """Bytes on disk (``du -sk``), blocks included."""
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[0]) * 1024


# -- one archive size ----------------------------------------------------------------------

@dataclass
class Result:
    size: int
    build_s: float = 0.0
    build_rendered: int = 0
    build_files: int = 0
    pelican_s: float | None = None
    first_publish_s: float = 0.0
    first_publish_objects: int = 0
    plus: SyncFigures | None = None
    noop: SyncFigures | None = None
    verify_s: float = 0.0
    sha256sum_s: float | None = None
    verify_files: int = 0
    verify_bytes: int = 0
    state_bytes: int = 0
    seeded: int = 0  # objects put into the buckets instead of a whole first publish
    state_disk: int = 0
    site_files: int = 0
    site_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ms_per_page(self) -> float:
        return self.build_s * 1000 / self.size


def seed_roots(client: S3Client, buckets: dict[str, str], bundle: Bundle) -> int:
    """Put only the signed root, its signature and its parts into each bucket: all that a
    later publish reads of a mirror (it plans from the live root and fetches parts it does
    not hold; the files a +10 sync replaces it GETs either way, found or not), so the
    sync's requests and uploads are the same as after a whole first publish."""
    puts: list[tuple[str, str, bytes, str]] = []
    for name, bucket in buckets.items():
        source = bundle.source(name)
        root = Manifest.from_bytes(source.root())
        puts += [(bucket, ref.path, source.read(ref.entry()), media_type(ref.path))
                 for ref in root.parts]
        puts.append((bucket, SIGNATURE_NAME, source.signature(), media_type(SIGNATURE_NAME)))
        puts.append((bucket, MANIFEST_NAME, source.root(), media_type(MANIFEST_NAME)))

    def put(item: tuple[str, str, bytes, str]) -> None:
        bucket, key, body, kind = item
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)

    # Parts first, the root last, as a publish commits.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, [p for p in puts if p[1].startswith("parts/")]))
    for item in puts:
        if not item[1].startswith("parts/"):
            put(item)
    return len(puts)


def measure(size: int, work: Path, pelican_max: int, s3_full_max: int) -> Result:
    result = Result(size)
    root = work / f"outlet-{size}"
    root.mkdir(parents=True)
    write_keypair(root / "keys" / "outlet")
    with contextlib.ExitStack() as stack:
        logs = root / "moto"
        logs.mkdir()
        endpoint = stack.enter_context(moto_server(logs))
        moto_log = logs / "moto_server.log"
        admin = s3_client(endpoint)
        stack.callback(admin.close)
        suffix = os.urandom(4).hex()
        buckets = {name: public_bucket(admin, f"bench-{name}-{suffix}") for name in BUCKETS}
        raw = raw_config(endpoint, buckets)
        (root / "config.json").write_text(json.dumps(raw), encoding="utf-8")
        config = from_dict(raw, root / "mirrorkit.toml")

        with Store(config.state_dir) as store:
            start = time.perf_counter()
            add_stories(store, 0, size)
            log(f"{size}: {size} articles stored in {time.perf_counter() - start:.1f} s")

            start = time.perf_counter()
            bundle, stats = build_with_stats(config, store, full=True)
            result.build_s = time.perf_counter() - start
            result.build_rendered = stats.rendered
            result.build_files = stats.changed
            log(f"{size}: full build {result.build_s:.1f} s ({stats.rendered} rendered)")

            if size <= pelican_max:
                result.pelican_s = pelican_build(work, store, size)
                log(f"{size}: Pelican {result.pelican_s:.1f} s")

            start = time.perf_counter()
            full_s3 = size <= s3_full_max
            outcomes = run_publish(config, store, () if full_s3 else [LOCAL], bundle=bundle)
            result.first_publish_s = time.perf_counter() - start
            for outcome in outcomes:
                if outcome.published is None:
                    raise RuntimeError(f"first publish to {outcome.mirror}: {outcome.error}")
            result.first_publish_objects = sum(
                o.published.uploaded for o in outcomes if o.published is not None)
            if not full_s3:
                result.seeded = seed_roots(admin, buckets, bundle)
            log(f"{size}: first publish {result.first_publish_s:.1f} s")

        result.plus = run_sync(root, moto_log, buckets, ADDED)
        log(f"{size}: +{ADDED} sync {result.plus.seconds:.2f} s")
        result.noop = run_sync(root, moto_log, buckets, 0)
        log(f"{size}: no-op sync {result.noop.seconds:.2f} s")

    (result.verify_s, result.sha256sum_s, result.verify_files,
     result.verify_bytes) = bench_verify(config, root)
    log(f"{size}: verify {result.verify_s:.2f} s")
    mirror = config.mirror(LOCAL).path
    assert mirror is not None
    result.site_files, result.site_bytes = tree_size(mirror)
    result.state_bytes = tree_size(config.state_dir)[1]
    result.state_disk = disk_usage(config.state_dir)
    shutil.rmtree(root, ignore_errors=True)
    return result


# -- the tables ----------------------------------------------------------------------------

def met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def per_mirror(values: dict[str, Any], names: Sequence[str] = (LOCAL, *BUCKETS)) -> str:
    return ", ".join(f"{n} {values[n]}" for n in names if n in values)


def pelican_figure(result: Result, results: Sequence[Result]) -> tuple[float | None, str]:
    """Pelican's ms per page at this size, or at the largest size it ran (and says so)."""
    if result.pelican_s is not None:
        return result.pelican_s * 1000 / result.size, f"{result.size:,} articles"
    ran = [r for r in results if r.pelican_s is not None]
    if not ran:
        return None, "not run"
    largest = max(ran, key=lambda r: r.size)
    assert largest.pelican_s is not None
    return (largest.pelican_s * 1000 / largest.size,
            f"not run at this size (capped at {largest.size:,}); ms/page measured "
            f"at {largest.size:,} articles")


def table(result: Result, results: Sequence[Result]) -> list[str]:
    plus, noop = result.plus, result.noop
    assert plus is not None and noop is not None
    largest = result.size == max(r.size for r in results)
    smallest = min(results, key=lambda r: r.size)
    rows: list[tuple[str, str, str, str]] = []

    ms = result.ms_per_page
    rows.append(("full build (ms per article)",
                 f"{ms:.3f} ms/page: {result.size:,} articles in {result.build_s:.2f} s "
                 f"({result.build_rendered:,} pages, feeds and sitemaps rendered, "
                 f"{result.build_files:,} files)",
                 f"≤ {GOAL_MS_PER_PAGE} ms/page", met(ms <= GOAL_MS_PER_PAGE)))
    pel_ms, where = pelican_figure(result, results)
    if pel_ms is None:
        rows.append(("Pelican full build", "not run", f"≥ {GOAL_PELICAN_RATIO:.0f}x slower",
                     "-"))
    else:
        ratio = pel_ms / ms
        secs = f" in {result.pelican_s:.1f} s" if result.pelican_s is not None else ""
        rows.append(("Pelican 4 full build, same articles as Markdown",
                     f"{pel_ms:.3f} ms/page ({where}{secs}); Pelican / mirrorkit = "
                     f"{ratio:.1f}x", f"≥ {GOAL_PELICAN_RATIO:.0f}x",
                     met(ratio >= GOAL_PELICAN_RATIO)))
    if result.seeded:
        rows.append(("first publish (context)",
                     f"local mirror: {result.first_publish_s:.1f} s, "
                     f"{result.first_publish_objects:,} files; S3 mirrors seeded with the "
                     f"signed root, signature and parts only ({result.seeded:,} objects in "
                     f"all), not the whole site: see bench/README.md", "", "-"))
    else:
        rows.append(("first publish, 3 mirrors in parallel (context)",
                     f"{result.first_publish_s:.1f} s, {result.first_publish_objects:,} "
                     "objects written in all", "", "-"))

    b = plus.built
    flat = plus.seconds / smallest.plus.seconds if smallest.plus else 1.0
    flat_goal = f"within {GOAL_FLAT:.0f}x of {smallest.size:,} articles"
    rows.append((f"+{ADDED} sync: wall time (build + publish + check)",
                 f"{plus.seconds:.2f} s ({flat:.2f}x the {smallest.size:,}-article figure)",
                 flat_goal, met(flat <= GOAL_FLAT)))
    build_flat = b["seconds"] / smallest.plus.built["seconds"] if smallest.plus else 1.0
    rows.append((f"+{ADDED} sync: build alone",
                 f"{b['seconds']:.3f} s ({build_flat:.2f}x the {smallest.size:,}-article "
                 "figure)", f"< {GOAL_BUILD_S:.0f} s at 100k; {flat_goal}",
                 met(b["seconds"] < GOAL_BUILD_S and build_flat <= GOAL_FLAT)))
    rows.append((f"+{ADDED} sync: pages rendered / files written",
                 f"{b['rendered']} rendered, {b['changed']} files changed, {b['parts']} "
                 "manifest parts re-encoded (3 mirrors)", "grows with the news", "-"))
    rows.append((f"+{ADDED} sync: objects uploaded per mirror",
                 per_mirror({n: m["uploaded"] for n, m in plus.mirrors.items()}),
                 "grows with the news", "-"))
    rows.append((f"+{ADDED} sync: requests per S3 mirror, at moto_server",
                 ", ".join(f"{n} {plus.publish_requests[n]} publish + "
                           f"{plus.check_requests[n]} check" for n in BUCKETS),
                 "grows with the news", "-"))
    rows.append((f"+{ADDED} sync: manifest parts uploaded per mirror",
                 per_mirror({n: f"{m['parts']} parts, {m['part_bytes'] / 1024:.1f} KiB"
                             for n, m in plus.mirrors.items()}), "", "-"))
    rows.append((f"+{ADDED} sync: peak RSS of the sync process",
                 f"{plus.rss_mib:.0f} MiB", f"< {GOAL_RSS_MB} MB",
                 met(plus.rss_mib * 1.048576 < GOAL_RSS_MB)))
    root_goal = f"< {GOAL_ROOT_GZIP // 1024} KiB gzip at 100k"
    rows.append(("signed root manifest.json",
                 f"{plus.root:,} B raw, {plus.root_gzip:,} B gzip "
                 f"({plus.root_gzip / 1024:.1f} KiB)", root_goal,
                 met(plus.root_gzip < GOAL_ROOT_GZIP)))
    worst_pub = max(noop.publish_requests.values())
    worst_all = max(noop.publish_requests[n] + noop.check_requests[n] for n in BUCKETS)
    rows.append(("no-op sync: requests per S3 mirror, at moto_server",
                 ", ".join(f"{n} {noop.publish_requests[n]} publish + "
                           f"{noop.check_requests[n]} check" for n in BUCKETS)
                 + f" ({noop.seconds:.2f} s; built: {'yes' if noop.built else 'no'})",
                 f"≤ {GOAL_NOOP_PUBLISH} publish, ≤ {GOAL_NOOP_TOTAL} with the check",
                 met(worst_pub <= GOAL_NOOP_PUBLISH and worst_all <= GOAL_NOOP_TOTAL)))
    if result.sha256sum_s is None:
        rows.append(("verify the local mirror", f"{result.verify_s:.2f} s; sha256sum or "
                     "minisign missing", "", "-"))
    else:
        ratio = result.sha256sum_s / result.verify_s
        rows.append(("verify the local mirror vs sha256sum -c + minisign -Vm",
                     f"{result.verify_s:.2f} s vs {result.sha256sum_s:.2f} s = {ratio:.2f}x "
                     f"({result.verify_files:,} files, {result.verify_bytes / 1e6:.0f} MB)",
                     f"≥ {GOAL_VERIFY_RATIO:.0f}x (largest size)",
                     met(ratio >= GOAL_VERIFY_RATIO) if largest else "-"))
    rows.append(("state directory vs one site",
                 f"{result.state_bytes / 1e6:.0f} MB ({result.state_disk / 1e6:.0f} MB on "
                 f"disk) vs {result.site_bytes / 1e6:.0f} MB in {result.site_files:,} files "
                 f"= {result.state_bytes / result.site_bytes:.2f}x", "", "-"))

    lines = [f"### {result.size:,} articles", "",
             "| measure | figure | goal | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b_} | {c} | {d} |" for a, b_, c, d in rows]
    return lines


def summary(results: Sequence[Result]) -> list[str]:
    lines = ["### across sizes", "",
             "| articles | full build ms/page | +10 sync s | +10 build s | +10 rendered "
             "| +10 uploaded (s3-a) | peak RSS MiB | no-op requests (s3-a) | root gzip KiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        assert r.plus is not None and r.noop is not None
        lines.append(
            f"| {r.size:,} | {r.ms_per_page:.3f} | {r.plus.seconds:.2f} | "
            f"{r.plus.built['seconds']:.3f} | {r.plus.built['rendered']} | "
            f"{r.plus.mirrors[S3_A]['uploaded']} | {r.plus.rss_mib:.0f} | "
            f"{r.noop.publish_requests[S3_A]} + {r.noop.check_requests[S3_A]} | "
            f"{r.plus.root_gzip / 1024:.1f} |")
    return lines


# -- entry point ---------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {QUICK_SIZES}, Pelican only at {QUICK_PELICAN_MAX:,}")
    parser.add_argument("--sizes", help="comma-separated article counts")
    parser.add_argument("--pelican-max", type=int,
                        help=f"largest size Pelican runs at (default {PELICAN_MAX:,}; "
                             f"{QUICK_PELICAN_MAX:,} with --quick)")
    parser.add_argument("--s3-full-max", type=int, default=S3_FULL_MAX,
                        help="largest size whose S3 mirrors get a whole first publish "
                             f"(default {S3_FULL_MAX:,}); above it they are seeded with the "
                             "signed root, signature and parts only")
    parser.add_argument("--child-sync", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--moto-log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--add", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_sync:
        print(json.dumps(child_sync(args.child_sync, args.moto_log, args.add)))
        return 0

    if args.sizes:
        sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(","))
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    pelican_max = args.pelican_max if args.pelican_max is not None else (
        QUICK_PELICAN_MAX if args.quick else PELICAN_MAX)
    began = time.perf_counter()
    results: list[Result] = []
    with tempdir() as work:
        for size in sorted(sizes):
            results.append(measure(size, work, pelican_max, args.s3_full_max))

    print(f"mirrorkit at scale: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}, load "
          f"average {os.getloadavg()[0]:.1f} at the end; sizes "
          f"{', '.join(f'{s:,}' for s in sorted(sizes))}; Pelican up to {pelican_max:,}")
    print()
    for result in results:
        print("\n".join(table(result, results)))
        print()
    print("\n".join(summary(results)))
    print()
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return 0


@contextlib.contextmanager
def tempdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mirrorkit-scale-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
