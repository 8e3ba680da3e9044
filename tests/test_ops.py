"""Unattended operations as ops meet them: ``doctor``, ``status`` states, machine-readable
summaries and logs, the metrics file, and the small CLI contracts a cron job relies on.
Mirrors are buckets on the moto server; the origin is the sample outlet on loopback."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from conftest import MOTO_KEY, MotoServer, free_port
from mirrorkit import progress, sign
from mirrorkit.cli import cli
from mirrorkit.metrics import write_textfile
from mirrorkit.pipeline import MirrorOutcome
from mirrorkit.sample import SampleOutlet
from mirrorkit.sign import write_keypair
from test_pipeline import write_config

ROOT = Path(__file__).parents[1]


@pytest.fixture
def outlet() -> Iterator[SampleOutlet]:
    with SampleOutlet() as running:
        yield running


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def objects(moto: MotoServer, bucket: str) -> dict[str, str]:
    listed = moto.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: o["ETag"] for o in listed}


def lines_of(result: Result, start: str) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(start)]


# == doctor ===================================================================================

def test_doctor_passes_before_and_after_the_first_publish_leaving_nothing_behind(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    before = run(config, "doctor")
    assert before.exit_code == 0, before.output
    assert "not published yet" in before.output
    assert "ok    keys: secret and public key are a pair" in before.output
    assert "ok    source " in before.output and "30 entries" in before.output
    assert objects(moto_server, bucket) == {}  # the probe object is gone

    assert run(config, "sync").exit_code == 0
    published = objects(moto_server, bucket)
    after = run(config, "doctor")
    assert after.exit_code == 0, after.output
    assert "ok    mirror s3-0: serves this mirror: public_url serves this mirror's" in (
        after.output)
    assert objects(moto_server, bucket) == published  # same objects, same contents


def test_doctor_names_a_private_bucket_with_the_providers_note(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = f"private-{free_port()}"
    moto_server.client().create_bucket(Bucket=bucket)  # no policy: anonymous reads get 403
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket], provider="minio")
    synced = run(config, "sync")
    assert synced.exit_code == 1, synced.output  # published, but readers cannot read it
    # status: nothing readable is "down", not a bad signature.
    status = run(config, "status", "--json")
    assert json.loads(status.output.splitlines()[0])["state"] == "down"
    assert status.exit_code == 3

    published = objects(moto_server, bucket)
    result = run(config, "doctor")
    assert result.exit_code == 1, result.output
    # minio has conditional writes: write access is shown by a write refused with 412.
    assert "ok    mirror s3-0: writable: a conditional write was refused with 412" in (
        result.output)
    [line] = lines_of(result, "FAIL  mirror s3-0: public:")
    assert "bucket not public (HTTP 403" in line
    assert "fix: MinIO: Allow anonymous downloads: mc anonymous set download" in line
    assert objects(moto_server, bucket) == published


def test_doctor_and_status_name_a_public_url_copied_from_another_mirror(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    buckets = [moto_server.new_bucket(), moto_server.new_bucket()]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    assert run(config, "sync").exit_code == 0
    assert run(config, "status").exit_code == 0
    urls = [f"{moto_server.endpoint}/{b}/" for b in buckets]
    write_config(tmp_path, outlet.feed_url, moto_server, buckets, public_urls=urls[::-1])

    result = run(config, "doctor")
    assert result.exit_code == 1, result.output
    [line] = lines_of(result, "FAIL  mirror s3-0: serves this mirror:")
    assert "serves the manifest of mirror 's3-1'" in line
    assert f"fix: set public_url to where bucket {buckets[0]} is served" in line

    status = run(config, "status", "--json")
    assert status.exit_code == 1, status.output
    rows = [json.loads(line) for line in status.output.splitlines()]
    assert [(r["state"], r["signed_for"]) for r in rows] == [
        ("wrong-mirror", "s3-1"), ("wrong-mirror", "s3-0")]


def test_a_mismatched_key_pair_is_named_and_stops_sync_before_any_upload(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    other = write_keypair(tmp_path / "keys" / "other")
    config.write_text(config.read_text().replace('"keys/outlet.pub"', '"keys/other.pub"'))

    result = run(config, "doctor")
    assert result.exit_code == 1, result.output
    [line] = lines_of(result, "FAIL  keys:")
    assert f"is not the pair of public key {tmp_path / 'keys' / 'other.pub'}" in line
    assert other.key_id_hex in line

    synced = run(config, "sync")
    assert synced.exit_code == 2, synced.output
    assert "is not the pair of public key" in synced.output
    assert objects(moto_server, bucket) == {}


def test_a_missing_secret_key_fails_sync_even_with_nothing_new(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()])
    assert run(config, "sync").exit_code == 0
    (tmp_path / "keys" / "outlet.key").unlink()
    again = run(config, "sync")
    assert again.exit_code == 2, again.output
    assert "cannot read secret key" in again.output


def test_doctor_cannot_check_an_encrypted_key_without_its_passphrase(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # minisign's own scrypt cost takes seconds a key; the format keeps the cost with the key.
    monkeypatch.setattr(sign, "_OPSLIMIT", 1 << 16)
    monkeypatch.setattr(sign, "_MEMLIMIT", 1 << 22)
    write_keypair(tmp_path / "keys" / "outlet", "a passphrase")
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()])
    monkeypatch.delenv("MIRRORKIT_PASSPHRASE", raising=False)
    result = run(config, "doctor")
    [line] = lines_of(result, "??    keys:")
    assert "cannot check: the secret key is encrypted" in line
    assert result.exit_code == 0, result.output  # not a failure: nothing found wrong
    monkeypatch.setenv("MIRRORKIT_PASSPHRASE", "a passphrase")
    assert lines_of(run(config, "doctor"), "ok    keys:")


def test_doctor_exits_2_on_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "mirrorkit.toml"
    path.write_text("[outlet]\nid = 'x'\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "doctor"])
    assert result.exit_code == 2
    assert "outlet.name: required" in result.output


# == status ===================================================================================

def test_status_states_ok_stale_down_invalid_with_their_exit_codes(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    assert run(config, "sync").exit_code == 0

    def state(*args: str) -> tuple[str, int]:
        result = run(config, "status", "--json", *args)
        return json.loads(result.output.splitlines()[0])["state"], result.exit_code

    assert state() == ("ok", 0)
    assert state("--max-age", "1h") == ("ok", 0)
    time.sleep(1.1)
    assert state("--max-age", "1s") == ("stale", 3)
    text = run(config, "status", "--max-age", "1s")
    assert text.output.split()[:2] == ["s3-0", "stale"]
    assert "more than --max-age" in text.output

    moto_server.client().put_object(Bucket=bucket, Key="manifest.json.minisig", Body=b"x")
    moto_server.client().put_object(Bucket=bucket, Key="manifest.json", Body=b"{}")
    assert state() == ("invalid", 1)

    dead = f"http://127.0.0.1:{free_port()}/"
    write_config(tmp_path, outlet.feed_url, moto_server, [bucket], public_urls=[dead])
    assert state() == ("down", 3)


def test_status_does_not_call_a_replayed_older_root_ok(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    """Someone who can write a bucket (or a cache in front of it) serves its version 1
    again, genuinely signed and not expired: status has seen version 2 there."""
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    assert run(config, "sync").exit_code == 0
    client = moto_server.client()
    old = {key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
           for key in ("manifest.json", "manifest.json.minisig")}
    outlet.update_article(outlet.articles[0].slug, title="Corrected headline")
    assert "version 2" in run(config, "sync").output
    assert run(config, "status").exit_code == 0  # seen: version 2
    for key, body in old.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    result = run(config, "status", "--json")
    row = json.loads(result.output.splitlines()[0])
    assert (row["state"], row["version"], result.exit_code) == ("invalid", 1, 1)
    assert any("older than version 2 seen before" in p for p in row["problems"])


def test_status_deep_names_damage_and_how_to_mend_it(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    config = write_config(tmp_path, outlet.feed_url, moto_server, [bucket])
    assert run(config, "sync").exit_code == 0
    client = moto_server.client()
    page = next(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
                if o["Key"].startswith("articles/"))
    client.put_object(Bucket=bucket, Key=page, Body=b"<p>forged</p>", ContentType="text/html")
    assert run(config, "status").exit_code == 0  # the root alone is intact
    deep = run(config, "status", "--deep")
    assert deep.exit_code == 1, deep.output
    assert f"size: {page}:" in deep.output
    assert "to mend it: mirrorkit publish --repair --mirror s3-0" in deep.output, deep.output
    assert run(config, "publish", "--repair").exit_code == 0
    assert run(config, "status", "--deep").exit_code == 0


def test_status_and_export_run_without_storage_credentials(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MK_TEST_KEY_ID", MOTO_KEY)
    monkeypatch.setenv("MK_TEST_SECRET", MOTO_KEY)
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()],
                          credentials=("${MK_TEST_KEY_ID}", "${MK_TEST_SECRET}"))
    assert run(config, "sync").exit_code == 0
    monkeypatch.delenv("MK_TEST_KEY_ID")
    monkeypatch.delenv("MK_TEST_SECRET")
    status = run(config, "status")
    assert status.exit_code == 0, status.output
    exported = run(config, "export")
    assert exported.exit_code == 0, exported.output
    assert len(exported.output.splitlines()) == 30
    # Commands that open a mirror still say what is missing.
    publish = run(config, "publish")
    assert publish.exit_code == 2
    assert "environment variable MK_TEST_KEY_ID is not set" in publish.output


# == summaries, logs and metrics ==============================================================

def test_sync_json_summary_json_logs_and_the_metrics_file(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    buckets = [moto_server.new_bucket(), f"missing-{free_port()}"]  # the second never made
    prom = tmp_path / "metrics" / "mirrorkit.prom"
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets,
                          extra=f'\n[metrics]\ntextfile = "{prom}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mirrorkit", "--config", str(config), "--log-format", "json",
         "sync", "--json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    summary = json.loads(done.stdout)  # one object, nothing else on stdout
    assert summary["exit_code"] == 3
    assert summary["fetch"]["new"] == 30 and summary["fetch"]["failed_sources"] == 0
    good, bad = summary["mirrors"]
    assert good["name"] == "s3-0" and good["ok"] and good["version"] == 1
    assert good["uploaded"] > 30 and good["deleted"] == 0 and good["error"] is None
    assert bad["name"] == "s3-1" and not bad["ok"] and "NoSuchBucket" in bad["error"]
    assert set(summary["durations"]) == {"fetch", "build", "publish", "check"}

    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert all("event" in r for r in records)
    # Every line of a run names what happened, beyond the catch-all "log".
    assert [r for r in records if r["event"] == "log"] == []
    assert {"note", "fetch_done", "publish_start", "mirror_published"} <= {
        r["event"] for r in records}
    events = {r["event"]: r for r in records}
    assert events["fetch_done"]["new"] == 30
    assert events["mirror_published"]["mirror"] == "s3-0"
    assert events["mirror_published"]["version"] == 1
    # The failed mirror's error is logged once, with its mirror as a field.
    failed = [r for r in records if "NoSuchBucket" in json.dumps(r)]
    assert [(r["event"], r["mirror"]) for r in failed] == [("mirror_failed", "s3-1")]

    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples}
    s0, s1 = (("mirror", "s3-0"),), (("mirror", "s3-1"),)
    assert metrics[("mirrorkit_mirror_live_version", s0)] == 1
    assert metrics[("mirrorkit_mirror_uploaded_objects", s0)] == good["uploaded"]
    assert metrics[("mirrorkit_mirror_uploaded_bytes", s0)] > 0
    assert metrics[("mirrorkit_mirror_failures_total", s0)] == 0
    assert metrics[("mirrorkit_mirror_failures_total", s1)] == 1
    assert time.time() - metrics[("mirrorkit_mirror_last_success_timestamp_seconds", s0)] < 60
    assert ("mirrorkit_mirror_last_success_timestamp_seconds", s1) not in metrics
    assert metrics[("mirrorkit_run_articles", (("result", "new"),))] == 30
    assert metrics[("mirrorkit_run_articles", (("result", "updated"),))] == 0
    assert metrics[("mirrorkit_run_articles", (("result", "failed"),))] == 0
    for stage in ("fetch", "build", "publish", "check"):
        assert metrics[("mirrorkit_run_stage_duration_seconds", (("stage", stage),))] >= 0
    assert metrics[("mirrorkit_run_exit_code", ())] == 3
    types = {f.name: f.type for f in text_string_to_metric_families(prom.read_text())}
    assert types["mirrorkit_mirror_failures"] == "counter"  # so rate() reads it
    assert types["mirrorkit_mirror_live_version"] == "gauge"

    # The next run keeps what it did not change and counts failures on.
    again = run(config, "sync")
    assert again.exit_code == 3
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples}
    assert metrics[("mirrorkit_mirror_failures_total", s1)] == 2
    assert metrics[("mirrorkit_mirror_live_version", s0)] == 1
    assert list(prom.parent.iterdir()) == [prom]  # written atomically: no temporary left


def test_the_metrics_file_is_not_written_through_a_planted_symlink(tmp_path: Path) -> None:
    """A textfile folder is often shared with other exporters: a link planted where the
    temporary file would go must not turn the write onto another file of this user."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    prom = folder / "mirrorkit.prom"
    victim = tmp_path / "outlet.key"
    victim.write_text("the secret key\n")
    # Where prometheus_client's write_to_textfile would open its temporary file.
    (folder / f"mirrorkit.prom.{os.getpid()}.{threading.current_thread().ident}").symlink_to(
        victim)
    write_textfile(prom, [MirrorOutcome("m", error="down")], {"fetch": 1.0}, None, 3)
    assert victim.read_text() == "the secret key\n"
    assert not prom.is_symlink() and prom.stat().st_mode & 0o777 == 0o644
    names = {s.name for f in text_string_to_metric_families(prom.read_text())
             for s in f.samples}
    assert "mirrorkit_run_exit_code" in names


