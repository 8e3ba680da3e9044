"""Cost follows the news (DESIGN invariant 9), shown end to end against real servers.

Requests are counted at the moto server, from its own request log; pages are read back
anonymously over HTTP, as readers get them.  The large-archive figures are in
``bench/scale.py``; these tests show the properties at a size the suite can afford.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import lxml.html
import pytest

from conftest import MotoServer
from mirrorkit.build.render import article_path
from mirrorkit.config import load
from mirrorkit.manifest import MANIFEST_NAME
from mirrorkit.models import Article, article_id
from mirrorkit.pipeline import run_build, run_publish
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from mirrorkit.store import Store
from test_pipeline import http_get, run, write_config


@pytest.fixture
def outlet() -> SampleOutlet:
    with SampleOutlet() as running:
        yield running


def cache_control(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.headers["Cache-Control"])


def test_a_sync_with_nothing_new_costs_a_few_requests_per_mirror(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    buckets = [moto_server.new_bucket(), moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    assert run(config, "sync").exit_code == 0
    before = {b: len(moto_server.requests(b)) for b in buckets}

    result = run(config, "sync")
    assert result.exit_code == 0, result.output
    for bucket in buckets:
        made = moto_server.requests(bucket)[before[bucket]:]
        # Publish: the live root (the same bytes as ours) and its signature.  Check: the
        # root and the signature kept by its hash.  No listing, upload or other read.
        names = sorted(r.split(" ")[1].split("/", 2)[2] for r in made)
        assert names[:3] == ["manifest.json", "manifest.json", "manifest.json.minisig"], made
        assert len(names) == 4 and names[3].startswith("signatures/"), made
        assert all(r.startswith("GET ") for r in made), made


def test_a_new_article_costs_what_it_changed_not_the_archive(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    # moto, like MinIO, honours conditional PUTs: the commits need no look first.
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket], provider="minio")
    assert run(config, "sync").exit_code == 0
    first = len(moto_server.requests(bucket))
    outlet.state.add_article("late-news", "Late news from the harbour",
                             ["The harbour reopened at dawn."])

    result = run(config, "sync")
    assert result.exit_code == 0, result.output
    made = moto_server.requests(bucket)[first:]
    puts = [r.split(" ")[1].split("/", 2)[2] for r in made if r.startswith("PUT ")]
    pages = sorted(p for p in puts if p.startswith("articles/"))
    # Its page, and the same page at the outlet's own path (for a host-swapped link).
    assert len(pages) == 2 and pages[1] == "articles/late-news.html", pages
    assert "late-news" in pages[0]
    assert len(puts) <= 17, puts  # pages, archive, home, feeds, sitemap, parts, signature, root
    assert not any("list-type" in r for r in made), made  # planned from the signed root
    # Reads: the live root and its signature, the root again before deleting; the check:
    # root, signature, what was sent (not the signatures, read as the root's).
    sent = [p for p in puts if not p.startswith(("manifest.json", "signatures/"))]
    assert len(made) - len(puts) == 3 + 2 + len(sent), [r for r in made if "PUT" not in r]


def test_an_article_changed_at_the_origin_is_changed_on_every_mirror_soon(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    buckets = [moto_server.new_bucket(), moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    assert run(config, "sync").exit_code == 0
    story = outlet.articles[0]
    outlet.state.update_article(story.slug, title="Corrected: the vote was postponed")

    result = run(config, "sync")
    assert result.exit_code == 0, result.output
    path = next(p for p in _article_pages(moto_server, buckets[0]) if story.slug in p)
    for bucket in buckets:
        url = f"{moto_server.endpoint}/{bucket}/{path}"
        assert b"Corrected: the vote was postponed" in http_get(url)
        # Corrections reach readers within the hour, not a year later.
        assert cache_control(url) == "public, max-age=3600"
        home = f"{moto_server.endpoint}/{bucket}/index.html"
        assert cache_control(home) == "public, max-age=300"
        css = re.search(rb'href="(style\.[0-9a-f]{16}\.css)"', http_get(home))
        assert css is not None
        assert "immutable" in cache_control(f"{moto_server.endpoint}/{bucket}/"
                                            + css.group(1).decode())


def test_a_config_change_shows_on_the_mirrors_at_the_next_sync(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    assert run(config, "sync").exit_code == 0
    config.write_text(config.read_text().replace("The Sample Courier", "The Courier Reborn"))

    result = run(config, "sync")  # nothing new at the origin
    assert result.exit_code == 0, result.output
    base = f"{moto_server.endpoint}/{bucket}/"
    path = _article_pages(moto_server, bucket)[0]
    assert b"The Courier Reborn" in http_get(base + path)
    assert b"The Courier Reborn" in http_get(base + "rss.xml")


def _article_pages(moto: MotoServer, bucket: str) -> list[str]:
    listed = moto.client().list_objects_v2(Bucket=bucket, Prefix="articles/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_every_article_of_a_1000_article_mirror_is_a_few_clicks_from_home(
        tmp_path: Path) -> None:
    write_keypair(tmp_path / "keys" / "outlet")
    (tmp_path / "mirrorkit.toml").write_text("""
