"""A corpus of news-like pages with gold body text, generated (seeded, so every run is the same).

Each page is one article written into one of six page layouts modelled on common
publishing systems, with the boilerplate real outlets put around and inside articles.
The generator was written from what such pages look like, before and independently of
mirrorkit's extraction rules; it is not tuned to them (see bench/README.md).

Layouts (``LAYOUTS``):

- ``wordpress``: ``<article class="post">`` / ``.entry-content``, a Jetpack-like share
  bar and "related posts" block, a newsletter box inside the content, comments below;
- ``newsroom``: no ``<article>``; ``div.article-body`` of ``p.paragraph`` blocks, "Read
  more:" links between paragraphs, a donation appeal, most-read list in a sidebar;
- ``drupal``: ``div.field--name-body`` inside nested wrappers, tags and an author bio
  after the body, a cookie banner at the top of ``<body>``;
- ``ghost``: ``section.gh-content`` with ``kg-card`` figures, a "subscribe" call to
  action and a "you might also like" list;
- ``plain``: a hand-made site: paragraphs straight in ``<main>`` under ``<div>`` wrappers
  with neutral class names (``box-1``), boilerplate with neutral names too;
- ``legacy`` (held out): a table layout from an old CMS, the body in a ``<td>`` with
  ``<font>`` and ``<br><br>`` breaks, captions in a table row under the picture, "Print
  | E-mail this story" links and a "Top stories" box in another cell;
- ``blocks`` (held out): a JavaScript-era page rendered to HTML: text blocks as
  ``<div data-block="text">`` with no ``<p>``, ``<picture>`` with ``<source>`` and the
  caption in a ``<p class="img-cap">``, a "Trending now" box and a comment teaser with
  neutral class names (``t-1``, ``c-2``), a "Listen to this article" player;
- ``amp``: schema.org microdata (``itemprop="articleBody"``), JSON-LD ``NewsArticle``,
  captions as ``<figcaption>`` with a separate credit ``<span>``, a live "key points" list.

Every article has 4-12 paragraphs, and at random: sub-headings, a bulleted or numbered
list, a block quote, a table, one to three figures with a caption and a credit.

Gold text is what a reader of the article needs: the headline is *not* in it (pages
render it apart), the body's paragraphs, headings, list items, quotes, table cells and
figure captions with credits are.  ``gold_without_captions`` leaves the captions out,
for a reading closer to benchmarks whose gold text has none.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape

LAYOUTS = ("wordpress", "newsroom", "drupal", "ghost", "plain", "amp", "legacy", "blocks")
# Written after mirrorkit's extraction rules, and never used to change them: the score on
# these is the fairer estimate of how the rules carry over to layouts they were not
# written with.
HELD_OUT = ("legacy", "blocks")

_SUBJECTS = (
    "The regional council", "A spokesperson for the ministry", "Local teachers",
    "The harbour authority", "Residents of the old quarter", "The opposition leader",
    "Farmers in the valley", "The city's transport office", "Independent auditors",
    "Hospital staff", "The mayor's office", "Several shop owners", "The weather service",
    "Volunteers from the river trust", "A group of students", "The court of appeal",
)
_VERBS = (
    "said on Tuesday that", "warned that", "confirmed that", "argued that",
    "told reporters that", "announced that", "denied reports that", "estimated that",
    "wrote in a letter that", "insisted that", "admitted that", "expects that",
)
_CLAUSES = (
    "the budget for road repairs would be cut by a fifth next year",
    "the new bridge will not open before the spring floods have passed",
    "water prices in the northern districts have doubled since March",
    "the closure of the rail line would leave three villages without a bus",
    "an inquiry into the tender for school meals would begin within weeks",
    "fewer than half of the promised flats had been built by the autumn",
    "the harbour dredging had uncovered the remains of a medieval ship",
    "the price of bread rose again after the mill stopped working",
    "night trains to the capital would return in time for the holidays",
    "the hospital's new wing still lacks the staff it needs to open",
    "the heat wave had dried out wells that had never failed before",
    "the election count would take longer because of the postal votes",
    "the factory would keep its night shift at least until the summer",
    "the library would stay open on Sundays after a petition drew thousands",
    "teachers were buying paper and ink for their classes with their own money",
    "the old market hall would be sold unless the council found a tenant",
)
_TAILS = (
    "Officials did not respond to a request for comment.",
    "The figures have not been independently verified.",
    "A final decision is expected at the next session.",
    "Critics called the plan short-sighted and unfair to the poorest families.",
    "Similar measures were tried in the neighbouring province two years ago.",
    "Nobody was available at the company's offices on Wednesday.",
    "The debate lasted well past midnight and ended without a vote.",
    "Documents seen by this newspaper suggest the costs were known for months.",
)
_NAMES = ("Anna Petrova", "James Okafor", "Lena Fischer", "Omar Haddad", "Mei Lin",
          "Carlos Ruiz", "Sofia Rossi", "Tomasz Nowak", "Aisha Bello", "Jonas Berg")
_HEADINGS = ("What happens next", "The cost of the plan", "Reactions in the villages",
             "A long dispute", "What the numbers show", "Voices from the street",
             "How we got here", "The view from the council")
_PLACES = ("Harwick", "Dunmere", "Oakfield", "Rivenford", "Castlebury", "Lowmarsh")
_RELATED = ("Council votes to close the eastern library branch",
            "Five things to know about the new tram line",
            "Opinion: the harbour deserves better than this plan",
            "Storm damage: what insurers are saying",
            "Photos: the festival returns after three years",
            "Why the price of bread keeps rising", "Police appeal for witnesses after fire",
            "Schools to open later in winter, ministry says")


@dataclass
class Page:
    """One generated page: its HTML, and the gold text of its article."""

    name: str
    layout: str
    url: str
    html: str
    title: str
    gold: list[str] = field(default_factory=list)  # body blocks, in order
    captions: list[str] = field(default_factory=list)  # figure captions with credits

    @property
    def gold_text(self) -> str:
        return "\n".join(self.gold)

    @property
    def gold_without_captions(self) -> str:
        return "\n".join(b for b in self.gold if b not in self.captions)


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_CLAUSES)}."


def _paragraph(rng: random.Random) -> str:
    parts = [_sentence(rng) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.5:
        parts.append(rng.choice(_TAILS))
    return " ".join(parts)


@dataclass
class _Body:
    """The article's blocks as HTML (layout-specific wrappers added by the layout)."""

    blocks: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _body(rng: random.Random, figure: Callable[[str, str, str], str], base: str,
          read_more: Callable[[str], str] | None = None) -> _Body:
    body = _Body()
    n = rng.randint(4, 12)
    figure_at = sorted(rng.sample(range(n), k=min(n, rng.randint(1, 3))))
    for i in range(n):
        if i in figure_at:
            caption = (f"{rng.choice(_SUBJECTS)} in {rng.choice(_PLACES)} on "
                       f"{rng.choice(('Monday', 'Friday', 'Sunday'))} morning.")
            credit = f"Photo: {rng.choice(_NAMES)}"
            src = f"{base}images/{rng.randrange(10**6)}.jpg"
            body.blocks.append(figure(src, caption, credit))
            body.gold.append(f"{caption} {credit}")
            body.captions.append(f"{caption} {credit}")
            body.images.append(src)
        if i > 1 and rng.random() < 0.2:
            heading = rng.choice(_HEADINGS)
            body.blocks.append(f"<h2>{escape(heading)}</h2>")
            body.gold.append(heading)
        text = _paragraph(rng)
        body.blocks.append(f"<p>{escape(text)}</p>")
        body.gold.append(text)
        if read_more and rng.random() < 0.25:
            body.blocks.append(read_more(rng.choice(_RELATED)))
        roll = rng.random()
        if roll < 0.12:
            items = [_sentence(rng) for _ in range(rng.randint(3, 5))]
            tag = rng.choice(("ul", "ol"))
            body.blocks.append(f"<{tag}>" + "".join(f"<li>{escape(t)}</li>" for t in items)
                               + f"</{tag}>")
            body.gold += items
        elif roll < 0.22:
            quote = _sentence(rng)
            who = rng.choice(_NAMES)
            body.blocks.append(f"<blockquote><p>{escape(quote)}</p><p>— {who}</p></blockquote>")
            body.gold += [quote, f"— {who}"]
        elif roll < 0.28:
            rows = [(p, str(rng.randint(100, 9999)), f"{rng.randint(-30, 30)}%")
                    for p in rng.sample(_PLACES, 4)]
            cells = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
            body.blocks.append("<table><thead><tr><th>District</th><th>Households</th>"
                               f"<th>Change</th></tr></thead><tbody>{cells}</tbody></table>")
            body.gold += ["District Households Change", *(" ".join(r) for r in rows)]
    return body


