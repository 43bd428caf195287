"""Image content of the sample crawl: photos, synthetic scenes, text-bearing pictures and broken files.

Every picture the sample crawl serves is made here, deterministically: the same arguments give the same
bytes in any process (each function builds its own `random.Random` / numpy `Generator` from its seed and
never touches global random state; matplotlib runs under a lock with its default style).

What the later stages need from this content, and how it is kept:
- OCR (text filter): rendered text is readable: dark on light (or light on a dark bar), real English
  words, capitals at least `MIN_CAP_PX` px tall at the final size, in the TrueType fonts matplotlib ships
  (never system fonts). `Rendered.words` lists what was drawn, for scoring later.
- Near-dup detection (64-bit pHash): different seeds of a renderer give different pictures, not
  overlapping crops of one photo at similar scale. Photos come from a finite pool: `PHOTO_VARIANTS`
  windows (whole frame, four quadrants) of `PHOTO_SOURCES`. `photo(s)` and `photo(s + k)` differ for
  0 < k < PHOTO_VARIANTS; seeds equal modulo PHOTO_VARIANTS crop the same window, so callers that need
  distinct photos must use distinct seeds modulo PHOTO_VARIANTS (random 32-bit seeds collide quickly).
  `sign` draws on the same pool, mirrored. `real_text_photo` has only two sources.
- Near-duplicate transforms (`rescale`, `brighten`, `recompress`, small `crop`s) stay within a small pHash
  radius; `lookalike` pairs share a template but differ in content, so they are not duplicates.
- Decode/validate: the special files at the end each carry one defect (or one legal oddity) and say
  what a decoder should do with them.
"""

from __future__ import annotations

import functools
import io
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TEXT_KINDS = ("none", "document", "chart", "table", "sign", "screenshot")
# What the heavy filter is for: documents, charts, tables and screenshots of text (an app's forms and lists of
# messages, like a screenshot of a chat or an article); signs are light only.
HEAVY_KINDS = ("document", "chart", "table", "screenshot")
LOOKALIKE_KINDS = ("photo", "natural", "document", "chart", "table", "sign", "screenshot")

# scikit-image sample photos that load offline (no pooch). Not used: cat (= chelsea), moon, cell and clock
# (mostly flat: their crops hash unstably), colorwheel/logo/binary_blobs (synthetic), text/page (text; see
# real_text_photo), stereo_motorcycle's right view (a near-duplicate of the left one).
PHOTO_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field",
                 "immunohistochemistry", "retina", "motorcycle_left", "grass", "gravel", "brick")
# Windows per source: the whole frame and its four disjoint quadrants (centre x, centre y, scale).
_WINDOWS = ((0.5, 0.5, 1.0), (0.25, 0.25, 0.5), (0.75, 0.25, 0.5), (0.25, 0.75, 0.5), (0.75, 0.75, 0.5))
PHOTO_VARIANTS = len(PHOTO_SOURCES) * len(_WINDOWS)

MIN_CAP_PX = 15  # height of a capital letter at the final size (lower case x-height is ~11 px then)
_FAMILIES = {  # regular, bold: fonts matplotlib ships
    "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    "stix": ("STIXGeneral.ttf", "STIXGeneralBol.ttf"),
}

# ---------------------------------------------------------------------------------------------------------
# Words

_NOUNS = (
    "time year people way day man woman child world life hand part place case week company system program "
    "question number night point home water room mother area money story fact month book eye job word "
    "business side kind head house service friend father power hour game line end member law car city "
    "community name team minute idea body information parent face level office door health person art "
    "history party result change morning reason research girl moment air teacher force education river "
    "garden window table road market island forest mountain village station letter picture paper music "
    "voice field summer winter harbor bridge kitchen library engine machine report energy weather season "
    "valley coast train ship bread coffee apple stone light sound café façade"
).split()
_ADJECTIVES = (
    "good new first last long great little old right big high different small large next early young "
    "important public same able quiet bright dark warm cold green blue red white black simple clear strong "
    "heavy gentle ancient modern local happy careful famous narrow wide busy open fresh golden silver "
    "northern southern final naïve"
).split()
_VERBS = (
    "carries finds gives tells becomes leaves feels brings begins keeps holds writes hears means sets meets "
    "runs pays speaks leads reads grows loses sends builds reaches opens wins offers remembers considers "
    "buys serves expects follows creates shows moves turns watches changes crosses covers explains"
).split()
_ADVERBS = "quickly slowly often always never rarely carefully quietly together again almost soon".split()
_PREPOSITIONS = "across along behind beside beyond near over under through toward around between into".split()
_DETERMINERS = "the a every each this that one another some our their his her".split()
_CONJUNCTIONS = "and but while because although so until when".split()
VOCABULARY = tuple(dict.fromkeys(_NOUNS + _ADJECTIVES + _VERBS + _ADVERBS + _PREPOSITIONS + _DETERMINERS
                                 + _CONJUNCTIONS))

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS_FULL = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
_PRODUCTS = ("Nimbus", "Orion", "Zephyr", "Vertex", "Aurora", "Summit", "Falcon", "Cobalt", "Juniper",
             "Maple", "Quartz", "Atlas", "Beacon", "Cedar", "Harbor", "Comet")
_CITIES = ("Lisbon", "Oslo", "Denver", "Osaka", "Lagos", "Quito", "Dublin", "Perth", "Toronto", "Madrid",
          "Seoul", "Nairobi", "Boston", "Zürich", "Kraków", "Lima")
_FIRST_NAMES = ("Alice", "Bruno", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Irene", "Jonas",
               "Keiko", "Liam", "Maria", "Nadia", "Oscar", "Priya")
_LAST_NAMES = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
              "Khan", "Lopez", "Moreau", "Novak", "Olsen", "Park")
_SIGN_WORDS = ("OPEN", "SALE", "EXIT", "WELCOME", "PARKING", "CLOSED", "STOP", "HOTEL", "MARKET", "BAKERY",
               "CAFE", "STATION", "MUSEUM", "LIBRARY", "GARDEN", "NORTH", "SOUTH", "TODAY", "FRESH", "BREAD",
               "COFFEE", "TICKETS", "ENTRANCE", "HARBOR", "BRIDGE", "VILLAGE")


def _rng(*parts: object) -> random.Random:
    """A private generator per (renderer, seed, purpose): str seeds hash with SHA-512, stable everywhere."""
    return random.Random("/".join(map(str, parts)))


def _np_rng(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.getrandbits(64))


def _clause(rng: random.Random) -> list[str]:
    def noun_phrase() -> list[str]:
        words = [rng.choice(_DETERMINERS)] + ([rng.choice(_ADJECTIVES)] if rng.random() < 0.5 else [])
        words.append(rng.choice(_NOUNS))
        if words[0] == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return words

    words = noun_phrase() + ([rng.choice(_ADVERBS)] if rng.random() < 0.25 else []) + [rng.choice(_VERBS)]
    words += noun_phrase()
    if rng.random() < 0.6:
        words += [rng.choice(_PREPOSITIONS)] + noun_phrase()
    return words


def _sentence(rng: random.Random) -> list[str]:
    """One capitalized, pseudo-grammatical English sentence as a word list (last word carries the period)."""
    words = _clause(rng)
    if rng.random() < 0.35:
        words[-1] += ","
        words += [rng.choice(_CONJUNCTIONS)] + _clause(rng)
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def _title(rng: random.Random, n: int | None = None) -> list[str]:
    """A short title-cased heading from nouns and adjectives."""
    n = n or rng.randint(2, 5)
    words = [rng.choice(_ADJECTIVES if i % 2 == 0 and i < n - 1 else _NOUNS) for i in range(n)]
    return [w.capitalize() for w in words]


