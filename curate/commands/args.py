"""What every subcommand's parser shares: the `register` signature and argument types."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from curate.errors import UserError

# cli.main hands each subcommand module's `register` this: add(name, handler, description) -> its parser.
Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def int_from(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low, else one line naming the problem."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low} (got {value})")
        return value
    return parse


positive_int = int_from(1)


def output_option(p: argparse.ArgumentParser, help: str, required: bool = False, default: str | None = None) -> None:
    """`-o/--output`: every command names its output folder so. `--out`, the old spelling of some commands, is
    still accepted for a release, unlisted. A required output missing is argparse's own one-line error."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", dest="output", default=default, help=help)
    group.add_argument("--out", dest="output", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def check_output_folder(text: str) -> None:
    """A local output must be a folder we can write, or one we can create: checked before any work starts (a
    UserError, one line); remote URLs are checked by their filesystem when written."""
    if "://" in text and not text.startswith("file://"):
        return
    path = Path(text.removeprefix("file://")).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{text} is not a directory ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{text} is not writable ({existing})")
