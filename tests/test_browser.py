"""What a reader sees, in a real headless browser (Debian's chromium driven by Playwright),
with JavaScript off: every page of a published mirror, opened from an S3 REST endpoint
(which serves no index documents) and from ``file://`` (an offline copy).

Invariant 3: the site works from any base — every internal link is relative and names a
file.  Invariant 4: a page loads nothing from any other host, and reading needs no
JavaScript.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urlsplit
from urllib.request import url2pathname

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from conftest import MotoServer
from mirrorkit.config import from_dict
from mirrorkit.pipeline import sync
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from mirrorkit.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is required (apt-get install chromium)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> dict[str, str]:
    """The sample outlet synced to a local mirror and to an S3 bucket (under a prefix)."""
    root = tmp_path_factory.mktemp("site")
    write_keypair(root / "outlet")
    bucket = moto_server.new_bucket()
    s3_url = f"{moto_server.endpoint}/{bucket}/news/"
    with SampleOutlet() as outlet:
        config = from_dict({
            "outlet": {"id": "sample", "name": "Sample", "origin": "https://sample.example/"},
            "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
            "fetch": {"allow_private_addresses": True},
            "sources": [{"url": outlet.feed_url}],
            "mirrors": [
                {"name": "offline", "type": "local", "path": "offline",
                 "public_url": "http://127.0.0.1:9/"},
                {"name": "s3", "type": "s3", "bucket": bucket, "prefix": "news",
                 "endpoint_url": moto_server.endpoint, "access_key_id": "testing",
                 "secret_access_key": "testing", "public_url": s3_url},
            ],
        }, root / "mirrorkit.toml")
        with Store(config.state_dir) as store:
            assert sync(config, store).exit_code == 0
    return {"file": (root / "offline").as_uri() + "/", "s3": s3_url}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _exists(context: BrowserContext, url: str) -> bool:
    if url.startswith("file:"):
        return Path(url2pathname(urlsplit(url).path)).is_file()
    return context.request.get(url).status == 200


def read_page(page: Page, url: str, base: str) -> tuple[list[str], list[str]]:
    """Open ``url``; return the links on it and every problem a reader would meet."""
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    response = page.goto(url)
    problems = [f"{url}: failed to load {u}" for u in failed]
    if response is not None and response.status >= 400:
        problems.append(f"{url}: HTTP {response.status}")
    problems += [f"{url}: loads from another host: {u}" for u in requested
                 if not u.startswith(base)]
    broken = page.locator("img").evaluate_all(
        "els => els.filter(e => !e.complete || e.naturalWidth === 0).map(e => e.src)")
    problems += [f"{url}: image not shown: {u}" for u in broken]
    scripts = page.locator("script, iframe, object, embed").count()
    if scripts:
        problems.append(f"{url}: {scripts} script/frame elements")
    raw = page.locator("a[href], link[href]").evaluate_all(
        "els => els.map(e => [e.getAttribute('href'), e.href, !!e.closest('ul.mirrors')])")
    links = []
    for attr, resolved, in_mirror_list in raw:
        target = urldefrag(resolved).url
        if in_mirror_list or _origin(target) != _origin(base):
            continue  # the original, or a mirror's public URL: a link, not a load
        if not target.startswith(base):
            problems.append(f"{url}: link leaves the site: {attr}")
            continue
        if "://" in attr or attr.startswith("/"):
            problems.append(f"{url}: internal link is not relative: {attr}")
        if target.endswith("/"):
            problems.append(f"{url}: link names a directory, not a file: {attr}")
        links.append(target)
    return links, problems


@pytest.mark.parametrize("where", ["s3", "file"])
def test_every_page_reads_from_any_base_with_nothing_from_other_hosts(
    mirrors: dict[str, str], browser: Browser, where: str
) -> None:
    base = mirrors[where]
    context = browser.new_context(java_script_enabled=False)
    seen: set[str] = set()
    queue = [base + "index.html"]
    problems: list[str] = []
    pages = 0
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        if not url.endswith(".html"):
            if not _exists(context, url):  # feeds, manifest, mirrors.json: must be there
                problems.append(f"link to a missing file: {url}")
            continue
        page = context.new_page()
        links, found = read_page(page, url, base)
        page.close()
        pages += 1
        problems += found
        queue += [link for link in links if link not in seen]
    context.close()
    assert problems == []
    # home, mirrors page, the archive index and its one page, and every article of the
    # sample outlet, all reached by links
    assert pages == 4 + 30
    assert base + "rss.xml" in seen
    assert base + "manifest.json" in seen


def test_article_text_and_images_show_without_javascript(
    mirrors: dict[str, str], browser: Browser
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(mirrors["s3"] + "index.html")
    with page.expect_navigation(wait_until="load"):
        # "load" waits for the images too: a click returns once the navigation starts
        page.get_by_role("link", name="Forecasters warn of heavy rain").first.click()
    assert page.url.endswith("/index.html")
    heading = page.locator("h1").inner_text()
    assert "heavy rain" in heading
    image = page.locator("article img").first
    assert image.evaluate("e => e.naturalWidth") == 320
    assert page.locator("article p").count() >= 3
    context.close()
