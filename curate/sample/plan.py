"""The sample crawl's plan: hosts, images, pages, and what a perfect pipeline decides for each image.

Everything here is data, decided from (seed, scale, base port) alone, before a byte is written: the
writer (`curate.sample.build`) turns the plan into files, and `truth.parquet` is the plan's own account
of each image URL. Each fault, format and duplicate case is planted far from any threshold, so the
truth does not depend on tuning: a 1x1 pixel is too small for any sensible minimum, a 64 MiB body is too
large for any sensible cap.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from PIL import Image

from curate import reasons as R
from curate.config import Config
from curate.sample import DEFAULT_PORT
from curate.sample import images as im
from curate.urls import normalize_url, url_key

USER_AGENT_TOKEN = Config().download.user_agent_token

# name -> port offset. Hosts differ by port because robots.txt and the SSRF guard work per origin.
HOSTS = {"crawl": 0, "photos": 1, "news": 2, "cdn": 3, "flaky": 4, "docs": 5}

SNAPSHOTS = (
    # id, segment, first crawl day (ISO), days crawled
    ("CC-MAIN-2021-04", "1610703495901.0", "2021-01-15", 12),
    ("CC-MAIN-2023-06", "1674764494826.88", "2023-01-26", 14),
)

ROBOTS = {
    "photos": "User-agent: *\nAllow: /\n",
    "news": f"User-agent: *\nDisallow: /admin/\n\nUser-agent: {USER_AGENT_TOKEN}\nDisallow: /embargo/\n",
    "cdn": "User-agent: *\nDisallow: /private/\n",
    "docs": "# no rules\n",
}


@dataclass
class Img:
    """One image URL of the crawl (or a non-fetchable reference such as a data: URI)."""

    name: str
    host: str  # "" for data:/javascript: references
    path: str  # decoded path on the host, or the whole raw URL for non-http references
    data: bytes | None = None  # bytes served (or carried inline); None for pure fault routes
    route: dict | None = None  # fault route in hosts.json
    fmt: str | None = None  # real format of `data` ("jpeg", ...); None if not an image
    width: int | None = None  # displayed size (after EXIF orientation)
    height: int | None = None
    text_kind: str | None = None  # None when no image content will ever be seen
    words: tuple[str, ...] = ()
    fault: str = "none"  # what the server or the file does on purpose
    stage: str = R.KEPT  # where a perfect pipeline stops it (before dedup); KEPT if it gets through
    reason: str = R.KEPT
    inline: bool = False  # carried in a WARC response record, no download
    inline_snapshot: int = 0
    inline_date: str = ""
    animated: bool = False
    dup_group: int | None = None
    dup_kind: str | None = None  # exact | pixels | near
    lookalike_group: int | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)  # other paths this image needs served
    url: str = ""  # filled by Plan.finish()

    @property
    def http(self) -> bool:
        return bool(self.host)

    def served_files(self) -> dict[str, bytes]:
        """Files (relative to the host's root) the server needs for this image."""
        files = dict(self.extra_files)
        if self.inline or self.data is None or not self.http:
            return files
        if self.route is None:
            files[self.path.lstrip("/")] = self.data
        elif "file" in self.route and self.route["file"] not in files:
            files[self.route["file"]] = self.data
        return files


@dataclass
class Ref:
    """One reference to an image from a page: how it is spelled and where it sits in the tag."""

    img: Img
    raw: str  # the attribute value as written in the HTML (before entity escaping)
    attr: str  # src | srcset | data-src | data-lazy-src | data-original
    alt: str = ""
    title: str = ""


@dataclass
class Tag:
    """One <img> element: one or more references (src, srcset candidates, lazy source)."""

    refs: list[Ref]
    srcset: list[tuple[str, str]] = field(default_factory=list)  # (raw url, descriptor) incl. non-extracted
    alt: str = ""
    title: str = ""
    style: str = "plain"  # plain | upper | unquoted | selfclose


@dataclass
class Page:
    host: str
    path: str
    title: str
    snapshots: tuple[int, ...]
    tags: list[Tag] = field(default_factory=list)
    charset: str = "utf-8"
    charset_where: str = "http"  # http | meta | http-equiv | none
    optout: str | None = None  # meta | header
    base_href: str | None = None
    malformed: bool = False
    robots_meta: str | None = None  # content of <meta name="robots"> when present
    dates: dict[int, str] = field(default_factory=dict)  # snapshot index -> WARC-Date
    revisit: bool = False  # its capture in the second snapshot is a revisit record (no payload)
    cut: bool = False  # its response record is cut short in a truncated .warc.gz
    url: str = ""


@dataclass
class Plan:
    seed: int
    scale: int
    port: int
    images: list[Img] = field(default_factory=list)  # every referenced image URL: one truth row each
    served_only: list[Img] = field(default_factory=list)  # served but never extracted (middle srcset sizes)
    pages: list[Page] = field(default_factory=list)
    routes: dict[str, dict[str, dict]] = field(default_factory=dict)
    slots_used: dict[str, int] = field(default_factory=dict)  # photo windows handed out, per pool

    def take_slot(self, pool: str) -> int | None:
        """A seed whose photo window no other image of this plan uses, or None when the pool is spent.

        scikit-image ships few photos (im.PHOTO_VARIANTS windows): two images drawn from one window would
        be duplicates the truth does not know about, so each window is used once per plan.
        """
        used = self.slots_used.get(pool, 0)
        if used >= im.PHOTO_VARIANTS:
            return None
        self.slots_used[pool] = used + 1
        return self.seed * im.PHOTO_VARIANTS + used  # window = seed % PHOTO_VARIANTS = used

    def host_url(self, host: str) -> str:
        return f"http://127.0.0.1:{self.port + HOSTS[host]}"

    def url_of(self, img: Img) -> str:
        if not img.http:
            return img.path
        return normalize_url(self.host_url(img.host) + quote(img.path, safe="/%:@!$&'()*+,;=~"))


def sub_seed(seed: int, name: str) -> int:
    """Independent, stable seed for one named thing: adding an image never changes another's bytes."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")


# ---------------------------------------------------------------------------------------------------------
# Images


def _rendered(img: Img, rendered: im.Rendered, fmt: str, quality: int = 88) -> Img:
    img.data = im.encode(rendered.image, fmt, quality=quality)
    img.fmt = fmt
    img.width, img.height = rendered.image.size
    img.text_kind = rendered.text_kind
    img.words = rendered.words
    return img


def _special(img: Img, data: bytes, fmt: str | None, size: tuple[int, int] | None, kind: str | None = "none") -> Img:
    img.data, img.fmt, img.text_kind = data, fmt, kind
    if size:
        img.width, img.height = size
    return img


def _size_of(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        return ImageOps.exif_transpose(opened).size if opened.getexif().get(0x0112) else opened.size


RENDERERS: dict[str, Callable[..., im.Rendered]] = {
    "photo": im.photo,
    "natural": im.natural,
    "document": im.document,
    "chart": im.chart,
    "table": im.table,
    "sign": im.sign,
    "screenshot": im.screenshot,
}

# Per unit of scale: how many plain content images of each renderer, and which hosts carry them.
CONTENT = {
    "photo": (30, ("photos", "news", "cdn")),  # the photo pool holds ~65 windows for every use in a plan
    "natural": (40, ("photos", "cdn")),
    "document": (20, ("docs", "news")),
    "chart": (18, ("docs", "news")),
    "table": (14, ("docs",)),
    "sign": (20, ("news", "photos")),
    "screenshot": (14, ("docs", "cdn")),
}

_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "bmp": "bmp", "tiff": "tif"}


def render(plan: Plan, kind: str, name: str, size: tuple[int, int] | None = None) -> im.Rendered:
    """Render one picture; photos and signs take unused windows of the photo pool, then fall back."""
    if kind in ("photo", "sign"):
        slot = plan.take_slot(kind)
        if slot is not None:
            return RENDERERS[kind](slot, size)
        kind = "natural" if kind == "photo" else "screenshot"  # pool spent (large --scale): still unique
    return RENDERERS[kind](sub_seed(plan.seed, name), size)


def _content_images(plan: Plan, rng: random.Random) -> list[Img]:
    out = []
    for kind, (count, hosts) in CONTENT.items():
        for i in range(count * plan.scale):
            name = f"{kind}-{i:04d}"
            fmt = "png" if kind in ("chart", "table", "screenshot") and rng.random() < 0.6 else "jpeg"
            if rng.random() < 0.08:
                fmt = "webp"
            host = hosts[i % len(hosts)]
            stem = {("photo", 4): "café-", ("natural", 5): "日本-"}.get((kind, i % 9), "")
            img = Img(name, host, f"/img/{kind}/{stem}{name}.{_EXT[fmt]}")
            out.append(_rendered(img, render(plan, kind, name), fmt))
    for i in range(2):  # scikit-image has two photos of text; real_text_photo picks by parity
        name = f"realtext-{i:04d}"
        rendered = im.real_text_photo(i)
        out.append(_rendered(Img(name, "docs", f"/scans/{name}.png"), rendered, "png"))
    return out


def _format_cases(plan: Plan) -> list[Img]:
    """Formats and modes a decoder must normalize; all are valid images a perfect pipeline keeps."""
    out = []
    s = plan.seed
    for i in range(plan.scale):
        photo_based = {"cmyk": im.cmyk_jpeg, "png16": im.png16, "webp": im.webp,
                       "exif": lambda seed: im.exif_rotated_jpeg(seed)[0]}
        slots = {kind: plan.take_slot("photo") for kind in photo_based}
        if None in slots.values():
            continue  # photo pool spent: these formats are already covered at a smaller scale
        cases: list[tuple[str, str, bytes, str, dict]] = [
            ("cmyk", "photos", photo_based["cmyk"](slots["cmyk"]), "jpeg", {}),
            ("png16", "docs", photo_based["png16"](slots["png16"]), "png", {}),
            ("palette", "cdn", im.palette_transparent_png(sub_seed(s, f"pal{i}")), "png", {}),
            ("animated", "news", im.animated_gif(sub_seed(s, f"gif{i}")), "gif", {"animated": True}),
            ("webp", "photos", photo_based["webp"](slots["webp"]), "webp", {}),
            ("exif", "photos", photo_based["exif"](slots["exif"]), "jpeg", {}),
        ]
        for kind, host, data, fmt, extra in cases:
            name = f"{kind}-{i:04d}"
            img = _special(Img(name, host, f"/media/{name}.{_EXT[fmt]}"), data, fmt, _size_of(data))
            img.animated = extra.get("animated", False)
            out.append(img)
    return out


def _decode_rejects(plan: Plan) -> list[Img]:
    """Files that download fine but must not pass decode/validate, each with its reason."""
    s = plan.seed
    out = []
    for i in range(plan.scale):
        for host in ("news", "photos", "cdn", "docs"):
            img = _special(Img(f"pixel-{host}-{i}", host, f"/t/p{i}.gif"), im.tracking_pixel("gif"), "gif", (1, 1))
            img.stage, img.reason = R.DECODE, R.TOO_SMALL
            out.append(img)
        cases = [
            # 10:1 with a 120-px short side: only the aspect ratio is wrong (a 2000x20 strip is also too small)
            ("banner", "cdn", im.encode(im.natural(sub_seed(s, f"banner{i}"), size=(1200, 120)).image, "png"), "png",
             R.BAD_ASPECT_RATIO),
            ("bomb", "flaky", im.bomb(), "png", R.TOO_MANY_PIXELS),
            ("corrupt", "photos", im.corrupt_bytes(sub_seed(s, f"corrupt{i}")), None, R.UNDECODABLE),
            ("cut", "news", im.truncated_jpeg(sub_seed(s, f"cutjpeg{i}")), "jpeg", R.TRUNCATED),
            ("bitmap", "docs", im.bmp(sub_seed(s, f"bmp{i}")), "bmp", R.UNSUPPORTED_FORMAT),
            ("scan", "docs", im.tiff(sub_seed(s, f"tiff{i}")), "tiff", R.UNSUPPORTED_FORMAT),
            ("thumb", "photos", im.small_image(sub_seed(s, f"small{i}")), "jpeg", R.TOO_SMALL),
            ("thumb2", "news", im.small_image(sub_seed(s, f"small2{i}")), "jpeg", R.TOO_SMALL),
        ]
        for kind, host, data, fmt, reason in cases:
            name = f"{kind}-{i:04d}"
            ext = _EXT.get(fmt or "jpeg", "jpg")
            img = _special(Img(name, host, f"/bad/{name}.{ext}"), data, fmt, None, kind=None)
            if reason not in (R.UNDECODABLE, R.TRUNCATED, R.TOO_MANY_PIXELS):
                img.width, img.height = _size_of(data)
                img.text_kind = "none"
            img.stage, img.reason = R.DECODE, reason
            out.append(img)
    return out


def _fault(img: Img, fault: str, route: dict | None, stage: str, reason: str) -> Img:
    img.fault, img.route, img.stage, img.reason = fault, route, stage, reason
    return img


def _download_faults(plan: Plan, rng: random.Random) -> list[Img]:
    """URLs whose server misbehaves (or forbids us) on purpose; see curate/serve.py for the route semantics."""
    out = []
    route: dict[str, Any]

    def content(name: str, host: str, path: str, kind: str = "photo") -> Img:
        return _rendered(Img(name, host, path), render(plan, kind, name), "jpeg")

    for i in range(plan.scale):
        for j in range(3):
            out.append(_fault(Img(f"gone-{i}-{j}", "flaky", f"/img/gone-{i}-{j}.jpg"), "http_404",
                              {"status": 404}, R.DOWNLOAD, R.http_status(404)))
        out.append(_fault(Img(f"missing-{i}", "photos", f"/img/photo/deleted-{i}.jpg"), "http_404", None,
                          R.DOWNLOAD, R.http_status(404)))
        for j in range(2):
            out.append(_fault(Img(f"boom-{i}-{j}", "flaky", f"/img/boom-{i}-{j}.jpg"), "http_500",
                              {"status": 500}, R.DOWNLOAD, R.http_status(500)))
        slow = content(f"slow-{i}", "flaky", f"/img/slow-{i}.jpg")
        out.append(_fault(slow, "slow", {"delay": 1.5, "file": slow.path.lstrip("/")}, R.KEPT, R.KEPT))
        drip = content(f"drip-{i}", "flaky", f"/img/drip-{i}.jpg")
        route = {"trickle": {"interval": 1.0, "bytes": 1}, "file": drip.path.lstrip("/")}
        out.append(_fault(drip, "trickle", route, R.DOWNLOAD, R.TIMEOUT))
        for j in range(2):
            cut = content(f"halfsent-{i}-{j}", "flaky", f"/img/halfsent-{i}-{j}.jpg")
            route = {"truncate": 0.5, "file": cut.path.lstrip("/")}
            out.append(_fault(cut, "truncated_body", route, R.DOWNLOAD, R.INCOMPLETE_BODY))
        for j in range(2):
            fake = Img(f"fake-{i}-{j}", "flaky", f"/img/fake-{i}-{j}.jpg", extra_files={"err.html": im.html_bytes()})
            route = {"file": "err.html", "content_type": "image/jpeg"}
            out.append(_fault(fake, "html_as_jpeg", route, R.DOWNLOAD, R.NOT_AN_IMAGE))
        mislabeled = content(f"mislabeled-{i}", "flaky", f"/img/mislabeled-{i}")
        route = {"file": mislabeled.path.lstrip("/"), "content_type": "text/html"}
        out.append(_fault(mislabeled, "jpeg_as_html", route, R.KEPT, R.KEPT))
        for j, directive in enumerate(("noai", "noimageai", "noindex, noai")):
            noai = content(f"noai-{i}-{j}", "news", f"/img/optout/noai-{i}-{j}.jpg", "sign" if j else "photo")
            route = {"file": noai.path.lstrip("/"), "headers": {"X-Robots-Tag": directive}}
            out.append(_fault(noai, "x_robots_tag", route, R.DOWNLOAD, R.HEADER_OPTOUT))
        for j in range(2):
            private = content(f"private-{i}-{j}", "cdn", f"/private/{i}-{j}.jpg")
            out.append(_fault(private, "robots_disallow", None, R.DOWNLOAD, R.ROBOTS_DISALLOW))
        embargo = content(f"embargo-{i}", "news", f"/embargo/{i}.jpg", "document")
        out.append(_fault(embargo, "robots_disallow_agent", None, R.DOWNLOAD, R.ROBOTS_DISALLOW))
        for j in range(2):
            final = content(f"moved-{i}-{j}", "cdn", f"/img/final/moved-{i}-{j}.jpg")
            start = Img(f"redirect-{i}-{j}", "cdn", f"/r/{i}-{j}/a.jpg")
            _fault(start, "redirect_chain", {"redirect": f"/r/{i}-{j}/b.jpg", "code": 301}, R.KEPT, R.KEPT)
            plan.routes.setdefault("cdn", {})[f"/r/{i}-{j}/b.jpg"] = {"redirect": f"/r/{i}-{j}/c.jpg", "code": 302}
            plan.routes["cdn"][f"/r/{i}-{j}/c.jpg"] = {"redirect": final.path, "code": 307}
            start.data, start.fmt, start.width, start.height = final.data, final.fmt, final.width, final.height
            start.text_kind, start.words = final.text_kind, final.words
            start.extra_files = {final.path.lstrip("/"): final.data or b""}
            out.append(start)
        loop = Img(f"loop-{i}", "cdn", f"/loop/{i}/a.jpg")
        plan.routes.setdefault("cdn", {})[f"/loop/{i}/b.jpg"] = {"redirect": f"/loop/{i}/a.jpg", "code": 302}
        out.append(_fault(loop, "redirect_loop", {"redirect": f"/loop/{i}/b.jpg", "code": 302},
                          R.DOWNLOAD, R.TOO_MANY_REDIRECTS))
        # A redirect to another loopback address: the SSRF guard must stop it even with 127.0.0.1 allowed
        # (nothing listens there; the tests put a counting listener on it).
        escape = Img(f"escape-{i}", "cdn", f"/go/{i}/x.jpg")
        target = f"http://127.0.0.2:{plan.port + HOSTS['photos']}/img/secret-{i}.jpg"
        out.append(_fault(escape, "redirect_blocked", {"redirect": target, "code": 302}, R.DOWNLOAD,
                          R.BLOCKED_ADDRESS))
        huge = Img(f"huge-{i}", "flaky", f"/img/huge-{i}.jpg")
        out.append(_fault(huge, "oversize", {"oversize": 64 * 1024 * 1024}, R.DOWNLOAD, R.TOO_LARGE))
        endless = Img(f"endless-{i}", "flaky", f"/img/endless-{i}.jpg")
        out.append(_fault(endless, "oversize_no_length", {"oversize": 64 * 1024 * 1024, "length": False},
                          R.DOWNLOAD, R.TOO_LARGE))
    rng.shuffle(out)
    return out


def _duplicates(plan: Plan, pool: list[Img], rng: random.Random, next_group: Callable[[], int]) -> list[Img]:
    """Exact copies (same bytes), pixel-identical re-encodes, and near-duplicates of pool images."""
    s = plan.seed
    out: list[Img] = []
    candidates = [img for img in pool if img.fmt == "jpeg"]
    rng.shuffle(candidates)
    hosts = ("photos", "news", "cdn", "docs")
    for n, base in enumerate(candidates[: 6 * plan.scale]):
        group = next_group()
        base.dup_group, base.dup_kind = group, "exact"
        for c in range(1 + n % 2):
            host = hosts[(n + c + 1) % len(hosts)]
            copy = Img(f"{base.name}-copy{c}", host, f"/mirror/{c}/{base.name}.jpg", data=base.data, fmt=base.fmt,
                       width=base.width, height=base.height, text_kind=base.text_kind, words=base.words,
                       dup_group=group, dup_kind="exact")
            out.append(copy)
    for n in range(2 * plan.scale):
        name = f"pixels-{n:04d}"
        rendered = im.natural(sub_seed(s, name))
        group = next_group()
        for level in (1, 9):
            img = Img(f"{name}-z{level}", "cdn", f"/png/{name}-z{level}.png", dup_group=group, dup_kind="pixels")
            _rendered(img, rendered, "png")
            img.data = im.encode(rendered.image, "png", compress_level=level)
            out.append(img)
    variants: list[tuple[str, Callable[[im.Rendered], tuple[bytes, tuple[int, int]]]]] = [
        ("small", lambda r: _enc(im.rescale(r.image, 0.6))),
        ("q55", lambda r: (im.recompress(im.encode(r.image, "jpeg", quality=92), 55), r.image.size)),
        ("crop", lambda r: _enc(im.crop(r.image, 0.03))),
        ("bright", lambda r: _enc(im.brighten(r.image, 1.12))),
    ]
    kinds = ("photo", "natural", "document", "chart", "sign")
    for n in range(10 * plan.scale):
        kind = kinds[n % len(kinds)]
        name = f"near-{kind}-{n:04d}"
        rendered = render(plan, kind, name)
        group = next_group()
        base = _rendered(Img(name, hosts[n % 4], f"/img/{kind}/{name}.jpg"), rendered, "jpeg", quality=92)
        base.dup_group, base.dup_kind = group, "near"
        out.append(base)
        for v in range(1 + n % 2):
            label, make = variants[(n + v) % len(variants)]
            data, size = make(rendered)
            img = Img(f"{name}-{label}", hosts[(n + v + 1) % 4], f"/img/{kind}/{name}-{label}.jpg", data=data,
                      fmt="jpeg", width=size[0], height=size[1], text_kind=rendered.text_kind,
                      words=rendered.words, dup_group=group, dup_kind="near")
            out.append(img)
    return out


def _enc(image: Image.Image) -> tuple[bytes, tuple[int, int]]:
    return im.encode(image, "jpeg", quality=88), image.size


def _srcset_sets(plan: Plan, next_group: Callable[[], int]) -> list[list[Img]]:
    """Responsive images: one picture at 3 widths. src and the largest candidate are extracted."""
    out = []
    for n in range(4 * plan.scale):
        name = f"resp-{n:04d}"
        rendered = render(plan, "photo" if n % 2 else "chart", name, size=(1024, 683))
        group = next_group()
        imgs = []
        for width in (320, 640, 1024):
            scaled = im.rescale(rendered.image, width / 1024) if width != 1024 else rendered.image
            img = Img(f"{name}-{width}w", "cdn", f"/img/resp/{name}-{width}.jpg", dup_group=group, dup_kind="near")
            _rendered(img, im.Rendered(scaled, rendered.text_kind, rendered.words), "jpeg")
            imgs.append(img)
        out.append(imgs)
    return out


def _lookalikes(plan: Plan, next_group: Callable[[], int]) -> list[Img]:
    out = []
    kinds = ("document", "chart", "natural")  # not "photo": its mirrored quadrants could meet a sign's
    for n in range(3 * plan.scale):
        kind = kinds[n % len(kinds)]
        pair = im.lookalike(kind, sub_seed(plan.seed, f"lookalike-{n}"))
        group = next_group()
        for j, rendered in enumerate(pair):
            name = f"alike-{kind}-{n:04d}-{j}"
            img = _rendered(Img(name, "docs" if kind != "natural" else "photos", f"/img/alike/{name}.jpg"),
                            rendered, "jpeg")
            img.lookalike_group = group
            out.append(img)
    return out


def _non_http(plan: Plan) -> dict[str, Img]:
    """References that are not fetchable URLs: rejected at extract, still accounted for."""
    gif = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    cases = {
        "placeholder": (gif, R.DATA_URI),
        "datapng": (png, R.DATA_URI),
        "js": ("javascript:void(0)", R.BAD_SCHEME),
        "ftp": ("ftp://127.0.0.1/pub/old-logo.gif", R.BAD_SCHEME),
        "badport": ("http://127.0.0.1:99999/img/x.jpg", R.UNPARSEABLE_URL),
    }
    return {name: Img(name, "", url, stage=R.EXTRACT, reason=reason) for name, (url, reason) in cases.items()}


def _inline(plan: Plan, pool: list[Img]) -> list[Img]:
    """Images captured as WARC response records themselves: bytes in the crawl, no download."""
    out = []
    for n in range(3 * plan.scale):
        kind = ("photo", "document", "natural")[n % 3]
        name = f"inline-{kind}-{n:04d}"
        img = _rendered(Img(name, "photos", f"/captured/{name}.jpg"), render(plan, kind, name), "jpeg")
        img.inline = True
        out.append(img)
    pixel = _special(Img("inline-pixel", "news", "/t/inline-pixel.gif"), im.tracking_pixel("gif"), "gif", (1, 1))
    pixel.inline, pixel.stage, pixel.reason = True, R.DECODE, R.TOO_SMALL
    out.append(pixel)
    source = next(img for img in pool if img.dup_group is None and img.fmt == "jpeg" and img.host == "docs")
    source.dup_group, source.dup_kind = -1, "exact"  # group id assigned by the caller
    copy = Img(f"{source.name}-inline", "docs", f"/captured/{source.name}.jpg", data=source.data, fmt="jpeg",
               width=source.width, height=source.height, text_kind=source.text_kind, words=source.words,
               dup_kind="exact", inline=True)
    out.append(copy)
    return out


ALTS = {
    "utf-8": ["Ein Blick über die Stadt", "Café & croissant", "東京の夜景", "Ölçüm grafiği", "“Quoted” title"],
    "windows-1252": ["Café crème – naïve", "Déjà vu “quote”", "Smörgåsbord"],
    "shift_jis": ["東京の夜景", "桜の写真", "グラフ"],
    "iso-8859-1": ["Größe über alles", "Señal de tráfico", "Ærø"],
}
WORDS = ("view", "chart", "photo", "report", "table", "river", "city", "market", "garden", "summary", "sales",
         "quarter", "forecast", "street", "mountain", "harbor", "menu", "screen", "invoice", "notice")


def _alt(rng: random.Random, charset: str) -> str:
    if rng.random() < 0.35:
        return rng.choice(ALTS[charset])
    words = rng.sample(WORDS, rng.randint(1, 4))
    return " ".join(words).capitalize() + (" & more" if rng.random() < 0.1 else "")


def _spell(plan: Plan, img: Img, page: Page, rng: random.Random) -> str:
    """How a page writes the image's URL: absolute, relative, protocol-relative, odd case, dot segments..."""
    if not img.http:
        return img.path
    absolute = plan.host_url(img.host) + quote(img.path, safe="/%:@!$&'()*+,;=~?")
    if page.base_href:
        if absolute.startswith(page.base_href) and rng.random() < 0.7:
            return absolute[len(page.base_href):]
        return absolute
    forms = ["absolute", "protocol", "upper"]
    if img.host == page.host:
        forms += ["root", "root", "relative", "dots", "fragment", "escapes"]
    form = rng.choice(forms)
    path = quote(img.path, safe="/%:@!$&'()*+,;=~?")
    if form == "protocol":
        return "//" + absolute.split("://", 1)[1]
    if form == "upper":
        return "HTTP://" + absolute.split("://", 1)[1]
    if form == "root":
        return path
    if form == "relative":
        return quote(posixpath.relpath(img.path, posixpath.dirname(page.path) or "/"), safe="/%~")
    if form == "dots":
        return "/img/../" + path.lstrip("/")
    if form == "fragment":
        return path + "#view"
    if form == "escapes":
        if img.path.isascii():  # escape an unreserved character: normalization decodes it again
            return path.replace("-", "%2D", 1) if "-" in path else path.replace("o", "%6f", 1)
        if rng.random() < 0.5:
            return img.path  # raw non-ASCII in the HTML: encoded as UTF-8 by the reader
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), path)
    return absolute