def _clean(tokens: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The words as an OCR engine should read them: punctuation at the ends stripped, empties dropped."""
    out = (t.strip(".,:;!?()\"'") for token in tokens for t in token.split())
    return tuple(t for t in out if any(ch.isalnum() for ch in t))


# ---------------------------------------------------------------------------------------------------------
# Shared drawing helpers


@dataclass(frozen=True)
class Rendered:
    """A picture before encoding, with what a reader should find in it."""

    image: Image.Image  # RGB
    text_kind: str  # one of TEXT_KINDS
    words: tuple[str, ...]  # the words drawn (empty for "none"), for OCR scoring later


@functools.cache
def _font_path(name: str) -> str:
    import matplotlib

    return f"{matplotlib.get_data_path()}/fonts/ttf/{name}"


@functools.lru_cache(maxsize=512)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(_font_path(name), px)


@functools.cache
def _min_px(name: str) -> int:
    """Smallest pixel size at which this font's capitals are MIN_CAP_PX tall."""
    top, bottom = _font(name, 200).getbbox("H")[1::2]
    return math.ceil(MIN_CAP_PX * 200 / (bottom - top))


def _pick_size(rng: random.Random, lo: int = 320, hi: int = 1024,
               aspect: tuple[float, float] = (0.6, 1.8)) -> tuple[int, int]:
    """A (w, h) with both sides in [lo, hi] and w/h in `aspect`."""
    a = rng.uniform(*aspect)
    long_side = rng.randint(min(hi, math.ceil(lo * max(a, 1 / a))), hi)
    w, h = (long_side, round(long_side / a)) if a >= 1 else (round(long_side * a), long_side)
    return max(lo, min(hi, w)), max(lo, min(hi, h))


def _sized(size: tuple[int, int] | None, picked: tuple[int, int]) -> tuple[int, int]:
    """`size` if given, else the seed's pick; the pick is drawn either way so the style generator stays
    in step (a lookalike renders its template at the first picture's size with the same style)."""
    return size or picked


_Renderer = Callable[[int, str, tuple[int, int] | None], Rendered]


def _legible(render: _Renderer, lo: int, seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    """Text layouts need room: a requested size whose short side is under `lo` is drawn larger and
    downscaled (a thumbnail: its words are listed but are smaller than MIN_CAP_PX)."""
    if size is None or min(size) >= lo:
        return render(seed, content, size)
    k = lo / min(size)
    big = render(seed, content, (round(size[0] * k), round(size[1] * k)))
    return Rendered(big.image.resize(size, Image.Resampling.LANCZOS), big.text_kind, big.words)


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: float) -> list[list[str]]:
    """Greedy line breaking by advance widths (kerning ignored: lines keep a little slack)."""
    space, used = font.getlength(" "), 0.0
    lines: list[list[str]] = []
    line: list[str] = []
    for word in words:
        wl = font.getlength(word)
        if line and used + space + wl > width * 0.98:
            lines.append(line)
            line, used = [], 0.0
        used += (space if line else 0.0) + wl
        line.append(word)
    return lines + [line] if line else lines


def _fit(words: list[str], font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """The longest prefix of `words` that fits on one line of `width` (at least one word)."""
    while len(words) > 1 and font.getlength(" ".join(words)) > width:
        words = words[:-1]
    return words


def _lum(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


_LIGHT_BG = ((255, 255, 255), (250, 247, 238), (244, 244, 242), (240, 245, 250), (248, 244, 250))
_DARK_FG = ((20, 20, 20), (35, 35, 45), (25, 40, 80), (60, 35, 20), (0, 0, 0))
_ACCENTS = ((25, 90, 170), (170, 40, 40), (20, 110, 70), (110, 50, 140), (200, 90, 20), (30, 110, 130))

# ---------------------------------------------------------------------------------------------------------
# Photos


@functools.cache
def _source(name: str) -> Image.Image:
    """A scikit-image sample photo (mode L or RGB), loaded once per process."""
    from skimage import data

    arr = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    return Image.fromarray(arr)


def _photo_window(variant: int, rng: random.Random, size: tuple[int, int] | None,
                  mirror: bool = False) -> Image.Image:
    """Variant k = source k % len(PHOTO_SOURCES), window k // len(PHOTO_SOURCES), so consecutive seeds
    change source. The crop keeps the target aspect inside its window (jittered by up to 12% in scale and
    position, so seeds of one variant differ in bytes) and never leaves it: windows never overlap."""
    src = _source(PHOTO_SOURCES[variant % len(PHOTO_SOURCES)])
    cx, cy, scale = _WINDOWS[variant // len(PHOTO_SOURCES) % len(_WINDOWS)]
    sw, sh = src.size
    if size is None:  # upscale at most ~2.2x so crops do not turn to mush
        size = _pick_size(rng, hi=max(400, min(1024, round(2.2 * scale * max(sw, sh)))))
    aspect = size[0] / size[1]
    bw, bh = sw * scale, sh * scale
    cw, ch = (bh * aspect, bh) if bw / bh > aspect else (bw, bw / aspect)
    shrink = rng.uniform(0.88, 1.0)
    cw, ch = cw * shrink, ch * shrink
    x0 = cx * sw - bw / 2 + rng.uniform(0, bw - cw)
    y0 = cy * sh - bh / 2 + rng.uniform(0, bh - ch)
    out = src.resize(size, Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch), reducing_gap=3.0)
    if out.mode == "L":  # grey sources: plain grey or a mild duotone, like scanned prints
        out = out.convert("RGB") if rng.random() < 0.5 else ImageOps.colorize(
            out, black=_mix((0, 0, 0), rng.choice(_ACCENTS), 0.3), white=rng.choice(_LIGHT_BG))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else out


def photo(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A real photo: window `seed % PHOTO_VARIANTS` of a scikit-image sample, cropped/rescaled by seed."""
    return Rendered(_photo_window(seed % PHOTO_VARIANTS, _rng("photo", seed), size), "none", ())


# ---------------------------------------------------------------------------------------------------------
# Synthetic natural scenes


def _fractal(g: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Spectral-synthesis noise (power ~ 1/f^beta) scaled to [0, 1]: clouds, ridges, terrain."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    spec = (g.normal(size=f.shape) + 1j * g.normal(size=f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    a = np.fft.irfft2(spec, s=shape)
    return ((a - a.min()) / (np.ptp(a) + 1e-12)).astype(np.float32)


def _upscale(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a, "F").resize(size, Image.Resampling.BICUBIC))


def _ridge(g: np.random.Generator, width: int, beta: float = 2.2) -> np.ndarray:
    """A 1-D fractal line in [-1, 1] (mountain ridges, tree lines)."""
    f = np.fft.rfftfreq(width)
    f[0] = 1.0
    spec = (g.normal(size=f.shape) + 1j * g.normal(size=f.shape)) / f ** (beta / 2)
    spec[0] = 0
    r = np.fft.irfft(spec, n=width)
    return (2 * (r - r.min()) / (np.ptp(r) + 1e-12) - 1).astype(np.float32)


def _to_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


_SKIES = (  # zenith, horizon
    ((70, 120, 200), (190, 215, 240)), ((40, 40, 90), (240, 150, 90)), ((120, 130, 140), (210, 210, 205)),
    ((20, 60, 140), (150, 200, 235)), ((90, 60, 120), (250, 200, 140)))
_GROUNDS = ((60, 110, 50), (90, 80, 60), (50, 70, 90), (110, 120, 60), (70, 60, 70), (40, 80, 60))


def _landscape(r: random.Random, g: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Sky gradient, optional clouds and sun, 2-4 hazy ridges, optional lake mirroring the scene."""
    top, low = (np.array(c, np.float32) for c in r.choice(_SKIES))
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] ** 0.8
    img = np.broadcast_to(top + (low - top) * t, (h, w, 3)).copy()
    if r.random() < 0.6:
        clouds = _upscale(_fractal(g, (96, 96), 3.0), (w, h))
        cover = np.clip((clouds - r.uniform(0.45, 0.65)) * 2.5, 0, 1)[..., None] * 0.9
        img = (img * (1 - cover) + np.float32(245) * cover).astype(np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None]
    if r.random() < 0.4:
        sx, sy, sr = r.uniform(0.1, 0.9) * w, r.uniform(0.1, 0.35) * h, r.uniform(0.03, 0.07) * min(w, h)
        d = np.hypot(np.arange(w, dtype=np.float32)[None, :] - sx, yy - sy)
        img += (np.clip(1.5 - d / sr, 0, 1) * 120 + np.exp(-d / (4 * sr)) * 40)[..., None]
    horizon, layers = r.uniform(0.3, 0.6) * h, r.randint(2, 4)
    ground, texture = np.array(r.choice(_GROUNDS), np.float32), _upscale(_fractal(g, (128, 128), 1.6), (w, h))
    for k in range(layers):
        base = horizon + k * (h - horizon) * r.uniform(0.12, 0.25)
        ridge = base - r.uniform(0.05, 0.25) * h * _ridge(g, w, r.uniform(2.4, 3.2))
        mask = (yy >= ridge[None, :])[..., None]
        shade = low + (ground * (0.6 + 0.5 * k / layers) - low) * ((k + 1) / layers) ** 0.7
        img = np.where(mask, shade * (0.85 + 0.3 * texture[..., None]), img)
    if r.random() < 0.35:
        water = int(r.uniform(0.72, 0.88) * h)
        n = h - water
        reflect = img[max(0, water - n):water][::-1] * 0.6 + np.array((20, 40, 70), np.float32)
        ripple = 1 + 0.08 * np.sin(np.arange(len(reflect), dtype=np.float32) * 1.7)[:, None, None]
        img[water:water + len(reflect)] = reflect * ripple
    return img + g.normal(0, 3, (h, w, 1)).astype(np.float32)


def _terrain(r: random.Random, g: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Aerial view: fractal height map coloured by elevation (sea, sand, grass, forest, rock, snow)."""
    height = _upscale(_fractal(g, (192, 192), r.uniform(2.8, 3.4)), (w, h))
    sea = r.uniform(0.3, 0.5)
    stops = np.array([0, sea - 0.02, sea, sea + 0.04, sea + 0.2, 0.8, 0.9, 1.0], np.float32)
    colors = np.array([(20, 40, 90), (50, 100, 160), (210, 200, 150), (90, 150, 60), (40, 90, 40),
                       (120, 110, 100), (200, 200, 200), (250, 250, 250)], np.float32)
    img = np.stack([np.interp(height, stops, colors[:, c]) for c in range(3)], axis=-1).astype(np.float32)
    gy, gx = np.gradient(height)
    shade = np.clip(1 + (gx - gy) * max(w, h) * r.uniform(0.05, 0.12), 0.6, 1.3)
    return img * np.where(height > sea, shade, 1.0)[..., None]


def _bokeh(r: random.Random, g: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Out-of-focus lights: translucent discs over a dark gradient, drawn at half size and blurred."""
    hw, hh = max(1, w // 2), max(1, h // 2)
    base = np.array(r.choice(((10, 10, 30), (30, 15, 10), (5, 25, 20), (25, 10, 30))), np.float32)
    t = np.linspace(0, 1, hh, dtype=np.float32)[:, None, None]
    bg = _to_image(np.broadcast_to(base * (1.8 - t), (hh, hw, 3)))
    layer = Image.new("RGBA", (hw, hh))
    draw = ImageDraw.Draw(layer)
    hue = r.choice(((255, 200, 120), (255, 120, 160), (140, 200, 255), (255, 240, 200)))
    for _ in range(r.randint(25, 90)):
        x, y, rad = r.uniform(0, hw), r.uniform(0, hh), r.uniform(0.02, 0.12) * min(hw, hh)
        color = _mix(hue, (r.randint(0, 255), r.randint(0, 255), r.randint(0, 255)), 0.35)
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=(*color, r.randint(40, 150)))
    img = Image.alpha_composite(bg.convert("RGBA"), layer).convert("RGB")
    img = img.filter(ImageFilter.GaussianBlur(r.uniform(1.5, 4)))
    return np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def _foliage(r: random.Random, g: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Leaves: rotated elliptical polygons in greens over a dark fractal undergrowth."""
    under = _upscale(_fractal(g, (128, 128), 1.8), (w, h))[..., None]
    img = _to_image(np.array((15, 35, 15), np.float32) + under * np.array((40, 70, 30), np.float32))
    draw = ImageDraw.Draw(img)
    palette = r.choice((((50, 120, 40), (150, 200, 80)), ((80, 110, 30), (200, 180, 60)),
                        ((30, 90, 60), (110, 190, 120))))
    angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    for _ in range(r.randint(120, 320)):
        x, y, length = r.uniform(0, w), r.uniform(0, h), r.uniform(0.03, 0.1) * max(w, h)
        rot = r.uniform(0, np.pi)
        ex, ey = length * np.cos(angles), length * 0.35 * np.sin(angles)
        px, py = x + ex * np.cos(rot) - ey * np.sin(rot), y + ex * np.sin(rot) + ey * np.cos(rot)
        draw.polygon(list(zip(px.tolist(), py.tolist(), strict=True)), fill=_mix(*palette, r.random()))
    return np.asarray(img.filter(ImageFilter.SMOOTH), dtype=np.float32)


_NATURAL_STYLES: dict[str, Callable[[random.Random, np.random.Generator, int, int], np.ndarray]] = {
    "landscape": _landscape, "terrain": _terrain, "bokeh": _bokeh, "foliage": _foliage}


def _natural(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    style = _rng("natural", seed)
    name = style.choice(sorted(_NATURAL_STYLES))
    w, h = _sized(size, _pick_size(style))
    content_rng = _rng("natural", seed, content)
    img = _NATURAL_STYLES[name](content_rng, _np_rng(content_rng), w, h)
    return Rendered(_to_image(img), "none", ())


def natural(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A synthetic natural-looking picture without text: landscape, aerial terrain, bokeh or foliage."""
    return _natural(seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Documents


def _document(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    """A page: heading (ruled, or white on a coloured masthead), paragraphs flowing through 1-2 columns
    until the page is full, and in some layouts a captioned figure (a synthetic picture) after the first
    or second paragraph."""
    s = _rng("document", seed)
    w, h = _sized(size, _pick_size(s, lo=360, aspect=(0.6, 1.4)))
    regular, bold = _FAMILIES[s.choice(sorted(_FAMILIES))]
    body_px = max(_min_px(regular), round(w / s.uniform(30, 44)))
    head_px = max(_min_px(bold), round(body_px * s.uniform(1.4, 2.0)))
    margin = round(w * s.uniform(0.05, 0.1))
    columns = 2 if w >= 620 and s.random() < 0.5 else 1
    gutter, leading, para_gap = round(body_px * 1.5), s.uniform(1.25, 1.6), s.uniform(0.4, 1.0)
    bg, fg, indent = s.choice(_LIGHT_BG), s.choice(_DARK_FG), body_px * 2 if s.random() < 0.4 else 0
    head_fg = s.choice((fg, s.choice(_ACCENTS))) if s.random() < 0.5 else fg
    centered, rule = s.random() < 0.4, s.random() < 0.5
    figure = s.random() < 0.45
    figure_after, figure_h = (s.randint(0, 1), round(h * s.uniform(0.2, 0.35))) if figure else (-1, 0)
    # How far text runs down the last column: a lookalike ends elsewhere, like another article's last page.
    fill = 0.35 + 0.65 * ((s.random() + 0.5 * (content != "content")) % 1.0)
    banner = _mix(s.choice(_ACCENTS), (0, 0, 0), 0.25) if s.random() < 0.3 else None  # title in white on it

    c = _rng("document", seed, content)
    image = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(image)
    font, head_font = _font(regular, body_px), _font(bold, head_px)
    drawn: list[str] = []
    y = margin
    title = _wrap(_title(c, c.randint(2, 6)), head_font, w - 2 * margin)[:2]
    if banner:
        draw.rectangle((0, 0, w, 1.5 * margin + len(title) * round(head_px * 1.25)), fill=banner)
    for line in title:
        text = " ".join(line)
        draw.text(((w - head_font.getlength(text)) / 2 if centered else margin, y), text, font=head_font,
                  fill=(255, 255, 255) if banner else head_fg)
        drawn += line
        y += round(head_px * 1.25)
    if banner:
        y += margin // 2
    elif rule:
        draw.line((margin, y + 4, w - margin, y + 4), fill=_mix(fg, bg, 0.5), width=2)
    top = y + round(head_px * 0.6)
    col_w = (w - 2 * margin - (columns - 1) * gutter) / columns
    line_h = round(body_px * leading)
    at = [0, float(top)]  # column, y of the next block

    def bottom() -> float:
        return h - margin - (1 - fill) * (h - margin - top) * (at[0] == columns - 1)

    def place(height: float) -> tuple[float, float] | None:
        """Where a block of `height` goes: here, at the top of the next column, or nowhere (page full)."""
        if at[1] + height > bottom():
            at[0], at[1] = at[0] + 1, float(top)
        if at[0] == columns or at[1] + height > bottom():
            return None
        xy = (margin + at[0] * (col_w + gutter), at[1])
        at[1] += height
        return xy

    for p in range(c.randint(2, 6)):
        words = [word for _ in range(c.randint(2, 6)) for word in _sentence(c)]
        for i, line in enumerate(_wrap(words, font, col_w - indent)):
            xy = place(line_h)
            if xy is None:
                return Rendered(image, "document", _clean(drawn))
            draw.text((xy[0] + (indent if i == 0 else 0), xy[1]), " ".join(line), font=font, fill=fg)
            drawn += line
        at[1] += round(body_px * para_gap)
        if p == figure_after and (xy := place(figure_h + line_h * 1.5)) is not None:
            picture = _natural(c.getrandbits(32), "content", (round(col_w), figure_h)).image
            image.paste(picture, (round(xy[0]), round(xy[1])))
            caption = _fit(["Figure", f"{p + 1}."] + _sentence(c), font, col_w)
            draw.text((xy[0], xy[1] + figure_h + line_h * 0.25), " ".join(caption), font=font, fill=fg)
            drawn += caption
    return Rendered(image, "document", _clean(drawn))


def document(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A page of paragraphs: 1-2 columns, varied margins, font family and size, background tint."""
    return _legible(_document, 360, seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg, default style under a lock: rcParams are process-global)

_MPL_LOCK = threading.Lock()
_DPI = 100
_PT = 72 / _DPI  # points per pixel at _DPI
# Each palette mixes dark, mid and light colours: slices and series differ in brightness, not only hue.
_CHART_PALETTES = (("#1f4e8c", "#f0a040", "#9fd08a", "#5a2a6e", "#d8d8d8", "#c0392b"),
                   ("#274c77", "#a3cef1", "#e76f51", "#1b998b", "#f4e285", "#6d597a"),
                   ("#461220", "#fcb9b2", "#b23a48", "#f7e1d7", "#8c2f39", "#4a5759"),
                   ("#264653", "#e9c46a", "#2a9d8f", "#f4a261", "#e76f51", "#8ab17d"),
                   ("#003049", "#fcbf49", "#d62828", "#eae2b7", "#f77f00", "#669bbc"),
                   ("#2b2d42", "#edf2f4", "#ef233c", "#8d99ae", "#d90429", "#a7c957"))
_MEASURES = (("Revenue (k$)", 40, 400), ("Units sold", 100, 2000), ("Visitors", 500, 9000),
             ("Orders", 20, 300), ("Rainfall (mm)", 10, 180), ("Downloads", 200, 5000))
_Chart = tuple[str, list[str]]  # title, other words drawn


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """About 4-6 round tick values covering [lo, hi]."""
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(math.ceil((hi - start) / step) + 1)]


def _value_ticks(ax: Axes, axis: str, lo: float, hi: float, px: float) -> list[str]:
    """Round ticks on a value axis, labelled by us so that `words` knows every label drawn."""
    ticks = _nice_ticks(lo, hi)
    labels = [f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}" for v in ticks]
    set_ticks, set_lim = (ax.set_xticks, ax.set_xlim) if axis == "x" else (ax.set_yticks, ax.set_ylim)
    set_ticks(ticks, labels=labels, fontsize=px * _PT)
    set_lim(ticks[0], ticks[-1])
    return labels


def _categories(s: random.Random) -> tuple[str, list[str]]:
    n = s.randint(4, 7)
    kind = s.choice(("Month", "Quarter", "Year"))
    if kind == "Month":
        start = s.randint(0, 12 - n)
        return kind, list(_MONTHS[start:start + n])
    if kind == "Quarter":
        return kind, [f"Q{i + 1}" for i in range(4)]
    first = s.randint(2012, 2024 - n)
    return kind, [str(first + i) for i in range(n)]


def _chart_bars(ax: Axes, s: random.Random, c: random.Random, colors: tuple[str, ...],
                px: float) -> _Chart:
    horizontal = s.random() < 0.3
    axis, cats = ("Product", list(s.sample(_PRODUCTS, s.randint(4, 6)))) if horizontal else _categories(s)
    regions = ("North", "South", "East", "West", "Online", "Retail")
    series = [] if horizontal else s.sample(regions, s.randint(1, 3))
    measure, lo, hi = s.choice(_MEASURES)
    name = measure.split(" (")[0]
    n = max(1, len(series))
    width, top = 0.8 / n, 0.0
    for k in range(n):
        vals = [c.uniform(lo * 0.1, hi) for _ in cats]
        top = max(top, *vals)
        pos = [i - 0.4 + width * (k + 0.5) for i in range(len(cats))]
        label = series[k] if series else name
        (ax.barh if horizontal else ax.bar)(pos, vals, width * 0.9, color=colors[k], label=label)
    ticks = _value_ticks(ax, "x" if horizontal else "y", 0, top, px)
    (ax.set_yticks if horizontal else ax.set_xticks)(range(len(cats)), labels=cats, fontsize=px * _PT)
    (ax.set_xlabel if horizontal else ax.set_ylabel)(measure, fontsize=px * _PT)
    title = f"{name} by {'Region' if len(series) > 1 else axis}"
    return title, cats + ticks + (series or [name]) + measure.split()


def _chart_lines(ax: Axes, s: random.Random, c: random.Random, colors: tuple[str, ...],
                 px: float) -> _Chart:
    axis, cats = _categories(s)
    series = s.sample(_PRODUCTS, s.randint(1, 3))
    measure, lo, hi = s.choice(_MEASURES)
    top = 0.0
    for k, name in enumerate(series):
        v, vals = c.uniform(lo, hi), []
        for _ in cats:
            v = min(hi, max(lo * 0.2, v * c.uniform(0.5, 1.6)))
            vals.append(v)
        top = max(top, *vals)
        ax.plot(range(len(cats)), vals, color=colors[k], linewidth=4, marker="o", markersize=10, label=name)
        if k == 0:
            ax.fill_between(range(len(cats)), vals, color=colors[k], alpha=0.3)
    ticks = _value_ticks(ax, "y", 0, top, px)
    ax.set_xticks(range(len(cats)), labels=cats, fontsize=px * _PT)
    ax.set_ylabel(measure, fontsize=px * _PT)
    return f"{measure.split(' (')[0]} per {axis}", cats + ticks + series + measure.split()


def _chart_pie(ax: Axes, s: random.Random, c: random.Random, colors: tuple[str, ...],
               px: float) -> _Chart:
    donut, radius, side = s.random() < 0.5, s.uniform(0.75, 1.1), s.choice(("right", "left", "below"))
    names = c.sample(_PRODUCTS, c.randint(3, 6))
    vals = [c.uniform(1, 10) ** 1.5 for _ in names]
    pcts = [f"{round(100 * v / sum(vals))}%" for v in vals]
    ax.pie(vals, labels=pcts, colors=colors[:len(names)], startangle=c.uniform(0, 360), radius=radius,
           textprops={"fontsize": px * _PT}, wedgeprops={"edgecolor": "white", "linewidth": 2,
                                                         "width": 0.5 * radius if donut else radius})
    legend_at: dict[str, dict[str, Any]] = {
        "right": {"loc": "center left", "bbox_to_anchor": (1.0, 0.5)},
        "left": {"loc": "center right", "bbox_to_anchor": (0.0, 0.5)},
        "below": {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0), "ncols": 2}}
    where = legend_at[side]
    ax.legend(labels=names, fontsize=px * _PT, frameon=False, **where)
    return s.choice(("Market Share", "Sales by Product", "Budget Split", "Share of Orders")), pcts + names


def _chart_scatter(ax: Axes, s: random.Random, c: random.Random, colors: tuple[str, ...],
                   px: float) -> _Chart:
    (xl, xlo, xhi), (yl, ylo, yhi) = s.sample((("Height (cm)", 140, 200), ("Weight (kg)", 40, 110),
                                               ("Age (years)", 18, 80), ("Price ($)", 5, 60)), 2)
    groups = c.sample(("Group A", "Group B", "Group C", "Control"), c.randint(1, 3))
    for k, name in enumerate(groups):
        mx, my, sd = c.uniform(0.2, 0.8), c.uniform(0.2, 0.8), c.uniform(0.06, 0.14)
        xs = [xlo + (xhi - xlo) * min(0.98, max(0.02, c.gauss(mx, sd))) for _ in range(c.randint(30, 70))]
        ys = [ylo + (yhi - ylo) * min(0.98, max(0.02, c.gauss(my, sd))) for _ in xs]
        ax.scatter(xs, ys, s=200, color=colors[k], label=name, alpha=0.9, edgecolors="white")
    words = _value_ticks(ax, "x", xlo, xhi, px) + _value_ticks(ax, "y", ylo, yhi, px)
    ax.set_xlabel(xl, fontsize=px * _PT)
    ax.set_ylabel(yl, fontsize=px * _PT)
    return f"{yl.split(' (')[0]} vs {xl.split(' (')[0]}", words + groups + xl.split() + yl.split()


_CHARTS = {"bar": _chart_bars, "line": _chart_lines, "pie": _chart_pie, "scatter": _chart_scatter}


def _chart(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = _rng("chart", seed)
    kind = s.choice(sorted(_CHARTS))
    w, h = _sized(size, _pick_size(s, lo=480, aspect=(1.0, 1.7)))
    px = float(max(_min_px("DejaVuSans.ttf"), round(min(w, h) / 22)))
    colors, bg = s.choice(_CHART_PALETTES), s.choice(("#ffffff", "#f7f7f4", "#f2f5fa"))
    year = f" {s.randint(2015, 2024)}" if s.random() < 0.5 else ""
    c = _rng("chart", seed, content)
    with _MPL_LOCK, matplotlib.style.context("default"):
        fig = Figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI, facecolor=bg, layout="constrained")
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot(facecolor=bg)
        title, words = _CHARTS[kind](ax, s, c, colors, px)
        title_px = round(px * 1.25)
        title = " ".join(_fit((title + year).split(), _font("DejaVuSans-Bold.ttf", title_px), w * 0.9))
        ax.set_title(title, fontsize=title_px * _PT, fontweight="bold")
        if kind != "pie":
            ax.legend(fontsize=px * _PT, framealpha=0.9)
            ax.grid(axis="y" if kind != "scatter" else "both", alpha=0.3)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
    image = Image.fromarray(rgba[..., :3].copy())
    if image.size != (w, h):  # float figsize can round a pixel off
        image = ImageOps.pad(image, (w, h), color=bg)
    return Rendered(image, "chart", _clean(title.split() + words))


def chart(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A bar, line, pie or scatter chart with title, axis labels, tick labels and legend (matplotlib)."""
    return _legible(_chart, 480, seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Tables


_COLUMNS: dict[str, Callable[[random.Random], str]] = {
    "Product": lambda r: f"{r.choice(_PRODUCTS)} {r.choice(('Pro', 'Mini', 'Max', 'Lite', 'One', 'Plus'))}",
    "City": lambda r: r.choice(_CITIES),
    "Name": lambda r: f"{r.choice(_FIRST_NAMES)} {r.choice(_LAST_NAMES)}",
    "Month": lambda r: r.choice(_MONTHS_FULL),
    "Qty": lambda r: str(r.randint(1, 480)),
    "Price": lambda r: f"${r.randint(2, 900)}.{r.randint(0, 99):02d}",
    "Change": lambda r: f"{r.uniform(-12, 12):+.1f}%",
    "Status": lambda r: r.choice(("shipped", "pending", "open", "closed", "paid", "late")),
    "Date": lambda r: f"2023-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "Score": lambda r: str(r.randint(40, 100)),
}
_NUMERIC = {"Qty", "Price", "Change", "Score"}


def _table(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    """Header row and 4-12 body rows in ruled cells; numbers right-aligned, optional zebra and data bars.
    Columns take their content's width; the picture is a page with room for 12 rows or (half the seeds,
    unless `size` is given) a crop to the table, as table screenshots are. Either way row and column
    counts shape its outline, and a lookalike's differ."""
    s = _rng("table", seed)
    w = _pick_size(s, lo=440, aspect=(1.0, 1.8))[0]
    regular, bold = _FAMILIES[s.choice(("sans", "serif", "mono"))]
    px = max(_min_px(regular), _min_px(bold), round(w / s.uniform(32, 44)))
    font, head_font = _font(regular, px), _font(bold, px)
    columns = [s.choice(("Product", "City", "Name", "Month"))]
    columns += s.sample(sorted(set(_COLUMNS) - {"Product", "City", "Name", "Month"}), s.randint(2, 5))
    bg, fg, accent = s.choice(_LIGHT_BG), s.choice(_DARK_FG), s.choice(_ACCENTS)
    dark_header, grid, zebra, bars = s.random() < 0.5, s.random() < 0.5, s.random() < 0.5, s.random() < 0.5
    margin, pad, row_h = round(w * s.uniform(0.03, 0.08)), round(px * 0.6), round(px * 1.9)
    caption = _title(s, s.randint(2, 4)) if s.random() < 0.7 else []
    cap_h = round(px * 2.2) if caption else 0
    centered, middle, note = s.random() < 0.5, s.random() < 0.5, s.random() < 0.5
    if size is None and s.random() < 0.5:  # a page with room for 12 rows rather than a crop to the table
        size = (w, min(1024, max(round(w / 1.8), 2 * margin + cap_h + 13 * row_h + 3 * px)))
    room = size[1] if size else 1024 - round(px * 3.4)  # a crop keeps room for two lines of notes
    fit = max(1, (room - 2 * margin - cap_h) // row_h - 1)
    n_rows = _vary(s.randint(4, 12), min(4, fit), min(12, fit), content != "content")
    columns = columns[:_vary(s.randint(3, len(columns)), 2, len(columns), content != "content")]

    c = _rng("table", seed, content)
    rows = [[_COLUMNS[col](c) for col in columns] for _ in range(n_rows)]
    widths = [max(font.getlength(v) for v in [col] + [r[i] for r in rows]) + 2 * pad
              for i, col in enumerate(columns)]
    while len(columns) > 2 and sum(widths) > (size[0] if size else w) - 2 * margin:
        columns, widths, rows = columns[:-1], widths[:-1], [r[:-1] for r in rows]
    notes = _wrap(["Source:"] + _sentence(c) + _sentence(c), font, sum(widths))[:2] if note else []
    block_w = round(sum(widths))
    block_h = cap_h + (n_rows + 1) * row_h + round(len(notes) * px * 1.4 + px * 0.6 * bool(notes))
    if size is None:  # crop to the table, padded to a side of 320 px and an aspect ratio in [0.6, 1.8]
        cap_w = min(head_font.getlength(" ".join(caption)), w - 2 * margin)
        tw, th = round(max(block_w, cap_w)) + 2 * margin, block_h + 2 * margin
        w, h = max(320, tw, round(th * 0.6)), max(320, th, round(tw / 1.8))
    else:
        w, h = size

    image = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(image)
    drawn: list[str] = []
    left = max(margin, (w - block_w) // 2) if centered else margin
    top = max(margin, (h - block_h) // 2) if middle else margin
    if caption:
        caption = _fit(caption, head_font, w - left - margin)
        draw.text((left, top), " ".join(caption), font=head_font, fill=fg)
        drawn += caption
    top += cap_h
    xs = [left + sum(widths[:i]) for i in range(len(widths) + 1)]
    header_bg = _mix(accent, (0, 0, 0), 0.2) if dark_header else _mix(bg, (120, 120, 120), 0.25)
    draw.rectangle((xs[0], top, xs[-1], top + row_h), fill=header_bg)
    for r, values in enumerate([columns] + rows):
        y = top + r * row_h
        if r and zebra and r % 2 == 0:
            draw.rectangle((xs[0], y, xs[-1], y + row_h), fill=_mix(bg, accent, 0.08))
        for i, value in enumerate(values):
            numeric = r > 0 and columns[i] in _NUMERIC
            if numeric and bars and columns[i] in ("Qty", "Score"):
                frac = float(value) / max(float(row[i]) for row in rows)
                draw.rectangle((xs[i] + 2, y + 4, xs[i] + 2 + frac * (widths[i] - 4), y + row_h - 4),
                               fill=_mix(bg, accent, 0.3))
            x, anchor = (xs[i + 1] - pad, "rm") if numeric else (xs[i] + pad, "lm")
            color = (255, 255, 255) if r == 0 and dark_header else fg
            draw.text((x, y + row_h / 2), value, font=font if r else head_font, fill=color, anchor=anchor)
            drawn.append(value)
        draw.line((xs[0], y + row_h, xs[-1], y + row_h), fill=_mix(fg, bg, 0.6), width=1 if r else 2)
    bottom = top + (len(rows) + 1) * row_h
    if grid:
        for x in xs:
            draw.line((x, top, x, bottom), fill=_mix(fg, bg, 0.6), width=1)
        draw.line((xs[0], top, xs[-1], top), fill=_mix(fg, bg, 0.6), width=1)
    for i, line in enumerate(notes[: max(0, int((h - margin - bottom - px * 0.5) // (px * 1.4)))]):
        draw.text((left, bottom + px * (0.6 + 1.4 * i)), " ".join(line), font=font, fill=fg)
        drawn += line
    return Rendered(image, "table", _clean(drawn))


def table(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A ruled table: header row, 4-12 rows of names, places, dates and numbers."""
    return _legible(_table, 440, seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Signs: a photo with a caption bar or a board of 1-5 large words


def _sign(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    """The photo is the photo pool's window `seed + PHOTO_VARIANTS // 2`, mirrored: a sign never shares a
    pHash with `photo(seed)`, and lookalike signs keep the layout over a different photo."""
    s = _rng("sign", seed)
    w, h = _sized(size, _pick_size(s, lo=360))
    style = s.choice(("bar", "board"))
    regular, bold = _FAMILIES[s.choice(("sans", "serif", "sans"))]
    px = max(_min_px(bold), round(min(w, h) / s.uniform(6, 10)))
    at_top, board_color = s.random() < 0.4, s.choice(((250, 250, 245), (250, 210, 40), (20, 90, 50),
                                                      (25, 60, 140), (170, 30, 30)))
    c = _rng("sign", seed, content)
    variant = (seed + PHOTO_VARIANTS // 2 + (content != "content")) % PHOTO_VARIANTS
    image = _photo_window(variant, c, (w, h), mirror=True)
    font = _font(bold, px)
    words = c.sample(_SIGN_WORDS, c.randint(1, 5))
    text_fg = (0, 0, 0) if _lum(board_color) > 128 else (255, 255, 255)
    if style == "bar":
        line = _fit(words, font, w * 0.92)
        bar_h = round(px * 1.7)
        bar_y = 0 if at_top else h - bar_h
        overlay = Image.new("RGBA", (w, h))
        ImageDraw.Draw(overlay).rectangle((0, bar_y, w, bar_y + bar_h), fill=(0, 0, 0, 190))
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
        ImageDraw.Draw(image).text((w / 2, bar_y + bar_h / 2), " ".join(line), font=font, fill=(255,) * 3,
                                   anchor="mm")
        return Rendered(image, "sign", _clean(line))
    lines = [_fit(line, font, w * 0.8) for line in _wrap(words, font, w * 0.8)][:3]
    box_w = max(font.getlength(" ".join(line)) for line in lines) + px
    box_h = len(lines) * px * 1.3 + px * 0.7
    x0, y0 = c.uniform(0.02, 0.98) * (w - box_w), c.uniform(0.02, 0.98) * max(0.0, h - box_h)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((x0, y0, x0 + box_w, y0 + box_h), radius=px // 4, fill=board_color,
                           outline=text_fg, width=max(2, px // 12))
    for i, line in enumerate(lines):
        draw.text((x0 + box_w / 2, y0 + px * 0.35 + (i + 0.5) * px * 1.3), " ".join(line), font=font,
                  fill=text_fg, anchor="mm")
    return Rendered(image, "sign", _clean([word for line in lines for word in line]))


def sign(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A real photo with a dark caption bar (white words) or a sign board of 1-5 large words over it."""
    return _legible(_sign, 320, seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Screenshots


_APPS = ("Mail", "Notes", "Orders", "Files", "Calendar", "Contacts", "Inventory", "Settings", "Reports")
_MENU = ("File", "Edit", "View", "Insert", "Format", "Tools", "Window", "Help")
_BUTTONS = ("Save", "Cancel", "Submit", "Search", "Open", "Delete", "Export", "Apply", "Next", "Share")
_FIELDS = ("Name", "Email", "City", "Phone", "Subject", "Order", "Amount", "Date", "Company", "Product")


def _field_value(label: str, r: random.Random) -> str:
    return {"Name": lambda: f"{r.choice(_FIRST_NAMES)} {r.choice(_LAST_NAMES)}",
            "Email": lambda: f"{r.choice(_FIRST_NAMES).lower()}@example.org",
            "City": lambda: r.choice(_CITIES), "Phone": lambda: f"555-{r.randint(1000, 9999)}",
            "Amount": lambda: f"${r.randint(5, 999)}.00",
            "Date": lambda: f"{r.randint(1, 28)} {r.choice(_MONTHS)}",
            "Product": lambda: r.choice(_PRODUCTS), "Order": lambda: f"#{r.randint(10000, 99999)}",
            }.get(label, lambda: " ".join(_title(r, 2)))()


class _Canvas:
    """Pillow drawing plus the list of words drawn, in order."""

    def __init__(self, image: Image.Image) -> None:
        self.image, self.draw = image, ImageDraw.Draw(image)
        self.words: list[str] = []

    def text(self, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont, fill: tuple[int, ...],
             anchor: str = "lm") -> None:
        self.draw.text(xy, text, font=font, fill=fill, anchor=anchor)
        self.words.append(text)

    def button(self, x: float, y: float, label: str, font: ImageFont.FreeTypeFont, fill: tuple[int, int, int],
               px: int) -> float:
        bw = font.getlength(label) + px * 1.4
        self.draw.rounded_rectangle((x, y, x + bw, y + px * 1.8), radius=px // 3, fill=fill)
        self.text((x + bw / 2, y + px * 0.9), label, font, (255, 255, 255), "mm")
        return bw


@dataclass(frozen=True)
class _Theme:
    fg: tuple[int, int, int]
    bg: tuple[int, int, int]
    accent: tuple[int, int, int]
    dark: bool


def _vary(base: int, lo: int, hi: int, alt: bool) -> int:
    """A count or index fixed by the template (`base`, clamped to [lo, hi]); a lookalike's (`alt`) sits
    half the range away, so the two layouts differ where a perceptual hash looks."""
    span = max(1, hi - lo + 1)
    n = min(max(base, lo), hi)
    return lo + (n - lo + span // 2) % span if alt else n


def _screenshot(seed: int, content: str, size: tuple[int, int] | None) -> Rendered:
    """A desktop window: title bar, menu, optional sidebar list, and a form, item list or image preview."""
    s = _rng("screenshot", seed)
    w, h = _sized(size, _pick_size(s, lo=480, aspect=(0.6, 1.8)))
    dark = s.random() < 0.25
    bg, fg = ((32, 33, 36), (235, 235, 235)) if dark else (s.choice(_LIGHT_BG), s.choice(_DARK_FG))
    theme = _Theme(fg, bg, s.choice(_ACCENTS), dark)
    chrome = _mix(bg, (128, 128, 128), 0.3)
    regular, bold = _FAMILIES["sans"]
    px = max(_min_px(regular), _min_px(bold), round(min(w, h) / s.uniform(24, 32)))
    font, bold_font = _font(regular, px), _font(bold, px)
    pane, app, menu = s.choice(sorted(_PANES)), s.choice(_APPS), _MENU[: s.randint(4, 8)]
    sidebar = round(w * s.uniform(0.24, 0.32)) if w >= 640 else 0
    bar = round(px * 1.8)
    top = bar * 2
    n_side = max(1, (h - top) // round(px * 2.2) - 1)
    selected = _vary(s.randint(0, n_side - 1), 0, n_side - 1, content != "content")

    c = _rng("screenshot", seed, content)
    cv = _Canvas(Image.new("RGB", (w, h), bg))
    cv.draw.rectangle((0, 0, w, bar), fill=chrome)
    for i, color in enumerate(((237, 95, 87), (245, 190, 50), (90, 200, 80))):
        x = px * (0.6 + i * 1.1)
        cv.draw.ellipse((x, bar / 2 - px * 0.35, x + px * 0.7, bar / 2 + px * 0.35), fill=color)
    cv.text((w / 2, bar / 2), f"{' '.join(_title(c, 2))} - {app}", bold_font, fg, "mm")
    x = px * 0.8
    for item in menu:
        if x + font.getlength(item) > w - px:
            break
        cv.text((x, bar * 1.5), item, font, fg)
        x += font.getlength(item) + px * 1.2
    cv.draw.line((0, top, w, top), fill=chrome, width=2)
    if sidebar:
        cv.draw.rectangle((0, top, sidebar, h), fill=_mix(bg, chrome, 0.5))
        for i in range(n_side):
            y = top + px + i * px * 2.2
            if i == selected:
                cv.draw.rectangle((0, y - px * 1.1, sidebar, y + px * 1.1), fill=theme.accent)
            label = _fit(_title(c, c.randint(1, 2)), font, sidebar - px * 1.6)
            cv.text((px * 0.8, y), " ".join(label), font, (255, 255, 255) if i == selected else fg)
    _PANES[pane](cv, s, c, content != "content", (sidebar + px, top + px, w - px, h - px), px, theme)
    return Rendered(cv.image, "screenshot", _clean(cv.words))


_Box = tuple[float, float, float, float]


def _pane_form(cv: _Canvas, s: random.Random, c: random.Random, alt: bool, box: _Box, px: int,
               th: _Theme) -> None:
    """Heading, labelled text fields (how many: template, varied for a lookalike), two buttons."""
    x0, y, x1, y1 = box
    font, bold = _font(_FAMILIES["sans"][0], px), _font(_FAMILIES["sans"][1], round(px * 1.2))
    n = _vary(s.randint(2, 6), 1, min(6, max(1, int((y1 - y - px * 7) // (px * 2.6)))), alt)
    cv.text((x0, y + px * 0.7), " ".join(_title(c, c.randint(2, 3))), bold, th.fg)
    y += px * 2.4
    label_w = max(font.getlength(f) for f in _FIELDS) + px
    field_bg = (50, 52, 56) if th.dark else (255, 255, 255)
    for label in c.sample(_FIELDS, n):
        cv.text((x0, y + px), label, font, th.fg)
        cv.draw.rectangle((x0 + label_w, y, x1, y + px * 2), fill=field_bg, outline=_mix(th.fg, th.bg, 0.5),
                          width=2)
        value = _fit(_field_value(label, c).split(), font, x1 - x0 - label_w - px)
        if font.getlength(" ".join(value)) <= x1 - x0 - label_w - px:  # else left empty, never clipped
            cv.text((x0 + label_w + px * 0.5, y + px), " ".join(value), font, th.fg)
        y += px * 2.6
    x = x0 + label_w
    for i, label in enumerate(c.sample(_BUTTONS, 2)):
        x += cv.button(x, y + px * 0.4, label, font, th.accent if i == 0 else (90, 90, 90), px) + px


def _pane_list(cv: _Canvas, s: random.Random, c: random.Random, alt: bool, box: _Box, px: int,
               th: _Theme) -> None:
    """Rows with an avatar, a bold name and a line of text; one row selected."""
    x0, y, x1, y1 = box
    font, bold = _font(_FAMILIES["sans"][0], px), _font(_FAMILIES["sans"][1], px)
    row = px * 3.2
    n = _vary(s.randint(3, 9), 2, min(9, max(2, int((y1 - y) // row))), alt)
    selected = _vary(s.randint(0, n - 1), 0, n - 1, alt)
    for i in range(n):
        top = y + i * row
        if i == selected:
            cv.draw.rectangle((x0 - px // 2, top, x1, top + row), fill=_mix(th.bg, th.accent, 0.25))
        cv.draw.ellipse((x0, top + row / 2 - px, x0 + 2 * px, top + row / 2 + px), fill=c.choice(_ACCENTS))
        name = f"{c.choice(_FIRST_NAMES)} {c.choice(_LAST_NAMES)}"
        cv.text((x0 + px * 2.6, top + row * 0.3), name, bold, th.fg)
        line = _fit(_sentence(c), font, x1 - x0 - px * 3)
        cv.text((x0 + px * 2.6, top + row * 0.72), " ".join(line), font, _mix(th.fg, th.bg, 0.25))
        cv.draw.line((x0, top + row, x1, top + row), fill=_mix(th.fg, th.bg, 0.8), width=1)


def _pane_preview(cv: _Canvas, s: random.Random, c: random.Random, alt: bool, box: _Box, px: int,
                  th: _Theme) -> None:
    """An image viewer: a synthetic picture, a caption line and three buttons."""
    x0, y0, x1, y1 = box
    font = _font(_FAMILIES["sans"][0], px)
    pw, ph = int(x1 - x0), int(y1 - y0 - px * 5)
    if pw > 16 and ph > 16:
        cv.image.paste(_natural(c.getrandbits(32), "content", (pw, ph)).image, (int(x0), int(y0)))
    caption = _fit(_sentence(c), font, x1 - x0)
    cv.text((x0, y1 - px * 3.6), " ".join(caption), font, th.fg)
    x = x0
    for i, label in enumerate(c.sample(_BUTTONS, 3)):
        x += cv.button(x, y1 - px * 2, label, font, th.accent if i == 0 else (90, 90, 90), px) + px


_PANES = {"form": _pane_form, "list": _pane_list, "preview": _pane_preview}


def screenshot(seed: int, size: tuple[int, int] | None = None) -> Rendered:
    """A UI window: title bar, menu, sidebar list, buttons with labels, text fields or a list of items."""
    return _legible(_screenshot, 480, seed, "content", size)


# ---------------------------------------------------------------------------------------------------------
# Real photos of text (scikit-image's `text` and `page`)

# What the two photos say. `text` is handwritten maths on squared paper, read token by token.
_REAL_TEXT_WORDS = ("(s)", "=", "(t-x)", "2s", "=", "t", "n")
_REAL_PAGE_WORDS = tuple((
    "Region-based segmentation Let us first determine markers of the coins and the background. These "
    "markers are pixels that we can label unambiguously as either object or background. Here, the markers "
    "are found at the two extreme parts of the histogram of grey values: >>> markers = np.zeros_like(coins)"
).split())


def real_text_photo(seed: int) -> Rendered:
    """Seed parity picks skimage `text` (kind "sign") or `page` (kind "document"); upscaled 2.0-2.6x so
    the page's body capitals reach ~18 px. Only two source photos: seeds of one parity are near-duplicates."""
    r = _rng("real_text_photo", seed)
    text = seed % 2 == 1
    name, kind, words = ("text", "sign", _REAL_TEXT_WORDS) if text else ("page", "document", _REAL_PAGE_WORDS)
    src = _source(name)
    factor = r.uniform(2.0, min(2.6, 1024 / max(src.size)))
    size = (round(src.width * factor), round(src.height * factor))
    return Rendered(src.resize(size, Image.Resampling.LANCZOS).convert("RGB"), kind, _clean(words))


# ---------------------------------------------------------------------------------------------------------
# Encoding and near-duplicate transforms

_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP",
            "tiff": "TIFF", "tif": "TIFF"}


def encode(image: Image.Image, fmt: str, quality: int = 90, **kw: object) -> bytes:
    """Encode without timestamps or other varying metadata; `quality` applies to JPEG and WebP, other
    keywords (optimize, compress_level, progressive, subsampling, lossless, exif, ...) pass through."""
    name = _FORMATS[fmt.lower()]
    if name == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    if name in ("JPEG", "WEBP"):
        kw.setdefault("quality", quality)
    buf = io.BytesIO()
    image.save(buf, name, **kw)
    return buf.getvalue()


def rescale(image: Image.Image, factor: float) -> Image.Image:
    """The same picture at `factor` times the size (Lanczos)."""
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def crop(image: Image.Image, fraction: float) -> Image.Image:
    """Remove `fraction` of the width and of the height in total, half on each side (a re-crop as sites do).
    A 64-bit DCT pHash tolerates little cropping (a crop shifts every low frequency): on 140 renders of
    this module, the share within Hamming distance 8 is 99% at 2%, 96% at 3%, 78% at 5% (worst 16 bits)
    and 44% at 8% (worst 28)."""
    if not 0 <= fraction < 0.5:
        raise ValueError(f"crop fraction must be in [0, 0.5), got {fraction}")
    dw, dh = round(image.width * fraction), round(image.height * fraction)
    return image.crop((dw // 2, dh // 2, image.width - (dw - dw // 2), image.height - (dh - dh // 2)))


def brighten(image: Image.Image, factor: float) -> Image.Image:
    """Brightness times `factor` (1.05-1.2 keeps it the same picture)."""
    return ImageEnhance.Brightness(image).enhance(factor)


def recompress(data: bytes, quality: int) -> bytes:
    """Decode any image and re-encode it as a baseline JPEG at `quality`."""
    with Image.open(io.BytesIO(data)) as src:
        image = src.convert("RGB") if src.mode not in ("RGB", "L") else src.copy()
    return encode(image, "jpeg", quality=quality)


_LOOKALIKE: dict[str, _Renderer] = {
    "natural": _natural,
    "document": functools.partial(_legible, _document, 360),
    "chart": functools.partial(_legible, _chart, 480),
    "table": functools.partial(_legible, _table, 440),
    "sign": functools.partial(_legible, _sign, 320),
    "screenshot": functools.partial(_legible, _screenshot, 480),
}


def lookalike(kind: str, seed: int) -> tuple[Rendered, Rendered]:
    """Two pictures that look alike at a glance but are not duplicates. For the drawn kinds the first is
    `<kind>(seed)` and the second keeps its template (size, layout, fonts, colours, chart type, axes) with
    other content (text, data, row/column/field counts, selection, pictures); a text page's lookalike ends
    at another height, and a table's is cropped to its own rows and columns (so its size differs).
    Photos: two disjoint quadrants of one source at the same scale and size, mirrored so that neither
    matches a `photo()` window."""
    if kind == "photo":
        r = _rng("photo", seed, "lookalike")
        src, n = seed % len(PHOTO_SOURCES), len(PHOTO_SOURCES)
        a, b = r.sample(range(1, len(_WINDOWS)), 2)
        size = _pick_size(r, hi=640)
        return (Rendered(_photo_window(src + a * n, _rng("photo", seed, "a"), size, mirror=True), "none", ()),
                Rendered(_photo_window(src + b * n, _rng("photo", seed, "b"), size, mirror=True), "none", ()))
    if kind not in _LOOKALIKE:
        raise ValueError(f"unknown lookalike kind {kind!r}; expected one of {LOOKALIKE_KINDS}")
    first = _LOOKALIKE[kind](seed, "content", None)
    return first, _LOOKALIKE[kind](seed, "lookalike", None if kind == "table" else first.image.size)


# ---------------------------------------------------------------------------------------------------------
# Special files: each has one defect (or legal oddity) and says what a decoder should do with it


def tracking_pixel(fmt: str = "gif") -> bytes:
    """A 1x1 image (transparent GIF/PNG/WebP, white JPEG). Decoders: too small, reject."""
    if fmt.lower() == "gif":
        pixel = Image.new("P", (1, 1), 0)
        pixel.putpalette([255, 255, 255, 0, 0, 0])
        return encode(pixel, "gif", transparency=0)
    mode = "RGB" if _FORMATS[fmt.lower()] == "JPEG" else "RGBA"
    return encode(Image.new(mode, (1, 1), (255, 255, 255) if mode == "RGB" else (0, 0, 0, 0)), fmt)


def extreme_aspect(seed: int) -> bytes:
    """A 1600-2400 x 12-24 px PNG strip (horizontal, or vertical for some seeds). Decoders: reject the
    aspect ratio (> 60:1), however valid the pixels."""
    r = _rng("extreme_aspect", seed)
    long_side, short = r.randint(1600, 2400), r.randint(12, 24)
    x = np.linspace(0, 1, long_side, dtype=np.float32)[None, :, None]
    a, b = (np.array(r.choice(_ACCENTS), np.float32) for _ in range(2))
    strip = np.broadcast_to(a + (b - a) * x, (short, long_side, 3)).copy()
    strip[:, (np.arange(long_side) // r.randint(20, 80)) % 2 == 0] *= 0.8
    image = _to_image(strip)
    return encode(image if r.random() < 0.7 else image.transpose(Image.Transpose.ROTATE_90), "png")


@functools.cache
def bomb() -> bytes:
    """A valid 12000x12000 1-bit PNG (144 MP, ~18 kB): above Pillow's MAX_IMAGE_PIXELS (89.5 MP), so
    `Image.open` only warns (DecompressionBombWarning) and would decode 144 MP; below twice that, so it
    does not raise. Decoders: escalate the warning and reject before decoding pixels."""
    return encode(Image.new("1", (12000, 12000), 0), "png", optimize=True)


def cmyk_jpeg(seed: int) -> bytes:
    """A photo as a CMYK JPEG (Adobe inverted CMYK). Decoders: keep it, convert to RGB."""
    return encode(photo(seed, _pick_size(_rng("cmyk", seed), hi=640)).image.convert("CMYK"), "jpeg")


def png16(seed: int) -> bytes:
    """A 16-bit greyscale PNG (opens as mode "I;16", values up to 65535). Decoders: keep it, scale to
    8 bits (>> 8): Pillow's convert("L") / ("RGB") clips at 255 and turns it almost white."""
    grey = np.asarray(photo(seed, _pick_size(_rng("png16", seed), hi=640)).image.convert("L"), np.uint16)
    noise = _np_rng(_rng("png16", seed, "noise")).integers(0, 256, grey.shape, dtype=np.uint16)
    return encode(Image.fromarray(grey * 256 + noise), "png")


def palette_transparent_png(seed: int) -> bytes:
    """A mode-P logo with a tRNS chunk (index 0 transparent). Decoders: keep it; convert via RGBA and
    composite on a background (P -> RGB directly warns and leaves the transparent colour showing)."""
    r = _rng("palette_transparent_png", seed)
    w, h = r.randint(320, 640), r.randint(320, 480)
    image = Image.new("P", (w, h), 0)
    colors = [r.choice(_ACCENTS) for _ in range(4)]
    image.putpalette([0, 0, 0] + [v for rgb in colors for v in rgb])
    draw = ImageDraw.Draw(image)
    for _ in range(r.randint(3, 8)):
        x, y, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(0.1, 0.3) * min(w, h)
        shape = draw.ellipse if r.random() < 0.5 else draw.rectangle
        shape((x - rad, y - rad, x + rad, y + rad), fill=r.randint(1, 4))
    return encode(image, "png", transparency=0)


def animated_gif(seed: int) -> bytes:
    """A 3-6 frame looping GIF panning across a natural scene. Decoders: keep it, use the first frame."""
    r = _rng("animated_gif", seed)
    n, w, h = r.randint(3, 6), r.randint(240, 360), r.randint(200, 300)
    scene = natural(seed, (w * 2, h)).image
    step = w // n
    frames = [scene.crop((i * step, 0, i * step + w, h)) for i in range(n)]
    return encode(frames[0], "gif", save_all=True, append_images=frames[1:], duration=120, loop=0)


def webp(seed: int) -> bytes:
    """A photo as lossy WebP (quality 80). Decoders: keep it."""
    return encode(photo(seed, _pick_size(_rng("webp", seed), hi=800)).image, "webp", quality=80)


def exif_rotated_jpeg(seed: int) -> tuple[bytes, tuple[int, int]]:
    """A portrait photo stored landscape with EXIF Orientation 6 or 8; returns the bytes and the
    displayed (w, h). Decoders: apply the orientation (ImageOps.exif_transpose) before anything else."""
    r = _rng("exif_rotated_jpeg", seed)
    w, h = r.randint(320, 600), r.randint(640, 900)
    shown = photo(seed, (w, h)).image
    orientation = r.choice((6, 8))
    stored = shown.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "jpeg", exif=exif.tobytes()), (w, h)


def corrupt_bytes(seed: int) -> bytes:
    """A JPEG SOI marker (FF D8 FF, what sniffers test) then an invalid marker and 2-8 kB of garbage.
    Pillow refuses it at open. Decoders: undecodable, reject."""
    r = _rng("corrupt_bytes", seed)
    return b"\xff\xd8\xff\x01" + r.randbytes(r.randint(2048, 8192))


def truncated_jpeg(seed: int) -> bytes:
    """A baseline JPEG photo cut at ~60% (no EOI). `Image.open` succeeds, `load()` raises OSError unless
    LOAD_TRUNCATED_IMAGES is set. Decoders: reject as truncated, never pad with grey."""
    data = encode(photo(seed, _pick_size(_rng("truncated_jpeg", seed), hi=800)).image, "jpeg")
    return data[: round(len(data) * _rng("truncated_jpeg", seed, "cut").uniform(0.55, 0.65))]


def bmp(seed: int) -> bytes:
    """A photo as 24-bit BMP. Decoders that only accept JPEG/PNG/WebP/GIF: unsupported format."""
    return encode(photo(seed, _pick_size(_rng("bmp", seed), hi=480)).image, "bmp")


def tiff(seed: int) -> bytes:
    """A photo as uncompressed TIFF. Decoders that only accept JPEG/PNG/WebP/GIF: unsupported format."""
    return encode(photo(seed, _pick_size(_rng("tiff", seed), hi=480)).image, "tiff")


def small_image(seed: int) -> bytes:
    """A real photo JPEG whose shorter side is 36-44 px. Decoders: too small, reject."""
    r = _rng("small_image", seed)
    short, long_side = r.randint(36, 44), r.randint(48, 90)
    size = (long_side, short) if r.random() < 0.5 else (short, long_side)
    return encode(photo(seed, size).image, "jpeg")


def html_bytes() -> bytes:
    """A small HTML error page, as a misconfigured server sends it with Content-Type image/jpeg.
    Decoders: not an image, reject (sniff the bytes, not the header)."""
    return (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found</h1>\n"
            b"<p>The requested URL was not found on this server.</p>\n<hr><address>nginx</address>\n"
            b"</body></html>\n")
