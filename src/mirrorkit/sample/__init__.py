"""The built-in sample outlet: a fictional news site served locally by aiohttp.

Shared by ``mirrorkit demo`` (offline end-to-end demo), the tests and the benchmarks;
see :mod:`mirrorkit.sample.outlet` for what it serves and which faults it can inject.
"""

from mirrorkit.sample.articles import BASE_DATE, SampleArticle, SampleImage, sample_articles
from mirrorkit.sample.outlet import (
    HOSTILE_MARKERS,
    OUTLET_STATE,
    RESET,
    OutletState,
    SampleOutlet,
    ServedRequest,
    main,
    make_app,
)

__all__ = [
    "BASE_DATE",
    "HOSTILE_MARKERS",
    "OUTLET_STATE",
    "RESET",
    "OutletState",
    "SampleArticle",
    "SampleImage",
    "SampleOutlet",
    "ServedRequest",
    "main",
    "make_app",
    "sample_articles",
]