def _page_paths(host: str, n: int) -> str:
    sections = {"photos": "gallery", "news": "2021/world", "docs": "reports/annual"}
    return f"/{sections[host]}/item-{n:04d}.html"


def _date(rng: random.Random, snapshot: int) -> str:
    _, _, first_day, days = SNAPSHOTS[snapshot]
    import datetime as dt

    start = dt.datetime.fromisoformat(first_day).replace(tzinfo=dt.UTC)
    when = start + dt.timedelta(seconds=rng.randrange(days * 86400))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fresh(plan: Plan, name: str, host: str, kind: str = "photo") -> Img:
    return _rendered(Img(name, host, f"/img/{kind}/{name}.jpg"), render(plan, kind, name), "jpeg")


def _new_page(plan: Plan, rng: random.Random, host: str, n: int, snapshots: tuple[int, ...] | None = None) -> Page:
    charset, where = rng.choice([("utf-8", "http")] * 5 + [("utf-8", "meta")] * 2 + [("utf-8", "none"),
                                ("windows-1252", "http"), ("shift_jis", "meta"), ("iso-8859-1", "http-equiv")])
    if snapshots is None:
        snapshots = rng.choice([(0,), (1,), (0, 1)])
    page = Page(host, _page_paths(host, n), f"{host.capitalize()} item {n}", snapshots, charset=charset,
                charset_where=where, malformed=rng.random() < 0.2)
    page.url = normalize_url(plan.host_url(host) + page.path)
    page.dates = {s: _date(rng, s) for s in snapshots}
    page.revisit = snapshots == (0, 1) and rng.random() < 0.15
    if host == "news" and rng.random() < 0.15:
        page.base_href = plan.host_url("cdn") + "/img/"
    if rng.random() < 0.1:
        page.robots_meta = rng.choice(["index, follow", "noindex, nofollow", "max-image-preview:large"])
    return page