def test_text_output_one_line_per_mirror_one_summary_each_error_once(
        tmp_path: Path, outlet: SampleOutlet, moto_server: MotoServer) -> None:
    buckets = [moto_server.new_bucket(), f"missing-{free_port()}"]
    config = write_config(tmp_path, outlet.feed_url, moto_server, buckets)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "mirrorkit", "--config", str(config), "sync"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 3
    out = done.stdout.splitlines()
    assert out[0].startswith("s3-0: ok, version 1, ") and "objects uploaded" in out[0]
    assert out[1] == "s3-1: FAILED"
    assert out[2].startswith("sync: 30 new articles, 0 changed; 1 of 2 mirrors ok (")
    assert len(out) == 3
    assert done.stderr.count("NoSuchBucket") == 1
    assert "error: mirror s3-1: " in done.stderr

    publish = run(config, "publish", "--mirror", "s3-0", "--json")
    assert publish.exit_code == 0
    [mirror] = json.loads(publish.output.splitlines()[-1])["mirrors"]
    assert (mirror["name"], mirror["ok"], mirror["uploaded"], mirror["deleted"]) == (
        "s3-0", True, 0, 0)


# == small CLI contracts ======================================================================

def test_export_into_a_closed_pipe_stops_quietly(tmp_path: Path, outlet: SampleOutlet,
                                                 moto_server: MotoServer) -> None:
    outlet.add_filler(60)
    config = write_config(tmp_path, outlet.feed_url, moto_server, [moto_server.new_bucket()])
    assert run(config, "fetch").exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    whole = subprocess.run([sys.executable, "-m", "mirrorkit", "--config", str(config),
                            "export", "--json"], capture_output=True, env=env, check=True)
    assert len(whole.stdout) > 4 * 65536  # more than a pipe holds: the writer must block
    export = shlex.join([sys.executable, "-m", "mirrorkit", "--config", str(config), "export",
                         "--json"])
    done = subprocess.run(["bash", "-c", f"{export} | head -1"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert json.loads(done.stdout)["url"].startswith(outlet.url)
    assert done.stderr == ""
    piped = subprocess.run(["bash", "-c", f"set -o pipefail; {export} | head -1 >/dev/null"],
                           env=env, timeout=60, check=False)
    assert piped.returncode == 0


def test_an_untouched_init_config_refuses_to_publish(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["init", str(tmp_path / "o")]).exit_code == 0
    config = tmp_path / "o" / "mirrorkit.toml"
    for command in ("sync", "build", "publish"):
        result = run(config, command)
        assert result.exit_code == 2, result.output
        assert "outlet.origin is still the example's https://www.example.com/" in result.output
        assert "edit [outlet]" in result.output
    assert not (tmp_path / "o" / "mirror").exists()
    assert not (tmp_path / "o" / "state").exists()


def test_demo_serves_on_the_given_port_and_names_a_busy_one(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "XDG_STATE_HOME": str(tmp_path)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "mirrorkit", "demo", "--dir", "d",
                               "--serve", "--port", str(port)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}: ")
    assert "--port N" in done.stderr
    assert time.monotonic() - started < 10  # said before the demo's work, not after
    assert not (tmp_path / "d").exists()

    port = free_port()
    while True:  # the demo serves its two mirrors on N and N+1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mirrorkit", "demo", "--dir", "d",
                             "--serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/index.html",
                                            timeout=1) as r:
                    assert b"Sample Courier" in r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        else:
            pytest.fail("the demo did not serve on the given port")
        mirrors = (tmp_path / "d" / "mirrorkit.toml").read_text()
        assert f'public_url = "http://127.0.0.1:{port}/"' in mirrors
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_serve_names_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2
    assert f"error: cannot serve on 127.0.0.1:{port}: " in result.output
    assert "(give another port with --port N)" in result.output


def test_with_json_logs_a_failed_command_ends_with_a_json_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--log-format", "json", "--config",
                                      str(tmp_path / "nope.toml"), "sync"])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    record = json.loads(line)
    assert record["event"] == "command_failed" and record["exit_code"] == 2
    assert "config file not found" in record["error"]


