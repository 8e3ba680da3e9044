"""The interface's language: gettext catalogs, dates and direction.

Catalogs are ``mirrorkit/locale/<lang>/LC_MESSAGES/mirrorkit.po`` inside the package, read
with Babel and compiled in memory, so they work the same from a wheel and from a source
checkout, with no build step.  English is the templates' own text; the outlet's
``language`` picks a catalog by its full tag (``pt_BR``) or its primary subtag (``pt``),
and falls back to English labels (its dates still in the outlet's language, where Babel
knows it).

``messages.pot`` beside the catalogs is what ``pybabel extract`` makes of the templates
(see ``babel.cfg``); a test checks that every catalog translates every message in it.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

DOMAIN = "mirrorkit"
# Primary language subtags written right to left; pages in them get dir="rtl".
_RTL = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ps", "sd", "ug", "ur", "yi"})


def locale_dir() -> Path:
    return Path(str(files("mirrorkit"))) / "locale"


def direction(language: str) -> str:
    """``rtl`` or ``ltr`` for a language tag such as ``fa`` or ``fa-IR``."""
    return "rtl" if _primary(language) in _RTL else "ltr"


def _primary(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def catalog_path(language: str) -> Path | None:
    """The catalog that serves ``language``, or None (English labels)."""
    tag = language.replace("-", "_")
    for name in (tag, _primary(language)):
        path = locale_dir() / name / "LC_MESSAGES" / f"{DOMAIN}.po"
        if name and path.is_file():
            return path
    return None


def shipped() -> list[str]:
    """The languages with a catalog."""
    return sorted(p.parent.parent.name for p in locale_dir().glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


@functools.lru_cache(maxsize=16)
def translations(language: str) -> NullTranslations:
    path = catalog_path(language)
    if path is None:
        return NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@functools.lru_cache(maxsize=16)
def babel_locale(language: str) -> Locale:
    for tag in (language.replace("-", "_"), _primary(language)):
        try:
            return Locale.parse(tag)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def human_time(value: datetime, language: str) -> str:
    """``28 ноября 2026 г. 09:05 UTC``: the date in words of the language, the time in UTC."""
    when, loc = _utc(value), babel_locale(language)
    return (f"{format_date(when, 'long', locale=loc)} "
            f"{format_time(when, 'HH:mm', tzinfo=UTC, locale=loc)} UTC")


def day(value: datetime, language: str) -> str:
    return format_skeleton("yMMMd", _utc(value), tzinfo=UTC, locale=babel_locale(language))