def _tag(plan: Plan, page: Page, img: Img, rng: random.Random, placeholder: Img | None = None) -> Tag:
    alt = _alt(rng, page.charset) if rng.random() < 0.85 else ""
    title = _alt(rng, page.charset) if rng.random() < 0.2 else ""
    style = rng.choice(["plain"] * 6 + ["upper", "selfclose", "unquoted"])
    ref = Ref(img, _spell(plan, img, page, rng), "src", alt, title)
    if placeholder and img.http and rng.random() < 0.12:  # lazy loading: a data: placeholder in src, the real URL elsewhere
        attr = rng.choice(["data-src", "data-lazy-src", "data-original"])
        lazy = Ref(img, ref.raw, attr, alt, title)
        return Tag([Ref(placeholder, placeholder.path, "src", alt, title), lazy], alt=alt, title=title, style="plain")
    return Tag([ref], alt=alt, title=title, style=style)


def _srcset_tag(plan: Plan, page: Page, imgs: list[Img], rng: random.Random) -> Tag:
    small, medium, large = imgs
    spell = [_spell(plan, img, page, rng) for img in imgs]
    descriptors = ["320w", "640w", "1024w"] if rng.random() < 0.7 else ["1x", "2x", "3x"]
    alt = _alt(rng, page.charset)
    refs = [Ref(small, spell[0], "src", alt), Ref(large, spell[2], "srcset", alt)]
    order = [2, 0, 1] if rng.random() < 0.3 else [0, 1, 2]  # the largest is not always listed last
    return Tag(refs, srcset=[(spell[i], descriptors[i]) for i in order], alt=alt)


