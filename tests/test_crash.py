"""Invariant 7: a sync can be killed at any point (kill -9) and the next run completes the
work; no fetched article is lost and no mirror is left without its files.

Kills are driven by events, not by timers: the sync runs at ``-v`` and is killed right
after the Nth stderr line that marks a point of the pipeline (one line per uploaded file
during publish), or after the sample outlet has served the Nth article (during fetch).
After every kill, both mirrors — the directory and the S3 bucket — must still satisfy the
reader's invariant (DESIGN.md invariant 1) for whatever manifest is live on them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import MotoServer
from mirrorkit.errors import VerifyError
from mirrorkit.manifest import MANIFEST_NAME, Manifest
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from sites import entries_of


@pytest.fixture
def slow_outlet() -> Iterator[SampleOutlet]:
    # Latency keeps the fetch going long enough to be killed in the middle of it.
    with SampleOutlet(latency=0.03) as outlet:
        yield outlet


def config_for(root: Path, outlet: SampleOutlet, moto: MotoServer) -> tuple[Path, str]:
    """A config with a directory mirror "disk" and an S3 mirror "s3"; and the bucket."""
    write_keypair(root / "outlet")
    bucket = moto.new_bucket()
    path = root / "mirrorkit.toml"
    path.write_text(f"""
[outlet]
id = "crash"
name = "Crash"
origin = "https://crash.example/"
[signing]
secret_key = "outlet.key"
public_key = "outlet.pub"
[fetch]
allow_private_addresses = true
per_host = 2
[[sources]]
url = "{outlet.feed_url}"
[[mirrors]]
name = "disk"
type = "local"
path = "disk"
public_url = "http://127.0.0.1:9/"
[[mirrors]]
name = "s3"
type = "s3"
bucket = "{bucket}"
endpoint_url = "{moto.endpoint}"
access_key_id = "testing"
secret_access_key = "testing"
public_url = "{moto.endpoint}/{bucket}/"
""")
    return path, bucket


def mirrorkit(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(config.parent / "xdg")}
    return subprocess.Popen([sys.executable, "-m", "mirrorkit", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = mirrorkit(config, *args)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@dataclass(frozen=True)
class Rig:
    root: Path
    config: Path
    outlet: SampleOutlet
    moto: MotoServer
    bucket: str

    @property
    def disk(self) -> Path:
        return self.root / "disk"

    @property
    def s3_url(self) -> str:
        return f"{self.moto.endpoint}/{self.bucket}/"


@dataclass(frozen=True)
class KillPoint:
    """Kill right after the ``nth`` stderr line containing ``text`` — or, with ``served``,
    once the outlet has served ``nth`` requests under the path ``text`` in this run."""

    text: str
    nth: int = 1
    served: bool = False

    def __str__(self) -> str:
        return f"{'served ' if self.served else ''}{self.text!r} #{self.nth}"


def sync_killed_at(rig: Rig, point: KillPoint) -> None:
    """Run ``mirrorkit -v sync`` and SIGKILL it at ``point``, which it must reach alive."""
    served_before = len(rig.outlet.requests)
    proc = mirrorkit(rig.config, "-v", "sync")
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    count = 0
    deadline = time.monotonic() + 60
    try:
        while count < point.nth:
            if time.monotonic() > deadline:
                pytest.fail(f"kill point {point} not reached in 60 s:\n{''.join(seen)}")
            try:
                line = lines.get(timeout=0.002 if point.served else 1.0)
            except queue.Empty:
                line = ""
            if line is None:
                pytest.fail(f"sync exited ({proc.wait()}) before kill point {point}:\n"
                            + "".join(seen))
            seen.append(line)
            if point.served:
                count = sum(1 for r in rig.outlet.requests[served_before:]
                            if r.path.startswith(point.text))
            elif point.text in line:
                count += 1
        # Killed right here, with the sync still running: the kill is inside that stage.
        assert proc.poll() is None, f"sync ended before the kill at {point}"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == -signal.SIGKILL, f"{point}: exit {proc.returncode}"


# -- the reader's invariant, on each kind of mirror ----------------------------------------

def newest_bundle_sizes(rig: Rig, mirror: str) -> dict[str, int]:
    """Sizes in the newest build for ``mirror``: what a publish may be replacing in place."""
    state = rig.root / "state"
    builds = sorted((state / "builds").glob(f"*/{mirror}/{MANIFEST_NAME}"))

    def blob(path: str) -> bytes | None:
        sha = path.removeprefix("parts/").removesuffix(".json")
        target = state / "blobs" / sha[:2] / sha
        return target.read_bytes() if target.is_file() else None

    for path in reversed(builds):
        try:
            return {p: f.size for p, f in entries_of(path.read_bytes(), blob).items()}
        except (OSError, VerifyError, AssertionError):
            continue  # a build being written when the kill came
    return {}


def broken_files(live: bytes | None, sizes: dict[str, int], newer: dict[str, int],
                 read: Callable[[str], bytes | None]) -> list[str]:
    """Files the live manifest names that a reader would not find as listed.

    Every named file and part must exist.  Its size must be the listed one — except that
    mutable files being replaced in place may already be the next version's (the accepted
    window of publish/stage.py): front pages, whatever their size, and article pages with
    the newest build's.
    """
    if live is None:
        return []
    manifest = Manifest.from_bytes(live)
    broken = []
    parts = {p.path: p.size for p in manifest.parts}
    for path, listed in parts.items():
        if sizes.get(path) != listed:
            broken.append(f"{path}: part size {sizes.get(path)}, listed {listed}")
    if broken:
        return broken
    entries = entries_of(live, lambda p: read(p) if sizes.get(p) == parts.get(p) else None)
    for f in entries.values():
        size = sizes.get(f.path)
        if f.retired is not None:
            continue
        # A transition root also allows each replaced file its old content.
        allowed = {f.size} | {other for _, other in f.also}
        if size is None:
            broken.append(f"{f.path}: missing")
        elif size not in allowed and not (f.mutable and (
                size == newer.get(f.path) or not f.path.startswith("articles/"))):
            broken.append(f"{f.path}: size {size}, listed {f.size}")
    return broken


def disk_broken(rig: Rig) -> list[str]:
    root = rig.disk
    live = (root / MANIFEST_NAME).read_bytes() if (root / MANIFEST_NAME).exists() else None
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size
             for p in root.rglob("*") if p.is_file()} if root.exists() else {}
    return broken_files(live, sizes, newest_bundle_sizes(rig, "disk"),
                        lambda p: (root / p).read_bytes())


def s3_broken(rig: Rig) -> list[str]:
    client = rig.moto.client()
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=rig.bucket):
        sizes.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    live = (client.get_object(Bucket=rig.bucket, Key=MANIFEST_NAME)["Body"].read()
            if MANIFEST_NAME in sizes else None)
    return broken_files(
        live, sizes, newest_bundle_sizes(rig, "s3"),
        lambda p: client.get_object(Bucket=rig.bucket, Key=p)["Body"].read())


def kill_and_check(rig: Rig, point: KillPoint) -> None:
    sync_killed_at(rig, point)
    assert (disk_broken(rig), s3_broken(rig)) == ([], []), f"after a kill at {point}"


def sync_then_verify(rig: Rig) -> None:
    done = finish(rig.config, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    for target in (str(rig.disk), rig.s3_url):
        checked = finish(rig.config, "verify", target)
        assert checked.returncode == 0, target + checked.stdout + checked.stderr


# In run order: each kill leaves the next point still ahead (a first publish that did not
# commit uploads everything again, so the upload counts are reached in every run).
FIRST_SYNC = [
    KillPoint("/articles/", 3, served=True),    # early in the fetch
    KillPoint("/articles/", 10, served=True),   # later in the fetch, some articles stored
    KillPoint("feed "),                         # fetch done, nothing built
    KillPoint("building version"),              # during the build
    KillPoint("built version"),                 # between build and publish
    KillPoint("disk: uploaded", 3),             # early in each mirror's uploads, then
    KillPoint("disk: resuming"),                # as the next run resumes, and early in
    KillPoint("disk: uploaded", 3),             # the one after (each run sends less)
    KillPoint("disk: version 1 is live"),       # right after the commit
    KillPoint("s3: uploaded", 3),
    KillPoint("s3: resuming"),
    KillPoint("s3: uploaded", 3),
    KillPoint("s3: version 1 is live"),
]
UPDATE = [
    KillPoint("built version 2"),
    KillPoint("disk: uploaded"),
    KillPoint("s3: uploaded"),
    KillPoint("s3: version 2 is live"),
]


def test_sync_killed_at_many_points_then_completes(
    tmp_path: Path, slow_outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    config, bucket = config_for(tmp_path, slow_outlet, moto_server)
    rig = Rig(tmp_path, config, slow_outlet, moto_server, bucket)
    for point in FIRST_SYNC:
        kill_and_check(rig, point)

    sync_then_verify(rig)
    exported = finish(config, "export", "--json")
    assert exported.returncode == 0, exported.stderr
    assert ({json.loads(line)["url"] for line in exported.stdout.splitlines()}
            == {a.url for a in slow_outlet.articles})

    # A change, a sync killed at each point of publishing it, and the next run.
    slow_outlet.update_article(slow_outlet.articles[0].slug, title="Changed after the crash")
    for point in UPDATE:
        kill_and_check(rig, point)
    sync_then_verify(rig)
    assert "Changed after the crash" in (rig.disk / "index.html").read_text()


def test_two_runs_never_share_a_store(tmp_path: Path, slow_outlet: SampleOutlet,
                                      moto_server: MotoServer) -> None:
    config, _ = config_for(tmp_path, slow_outlet, moto_server)
    first = mirrorkit(config, "sync")
    time.sleep(0.5)
    second = finish(config, "sync")
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 1
    assert "another mirrorkit run is using this state directory" in second.stderr
