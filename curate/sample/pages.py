"""HTML of the sample crawl's pages: what real pages carry around their images.

Boilerplate (styles, scripts, navigation, paragraphs) makes pages tens of kB like real ones; images sit
in figures with every spelling the plan chose; some pages are malformed the way real pages are (unclosed
and stray tags, upper-case and unquoted attributes) but never so badly that an HTML5 parser and a lenient
one would disagree about which <img> elements exist.
"""

from __future__ import annotations

import html
import random

from curate.sample.plan import Page, Plan, Tag, sub_seed

_VOCAB = (
    "the of and to in is for on that with as by this from at are be it an or was which have has not more "
    "city river market report data image season local people year new first last world team study paper "
    "council water light street morning evening garden museum project annual results growth summer winter "
    "travel photo gallery history review economy science energy school music weather community archive"
).split()

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header,footer{background:#20232a;color:#eee;padding:12px 24px}
nav a{color:#9cf;margin-right:14px;text-decoration:none}
main{max-width:960px;margin:0 auto;padding:24px}
figure{margin:24px 0}figcaption{font-size:.85em;color:#666}
.lazyload{opacity:0;transition:opacity .3s}.lazyloaded{opacity:1}
@media (max-width:640px){main{padding:8px}nav a{display:block}}
"""

_SCRIPT = """
window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}
gtag('js',new Date());gtag('config','UA-000000-1',{anonymize_ip:true});
document.addEventListener('DOMContentLoaded',function(){var imgs=document.querySelectorAll('img.lazyload');
for(var i=0;i<imgs.length;i++){var s=imgs[i].getAttribute('data-src');if(s){imgs[i].src=s;}}});
"""


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_VOCAB) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 8)))


def _attr(value: str, rng: random.Random, use_entities: bool) -> str:
    text = html.escape(value, quote=True)
    if use_entities:  # named and numeric references, as many CMSs write them
        text = text.replace("é", "&eacute;").replace("ü", "&uuml;").replace("’", "&#8217;").replace("“", "&#x201C;")
    return text


def _unquotable(value: str) -> bool:
    return bool(value) and not any(c in value for c in " \t\n\"'=<>`&")


def img_html(tag: Tag, rng: random.Random, use_entities: bool) -> str:
    """One <img> element for a tag, in the tag's style."""
    attrs: list[tuple[str, str]] = []
    for ref in tag.refs:
        if ref.attr == "srcset":
            continue
        attrs.append((ref.attr, ref.raw))
    if tag.srcset:
        attrs.insert(1, ("srcset", ", ".join(f"{url} {d}" for url, d in tag.srcset)))
        attrs.append(("sizes", "(max-width: 640px) 100vw, 640px"))
    if any(a.startswith("data-") for a, _ in attrs):
        attrs.append(("class", "lazyload"))
    attrs.append(("alt", tag.alt))
    if tag.title:
        attrs.append(("title", tag.title))
    if rng.random() < 0.5:
        attrs.append(("loading", "lazy"))
    if tag.style == "unquoted" and all(_unquotable(v) for _, v in attrs):
        return "<img " + " ".join(f"{k}={v}" for k, v in attrs) + ">"
    upper = tag.style == "upper"
    parts = [f'{k.upper() if upper else k}="{_attr(v, rng, use_entities)}"' for k, v in attrs]
    tail = " />" if tag.style == "selfclose" else ">"
    return ("<IMG " if upper else "<img ") + " ".join(parts) + tail


def _head(page: Page, plan: Plan) -> list[str]:
    head = ["<!DOCTYPE html>", '<html lang="en">', "<head>"]
    if page.charset_where == "meta":
        head.append(f'<meta charset="{page.charset}">')
    elif page.charset_where == "http-equiv":
        head.append(f'<meta http-equiv="Content-Type" content="text/html; charset={page.charset}">')
    head.append('<meta name="viewport" content="width=device-width, initial-scale=1">')
    head.append(f"<title>{html.escape(page.title)}</title>")
    if page.robots_meta:
        head.append(f'<meta name="robots" content="{page.robots_meta}">')
    if page.base_href:
        head.append(f'<base href="{page.base_href}">')
    head += ['<link rel="stylesheet" href="/static/site.css">', f"<style>{_CSS}</style>",
             f"<script>{_SCRIPT}</script>", "</head>"]
    return head


def _nav(rng: random.Random, plan: Plan, page: Page) -> str:
    links = []
    for n in range(24):
        href = f"/section/{rng.choice(_VOCAB)}-{n}.html"
        links.append(f'<a href="{href}">{rng.choice(_VOCAB).capitalize()}</a>')
    links.append('<a href="mailto:editor@example.org">Contact</a>')
    links.append('<a href="javascript:window.print()">Print</a>')
    return "<header><nav>" + "".join(links) + "</nav></header>"


def _related(rng: random.Random) -> str:
    """The link lists real pages carry below an article (related, most read, tags)."""
    items = []
    for n in range(rng.randint(20, 40)):
        title = html.escape(_sentence(rng)[:80])
        items.append(f'<li><a href="/story/{n}-{rng.choice(_VOCAB)}.html" class="teaser">{title}</a>'
                     f'<span class="meta">{rng.randint(1, 28)} Jan</span></li>')
    tags = " ".join(f'<a href="/tag/{w}" rel="tag">{w}</a>' for w in rng.sample(_VOCAB, 12))
    return f'<aside class="related"><h2>Related</h2><ul>{"".join(items)}</ul><div class="tags">{tags}</div></aside>'


def page_html(page: Page, plan: Plan) -> str:
    """The page's HTML as text (encode with `page.charset`)."""
    rng = random.Random(sub_seed(plan.seed, "html:" + page.url))
    entities = page.charset == "utf-8" and rng.random() < 0.5
    out = _head(page, plan)
    out.append("<body>" if not page.malformed else "<BODY class=article>")
    out.append(_nav(rng, plan, page))
    out.append("<main><article>")
    out.append(f"<h1>{html.escape(page.title)}</h1>")
    for tag in page.tags:
        for _ in range(rng.randint(2, 5)):
            closing = "" if page.malformed and rng.random() < 0.4 else "</p>"
            out.append(f"<p>{_paragraph(rng)}{closing}")
        caption = html.escape(_sentence(rng))
        if page.malformed and rng.random() < 0.3:
            out.append(f"<div class=figure>{img_html(tag, rng, entities)}<span>{caption}</div></span>")
        else:
            out.append(f"<figure>{img_html(tag, rng, entities)}<figcaption>{caption}</figcaption></figure>")
    out.append("</article>")
    out.append(_related(rng))
    out.append("</main>")
    out.append("<footer><p>&copy; 2021 Sample Media &middot; All rights reserved.</p>"
               '<a href="/privacy">Privacy</a> <a href="/terms">Terms</a></footer>')
    if not page.malformed:
        out.append("</body></html>")
    return "\n".join(out)


def page_bytes(page: Page, plan: Plan) -> bytes:
    codec = {"windows-1252": "cp1252", "iso-8859-1": "latin-1"}.get(page.charset, page.charset)
    return page_html(page, plan).encode(codec, errors="xmlcharrefreplace")