def build_plan(seed: int = 0, scale: int = 1, port: int = DEFAULT_PORT) -> Plan:
    """Decide everything about the sample crawl; nothing is written."""
    rng = random.Random(seed)
    plan = Plan(seed, scale, port)
    counter = iter(range(1, 1_000_000))

    def next_group() -> int:
        return next(counter)

    content = _content_images(plan, rng)
    dups = _duplicates(plan, content, rng, next_group)
    inline = _inline(plan, content)
    inline_group = next_group()
    for img in content + inline:
        if img.dup_group == -1 or (img.inline and img.dup_kind == "exact"):
            img.dup_group = inline_group
    resp_sets = _srcset_sets(plan, next_group)
    specials = _non_http(plan)
    regular = content + _format_cases(plan) + dups + _lookalikes(plan, next_group) + _download_faults(plan, rng)
    regular += _decode_rejects(plan)
    rng.shuffle(regular)
    plan.served_only = [imgs[1] for imgs in resp_sets]

    sites = ("photos", "news", "docs")
    by_site: dict[str, list[Img]] = {site: [] for site in sites}
    for img in regular:
        by_site[img.host if img.host in sites else rng.choice(sites)].append(img)
    logos = {site: _rendered(Img(f"logo-{site}", site, "/static/logo.png"),
                             im.natural(sub_seed(seed, f"logo-{site}"), size=(160, 160)), "png") for site in sites}
    for site in sites:
        items = by_site[site]
        pages = [_new_page(plan, rng, site, n) for n in range(max(1, -(-len(items) // 6)))]
        for k, img in enumerate(items):
            pages[k % len(pages)].tags.append(_tag(plan, pages[k % len(pages)], img, rng, specials["placeholder"]))
            if rng.random() < 0.12:  # referenced again from another page
                other = rng.choice(pages)
                other.tags.append(_tag(plan, other, img, rng, specials["placeholder"]))
        for k, imgs in enumerate(resp_sets):
            if sites[k % 3] == site:
                page = rng.choice(pages)
                page.tags.append(_srcset_tag(plan, page, imgs, rng))
        for page in pages:
            page.tags.insert(0, Tag([Ref(logos[site], _spell(plan, logos[site], page, rng), "src", "Logo")], alt="Logo"))
            if rng.random() < 0.1 and len(page.tags) > 1:  # the same image twice on one page
                page.tags.append(page.tags[1])
        plan.pages += pages
    for name in ("js", "ftp", "badport", "datapng"):
        page = rng.choice(plan.pages)
        page.tags.append(Tag([Ref(specials[name], specials[name].path, "src", "")]))
    _optout_pages(plan, rng)
    _cut_page(plan, rng)
    for n, img in enumerate(inline):
        img.inline_snapshot = n % 2
        img.inline_date = _date(rng, img.inline_snapshot)

    plan.images = regular + list(logos.values()) + [img for imgs in resp_sets for img in (imgs[0], imgs[2])]
    plan.images += list(specials.values()) + inline
    plan.images += [ref.img for page in plan.pages if page.optout or page.cut for tag in page.tags for ref in tag.refs
                    if ref.img not in plan.images]
    for img in plan.images + plan.served_only:
        img.url = plan.url_of(img)
    _check_spellings(plan)
    return plan


def _optout_pages(plan: Plan, rng: random.Random) -> None:
    for n in range(2 * plan.scale):
        for host, how in (("news", "meta"), ("photos", "header")):
            page = _new_page(plan, rng, host, 9000 + n, snapshots=(0,))
            page.optout = how
            page.robots_meta = "noai, noimageai" if how == "meta" else None
            for j in range(2):
                img = _fresh(plan, f"optout-{how}-{n}-{j}", host, "sign" if j else "photo")
                img.stage, img.reason = R.EXTRACT, R.PAGE_OPTOUT
                page.tags.append(_tag(plan, page, img, rng))
            plan.pages.append(page)


def _cut_page(plan: Plan, rng: random.Random) -> None:
    """A page whose WARC record is cut short (truncated file); its WAT record is whole."""
    page = _new_page(plan, rng, "photos", 9500, snapshots=(1,))
    page.cut = True
    page.revisit = False
    for j in range(2):
        img = _fresh(plan, f"lost-{j}", "photos", "natural")
        page.tags.append(Tag([Ref(img, _spell(plan, img, page, rng), "src", "lost")], alt="lost"))
    plan.pages.append(page)


def _check_spellings(plan: Plan) -> None:
    """Every spelling a page uses must resolve to the image's URL: the plan checks itself."""
    from urllib.parse import urljoin

    for page in plan.pages:
        base = page.base_href or page.url
        for tag in page.tags:
            for ref in tag.refs:
                if not ref.img.http:
                    continue
                resolved = normalize_url(urljoin(base, ref.raw.strip()))
                if resolved != ref.img.url:
                    raise AssertionError(f"{ref.raw!r} on {page.url} resolves to {resolved}, not {ref.img.url}")


# ---------------------------------------------------------------------------------------------------------
# Truth: what a perfect pipeline decides for each image URL


def _sightings(plan: Plan) -> dict[int, list[tuple[Page, int, Ref, bool, bool]]]:
    """id(img) -> (page, snapshot, ref, visible in WARC, visible in WAT) for every reference."""
    seen: dict[int, list[tuple[Page, int, Ref, bool, bool]]] = {}
    for page in plan.pages:
        for snap in page.snapshots:
            revisit = snap == 1 and page.revisit
            for tag in page.tags:
                for ref in tag.refs:
                    warc = not revisit and not page.cut
                    wat = not revisit and ref.attr == "src"  # WAT records IMG@/src only
                    seen.setdefault(id(ref.img), []).append((page, snap, ref, warc, wat))
    return seen


def _decide_dups(rows: list[dict], suffix: str, visible: str) -> None:
    """Fill fate{suffix}, fate_stage{suffix}, dup_of{suffix} for the rows visible to one source."""
    fate, stage, dup_of, date = f"fate{suffix}", f"fate_stage{suffix}", f"dup_of{suffix}", f"first_crawl_date{suffix}"
    groups: dict[int, list[dict]] = {}
    for row in rows:
        row[fate], row[stage] = (row["reason"], row["stage"]) if row[visible] else (None, None)
        row[dup_of] = None
        if row[visible] and row["reason"] == R.KEPT and row["dup_group"] is not None:
            groups.setdefault(row["dup_group"], []).append(row)
    for members in groups.values():
        # The survivor rule of the dedup stage: largest resolution, then earliest crawl date, then key.
        survivor = min(members, key=lambda r: (-(r["width"] * r["height"]), r[date], r["key"]))
        for row in members:
            if row is not survivor:
                exact = row["dup_kind"] in ("exact", "pixels")
                row[fate], row[stage] = (R.DUPLICATE if exact else R.NEAR_DUPLICATE), R.DEDUP
                row[dup_of] = survivor["url"]


def truth_rows(plan: Plan) -> list[dict]:
    """One row per image URL; `fate` is for extraction from WARC files, `fate_wat` from WAT files."""
    seen = _sightings(plan)
    rows = []
    for img in plan.images:
        sightings = seen.get(id(img), [])
        warc_dates = [p.dates[s] for p, s, _, w, _ in sightings if w] + ([img.inline_date] if img.inline else [])
        wat_dates = [p.dates[s] for p, s, _, _, w in sightings if w]
        rows.append({
            "url": img.url,
            "key": url_key(img.url),
            "name": img.name,
            "host": img.host,
            "source": "inline" if img.inline else ("http" if img.http else "other"),
            "in_warc": bool(warc_dates),
            "in_wat": bool(wat_dates),
            "snapshots": sorted({SNAPSHOTS[s][0] for _, s, _, w, _ in sightings if w}
                                | ({SNAPSHOTS[img.inline_snapshot][0]} if img.inline else set())),
            "first_crawl_date": min(warc_dates) if warc_dates else None,
            "first_crawl_date_wat": min(wat_dates) if wat_dates else None,
            "references": len(sightings) + (1 if img.inline else 0),
            "alts": sorted({r.alt for _, _, r, _, _ in sightings if r.alt}),
            "fault": img.fault,
            "format": img.fmt,
            "width": img.width,
            "height": img.height,
            "animated": img.animated,
            "text_kind": img.text_kind,
            "has_text": None if img.text_kind is None else img.text_kind != "none",
            "heavy": None if img.text_kind is None else img.text_kind in im.HEAVY_KINDS,
            "words": " ".join(img.words),
            "dup_group": img.dup_group,
            "dup_kind": img.dup_kind,
            "lookalike_group": img.lookalike_group,
            "stage": img.stage,
            "reason": img.reason,
        })
    _decide_dups(rows, "", "in_warc")
    _decide_dups(rows, "_wat", "in_wat")
    return rows
