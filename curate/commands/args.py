"""What every subcommand's parser shares: the `register` signature and argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable

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
