"""The state in object storage: runners with empty disks take turns on one outlet, never
interleave, and a killed runner's lease ends (mirrorkit.state, against moto_server)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import MOTO_KEY, MotoServer
from mirrorkit.config import load
from mirrorkit.errors import BuildError, LeaseError, StateError
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import load_public_key, write_keypair
from mirrorkit.state import Committed, Lease, open_store
from mirrorkit.verify import DirectoryTarget, UrlTarget, verify_target


@dataclass
class Rig:
    root: Path
    outlet: SampleOutlet
    moto: MotoServer
    mirror_bucket: str
    state_bucket: str

    def runner(self, name: str, *, lease: str = "15m") -> Path:
        """A runner's config in a directory of its own (its disk), with the outlet's keys."""
        home = self.root / name
        home.mkdir(exist_ok=True)
        for suffix in (".key", ".pub"):
            shutil.copy(self.root / f"outlet{suffix}", home / f"outlet{suffix}")
        config = home / "mirrorkit.toml"
        config.write_text(f"""
[outlet]
id = "turns"
name = "Turns"
origin = "https://turns.example/"
[state]
dir = "state"
url = "s3://{self.state_bucket}/outlets/turns"
endpoint_url = "{self.moto.endpoint}"
provider = "minio"
access_key_id = "{MOTO_KEY}"
secret_access_key = "{MOTO_KEY}"
lease = "{lease}"
[signing]
secret_key = "outlet.key"
public_key = "outlet.pub"
[fetch]
allow_private_addresses = true
[[sources]]
url = "{self.outlet.feed_url}"
[[mirrors]]
name = "disk"
type = "local"
path = "{self.root / 'disk'}"
public_url = "http://127.0.0.1:9/"
[[mirrors]]
name = "s3"
type = "s3"
bucket = "{self.mirror_bucket}"
endpoint_url = "{self.moto.endpoint}"
access_key_id = "{MOTO_KEY}"
secret_access_key = "{MOTO_KEY}"
public_url = "{self.moto.endpoint}/{self.mirror_bucket}/"
""")
        return config

    def object(self, key: str) -> bytes | None:
        try:
            body = self.moto.client().get_object(Bucket=self.state_bucket, Key=key)["Body"]
        except self.moto.client().exceptions.NoSuchKey:
            return None
        with body:
            data: bytes = body.read()
        return data

    def committed(self) -> dict[str, object]:
        data = self.object("outlets/turns/state.json")
        assert data is not None
        parsed: dict[str, object] = json.loads(data)
        return parsed

    def wait_for_lease(self, proc: subprocess.Popen[str]) -> None:
        for _ in range(300):
            if self.object("outlets/turns/lease.json") is not None:
                return
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        pytest.fail("no lease taken")

    def verify(self, version: int) -> None:
        """Every mirror verifies, at ``version``."""
        key = load_public_key(self.root / "outlet.pub")
        for target in (DirectoryTarget(self.root / "disk"),
                       UrlTarget(f"{self.moto.endpoint}/{self.mirror_bucket}/")):
            report = verify_target(target, key)
            assert report.ok, [f.line() for f in report.findings]
            assert report.manifest is not None and report.manifest.version == version


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(config.parent / "xdg")}
    return subprocess.Popen([sys.executable, "-m", "mirrorkit", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=config.parent)


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = start(config, *args)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def rig(tmp_path: Path, moto_server: MotoServer) -> Iterator[Rig]:
    write_keypair(tmp_path / "outlet")
    state_bucket = moto_server.new_bucket()
    moto_server.client().delete_bucket_policy(Bucket=state_bucket)  # the state is private
    with SampleOutlet(latency=0.02) as outlet:
        yield Rig(tmp_path, outlet, moto_server, moto_server.new_bucket(), state_bucket)


def test_runners_with_empty_disks_take_turns(rig: Rig) -> None:
    a, b = rig.runner("a"), rig.runner("b")
    first = run(a, "sync")
    assert first.returncode == 0, first.stderr
    rig.verify(1)
    assert rig.committed()["generation"] == 1

    rig.outlet.add_filler(3)
    uploads_before = sum(1 for r in rig.moto.requests(rig.mirror_bucket) if r.startswith("PUT"))
    rig.outlet.reset_requests()
    second = run(b, "sync")  # b's disk is empty
    assert second.returncode == 0, second.stderr
    rig.verify(2)  # the next version, not version 1 again: mirrors accept it
    assert "fetched: 3 new, 0 changed" in second.stderr
    article_gets = [r for r in rig.outlet.requests if "filler" in r.path]
    assert len(article_gets) == 3  # only the new articles were fetched
    uploads = sum(1 for r in rig.moto.requests(rig.mirror_bucket)
                  if r.startswith("PUT")) - uploads_before
    assert uploads < 25, uploads  # what changed, not the whole site again
    assert rig.committed()["generation"] == 2

    # a's disk holds generation 1: it brings generation 2 down before working.
    rig.outlet.add_filler(5, prefix="more")
    third = run(a, "sync")
    assert third.returncode == 0, third.stderr
    rig.verify(3)
    assert "fetched: 5 new, 0 changed" in third.stderr
    assert rig.committed()["generation"] == 3

    # b's disk kept the blobs it had, and reads the others (a's new pages) on demand.
    archive = run(b, "archive", "--mirror", "disk", "--out", str(rig.root / "copy.zip"))
    assert archive.returncode == 0, archive.stderr
    checked = run(b, "verify", str(rig.root / "copy.zip"), "--no-trust")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_two_runners_at_once_one_works_one_exits_with_the_lease_message(rig: Rig) -> None:
    rig.outlet.add_filler(40)  # a run long enough to meet the second
    a, b = rig.runner("a"), rig.runner("b")
    first = start(a, "sync")
    rig.wait_for_lease(first)
    began = time.monotonic()
    second = run(b, "sync")
    assert second.returncode == 1, second.stderr
    assert time.monotonic() - began < 15  # at once, not after waiting for the other
    assert first.poll() is None  # the other is still at work
    error = second.stderr.strip().splitlines()[-1]
    assert "lease is held by" in error and f":{first.pid}:" in error, error
    assert re.search(r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", error), error
    _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    rig.verify(1)
    assert rig.committed()["generation"] == 1


def test_a_killed_runner_is_replaced_when_its_lease_ends(rig: Rig) -> None:
    a, b = rig.runner("a", lease="3s"), rig.runner("b", lease="3s")
    killed = start(a, "sync")
    rig.wait_for_lease(killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    blocked = run(b, "sync")
    assert blocked.returncode == 1
    assert f":{killed.pid}:" in blocked.stderr
    time.sleep(3.5)  # the killed run renewed its lease at most 3 s ago
    taken = run(b, "sync")
    assert taken.returncode == 0, taken.stderr
    assert "took over the lease" in taken.stderr
    rig.verify(1)
    assert rig.committed()["generation"] == 1


def test_a_run_whose_lease_was_taken_writes_nothing_back(rig: Rig) -> None:
    config = load(rig.runner("a"))
    first = run(config.path, "fetch")
    assert first.returncode == 0, first.stderr
    before = rig.object("outlets/turns/state.json")
    with pytest.raises(LeaseError, match="lease lost"), open_store(config) as store:
        store.set_meta("work", "done")
        # Another run takes the lease over (as after this one's had ended).
        rig.moto.client().put_object(
            Bucket=rig.state_bucket, Key="outlets/turns/lease.json",
            Body=b'{"holder": "other", "taken": "2026-01-01T00:00:00+00:00", '
                 b'"expires": "2099-01-01T00:00:00+00:00"}')
    assert rig.object("outlets/turns/state.json") == before
    again = run(config.path, "fetch")
    assert again.returncode == 1 and "lease is held by other until 2099-01-01" in again.stderr


def test_a_failed_run_still_writes_back_what_it_did(rig: Rig) -> None:
    with pytest.raises(BuildError), open_store(load(rig.runner("a"))) as store:
        store.set_meta("work", "done")  # e.g. articles fetched before the build failed
        raise BuildError("the build failed")
    assert rig.committed()["generation"] == 1
    assert json.loads(rig.object("outlets/turns/lease.json") or b"")["holder"]
    # Another disk reads it (a command that only reads takes no lease).
    with open_store(load(rig.runner("b")), exclusive=False) as store:
        assert store.meta("work") == "done"


# == what whoever can write the state bucket can make a runner do ============================

_SHA = "ab" * 32
_DB = {"base": [f"db/{'cd' * 32}.gz"], "deltas": [], "page_size": 4096, "size": 8192,
       "sha256": _SHA, "base_bytes": 100, "delta_bytes": 0}


def _state_json(roots: dict[str, str], db: dict[str, object] = _DB) -> bytes:
    return json.dumps({"format": 1, "generation": 3, "db": db, "roots": roots}).encode()


def test_a_genuine_state_json_reads() -> None:
    head = Committed.from_bytes(_state_json({"000003/s3/manifest.json": _SHA}), "here")
    assert head.generation == 3 and head.roots == {"000003/s3/manifest.json": _SHA}


@pytest.mark.parametrize("roots", [
    {"/home/runner/.bashrc": _SHA},             # absolute: would be written there
    {"../../escaped": _SHA},                     # out of builds/ and the state dir
    {"000003/../../../escaped": _SHA},
    {"000003//manifest.json": _SHA},
    {"000003\\..\\..\\x": _SHA},
    {"000003/s3/manifest.json": "../../lease.json"},  # not a hash: another object's name
])
def test_a_state_json_naming_a_root_outside_builds_is_refused(roots: dict[str, str]) -> None:
    with pytest.raises(StateError, match="not a root inside builds/"):
        Committed.from_bytes(_state_json(roots), "state s3://b/p")


@pytest.mark.parametrize("change", [
    {"page_size": 0}, {"page_size": 1000}, {"size": -1}, {"sha256": "x"},
    {"base": ["lease.json"]}, {"deltas": ["blobs/" + "ab" * 32]},
])
def test_a_state_json_with_an_impossible_database_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(StateError, match="cannot be read"):
        Committed.from_bytes(_state_json({}, {**_DB, **change}), "state s3://b/p")


def test_a_lease_without_a_zone_or_with_control_characters_still_reads() -> None:
    lease = Lease.from_bytes(json.dumps({
        "holder": "evil\x1b[31m\nerror: forged line" + "x" * 500,
        "taken": "2026-01-01T00:00:00", "expires": "2099-01-01T00:00:00"}).encode())
    assert lease is not None
    assert lease.expires > datetime.now(UTC)  # compares: no TypeError on a naive time
    assert lease.expires.tzinfo is not None and lease.taken.tzinfo is not None
    assert lease.holder.isprintable() and len(lease.holder) < 210
    assert lease.holder.startswith("evil?[31m?error: forged line")


def test_a_terminated_runner_writes_back_and_releases_the_lease(rig: Rig) -> None:
    """SIGTERM (a pod evicted or past its deadline, a cancelled CI job) must not leave the
    lease held for its whole length: the run writes back what it did and releases it."""
    a, b = rig.runner("a"), rig.runner("b")
    proc = start(a, "sync")
    rig.wait_for_lease(proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err  # a failed run
    assert "terminated; writing back" in err and "Traceback" not in err
    lease = json.loads(rig.object("outlets/turns/lease.json") or b"")
    assert lease["expires"] <= lease["taken"]  # released
    assert rig.committed()["generation"] == 1  # what it did is written back
    after = run(b, "sync")
    assert after.returncode == 0, after.stderr
    assert "took over the lease" not in after.stderr
    rig.verify(1)
