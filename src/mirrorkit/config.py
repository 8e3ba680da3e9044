"""The config file, loaded from TOML into typed, validated values.

Every problem is reported at load time as one line naming the file, the key and the
reason, e.g. ``mirrorkit.toml: mirrors[2].bucket: required for type "s3"``.  Relative
paths are relative to the config file.  ``${ENV_VAR}`` in a string is replaced by that
variable; secrets are never echoed back in errors.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mirrorkit.errors import ConfigError

DEFAULT_CONFIG = "mirrorkit.toml"
SOURCE_TYPES = ("feed", "sitemap", "listing")
MIRROR_TYPES = ("s3", "local")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class OutletConfig:
    id: str
    name: str
    origin: str
    language: str = "en"
    description: str = ""


@dataclass(frozen=True)
class StateConfig:
    """Where the store lives: ``dir`` on this machine, and optionally ``url`` in object
    storage (with a mirror's connection keys), so any machine can run the next sync."""

    dir: Path
    url: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    provider: str = "generic"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    lease: timedelta = timedelta(minutes=15)

    def bucket(self) -> MirrorConfig | None:
        """The state's bucket as the S3 backend takes it (None: the state stays on disk).
        Named "state": the backend's messages then say which store failed."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return MirrorConfig(
            name="state", type="s3", public_url="", bucket=parts.netloc,
            prefix=parts.path.strip("/"), endpoint_url=self.endpoint_url,
            region=self.region, provider=self.provider, access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key)


@dataclass(frozen=True)
class SigningConfig:
    secret_key: Path
    public_key: Path
    expires_after: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class FetchConfig:
    allow_private_addresses: bool = False
    concurrency: int = 8
    per_host: int = 4
    # Seconds.  ``timeout`` bounds one attempt at one request from the moment it has a
    # connection slot (waiting for a free slot under ``per_host`` is never counted);
    # ``connect_timeout`` bounds name lookup and connecting, ``read_timeout`` each wait
    # for more bytes.
    timeout: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    # A server's Retry-After is honoured up to this many seconds.
    max_retry_after: float = 120.0
    # Seconds after which a run starts no new article (None: no limit); the rest is left
    # for the next run.
    run_budget: float | None = None
    max_page_size: int = 5 * 1000**2
    max_image_size: int = 10 * 1000**2
    max_articles_per_source: int = 200
    # Images are decoded and re-encoded; wider ones are scaled down to this many pixels.
    image_max_width: int = 1600
    # Per article: images past either cap are left out (their captions stay).
    max_images_per_article: int = 30
    max_image_bytes_per_article: int = 20 * 1000**2
    user_agent: str = "mirrorkit/0.1 (+https://github.com/mirrorkit)"


def _seconds(value: Any) -> float:
    """A positive number of seconds, or a duration string such as "120s" or "20m"."""
    if isinstance(value, str):
        seconds = parse_duration(value).total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"must be seconds or a duration string such as \"2m\", got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be more than 0 seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class SourceConfig:
    type: str
    url: str
    name: str
    # Listing sources only: CSS selectors for the article links and the next-page link,
    # and how many pages of the listing one run may read.
    links: str = ""
    next: str = ""
    max_pages: int = 5


@dataclass(frozen=True)
class MirrorConfig:
    name: str
    type: str
    public_url: str
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    provider: str = "generic"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BuildConfig:
    templates: Path | None = None
    home_articles: int = 50
    feed_items: int = 50
    archive_page_size: int = 100
    # The offline zip of the whole site is made again at most this often.
    offline_every: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class PublishConfig:
    grace: timedelta = timedelta(hours=1)
    concurrency: int = 8
    # Cache lifetimes of files that can change at their path (content-addressed files are
    # cached for good): the front pages and feeds, and the article and archive pages.
    cache_front: timedelta = timedelta(minutes=5)
    cache_pages: timedelta = timedelta(hours=1)
    # Files per mirror that a sync reads back besides what it wrote, picked at random, so
    # drift (a damaged or tampered object) is found over time.
    check_sample: int = 0


@dataclass(frozen=True)
class MetricsConfig:
    # Prometheus text file written after each sync or publish (node_exporter's textfile
    # collector reads it); None: no metrics.
    textfile: Path | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    outlet: OutletConfig
    state_dir: Path
    signing: SigningConfig
    fetch: FetchConfig
    build: BuildConfig
    publish: PublishConfig
    sources: tuple[SourceConfig, ...]
    mirrors: tuple[MirrorConfig, ...]
    metrics: MetricsConfig = MetricsConfig()
    state: StateConfig | None = None  # [state] as written; state_dir is its dir

    def mirror(self, name: str) -> MirrorConfig:
        for m in self.mirrors:
            if m.name == name:
                return m
        raise ConfigError(
            f"no mirror named {name!r}", where=str(self.path),
            hint="names: " + ", ".join(m.name for m in self.mirrors),
        )


# -- parsing helpers ----------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 7d)")
    return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])


def parse_size(text: str | int) -> int:
    """``5MB``, ``512KiB``, ``100`` (bytes)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512KiB, 5MB)")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]