def _share() -> str:
    return ('<div class="share-bar"><span>Share this article</span>'
            '<a href="https://facebook.example/share">Facebook</a>'
            '<a href="https://x.example/intent">X</a><a href="mailto:?subject=x">Email</a>'
            '<button>Copy link</button></div>')


def _related_list(rng: random.Random, heading: str, cls: str) -> str:
    items = "".join(f'<li><a href="/news/{rng.randrange(10**5)}">{t}</a></li>'
                    for t in rng.sample(_RELATED, 4))
    return f'<div class="{cls}"><h3>{heading}</h3><ul>{items}</ul></div>'


_NEWSLETTER = ("Get the morning briefing: the day's news in your inbox before breakfast. "
               "Sign up for our free newsletter.")
_DONATE = ("Independent journalism needs your support. Our reporting is free for everyone "
           "because readers like you chip in. Donate today, from just 2 euros a month.")
_COOKIES = ("We use cookies to improve your experience and to measure our audience. "
            "By continuing to browse you agree to our use of cookies.")


def _page(head: str, body: str, lang: str = "en") -> str:
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">{head}</head>'
            f"<body>{body}</body></html>")


def _meta(title: str, url: str, author: str, date: str, site: str) -> str:
    return (f"<title>{escape(title)} | {site}</title>"
            f'<link rel="canonical" href="{url}">'
            f'<meta property="og:title" content="{escape(title)}">'
            f'<meta property="og:url" content="{url}">'
            f'<meta name="author" content="{author}">'
            f'<meta property="article:published_time" content="{date}">'
            '<script>window.dataLayer=[];</script>')