# == fast startup =============================================================================

HEAVY = ("boto3", "botocore", "aiohttp", "trafilatura", "feedgen", "jinja2", "rich", "lxml")


def _modules_loaded(args: list[str], cwd: Path) -> set[str]:
    """The top-level modules a mirrorkit command imported, by the time it exited."""
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in "
            "sys.modules})), file=sys.__stderr__))\n"
            "from mirrorkit.cli import main\n"
            f"sys.argv = ['mirrorkit', *{args!r}]\n"
            "main()\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "XDG_STATE_HOME": str(cwd)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode in (0, 1, 3), done.stderr
    return set(json.loads(done.stderr.splitlines()[-1]))


def test_quick_commands_import_no_heavy_module(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write_keypair(tmp_path / "k")
    config = tmp_path / "mirrorkit.toml"
    config.write_text(f"""
[outlet]
id = "t"
name = "T"
origin = "https://t.example/"
[signing]
secret_key = "k.key"
public_key = "k.pub"
[[mirrors]]
name = "m"
type = "local"
path = "{site}"
public_url = "http://127.0.0.1:9/"
[[mirrors]]
name = "s3"
type = "s3"
provider = "r2"
bucket = "b"
endpoint_url = "http://127.0.0.1:9"
access_key_id = "${{NOT_SET_HERE}}"
public_url = "http://127.0.0.1:9/b/"
""")
    for args in (["--version"], ["verify", str(site), "--key", str(tmp_path / "k.pub")],
                 ["--config", str(config), "export"]):
        loaded = _modules_loaded(args, tmp_path)
        assert "click" in loaded
        assert not loaded & set(HEAVY), (args, sorted(loaded & set(HEAVY)))
    # status reads an S3 mirror over HTTP (aiohttp), but opens no S3 client.
    loaded = _modules_loaded(["--config", str(config), "status"], tmp_path)
    assert not loaded & {"boto3", "botocore", "trafilatura", "feedgen", "jinja2", "rich"}


# == progress =================================================================================

def test_long_stages_log_progress_lines_when_not_on_a_terminal(
        tmp_path: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "INTERVAL", 0.1)
    with SampleOutlet(latency=0.05) as slow:
        config = write_config(tmp_path, slow.feed_url, moto_server, [moto_server.new_bucket()])
        result = CliRunner().invoke(cli, ["--config", str(config), "--log-format", "json",
                                          "sync"])
        (tmp_path / "text").mkdir()
        other = write_config(tmp_path / "text", slow.feed_url, moto_server, [])
        text = CliRunner().invoke(cli, ["--config", str(other), "fetch"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    fetching = [r for r in records if r["event"] == "progress" and r["stage"] == "fetch"]
    assert fetching, result.output
    assert all(r["total"] in (None, 30) and 0 <= r["done"] <= 30 for r in fetching)
    assert [r["done"] for r in fetching] == sorted(r["done"] for r in fetching)
    assert {"fetch", "build", "publish", "check"} >= {
        r["stage"] for r in records if r["event"] == "progress"}
    assert text.exit_code == 0, text.output
    assert any(re.fullmatch(r"fetch: \d+ of 30 articles \(\d+ s\)", line)
               for line in text.output.splitlines()), text.output


def test_on_a_terminal_stages_draw_progress_bars(tmp_path: Path,
                                                 moto_server: MotoServer) -> None:
    with SampleOutlet(latency=0.05) as slow:
        config = write_config(tmp_path, slow.feed_url, moto_server, [moto_server.new_bucket()])
        parent, child = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100",
               "TERM": "xterm"}
        proc = subprocess.Popen([sys.executable, "-m", "mirrorkit", "--config", str(config),
                                 "sync"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=child, env=env)
        os.close(child)
        screen = b""
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            screen += chunk
        os.close(parent)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        proc.stdout.close()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert re.search(r"fetch ━+ \d+/30 articles", drawn), drawn[-2000:]
    assert re.search(r"publish ━+ \d+/\? objects uploaded", drawn)
    assert re.search(r"check ━+ 1/1 mirrors", drawn)
    assert "\x1b[" not in stdout and stdout.startswith("s3-0: ok, version 1")
