"""Shared fixtures.  Each section is self-contained; add new ones as new sections."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from mirrorkit.config import MirrorConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# == S3: moto's standalone server over loopback HTTP ======================================
#
# A real S3-compatible server in its own process, spoken to with boto3 exactly as to a
# provider (DESIGN.md, "Test rig").  If moto_server is not installed the S3 tests fail:
# the rig is part of the test suite, not an optional extra.

MOTO_KEY = "testing"
_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d+)')
MOTO_REGION = "us-east-1"


def free_port() -> int:
    """A loopback port nothing listens on (for servers to start on, or to fail against)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class MotoServer:
    """A running ``moto_server``: its endpoint, and a boto3 client for it."""

    endpoint: str
    log: Path | None = None
    _client: Any = field(default=None, repr=False)

    def requests(self, bucket: str) -> list[str]:
        """Every request the server has answered for ``bucket`` so far, as ``"METHOD
        /path?query STATUS"``, read from its own request log: counted at the server."""
        assert self.log is not None
        time.sleep(0.2)  # the server logs a request just after answering it
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _REQUEST_LINE.search(line)
            if m and (m["path"].startswith(f"/{bucket}/") or m["path"].startswith(f"/{bucket}?")
                      or m["path"] == f"/{bucket}"):
                found.append(f"{m['method']} {m['path']} {m['status']}")
        return found

    def client(self) -> S3Client:
        """A boto3 S3 client for the server, shared (clients are thread-safe) and closed
        when the session ends — do not close it yourself."""
        if self._client is None:
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=MOTO_REGION,
                aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_KEY,
            )
        client: S3Client = self._client
        return client

    def new_bucket(self, *, listable: bool = False) -> str:
        """A fresh bucket that anyone may read (and list, if ``listable``), as ops set one
        up on a real provider for readers; moto enforces the policy for unsigned requests."""
        bucket = f"mk-{uuid.uuid4().hex[:16]}"
        statements = [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}]
        if listable:
            statements.append({"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
                               "Resource": f"arn:aws:s3:::{bucket}"})
        client = self.client()
        client.create_bucket(Bucket=bucket)
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        return bucket

    def close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server is not on PATH: pip install -e '.[test]' (moto[server])")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        server = MotoServer(endpoint, log_path)
        try:
            _wait_until_up(proc, endpoint, log_path)
            yield server
        finally:
            server.close_clients()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    pytest.fail(f"moto_server did not answer at {endpoint} within 30 s")


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> MirrorConfig:
    """A fresh, publicly readable bucket, as the config of an ``s3`` mirror named "s3"."""
    bucket = moto_server.new_bucket()
    return MirrorConfig(
        name="s3", type="s3", public_url=f"{moto_server.endpoint}/{bucket}/",
        bucket=bucket, endpoint_url=moto_server.endpoint, region=MOTO_REGION,
        provider="generic", access_key_id=MOTO_KEY, secret_access_key=MOTO_KEY,
    )


# == S3 faults: a proxy in front of the moto server ========================================
#
# tests/faultproxy.py forwards every request to the session's moto server unchanged and
# injects the faults its rules say (503 SlowDown, 500, resets, lost responses, stalls,
# latency).  Point a mirror's endpoint_url at ``fault_proxy.endpoint``; readers and
# verifiers keep using the moto server directly (its public URL), fault-free.

from faultproxy import FaultProxy  # noqa: E402


@pytest.fixture
def fault_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint, seed=7) as proxy:
        yield proxy


# == Isolation ================================================================================

@pytest.fixture(autouse=True)
def _own_trust_state(tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """verify's rollback state goes to a folder of the test run, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg")))