def _wordpress(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<figure class="wp-block-image"><img src="{src}" alt="" width="1200" '
                f'height="800"><figcaption>{caption} {credit}</figcaption></figure>')
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    blocks = body.blocks
    blocks.insert(min(3, len(blocks)), f'<div class="newsletter-signup"><p>{_NEWSLETTER}</p>'
                  '<form><input type="email"><button>Subscribe</button></form></div>')
    _keep(page, body)
    return _page(meta, (
        '<header class="site-header"><a href="/">The Valley Post</a><nav><ul>'
        '<li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li></ul></nav>'
        f'</header><div id="primary"><article class="post"><h1 class="entry-title">'
        f'{escape(page.title)}</h1><div class="entry-meta">By <a rel="author">{author}</a>'
        f'</div><div class="entry-content">{"".join(blocks)}</div>'
        f'<div class="sharedaddy sd-sharing-enabled">{_share()}</div>'
        f'{_related_list(rng, "Related", "jp-relatedposts")}</article>'
        '<div id="comments"><h2>2 comments</h2><ol class="commentlist"><li>'
        "<p>Great article, thanks for writing about the bridge.</p></li><li>"
        "<p>The council never listens to us anyway.</p></li></ol></div></div>"
        '<footer>© The Valley Post. All rights reserved.</footer>'))


def _newsroom(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<div class="media"><img src="{src}" alt="{escape(caption)}">'
                f'<div class="caption"><span class="caption-text">{caption}</span> '
                f'<span class="credit">{credit}</span></div></div>')

    def read_more(title: str) -> str:
        return (f'<p class="paragraph related-inline"><strong>Read more:</strong> '
                f'<a href="/news/{rng.randrange(10**5)}">{title}</a></p>')
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/", read_more)
    blocks = [b.replace("<p>", '<p class="paragraph">', 1) if b.startswith("<p>") else b
              for b in body.blocks]
    _keep(page, body)
    return _page(meta, (
        '<div class="top-bar"><a href="/">Northern Courier</a><a href="/login">Log in</a></div>'
        f'<div class="layout"><div class="main-col"><div class="headline"><h1>'
        f'{escape(page.title)}</h1></div><div class="byline">{author} · 4 min read</div>'
        f'<div class="article-body">{"".join(blocks)}</div>'
        f'<div class="donation-appeal"><h3>Before you go</h3><p>{_DONATE}</p>'
        '<a class="btn" href="/donate">Support us</a></div></div>'
        f'<div class="sidebar">{_related_list(rng, "Most read", "most-read")}</div></div>'
        '<div class="footer">Northern Courier, 12 Market Street. Contact us.</div>'))


