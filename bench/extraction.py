"""Extraction quality: mirrorkit beside trafilatura alone, on the generated corpus.

    python bench/extraction.py [--per-layout N] [--dump DIR]

Scores are the body-text F1 over 4-gram word shingles (the metric of Zyte's
article-extraction benchmark): per page, precision and recall of the extracted text's
shingles against the gold text's (as multisets), averaged over pages; F1 from the two
averages.  Two gold readings: with figure captions and credits (what mirrorkit's pages
should show) and without them.  Rows:

- ``mirrorkit``: :func:`mirrorkit.extract.extract_page`, body to text with
  :func:`mirrorkit.extract.html_to_text` (what ``export --json`` gives as ``text``);
- ``trafilatura (defaults)``: ``trafilatura.extract(html, url=...)``;
- ``trafilatura (mirrorkit's options)``: the options mirrorkit passes it (images, links,
  formatting and tables on, comments off).

``--dump DIR`` writes each page and its gold text, to read the corpus.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura

sys.path.insert(0, str(Path(__file__).parent))
from corpus import HELD_OUT, LAYOUTS, Page, pages
from mirrorkit import extract

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return Counter(tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1)))


def precision_recall(extracted: str, gold: str) -> tuple[float, float]:
    got, want = shingles(extracted), shingles(gold)
    common = sum((got & want).values())
    precision = common / sum(got.values()) if got else (1.0 if not want else 0.0)
    recall = common / sum(want.values()) if want else 1.0
    return precision, recall


def mirrorkit_text(page: Page) -> str:
    content = extract.extract_page(page.html.encode(), page.url)
    return extract.html_to_text(content.html) if content else ""


def trafilatura_defaults(page: Page) -> str:
    return trafilatura.extract(page.html, url=page.url) or ""


def trafilatura_like_mirrorkit(page: Page) -> str:
    return trafilatura.extract(page.html, url=page.url, include_images=True,
                               include_links=True, include_formatting=True,
                               include_tables=True, include_comments=False) or ""


EXTRACTORS: dict[str, Callable[[Page], str]] = {
    "mirrorkit": mirrorkit_text,
    "trafilatura (defaults)": trafilatura_defaults,
    "trafilatura (mirrorkit's options)": trafilatura_like_mirrorkit,
}


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-layout", type=int, default=30)
    parser.add_argument("--dump", type=Path)
    args = parser.parse_args()
    corpus = list(pages(args.per_layout))
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for page in corpus:
            (args.dump / f"{page.name}.html").write_text(page.html)
            (args.dump / f"{page.name}.gold.txt").write_text(page.gold_text)
    # scores[extractor][gold reading][layout] = list of (precision, recall)
    scores: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = {}
    cpu: dict[str, float] = {}
    for name, run in EXTRACTORS.items():
        by_gold: dict[str, dict[str, list[tuple[float, float]]]] = {"with": {}, "without": {}}
        start = time.process_time()
        for page in corpus:
            text = run(page)
            by_gold["with"].setdefault(page.layout, []).append(
                precision_recall(text, page.gold_text))
            by_gold["without"].setdefault(page.layout, []).append(
                precision_recall(text, page.gold_without_captions))
        cpu[name] = (time.process_time() - start) / len(corpus) * 1000
        scores[name] = by_gold

    def mean(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
        p = sum(x for x, _ in pairs) / len(pairs)
        r = sum(y for _, y in pairs) / len(pairs)
        return p, r, f1(p, r)

    print(f"### extraction, {len(corpus)} generated pages ({args.per_layout} per layout)\n")
    print("| extractor | F1 | precision | recall | F1 without captions in gold"
          " | CPU ms/page |")
    print("|---|---|---|---|---|---|")
    for name in EXTRACTORS:
        p, r, f = mean([x for rows in scores[name]["with"].values() for x in rows])
        _, _, f_without = mean([x for rows in scores[name]["without"].values() for x in rows])
        print(f"| {name} | {f:.3f} | {p:.3f} | {r:.3f} | {f_without:.3f} | {cpu[name]:.1f} |")
    print("\nF1 by layout (gold with captions):\n")
    print("| layout | " + " | ".join(EXTRACTORS) + " |")
    print("|---|" + "---|" * len(EXTRACTORS))
    for layout in LAYOUTS:
        cells = [f"{mean(scores[n]['with'][layout])[2]:.3f}" for n in EXTRACTORS]
        held = " (held out)" if layout in HELD_OUT else ""
        print(f"| {layout}{held} | " + " | ".join(cells) + " |")
    ours = mean([x for rows in scores["mirrorkit"]["with"].values() for x in rows])[2]
    peer = max(mean([x for rows in scores[n]["with"].values() for x in rows])[2]
               for n in EXTRACTORS if n != "mirrorkit")
    print(f"\nmirrorkit - best trafilatura = {ours - peer:+.3f} (goal: +0.010 or more)")
    held = {n: mean([x for layout in HELD_OUT for x in scores[n]["with"][layout]])[2]
            for n in EXTRACTORS}
    print("held-out layouts only: " + ", ".join(f"{n} {f:.3f}" for n, f in held.items()))


if __name__ == "__main__":
    main()
