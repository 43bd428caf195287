"""The `curate` command line: one console script, one subcommand per job.

User mistakes (a missing path, a bad flag value, an unreadable config) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from curate import __version__
from curate.commands.args import check_output_folder, output_option, positive_int
from curate.config import TEXT_FILTERS
from curate.errors import UserError, WeightsError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default, except for required flags and flags without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _report(args: argparse.Namespace) -> int:
    from curate.commands.report import report_command  # pyarrow, Pillow, YAML: only when a report is written

    return report_command(args)


def _port(text: str) -> int:
    from curate.sample.plan import HOSTS

    value = positive_int(text)
    if not 1024 <= value <= 65535 - len(HOSTS):
        raise argparse.ArgumentTypeError(f"must be between 1024 and {65535 - len(HOSTS)} (got {value})")
    return value


# ---------------------------------------------------------------------------------------------------------
# subcommands


def _sample_crawl(args: argparse.Namespace) -> int:
    from curate.sample.build import build_sample_crawl

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    summary = build_sample_crawl(out, seed=args.seed, scale=args.scale, port=args.port)
    print(json.dumps(summary, indent=2))
    print(f"sample crawl written to {out} (serve it with: curate serve {out})", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from curate.sample.serve import ServeError, serve_forever

    try:
        serve_forever(Path(args.dir), port=args.port, access_log=Path(args.access_log) if args.access_log else None)
    except (ServeError, ValueError) as e:
        raise UserError(str(e)) from e
    return 0


def _crawl_flags(args: argparse.Namespace) -> dict[str, object]:
    return {"extract.source": args.source, "extract.max_files": args.max_files}


def _crawl_files(args: argparse.Namespace, config: Any) -> list[Any]:
    """The crawl files `--snapshot` (IDs, presets, month ranges) or `--input` (files, globs, listings) name."""
    from curate.crawl import input_files, resolve_snapshots, snapshot_files

    if args.snapshot:
        return snapshot_files(resolve_snapshots(args.snapshot), args.cc_base_url, config.extract.source,
                              config.extract.max_files)
    return input_files(args.input, args.cc_base_url)


def _run_inputs(args: argparse.Namespace, config: Any) -> Any:
    """`run`'s inputs by where they enter (curate.inputs); each URL list checked for its URL column."""
    from curate import urllists
    from curate.inputs import RunInputs, classify

    if args.snapshot:
        return RunInputs(crawl=_crawl_files(args, config))
    inputs = classify(args.input, args.cc_base_url)
    for file in inputs.crawl:
        if file.kind == "urls":
            urllists.check(file.url, config.extract.url_column)
    return inputs


def _crawl_options(p: argparse.ArgumentParser,
                   inputs: str = "WARC/WAT files, URL lists (txt, csv, tsv, parquet), globs or *.paths.gz listings "
                                 "(local or remote)") -> None:
    """What to read and where to write: the flags extract and run share."""
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--snapshot", help="crawl IDs, presets (web-ssl) or month ranges (2021-01..2021-06), "
                                         "comma-separated")
    what.add_argument("--input", nargs="+", help=inputs)
    output_option(p, "output URL (local path, s3://, gs://, memory:// ...)", required=True)
    p.add_argument("--source", choices=("warc", "wat"), default=None,
                   help="with --snapshot: read WARC files (HTML parsed here) or WAT files (links only) "
                        "[config extract.source, default warc]")
    p.add_argument("--max-files", type=positive_int, default=None,
                   help="with --snapshot: read at most N files per snapshot [config extract.max_files, default all]")
    p.add_argument("--cc-base-url", default="https://data.commoncrawl.org/",
                   help="where crawl-data/ lives (any fsspec URL)")


def _extract(args: argparse.Namespace) -> int:
    from curate.pipelines.extract import run

    config = _config(args, {**_crawl_flags(args), "extract.shards": args.shards})
    manifest = run(_crawl_files(args, config), args.output, config, args.beam_args, force=args.force)
    _print_funnel("extract", manifest, args.output)
    return 0


