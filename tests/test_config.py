"""The config file: typed, validated at load, every key documented, errors that say where."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorkit import config as cfg
from mirrorkit.cli import cli, init_config_text
from mirrorkit.errors import ConfigError
from mirrorkit.resources import example_config

EXAMPLE = Path(__file__).parents[1] / "config" / "mirrorkit.toml"

MINIMAL = """
[outlet]
id = "t"
name = "T"
origin = "https://example.com/"

[signing]
secret_key = "k.key"
public_key = "k.pub"

[[sources]]
url = "https://example.com/rss"

[[mirrors]]
name = "m"
type = "local"
path = "out"
public_url = "http://127.0.0.1:8080/"
"""


def load_text(tmp_path: Path, text: str) -> cfg.Config:
    path = tmp_path / "mirrorkit.toml"
    path.write_text(text)
    return cfg.load(path)


def test_every_key_is_documented_in_the_example_config() -> None:
    # Keys shown commented out ("# templates = ...") count as documented, in their table.
    text = re.sub(r"^#\s*(\w+\s*=)", r"\1", EXAMPLE.read_text(), flags=re.M)
    doc = tomllib.loads(text)
    tables = {
        "outlet": cfg.OutletConfig, "signing": cfg.SigningConfig, "fetch": cfg.FetchConfig,
        "build": cfg.BuildConfig, "publish": cfg.PublishConfig, "state": cfg.StateConfig,
        "sources": cfg.SourceConfig, "mirrors": cfg.MirrorConfig, "metrics": cfg.MetricsConfig,
    }
    shown: dict[str, set[str]] = {}
    for table, value in doc.items():
        rows = value if isinstance(value, list) else [value]
        shown[table] = {key for row in rows for key in row}
    undocumented = [
        f"{table}.{f.name}"
        for table, kind in tables.items()
        for f in dataclasses.fields(kind)
        if f.name not in shown.get(table, set())
    ]
    unknown = [f"{table}.{key}" for table, keys in shown.items() for key in keys
               if table not in tables
               or key not in {f.name for f in dataclasses.fields(tables[table])}]
    assert undocumented == []
    assert unknown == []


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R2_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("R2_SECRET_ACCESS_KEY", "hunter2-secret")
    config = cfg.load(EXAMPLE)
    assert [m.type for m in config.mirrors] == ["s3", "local"]
    assert config.mirrors[0].secret_access_key == "hunter2-secret"
    assert "hunter2" not in repr(config)


def test_the_packaged_example_is_the_repository_one() -> None:
    assert example_config() == EXAMPLE.read_text()


def test_init_writes_a_config_that_loads_without_credentials(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "outlet")])
    assert result.exit_code == 0, result.output
    config = cfg.load(tmp_path / "outlet" / "mirrorkit.toml")
    assert [m.name for m in config.mirrors] == ["usb"]
    assert config.signing.secret_key.exists()
    assert "# access_key_id" in init_config_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(("bucket = ", "bukcet = "),
                     "mirrors[name=m].bukcet: unknown key; did you mean 'bucket'?",
                     id="misspelled-key"),
        pytest.param(('type = "s3"', 'type = "ftp"'),
                     "mirrors[name=m].type: must be one of s3, local", id="bad-mirror-type"),
        pytest.param(('bucket = "b"', ""), 'mirrors[name=m].bucket: required for type "s3"',
                     id="missing-bucket"),
        pytest.param(('expires_after = "7d"', 'expires_after = "7 days"'),
                     "signing.expires_after: not a duration", id="bad-duration"),
        pytest.param(('public_url = "https://m.example/"', 'public_url = "m.example"'),
                     "mirrors[name=m].public_url: must be an http(s) URL", id="bad-url"),
        pytest.param(('id = "t"', 'id = "T T"'), "outlet.id: must be lowercase", id="bad-id"),
        pytest.param(('bucket = "b"', 'bucket = "b"\nprovider = "dropbox"'),
                     "mirrors[name=m].provider: unknown provider 'dropbox'; known: aws,",
                     id="unknown-provider"),
        pytest.param(('url = "https://example.com/rss"',
                      'type = "listing"\nurl = "https://example.com/"'),
                     'sources[0].links: required for type "listing"', id="listing-no-links"),
        pytest.param(('url = "https://example.com/rss"',
                      'type = "listing"\nurl = "https://example.com/"\nlinks = "a[[["'),
                     "sources[0].links: not a CSS selector lxml can use", id="bad-selector"),
        pytest.param(('url = "https://example.com/rss"',
                      'url = "https://example.com/rss"\nmax_pages = 3'),
                     'sources[0].max_pages: only for type "listing"', id="listing-key-on-feed"),
        pytest.param(("[outlet]", "[outlt]"), "outlt: unknown key; did you mean 'outlet'?",
                     id="misspelled-table"),
        pytest.param(("[signing]", "[build]"), "[signing]: required table is missing",
                     id="missing-table"),
        pytest.param(('secret_access_key = "x"', 'secret_access_key = "${NO_SUCH_VAR_42}"'),
                     "environment variable NO_SUCH_VAR_42 is not set", id="missing-env"),
        pytest.param(("[signing]", '[state]\nurl = "https://b/p"\n[signing]'),
                     'state.url: must be "s3://BUCKET/PREFIX"', id="state-url-not-s3"),
        pytest.param(("[signing]", '[state]\nurl = "s3://b/p"\n[signing]'),
                     "state.provider: 'generic' has no conditional writes, which the state's "
                     "lease needs", id="state-store-without-conditional-writes"),
        pytest.param(("[signing]", '[state]\nlease = "5m"\n[signing]'),
                     'state.lease: only with url = "s3://BUCKET/PREFIX"',
                     id="state-lease-without-url"),
        pytest.param(("[signing]", '[state]\nurl = "s3://b/p"\nprovider = "minio"\n'
                                   'lease = "0s"\n[signing]'),
                     "state.lease: must be at least 1s", id="state-lease-zero"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, change: tuple[str, str],
                                                    message: str) -> None:
    text = MINIMAL.replace('[[mirrors]]\nname = "m"\ntype = "local"\npath = "out"\n'
                           'public_url = "http://127.0.0.1:8080/"',
                           '[[mirrors]]\nname = "m"\ntype = "s3"\nbucket = "b"\n'
                           'secret_access_key = "x"\npublic_url = "https://m.example/"')
    text = text.replace('[signing]\n', '[signing]\nexpires_after = "7d"\n')
    assert change[0] in text
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text.replace(change[0], change[1], 1))
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("mirrorkit.toml: ")
    assert message in line


def test_two_mirrors_in_one_place_are_a_config_error(tmp_path: Path) -> None:
    second = '\n[[mirrors]]\nname = "m2"\ntype = "local"\npath = "out"\npublic_url = "http://x/"\n'
    with pytest.raises(ConfigError,
                       match=r"mirrors\[name=m2\]\.path: the same place as mirror 'm'"):
        load_text(tmp_path, MINIMAL + second)
    load_text(tmp_path, MINIMAL + second.replace('path = "out"', 'path = "out2"'))


def test_misspelled_key_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mirrorkit.toml"
    path.write_text(MINIMAL.replace("public_url", "publc_url"))
    result = CliRunner().invoke(cli, ["--config", str(path), "fetch"])
    assert result.exit_code == 2
    assert "mirrors[name=m].publc_url: unknown key; did you mean 'public_url'?" in result.output


def test_secret_values_never_appear_in_errors(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_VALUE_VAR", "hunter2-very-secret")
    text = MINIMAL + 'access_key_id = 12\nsecret_access_key = "${SECRET_VALUE_VAR}"\n'
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text.replace("access_key_id = 12", "access_key_id = 12\nbogus = 1"))
    assert "hunter2" not in str(caught.value)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL)
    assert config.state_dir == tmp_path / "state"
    assert config.state is not None and config.state.url is None
    assert config.mirrors[0].path == tmp_path / "out"
    assert config.signing.secret_key == tmp_path / "k.key"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("7d", 604800),
                                               ("2w", 1209600)])
def test_durations(text: str, seconds: int) -> None:
    assert cfg.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(("text", "size"), [("512KiB", 524288), ("5MB", 5_000_000), ("100", 100)])
def test_sizes(text: str, size: int) -> None:
    assert cfg.parse_size(text) == size


@pytest.mark.parametrize("change", [
    ('bucket = "b"', 'bucket = "b"\nendpoint_url = "https://AKID:s3cr3t-value@s3.example/"'),
    ('bucket = "b"', 'bucket = "b"\nendpoint_url = "ftp://AKID:s3cr3t-value@s3.example/"'),
    ("[signing]", '[state]\nurl = "s3://b/p"\nprovider = "minio"\n'
                  'endpoint_url = "http://AKID:s3cr3t-value@127.0.0.1:9000"\n[signing]'),
    ("[signing]", '[state]\nurl = "s3://AKID:s3cr3t-value@b/p"\nprovider = "minio"\n[signing]'),
])
def test_credentials_in_a_url_are_refused_without_repeating_them(
        tmp_path: Path, change: tuple[str, str]) -> None:
    """botocore names the endpoint URL in its errors, so KEY:SECRET@ in it would reach every
    log, JSON summary and message; the config refuses it, and says so without the value."""
    text = MINIMAL.replace('type = "local"\npath = "out"', 'type = "s3"\nbucket = "b"')
    with pytest.raises(ConfigError, match="must not hold credentials") as caught:
        load_text(tmp_path, text.replace(*change))
    assert "s3cr3t" not in str(caught.value) and "AKID" not in str(caught.value)
