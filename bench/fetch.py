"""The fetch stage on a slow origin, beside the network's ideal and wget2.

    python bench/fetch.py [--articles 1000] [--latency 0.05] [--per-host 8]

The sample outlet (``python -m mirrorkit.sample``, its own process) serves ``--articles``
articles (its 30 plus fillers, each with one of its pictures), every response after
``--latency`` seconds.  Rows:

- **mirrorkit**: one ``fetch`` of the outlet's sitemap into a fresh store, ``per_host``
  and ``concurrency`` = ``--per-host``: the sitemap, every page, every distinct image;
  pages extracted, sanitized and stored, images re-encoded.  Wall time.  Once as
  configured (extraction in a process pool past ``POOL_AFTER`` articles) and once with
  extraction in threads only, into another fresh store.
- **network ideal**: requests x latency / per_host, the time the origin alone imposes.
- **wget2**: ``wget2 --max-threads=N`` over the same URLs (pages and images, from the
  URLs mirrorkit requested), download only: no extraction, no store.
- **extraction CPU / cores**: ``extract_page`` on the same pages in this process (CPU
  time), divided by the cores; the goal is mirrorkit within 1.3x of the larger of that
  and the network ideal.
- **re-run with nothing new**: the requests a second fetch makes (counted in mirrorkit's
  HTTP client): one per source is the goal, none per article.

Needs ``wget2`` (``apt-get install -y wget2``); without it the wget2 row says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mirrorkit import extract
from mirrorkit import fetch as fetch_module
from mirrorkit.config import from_dict
from mirrorkit.fetch import fetch
from mirrorkit.store import Store


class Counter:
    """Counts the responses mirrorkit's HTTP client handles, and their URLs."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._original = fetch_module._Client._handle

    def __enter__(self) -> Counter:
        original = self._original
        urls = self.urls

        async def handle(client: Any, url: str, *args: Any) -> Any:
            urls.append(url)
            return await original(client, url, *args)

        fetch_module._Client._handle = handle  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        fetch_module._Client._handle = self._original  # type: ignore[method-assign]


@contextmanager
def sample_outlet(articles: int, latency: float) -> Iterator[str]:
    """The sample outlet in its own process with ``articles`` articles; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mirrorkit.sample", "--port", "0", "--latency", str(latency),
         "--extra", str(max(0, articles - 30))], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[3]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--per-host", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mirrorkit-fetch-bench-"))
    with sample_outlet(args.articles, args.latency) as base:
        config = from_dict({
            "outlet": {"id": "bench", "name": "Bench", "origin": base},
            "signing": {"secret_key": "k.key", "public_key": "k.pub"},
            "fetch": {"allow_private_addresses": True, "per_host": args.per_host,
                      "concurrency": args.per_host,
                      "max_articles_per_source": args.articles},
            "sources": [{"type": "sitemap", "url": base + "sitemap.xml"}],
        }, work / "mirrorkit.toml")
        # Threads only first (no pool is started below POOL_AFTER articles), then as
        # configured: extraction in a process pool.
        pool_after = fetch_module.POOL_AFTER
        fetch_module.POOL_AFTER = sys.maxsize
        with Store(work / "threads") as store:
            started = time.perf_counter()
            fetch(config, store)
            threads_only = time.perf_counter() - started
        fetch_module.POOL_AFTER = pool_after
        with Store(work / "state") as store:
            with Counter() as first:
                started = time.perf_counter()
                report = fetch(config, store)
                ours = time.perf_counter() - started
            with Counter() as again:
                rerun = fetch(config, store)
            saved = len(store.articles())
        requests = len(first.urls)
        ideal = requests * args.latency / args.per_host

        downloaded = work / "wget2"
        theirs: float | None = None
        wget2 = shutil.which("wget2")
        if wget2:
            (work / "urls.txt").write_text("\n".join(first.urls) + "\n")
            started = time.perf_counter()
            subprocess.run([wget2, "--no-config", "--quiet", "--no-robots", "--tries=1",
                            f"--max-threads={args.per_host}", "--input-file",
                            str(work / "urls.txt"), "--directory-prefix", str(downloaded),
                            "--no-host-directories", "--force-directories"], check=False)
            theirs = time.perf_counter() - started

    pages = sorted(downloaded.glob("articles/*.html")) if downloaded.exists() else []
    cpu_start = time.process_time()
    for page in pages:
        extract.extract_page(page.read_bytes(), base + "articles/" + page.name)
    cpu = time.process_time() - cpu_start
    cores = os.cpu_count() or 1
    # Pages not downloaded by wget2 are scaled in from those that were.
    cpu_all = cpu * (saved / len(pages)) if pages else 0.0
    bound = max(ideal, cpu_all / cores)
    shutil.rmtree(work, ignore_errors=True)

    print(f"### fetch, {args.articles} articles, {args.latency * 1000:.0f} ms per response,"
          f" per_host {args.per_host}, {cores} cores, load average"
          f" {os.getloadavg()[0]:.1f} at the end\n")
    print("| work | seconds | mirrorkit / this | counts |")
    print("|---|---|---|---|")
    print(f"| mirrorkit fetch (extraction in a process pool) | {ours:.2f} | 1.00 |"
          f" {requests} requests, {saved} articles saved,"
          f" {report.sources[0].failed_articles} failed |")
    print(f"| mirrorkit fetch, extraction in threads only | {threads_only:.2f} |"
          f" {ours / threads_only:.2f} | |")
    print(f"| network ideal (requests x latency / {args.per_host}) | {ideal:.2f} |"
          f" {ours / ideal:.2f} | |")
    if theirs is not None:
        print(f"| wget2 --max-threads={args.per_host}, same URLs, download only |"
              f" {theirs:.2f} | {ours / theirs:.2f} | {len(pages)} pages on disk |")
    else:
        print("| wget2 | - | - | not installed (apt-get install -y wget2) |")
    print(f"| extraction CPU / {cores} cores | {cpu_all / cores:.2f} |"
          f" {ours / (cpu_all / cores) if cpu_all else 0:.2f} |"
          f" {cpu_all:.2f} s CPU for {saved} pages |")
    verdict = "met" if ours <= 1.3 * bound else "missed"
    print(f"\ngoal: mirrorkit within 1.3x of max(network ideal, extraction CPU / cores) ="
          f" {bound:.2f} s -> {ours / bound:.2f}x ({verdict})")
    per_article = len([u for u in again.urls if "/articles/" in u])
    print(f"re-run with nothing new: {len(again.urls)} request(s) ({per_article} per article);"
          f" {rerun.new} new, {rerun.changed} changed")


if __name__ == "__main__":
    main()