def _download(args: argparse.Namespace) -> int:
    from curate.pipelines.download import run

    out = args.output
    if args.refs and args.refs.rstrip("/") != out.rstrip("/") + "/refs":
        raise UserError(f"--refs must be OUTPUT/refs (the stage reads and writes under one output): got {args.refs}")
    config = _config(args, _settings(args))
    manifest = run(out, config, args.beam_args, retry_failed=args.retry_failed, force=args.force)
    _print_funnel("download", manifest, out)
    return 0


def _filter(args: argparse.Namespace) -> int:
    from collections import Counter

    from curate.pipelines import dedup, text
    from curate.pipelines.decode import run
    from curate.readers import list_sources

    config = _config(args, {**_settings(args), "dedup.exclude_near": args.exclude_near, **_text_flags(args)})
    dedup.check_settings(args.output, config, args.force)  # the evaluation sets, checked before any work
    inputs = args.input or [args.output.rstrip("/") + "/fetched/*.tar"]
    skipped: Counter[str] = Counter()
    sources = list_sources(inputs, skipped=skipped)
    if skipped:
        print(f"skipped by name (not an image or .tar): {', '.join(f'{k} {v}' for k, v in sorted(skipped.items()))}")
    manifest = run(sources, args.output, config, args.beam_args, force=args.force, skipped=dict(skipped))
    _print_funnel("decode", manifest, args.output)
    deduped = dedup.run(args.output, config, args.beam_args, force=args.force)
    _print_funnel("dedup", deduped, args.output)
    if not args.no_text:
        _print_funnel("text", text.run(args.output, config, args.beam_args, force=args.force), args.output)
    return 0


def _text(args: argparse.Namespace) -> int:
    from curate.pipelines import text

    config = _config(args, _text_flags(args))
    _print_funnel("text", text.run(args.output, config, args.beam_args, force=args.force), args.output)
    return 0


def _text_flags(args: argparse.Namespace) -> dict[str, object]:
    return {"text.filter": args.text_filter, "text.mode": args.ocr_mode, "text.detect_side": args.detect_side,
            "text.read": args.read, "text.cache": getattr(args, "ocr_cache", None)}


def _text_options(p: argparse.ArgumentParser, cache: bool = True) -> None:
    p.add_argument("--text-filter", choices=TEXT_FILTERS, default=None,
                   help="none scores only; light keeps images with readable text; heavy keeps text-dense images "
                        "(documents, charts, tables); notext keeps images without text [config text.filter, "
                        "default none]")
    p.add_argument("--ocr-mode", choices=("fast", "full"), default=None,
                   help="fast: PP-OCRv4 on ONNX Runtime, the largest lines read, the rest extrapolated; full: easyocr "
                        "readtext, every box read (the slow reference) [config text.mode, default fast]")
    p.add_argument("--detect-side", type=positive_int, default=None,
                   help="fast: detection with the picture's longer side at this many pixels [config text.detect_side, "
                        "default 960]")
    p.add_argument("--read", type=positive_int, default=None,
                   help="fast: text lines read per picture, the largest first [config text.read, default 8]")
    if cache:
        p.add_argument("--ocr-cache", default=None, metavar="URL",
                       help="scores cached by pixel hash, shared between runs and outputs [config text.cache, "
                            "default OUTPUT/cache/ocr]")


def _ocr(args: argparse.Namespace) -> int:
    """One JSON line per image: path, light, heavy, the filter's verdict and the TextScore fields."""
    from curate.config import load_config
    from curate.filters.text import is_heavy, is_light, verdict
    from curate.ocr import OcrFailure, TextEngine

    flags = {**_text_flags(args), "text.canvas": args.canvas, "text.cache": None}
    full = load_config(args.config, flags)
    config = full.text
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise UserError(f"no such image: {missing[0]}")
    engine = TextEngine(config, image=full.image)
    for path in args.images:
        result = engine.score_bytes(Path(path).read_bytes())
        if isinstance(result, OcrFailure):
            print(json.dumps({"path": path, "error": result.reason, "detail": result.detail}), flush=True)
            continue
        line = {"path": path, "light": is_light(result, config), "heavy": is_heavy(result, config),
                "verdict": verdict(result, config), **result._asdict()}
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return 0


