"""What the state in object storage costs per run, at 1,000 to 100,000 articles.

    python bench/state.py                    # 1k, 10k and 100k articles (many minutes)
    python bench/state.py --sizes 1000,10000

For each size, a synthetic outlet (bench/scale.py's generator) is written into a fresh
store and fully built, then the state goes through mirrorkit.state as runs do:

- **first push**: the state dir moves into object storage (every blob, the database
  as a base, the signed roots);
- **+10 run**: 10 new articles (and their images), an incremental build, the push;
- **no-op run**: a build-free run that changes nothing but the run's own bookkeeping;
- **fresh runner**: what a runner with an empty disk brings down before it can work.

The bucket is an in-memory stand-in that counts objects and bytes (what is measured is
what mirrorkit sends and reads, not a server's speed), so the sizes run in minutes.
Beside the page deltas, the table shows what a whole gzipped snapshot of the database
would send each run.  One markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrorkit.build import build_with_stats
from mirrorkit.config import Config, from_dict
from mirrorkit.errors import PublishConflictError
from mirrorkit.publish.base import Backend, ObjectInfo, md5_hex
from mirrorkit.sign import write_keypair
from mirrorkit.state import DB_NAME, RemoteState
from mirrorkit.store import Store
from scale import add_stories, raw_config

SIZES = (1_000, 10_000, 100_000)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Counts:
    puts: int = 0
    put_bytes: int = 0
    gets: int = 0
    get_bytes: int = 0
    up_by_kind: dict[str, int] = field(default_factory=dict)  # blobs, db, roots, ...

    def up(self) -> str:
        return ", ".join(f"{kind} {mb(n)}" for kind, n in sorted(self.up_by_kind.items()))


class MemoryBucket(Backend):
    """Objects in memory with S3's conditional writes, counting traffic by kind."""

    name = "state"
    capabilities = frozenset({"conditional_write", "delete", "list"})

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.counts = Counts()
        self._lock = threading.Lock()

    def put(self, path: str, data: bytes, media_type: str, *, cache: str,
            if_match: str | None = None, if_absent: bool = False) -> str:
        with self._lock:
            held = self.objects.get(path)
            if (if_absent and held is not None) or (
                    if_match is not None and (held is None or md5_hex(held) != if_match)):
                raise PublishConflictError("condition failed", where=path)
            self.objects[path] = data
            self.counts.puts += 1
            self.counts.put_bytes += len(data)
            kind = path.split("/")[0] if "/" in path else "lease and state.json"
            self.counts.up_by_kind[kind] = self.counts.up_by_kind.get(kind, 0) + len(data)
        return md5_hex(data)

    def get(self, path: str, *, limit: int | None = None) -> bytes | None:
        with self._lock:
            data = self.objects.get(path)
            self.counts.gets += 1
            self.counts.get_bytes += len(data or b"")
        return data

    def tag(self, path: str) -> str | None:
        data = self.objects.get(path)
        return md5_hex(data) if data is not None else None

    def head(self, path: str) -> ObjectInfo | None:
        data = self.objects.get(path)
        return ObjectInfo(path, len(data)) if data is not None else None

    def list(self) -> Iterator[ObjectInfo]:
        yield from (ObjectInfo(k, len(v)) for k, v in sorted(self.objects.items()))

    def delete(self, paths: Sequence[str]) -> None:
        with self._lock:
            for path in paths:
                self.objects.pop(path, None)

    def take(self) -> Counts:
        counts, self.counts = self.counts, Counts()
        return counts


@dataclass
class Run:
    seconds: float
    counts: Counts


@dataclass
class Result:
    size: int
    db_bytes: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    snapshot_bytes: int = 0
    bucket_bytes: int = 0
    runs: dict[str, Run] = field(default_factory=dict)


def config_for(root: Path) -> Config:
    raw: dict[str, Any] = raw_config("http://127.0.0.1:9", {"s3-a": "bench-a", "s3-b": "bench-b"})
    raw["state"] = {"dir": "state", "url": "s3://bench-state/outlet", "provider": "minio"}
    return from_dict(raw, root / "mirrorkit.toml")


def one_run(config: Config, bucket: MemoryBucket, work: Any = None) -> Run:
    """A run as open_store does one: lease, pull, work, push, release."""
    bucket.take()
    start = time.perf_counter()
    remote = RemoteState(config)
    remote.backend.close()
    remote.backend = bucket
    remote.acquire()
    try:
        remote.pull()
        with Store(config.state_dir, exclusive=True) as store:
            store.remote = remote
            if work is not None:
                work(store)
        remote.push(store.stored_blobs | store.dropped_blobs)
    finally:
        remote.release()
    return Run(time.perf_counter() - start, bucket.take())


def measure(size: int, work: Path) -> Result:
    result = Result(size)
    root = work / f"outlet-{size}"
    root.mkdir(parents=True)
    write_keypair(root / "keys" / "outlet")
    config = config_for(root)
    bucket = MemoryBucket()

    def fill(store: Store) -> None:
        add_stories(store, 0, size)
        build_with_stats(config, store, full=True)

    result.runs["first push (the whole state moves in)"] = one_run(config, bucket, fill)
    log(f"{size}: filled and pushed")

    def add10(store: Store) -> None:
        add_stories(store, size, 10)
        build_with_stats(config, store)

    result.runs["+10 run (10 new articles, incremental build)"] = one_run(config, bucket, add10)
    result.runs["no-op run"] = one_run(config, bucket)
    db = config.state_dir / DB_NAME
    result.db_bytes = db.stat().st_size
    result.snapshot_bytes = len(gzip.compress(db.read_bytes(), compresslevel=3))
    blobs = [p for p in (config.state_dir / "blobs").rglob("*") if p.is_file()]
    result.blobs, result.blob_bytes = len(blobs), sum(p.stat().st_size for p in blobs)
    log(f"{size}: +10 and no-op runs")

    shutil.rmtree(config.state_dir)  # a runner with an empty disk
    result.runs["fresh runner (empty disk), no-op"] = one_run(config, bucket)
    result.bucket_bytes = sum(len(v) for v in bucket.objects.values())
    shutil.rmtree(root, ignore_errors=True)
    return result


def mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def table(result: Result) -> list[str]:
    lines = [f"### {result.size:,} articles", "",
             f"database {mb(result.db_bytes)} (whole, gzipped: {mb(result.snapshot_bytes)}); "
             f"{result.blobs:,} blobs, {mb(result.blob_bytes)}; state bucket after the runs "
             f"{mb(result.bucket_bytes)}", "",
             "| run | time | PUTs | bytes up | of which | GETs | bytes down |",
             "|---|---|---|---|---|---|---|"]
    for name, run in result.runs.items():
        c = run.counts
        lines.append(f"| {name} | {run.seconds:.2f} s | {c.puts:,} | {mb(c.put_bytes)} | "
                     f"{c.up()} | {c.gets:,} | {mb(c.get_bytes)} |")
    lines += ["", f"A whole gzipped snapshot instead of page deltas would send "
                  f"{mb(result.snapshot_bytes)} every run.", ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated article counts")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    with tempfile.TemporaryDirectory(prefix="mirrorkit-state-bench-") as tmp:
        for size in sizes:
            print("\n".join(table(measure(size, Path(tmp)))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