T = TypeVar("T")


class _Table:
    """One TOML table being read: tracks the keys used so unknown ones can be named."""

    def __init__(self, data: Any, where: str, file: Path, keys: Iterable[str], *,
                 credentials: bool = True):
        self.credentials = credentials
        if not isinstance(data, dict):
            raise ConfigError("must be a table", where=f"{file.name}: {where or 'top level'}")
        self.data: dict[str, Any] = data
        self.where = where
        self.file = file
        self.known = set(keys)
        # Unknown keys first: a misspelled key is the likely cause of a "required" error.
        for key in self.data:
            if key not in self.known:
                close = difflib.get_close_matches(key, sorted(self.known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self._error(key, f"unknown key{hint}")

    def _error(self, key: str, reason: str) -> ConfigError:
        name = f"{self.where}.{key}" if self.where else key
        return ConfigError(reason, where=f"{self.file.name}: {name}")

    def get(self, key: str, kind: type[T], default: T | None = None, *,
            secret: bool = False) -> T | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, str):
            if secret and not self.credentials and any(
                    var not in os.environ for var in _ENV.findall(value)):
                return default  # a command that opens no mirror runs without them
            value = self._expand(key, value, secret)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            shown = "(hidden)" if secret else repr(value)
            raise self._error(key, f"must be {kind.__name__}, got {shown}")
        return value

    def require(self, key: str, kind: type[T], reason: str = "required") -> T:
        value = self.get(key, kind)
        if value is None or value == "":
            raise self._error(key, reason)
        return value

    def convert(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        raw = self.get(key, object)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as e:
            raise self._error(key, str(e)) from e

    def _expand(self, key: str, value: str, secret: bool) -> str:
        def sub(m: re.Match[str]) -> str:
            var = m.group(1)
            if var not in os.environ:
                raise self._error(key, f"environment variable {var} is not set")
            return os.environ[var]

        return _ENV.sub(sub, value)


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a URL string")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        # Never echoed: what is before the "@" may be a secret.
        raise ValueError("must not carry a user name or password (they would show in logs"
                         " and errors); give a mirror's storage keys as access_key_id and"
                         " secret_access_key")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


# Credentials in a URL would be printed wherever the URL is (errors, logs, JSON).
_USERINFO = ("must not hold credentials (USER:SECRET@); give them as access_key_id and "
             "secret_access_key, or in the environment")


def _has_userinfo(url: str) -> bool:
    return "@" in urlsplit(url).netloc


def _base_url(value: Any) -> str:
    url = _url(value)
    return url if url.endswith("/") else url + "/"


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"must be a whole number of at least 1, got {value!r}")
    return value


def _non_negative(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"must be a whole number of at least 0, got {value!r}")
    return value


def _str_duration(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"must be a duration string such as \"7d\", got {value!r}")
    return parse_duration(value)


# -- loading ------------------------------------------------------------------------------

# Each table's keys are its dataclass's fields: one list, which the docs test checks too.
_TABLES: dict[str, Any] = {
    "outlet": OutletConfig, "state": StateConfig, "signing": SigningConfig,
    "fetch": FetchConfig, "build": BuildConfig, "publish": PublishConfig,
    "sources": SourceConfig, "mirrors": MirrorConfig, "metrics": MetricsConfig,
}


def _keys(kind: Any) -> list[str]:
    return [f.name for f in fields(kind)]


def load(path: Path, *, credentials: bool = True, state_credentials: bool | None = None,
         ) -> Config:
    """Read and validate ``path``; raises :class:`ConfigError` naming file, key and reason.

    With ``credentials=False`` (for commands that open no mirror: ``status``, ``export``)
    a storage credential whose environment variable is not set is left out, not an error;
    ``state_credentials`` (default: the same) says it for ``[state]`` alone, which
    ``export`` opens when the state is kept in a bucket.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(
            "config file not found", where=str(path),
            hint="give --config PATH or run 'mirrorkit init'",
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config: {e}", where=str(path)) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", where=str(path)) from e
    return from_dict(raw, path, credentials=credentials, state_credentials=state_credentials)


def from_dict(raw: Mapping[str, Any], path: Path, *, credentials: bool = True,
              state_credentials: bool | None = None) -> Config:
    base = path.resolve().parent
    root = _Table(dict(raw), "", path, _TABLES)

    def table(name: str, required: bool = True) -> _Table:
        if name not in root.data and required:
            raise ConfigError("required table is missing", where=f"{path.name}: [{name}]")
        strict = credentials if name != "state" or state_credentials is None else (
            state_credentials)
        return _Table(root.data.get(name, {}), name, path, _keys(_TABLES[name]),
                      credentials=strict)

    def rel(p: str) -> Path:
        return (base / Path(p).expanduser()).resolve()

    t = table("outlet")
    outlet_id = t.require("id", str)
    if not _NAME.match(outlet_id):
        raise ConfigError("must be lowercase letters, digits, '-' or '_'",
                          where=f"{path.name}: outlet.id")
    outlet = OutletConfig(
        id=outlet_id,
        name=t.require("name", str),
        origin=t.convert("origin", _base_url, ""),
        language=t.get("language", str, "en") or "en",
        description=t.get("description", str, "") or "",
    )
    if not outlet.origin:
        raise ConfigError("required", where=f"{path.name}: outlet.origin")

    state = _state(table("state", required=False), path, rel)
    state_dir = state.dir

    t = table("signing")
    signing = SigningConfig(
        secret_key=rel(t.require("secret_key", str)),
        public_key=rel(t.require("public_key", str)),
        expires_after=t.convert("expires_after", _str_duration, timedelta(days=7)),
    )

    t = table("fetch", required=False)
    d = FetchConfig()
    fetch = FetchConfig(
        allow_private_addresses=bool(t.get("allow_private_addresses", bool, False)),
        concurrency=t.convert("concurrency", _positive, d.concurrency),
        per_host=t.convert("per_host", _positive, d.per_host),
        timeout=t.convert("timeout", _seconds, d.timeout),
        connect_timeout=t.convert("connect_timeout", _seconds, d.connect_timeout),
        read_timeout=t.convert("read_timeout", _seconds, d.read_timeout),
        max_retry_after=t.convert("max_retry_after", _seconds, d.max_retry_after),
        run_budget=t.convert("run_budget", _seconds, 0.0) or None,
        max_page_size=t.convert("max_page_size", parse_size, d.max_page_size),
        max_image_size=t.convert("max_image_size", parse_size, d.max_image_size),
        max_articles_per_source=t.convert("max_articles_per_source", _positive,
                                          d.max_articles_per_source),
        image_max_width=t.convert("image_max_width", _positive, d.image_max_width),
        max_images_per_article=t.convert("max_images_per_article", _non_negative,
                                         d.max_images_per_article),
        max_image_bytes_per_article=t.convert("max_image_bytes_per_article", parse_size,
                                              d.max_image_bytes_per_article),
        user_agent=t.get("user_agent", str, d.user_agent) or d.user_agent,
    )

    t = table("build", required=False)
    templates = t.get("templates", str)
    build = BuildConfig(
        templates=rel(templates) if templates else None,
        home_articles=t.convert("home_articles", _positive, BuildConfig.home_articles),
        feed_items=t.convert("feed_items", _positive, BuildConfig.feed_items),
        archive_page_size=t.convert("archive_page_size", _positive,
                                    BuildConfig.archive_page_size),
        offline_every=t.convert("offline_every", _str_duration, BuildConfig.offline_every),
    )

    t = table("publish", required=False)
    publish = PublishConfig(
        grace=t.convert("grace", _str_duration, PublishConfig.grace),
        concurrency=t.convert("concurrency", _positive, PublishConfig.concurrency),
        cache_front=t.convert("cache_front", _str_duration, PublishConfig.cache_front),
        cache_pages=t.convert("cache_pages", _str_duration, PublishConfig.cache_pages),
        check_sample=t.convert("check_sample", _non_negative, PublishConfig.check_sample),
    )

    t = table("metrics", required=False)
    textfile = t.get("textfile", str)
    metrics = MetricsConfig(textfile=rel(textfile) if textfile else None)

    sources = tuple(_source(s, i, path) for i, s in enumerate(_array(root, "sources", path)))
    mirrors = tuple(
        _mirror(m, i, path, rel, credentials)
        for i, m in enumerate(_array(root, "mirrors", path))
    )
    seen: set[str] = set()
    places: dict[tuple[str, ...], str] = {}
    for i, m in enumerate(mirrors):
        if m.name in seen:
            raise ConfigError(f"duplicate mirror name {m.name!r}",
                              where=f"{path.name}: mirrors[{i}].name")
        seen.add(m.name)
        # Two mirrors in one place would overwrite each other's signed manifest.
        place = ((m.type, str(m.path)) if m.type == "local" else
                 (m.type, m.endpoint_url or "", m.bucket or "", m.prefix.strip("/")))
        key = "path" if m.type == "local" else "bucket"
        if place in places:
            raise ConfigError(f"the same place as mirror {places[place]!r}",
                              where=f"{path.name}: {mirror_label(m.name, i)}.{key}",
                              hint="each mirror needs its own directory, bucket or prefix")
        places[place] = m.name
    return Config(path=path.resolve(), outlet=outlet, state_dir=state_dir, signing=signing,
                  fetch=fetch, build=build, publish=publish, sources=sources,
                  mirrors=mirrors, metrics=metrics, state=state)


def _array(root: _Table, key: str, path: Path) -> list[Any]:
    value = root.data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"must be an array of tables: [[{key}]]", where=f"{path.name}: {key}")
    return value


def _source(raw: Any, i: int, path: Path) -> SourceConfig:
    t = _Table(raw, f"sources[{i}]", path, _keys(SourceConfig))
    kind = t.get("type", str, "feed") or "feed"
    if kind not in SOURCE_TYPES:
        raise t._error("type", f"must be one of {', '.join(SOURCE_TYPES)}, got {kind!r}")
    url = t.convert("url", _url, "")
    if not url:
        raise t._error("url", "required")
    links = t.convert("links", _css, "")
    if kind == "listing" and not links:
        raise t._error("links", 'required for type "listing" (a CSS selector for article links)')
    for key in ("links", "next", "max_pages"):
        if kind != "listing" and key in t.data:
            raise t._error(key, f'only for type "listing", not {kind!r}')
    return SourceConfig(type=kind, url=url, name=t.get("name", str, url) or url, links=links,
                        next=t.convert("next", _css, ""),
                        max_pages=t.convert("max_pages", _positive, 5))


def _css(value: Any) -> str:
    """A CSS selector lxml can run (cssselect's dialect)."""
    import cssselect  # only configs with listing sources pay for it (start-up time)

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a CSS selector, got {value!r}")
    try:
        cssselect.GenericTranslator().css_to_xpath(value)
    except cssselect.SelectorError as e:
        raise ValueError(f"not a CSS selector lxml can use: {value!r} ({e})") from e
    return value.strip()


def mirror_label(name: object, i: int) -> str:
    """How errors name a mirror: by its name when it has one (``mirrors[name=r2]``), as
    ops know it, else by its place in the file."""
    if isinstance(name, str) and _NAME.match(name):
        return f"mirrors[name={name}]"
    return f"mirrors[{i}]"


def _mirror(raw: Any, i: int, path: Path, rel: Callable[[str], Path],
            credentials: bool = True) -> MirrorConfig:
    label = mirror_label(raw.get("name") if isinstance(raw, dict) else None, i)
    t = _Table(raw, label, path, _keys(MirrorConfig), credentials=credentials)
    name = t.require("name", str)
    if not _NAME.match(name):
        raise t._error("name", "must be lowercase letters, digits, '-' or '_'")
    kind = t.require("type", str)
    if kind not in MIRROR_TYPES:
        raise t._error("type", f"must be one of {', '.join(MIRROR_TYPES)}, got {kind!r}")
    public_url = t.convert("public_url", _base_url, "")
    if not public_url:
        raise t._error("public_url", "required: the URL readers use to reach this mirror")
    local_path = t.get("path", str)
    bucket = t.get("bucket", str)
    prefix = (t.get("prefix", str, "") or "").strip("/")
    if kind == "local" and not local_path:
        raise t._error("path", 'required for type "local"')
    if kind == "s3" and not bucket:
        raise t._error("bucket", 'required for type "s3"')
    return MirrorConfig(
        name=name, type=kind, public_url=public_url,
        path=rel(local_path) if local_path else None, bucket=bucket, prefix=prefix,
        **_connection(t, s3=kind == "s3"),
    )


def _connection(t: _Table, *, s3: bool) -> dict[str, Any]:
    """The keys that reach an S3-compatible store, as a mirror and [state] give them."""
    endpoint = t.get("endpoint_url", str)
    if endpoint:
        if _has_userinfo(endpoint):
            raise t._error("endpoint_url", _USERINFO)
        try:
            _url(endpoint)
        except ValueError as e:
            raise t._error("endpoint_url", str(e)) from e
    provider = t.get("provider", str, "generic") or "generic"
    if s3:
        from mirrorkit.publish.providers import providers  # the publisher's data

        if provider not in providers():
            raise t._error("provider", f"unknown provider {provider!r}; known: "
                                       + ", ".join(sorted(providers())))
    return {
        "endpoint_url": endpoint,
        "region": t.get("region", str, "us-east-1") or "us-east-1",
        "provider": provider,
        "access_key_id": t.get("access_key_id", str, secret=True),
        "secret_access_key": t.get("secret_access_key", str, secret=True),
    }


def _state(t: _Table, path: Path, rel: Callable[[str], Path]) -> StateConfig:
    url = t.get("url", str) or None
    if url is None:
        extra = sorted(set(t.data) - {"dir"})
        if extra:
            raise t._error(extra[0], 'only with url = "s3://BUCKET/PREFIX"')
        return StateConfig(dir=rel(t.get("dir", str, "state") or "state"))
    if _has_userinfo(url):
        raise t._error("url", _USERINFO)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise t._error("url", f'must be "s3://BUCKET/PREFIX", got {url!r}')
    connection = _connection(t, s3=True)
    from mirrorkit.publish.providers import providers

    if not providers()[connection["provider"]].conditional_writes:
        raise t._error("provider", f"{connection['provider']!r} has no conditional writes, "
                                   "which the state's lease needs; name the store's preset "
                                   "(aws, r2, minio)")
    lease = t.convert("lease", _str_duration, StateConfig.lease)
    if lease.total_seconds() < 1:
        raise t._error("lease", f"must be at least 1s, got {t.data['lease']!r}")
    return StateConfig(dir=rel(t.get("dir", str, "state") or "state"), url=url, lease=lease,
                       **connection)