def _print_funnel(stage: str, manifest: dict, out: str) -> None:
    state = "up to date, skipped" if manifest.get("skipped") else "done"
    print(f"{stage}: {state}; outputs under {out}")
    for name, part in manifest["funnel"].items():
        rejected = ", ".join(f"{k} {v}" for k, v in part["rejected"].items() if v)
        print(f"  {name:11s} in {part['input']:>8}  kept {part['kept']:>8}  failed {part['failed']:>6}"
              + (f"  rejected: {rejected}" if rejected else ""))
    for table, shards in manifest["tables"].items():
        if table == "shards":
            tars = [s for s in shards if s["path"].endswith(".tar")]
            print(f"  {table:11s} {sum(s['rows'] for s in tars)} samples in {len(tars)} shards (tar + Parquet)")
        else:
            print(f"  {table:11s} {sum(s['rows'] for s in shards)} rows in {len(shards)} Parquet files")


def run_config(args: argparse.Namespace) -> Any:
    """`curate run`'s settings from its parsed command line."""
    return _config(args, {**_settings(args), **_crawl_flags(args), "shards.samples_per_shard": args.samples_per_shard,
                          "dedup.exclude_near": args.exclude_near, **_text_flags(args)})


def _run(args: argparse.Namespace) -> int:
    import time

    from curate.commands.report import write_report
    from curate.pipelines.run import run_all

    started = time.monotonic()
    config = run_config(args)
    inputs = _run_inputs(args, config)
    if inputs.skipped:
        print(f"skipped by name: {', '.join(f'{k} {v}' for k, v in sorted(inputs.skipped.items()))}")
    timings: dict[str, float] = {}

    def done(stage: str, manifest: dict, seconds: float) -> None:
        timings[stage] = seconds
        print(f"[{seconds:7.1f} s] ", end="")
        _print_funnel(stage, manifest, args.output)

    manifests = run_all(inputs.crawl, args.output, config, args.beam_args, force=args.force, text=not args.no_text,
                        on_stage=done, pictures=inputs.pictures, skipped=dict(inputs.skipped))
    write_report(args.output)
    out = args.output.rstrip("/")
    tars = [s for s in manifests["write"]["tables"]["shards"] if s["path"].endswith(".tar")]
    print(f"time: {', '.join(f'{stage} {seconds:.1f} s' for stage, seconds in timings.items())}; "
          f"total {time.monotonic() - started:.1f} s")
    print(f"dataset: {manifests['write']['samples']} images in {len(tars)} shards, "
          f"{sum(s['bytes'] for s in tars) / 1e6:.1f} MB, in {out}/shards (WebDataset tar + Parquet); rejects in "
          f"{out}/rejects, dead letters in {out}/failed, funnel in {out}/stats.json")
    print(f"report: {out}/report.html")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from curate.commands.demo import run_demo

    return run_demo(Path(args.crawl), Path(args.output), seed=args.seed, scale=args.scale,
                    text_filter=args.text_filter)


