"""Configuration: dataclass defaults < YAML file < command-line flags; validated, frozen, recorded.

Every tunable of every stage lives here, in one frozen dataclass per section. `load_config` merges the
three layers, coerces YAML/flag strings to the declared types, rejects unknown keys and bad values with a
one-line `ConfigError`, and returns an immutable `Config`. `write_config` stores the merged result next
to the outputs (`OUT/config.yaml`) with the code version and the inputs, so a dataset says how it was
made.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from curate.errors import ConfigError

TEXT_FILTERS = ("none", "light", "heavy", "notext")
IMAGE_FORMATS = ("jpeg", "png", "webp", "gif")


@dataclass(frozen=True)
class ExtractConfig:
    source: str = "warc"  # warc | wat
    max_files: int | None = None  # per snapshot; None = all
    shards: int = 8  # output Parquet files for refs (and for rejects, failures); ~1M refs a shard suits big jobs
    url_column: str = "url"  # URL lists (csv, tsv, parquet): the column holding the image URL ...
    caption_column: str = "caption"  # ... and the one holding its caption (optional), as img2dataset names them

    def validate(self) -> None:
        _choice("extract.source", self.source, ("warc", "wat"))
        _positive("extract.max_files", self.max_files, allow_none=True)
        _positive("extract.shards", self.shards)


@dataclass(frozen=True)
class DownloadConfig:
    timeout: float = 10.0  # seconds per socket operation (img2dataset's own timeout)
    deadline: float = 30.0  # seconds for a whole request, redirects included
    retries: int = 0  # img2dataset's own retries repeat every failure, 404s too; prefer --retry-failed
    threads: int = 16
    user_agent_token: str = "curate"
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    max_bytes: int = 20 * 1024 * 1024
    resize_mode: str = "no"  # no: originals kept byte for byte; else img2dataset's modes (keep_ratio, center_crop...)
    image_size: int = 256  # img2dataset's target size, when resizing
    encode_format: str = "jpg"  # when resizing; also the extension img2dataset gives image members
    min_image_size: int = 0  # img2dataset's check, applied when resizing (decode/validate checks sizes anyway)
    samples_per_shard: int = 10_000  # URLs per img2dataset shard
    # Addresses (IPs or CIDRs) the SSRF guard lets through although they are not public: the local sample
    # crawl (127.0.0.1) and tests. Empty: only public addresses are ever contacted.
    allow_private_hosts: tuple[str, ...] = ()

    def validate(self) -> None:
        for name in ("timeout", "deadline"):
            _positive(f"download.{name}", getattr(self, name))
            if math.isinf(getattr(self, name)):
                raise ConfigError(f"download.{name} must be a finite number of seconds (got inf)")
        if not re.fullmatch(r"[A-Za-z_-]+", self.user_agent_token):
            raise ConfigError("download.user_agent_token must be a product token: letters, '_' and '-' only "
                              f"(RFC 9309; got {self.user_agent_token!r})")
        _positive("download.threads", self.threads)
        _positive("download.max_bytes", self.max_bytes)
        _non_negative("download.retries", self.retries)
        _non_negative("download.min_image_size", self.min_image_size)
        _choice("download.resize_mode", self.resize_mode, ("no", "keep_ratio", "keep_ratio_largest", "center_crop",
                                                           "border"))
        _choice("download.encode_format", self.encode_format, ("jpg", "png", "webp"))
        _positive("download.image_size", self.image_size)
        _positive("download.samples_per_shard", self.samples_per_shard)
        if self.deadline < self.timeout:
            raise ConfigError("download.deadline must be >= download.timeout")
        for entry in self.allow_private_hosts:
            try:
                ipaddress.ip_network(entry, strict=True)
            except ValueError:
                raise ConfigError(f"download.allow_private_hosts: not an IP address or network: {entry!r}") from None


@dataclass(frozen=True)
class ImageConfig:
    formats: tuple[str, ...] = IMAGE_FORMATS
    min_side: int = 64  # shorter side in pixels
    max_aspect_ratio: float = 4.0  # longer side / shorter side
    max_pixels: int = 89_478_485  # Pillow's decompression-bomb threshold, enforced as an error
    # ORB keypoints and a grey thumbnail of every picture (curate.keypoints, ~6 ms and <= 31 KB a picture), for
    # dedup to catch cropped, captioned and watermarked copies that the perceptual hash misses
    keypoints: bool = True

    def validate(self) -> None:
        for fmt in self.formats:
            _choice("image.formats", fmt, IMAGE_FORMATS + ("bmp", "tiff"))
        _positive("image.min_side", self.min_side)
        _positive("image.max_pixels", self.max_pixels)
        if self.max_aspect_ratio < 1:
            raise ConfigError("image.max_aspect_ratio must be >= 1")


@dataclass(frozen=True)
class DedupConfig:
    near: bool = True
    hamming_radius: int = 6  # of the 64-bit perceptual hash
    band_spare: int = 1  # extra pigeonhole bands: more keys per hash, far fewer wasted comparisons at scale
    rounds: int = 12  # label-propagation rounds: clusters up to this many hops across are resolved
    # Decontamination: evaluation sets whose near-duplicates (within hamming_radius) are dropped as eval_overlap:
    # folders, globs or tars of images (hashed at the start of the run) or hash lists (.txt/.hashes, one
    # 16-hex-digit pHash a line). An output built with an exclusion refuses a later run without it.
    exclude_near: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 0 <= self.hamming_radius <= 16:
            raise ConfigError("dedup.hamming_radius must be between 0 and 16")
        if not 0 <= self.band_spare <= 3:
            raise ConfigError("dedup.band_spare must be between 0 and 3")
        _positive("dedup.rounds", self.rounds)


@dataclass(frozen=True)
class TextConfig:
    filter: str = "none"  # none | light | heavy | notext
    # Thresholds on TextScore, chosen by leave-one-source-out cross-validation on real labelled images
    # (benchmarks/calibrate.py; figures in BENCHMARKS.md). Light: readable characters, or text-shaped lines
    # that the detector saw (text in a script the recognizer cannot read); heavy: enough text on a page, or a
    # page's worth of text in many lines whatever its background (a foxed, yellowed book scan).
    light_min_chars: int = 4  # readable text: at least this many readable characters ...
    light_min_extent: float = 10.0  # ... or text-shaped lines this many line heights long in all
    heavy_min_chars: int = 60  # text-dense (documents, charts, tables, receipts, screenshots): this many ...
    heavy_min_extent: float = 40.0  # ... (or text-shaped lines this many line heights long) ...
    heavy_min_page: float = 0.45  # ... on a page: at least this share of the text region's background flat
    heavy_min_lines: int = 1  # ... in at least this many lines
    heavy_dense_chars: int = 800  # also text-dense: this many characters ...
    heavy_dense_lines: int = 10  # ... in at least this many lines, whatever the background
    mode: str = "fast"  # fast: PP-OCRv4 on ONNX Runtime, lines read in part | full: easyocr readtext, all read
    detect_side: int = 960  # fast: detection with the picture's longer side at this many pixels
    read: int = 8  # fast: recognize this many text lines per picture (the largest), extrapolate the rest
    canvas: int = 1280  # full: easyocr detection bound, pixels on the longer side
    # CPU threads per worker for the models; 0: automatic (1 where the runner starts a worker per core, else the
    # library's default, one per core: curate.pipelines.text.worker_threads)
    threads: int = 0
    batch: int = 1  # pictures per OCR call (full mode on a GPU: easyocr takes them in turn)
    cache: str | None = None  # where scores are cached by pixel hash (default OUT/cache/ocr); any fsspec URL

    def validate(self) -> None:
        _choice("text.filter", self.filter, TEXT_FILTERS)
        _choice("text.mode", self.mode, ("fast", "full"))
        for name in ("light_min_chars", "light_min_extent", "heavy_min_lines", "heavy_min_chars", "heavy_min_extent",
                     "heavy_dense_chars", "heavy_dense_lines", "canvas", "detect_side", "read", "batch"):
            _positive(f"text.{name}", getattr(self, name))
        _non_negative("text.threads", self.threads)
        if not 0.0 <= self.heavy_min_page <= 1.0:
            raise ConfigError("text.heavy_min_page must be between 0 and 1")


@dataclass(frozen=True)
class ShardConfig:
    samples_per_shard: int = 10_000
    # The picture member of each tar sample. jpg: `<key>.jpg` in every sample, so loaders that want one type per
    # sample work (Hugging Face datasets, webdataset's to_tuple("jpg", ...)) and every reader sees the picture
    # as shown (its width x height): a JPEG's original bytes, or a re-encode (RGB, quality 95, `reencoded` in the
    # metadata) of other formats and of JPEGs with EXIF rotation. original: `<key>.<format>`, the original
    # bytes of every picture (one shard then mixes jpg, png, webp, gif).
    image_member: str = "jpg"
    parquet_images: bool = False  # also store each picture's original bytes in its shard's Parquet file

    def validate(self) -> None:
        _positive("shards.samples_per_shard", self.samples_per_shard)
        _choice("shards.image_member", self.image_member, IMAGE_MEMBERS)


@dataclass(frozen=True)
class Config:
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    text: TextConfig = field(default_factory=TextConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)

    def validate(self) -> Config:
        for section in fields(self):
            values = getattr(self, section.name)
            for item in fields(values):
                value = getattr(values, item.name)
                if isinstance(value, float) and math.isnan(value):  # NaN passes every comparison check
                    raise ConfigError(f"{section.name}.{item.name} must be a number (got nan)")
            values.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            s.name: {f.name: _plain(getattr(getattr(self, s.name), f.name)) for f in fields(getattr(self, s.name))}
            for s in fields(self)
        }

    def digest(self, *sections: str) -> str:
        """Hash of the settings (of these sections only, when named): recorded in stage manifests, so that a
        changed setting invalidates the stages it affects and no other."""
        settings = self.to_dict()
        if sections:
            settings = {name: settings[name] for name in sections}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


IMAGE_MEMBERS = ("jpg", "original")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be > 0 (got {value!r})")


def _non_negative(name: str, value: Any) -> None:
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 (got {value!r})")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML or flag value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{name} must be a list (got {value!r})")
        return tuple(_coerce(name, v.strip() if isinstance(v, str) else v, args[0]) for v in items if v != "")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name} must be true or false (got {value!r})")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number (got {value!r})")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be {'an integer' if hint is int else 'a number'} (got {value!r})") from None
        if hint is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{name} must be an integer (got {value!r})")
        return number
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{name} must be a string (got {value!r})")
        return str(value)
    return value


def _apply(config: Config, overrides: Mapping[str, Mapping[str, Any]], origin: str) -> Config:
    sections = {f.name: f for f in fields(config)}
    new_sections: dict[str, Any] = {}
    for section_name, values in overrides.items():
        if section_name not in sections:
            raise ConfigError(f"{origin}: unknown section {section_name!r}{_suggest(section_name, sections)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: section {section_name!r} must be a mapping")
        section = new_sections.get(section_name, getattr(config, section_name))
        hints = typing.get_type_hints(type(section))
        known = {f.name for f in fields(section)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown key '{section_name}.{key}'{_suggest(key, known)}")
            changes[key] = _coerce(f"{section_name}.{key}", value, hints[key])
        new_sections[section_name] = dataclasses.replace(section, **changes)
    return dataclasses.replace(config, **new_sections)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(path: str | Path | None = None, flags: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file at `path`, then `flags` ({"download.timeout": 5, ...}; None skipped)."""
    config = Config()
    if path is not None:
        config = _apply(config, _read_yaml(Path(path)), str(path))
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    config = _apply(config, nested, "flag")
    return config.validate()


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def dump_config(config: Config, **extra: Any) -> str:
    """YAML text of the merged config, with extra top-level facts (code version, inputs)."""
    document = dict(extra)
    document.update(config.to_dict())
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def write_config(config: Config, out_url: str, **extra: Any) -> str:
    """Write `OUT/config.yaml` on any fsspec URL; returns its URL."""
    import fsspec

    from curate import __version__

    url = out_url.rstrip("/") + "/config.yaml"
    with fsspec.open(url, "w", encoding="utf-8", auto_mkdir=True) as fh:
        fh.write(dump_config(config, curate_version=__version__, config_digest=config.digest(), **extra))
    return url