def _drupal(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<div class="media media--image"><figure><img src="{src}" alt="">'
                f'<figcaption>{caption} <em>{credit}</em></figcaption></figure></div>')
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    _keep(page, body)
    tags = "".join(f'<li><a href="/tags/{t}">{t}</a></li>' for t in rng.sample(_PLACES, 3))
    return _page(meta, (
        f'<div id="cookie-notice" class="eu-cookie-compliance"><p>{_COOKIES}</p>'
        '<button>Accept</button></div><div class="dialog-off-canvas-main-canvas">'
        '<div class="region region-header"><a href="/">Lowland Gazette</a></div>'
        '<div class="region region-content"><div class="node node--type-article">'
        f'<h1 class="page-title"><span>{escape(page.title)}</span></h1>'
        f'<div class="field field--name-field-author">{author}</div>'
        '<div class="clearfix text-formatted field field--name-body"><div class="field__item">'
        f'{"".join(body.blocks)}</div></div><div class="field field--name-field-tags">'
        f'<div class="field__label">Tags</div><ul class="links">{tags}</ul></div>'
        f'<div class="author-bio"><p>{author} covers local politics for the Gazette. '
        "Before that she reported from the capital for ten years.</p></div>"
        '</div></div></div></div><div class="region region-footer">© Lowland Gazette</div>'))


def _ghost(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<figure class="kg-card kg-image-card kg-card-hascaption"><img '
                f'src="{src}" class="kg-image" alt="" loading="lazy">'
                f"<figcaption>{caption} <span>{credit}</span></figcaption></figure>")
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    _keep(page, body)
    return _page(meta, (
        '<header class="gh-head"><a class="gh-head-logo" href="/">River Notes</a></header>'
        f'<main class="gh-main"><article class="gh-article post"><header class="gh-article-'
        f'header"><h1 class="gh-article-title">{escape(page.title)}</h1>'
        f'<p class="gh-article-excerpt">{escape(_sentence(rng))}</p>'
        f'<span class="gh-article-author">{author}</span></header>'
        f'<section class="gh-content gh-canvas">{"".join(body.blocks)}</section>'
        '<section class="footer-cta"><h2>Sign up for River Notes</h2>'
        f"<p>{_NEWSLETTER}</p><a href=\"#/portal/\">Subscribe</a></section></article>"
        f'<aside class="read-more-wrap">{_related_list(rng, "You might also like", "read-more")}'
        '</aside></main><footer class="gh-foot">River Notes © 2026 · Powered by Ghost</footer>'))


def _plain(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<div class="pic"><img src="{src}" alt=""><br><i>{caption}</i> '
                f"<small>{credit}</small></div>")
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    blocks = body.blocks
    blocks.insert(min(4, len(blocks)), f'<div class="box-3"><p><b>{_DONATE}</b></p></div>')
    _keep(page, body)
    return _page(meta, (
        '<div class="box-1"><a href="/">Castlebury Today</a> | <a href="/archive">Archive</a>'
        f'</div><main><div class="box-2"><h1>{escape(page.title)}</h1><p>by {author}</p>'
        f'{"".join(blocks)}</div><div class="box-4"><p>Share: '
        '<a href="https://facebook.example/">Facebook</a> '
        '<a href="https://x.example/">X</a></p></div>'
        f'<div class="box-5">{_related_list(rng, "More news", "box-6")}</div></main>'
        f'<div class="box-7"><p>{_COOKIES}</p></div>'))


def _amp(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<figure itemprop="image" itemscope itemtype="https://schema.org/ImageObject">'
                f'<img src="{src}" alt="" width="1600" height="900"><figcaption>'
                f'<span class="caption">{caption}</span> <span class="credit">{credit}'
                "</span></figcaption></figure>")
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    points = [_sentence(rng) for _ in range(3)]
    key_points = ('<div class="key-points"><h2>Key points</h2><ul>'
                  + "".join(f"<li>{escape(p)}</li>" for p in points) + "</ul></div>")
    body.blocks.insert(0, key_points)
    body.gold = ["Key points", *points, *body.gold]
    _keep(page, body)
    ld = json.dumps({
        "@context": "https://schema.org", "@type": "NewsArticle", "headline": page.title,
        "author": [{"@type": "Person", "name": author}], "datePublished": "2026-11-02T08:00:00Z",
        "articleSection": "Politics", "image": body.images[:1],
    })
    return _page(meta + f'<script type="application/ld+json">{ld}</script>', (
        '<header><a href="/">Harbour Herald</a><nav><a href="/politics">Politics</a></nav>'
        '</header><main><article itemscope itemtype="https://schema.org/NewsArticle">'
        f'<h1 itemprop="headline">{escape(page.title)}</h1><div class="byline" '
        f'itemprop="author">{author}</div><div itemprop="articleBody">{"".join(body.blocks)}'
        f'</div></article>{_share()}<div class="newsletter"><p>{_NEWSLETTER}</p></div>'
        f'{_related_list(rng, "Related stories", "related-stories")}</main>'
        "<footer>Harbour Herald · Imprint · Privacy</footer>"))