# Each stage's own flags, declared once: (flags, config key, argparse keywords, help). The first flag is the
# one name everywhere; later ones are old spellings, accepted but unlisted. `download` and `run` take the
# download flags, `filter` and `run` the image and dedup flags; a flag's value lands on its config key.
STAGE_FLAGS: dict[str, list[tuple[tuple[str, ...], str, dict[str, Any], str]]] = {
    "download": [
        (("--timeout",), "download.timeout", {"type": float}, "seconds per socket operation [default 10]"),
        (("--deadline",), "download.deadline", {"type": float}, "seconds per request, redirects included [default 30]"),
        (("--retries",), "download.retries", {"type": int}, "img2dataset's retries of any failure [default 0]"),
        (("--fetch-threads", "--threads"), "download.threads", {"type": positive_int},
         "download threads per fetch shard [default 16]"),
        (("--max-bytes",), "download.max_bytes", {"type": positive_int}, "largest image in bytes [default 20 MiB]"),
        (("--user-agent-token",), "download.user_agent_token", {}, "our token in User-Agent and robots.txt "
                                                                   "[default curate]"),
        (("--disallowed-header-directives",), "download.disallowed_header_directives", {},
         "X-Robots-Tag directives that forbid use, comma-separated [default noai,noimageai,noindex,noimageindex]"),
        (("--allow-private-hosts",), "download.allow_private_hosts", {"nargs": "?", "const": "127.0.0.1",
                                                                      "metavar": "ADDRS"},
         "let the SSRF guard through to these non-public addresses (comma-separated IPs/CIDRs; alone: 127.0.0.1). "
         "For the local sample crawl and tests only [default: none]"),
        (("--resize-mode",), "download.resize_mode", {}, "img2dataset resize mode; 'no' keeps originals [default no]"),
        (("--resize-size", "--image-size"), "download.image_size", {"type": positive_int},
         "img2dataset's target size when resizing [default 256]"),
        (("--encode-format",), "download.encode_format", {}, "jpg|png|webp when resizing [default jpg]"),
        (("--min-image-size",), "download.min_image_size", {"type": int},
         "img2dataset's minimum, when resizing [default 0]"),
        (("--urls-per-shard",), "download.samples_per_shard", {"type": positive_int},
         "URLs per fetch shard [default 10000]"),
    ],
    "image": [
        (("--min-side",), "image.min_side", {"type": positive_int}, "shortest side in pixels [default 64]"),
        (("--max-aspect-ratio",), "image.max_aspect_ratio", {"type": float}, "long side / short side [default 4.0]"),
        (("--max-pixels",), "image.max_pixels", {"type": positive_int},
         "pixel budget, checked before decoding [default 89478485]"),
        (("--formats",), "image.formats", {}, "allowed formats, comma-separated [default jpeg,png,webp,gif]"),
    ],
    "dedup": [
        (("--hamming-radius",), "dedup.hamming_radius", {"type": int},
         "near duplicates: perceptual hashes at most this many bits apart [default 6]"),
        (("--no-near",), "dedup.near", {"action": "store_const", "const": False}, "exact duplicates only"),
    ],
}


