"""Write requirements-worker.txt: what a Beam worker needs to run curate, pinned as constraints.txt pins it.

The runtime dependencies are setup.cfg's `install_requires` and everything they require in turn (read
from the installed distributions' metadata, markers evaluated for this interpreter and platform, which is
the worker's: Linux, CPython 3.11), each at its constraints.txt version. Development tools (pytest, ruff,
mypy, build) are left out because nothing at run time requires them.

    .venv/bin/python scripts/worker_requirements.py           # rewrite requirements-worker.txt
    .venv/bin/python scripts/worker_requirements.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "requirements-worker.txt"
# pip freeze (hence constraints.txt) leaves these out: every Python environment, a worker's too, has them.
BASE = {"pip", "setuptools", "wheel", "distribute"}
HEADER = """\
# What a Beam worker needs to run curate (Dataflow: --requirements_file, or bake it into a container image;
# see docs/DEPLOY.md). Generated from setup.cfg's install_requires and constraints.txt by
# scripts/worker_requirements.py: do not edit by hand, rerun it after changing either.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints(path: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version) for every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[canonical(name)] = (name, version)
    return pins


def install_requires(setup_cfg: Path) -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser["options"]["install_requires"].strip().splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip()]


def closure(roots: list[Requirement]) -> set[str]:
    """Canonical names of the roots and of everything they require, as installed here."""
    seen: set[str] = set()
    todo = [(root, frozenset(root.extras)) for root in roots]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        name = canonical(req.name)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(req.name) or []:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((Requirement(str(child).split(";")[0]), frozenset(child.extras)))
    return {key.split("[")[0] for key in seen}


def render(root: Path = ROOT) -> str:
    pins = constraints(root / "constraints.txt")
    names = closure(install_requires(root / "setup.cfg")) - BASE
    missing = sorted(names - set(pins))
    if missing:
        raise SystemExit(f"not pinned in constraints.txt: {', '.join(missing)}")
    lines = [f"{pins[n][0]}=={pins[n][1]}" for n in sorted(names, key=lambda n: pins[n][0].lower())]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if requirements-worker.txt is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date: run {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.name}: {text.count(chr(10)) - HEADER.count(chr(10))} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
