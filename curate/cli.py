"""The `curate` command line: one console script, one subcommand per job.

User mistakes (a missing path, a bad flag value, an unreadable config) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from curate import __version__
from curate.errors import UserError

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _port(text: str) -> int:
    from curate.sample.plan import HOSTS

    value = _positive_int(text)
    if not 1024 <= value <= 65535 - len(HOSTS):
        raise argparse.ArgumentTypeError(f"must be between 1024 and {65535 - len(HOSTS)} (got {value})")
    return value


# ---------------------------------------------------------------------------------------------------------
# subcommands


def _sample_crawl(args: argparse.Namespace) -> int:
    from curate.sample.build import build_sample_crawl

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    summary = build_sample_crawl(out, seed=args.seed, scale=args.scale, port=args.port)
    print(json.dumps(summary, indent=2))
    print(f"sample crawl written to {out} (serve it with: curate serve {out})", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from curate.serve import ServeError, serve_forever

    try:
        serve_forever(Path(args.dir), port=args.port, access_log=Path(args.access_log) if args.access_log else None)
    except (ServeError, ValueError) as e:
        raise UserError(str(e)) from e
    return 0


def _demo(args: argparse.Namespace) -> int:
    from curate.demo import run_demo

    return run_demo(Path(args.crawl), Path(args.out), seed=args.seed, scale=args.scale)


def _build_parser() -> argparse.ArgumentParser:
    from curate.sample.plan import DEFAULT_PORT

    parser = _Parser(prog="curate", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        p.set_defaults(func=func)
        return p

    p = add("sample-crawl", _sample_crawl,
            "Build the embedded sample crawl: CommonCrawl-shaped WARC/WAT files, image hosts and truth.parquet.")
    p.add_argument("--out", required=True, help="directory to write the crawl into")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same bytes")
    p.add_argument("--scale", type=_positive_int, default=1, help="multiply the number of pages and images")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="base port the pages point at; hosts use PORT..PORT+5 on 127.0.0.1")

    p = add("serve", _serve, "Serve a sample crawl (crawl files and image hosts with faults) on 127.0.0.1.")
    p.add_argument("dir", help="a directory written by `curate sample-crawl`")
    p.add_argument("--port", type=_port, default=None, help="base port (default: the one the crawl was built for)")
    p.add_argument("--access-log", default=None, help="append one JSON line per request to this file")

    p = add("demo", _demo, "Build the sample crawl, serve it, and run every stage that exists on it.")
    p.add_argument("--crawl", default="build/sample", help="where to build the sample crawl")
    p.add_argument("--out", default="build/demo", help="output directory of the pipeline run")
    p.add_argument("--seed", type=int, default=0, help="sample crawl seed")
    p.add_argument("--scale", type=_positive_int, default=1, help="sample crawl scale")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"curate {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
