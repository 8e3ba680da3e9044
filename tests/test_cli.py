"""The command line as a user meets it: the contract's commands, help, exit codes, and the
README's two commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import free_port
from mirrorkit.cli import cli

ROOT = Path(__file__).parents[1]
COMMANDS = ["init", "keygen", "fetch", "build", "publish", "sync", "verify", "status", "archive",
            "doctor",
            "export", "serve", "demo"]


def test_every_contract_command_exists_with_help() -> None:
    assert set(COMMANDS) <= set(cli.commands)
    for name in COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage: cli " in result.output or "Usage:" in result.output
        assert len(result.output.splitlines()) > 3, name


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\b", readme, flags=re.M), name


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    commands = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    assert commands[0] == "pip install -e . && mirrorkit demo"
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_usage_error_exits_2() -> None:
    assert CliRunner().invoke(cli, ["publish", "--bogus"]).exit_code == 2
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2


def test_missing_config_exits_2_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "fetch"])
    assert result.exit_code == 2
    assert "config file not found" in result.output
    assert "mirrorkit init" in result.output


def test_keygen_writes_minisign_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIRRORKIT_PASSPHRASE", raising=False)
    result = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.pub").read_text().startswith("untrusted comment: minisign public key")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert again.exit_code == 2
    assert "already exists" in again.output


def _mirrorkit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "xdg")}
    return subprocess.run([sys.executable, "-m", "mirrorkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_demo_end_to_end_then_the_commands_it_prints(tmp_path: Path) -> None:
    first = _mirrorkit("demo", "--dir", "d", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    verify_lines = [line.split("verify: ", 1)[1] for line in first.stdout.splitlines()
                    if "verify: mirrorkit verify" in line]
    assert len(verify_lines) == 2
    for line in verify_lines:
        args = line.split()[1:]  # as printed, minus the program name
        checked = _mirrorkit(*args, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "valid:" in checked.stdout

    config = str(tmp_path / "d" / "mirrorkit.toml")
    exported = _mirrorkit("--config", config, "export", "--json", cwd=tmp_path)
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 30
    for key in ("url", "title", "authors", "published", "updated", "language", "text", "html"):
        assert all(key in row for row in rows), key
    assert {row["language"] for row in rows} == {"en", "ru"}

    status = _mirrorkit("--config", config, "status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert [json.loads(line)["version"] for line in status.stdout.splitlines()] == [1, 1]

    again = _mirrorkit("demo", "--dir", "d", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stderr


def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    result = _mirrorkit("--log-format", "json", "demo", "--dir", "d", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "message"} <= set(records[0])


def test_serve_previews_a_directory(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "articles" / "a").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "articles" / "a" / "index.html").write_text("<h1>a</h1>")
    (tmp_path / "secret.txt").write_text("outside")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mirrorkit", "serve", str(site),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                with urllib.request.urlopen(base, timeout=1) as r:
                    assert r.read() == b"<h1>home</h1>"
                    assert r.headers["Content-Type"].startswith("text/html")
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("serve did not answer")
        with urllib.request.urlopen(base + "articles/a/index.html", timeout=2) as r:
            assert r.read() == b"<h1>a</h1>"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "../secret.txt", timeout=2)
        assert err.value.code == 404
        err.value.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _dead_source_config(tmp_path: Path) -> Path:
    from mirrorkit.sign import write_keypair

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
[fetch]
allow_private_addresses = true
[[sources]]
url = "http://127.0.0.1:{free_port()}/rss.xml"
[[mirrors]]
name = "m"
type = "local"
path = "m"
public_url = "http://127.0.0.1:9/"
""")
    return config


def test_fetch_with_every_source_failing_exits_1(tmp_path: Path) -> None:
    config = _dead_source_config(tmp_path)
    result = CliRunner().invoke(cli, ["--config", str(config), "fetch"])
    assert result.exit_code == 1, result.output
    assert "error: source http://127.0.0.1:" in result.output


def test_verify_json_says_unreachable_in_json(tmp_path: Path) -> None:
    config = _dead_source_config(tmp_path)
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["--config", str(config), "verify", "--json",
                                      str(tmp_path / "empty")])
    assert result.exit_code == 3
    doc = json.loads(result.output.splitlines()[0])
    assert doc["valid"] is False
    assert "no manifest.json" in doc["error"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["verify", ".", "--key", "binary.pub"], 2, "not a minisign public key",
                     id="binary-key"),
        pytest.param(["keygen", "--out", "file.txt/k"], 1, "file.txt", id="keygen-under-a-file"),
        pytest.param(["verify", "nowhere", "--key", "k.pub"], 2, "nowhere: no such file",
                     id="missing-target"),
        pytest.param(["verify", "file.txt", "--key", "k.pub"], 3, "not a directory",
                     id="unreadable-target"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path, args: list[str], code: int,
                                               message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mirrorkit.sign import write_keypair

    monkeypatch.chdir(tmp_path)
    write_keypair(tmp_path / "k")
    (tmp_path / "binary.pub").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, no crash
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error")]) == 1


def test_archive_is_one_zip_that_verifies_and_opens_offline(tmp_path: Path) -> None:
    import zipfile

    demo = _mirrorkit("demo", "--dir", "d", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    config = str(tmp_path / "d" / "mirrorkit.toml")
    made = _mirrorkit("--config", config, "archive", "--mirror", "beta", "--out", "copy.zip",
                      cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "copy.zip"
    checked = _mirrorkit("verify", "copy.zip", "--key", str(tmp_path / "d/keys/outlet.pub"),
                         cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "mirror beta" in checked.stdout
    with zipfile.ZipFile(tmp_path / "copy.zip") as z:
        z.extractall(tmp_path / "unzipped")
    # One folder, named for the outlet and version, not files strewn where it is unpacked.
    assert [p.name for p in (tmp_path / "unzipped").iterdir()] == ["sample-courier-v1"]
    copy = tmp_path / "unzipped" / "sample-courier-v1"
    home = (copy / "index.html").read_text()
    first = re.search(r'href="(articles/[^"]+/index\.html)"', home)
    assert first and (copy / first.group(1)).is_file()
    assert "offline.zip" not in home and not (copy / "offline.zip").exists()
    unpacked = _mirrorkit("verify", str(copy), "--key", str(tmp_path / "d/keys/outlet.pub"),
                          cwd=tmp_path)
    assert unpacked.returncode == 0, unpacked.stdout + unpacked.stderr
    again = _mirrorkit("--config", config, "archive", "--mirror", "beta", "--out", "again.zip",
                       cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "copy.zip").read_bytes()


def test_on_a_terminal_logs_stay_on_stderr_and_stdout_stays_clean(tmp_path: Path) -> None:
    import pty

    demo = _mirrorkit("demo", "--dir", "d", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    leader, follower = pty.openpty()  # stderr is a terminal, stdout a pipe: $(mirrorkit build)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mirrorkit", "--config", "d/mirrorkit.toml", "build"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120,
            check=False, env={**os.environ, "COLUMNS": "120"})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith("000002")
    assert len(proc.stdout.splitlines()) == 1
    terminal = re.sub(rb"\x1b\[[0-9;]*m", b"", b"".join(chunks))
    assert b"built version 2" in terminal