def _legacy(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<table class="photo" width="400"><tr><td><img src="{src}" width="400" '
                f'border="0"></td></tr><tr><td><font size="1">{caption} ({credit})</font>'
                "</td></tr></table>")
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    # The credit reads "(Photo: X)" on these pages.
    body.gold = [g.replace(" Photo: ", " (Photo: ", 1) + ")" if g in body.captions else g
                 for g in body.gold]
    body.captions = [c.replace(" Photo: ", " (Photo: ", 1) + ")" for c in body.captions]
    blocks = [b.replace("<p>", "", 1).replace("</p>", "<br><br>") if b.startswith("<p>")
              else b for b in body.blocks]
    _keep(page, body)
    top = "".join(f'<a href="/s/{rng.randrange(10**5)}">{t}</a><br>'
                  for t in rng.sample(_RELATED, 5))
    return _page(meta, (
        '<table width="100%"><tr><td colspan="2"><img src="/logo.gif"> Dunmere Evening '
        'Star</td></tr><tr><td width="150" valign="top"><a href="/">Front page</a><br>'
        '<a href="/local">Local</a><br><a href="/sport">Sport</a></td>'
        f'<td valign="top"><font size="5"><b>{escape(page.title)}</b></font><br>'
        f'<font size="2">{author}, Staff Writer</font><br><br><font size="3">'
        f'{"".join(blocks)}</font><br><a href="/print">Print</a> | '
        '<a href="/email">E-mail this story</a></td><td width="200" valign="top">'
        f"<b>Top stories</b><br>{top}</td></tr></table>"
        '<center><font size="1">Copyright 2026 Dunmere Evening Star</font></center>'))


def _blocks(rng: random.Random, page: Page, meta: str, author: str) -> str:
    def figure(src: str, caption: str, credit: str) -> str:
        return (f'<div data-block="image"><picture><source srcset="{src}.webp" '
                f'type="image/webp"><img src="{src}" alt=""></picture>'
                f'<p class="img-cap">{caption} {credit}</p></div>')
    body = _body(rng, figure, page.url.rsplit("/", 2)[0] + "/")
    blocks = [f'<div data-block="text">{b[3:-4]}</div>' if b.startswith("<p>") else b
              for b in body.blocks]
    _keep(page, body)
    trending = "".join(f'<div class="t-2"><a href="/a/{rng.randrange(10**5)}">{t}</a></div>'
                       for t in rng.sample(_RELATED, 4))
    return _page(meta, (
        '<div id="app"><div class="h-1"><a href="/">Rivenford Now</a></div>'
        f'<div class="l-1"><div class="a-1"><h1>{escape(page.title)}</h1>'
        f'<div class="m-1"><span>{author}</span><span>2 November 2026</span></div>'
        '<div class="p-1"><button>▶ Listen to this article</button><span>5 min</span></div>'
        f'<div class="b-1">{"".join(blocks)}</div></div>'
        f'<div class="t-1"><div class="t-3">Trending now</div>{trending}</div>'
        '<div class="c-2"><a href="#comments">Join the conversation (14 comments)</a></div>'
        '</div><div class="f-1">Rivenford Now · About · Jobs · Privacy</div></div>'))


def _keep(page: Page, body: _Body) -> None:
    page.gold = body.gold
    page.captions = body.captions


_BUILDERS = {"wordpress": _wordpress, "newsroom": _newsroom, "drupal": _drupal,
             "ghost": _ghost, "plain": _plain, "amp": _amp, "legacy": _legacy,
             "blocks": _blocks}


def pages(per_layout: int = 10, seed: int = 2026) -> Iterator[Page]:
    """``per_layout`` pages of each layout, the same ones for the same seed."""
    for layout in LAYOUTS:
        for i in range(per_layout):
            rng = random.Random(f"{seed}-{layout}-{i}")
            title = (f"{rng.choice(_PLACES)}: {rng.choice(_SUBJECTS).split(' ', 1)[1]} "
                     f"{rng.choice(('under pressure', 'split over plan', 'wins appeal'))}")
            url = f"https://{layout}.example/news/{i}-{layout}.html"
            author = rng.choice(_NAMES)
            meta = _meta(title, url, author, "2026-11-02T08:00:00Z", layout)
            page = Page(name=f"{layout}-{i}", layout=layout, url=url, html="", title=title)
            page.html = _BUILDERS[layout](rng, page, meta, author)
            yield page