[outlet]
id = "big"
name = "Big Outlet"
origin = "https://big.example/"
[signing]
secret_key = "keys/outlet.key"
public_key = "keys/outlet.pub"
[[mirrors]]
name = "disk"
type = "local"
path = "mirror"
public_url = "http://127.0.0.1:9/"
""")
    config = load(tmp_path / "mirrorkit.toml")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with Store(config.state_dir) as store:
        for n in range(1000):
            url = f"https://big.example/story/{n}"
            store.save_article(Article(
                id=article_id(url), url=url, source="feed", title=f"Story number {n}",
                authors=(), published=start + timedelta(hours=n * 7 % 1000), updated=None,
                language="en", text=f"Body {n}", html=f"<p>Body {n}</p>"))
        bundle = run_build(config, store)
        assert all(o.ok for o in run_publish(config, store, bundle=bundle))
        wanted = {article_path(a) for a in store.iter_articles()}

    root = tmp_path / "mirror"
    depth = _crawl(root)
    reached = {p for p in depth if p.startswith("articles/")}
    assert reached == wanted
    assert max(depth[p] for p in reached) <= 3  # home -> archive -> page -> article

    # The signed root stays small: it names parts, and the parts name the files.
    manifest = (root / MANIFEST_NAME).read_bytes()
    assert len(gzip.compress(manifest)) < 4096 and b"articles/" not in manifest
    # README's recipe checks every file with standard tools (minisign, jq, sha256sum).
    recipe = _readme_recipe()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KEY": str(tmp_path / "keys" / "outlet.pub")})
    assert done.returncode == 0 and "every file is as signed" in done.stdout, done.stderr
    page = root / sorted(wanted)[500]
    page.write_bytes(page.read_bytes().replace(b"Body", b"B0dy"))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KEY": str(tmp_path / "keys" / "outlet.pub")})
    assert done.returncode != 0 and sorted(wanted)[500] in done.stdout + done.stderr


def _readme_recipe() -> str:
    """The shell lines README gives for checking a copy with standard tools."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("cd copy\n", 1)[1].split("```", 1)[0]
    return block.replace("-p outlet.pub", '-p "$KEY"')


def _crawl(root: Path) -> dict[str, int]:
    """Clicks from index.html to every page reachable by relative links in ``root``."""
    depth = {"index.html": 0}
    queue = deque(["index.html"])
    base = "http://site.invalid/"
    while queue:
        page = queue.popleft()
        doc = lxml.html.document_fromstring((root / page).read_bytes())
        for href in doc.xpath("//a/@href"):
            url = urljoin(base + page, href)
            if not url.startswith(base):
                continue  # the origin and other mirrors
            target = urlsplit(url).path.lstrip("/")
            if target.endswith(".html") and target not in depth:
                assert (root / target).is_file(), f"{page} links to missing {target}"
                depth[target] = depth[page] + 1
                queue.append(target)
    return depth
