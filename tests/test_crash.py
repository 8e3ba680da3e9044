"""Invariant 7: a sync can be killed at any point (kill -9) and the next run completes the
work; no fetched article is lost and no mirror is left without its files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MotoServer, _public_read_policy
from mirrorkit.manifest import MANIFEST_NAME, Manifest
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair


@pytest.fixture
def slow_outlet() -> Iterator[SampleOutlet]:
    # Latency stretches a sync to a few seconds, so kills land in every stage.
    with SampleOutlet(latency=0.03) as outlet:
        yield outlet


def config_for(root: Path, outlet: SampleOutlet, moto: MotoServer) -> Path:
    write_keypair(root / "outlet")
    bucket = f"crash-{os.getpid()}-{time.monotonic_ns()}"
    client = moto.client()
    client.create_bucket(Bucket=bucket)
    client.put_bucket_policy(Bucket=bucket, Policy=_public_read_policy(bucket))
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
    return path


def mirrorkit(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(config.parent / "xdg")}
    return subprocess.Popen([sys.executable, "-m", "mirrorkit", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = mirrorkit(config, *args)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_after(config: Path, delay: float) -> None:
    proc = mirrorkit(config, "sync")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def live_files_present(mirror: Path) -> list[str]:
    """Every file the live manifest names is on the mirror (the reader's invariant)."""
    if not (mirror / MANIFEST_NAME).exists():
        return []
    manifest = Manifest.from_bytes((mirror / MANIFEST_NAME).read_bytes())
    return [f.path for f in manifest.files if not (mirror / f.path).is_file()]


def test_sync_killed_at_many_points_then_completes(
    tmp_path: Path, slow_outlet: SampleOutlet, moto_server: MotoServer
) -> None:
    config = config_for(tmp_path, slow_outlet, moto_server)
    for delay in (0.4, 0.8, 1.2, 1.6, 2.0, 2.6):
        kill_after(config, delay)
        assert live_files_present(tmp_path / "disk") == []

    done = finish(config, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    exported = finish(config, "export", "--json")
    assert len(exported.stdout.splitlines()) == len(slow_outlet.articles)
    for target in (str(tmp_path / "disk"), json.loads(
            finish(config, "status", "--json").stdout.splitlines()[1])["location"]):
        checked = finish(config, "verify", target)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # A change, a sync killed part-way through publishing it, and the next run.
    slow_outlet.update_article(slow_outlet.articles[0].slug, title="Changed after the crash")
    for delay in (0.5, 1.0):
        kill_after(config, delay)
        assert live_files_present(tmp_path / "disk") == []
    done = finish(config, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Changed after the crash" in (tmp_path / "disk" / "index.html").read_text()
    assert finish(config, "verify", str(tmp_path / "disk")).returncode == 0


def test_two_runs_never_share_a_store(tmp_path: Path, slow_outlet: SampleOutlet,
                                      moto_server: MotoServer) -> None:
    config = config_for(tmp_path, slow_outlet, moto_server)
    first = mirrorkit(config, "sync")
    time.sleep(0.5)
    second = finish(config, "sync")
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 1
    assert "another mirrorkit run is using this state directory" in second.stderr