def _stage_flags(p: argparse.ArgumentParser, *stages: str) -> None:
    for stage in stages:
        for flags, key, kwargs, help_text in STAGE_FLAGS[stage]:
            if "action" not in kwargs:
                kwargs = {"metavar": flags[0].lstrip("-").upper().replace("-", "_"), **kwargs}
            p.add_argument(flags[0], dest=key, default=None, help=f"{help_text} [config {key}]", **kwargs)
            for old in flags[1:]:
                p.add_argument(old, dest=key, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The stage flags given on the command line, by config key."""
    return {key: value for key, value in vars(args).items() if "." in key}


def _exclude_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude-near", action="append", default=None, metavar="PATH",
                   help="decontamination: drop the near-duplicates (eval_overlap) of an evaluation set: a folder, "
                        "glob or tar of images, or a hash list (.txt, one 16-hex pHash a line); repeat for more "
                        "sets [config dedup.exclude_near]")


def _config(args: argparse.Namespace, flags: dict[str, Any]) -> Any:
    """The command's settings: defaults < --config file < --set SECTION.KEY=VALUE < the command's own flags."""
    from curate.config import load_config

    settings: dict[str, Any] = {}
    for item in args.set or []:
        dotted, eq, value = item.partition("=")
        if not eq or "." not in dotted:
            raise UserError(f"--set {item!r}: give SECTION.KEY=VALUE, e.g. --set download.timeout=5")
        settings[dotted.strip()] = value
    return load_config(args.config, {**settings, **{k: v for k, v in flags.items() if v is not None}})


def _config_and_force(p: argparse.ArgumentParser, done_when: str) -> None:
    """The flags every stage command has."""
    p.add_argument("--config", default=None, help="YAML config file (defaults < file < --set < flags)")
    p.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                   help="any setting of curate/config.py, e.g. --set download.timeout=5 --set "
                        "image.min_side=32 (repeatable; a list is comma-separated)")
    p.add_argument("--force", action="store_true", help=f"run even if {done_when}")


# One short example per command, shown at the end of its --help.
EXAMPLES = {
    "sample-crawl": "curate sample-crawl -o build/sample --scale 2",
    "serve": "curate serve build/sample          # then: curate run --snapshot CC-MAIN-2021-04 --cc-base-url "
             "http://127.0.0.1:18700/ -o out --allow-private-hosts",
    "extract": "curate extract --snapshot CC-MAIN-2023-06 --max-files 2 -o out/",
    "download": "curate download -o out/ --fetch-threads 32 --timeout 10     # reads out/refs, writes out/fetched",
    "run": "curate run --input photos/ laion/*.tar urls.csv -o out/ --text-filter light --exclude-near eval/",
    "filter": "curate filter --input photos/ -o out/ --hamming-radius 8 --no-text",
    "text": "curate text -o out/ --text-filter heavy          # rescoring is free: scores are cached",
    "ocr": "curate ocr --text-filter light photo.jpg receipt.png",
    "demo": "curate demo -o build/demo --text-filter heavy",
    "inspect": "curate inspect out/shards/00000.tar -n 5",
    "report": "curate report out/                 # writes out/report.html",
    "train": "curate train --data out/shards -o runs/tiny --preset cpu-tiny --steps 500",
    "eval": "curate eval --checkpoint runs/tiny/last.pt --probe all",
    "experiment": "curate experiment text-filter --data out/shards --steps 300",
}


def _build_parser() -> argparse.ArgumentParser:
    from curate.sample import DEFAULT_PORT

    parser = _Parser(prog="curate", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        example = EXAMPLES.get(name)
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter,
                           epilog=f"example:\n  {example}" if example else None)
        p.set_defaults(func=func)
        return p

    p = add("sample-crawl", _sample_crawl,
            "Build the embedded sample crawl: CommonCrawl-shaped WARC/WAT files, image hosts and truth.parquet.")
    output_option(p, "directory to write the crawl into", required=True)
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same bytes")
    p.add_argument("--scale", type=positive_int, default=1, help="multiply the number of pages and images")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="base port the pages point at; hosts use PORT..PORT+5 on 127.0.0.1")

    p = add("serve", _serve, "Serve a sample crawl (crawl files and image hosts with faults) on 127.0.0.1.")
    p.add_argument("dir", help="a directory written by `curate sample-crawl`")
    p.add_argument("--port", type=_port, default=None, help="base port (default: the one the crawl was built for)")
    p.add_argument("--access-log", default=None, help="append one JSON line per request to this file")

    p = add("extract", _extract,
            "Extract image references (URL, alt, provenance) from CommonCrawl WARC or WAT files. "
            "Flags curate does not know go to Apache Beam (--runner, --direct_num_workers ...).")
    p.set_defaults(beam_flags=True)
    _crawl_options(p)
    p.add_argument("--shards", type=positive_int, default=None,
                   help="Parquet files per output table [config extract.shards, default 8]")
    _config_and_force(p, "OUT/refs is complete for these inputs")

    p = add("download", _download,
            "Download the images of OUT/refs with img2dataset (originals kept), politely and safely: robots.txt, "
            "X-Robots-Tag, SSRF guard, byte cap, total deadline, magic-byte check. Writes OUT/fetched "
            "(img2dataset layout) and OUT/ledger (one status per ref). Other flags go to Apache Beam.")
    p.set_defaults(beam_flags=True)
    output_option(p, "the output of `curate extract` (reads OUT/refs)", required=True)
    p.add_argument("--refs", default=None, help="OUTPUT/refs (accepted for clarity; must be under --output)")
    _stage_flags(p, "download")
    p.add_argument("--samples-per-shard", dest="download.samples_per_shard", type=positive_int,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name of --urls-per-shard, here only
    p.add_argument("--retry-failed", action="store_true",
                   help="fetch again only the refs whose last status is retryable (timeouts, 5xx, resets)")
    _config_and_force(p, "OUT/fetched is complete for these refs")

    p = add("run", _run,
            "Run the whole pipeline: extract, download, decode, dedup, text filter, write the shards and the "
            "report. A stage whose outputs are complete is skipped, so a killed run resumes where it stopped. "
            "Flags curate does not know go to Apache Beam.")
    p.set_defaults(beam_flags=True)
    _crawl_options(p, "any mix of: WARC/WAT files and *.paths.gz listings; URL lists (img2dataset's txt, csv, tsv, "
                      "parquet with a url and optional caption column); image files, folders of them, webdataset "
                      "or img2dataset tar shards (local or any fsspec URL). Crawls and lists are fetched, "
                      "pictures join at decode")
    _stage_flags(p, "download", "image", "dedup")
    p.add_argument("--samples-per-shard", type=positive_int, default=None,
                   help="samples per final shard [config shards.samples_per_shard, default 10000]")
    p.add_argument("--no-text", action="store_true", help="no OCR, no text filter")
    _exclude_option(p)
    _text_options(p)
    _config_and_force(p, "a stage's outputs are complete (every stage reruns)")

    p = add("filter", _filter,
            "Decode and validate images (formats by magic bytes, pixel budget before decoding, EXIF orientation, "
            "size and aspect checks), hash them, remove exact and near duplicates, then score their text and "
            "apply the text filter unless --no-text; writes OUT/images, OUT/dedup and OUT/text (no shards: "
            "`curate run --input` makes a dataset). Works on curate's fetched shards, any img2dataset/webdataset "
            "tars, or folders of images. Other flags go to Apache Beam.")
    p.set_defaults(beam_flags=True)
    p.add_argument("--input", nargs="+", default=None,
                   help="tar shards, image files, folders or globs [default: OUTPUT/fetched/*.tar]")
    output_option(p, "output URL (writes OUTPUT/images)", required=True)
    _stage_flags(p, "image", "dedup")
    _exclude_option(p)
    p.add_argument("--no-text", action="store_true", help="stop after dedup: no OCR, no text filter")
    _text_options(p)
    _config_and_force(p, "the outputs are complete for these inputs")

    p = add("text", _text, "Score the text of every image dedup kept (easyocr; cached by pixel hash) and apply the "
                           "text filter: writes OUT/text. Rerun it with other thresholds or another filter: cached "
                           "scores are reused. Other flags go to Apache Beam.")
    p.set_defaults(beam_flags=True)
    output_option(p, "the output of `curate filter` (reads OUT/images, OUT/dedup)", required=True)
    _text_options(p)
    _config_and_force(p, "OUT/text is complete for these inputs and settings")

    p = add("ocr", _ocr, "Score the text in local images with easyocr: one JSON line per image (path, light, heavy, "
                         "verdict and the TextScore fields: boxes, area_fraction, words, chars, mean_confidence, "
                         "lines, text, ms, read).")
    p.add_argument("images", nargs="+", help="image files")
    _text_options(p, cache=False)
    p.add_argument("--canvas", type=positive_int, default=None,
                   help="full: detection bound, pixels on the longer side [config text.canvas, default 1280]")
    p.add_argument("--config", default=None, help="YAML config file (defaults < file < flags)")

    p = add("demo", _demo, "Build the sample crawl, serve it, and `curate run` the whole pipeline on it.")
    p.add_argument("--crawl", default="build/sample", help="where to build the sample crawl")
    output_option(p, "output directory of the pipeline run", default="build/demo")
    p.add_argument("--seed", type=int, default=0, help="sample crawl seed")
    p.add_argument("--scale", type=positive_int, default=1, help="sample crawl scale")
    p.add_argument("--text-filter", choices=TEXT_FILTERS, default="light",
                   help="the text filter of the demo run")
    p = add("report", _report,
            "Write OUT/report.html: funnel, stage times, snapshots and hosts, reject reasons, thumbnails, every "
            "reject and duplicate cluster, near misses, histograms with the filters' thresholds, config and "
            "inputs, in one self-contained file that opens offline.")
    p.add_argument("out", metavar="OUT", help="a run's output URL (local path, s3://, gs://, memory:// ...)")
    from curate.commands.inspect import register as _register_inspect
    _register_inspect(add)
    from curate.commands.train import register as _register_trainer
    _register_trainer(add)
    from curate.commands.experiment import register as _register_experiment
    _register_experiment(add)
    return parser


class _QuietImports(logging.Filter):
    """Beam's GCP module warns on import that optional Google clients are missing; we use none of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietImports())
    logging.getLogger("curate").setLevel(logging.INFO)  # progress lines of long stages


def main(argv: Sequence[str] | None = None) -> int:
    _setup_logging()
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam_flags", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.beam_args = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        output = getattr(args, "output", None)
        if isinstance(output, str):  # every command's output folder: checked before any work, one writer at a time
            from curate.io import OutputLock

            check_output_folder(output)
            with OutputLock(output, " ".join(["curate", *(argv if argv is not None else sys.argv[1:])])):
                return int(args.func(args))
        return int(args.func(args))
    except (UserError, WeightsError) as e:  # a model file missing or altered: the install is the user's to fix
        print(f"curate {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
